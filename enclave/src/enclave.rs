//! The enclave's request handler: one function per operation, each validating its
//! input and answering a [`Reply`]. Nothing here panics on what the host sends; every
//! failure is a typed [`WireError`] for that request only.

use crate::keys::{KeyError, Keys, SealedStore};
use crate::log::{Log, LogError};
use crate::nsm::Nsm;
use crate::{config, jwt, now_millis};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use sealgate_shared::commitment::{Commitment, COMMITMENT_VERSION};
use sealgate_shared::leaf::{
    self, Origin, TokenIssued, KIND_BOOT, KIND_GENESIS, KIND_KEY_ROTATED, KIND_TOKEN_ISSUED, MAX_HOST_EVENT_BYTES,
};
use sealgate_shared::merkle::{self, Hash};
use sealgate_shared::note::{self, Checkpoint, VerifierKey};
use sealgate_shared::protocol::*;
use sealgate_shared::{ids, PROTOCOL_VERSION};
use serde::Serialize;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::sync::{Mutex, MutexGuard, OnceLock};

fn err(code: ErrorCode, msg: impl Into<String>) -> WireError {
    WireError::new(code, msg)
}

impl From<LogError> for WireError {
    fn from(e: LogError) -> Self {
        let code = match e {
            LogError::NeedsRestore => ErrorCode::NotReady,
            LogError::Backpressure(_) => ErrorCode::Backpressure,
            LogError::Restore(_) => ErrorCode::RestoreRejected,
            LogError::Encode(_) => ErrorCode::Internal,
            LogError::AlreadyLive | LogError::AckOutOfRange { .. } | LogError::AlreadyAcked { .. } => {
                ErrorCode::BadRequest
            }
        };
        err(code, e.to_string())
    }
}

/// What `enclave.genesis` and `enclave.boot` leaves record.
#[derive(Serialize)]
struct BootRecord<'a> {
    mode: &'static str,
    pcr0: String,
    token_kid: String,
    checkpoint_key: String,
    config: &'a EnclaveConfig,
}

pub struct Enclave {
    mode: Mode,
    keys: Keys,
    store: SealedStore,
    nsm: Box<dyn Nsm>,
    rng: SystemRandom,
    /// Set once: from the sealed state at boot, or from the first `Hello`.
    config: OnceLock<EnclaveConfig>,
    /// `None` until configured.
    log: Mutex<Option<Log>>,
}

impl Enclave {
    /// Boots from `store`: restores sealed keys (the log then awaits `Restore`) or
    /// generates new ones (sealed at the first `Hello`, with the configuration).
    pub fn boot(mode: Mode, store: SealedStore, nsm: Box<dyn Nsm>) -> Result<Self, KeyError> {
        let (keys, config, log) = match store.load()? {
            Some((keys, Some(cfg))) => {
                let log = Log::awaiting_restore(&keys.leaf_mac_key);
                (keys, Some(cfg), Some(log))
            }
            Some((keys, None)) => (keys, None, None),
            None => (Keys::generate()?, None, None),
        };
        let cell = OnceLock::new();
        if let Some(cfg) = config {
            let _ = cell.set(cfg);
        }
        Ok(Self {
            mode,
            keys,
            store,
            nsm,
            rng: SystemRandom::new(),
            config: cell,
            log: Mutex::new(log),
        })
    }

    /// The kid of the key new tokens are signed with.
    pub fn token_kid(&self) -> String {
        self.keys.current_token().public.kid.clone()
    }

    /// Handles one request. Never panics on host input.
    pub fn handle(&self, op: Op) -> Reply {
        let result = match op {
            Op::Hello {
                protocol_version,
                config,
            } => self.hello(protocol_version, config).map(Reply::Hello),
            Op::Attest { nonce } => self
                .attest(nonce.as_ref().map(|n| n.as_slice()))
                .map(Reply::Attestation),
            Op::MintToken(req) => self.mint(req).map(Reply::Minted),
            Op::Append { kind, event } => self.append(&kind, &event).map(Reply::Appended),
            Op::Ack { size } => self.ack(size).map(Reply::Checkpoint),
            Op::Unacked { from } => self.with_log(|log| Ok(log.unacked_from(from)?)).map(Reply::Leaves),
            Op::Checkpoint => self.checkpoint().map(Reply::Checkpoint),
            Op::RotateKey { caller } => self.rotate(&caller).map(Reply::Rotated),
            Op::Restore {
                checkpoint,
                frontier,
                tail,
            } => self.restore(&checkpoint, frontier, &tail).map(Reply::Restored),
        };
        result.unwrap_or_else(Reply::Error)
    }

    fn lock(&self) -> MutexGuard<'_, Option<Log>> {
        // A poisoned lock means a panic elsewhere; the log state itself is still
        // consistent (every mutation completes before it can fail), so keep serving.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_log<T>(&self, f: impl FnOnce(&mut Log) -> Result<T, WireError>) -> Result<T, WireError> {
        let mut guard = self.lock();
        let log = guard
            .as_mut()
            .ok_or_else(|| err(ErrorCode::NotReady, "send Hello first"))?;
        f(log)
    }

    fn config(&self) -> Result<&EnclaveConfig, WireError> {
        self.config
            .get()
            .ok_or_else(|| err(ErrorCode::NotReady, "send Hello first"))
    }

    fn checkpoint_key(&self, origin: &str) -> Result<VerifierKey, WireError> {
        VerifierKey::new(origin, self.keys.checkpoint_public()).map_err(|e| err(ErrorCode::Internal, e.to_string()))
    }

    fn boot_record<'a>(&'a self, cfg: &'a EnclaveConfig) -> Result<BootRecord<'a>, WireError> {
        Ok(BootRecord {
            mode: self.mode.as_str(),
            pcr0: hex::encode(self.nsm.pcr0()),
            token_kid: self.token_kid(),
            checkpoint_key: self.checkpoint_key(&cfg.log_origin)?.to_string(),
            config: cfg,
        })
    }

    fn hello(&self, version: u32, proposed: EnclaveConfig) -> Result<HelloReply, WireError> {
        if version != PROTOCOL_VERSION {
            return Err(err(
                ErrorCode::Version,
                format!("enclave speaks protocol {PROTOCOL_VERSION}, host sent {version}"),
            ));
        }
        let mut guard = self.lock();
        let cfg = match self.config.get() {
            Some(sealed) if *sealed != proposed => {
                return Err(err(
                    ErrorCode::ConfigMismatch,
                    format!("this enclave is sealed to {sealed:?}; the host proposed {proposed:?}"),
                ))
            }
            Some(sealed) => sealed,
            None => {
                config::validate(&proposed).map_err(|m| err(ErrorCode::BadRequest, m))?;
                self.store
                    .save(&self.keys, Some(&proposed))
                    .map_err(|e| err(ErrorCode::Internal, format!("sealing failed: {e}")))?;
                let cfg = self.config.get_or_init(|| proposed);
                let mut log = Log::fresh(&self.keys.leaf_mac_key);
                log.append(Origin::Enclave, KIND_GENESIS, &self.boot_record(cfg)?, now_millis())?;
                *guard = Some(log);
                cfg
            }
        };
        let head = guard
            .as_ref()
            .map(|l| l.head())
            .ok_or_else(|| err(ErrorCode::Internal, "log missing"))?;
        Ok(HelloReply {
            protocol_version: PROTOCOL_VERSION,
            mode: self.mode,
            config: cfg.clone(),
            token_keys: self.keys.token_keys().served(now_millis() / 1000),
            checkpoint_key: self.checkpoint_key(&cfg.log_origin)?.to_string(),
            log: head,
        })
    }

    pub fn commitment(&self) -> Result<Commitment, WireError> {
        let cfg = self.config()?;
        let mut thumbprints: Vec<String> = self
            .keys
            .token_keys()
            .served(now_millis() / 1000)
            .into_iter()
            .map(|k| k.kid)
            .collect();
        thumbprints.sort();
        Ok(Commitment {
            version: COMMITMENT_VERSION.into(),
            mode: self.mode.as_str().into(),
            issuer: cfg.issuer.clone(),
            audiences: cfg.audiences.clone(),
            ttl_min_seconds: cfg.ttl_min_seconds,
            ttl_max_seconds: cfg.ttl_max_seconds,
            log_origin: cfg.log_origin.clone(),
            jwk_thumbprints: thumbprints,
            checkpoint_key: self.checkpoint_key(&cfg.log_origin)?.to_string(),
        })
    }

    fn attest(&self, nonce: Option<&[u8]>) -> Result<Attestation, WireError> {
        let commitment = self.commitment()?;
        let document = self
            .nsm
            .attest(Some(&commitment.digest()), nonce, None)
            .map_err(|e| err(ErrorCode::BadRequest, format!("attestation refused: {e}")))?;
        Ok(Attestation {
            document: ByteBuf::from(document),
            commitment,
        })
    }

    fn mint(&self, r: MintRequest) -> Result<Minted, WireError> {
        let cfg = self.config()?;
        let bad = |m: String| err(ErrorCode::BadRequest, m);
        if !ids::valid_id(&r.workspace) || !ids::valid_id(&r.agent) || !r.task.as_deref().is_none_or(ids::valid_id) {
            return Err(bad(
                "workspace, agent and task ids must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}".into(),
            ));
        }
        if !cfg.audiences.contains(&r.audience) {
            return Err(bad(format!(
                "audience {:?} is not in the allow-list {:?}",
                r.audience, cfg.audiences
            )));
        }
        if r.ttl_seconds < cfg.ttl_min_seconds || r.ttl_seconds > cfg.ttl_max_seconds {
            return Err(bad(format!(
                "ttl_seconds must be within [{}, {}]",
                cfg.ttl_min_seconds, cfg.ttl_max_seconds
            )));
        }
        if !config::printable(&r.caller, 128) {
            return Err(bad("caller must be 1-128 printable characters".into()));
        }
        let now = now_millis();
        let iat = now / 1000;
        let exp = iat + r.ttl_seconds;
        // The jti is time-ordered like a UUIDv7: 48 bits of milliseconds, then 80
        // random bits. Unique and unguessable all the same, and the host's jti index
        // then grows at its right edge instead of dirtying a random page per token.
        let mut raw = [0u8; 16];
        raw[..6].copy_from_slice(&now.to_be_bytes()[2..]);
        self.rng
            .fill(&mut raw[6..])
            .map_err(|_| err(ErrorCode::Internal, "RNG failed"))?;
        let jti = hex::encode(raw);
        let sub = ids::subject(&r.workspace, &r.agent, r.task.as_deref());
        let fields = jwt::TokenFields {
            issuer: &cfg.issuer,
            subject: &sub,
            audience: &r.audience,
            workspace: &r.workspace,
            agent: &r.agent,
            iat,
            exp,
            jti: &jti,
        };
        let key = self.keys.current_token();
        let token = jwt::sign(key.signer.as_ref(), &key.jwt_header, &fields)
            .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
        let issued = TokenIssued {
            jti: jti.clone(),
            sub,
            aud: r.audience,
            iat,
            exp,
            token_sha256: hex::encode(Sha256::digest(token.as_bytes())),
            caller: r.caller,
        };
        // The signature and its leaf leave the enclave together or not at all.
        let leaf = self.with_log(|log| Ok(log.append(Origin::Enclave, KIND_TOKEN_ISSUED, &issued, now)?))?;
        Ok(Minted {
            token,
            jti,
            iat,
            exp,
            leaf,
        })
    }

    fn append(&self, kind: &str, event: &str) -> Result<LeafRecord, WireError> {
        if leaf::is_enclave_only(kind) {
            return Err(err(
                ErrorCode::Forbidden,
                format!("kind {kind:?} is written only by the enclave"),
            ));
        }
        if !leaf::valid_host_kind(kind) {
            return Err(err(
                ErrorCode::BadRequest,
                format!("kind {kind:?} must match [a-z0-9][a-z0-9._-]{{0,63}}"),
            ));
        }
        if event.len() > MAX_HOST_EVENT_BYTES {
            return Err(err(
                ErrorCode::BadRequest,
                format!("event exceeds {MAX_HOST_EVENT_BYTES} bytes"),
            ));
        }
        let data: serde_json::Value =
            serde_json::from_str(event).map_err(|e| err(ErrorCode::BadRequest, format!("event is not JSON: {e}")))?;
        if !data.is_object() {
            return Err(err(ErrorCode::BadRequest, "event must be a JSON object"));
        }
        self.with_log(|log| Ok(log.append(Origin::Host, kind, &data, now_millis())?))
    }

    fn sign_checkpoint(&self, size: u64, root: Hash) -> Result<SignedCheckpoint, WireError> {
        let origin = &self.config()?.log_origin;
        let body = Checkpoint {
            origin: origin.clone(),
            size,
            root,
        }
        .body();
        let sig = self.keys.checkpoint.sign(body.as_bytes());
        let sig: [u8; 64] = sig
            .as_ref()
            .try_into()
            .map_err(|_| err(ErrorCode::Internal, "signature length"))?;
        let id = note::key_id(origin, &self.keys.checkpoint_public());
        Ok(SignedCheckpoint {
            size,
            note: note::assemble(&body, origin, id, &sig),
        })
    }

    fn ack(&self, size: u64) -> Result<SignedCheckpoint, WireError> {
        let (size, root) = self.with_log(|log| Ok(log.ack(size)?))?;
        self.sign_checkpoint(size, root)
    }

    fn checkpoint(&self) -> Result<SignedCheckpoint, WireError> {
        let (size, root) = self.with_log(|log| {
            log.ready()?;
            Ok(log.acked_root())
        })?;
        self.sign_checkpoint(size, root)
    }

    fn restore(&self, checkpoint: &str, frontier: Vec<ByteBuf>, tail: &[TailLeaf]) -> Result<LogHead, WireError> {
        let cfg = self.config()?;
        let rejected = |m: String| err(ErrorCode::RestoreRejected, m);
        let checkpoint = if checkpoint.is_empty() {
            None
        } else {
            let vk = self.checkpoint_key(&cfg.log_origin)?;
            Some(vk.open(checkpoint).map_err(|e| rejected(format!("checkpoint: {e}")))?)
        };
        let frontier = frontier
            .iter()
            .map(|h| merkle::to_hash(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| rejected(e.to_string()))?;
        let record = self.boot_record(cfg)?;
        self.with_log(|log| {
            log.restore(checkpoint, frontier, tail)?;
            // Record the restart itself; a log that lost even its genesis starts over.
            let kind = if log.head().size == 0 { KIND_GENESIS } else { KIND_BOOT };
            log.append(Origin::Enclave, kind, &record, now_millis())?;
            Ok(log.head())
        })
    }

    /// Rotates the token key: seals the new key set, then installs it and records
    /// `key.rotated`. The old key stays published until `now + ttl_max`, when every
    /// token it signed has expired. Refused while the log cannot take the leaf, so a
    /// rotation never happens unrecorded.
    fn rotate(&self, caller: &str) -> Result<Rotated, WireError> {
        let cfg = self.config()?.clone();
        if !config::printable(caller, 128) {
            return Err(err(ErrorCode::BadRequest, "caller must be 1-128 printable characters"));
        }
        let leaf = {
            let mut guard = self.lock();
            let log = guard
                .as_mut()
                .ok_or_else(|| err(ErrorCode::NotReady, "send Hello first"))?;
            log.can_append()?;
            let now = now_millis() / 1000;
            let retire_at = now + cfg.ttl_max_seconds;
            let old_kid = self.token_kid();
            let next = self
                .keys
                .rotated(now, retire_at)
                .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
            self.store
                .save_with(&self.keys, &next, Some(&cfg))
                .map_err(|e| err(ErrorCode::Internal, format!("sealing failed: {e}")))?;
            let new_kid = next.current.public.kid.clone();
            self.keys.install(next);
            let record = serde_json::json!({
                "old_kid": old_kid, "new_kid": new_kid, "old_key_retire_at": retire_at, "caller": caller,
            });
            log.append(Origin::Enclave, KIND_KEY_ROTATED, &record, now_millis())?
        };
        Ok(Rotated {
            hello: self.hello(PROTOCOL_VERSION, cfg)?,
            leaf,
        })
    }
}
