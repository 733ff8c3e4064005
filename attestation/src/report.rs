//! Failure classes, exit codes, and the two renderings of a [`LogReport`]: one line per
//! check for people, one JSON object for scripts.
//!
//! Exit codes are part of the tool's interface, so scripts can tell "the host is down"
//! (retry) from "the host lied" (page someone):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | every check passed |
//! | 2 | usage: bad arguments, a `--verifier-key` that is not a verifier key, a `--key` that is not an `sg_` API key, a `--token` that is not a JWT |
//! | 3 | fetch: network or HTTP error, or a response that is not the documented format |
//! | 4 | signature: the checkpoint (or the `--since` note) does not verify, or the host's key differs from `--verifier-key` (for `all`: from the attested checkpoint key) |
//! | 5 | log content: a short or wrong page, a root that differs from the checkpoint, or (with `--key`) a readable leaf that is misplaced, not an envelope, or does not hash to its served hash |
//! | 6 | token: a `--token` is not proven to be in the checkpointed log (an expired token is still proven, and reported as expired) |
//! | 7 | certificate chain: the document's leaf does not chain to the trust root at the judging time (bad, expired or not yet valid certificate, unknown root) |
//! | 8 | document: not a COSE_Sign1 ES384 document in the AWS layout, or its signature does not verify |
//! | 9 | freshness: the document is older than `--max-age` or from the future |
//! | 10 | nonce: the document does not echo the nonce |
//! | 11 | PCR: a `--pcr` differs from the document's |
//! | 12 | commitment: `user_data` is not the digest of what the host serves (or of the given commitment) |
//! | 13 | root kind: a simulator document without `--sim-root`, or `--sim-root` with an AWS document or a `nitro` host |
//! | 14 | history (`all --since`): the log shrank since the saved checkpoint, or the consistency proof from it fails (a fork) |
//!
//! When several checks fail, the exit code is the class of the *first* failing check in
//! report order (key, checkpoint, entries, root, then tokens): later failures are often
//! consequences of earlier ones, and the first is the one to investigate.

use crate::all::{AllReport, Skipped};
use crate::attest::{AttestCheck, AttestReport, Outcome};
use crate::log::{Check, LogError, LogReport};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

/// The exit-code table, shown at the end of `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  every check passed (VERIFIED)
  2  usage: bad arguments, --verifier-key is not a verifier key, --key is not
     an sg_ API key, --token is not a JWT
  3  fetch: network/HTTP error (e.g. --key refused: 401/403), or a response not
     in the documented format
  4  signature: checkpoint (or --since note) signature invalid, or host key
     differs from --verifier-key (all: from the attested checkpoint key)
  5  log content: short/wrong page, root mismatch; with --key, a readable leaf
     misplaced, not an envelope, or not hashing to its served hash
  6  token: a --token is not proven to be in the checkpointed log (an expired
     token is still proven: exit 0, and the report says it expired)
  7  attest: certificate chain invalid at the judging time (expired, unknown root)
  8  attest: document malformed, or its COSE signature does not verify
  9  attest: document stale (older than --max-age) or from the future
 10  attest: document does not echo --nonce
 11  attest: a --pcr differs
 12  attest: user_data differs from the commitment the host's keys give
 13  attest: simulator document without --sim-root, or --sim-root with an AWS one
 14  history: the log shrank since the --since checkpoint, or is not consistent with it
With several failures, the code is that of the first failing check.";

/// What kind of failure a check ran into; each has its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    Usage,
    Fetch,
    Signature,
    LogContent,
    Token,
    Chain,
    Document,
    Freshness,
    Nonce,
    Pcr,
    Commitment,
    RootKind,
    History,
}

impl FailureClass {
    pub fn exit_code(self) -> u8 {
        match self {
            FailureClass::Usage => 2,
            FailureClass::Fetch => 3,
            FailureClass::Signature => 4,
            FailureClass::LogContent => 5,
            FailureClass::Token => 6,
            FailureClass::Chain => 7,
            FailureClass::Document => 8,
            FailureClass::Freshness => 9,
            FailureClass::Nonce => 10,
            FailureClass::Pcr => 11,
            FailureClass::Commitment => 12,
            FailureClass::RootKind => 13,
            FailureClass::History => 14,
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
            FailureClass::Chain => "certificate_chain",
            FailureClass::Document => "document",
            FailureClass::Freshness => "freshness",
            FailureClass::Nonce => "nonce",
            FailureClass::Pcr => "pcr",
            FailureClass::Commitment => "commitment",
            FailureClass::RootKind => "root_kind",
            FailureClass::History => "history",
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
/// `{verified, exit_code, failure: null | {class, reason}, key, key_pinned, scan:
/// "hashes" | "contents", readable: null | N, checkpoint: null | {origin, size, root},
/// checks: [{name, ok, detail | error, class, exit_code}]}`; `root` is base64 as in the
/// checkpoint note; `readable` is how many leaves the `--key` could read and were
/// checked against their hashes.
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
        "scan": match report.scan {
            crate::log::Scan::Hashes => "hashes",
            crate::log::Scan::Contents => "contents",
        },
        "readable": report.readable,
        "checkpoint": checkpoint,
        "checks": report.checks.iter().map(check_json).collect::<Vec<_>>(),
    })
}

/// Text for a usage error found before any check ran (e.g. a bad `--verifier-key`).
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

fn attest_line(c: &AttestCheck) -> String {
    match &c.outcome {
        Outcome::Ok(detail) => format!("ok    {}: {detail}", c.name),
        Outcome::Skipped(why) => format!("skip  {}: {why}", c.name),
        Outcome::Failed(e) => format!("FAIL  {}: {e}", c.name),
    }
}

/// The human-readable attestation report: one line per check, then `VERIFIED` (with
/// `SIMULATOR` when the anchor was a simulator root) or `FAILED: <reason>`.
pub fn render_attest_text(report: &AttestReport) -> String {
    let mut out = String::new();
    if report.simulator {
        out.push_str("SIMULATOR: verifying against a simulator root given with --sim-root, not AWS Nitro\n");
    }
    for c in &report.checks {
        out.push_str(&attest_line(c));
        out.push('\n');
    }
    match report.first_failure() {
        None if report.verified() && report.simulator => {
            out.push_str("VERIFIED (SIMULATOR: proves nothing about hardware)\n")
        }
        None if report.verified() => out.push_str("VERIFIED\n"),
        None => out.push_str("FAILED: the document was not fully checked\n"),
        Some(e) => out.push_str(&format!("FAILED: {e}\n")),
    }
    out
}

fn attest_check_json(c: &AttestCheck) -> Value {
    match &c.outcome {
        Outcome::Ok(detail) => json!({ "name": c.name, "ok": true, "detail": detail }),
        Outcome::Skipped(why) => json!({ "name": c.name, "ok": true, "skipped": true, "detail": why }),
        Outcome::Failed(e) => json!({
            "name": c.name,
            "ok": false,
            "error": e.to_string(),
            "class": e.class().name(),
            "exit_code": e.class().exit_code(),
        }),
    }
}

/// The machine-readable attestation report:
/// `{verified, exit_code, failure: null | {class, reason}, mode: "SIMULATOR" | "AWS",
/// root_sha256, judged_at, document: null | {module_id, timestamp_ms, pcr0, user_data,
/// nonce}, checks: [{name, ok, skipped?, detail | error, class, exit_code}]}`.
pub fn render_attest_json(report: &AttestReport) -> Value {
    let failure = report
        .first_failure()
        .map(|e| json!({ "class": e.class().name(), "reason": e.to_string() }));
    let document = report.document.as_ref().map(|d| {
        json!({
            "module_id": d.module_id,
            "timestamp_ms": d.timestamp_ms,
            "pcr0": d.pcr0,
            "user_data": d.user_data,
            "nonce": d.nonce,
        })
    });
    json!({
        "verified": report.verified(),
        "exit_code": report.exit_code(),
        "failure": failure,
        "mode": if report.simulator { "SIMULATOR" } else { "AWS" },
        "root_sha256": report.root_sha256,
        "judged_at": report.judged_at,
        "document": document,
        "checks": report.checks.iter().map(attest_check_json).collect::<Vec<_>>(),
    })
}

fn skip_line(name: &str, s: &Skipped) -> String {
    match s.class {
        Some(_) => format!("FAIL  {name}: {}\n", s.reason),
        None => format!("skip  {name}: {}\n", s.reason),
    }
}

/// The human-readable `all` report: one section per step (each with its own verdict
/// line), then the overall `VERIFIED` or `FAILED (exit N)`.
pub fn render_all_text(report: &AllReport) -> String {
    let mut out = String::from("== attestation ==\n");
    out.push_str(&render_attest_text(&report.attest));
    out.push_str("== log ==\n");
    match &report.log {
        Ok(l) => out.push_str(&render_text(l)),
        Err(s) => out.push_str(&skip_line("log", s)),
    }
    if let Some(h) = &report.history {
        out.push_str("== history ==\n");
        match h {
            Ok(c) => {
                out.push_str(&check_line(c));
                out.push('\n');
            }
            Err(s) => out.push_str(&skip_line("consistency", s)),
        }
    }
    if let Some(s) = &report.save {
        out.push_str("== save ==\n");
        match s {
            Ok(d) => out.push_str(&format!("ok    save: {d}\n")),
            Err(e) => out.push_str(&format!("FAIL  save: {e}\n")),
        }
    }
    let code = report.exit_code();
    if code == 0 {
        if report.attest.simulator {
            out.push_str("ALL VERIFIED (SIMULATOR: proves nothing about hardware)\n");
        } else {
            out.push_str("ALL VERIFIED\n");
        }
    } else {
        let class = report.first_failure_class().map(|c| c.name()).unwrap_or("fetch");
        out.push_str(&format!("FAILED (exit {code}, {class})\n"));
    }
    out
}

fn skipped_json(s: &Skipped) -> Value {
    json!({
        "skipped": true,
        "reason": s.reason,
        "class": s.class.map(|c| c.name()),
    })
}

/// The machine-readable `all` report:
/// `{verified, exit_code, failure: null | {class}, attested_key, attestation: {...as
/// attest}, log: {...as log} | {skipped, reason, class}, history: null | {name, ok,
/// detail | error, class, exit_code} | {skipped, ...}, save: null | {ok, detail | error}}`.
pub fn render_all_json(report: &AllReport) -> Value {
    let log = match &report.log {
        Ok(l) => render_json(l),
        Err(s) => skipped_json(s),
    };
    let history = report.history.as_ref().map(|h| match h {
        Ok(c) => check_json(c),
        Err(s) => skipped_json(s),
    });
    let save = report.save.as_ref().map(|s| match s {
        Ok(d) => json!({ "ok": true, "detail": d }),
        Err(e) => json!({ "ok": false, "error": e }),
    });
    json!({
        "verified": report.exit_code() == 0,
        "exit_code": report.exit_code(),
        "failure": report.first_failure_class().map(|c| json!({ "class": c.name() })),
        "attested_key": report.attested_key,
        "attestation": render_attest_json(&report.attest),
        "log": log,
        "history": history,
        "save": save,
    })
}
