//! Host ↔ enclave messages. Every request carries an id chosen by the host, and the
//! response echoes it, so one connection carries many requests at once.
//!
//! The operation set is deliberately small and has no "sign these bytes": the enclave
//! builds every token and every leaf itself from validated fields (ARCHITECTURE §2.1, §2.2).
//!
//! Compatibility: host and enclave ship together, and a change to these types bumps
//! [`crate::PROTOCOL_VERSION`] instead of being negotiated. `Hello` refuses another
//! version; `Status` reports it, so a host checks it before unsealing a KMS-sealed enclave.

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
    /// The witnesses whose cosignatures release tokens: C2SP verifier keys of Ed25519
    /// `cosignature/v1` cosigners (`name+hex id+base64(0x04 ‖ key)`), distinct. Empty
    /// for none: tokens are then released once their leaf is durable, as before.
    #[serde(default)]
    pub witnesses: Vec<String>,
    /// How many distinct `witnesses` must cosign a checkpoint before the tokens it
    /// covers are released: 1..=len with witnesses, 0 without.
    #[serde(default)]
    pub witness_quorum: u32,
}

impl EnclaveConfig {
    /// "none", or "2 of 3: w1.example, w2.example, w3.example" (the vkeys' names).
    pub fn describe_witnesses(&self) -> String {
        crate::cosignature::describe(&self.witnesses, self.witness_quorum)
    }
}

/// Plain words for messages an operator reads (a refused start, a log line): "issuer
/// https://x, audiences a, b, token TTL 60-3600 s, log origin x/log, witnesses none".
impl std::fmt::Display for EnclaveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "issuer {}, audiences {}, token TTL {}-{} s, log origin {}, witnesses {}",
            self.issuer,
            self.audiences.join(", "),
            self.ttl_min_seconds,
            self.ttl_max_seconds,
            self.log_origin,
            self.describe_witnesses()
        )
    }
}

/// How the enclave keeps its private keys across restarts (ARCHITECTURE §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sealing {
    /// AES-256-GCM under a key file in the enclave's state directory (simulator).
    Sim,
    /// AES-256-GCM under a KMS data key released only to an attested enclave; the sealed
    /// state is ciphertext the host stores and hands back at `Unseal`.
    Kms,
}

impl Sealing {
    pub fn as_str(self) -> &'static str {
        match self {
            Sealing::Sim => "sim",
            Sealing::Kms => "kms",
        }
    }
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
    /// Set only by the grant path (never by `/v1/tokens`): the token's subject becomes
    /// `ws:<workspace>:grant:<grant>` and it carries the grant id as the
    /// `sealgate:grant` session tag. Validated like the other ids; exclusive with `task`.
    #[serde(default)]
    pub grant: Option<String>,
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

/// A stored leaf handed back in `RestoreLeaves`: its index, leaf hash and the enclave's MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailLeaf {
    pub index: u64,
    pub hash: ByteBuf,
    pub mac: ByteBuf,
}

/// Leaves per [`Op::RestoreLeaves`] the host sends. One encoded [`TailLeaf`] is ~90
/// bytes (a test pins the bound), so a chunk is ~370 KB: well inside [`crate::frame::MAX_FRAME`]
/// with room for the MACs to grow, and few enough round trips that restoring a million
/// leaves takes ~250 of them.
pub const RESTORE_CHUNK_LEAVES: usize = 4096;

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
    /// A new token signing key; the old one stays in the JWKS until its last token has
    /// expired. `caller` is the key id the host authenticated (recorded, host-reported).
    RotateKey {
        caller: String,
    },
    /// After an enclave restart, the first step of restoring its log: the last signed
    /// checkpoint (empty for none) and the frontier at its size. Then come the MAC'd
    /// leaves the host holds beyond it, in [`Op::RestoreLeaves`] chunks (a long tail does
    /// not fit one frame), and [`Op::RestoreEnd`]. The enclave checks each step as it
    /// arrives but adopts the restored log only at a matching end: until then it stays
    /// waiting for a restore, so a host that stops half-way leaves it un-restored, never
    /// half-restored. A new `RestoreBegin` discards a half-done restore. Any refusal
    /// abandons the restore; the host starts again with `RestoreBegin`.
    ///
    /// The enclave handles requests concurrently, so the host sends each step only after
    /// the previous one has been answered.
    RestoreBegin {
        checkpoint: String,
        frontier: Vec<ByteBuf>,
    },
    /// The next leaves of the tail, continuing the previous chunk exactly (by hash: the
    /// enclave needs only the hashes). At most [`RESTORE_CHUNK_LEAVES`] from this host.
    RestoreLeaves {
        leaves: Vec<TailLeaf>,
    },
    /// The end of the restore: the size it reaches (the checkpoint's plus every leaf
    /// sent) and the host's Merkle root at that size, both of which must match what the
    /// enclave built from the checked chunks.
    RestoreEnd {
        size: u64,
        root: ByteBuf,
    },
    /// What the enclave is and whether it is unsealed. Answered in every state, so the
    /// host can tell a locked KMS-sealed enclave from one that is ready for `Hello`.
    Status,
    /// KMS sealing, while locked: an attestation document whose `public_key` is the
    /// enclave's RSA-2048 recipient key (SPKI DER), for KMS's `Recipient` parameter.
    RecipientAttest {
        nonce: Option<ByteBuf>,
    },
    /// Removed: KMS's `CiphertextForRecipient` relayed by the host. A CMS to the recipient
    /// key authenticates nothing (anyone can build one), so a host could hand in a data key
    /// it chose (issue 11, break 1). Kept only so that an old host's frame is answered with
    /// [`ErrorCode::UnsealRejected`] instead of closing the connection; the enclave never
    /// uses its contents. Use [`Op::UnsealKms`].
    Unseal {
        ciphertext_for_recipient: ByteBuf,
        sealed_state: Option<ByteBuf>,
    },
    /// KMS sealing, while locked: the enclave itself calls KMS (`GenerateDataKey` on first
    /// boot, `Decrypt` of the stored `CiphertextBlob` on restart, both with `Recipient`)
    /// over TLS it terminates, through its KMS proxy. The host supplies where and as whom
    /// (not secret from it) and the ciphertexts it stored. A refused `UnsealKms` leaves the
    /// enclave locked; it can be retried.
    UnsealKms(KmsUnseal),
    /// With witnesses configured: a checkpoint this enclave signed since it started (an
    /// `Ack` answer) with the witnesses' cosignature lines appended. If a quorum of the
    /// configured witnesses validly cosigned it, the enclave releases every token whose
    /// leaf it covers ([`Reply::Released`]); otherwise it refuses with
    /// [`ErrorCode::WitnessRejected`] and keeps them.
    Witnessed {
        checkpoint: String,
    },
}

/// What `UnsealKms` needs from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsUnseal {
    pub region: String,
    /// The KMS key id, ARN or alias; the ARN KMS answers with is attested (`kms_key`).
    pub key_id: String,
    /// The TLS server name and `Host`: `kms.<region>.amazonaws.com` (the enclave refuses
    /// any other name unless it trusts a simulator CA).
    pub endpoint_host: String,
    /// The instance role's credentials, to sign the request (SigV4).
    pub credentials: AwsCredentials,
    /// The stored data key and sealed state (restart), or `None` on first boot.
    pub stored: Option<StoredSeal>,
}

/// AWS credentials for one signed request. `Debug` does not print the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The host's copy of a KMS-sealed enclave: the data key as KMS encrypted it and the
/// sealed state under that data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSeal {
    pub ciphertext_blob: ByteBuf,
    pub sealed_state: ByteBuf,
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
    /// True after an enclave restart until a restore ends (`RestoreEnd`).
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
    /// KMS sealing: the state this `Hello` sealed (the first one seals the configuration)
    /// for the host to store; `None` when nothing changed or the enclave seals locally.
    pub sealed_state: Option<ByteBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Minted {
    /// The token, or `None` when the configuration names witnesses: the enclave then
    /// holds it until a checkpoint covering its leaf carries a quorum of cosignatures
    /// and hands it out in [`Released`] (answering `Witnessed`), so a host can never
    /// hold a token whose leaf the witnesses have not seen.
    pub token: Option<String>,
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
    /// KMS sealing: the state sealed with the new key set, for the host to store with the
    /// `key.rotated` leaf; `None` when the enclave seals locally.
    pub sealed_state: Option<ByteBuf>,
}

/// The answer to `Status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnclaveStatus {
    pub protocol_version: u32,
    pub mode: Mode,
    pub sealing: Sealing,
    /// True while a KMS-sealed enclave waits for `Unseal`; every other operation is
    /// refused with [`ErrorCode::Locked`] until then.
    pub locked: bool,
    /// PCR0 of the running image, as the NSM reports it (for operators' error messages;
    /// auditors take it from an attestation document instead).
    pub pcr0: ByteBuf,
    /// KMS sealing: the newest sealed state, so a host that crashed before storing a
    /// `sealed_state` reply can store it now. `None` while locked, before the first
    /// `Hello`, or when the enclave seals locally.
    pub sealed_state: Option<ByteBuf>,
    /// The configuration the enclave is sealed to (`None` while locked or before the
    /// first `Hello`), so a host whose `Hello` was refused with `ConfigMismatch` can tell
    /// the operator exactly what the first start chose.
    #[serde(default)]
    pub config: Option<EnclaveConfig>,
    /// KMS sealing, once unsealed: the `CiphertextBlob` of the data key the enclave seals
    /// under, so a host that crashed before storing the `UnsealKms` answer can store it.
    #[serde(default)]
    pub ciphertext_blob: Option<ByteBuf>,
}

/// The answer to `RecipientAttest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientAttestation {
    /// An attestation document (COSE_Sign1) whose `public_key` is the recipient key.
    pub document: ByteBuf,
}

/// The answer to `UnsealKms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsealed {
    /// Whether the sealed state already holds a configuration (a restart: the log then
    /// awaits a restore); false on first boot, when the first `Hello` seals it.
    pub configured: bool,
    /// The kid of the current token key, to log which keys came back.
    pub token_kid: String,
    /// The KMS key's ARN as KMS reported it (attested as `kms_key`).
    pub kms_key: String,
    /// First boot: the new data key's `CiphertextBlob`, which the host stores before its
    /// first `Hello` (the sealed state it then gets is under this data key).
    pub ciphertext_blob: Option<ByteBuf>,
}

/// The answer to `Witnessed`: the tokens of every leaf below `size` the enclave still
/// held, in index order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    pub size: u64,
    pub tokens: Vec<ReleasedToken>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedToken {
    /// The index of the token's `token.issued` leaf.
    pub index: u64,
    pub token: String,
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
    /// The log awaits a restore, or `Hello` has not configured the enclave yet.
    NotReady,
    /// `Hello` proposed a configuration other than the sealed one.
    ConfigMismatch,
    /// Protocol version differs.
    Version,
    /// The host tried to write an enclave-only kind.
    Forbidden,
    /// Too many leaves, or too many bytes of leaves, await acknowledgement; the host must
    /// store them (`Unacked`) and `Ack` before the enclave appends (or mints) again.
    Backpressure,
    /// Restore evidence did not check out (a checkpoint, frontier, leaf MAC, gap, or an
    /// end that does not match); the restore is abandoned.
    RestoreRejected,
    /// The enclave failed internally (NSM, RNG); not the host's fault.
    Internal,
    /// A KMS-sealed enclave has not been unsealed yet: only `Status`, `RecipientAttest`
    /// and `UnsealKms` are answered.
    Locked,
    /// Unsealing was refused: KMS's CMS was not addressed to this enclave's recipient key,
    /// the sealed state does not open under the data key KMS released, or the host sent
    /// the removed `Unseal`. The enclave stays locked and can be unsealed again.
    UnsealRejected,
    /// The enclave's own call to KMS failed: KMS answered with an error (the message
    /// starts `KMS <op> answered <ExceptionName>:`), or the proxy, TLS or HTTP exchange
    /// failed. The enclave stays locked.
    Kms,
    /// `Witnessed` did not check out: not a checkpoint this enclave signed since it
    /// started, or fewer than a quorum of valid cosignatures from the configured
    /// witnesses. The tokens it would have released stay held.
    WitnessRejected,
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
    /// The size a restore under way has reached (answers `RestoreBegin` and
    /// `RestoreLeaves`).
    Restoring(u64),
    /// The restored log (answers `RestoreEnd`).
    Restored(LogHead),
    Rotated(Rotated),
    Status(EnclaveStatus),
    RecipientAttestation(RecipientAttestation),
    Unsealed(Unsealed),
    Released(Released),
    Error(WireError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;

    fn roundtrip_request(op: Op) {
        let req = Request { id: 9, op };
        let bytes = frame::encode(&req).expect("encode");
        let back: Request = frame::decode(frame::split(&bytes).expect("split")).expect("decode");
        assert_eq!(back, req);
    }

    fn roundtrip_reply(reply: Reply) {
        let resp = Response { id: 11, reply };
        let bytes = frame::encode(&resp).expect("encode");
        let back: Response = frame::decode(frame::split(&bytes).expect("split")).expect("decode");
        assert_eq!(back, resp);
    }

    fn hello() -> HelloReply {
        HelloReply {
            protocol_version: crate::PROTOCOL_VERSION,
            mode: Mode::Nitro,
            config: EnclaveConfig {
                issuer: "https://sealgate.example.com".into(),
                audiences: vec!["sts.amazonaws.com".into()],
                ttl_min_seconds: 60,
                ttl_max_seconds: 3600,
                log_origin: "sealgate.example.com/log".into(),
                witnesses: vec![],
                witness_quorum: 0,
            },
            token_keys: vec![TokenKey {
                kid: "k1".into(),
                x: ByteBuf::from(vec![1; 32]),
                y: ByteBuf::from(vec![2; 32]),
                retire_at: Some(99),
            }],
            checkpoint_key: "sealgate.example.com/log+abcd+AQID".into(),
            log: LogHead {
                size: 3,
                acked: 2,
                needs_restore: false,
            },
            sealed_state: Some(ByteBuf::from(vec![0xAA; 300])),
        }
    }

    /// A full chunk of the largest leaves (index near `u64::MAX`, 32-byte hash and MAC)
    /// fits one frame, with room to spare, and so does the reply.
    #[test]
    fn a_full_restore_chunk_fits_one_frame() {
        let leaves = (0..RESTORE_CHUNK_LEAVES as u64)
            .map(|i| TailLeaf {
                index: u64::MAX - i,
                hash: ByteBuf::from(vec![0xFF; 32]),
                mac: ByteBuf::from(vec![0xFF; 32]),
            })
            .collect();
        let req = Request {
            id: u64::MAX,
            op: Op::RestoreLeaves { leaves },
        };
        let bytes = frame::encode(&req).expect("a full chunk encodes within MAX_FRAME");
        assert!(bytes.len() < frame::MAX_FRAME / 2, "{} bytes", bytes.len());
        roundtrip_request(req.op);
        roundtrip_request(Op::RestoreBegin {
            checkpoint: "o\n3\nAAAA\n\n— o AAAA\n".into(),
            frontier: vec![ByteBuf::from(vec![1; 32]); 64],
        });
        roundtrip_request(Op::RestoreEnd {
            size: 7,
            root: ByteBuf::from(vec![2; 32]),
        });
        roundtrip_reply(Reply::Restoring(4099));
    }

    #[test]
    fn sealing_ops_roundtrip() {
        roundtrip_request(Op::Status);
        roundtrip_request(Op::RecipientAttest { nonce: None });
        roundtrip_request(Op::RecipientAttest {
            nonce: Some(ByteBuf::from(vec![7; 32])),
        });
        roundtrip_request(Op::Unseal {
            ciphertext_for_recipient: ByteBuf::from(vec![0x30, 0x80, 1, 2, 0, 0]),
            sealed_state: None,
        });
        roundtrip_request(Op::Unseal {
            ciphertext_for_recipient: ByteBuf::from(vec![0x30; 700]),
            sealed_state: Some(ByteBuf::from(vec![5; 2000])),
        });
        for stored in [
            None,
            Some(StoredSeal {
                ciphertext_blob: ByteBuf::from(vec![1; 180]),
                sealed_state: ByteBuf::from(vec![5; 2000]),
            }),
        ] {
            roundtrip_request(Op::UnsealKms(KmsUnseal {
                region: "eu-west-1".into(),
                key_id: "alias/sealgate".into(),
                endpoint_host: "kms.eu-west-1.amazonaws.com".into(),
                credentials: AwsCredentials {
                    access_key_id: "AKIDEXAMPLE".into(),
                    secret_access_key: "secret".into(),
                    session_token: Some("token".into()),
                },
                stored,
            }));
        }
    }

    #[test]
    fn sealing_replies_roundtrip() {
        for (sealing, locked, sealed) in [
            (Sealing::Kms, true, None),
            (Sealing::Kms, false, Some(ByteBuf::from(vec![1; 64]))),
            (Sealing::Sim, false, None),
        ] {
            roundtrip_reply(Reply::Status(EnclaveStatus {
                protocol_version: crate::PROTOCOL_VERSION,
                mode: Mode::Sim,
                sealing,
                locked,
                pcr0: ByteBuf::from(vec![3; 48]),
                sealed_state: sealed,
                config: (!locked).then(|| hello().config),
                ciphertext_blob: (!locked).then(|| ByteBuf::from(vec![2; 180])),
            }));
        }
        roundtrip_reply(Reply::RecipientAttestation(RecipientAttestation {
            document: ByteBuf::from(vec![0x84; 4000]),
        }));
        roundtrip_reply(Reply::Unsealed(Unsealed {
            configured: true,
            token_kid: "kid".into(),
            kms_key: "arn:aws:kms:eu-west-1:111122223333:key/k".into(),
            ciphertext_blob: Some(ByteBuf::from(vec![3; 180])),
        }));
        roundtrip_reply(Reply::Hello(hello()));
        let mut plain = hello();
        plain.sealed_state = None;
        roundtrip_reply(Reply::Hello(plain));
        roundtrip_reply(Reply::Rotated(Rotated {
            hello: hello(),
            leaf: LeafRecord {
                index: 4,
                bytes: ByteBuf::from(b"{}".to_vec()),
                mac: ByteBuf::from(vec![9; 32]),
            },
            sealed_state: Some(ByteBuf::from(vec![4; 100])),
        }));
        for code in [ErrorCode::Locked, ErrorCode::UnsealRejected, ErrorCode::Kms] {
            roundtrip_reply(Reply::Error(WireError::new(code, "no")));
        }
    }

    /// Credentials travel to the enclave, but never into a log line through `Debug`.
    #[test]
    fn credentials_debug_hides_the_secret() {
        let c = AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI".into(),
            session_token: Some("FwoGZXIvYXdzE".into()),
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(
            !shown.contains("wJalrXUtnFEMI") && !shown.contains("FwoGZXIvYXdzE"),
            "{shown}"
        );
    }

    /// The wire names are part of the protocol: renaming a variant breaks old peers
    /// silently, so the encodings of the sealing additions are pinned.
    #[test]
    fn sealing_wire_names_are_stable() {
        let cbor = |op: &Op| {
            let mut out = Vec::new();
            ciborium::into_writer(op, &mut out).expect("encode");
            ciborium::from_reader::<ciborium::Value, _>(out.as_slice()).expect("decode")
        };
        assert_eq!(cbor(&Op::Status), ciborium::Value::Text("Status".into()));
        let unseal = cbor(&Op::Unseal {
            ciphertext_for_recipient: ByteBuf::from(vec![1]),
            sealed_state: None,
        });
        let ciborium::Value::Map(outer) = unseal else {
            panic!("{unseal:?}")
        };
        assert_eq!(outer[0].0, ciborium::Value::Text("Unseal".into()));
        let ciborium::Value::Map(fields) = &outer[0].1 else {
            panic!("{outer:?}")
        };
        let names: Vec<_> = fields.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            names,
            vec![
                ciborium::Value::Text("ciphertext_for_recipient".into()),
                ciborium::Value::Text("sealed_state".into())
            ]
        );
        // Byte fields travel as CBOR byte strings, not arrays of integers.
        assert_eq!(fields[0].1, ciborium::Value::Bytes(vec![1]));
        assert_eq!(
            serde_json::to_value(Sealing::Kms).expect("json"),
            serde_json::json!("kms")
        );
        assert_eq!(Sealing::Sim.as_str(), "sim");
        assert_eq!(
            serde_json::to_value(ErrorCode::UnsealRejected).expect("json"),
            serde_json::json!("UnsealRejected")
        );
    }
}
