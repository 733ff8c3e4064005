//! The trusted half of sealgate.
//!
//! The enclave holds every private key (the ES256 token key, the Ed25519 checkpoint
//! key, the leaf MAC key) and the Merkle log's compact range, and answers the host's
//! requests over one framed protocol (`sealgate_shared::protocol`). It trusts nothing
//! the host says: every request is validated, every token is built here, and every
//! token's leaf is appended in the same step that signs it.
#![forbid(unsafe_code)]

pub mod config;
pub mod enclave;
pub mod jwt;
pub mod keys;
pub mod kms;
pub mod log;
pub mod nsm;
pub mod seal;
pub mod server;
pub mod signer;
pub mod witnessing;

/// Milliseconds since the Unix epoch by the enclave's own clock.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
