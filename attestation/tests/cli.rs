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
    let mut args = vec!["log", "--url", url.as_str(), "--verifier-key", key.as_str()];
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
    let out = verify(&["log", "--url", &url, "--verifier-key", "not-a-key"]);
    assert_eq!(out.status.code(), Some(2));
    // The old meaning of --key (a verifier key) is pointed at its new flag.
    let vk = f.vk().to_string();
    let out = verify(&["log", "--url", &url, "--key", &vk]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--verifier-key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 6: a JWT the host never logged (404 on lookup).
    let stranger = common::make_jwt("jti-unknown", "ws:w1:agent:z", 1_800_000_000);
    let out = verify(&["log", "--url", &url, "--token", &stranger]);
    assert_eq!(out.status.code(), Some(6), "{}", stdout(&out));
    assert!(stdout(&out).ends_with(
        "FAILED: token jti-unknown: not in the log: the host has no leaf for this exact token (looked up by jti, presenting the token)\n"
    ));
    assert!(stdout(&out).contains("FAIL  token jti-unknown: not in the log"));

    // 4: pinned key mismatch.
    let other = common::verifier_key(&common::signing_key(99)).to_string();
    let out = verify(&["log", "--url", &url, "--verifier-key", &other]);
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));

    // 3: malformed hashes page, then an HTTP error.
    overrides.lock().unwrap().insert(
        "/v1/audit/hashes?start=0&end=300".into(),
        (200, r#"{"start":0,"end":300,"hashes":["%%"]}"#.into()),
    );
    let out = verify(&["log", "--url", &url]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(stdout(&out).contains("malformed response"), "{}", stdout(&out));
    overrides.lock().unwrap().insert(
        "/v1/audit/hashes?start=0&end=300".into(),
        (
            503,
            r#"{"error":{"code":"ENCLAVE_UNAVAILABLE","message":"try later"}}"#.into(),
        ),
    );
    let out = verify(&["log", "--url", &url]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).contains("HTTP 503: try later"), "{}", stdout(&out));

    // 5: a short page over the wire.
    let short = serde_json::json!({"start":0,"end":300,"hashes":[]}).to_string();
    overrides
        .lock()
        .unwrap()
        .insert("/v1/audit/hashes?start=0&end=300".into(), (200, short));
    let out = verify(&["log", "--url", &url, "--json", "--token", &f.issued[0].jwt]);
    assert_eq!(out.status.code(), Some(5));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(v["failure"]["class"], "log_content");
}

/// An API key of the right shape (the in-memory host only checks one is presented).
const AUDITOR_KEY: &str = "sg_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

#[test]
fn hole4_key_reads_contents_and_anonymous_reads_hashes() {
    let f = Fixture::new(1500, 60);
    let mut log = f.honest();
    log.readable = Some(|i| i % 2 == 0);
    let (url, _) = serve(log);
    let out = verify(&[
        "log",
        "--url",
        &url,
        "--json",
        "--key",
        AUDITOR_KEY,
        "--token",
        &f.issued[2].jwt,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(v["scan"], "contents");
    assert_eq!(v["readable"], 750);
    let out = verify(&["log", "--url", &url, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(v["scan"], "hashes");
    assert_eq!(v["readable"], serde_json::Value::Null);

    // A host that serves a leaf whose bytes do not match its hash fails the auditor.
    let mut log = f.honest();
    log.served_contents.insert(10, b"{\"v\":1}".to_vec());
    let (url, _) = serve(log);
    let out = verify(&["log", "--url", &url, "--key", AUDITOR_KEY]);
    assert_eq!(out.status.code(), Some(5), "{}", stdout(&out));
    assert!(stdout(&out).contains("leaf 10's bytes hash to"), "{}", stdout(&out));
    let out = verify(&["log", "--url", &url]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the public hashes are intact: {}",
        stdout(&out)
    );
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

/// The fixture's tokens expired in 2024: `log --token` still proves them (exit 0, as
/// `--help` documents) and says they expired; `--at` before their `exp` judges them
/// unexpired, so the verdict depends on the judging time and nothing else.
#[test]
fn expired_token_is_proven_and_said_to_be_expired() {
    let f = Fixture::new(300, 40);
    let (url, _) = serve(f.honest());
    let t = &f.issued[1];
    let token_line = |o: &Output| {
        stdout(o)
            .lines()
            .find(|l| l.starts_with(&format!("ok    token {}: ", t.jti)))
            .unwrap_or_else(|| panic!("no ok line for the token in {}", stdout(o)))
            .to_string()
    };

    let out = verify(&["log", "--url", &url, "--token", &t.jwt]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).ends_with("VERIFIED\n"), "{}", stdout(&out));
    let line = token_line(&out);
    assert!(line.contains("inclusion proof verifies"), "{line}");
    assert!(line.contains("the token EXPIRED"), "{line}");
    assert!(line.contains("inclusion is still proven"), "{line}");

    let exp = 1_732_300_300 + t.index;
    let at = (exp - 1).to_string();
    let out = verify(&["log", "--url", &url, "--token", &t.jwt, "--at", &at]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let line = token_line(&out);
    assert!(
        line.contains(&format!("not expired at the judging time {at} (1 s left)")),
        "{line}"
    );

    let help = stdout(&verify(&["log", "--help"]));
    assert!(
        help.contains("an expired\n     token is still proven: exit 0"),
        "{help}"
    );
}

/// `attest` with no arguments names both of its forms, so an auditor holding a saved
/// document learns that it can verify it offline.
#[test]
fn attest_without_arguments_shows_both_forms() {
    let out = verify(&["attest"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sealgate-verify attest --url URL [OPTIONS]"), "{err}");
    assert!(
        err.contains("sealgate-verify attest --document FILE [--commitment FILE | --url URL] [OPTIONS]"),
        "{err}"
    );
    assert!(err.contains("--url <URL>|--document <FILE>"), "{err}");
}
