//! The `sealgate-verify` binary end to end over real HTTP (a loopback server speaking
//! the host's audit API from an in-memory log): output, `--json`, and exit codes.

mod common;

use common::{serve, Fixture};
use std::process::{Command, Output};

fn verify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sealgate-verify"))
        .args(args)
        .output()
        .expect("run sealgate-verify")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn verifies_an_honest_host_over_http() {
    let f = Fixture::new(1234, 50);
    let (url, _) = serve(f.honest());
    let key = f.vk().to_string();
    let mut args = vec!["log", "--url", url.as_str(), "--key", key.as_str()];
    for t in &f.issued[..3] {
        args.extend(["--token", t.jwt.as_str()]);
    }
    let out = verify(&args);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.ends_with("VERIFIED\n"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok    token ")).count(),
        3,
        "{text}"
    );

    // Same with a trailing slash and --json.
    let slash = format!("{url}/");
    let out = verify(&["log", "--url", &slash, "--json", "--token", &f.issued[7].jwt]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(v["verified"], true);
    assert_eq!(v["key_pinned"], false);
    assert_eq!(v["checkpoint"]["size"], 1234);
    assert!(v["checks"].as_array().unwrap().iter().all(|c| c["ok"] == true));
}

#[test]
fn exit_codes_by_failure_class() {
    let f = Fixture::new(300, 40);
    let (url, overrides) = serve(f.honest());

    // 2: usage.
    let out = verify(&["log", "--url", &url, "--key", "not-a-key"]);
    assert_eq!(out.status.code(), Some(2));
    let out = verify(&["log", "--url", &url, "--token", "a.b"]);
    assert_eq!(out.status.code(), Some(2));
    let out = verify(&["log"]);
    assert_eq!(out.status.code(), Some(2), "clap's own usage errors exit 2 too");
    let out = verify(&["log", "--url", &url, "--json", "--key", "x"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(v["failure"]["class"], "usage");

    // 6: a JWT the host never logged (404 on lookup).
    let stranger = common::make_jwt("jti-unknown", "ws:w1:agent:z", 1_800_000_000);
    let out = verify(&["log", "--url", &url, "--token", &stranger]);
    assert_eq!(out.status.code(), Some(6), "{}", stdout(&out));
    assert!(stdout(&out).ends_with("FAILED: token jti-unknown: not in the log: the host has no leaf for this jti\n"));
    assert!(stdout(&out).contains("FAIL  token jti-unknown: not in the log"));

    // 4: pinned key mismatch.
    let other = common::verifier_key(&common::signing_key(99)).to_string();
    let out = verify(&["log", "--url", &url, "--key", &other]);
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));

    // 3: malformed entries page, then an HTTP error.
    overrides.lock().unwrap().insert(
        "/v1/audit/entries?start=0&end=300".into(),
        (200, r#"{"start":0,"end":300,"entries":["%%"]}"#.into()),
    );
    let out = verify(&["log", "--url", &url]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(stdout(&out).contains("malformed response"), "{}", stdout(&out));
    overrides.lock().unwrap().insert(
        "/v1/audit/entries?start=0&end=300".into(),
        (
            503,
            r#"{"error":{"code":"ENCLAVE_UNAVAILABLE","message":"try later"}}"#.into(),
        ),
    );
    let out = verify(&["log", "--url", &url]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).contains("HTTP 503: try later"), "{}", stdout(&out));

    // 5: a short page over the wire.
    let short = serde_json::json!({"start":0,"end":300,"entries":[]}).to_string();
    overrides
        .lock()
        .unwrap()
        .insert("/v1/audit/entries?start=0&end=300".into(), (200, short));
    let out = verify(&["log", "--url", &url, "--json", "--token", &f.issued[0].jwt]);
    assert_eq!(out.status.code(), Some(5));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(v["failure"]["class"], "log_content");
}

#[test]
fn unreachable_host_is_a_fetch_failure() {
    // Bind then drop, so nothing listens on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = verify(&["log", "--url", &url]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stdout(&out).starts_with("FAIL  key: verifier key: "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn help_lists_exit_codes() {
    let out = verify(&["log", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for code in [
        "0  every check passed",
        "2  usage",
        "3  fetch",
        "4  signature",
        "5  log content",
        "6  token",
    ] {
        assert!(help.contains(code), "{help}");
    }
    let out = verify(&["--help"]);
    assert!(stdout(&out).contains("Exit codes:"));
}
