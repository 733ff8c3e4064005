//! `sealgate mcp` (issue 12, item 1) driven by a real MCP client nobody here wrote: the
//! official Python SDK from PyPI (`mcp`, in `.venv-mcp`, which `make mcp-sdk` installs),
//! against a simulator host and moto. `tests/python/mcp_driver.py` plays the agent; this
//! file sets up the world, runs it, asserts every check it reports, and then scans every
//! byte that crossed the MCP channel, every log line and every stdout/stderr for the
//! secrets that were in play:
//!
//! - the AWS secret key and session token a command run through `sealgate exec` was
//!   given (it writes them to a file of its own, never to its output);
//! - the credentials `aws_get_credentials` returned on the server started with
//!   `--allow-inline-credentials`: those must appear in that server's stdout (the
//!   scan's positive control, and the flag's point) and nowhere else, its own stderr
//!   under `RUST_LOG=trace` included;
//! - the OIDC token `oidc_mint_token` wrote to its file on the default server.
//!
//! And, whatever the values: no message the default server sent carries a credential
//! field (`secret_access_key`, `session_token`, `token`).

mod common;
mod grants_support;

use grants_support::*;
use sealgate_tests::{aws, bin};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

fn venv_python(venv: &str) -> PathBuf {
    let p = aws::workspace_root().join(venv).join("bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `make mcp-sdk` (make test does) to install the Python MCP SDK",
        p.display()
    );
    p
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Every JSON object key anywhere in `v`.
fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                keys(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

/// `(name, text)` of everything the run wrote, but the inline server's stdout.
fn scanned(dir: &Path, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = ["default.in", "default.out", "default.err", "inline.in", "inline.err"]
        .iter()
        .map(|f| (f.to_string(), read(&dir.join(f))))
        .collect();
    out.extend(extra.iter().map(|(n, t)| (n.to_string(), t.clone())));
    out
}

#[test]
fn an_mcp_client_gets_grants_tokens_and_byo_without_seeing_a_secret() {
    let e = Env::start();
    let bucket = unique("mcp-auto");
    let pending_bucket = unique("mcp-pend");
    e.bucket(&bucket);
    e.bucket(&pending_bucket);
    let role = e.role(&unique("mcp-role"));
    e.set_ceiling(
        ACCOUNT,
        &ceiling(
            &role,
            "assume_role",
            json!([
                { "decision": "route_to_approver", "resources": ["arn:aws:s3:::mcp-pend-*"], "reason": "a human looks at these" },
                { "decision": "auto_approve", "reason": "tests: everything else inside the ceiling" }
            ]),
        ),
    );

    // BYO: enabled for the workspace, a customer bucket with one object; the customer's
    // role does not exist yet (the driver creates it once it knows the External ID).
    let (s, v) = put(
        &e.api,
        &format!("/v1/workspaces/{}/features", e.t.workspace),
        Some(&e.operator),
        &json!({ "byo_storage": true }),
    );
    assert_eq!(s, 200, "{v}");
    let byo_bucket = unique("mcp-byo");
    e.bucket(&byo_bucket);
    let body = b"an artifact in the customer's own bucket".to_vec();
    let sha = hex::encode(Sha256::digest(&body));
    e.object(&byo_bucket, "reports/q3.csv", &body);
    let byo_role = format!("arn:aws:iam::{ACCOUNT}:role/{}", unique("mcp-byo-reader"));

    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let config = json!({
        "sealgate": bin("sealgate").display().to_string(),
        "url": e.d.url,
        "agent_key": e.t.agent_key,
        "admin_key": e.admin,
        "approver_key": e.approver,
        "workspace": e.t.workspace,
        "account": ACCOUNT,
        "bucket": bucket,
        "pending_bucket": pending_bucket,
        "s3_endpoint": e.fault.url,
        "moto_url": e.moto.url,
        "moto_key_id": aws::ACCESS_KEY_ID,
        "moto_secret": aws::SECRET_ACCESS_KEY,
        "boto3_python": venv_python(".venv").display().to_string(),
        "byo_bucket": byo_bucket,
        "byo_role_arn": byo_role,
        "byo_object": format!("s3://{byo_bucket}/reports/q3.csv"),
        "byo_sha256": sha,
        "transcripts": dir.path().display().to_string(),
        "secrets_file": p("exec-secrets.jsonl"),
        "inline_file": p("inline.json"),
        "token_file_copy": p("token.txt"),
        "report": p("report.json"),
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let driver = aws::workspace_root().join("tests/python/mcp_driver.py");
    let out = Command::new(venv_python(".venv-mcp"))
        .arg(&driver)
        .arg(dir.path().join("config.json"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run the MCP driver");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    let report: Value = serde_json::from_str(&read(&dir.path().join("report.json")))
        .unwrap_or_else(|e| panic!("no report ({e}); driver said:\n{stdout}\n{stderr}"));

    // Every check the client made.
    let failed: Vec<&Value> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] != true)
        .collect();
    assert!(
        failed.is_empty(),
        "failed checks:\n{}\n--- driver stderr ---\n{stderr}\n--- server stderr ---\n{}",
        serde_json::to_string_pretty(&failed).unwrap(),
        read(&dir.path().join("default.err"))
            .chars()
            .take(20_000)
            .collect::<String>()
    );
    let checks = report["checks"].as_array().unwrap();
    assert!(checks.len() > 40, "{report}");
    eprintln!("the MCP client's {} checks passed", checks.len());

    // All fourteen tools, each described, with an object schema whose fields are.
    let tools = report["tools"].as_object().expect("tools");
    let expected = [
        "aws_describe_scope",
        "aws_preview_request",
        "aws_request_access",
        "aws_poll_grant",
        "aws_get_credentials",
        "aws_release_access",
        "oidc_mint_token",
        "byo_register_bucket",
        "byo_check_bucket",
        "byo_rotate_external_id",
        "byo_disconnect_bucket",
        "byo_register_artifact",
        "byo_get_audit",
        "audit_prove_token",
    ];
    let mut names: Vec<&str> = tools.keys().map(String::as_str).collect();
    names.sort();
    let mut want = expected.to_vec();
    want.sort();
    assert_eq!(names, want);
    for (name, t) in tools {
        assert!(t["description"].as_str().is_some_and(|d| d.len() > 20), "{name}: {t}");
        assert_eq!(t["type"], "object", "{name}: {t}");
        for (field, d) in t["fields"].as_object().expect("fields") {
            assert!(d.as_str().is_some_and(|d| d.len() > 5), "{name}.{field} undescribed");
        }
    }
    assert!(
        tools["aws_request_access"]["fields"].as_object().unwrap().len() >= 7,
        "{}",
        tools["aws_request_access"]
    );

    // The proof the server checked is one we check again here, from the host.
    let proof = &report["proof"];
    assert_eq!(proof["verified"], true, "{proof}");
    let token = read(&dir.path().join("token.txt"));
    assert_eq!(token.split('.').count(), 3, "{token}");
    let vk = common::verifier_key(&e.api);
    assert_eq!(proof["verifier_key"], vk.to_string());
    let (index, _) = common::token_record_as(&e.api, proof["jti"].as_str().unwrap(), &token);
    assert_eq!(proof["index"], index);

    // The secrets in play.
    let mut secrets: Vec<(String, String)> = Vec::new();
    for line in read(&dir.path().join("exec-secrets.jsonl")).lines() {
        let v: Value = serde_json::from_str(line).expect("a secrets line");
        secrets.push(("exec secret key".into(), v["secret"].as_str().unwrap().into()));
        secrets.push(("exec session token".into(), v["token"].as_str().unwrap().into()));
    }
    assert!(!secrets.is_empty(), "the command run through exec saw no credentials");
    let inline: Value = serde_json::from_str(&read(&dir.path().join("inline.json"))).expect("inline.json");
    let inline_secrets = [
        inline["secret"].as_str().unwrap().to_string(),
        inline["token"].as_str().unwrap().to_string(),
    ];
    secrets.extend(
        inline_secrets
            .iter()
            .map(|s| ("inline credential".to_string(), s.clone())),
    );
    secrets.push(("OIDC token".into(), token.trim().to_string()));
    for (_, s) in &secrets {
        assert!(s.len() >= 16, "too short to scan for: {s:?}");
    }

    // Positive control: the scan finds what is there (the inline server's answers).
    let inline_out = read(&dir.path().join("inline.out"));
    for s in &inline_secrets {
        assert!(
            inline_out.contains(s.as_str()),
            "the inline credentials are not in inline.out"
        );
    }

    let events = serde_json::to_string(&report["events"]).unwrap();
    let places = scanned(
        dir.path(),
        &[
            ("driver stdout", stdout.clone()),
            ("driver stderr", stderr.clone()),
            ("driver events (tool texts, exec output)", events),
            ("host log", e.host_log()),
        ],
    );
    assert!(
        read(&dir.path().join("default.err")).contains("TRACE")
            || read(&dir.path().join("default.err")).contains("DEBUG"),
        "the server did not log at RUST_LOG=trace; the scan of its log would prove nothing"
    );
    for (what, secret) in &secrets {
        for (place, text) in &places {
            assert!(!text.contains(secret.as_str()), "{what} appears in {place}");
        }
    }

    // No credential field in any answer the default server sent (tools/list aside: its
    // input schemas name a `token` argument), and nothing but JSON-RPC on its stdout.
    let default_out = read(&dir.path().join("default.out"));
    assert!(default_out.lines().count() > 30, "default.out: {default_out}");
    let mut seen = Vec::new();
    for line in default_out.lines() {
        let msg: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON-RPC on stdout ({e}): {line}"));
        assert_eq!(msg["jsonrpc"], "2.0", "{line}");
        if msg["result"].get("tools").is_none() {
            keys(&msg, &mut seen);
        }
    }
    for field in [
        "secret_access_key",
        "session_token",
        "SecretAccessKey",
        "SessionToken",
        "token",
    ] {
        assert!(
            !seen.iter().any(|k| k == field),
            "the default server sent a {field} field"
        );
    }
    assert!(
        seen.iter().any(|k| k == "secret_ref"),
        "no secret_ref was ever answered"
    );
    assert!(
        default_out.contains("notifications/resources/updated"),
        "the notification is not in the transcript"
    );
}
