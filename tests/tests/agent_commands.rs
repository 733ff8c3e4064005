//! `sealgate credential-process` and `sealgate exec` (issue 12, items 2 and 3), with the
//! real binaries against moto, and an AWS SDK nobody here wrote: boto3 (the Python
//! SDK the AWS CLI is built on, installed with moto) reads the credentials from
//! `credential_process`, from the environment `exec` sets, and from `exec`'s loopback
//! container endpoint, and uses them on S3. A released grant makes all three fail, with
//! `exec`'s and `credential-process`'s exit code 3; `exec` passes exit codes and
//! signals through; no secret appears on sealgate's own output.

mod agent_support;
mod common;
mod grants_support;

use agent_support::*;
use grants_support::*;
use sealgate_tests::{aws, bin, wait_until};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// What the grants here allow on their bucket.
const READ_WRITE: &[&str] = &["s3:GetObject", "s3:PutObject", "s3:ListBucket"];

/// The venv's python, which has boto3 (moto depends on it).
fn python() -> PathBuf {
    aws::workspace_root().join(".venv/bin/python")
}

/// Uses whatever credentials boto3 finds on `bucket`; prints how it found them.
const USE_S3: &str = r#"
import sys, boto3
from botocore.config import Config
endpoint, bucket, key = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))
s3.put_object(Bucket=bucket, Key=key, Body=b"from a grant")
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
assert key in keys, keys
print("method", boto3.Session().get_credentials().method)
sys.exit(int(sys.argv[4]) if len(sys.argv) > 4 else 0)
"#;

#[test]
fn credential_process_and_exec_hand_a_grant_to_a_real_sdk() {
    let (e, bucket, id) = with_grant("agent-cmd", READ_WRITE);
    let secret_ref = str_of(&e.get(&id), "secret_ref").to_string();

    // credential_process: the AWS CLI's JSON, version 1, with an expiration.
    let out = sealgate(&e, &["credential-process", "--secret-ref", &secret_ref]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["Version"], 1, "{v}");
    for f in ["AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"] {
        assert!(v[f].as_str().is_some_and(|s| !s.is_empty()), "{f}: {v}");
    }
    let secret = str_of(&v, "SecretAccessKey").to_string();
    assert!(!text(&out.stderr).contains(&secret), "a secret on stderr");

    // A profile that points at the grant, as ~/.aws/config would.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "[profile grant]\nregion = us-east-1\ncredential_process = {} credential-process --grant {id}\n",
            bin("sealgate").display()
        ),
    )
    .unwrap();
    let out = agent_cmd(&e, &python())
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
        .env("AWS_PROFILE", "grant")
        .args(["-c", USE_S3, &e.fault.url, &bucket, "via-profile.txt"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        text(&out.stdout).contains("method custom-process"),
        "{}",
        text(&out.stdout)
    );

    // exec: the environment, and the command's own exit code (7) passed through.
    let py = python().display().to_string();
    let out = sealgate(
        &e,
        &[
            "exec",
            "--grant",
            &id,
            "--",
            &py,
            "-c",
            USE_S3,
            &e.fault.url,
            &bucket,
            "via-exec.txt",
            "7",
        ],
    );
    assert_eq!(out.status.code(), Some(7), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("method env"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).is_empty(), "sealgate said: {}", text(&out.stderr));

    // exec --refresh: the loopback container endpoint, which wants its token.
    let probe = r#"
import os, sys, urllib.request, urllib.error
req = urllib.request.Request(os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"], headers={"Authorization": "wrong"})
try:
    urllib.request.urlopen(req)
    print("wrong token accepted")
except urllib.error.HTTPError as e:
    print("wrong token", e.code)
"#;
    let out = sealgate(&e, &["exec", "--grant", &id, "--refresh", "--", &py, "-c", probe]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "wrong token 403");
    let out = sealgate(
        &e,
        &[
            "exec",
            "--grant",
            &id,
            "--refresh",
            "--",
            &py,
            "-c",
            USE_S3,
            &e.fault.url,
            &bucket,
            "via-endpoint.txt",
        ],
    );
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        text(&out.stdout).contains("method container-role"),
        "{}",
        text(&out.stdout)
    );

    // A command that cannot be started: 127, as a shell says, not a usage error.
    let out = sealgate(&e, &["exec", "--grant", &id, "--", "/nonexistent/sealgate-test-cmd"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot run"), "{}", text(&out.stderr));

    // Inherited credentials do not leak into the command.
    let out = agent_cmd(&e, &bin("sealgate"))
        .env("AWS_ACCESS_KEY_ID", "AKIAINHERITED")
        .env("AWS_PROFILE", "someone-else")
        .args([
            "exec",
            "--grant",
            &id,
            "--",
            "sh",
            "-c",
            "echo \"$AWS_ACCESS_KEY_ID ${AWS_PROFILE:-none} $AWS_REGION\"",
        ])
        .output()
        .unwrap();
    let printed = text(&out.stdout);
    assert!(
        !printed.contains("AKIAINHERITED") && printed.contains(" none us-east-1"),
        "{printed}"
    );
}

#[test]
fn a_released_grant_fails_all_three_cleanly() {
    let (e, bucket, id) = with_grant("agent-rel", READ_WRITE);
    let dir = tempfile::tempdir().unwrap();
    let released = dir.path().join("released");

    // A command that outlives the release: it uses S3 through the endpoint, waits, then
    // asks for credentials afresh, which must now be refused.
    let late = format!(
        r#"
import os, sys, time, boto3
from botocore.config import Config
cfg = Config(s3={{"addressing_style": "path"}}, retries={{"max_attempts": 1}})
boto3.client("s3", endpoint_url="{url}", config=cfg).list_objects_v2(Bucket="{bucket}")
print("before release ok", flush=True)
while not os.path.exists("{flag}"):
    time.sleep(0.1)
try:
    boto3.Session().client("s3", endpoint_url="{url}", config=cfg).list_objects_v2(Bucket="{bucket}")
    print("after release ok")
except Exception as e:
    print("after release refused:", type(e).__name__)
"#,
        url = e.fault.url,
        bucket = bucket,
        flag = released.display()
    );
    let py = python().display().to_string();
    let out = exec_across_release(&e, &id, &[&py, "-c", &late], Duration::from_secs(3), &released);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("before release ok"), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("after release refused"),
        "{stdout}{}",
        text(&out.stderr)
    );

    let out = sealgate(&e, &["credential-process", "--grant", &id]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not active"), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let marker = dir.path().join("ran");
    let out = sealgate(
        &e,
        &["exec", "--grant", &id, "--", "touch", &marker.display().to_string()],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(!marker.exists(), "the command ran without credentials");

    // Usage and refusals have their own codes.
    let out = sealgate(&e, &["credential-process", "--secret-ref", "https://example.com/x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = agent_cmd(&e, &bin("sealgate"))
        .env("SEALGATE_TOKEN", "sg_not-a-key")
        .args(["credential-process", "--grant", &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
}

#[test]
fn exec_passes_signals_through() {
    let (e, _, id) = with_grant("agent-sig", READ_WRITE);
    let mut child = agent_cmd(&e, &bin("sealgate"))
        .args(["exec", "--grant", &id, "--", "sleep", "30"])
        .spawn()
        .unwrap();
    // Until `sleep` runs under it.
    let pid = child.id();
    wait_until("exec to start its command", Duration::from_secs(20), || {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).is_ok_and(|c| !c.trim().is_empty())
    });
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15), "{status:?}");
}
