//! The leaves the monitor reads for what they say about keys and restarts (with
//! `--key`: their contents are operator-level, ARCHITECTURE §5), and the checks on them.
//!
//! - `enclave.genesis` (index 0) and `enclave.boot` (every restart, appended right
//!   after a `Restore`) record the enclave's mode, token key id, checkpoint key and
//!   configuration: a boot must name the same checkpoint key and configuration the
//!   enclave attested, and a token key the log already introduced; otherwise the log
//!   was continued by an enclave that is not the one it claims to be.
//! - `key.rotated` introduces a token key (`new_kid`): every key the attested JWKS
//!   holds must have been introduced by one of these leaves (or genesis/boot).
//!
//! Whether a restart *continued* the log is not visible in the boot leaf itself: it is
//! the consistency proof from the last checkpoint seen to the first one after the boot
//! that shows it (a restore from a truncated log cannot produce one).

use sealgate_shared::commitment::Commitment;
use sealgate_shared::leaf::{self, KIND_BOOT, KIND_GENESIS, KIND_KEY_ROTATED};
use serde::Deserialize;

/// The configuration a boot record names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BootConfig {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub ttl_min_seconds: u64,
    pub ttl_max_seconds: u64,
    pub log_origin: String,
}

/// `data` of `enclave.genesis` and `enclave.boot`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BootRecord {
    pub mode: String,
    pub sealing: String,
    pub pcr0: String,
    pub token_kid: String,
    pub checkpoint_key: String,
    pub config: BootConfig,
}

/// `data` of `key.rotated`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KeyRotated {
    pub old_kid: String,
    pub new_kid: String,
    pub old_key_retire_at: u64,
}

/// A leaf the monitor cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Genesis(BootRecord),
    Boot(BootRecord),
    Rotated(KeyRotated),
}

/// The event a readable leaf records, if it is one of the kinds above. The envelope
/// was already checked by the scan; a leaf of one of these kinds whose `data` is not
/// the documented shape is an error (the enclave writes them, so it is not the
/// enclave's).
pub fn read_event(bytes: &[u8]) -> Result<Option<Event>, String> {
    let envelope = leaf::parse(bytes).map_err(|e| e.to_string())?;
    let boot = |data| serde_json::from_value::<BootRecord>(data).map_err(|e| format!("{} data: {e}", envelope.kind));
    match envelope.kind.as_str() {
        KIND_GENESIS => Ok(Some(Event::Genesis(boot(envelope.data.clone())?))),
        KIND_BOOT => Ok(Some(Event::Boot(boot(envelope.data.clone())?))),
        KIND_KEY_ROTATED => serde_json::from_value::<KeyRotated>(envelope.data)
            .map(|r| Some(Event::Rotated(r)))
            .map_err(|e| format!("{KIND_KEY_ROTATED} data: {e}")),
        _ => Ok(None),
    }
}

/// Where a boot record differs from the attested commitment (empty when it does not).
pub fn boot_differences(boot: &BootRecord, c: &Commitment) -> Vec<String> {
    let mut out = Vec::new();
    let mut differs = |field: &str, logged: String, attested: String| {
        out.push(format!("{field}: the leaf says {logged}, the attestation {attested}"));
    };
    if boot.checkpoint_key != c.checkpoint_key {
        differs(
            "checkpoint_key",
            format!("{:?}", boot.checkpoint_key),
            format!("{:?}", c.checkpoint_key),
        );
    }
    if boot.mode != c.mode {
        differs("mode", format!("{:?}", boot.mode), format!("{:?}", c.mode));
    }
    if boot.config.issuer != c.issuer {
        differs("issuer", format!("{:?}", boot.config.issuer), format!("{:?}", c.issuer));
    }
    if boot.config.audiences != c.audiences {
        differs(
            "audiences",
            format!("{:?}", boot.config.audiences),
            format!("{:?}", c.audiences),
        );
    }
    if (boot.config.ttl_min_seconds, boot.config.ttl_max_seconds) != (c.ttl_min_seconds, c.ttl_max_seconds) {
        differs(
            "ttl bounds",
            format!("{}-{}", boot.config.ttl_min_seconds, boot.config.ttl_max_seconds),
            format!("{}-{}", c.ttl_min_seconds, c.ttl_max_seconds),
        );
    }
    if boot.config.log_origin != c.log_origin {
        differs(
            "log_origin",
            format!("{:?}", boot.config.log_origin),
            format!("{:?}", c.log_origin),
        );
    }
    out
}
