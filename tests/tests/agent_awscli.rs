//! The agent commands with the AWS CLI itself (PyPI `awscli`, in `.venv-awscli`, which
//! `make awscli` installs: its botocore pin differs from moto's), against moto through
//! the fault layer (issue 12's tests):
//!
//! - a `credential_process` profile and `sealgate exec` each let `aws s3 ls` list a
//!   bucket, and once the grant is released all three ways fail cleanly: the profile's
//!   process and `exec` refuse (exit 3), and a command already running under `exec`'s
//!   container endpoint is refused fresh credentials;
//! - with sessions shortened to 20 s at the emulator (which then refuses an expired
//!   session's key, as AWS does), a long-running command under `exec` keeps working
//!   past its first credentials' expiry through the container endpoint, while the same
//!   command holding static credentials is refused once they expire.

mod agent_support;
mod common;
mod grants_support;

use agent_support::*;
use grants_support::*;
use sealgate_tests::{aws, bin};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn venv_bin(venv: &str, name: &str) -> PathBuf {
    let p = aws::workspace_root().join(venv).join("bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `make awscli` and `make moto` (make test does)",
        p.display()
    );
    p
}

fn run(mut c: Command) -> Output {
    c.output().expect("run the command")
}

#[test]
fn the_aws_cli_lists_a_bucket_through_credential_process_and_exec_until_released() {
    let (e, bucket, id) = with_grant("awscli", &["s3:GetObject", "s3:ListBucket"]);
    e.object(&bucket, "hello.txt", b"hello");
    let aws_cli = venv_bin(".venv-awscli", "aws").display().to_string();
    let ls = |c: &mut Command| {
        c.args(["--endpoint-url", &e.fault.url, "s3", "ls", &format!("s3://{bucket}/")]);
    };

    // A profile whose credentials come from `sealgate credential-process`.
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
    let profile = || {
        let mut c = agent_cmd(&e, Path::new(&aws_cli));
        c.env("AWS_CONFIG_FILE", &config).env("AWS_PROFILE", "grant");
        ls(&mut c);
        c
    };
    let out = run(profile());
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("hello.txt"), "{}", text(&out.stdout));

    // `sealgate exec -- aws s3 ls`.
    let exec = |extra: &[&str]| {
        let mut c = agent_cmd(&e, &bin("sealgate"));
        c.args(["exec", "--grant", &id]).args(extra).arg("--").arg(&aws_cli);
        ls(&mut c);
        c
    };
    let out = run(exec(&[]));
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("hello.txt"), "{}", text(&out.stdout));

    // A command already running under exec's container endpoint: `aws` once, then again
    // after the release (each `aws` asks the endpoint afresh).
    let released = dir.path().join("released");
    let script = format!(
        "{cli} --endpoint-url {url} s3 ls s3://{bucket}/ && echo first-ok; \
         while [ ! -f {flag} ]; do sleep 0.1; done; \
         {cli} --endpoint-url {url} s3 ls s3://{bucket}/ && echo second-ok",
        cli = aws_cli,
        url = e.fault.url,
        flag = released.display()
    );
    let out = exec_across_release(&e, &id, &["sh", "-c", &script], Duration::from_secs(4), &released);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("first-ok"), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains("second-ok"), "{stdout}{}", text(&out.stderr));
    assert!(!out.status.success(), "the second aws call was not refused");

    // After the release: the profile and exec both fail, cleanly and without running.
    let out = run(profile());
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("not active"), "{}", text(&out.stderr));
    let out = run(exec(&[]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

/// Lists the bucket every second for `secs` seconds with whatever credentials boto3
/// finds; prints one line per call (`ok KEYID` or `fail ERROR`).
const LOOP: &str = r#"
import sys, time, boto3
from botocore.config import Config
endpoint, bucket, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
session = boto3.Session()
s3 = session.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
end = time.time() + secs
while time.time() < end:
    try:
        s3.list_objects_v2(Bucket=bucket)
        print("ok", session.get_credentials().get_frozen_credentials().access_key, flush=True)
    except Exception as e:
        print("fail", type(e).__name__, str(e)[:120], flush=True)
    time.sleep(1)
"#;

#[test]
fn a_command_outlives_its_first_credentials_through_the_container_endpoint() {
    let (e, bucket, id) = with_grant("awscli-long", &["s3:GetObject", "s3:ListBucket"]);
    e.object(&bucket, "hello.txt", b"hello");
    e.fault.shorten_sessions(20);
    let py = venv_bin(".venv", "python").display().to_string();

    // Control: static credentials from credential-process stop working at expiry.
    let out = sealgate(&e, &["credential-process", "--grant", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let creds: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stat = run({
        let mut c = agent_cmd(&e, Path::new(&py));
        c.env("AWS_ACCESS_KEY_ID", str_of(&creds, "AccessKeyId"))
            .env("AWS_SECRET_ACCESS_KEY", str_of(&creds, "SecretAccessKey"))
            .env("AWS_SESSION_TOKEN", str_of(&creds, "SessionToken"))
            .env("AWS_REGION", REGION)
            .args(["-c", LOOP, &e.fault.url, &bucket, "30"]);
        c
    });
    let lines = text(&stat.stdout);
    assert!(lines.starts_with("ok "), "{lines}{}", text(&stat.stderr));
    assert!(
        lines.contains("fail ClientError") && lines.contains("ExpiredToken"),
        "{lines}"
    );

    // Under exec the grant outlives its 20 s sessions, so the command gets the endpoint
    // and is handed fresh sessions as they run out: every call succeeds, with more
    // than one session.
    let out = sealgate(
        &e,
        &[
            "exec",
            "--grant",
            &id,
            "--",
            &py,
            "-c",
            LOOP,
            &e.fault.url,
            &bucket,
            "35",
        ],
    );
    let lines = text(&out.stdout);
    assert!(out.status.success(), "{lines}{}", text(&out.stderr));
    assert!(lines.lines().count() >= 25, "{lines}");
    assert!(!lines.contains("fail"), "{lines}{}", text(&out.stderr));
    let mut keys: Vec<&str> = lines.lines().filter_map(|l| l.strip_prefix("ok ")).collect();
    keys.dedup();
    assert!(keys.len() >= 2, "one session for 35 s of 20 s sessions: {keys:?}");
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
}
