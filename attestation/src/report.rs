//! Failure classes, exit codes, and the two renderings of a [`LogReport`]: one line per
//! check for people, one JSON object for scripts.
//!
//! Exit codes are part of the tool's interface, so scripts can tell "the host is down"
//! (retry) from "the host lied" (page someone):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | every check passed |
//! | 2 | usage: bad arguments, a `--key` that is not a verifier key, a `--token` that is not a JWT |
//! | 3 | fetch: network or HTTP error, or a response that is not the documented format |
//! | 4 | signature: the checkpoint does not verify, or the host's key differs from `--key` |
//! | 5 | log content: a bad or misplaced leaf, a short or wrong page, or a root that differs from the checkpoint |
//! | 6 | token: a `--token` is not proven to be in the checkpointed log |
//!
//! When several checks fail, the exit code is the class of the *first* failing check in
//! report order (key, checkpoint, entries, root, then tokens): later failures are often
//! consequences of earlier ones, and the first is the one to investigate.

use crate::log::{Check, LogError, LogReport};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

/// The exit-code table, shown at the end of `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  every check passed (VERIFIED)
  2  usage: bad arguments, --key is not a verifier key, --token is not a JWT
  3  fetch: network/HTTP error or a response not in the documented format
  4  signature: checkpoint signature invalid, or host key differs from --key
  5  log content: bad or misplaced leaf, short/wrong entries page, root mismatch
  6  token: a --token is not proven to be in the checkpointed log
With several failures, the code is that of the first failing check.";

/// What kind of failure a check ran into; each has its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    Usage,
    Fetch,
    Signature,
    LogContent,
    Token,
}

impl FailureClass {
    pub fn exit_code(self) -> u8 {
        match self {
            FailureClass::Usage => 2,
            FailureClass::Fetch => 3,
            FailureClass::Signature => 4,
            FailureClass::LogContent => 5,
            FailureClass::Token => 6,
        }
    }

    /// Stable name for JSON output.
    pub fn name(self) -> &'static str {
        match self {
            FailureClass::Usage => "usage",
            FailureClass::Fetch => "fetch",
            FailureClass::Signature => "signature",
            FailureClass::LogContent => "log_content",
            FailureClass::Token => "token",
        }
    }
}

/// The exit code for a finished report: 0 when verified, else the first failure's class.
pub fn exit_code(report: &LogReport) -> u8 {
    match report.first_failure() {
        None if report.verified() => 0,
        None => FailureClass::Fetch.exit_code(),
        Some(e) => e.class().exit_code(),
    }
}

fn check_line(c: &Check) -> String {
    match &c.result {
        Ok(detail) => format!("ok    {}: {detail}", c.name),
        // The check's name already says which token.
        Err(LogError::Token { problem, .. }) => format!("FAIL  {}: {problem}", c.name),
        Err(e) => format!("FAIL  {}: {e}", c.name),
    }
}

/// The human-readable report: one line per check, then `VERIFIED` or `FAILED: <reason>`.
pub fn render_text(report: &LogReport) -> String {
    let mut out = String::new();
    for c in &report.checks {
        out.push_str(&check_line(c));
        out.push('\n');
    }
    match report.first_failure() {
        None if report.verified() => out.push_str("VERIFIED\n"),
        None => out.push_str("FAILED: nothing was checked\n"),
        Some(e) => out.push_str(&format!("FAILED: {e}\n")),
    }
    out
}

fn check_json(c: &Check) -> Value {
    match &c.result {
        Ok(detail) => json!({ "name": c.name, "ok": true, "detail": detail }),
        Err(e) => json!({
            "name": c.name,
            "ok": false,
            "error": e.to_string(),
            "class": e.class().name(),
            "exit_code": e.class().exit_code(),
        }),
    }
}

/// The machine-readable report.
///
/// `{verified, exit_code, failure: null | {class, reason}, key, key_pinned,
/// checkpoint: null | {origin, size, root}, checks: [{name, ok, detail | error, class,
/// exit_code}]}`; `root` is base64 as in the checkpoint note.
pub fn render_json(report: &LogReport) -> Value {
    let failure = report
        .first_failure()
        .map(|e| json!({ "class": e.class().name(), "reason": e.to_string() }));
    let checkpoint = report
        .checkpoint
        .as_ref()
        .map(|cp| json!({ "origin": cp.origin, "size": cp.size, "root": B64.encode(cp.root) }));
    json!({
        "verified": report.verified(),
        "exit_code": exit_code(report),
        "failure": failure,
        "key": report.key,
        "key_pinned": report.key_pinned,
        "checkpoint": checkpoint,
        "checks": report.checks.iter().map(check_json).collect::<Vec<_>>(),
    })
}

/// Text for a usage error found before any check ran (e.g. a bad `--key`).
pub fn usage_text(reason: &str) -> String {
    format!("FAILED: usage: {reason}\n")
}

/// JSON for a usage error found before any check ran.
pub fn usage_json(reason: &str) -> Value {
    json!({
        "verified": false,
        "exit_code": FailureClass::Usage.exit_code(),
        "failure": { "class": FailureClass::Usage.name(), "reason": reason },
        "checks": [],
    })
}
