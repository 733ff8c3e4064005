//! Host ↔ enclave messages. Every request carries an id chosen by the host, and the
//! response echoes it, so one connection carries many requests at once.
//!
//! The operation set is deliberately small and has no "sign these bytes": the enclave
//! builds every token and every leaf itself from validated fields (DESIGN §2.1, §2.2).

use crate::commitment::Commitment;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    pub reply: Reply,
}

/// Configuration the host proposes at `Hello`. On first boot the enclave adopts and
/// seals it; afterwards a different proposal is refused, so a host cannot quietly
/// change the issuer or audiences of an attested enclave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnclaveConfig {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub ttl_min_seconds: u64,
    pub ttl_max_seconds: u64,
    pub log_origin: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Sim,
    Nitro,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sim => "sim",
            Mode::Nitro => "nitro",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintRequest {
    pub workspace: String,
    pub agent: String,
    pub task: Option<String>,
    pub audience: String,
    pub ttl_seconds: u64,
    /// The API key id the host authenticated (recorded, host-reported).
    pub caller: String,
}

/// A log leaf as the enclave hands it out: its index, exact bytes, and a MAC under a
/// key only the enclave holds over `(index, leaf hash)`, so that after an enclave
/// restart the host can hand back leaves the enclave wrote but never checkpointed, and
/// the enclave can tell them from forgeries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafRecord {
    pub index: u64,
    pub bytes: ByteBuf,
    pub mac: ByteBuf,
}

/// A stored leaf handed back at `Restore`: its index, leaf hash and the enclave's MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailLeaf {
    pub index: u64,
    pub hash: ByteBuf,
    pub mac: ByteBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Hello {
        protocol_version: u32,
        config: EnclaveConfig,
    },
    Attest {
        nonce: Option<ByteBuf>,
    },
    MintToken(MintRequest),
    /// A host-witnessed event: `kind` (not enclave-only) and a JSON object as text.
    Append {
        kind: String,
        event: String,
    },
    /// The host has durably stored every leaf below `size`; answers a checkpoint at
    /// exactly `size`.
    Ack {
        size: u64,
    },
    /// Leaves from `from` that the host has not acknowledged.
    Unacked {
        from: u64,
    },
    /// The latest signed checkpoint (at the acknowledged size).
    Checkpoint,
    /// After an enclave restart: the last signed checkpoint, the frontier at its size,
    /// and the MAC'd leaves the host holds beyond it (by hash: the enclave needs only
    /// the hashes, which keeps ~12k leaves inside one frame).
    /// A new token signing key; the old one stays in the JWKS until its last token has
    /// expired. `caller` is the key id the host authenticated (recorded, host-reported).
    RotateKey {
        caller: String,
    },
    Restore {
        checkpoint: String,
        frontier: Vec<ByteBuf>,
        tail: Vec<TailLeaf>,
    },
}

/// The public half of a token signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenKey {
    pub kid: String,
    pub x: ByteBuf,
    pub y: ByteBuf,
    /// For a rotated-out key: when its last token has expired (Unix seconds); the
    /// JWKS stops serving it then. `None` for the current key.
    #[serde(default)]
    pub retire_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHead {
    pub size: u64,
    pub acked: u64,
    /// True after an enclave restart until the host sends `Restore`.
    pub needs_restore: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    pub protocol_version: u32,
    pub mode: Mode,
    pub config: EnclaveConfig,
    pub token_keys: Vec<TokenKey>,
    /// Signed-note verifier key of the checkpoint signer.
    pub checkpoint_key: String,
    pub log: LogHead,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Minted {
    pub token: String,
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
    pub leaf: LeafRecord,
}

/// The answer to `RotateKey`: the new key set (as `Hello` reports it) and the
/// `key.rotated` leaf, which the host commits before answering its caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotated {
    pub hello: HelloReply,
    pub leaf: LeafRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    pub size: u64,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    pub document: ByteBuf,
    pub commitment: Commitment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The request is malformed or violates a rule (bad subject, TTL, audience, kind).
    BadRequest,
    /// The log awaits `Restore`, or `Hello` has not configured the enclave yet.
    NotReady,
    /// `Hello` proposed a configuration other than the sealed one.
    ConfigMismatch,
    /// Protocol version differs.
    Version,
    /// The host tried to write an enclave-only kind.
    Forbidden,
    /// Too many leaves await acknowledgement; the host must commit and `Ack`.
    Backpressure,
    /// `Restore` evidence did not check out.
    RestoreRejected,
    /// The enclave failed internally (NSM, RNG); not the host's fault.
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Hello(HelloReply),
    Attestation(Attestation),
    Minted(Minted),
    Appended(LeafRecord),
    Checkpoint(SignedCheckpoint),
    Leaves(Vec<LeafRecord>),
    Restored(LogHead),
    Rotated(Rotated),
    Error(WireError),
}
