//! Everything the host, the enclave and the auditor must agree on byte for byte:
//! addresses, framing, the request/response protocol, the log leaf format, RFC 9162
//! hashing and proofs, C2SP checkpoints, signed notes and witness cosignatures, and
//! the attestation commitment.
//!
//! Nothing here does I/O except [`connection`] and [`state_lock`] (behind the `io`
//! feature), so the auditor's tool links this crate without an async runtime.
#![forbid(unsafe_code)]

pub mod addr;
pub mod commitment;
pub mod cosignature;
pub mod frame;
pub mod ids;
pub mod leaf;
pub mod merkle;
pub mod note;
pub mod protocol;

#[cfg(feature = "io")]
pub mod connection;
#[cfg(feature = "io")]
pub mod state_lock;

/// Version of the host ↔ enclave protocol; `Hello` refuses a mismatch. 5: `Restore`
/// became `RestoreBegin` / `RestoreLeaves` / `RestoreEnd` (a tail longer than one frame),
/// and `Unseal` (a data key from the host) became `UnsealKms` (the enclave asks KMS).
/// 6: witnesses in the configuration, tokens held until `Witnessed` releases them.
pub const PROTOCOL_VERSION: u32 = 6;

/// Token lifetime bounds the enclave enforces, in seconds (ARCHITECTURE §2.1).
pub const TTL_MIN_SECONDS: u64 = 60;
pub const TTL_MAX_SECONDS: u64 = 3600;
