//! What the monitor reports: one [`Finding`] per line, `OK`, `VIOLATION` or `ERROR`,
//! with a stable kind (`checkpoint.rollback`, `jwks.unattested_key`, …) and a detail
//! for people. Scripts read `--json` lines or the exit code, which is the
//! [`FailureClass`] of the first violation (the classes `log`, `attest` and `all` use).

use crate::report::FailureClass;
use serde_json::{json, Value};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something was checked and holds (or, for `leaves`, `witnesses`, what is not
    /// checked and why).
    Ok,
    /// The host or the enclave broke a promise: exits unless `--keep-going`.
    Violation,
    /// The monitor could not check this round (host unreachable, malformed answer); it
    /// says nothing about honesty, so the monitor retries next round.
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Violation => "VIOLATION",
            Level::Error => "ERROR",
        }
    }
}

/// The kinds of finding; stable names for scripts and `--post` receivers.
pub mod kind {
    pub const START: &str = "monitor.start";
    pub const WITNESSES: &str = "witnesses";
    pub const LEAVES: &str = "leaves";
    pub const ATTESTATION: &str = "attestation";
    pub const ATTESTATION_FAILED: &str = "attestation.failed";
    pub const CHECKPOINT: &str = "checkpoint";
    pub const CHECKPOINT_SIGNATURE: &str = "checkpoint.signature";
    pub const CHECKPOINT_ROLLBACK: &str = "checkpoint.rollback";
    pub const CHECKPOINT_FORK: &str = "checkpoint.fork";
    pub const CHECKPOINT_KEY_CHANGED: &str = "checkpoint.key_changed";
    pub const CHECKPOINT_COSIGNATURES: &str = "checkpoint.cosignatures";
    pub const JWKS_KEY_ADDED: &str = "jwks.key_added";
    pub const JWKS_KEY_RETIRED: &str = "jwks.key_retired";
    pub const JWKS_UNATTESTED_KEY: &str = "jwks.unattested_key";
    pub const KEY_ROTATED: &str = "key.rotated";
    pub const KEY_ROTATION_UNLOGGED: &str = "key.rotation_unlogged";
    pub const ENCLAVE_RESTARTED: &str = "enclave.restarted";
    pub const ENCLAVE_BOOT_MISMATCH: &str = "enclave.boot_mismatch";
    pub const ENCLAVE_GENESIS_MISPLACED: &str = "enclave.genesis_misplaced";
    pub const LOG_ENTRIES: &str = "log.entries";
    pub const FETCH: &str = "fetch";
    pub const STATE: &str = "state";
    pub const POST: &str = "post";
}

/// One line of monitor output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub kind: &'static str,
    pub detail: String,
    /// For violations and errors: the class, hence the exit code.
    pub class: Option<FailureClass>,
}

impl Finding {
    pub fn ok(kind: &'static str, detail: impl Into<String>) -> Self {
        Finding {
            level: Level::Ok,
            kind,
            detail: detail.into(),
            class: None,
        }
    }

    pub fn violation(kind: &'static str, class: FailureClass, detail: impl Into<String>) -> Self {
        Finding {
            level: Level::Violation,
            kind,
            detail: detail.into(),
            class: Some(class),
        }
    }

    pub fn error(kind: &'static str, class: FailureClass, detail: impl Into<String>) -> Self {
        Finding {
            level: Level::Error,
            kind,
            detail: detail.into(),
            class: Some(class),
        }
    }

    pub fn is_violation(&self) -> bool {
        self.level == Level::Violation
    }

    /// `OK        checkpoint: …` — the level padded so the kinds line up.
    pub fn text(&self) -> String {
        format!("{:<9} {}: {}", self.level.as_str(), self.kind, self.detail)
    }

    /// `{level, kind, detail, class, exit_code, url, at}`: one JSON line (`--json`) and
    /// the body `--post` sends.
    pub fn json(&self, url: &str, at: u64) -> Value {
        json!({
            "level": self.level.as_str(),
            "kind": self.kind,
            "detail": self.detail,
            "class": self.class.map(|c| c.name()),
            "exit_code": self.class.map(|c| c.exit_code()),
            "url": url,
            "at": at,
        })
    }
}
