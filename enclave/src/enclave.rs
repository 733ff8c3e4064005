//! The enclave's request handler: one function per operation, each validating its
//! input and answering a [`Reply`]. Nothing here panics on what the host sends; every
//! failure is a typed [`WireError`] for that request only.
//!
//! With KMS sealing the enclave boots *locked*: it has no keys until it has fetched its
//! data key from KMS itself (`UnsealKms`; see [`Enclave::boot_locked`]). Until then every
//! other operation answers [`ErrorCode::Locked`].

use crate::keys::{KeyError, Keys, SealedStore};
use crate::kms::client::{blob_field, CallCredentials, KmsClient, KmsError, Target};
use crate::kms::{unwrap_enveloped_data, RecipientKey};
use crate::log::{Log, LogError};
use crate::nsm::Nsm;
use crate::witnessing::{Witnessing, WitnessingError};
use crate::{config, jwt, now_millis};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
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
            LogError::NeedsRestore | LogError::NoRestoreInProgress => ErrorCode::NotReady,
            LogError::Backpressure { .. } => ErrorCode::Backpressure,
            LogError::Restore(_) => ErrorCode::RestoreRejected,
            LogError::Encode(_) => ErrorCode::Internal,
            LogError::AlreadyLive | LogError::AckOutOfRange { .. } | LogError::AlreadyAcked { .. } => {
                ErrorCode::BadRequest
            }
        };
        err(code, e.to_string())
    }
}

/// `user_data` of a recipient attestation: says what the document is for, so it is never
/// mistaken for the commitment-bearing one auditors check (whose `user_data` is a digest).
pub const RECIPIENT_USER_DATA: &[u8] = b"sealgate kms recipient v1";

/// What `enclave.genesis` and `enclave.boot` leaves record.
#[derive(Serialize)]
struct BootRecord<'a> {
    mode: &'static str,
    sealing: &'static str,
    pcr0: String,
    token_kid: String,
    checkpoint_key: String,
    config: &'a EnclaveConfig,
}

impl From<WitnessingError> for WireError {
    fn from(e: WitnessingError) -> Self {
        let code = match e {
            WitnessingError::Full { .. } => ErrorCode::Backpressure,
            _ => ErrorCode::WitnessRejected,
        };
        err(code, e.to_string())
    }
}

impl From<KmsError> for WireError {
    fn from(e: KmsError) -> Self {
        err(ErrorCode::Kms, e.to_string())
    }
}

/// KMS sealing, once unsealed: which KMS key and which data key (as KMS encrypted it).
struct KmsSealed {
    key_arn: String,
    ciphertext_blob: Vec<u8>,
}

/// The keys and where their sealed form goes; present once the enclave is unsealed.
struct Vault {
    keys: Keys,
    store: SealedStore,
}

pub struct Enclave {
    mode: Mode,
    sealing: Sealing,
    nsm: Box<dyn Nsm>,
    rng: SystemRandom,
    /// Set once: at boot (simulator sealing) or by `Unseal` (KMS sealing).
    vault: OnceLock<Vault>,
    /// KMS sealing, while locked: the key KMS encrypts the data key to.
    recipient: Mutex<Option<RecipientKey>>,
    /// KMS sealing: the enclave's own KMS client (TLS ends here).
    kms: Option<KmsClient>,
    /// Held for the whole of an `UnsealKms` (across its KMS call), so two cannot race.
    unseal_gate: tokio::sync::Mutex<()>,
    /// Set once, by a successful `UnsealKms`.
    kms_sealed: OnceLock<KmsSealed>,
    /// KMS sealing: the only KMS key (ARN) accepted, from the measured command line.
    pinned_kms_key: Option<String>,
    /// Set once: from the sealed state when unsealed, or from the first `Hello`.
    config: OnceLock<EnclaveConfig>,
    /// `None` until configured.
    log: Mutex<Option<Log>>,
    /// Tokens held for witnesses; `None` until configured, or when the configuration
    /// names no witnesses (tokens then leave with their leaf). Locked after `log` when
    /// both are needed.
    witnessing: Mutex<Option<Witnessing>>,
}

impl Enclave {
    /// Boots with simulator sealing from `store`: restores sealed keys (the log then
    /// awaits `Restore`) or generates new ones (sealed at the first `Hello`, with the
    /// configuration).
    pub fn boot(mode: Mode, store: SealedStore, nsm: Box<dyn Nsm>) -> Result<Self, KeyError> {
        let (keys, config) = match store.load()? {
            Some((keys, config)) => (keys, config),
            None => (Keys::generate()?, None),
        };
        let enclave = Self::new(mode, Sealing::Sim, nsm, None, None);
        enclave.open_vault(Vault { keys, store }, config);
        Ok(enclave)
    }

    /// Boots with KMS sealing: no state of its own, only a fresh RSA-2048 recipient key
    /// and the client it reaches KMS with. The enclave stays locked until the host sends
    /// `UnsealKms` (with the ciphertexts it stored, after the first boot).
    ///
    /// `pinned_key` (`--kms-key-arn`): the only KMS key it takes a data key from; it asks
    /// KMS for that key whatever the host names, and refuses an answer for another.
    pub fn boot_locked(
        mode: Mode,
        nsm: Box<dyn Nsm>,
        kms: KmsClient,
        pinned_key: Option<String>,
    ) -> Result<Self, KeyError> {
        let recipient = RecipientKey::generate().map_err(|_| KeyError::Generate)?;
        let mut enclave = Self::new(mode, Sealing::Kms, nsm, Some(recipient), Some(kms));
        enclave.pinned_kms_key = pinned_key;
        Ok(enclave)
    }

    fn new(
        mode: Mode,
        sealing: Sealing,
        nsm: Box<dyn Nsm>,
        recipient: Option<RecipientKey>,
        kms: Option<KmsClient>,
    ) -> Self {
        Self {
            mode,
            sealing,
            nsm,
            rng: SystemRandom::new(),
            vault: OnceLock::new(),
            recipient: Mutex::new(recipient),
            kms,
            unseal_gate: tokio::sync::Mutex::new(()),
            kms_sealed: OnceLock::new(),
            pinned_kms_key: None,
            config: OnceLock::new(),
            log: Mutex::new(None),
            witnessing: Mutex::new(None),
        }
    }

    /// Installs unsealed keys; with a sealed configuration the log awaits `Restore`.
    fn open_vault(&self, vault: Vault, config: Option<EnclaveConfig>) {
        let mut log = self.lock();
        if let Some(cfg) = config {
            *log = Some(Log::awaiting_restore(&vault.keys.leaf_mac_key));
            self.start_witnessing(&cfg);
            let _ = self.config.set(cfg);
        }
        let _ = self.vault.set(vault);
    }

    /// Sets up the held-token store for a configuration that names witnesses. The
    /// configuration was validated when it was first sealed; one that no longer
    /// validates (it cannot, short of a changed validator) holds every token forever
    /// rather than release them unwitnessed.
    fn start_witnessing(&self, cfg: &EnclaveConfig) {
        if cfg.witnesses.is_empty() {
            return;
        }
        let w = match config::witnesses(cfg) {
            Ok(keys) => Witnessing::new(keys, cfg.witness_quorum as usize),
            Err(e) => {
                tracing::error!("the sealed witness configuration does not validate ({e}); no token will be released");
                Witnessing::new(Vec::new(), usize::MAX)
            }
        };
        *self.witnessing() = Some(w);
    }

    fn witnessing(&self) -> MutexGuard<'_, Option<Witnessing>> {
        self.witnessing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kid of the key new tokens are signed with (`None` while locked).
    pub fn token_kid(&self) -> Option<String> {
        self.vault.get().map(|v| v.keys.current_token().public.kid.clone())
    }

    pub fn sealing(&self) -> Sealing {
        self.sealing
    }

    fn vault(&self) -> Result<&Vault, WireError> {
        self.vault.get().ok_or_else(|| {
            err(
                ErrorCode::Locked,
                "the enclave is locked: it seals with KMS and awaits UnsealKms (Status, RecipientAttest and UnsealKms are answered)",
            )
        })
    }

    fn keys(&self) -> Result<&Keys, WireError> {
        Ok(&self.vault()?.keys)
    }

    /// Handles one request, including `UnsealKms`, which waits on the network. Never
    /// panics on host input.
    pub async fn serve(&self, op: Op) -> Reply {
        match op {
            Op::UnsealKms(u) => self
                .unseal_kms(u)
                .await
                .map(Reply::Unsealed)
                .unwrap_or_else(Reply::Error),
            op => self.handle(op),
        }
    }

    /// Handles one request that needs no network (everything but `UnsealKms`, which
    /// [`Enclave::serve`] answers). Never panics on host input.
    pub fn handle(&self, op: Op) -> Reply {
        let result = match op {
            Op::Status => Ok(Reply::Status(self.status())),
            Op::RecipientAttest { nonce } => self
                .recipient_attest(nonce.as_ref().map(|n| n.as_slice()))
                .map(Reply::RecipientAttestation),
            // Whatever it carries: a data key from the host is exactly what must never be
            // trusted (issue 11, break 1), so its contents are not even parsed.
            Op::Unseal { .. } => Err(err(
                ErrorCode::UnsealRejected,
                "Unseal with a host-supplied CiphertextForRecipient is no longer accepted: a CMS to the \
                 recipient key proves nothing about who chose the data key. The enclave fetches its data \
                 key from KMS itself (UnsealKms)",
            )),
            Op::UnsealKms(_) => Err(err(
                ErrorCode::Internal,
                "UnsealKms is answered by Enclave::serve, which can wait for KMS",
            )),
            op => self.vault().and_then(|_| self.handle_unsealed(op)),
        };
        result.unwrap_or_else(Reply::Error)
    }

    fn handle_unsealed(&self, op: Op) -> Result<Reply, WireError> {
        match op {
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
            Op::RestoreBegin { checkpoint, frontier } => {
                self.restore_begin(&checkpoint, &frontier).map(Reply::Restoring)
            }
            Op::RestoreLeaves { leaves } => self
                .with_log(|log| Ok(log.restore_leaves(&leaves)?))
                .map(Reply::Restoring),
            Op::RestoreEnd { size, root } => self.restore_end(size, &root).map(Reply::Restored),
            Op::Witnessed { checkpoint } => self.witnessed(&checkpoint).map(Reply::Released),
            Op::Status | Op::RecipientAttest { .. } | Op::Unseal { .. } | Op::UnsealKms(_) => Err(err(
                ErrorCode::Internal,
                "sealing operations are handled before the vault",
            )),
        }
    }

    fn status(&self) -> EnclaveStatus {
        // The configuration is sealed with the keys, so before the first `Hello` there is
        // nothing the host needs to store yet.
        let sealed_state = self
            .config
            .get()
            .and(self.vault.get())
            .and_then(|v| v.store.latest())
            .map(ByteBuf::from);
        EnclaveStatus {
            protocol_version: PROTOCOL_VERSION,
            mode: self.mode,
            sealing: self.sealing,
            locked: self.vault.get().is_none(),
            pcr0: ByteBuf::from(self.nsm.pcr0()),
            sealed_state,
            config: self.config.get().cloned(),
            ciphertext_blob: self.kms_sealed.get().map(|k| ByteBuf::from(k.ciphertext_blob.clone())),
        }
    }

    fn recipient_guard(&self) -> MutexGuard<'_, Option<RecipientKey>> {
        self.recipient.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn require_kms_locked(&self) -> Result<(), WireError> {
        if self.sealing != Sealing::Kms {
            return Err(err(
                ErrorCode::BadRequest,
                "this enclave seals with a local key (--seal sim); RecipientAttest and UnsealKms are for --seal kms",
            ));
        }
        if self.vault.get().is_some() {
            return Err(err(ErrorCode::BadRequest, "the enclave is already unsealed"));
        }
        Ok(())
    }

    /// An attestation document carrying the recipient key, for KMS's `Recipient`.
    fn recipient_attest(&self, nonce: Option<&[u8]>) -> Result<RecipientAttestation, WireError> {
        self.require_kms_locked()?;
        let guard = self.recipient_guard();
        let key = guard
            .as_ref()
            .ok_or_else(|| err(ErrorCode::Internal, "no recipient key while locked"))?;
        let document = self
            .nsm
            .attest(Some(RECIPIENT_USER_DATA), nonce, Some(key.spki_der()))
            .map_err(|e| err(ErrorCode::BadRequest, format!("attestation refused: {e}")))?;
        Ok(RecipientAttestation {
            document: ByteBuf::from(document),
        })
    }

    /// Fetches the data key from KMS over the enclave's own TLS connection and opens the
    /// stored sealed state with it (restart: `Decrypt` of the stored `CiphertextBlob`), or
    /// generates keys to be sealed under a new one (first boot: `GenerateDataKey`; the first
    /// `Hello` seals them with the configuration).
    ///
    /// The data key is trusted because of where it came from: KMS, authenticated by TLS to
    /// roots compiled into the enclave, answering for this enclave's attestation document,
    /// encrypted to a recipient key that never left the enclave. The host supplies only
    /// where, as whom and the ciphertexts it stored; it never sees the data key and cannot
    /// choose it, on first boot or on restart.
    ///
    /// A refused attempt replaces the recipient key (as the old host-relayed flow did):
    /// each `CiphertextForRecipient` is then opened at most once, so no message can be
    /// replayed against one key to probe the CMS layer (AES-CBC without integrity).
    async fn unseal_kms(&self, u: KmsUnseal) -> Result<Unsealed, WireError> {
        self.require_kms_locked()?;
        let client = self
            .kms
            .as_ref()
            .ok_or_else(|| err(ErrorCode::Internal, "KMS sealing without a KMS client"))?;
        let _gate = self.unseal_gate.lock().await;
        // Checked again under the gate: a concurrent UnsealKms may have just succeeded.
        if self.vault.get().is_some() {
            return Err(err(ErrorCode::BadRequest, "the enclave is already unsealed"));
        }
        let key = self
            .recipient_guard()
            .take()
            .ok_or_else(|| err(ErrorCode::Internal, "no recipient key while locked"))?;
        match self.fetch_and_open(client, &key, &u).await {
            Ok((vault, config, sealed)) => {
                let configured = config.is_some();
                let token_kid = vault.keys.current_token().public.kid.clone();
                let fresh_blob = u
                    .stored
                    .is_none()
                    .then(|| ByteBuf::from(sealed.ciphertext_blob.clone()));
                let kms_key = sealed.key_arn.clone();
                let _ = self.kms_sealed.set(sealed);
                self.open_vault(vault, config);
                tracing::info!(token_kid, configured, kms_key, "unsealed with a data key from KMS");
                Ok(Unsealed {
                    configured,
                    token_kid,
                    kms_key,
                    ciphertext_blob: fresh_blob,
                })
            }
            Err(refusal) => {
                *self.recipient_guard() = Some(RecipientKey::generate().map_err(|e| {
                    err(
                        ErrorCode::Internal,
                        format!(
                            "{}; and a new recipient key could not be generated: {e}",
                            refusal.message
                        ),
                    )
                })?);
                tracing::warn!("unseal refused: {}", refusal.message);
                Err(refusal)
            }
        }
    }

    /// The KMS call and what follows it: unwrap the data key, open or create the keys.
    async fn fetch_and_open(
        &self,
        client: &KmsClient,
        key: &RecipientKey,
        u: &KmsUnseal,
    ) -> Result<(Vault, Option<EnclaveConfig>, KmsSealed), WireError> {
        let document = self
            .nsm
            .attest(Some(RECIPIENT_USER_DATA), None, Some(key.spki_der()))
            .map_err(|e| err(ErrorCode::Internal, format!("recipient attestation failed: {e}")))?;
        let recipient = serde_json::json!({
            "AttestationDocument": B64.encode(&document),
            "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
        });
        // The pinned key whatever the host names: a key the host controls would let it
        // decrypt the CiphertextBlob without a Recipient, and so read the data key.
        let key_id = self.pinned_kms_key.as_deref().unwrap_or(&u.key_id);
        let (op, body) = match &u.stored {
            None => (
                "GenerateDataKey",
                serde_json::json!({ "KeyId": key_id, "KeySpec": "AES_256", "Recipient": recipient }),
            ),
            Some(stored) => (
                "Decrypt",
                serde_json::json!({
                    "KeyId": key_id,
                    "CiphertextBlob": B64.encode(stored.ciphertext_blob.as_slice()),
                    "Recipient": recipient,
                }),
            ),
        };
        let target = Target {
            region: &u.region,
            endpoint_host: &u.endpoint_host,
            credentials: CallCredentials {
                access_key_id: &u.credentials.access_key_id,
                secret_access_key: &u.credentials.secret_access_key,
                session_token: u.credentials.session_token.as_deref(),
            },
        };
        let answer = client.call(op, &target, &body).await?;
        if answer.get("Plaintext").is_some_and(|p| !p.is_null()) {
            // Real KMS never sends it with a Recipient; it is not used either way.
            tracing::warn!("KMS {op} answered a Plaintext despite Recipient; ignoring it");
        }
        let cms = blob_field(op, &answer, "CiphertextForRecipient")?;
        let key_arn = answer
            .get("KeyId")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| {
                WireError::from(KmsError::Missing {
                    op: op.into(),
                    field: "KeyId",
                })
            })?
            .to_string();
        if let Some(pinned) = self.pinned_kms_key.as_deref().filter(|p| *p != key_arn) {
            return Err(err(
                ErrorCode::UnsealRejected,
                format!("KMS answered {op} for key {key_arn}, but this enclave takes data keys only from {pinned} (--kms-key-arn)"),
            ));
        }
        let ciphertext_blob = match &u.stored {
            None => blob_field(op, &answer, "CiphertextBlob")?,
            Some(stored) => stored.ciphertext_blob.to_vec(),
        };
        let rejected = |m: String| err(ErrorCode::UnsealRejected, m);
        let mut data_key = unwrap_enveloped_data(&cms, key)
            .map_err(|e| rejected(format!("KMS's CiphertextForRecipient does not open: {e}")))?;
        let store = SealedStore::kms(&data_key);
        data_key.fill(0);
        let store = store.map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
        let sealed = KmsSealed {
            key_arn,
            ciphertext_blob,
        };
        match &u.stored {
            None => {
                let keys = Keys::generate().map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
                Ok((Vault { keys, store }, None, sealed))
            }
            Some(stored) => {
                let (keys, config) = store.open_blob(&stored.sealed_state).map_err(|e| match e {
                    KeyError::Seal(_) => rejected(
                        "the sealed state does not open under the data key KMS released: it was \
                         tampered with, or sealed under another data key (a CiphertextBlob or \
                         sealed state from another deployment)"
                            .into(),
                    ),
                    other => rejected(format!("the sealed state opened but is malformed: {other}")),
                })?;
                Ok((Vault { keys, store }, config, sealed))
            }
        }
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
        VerifierKey::new(origin, self.keys()?.checkpoint_public()).map_err(|e| err(ErrorCode::Internal, e.to_string()))
    }

    fn boot_record<'a>(&'a self, cfg: &'a EnclaveConfig) -> Result<BootRecord<'a>, WireError> {
        Ok(BootRecord {
            mode: self.mode.as_str(),
            sealing: self.sealing.as_str(),
            pcr0: hex::encode(self.nsm.pcr0()),
            token_kid: self.keys()?.current_token().public.kid.clone(),
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
        let keys = self.keys()?;
        let mut guard = self.lock();
        let mut sealed_state = None;
        let cfg = match self.config.get() {
            Some(sealed) if *sealed != proposed => {
                return Err(err(
                    ErrorCode::ConfigMismatch,
                    format!("this enclave is sealed to {sealed}; the host proposed {proposed}"),
                ))
            }
            Some(sealed) => sealed,
            None => {
                config::validate(&proposed).map_err(|m| err(ErrorCode::BadRequest, m))?;
                sealed_state = self
                    .vault()?
                    .store
                    .save(keys, Some(&proposed))
                    .map_err(|e| err(ErrorCode::Internal, format!("sealing failed: {e}")))?
                    .map(ByteBuf::from);
                self.start_witnessing(&proposed);
                let cfg = self.config.get_or_init(|| proposed);
                let mut log = Log::fresh(&keys.leaf_mac_key);
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
            token_keys: keys.token_keys().served(now_millis() / 1000),
            checkpoint_key: self.checkpoint_key(&cfg.log_origin)?.to_string(),
            log: head,
            sealed_state,
        })
    }

    pub fn commitment(&self) -> Result<Commitment, WireError> {
        let cfg = self.config()?;
        let mut thumbprints: Vec<String> = self
            .keys()?
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
            witnesses: cfg.witnesses.clone(),
            witness_quorum: cfg.witness_quorum,
            kms_key: self.kms_sealed.get().map(|k| k.key_arn.clone()),
            kms_ca: self.kms.as_ref().and_then(KmsClient::ca_fingerprint),
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
        if !ids::valid_id(&r.workspace)
            || !ids::valid_id(&r.agent)
            || !r.task.as_deref().is_none_or(ids::valid_id)
            || !r.grant.as_deref().is_none_or(ids::valid_id)
        {
            return Err(bad(
                "workspace, agent, task and grant ids must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}".into(),
            ));
        }
        if r.grant.is_some() && r.task.is_some() {
            return Err(bad("a grant token has no task: set grant or task, not both".into()));
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
        // Without witnesses the held-token store is not touched at all: this is the hot
        // path, and its lock would be one more every concurrent mint takes.
        let witnessed = !cfg.witnesses.is_empty();
        if witnessed {
            if let Some(w) = self.witnessing().as_ref() {
                w.can_hold()?;
            }
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
        // The grant namespace is built here, never taken from the host, so no request
        // without `grant` (every `/v1/tokens` request) can produce a grant subject.
        let sub = match r.grant.as_deref() {
            Some(g) => ids::grant_subject(&r.workspace, g),
            None => ids::subject(&r.workspace, &r.agent, r.task.as_deref()),
        };
        let fields = jwt::TokenFields {
            issuer: &cfg.issuer,
            subject: &sub,
            audience: &r.audience,
            workspace: &r.workspace,
            agent: &r.agent,
            grant: r.grant.as_deref(),
            iat,
            exp,
            jti: &jti,
        };
        let key = self.keys()?.current_token();
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
        // The signature and its leaf leave the enclave together or not at all; with
        // witnesses the signature stays here until they have seen the leaf. Held under the
        // log's lock, so a token is held before its leaf can be acknowledged.
        let (leaf, token) = self.with_log(|log| {
            let leaf = log.append(Origin::Enclave, KIND_TOKEN_ISSUED, &issued, now)?;
            if !witnessed {
                return Ok((leaf, Some(token)));
            }
            // The store exists whenever the configuration names witnesses
            // (`start_witnessing`); were it missing, the token is dropped, never released
            // unwitnessed.
            if let Some(w) = self.witnessing().as_mut() {
                w.hold(leaf.index, exp, token);
            }
            Ok((leaf, None))
        })?;
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
        let cfg = self.config()?;
        let origin = &cfg.log_origin;
        let body = Checkpoint {
            origin: origin.clone(),
            size,
            root,
        }
        .body();
        let keys = self.keys()?;
        let sig = keys.checkpoint.sign(body.as_bytes());
        let sig: [u8; 64] = sig
            .as_ref()
            .try_into()
            .map_err(|_| err(ErrorCode::Internal, "signature length"))?;
        let id = note::key_id(origin, &keys.checkpoint_public());
        if !cfg.witnesses.is_empty() {
            if let Some(w) = self.witnessing().as_mut() {
                w.signed(size, root);
            }
        }
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

    /// With witnesses: releases the held tokens a cosigned checkpoint covers.
    fn witnessed(&self, checkpoint: &str) -> Result<Released, WireError> {
        let cfg = self.config()?;
        let opened = self
            .checkpoint_key(&cfg.log_origin)?
            .open(checkpoint)
            .map_err(|e| err(ErrorCode::WitnessRejected, format!("checkpoint: {e}")))?;
        let mut guard = self.witnessing();
        let w = guard.as_mut().ok_or_else(|| {
            err(
                ErrorCode::BadRequest,
                "this enclave's configuration names no witnesses: its tokens leave with their leaves",
            )
        })?;
        Ok(w.witness(&opened, checkpoint, now_millis() / 1000)?)
    }

    /// Opens the checkpoint and frontier and begins a restore. A refused begin still
    /// discards a half-done restore, whichever check refused it.
    ///
    /// With witnesses configured the checkpoint must carry a quorum of their
    /// cosignatures: an enclave that restarted is never handed an empty log, nor one
    /// that starts from a checkpoint no witness has seen. (That the restored log reaches
    /// every leaf the witnesses have seen, the enclave cannot know by itself; the
    /// witnesses enforce it, by refusing to cosign any later checkpoint of a shorter or
    /// different log, and without their cosignatures no token leaves.)
    fn restore_begin(&self, checkpoint: &str, frontier: &[ByteBuf]) -> Result<u64, WireError> {
        let cfg = self.config()?;
        let rejected = |m: String| err(ErrorCode::RestoreRejected, m);
        let opened = if checkpoint.is_empty() {
            if cfg.witnesses.is_empty() {
                Ok(None)
            } else {
                Err(rejected(
                    "with witnesses configured a restore starts from a checkpoint a quorum of them cosigned;                      an empty log is not accepted"
                        .into(),
                ))
            }
        } else {
            self.checkpoint_key(&cfg.log_origin)?
                .open(checkpoint)
                .map(Some)
                .map_err(|e| rejected(format!("checkpoint: {e}")))
                .and_then(|cp| match self.witnessing().as_ref() {
                    Some(w) => w
                        .check_quorum(checkpoint)
                        .map(|_| cp)
                        .map_err(|e| rejected(format!("checkpoint: {e}"))),
                    None => Ok(cp),
                })
        };
        let frontier = frontier
            .iter()
            .map(|h| merkle::to_hash(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| rejected(e.to_string()));
        self.with_log(|log| {
            log.abandon_restore();
            Ok(log.restore_begin(opened?, frontier?)?)
        })
    }

    fn restore_end(&self, size: u64, root: &[u8]) -> Result<LogHead, WireError> {
        let cfg = self.config()?;
        let record = self.boot_record(cfg)?;
        self.with_log(|log| {
            log.restore_end(size, root)?;
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
        let vault = self.vault()?;
        if !config::printable(caller, 128) {
            return Err(err(ErrorCode::BadRequest, "caller must be 1-128 printable characters"));
        }
        let (leaf, sealed_state) = {
            let mut guard = self.lock();
            let log = guard
                .as_mut()
                .ok_or_else(|| err(ErrorCode::NotReady, "send Hello first"))?;
            log.can_append()?;
            let now = now_millis() / 1000;
            let retire_at = now + cfg.ttl_max_seconds;
            let old_kid = vault.keys.current_token().public.kid.clone();
            let next = vault
                .keys
                .rotated(now, retire_at)
                .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
            let sealed_state = vault
                .store
                .save_with(&vault.keys, &next, Some(&cfg))
                .map_err(|e| err(ErrorCode::Internal, format!("sealing failed: {e}")))?
                .map(ByteBuf::from);
            let new_kid = next.current.public.kid.clone();
            vault.keys.install(next);
            let record = serde_json::json!({
                "old_kid": old_kid, "new_kid": new_kid, "old_key_retire_at": retire_at, "caller": caller,
            });
            (
                log.append(Origin::Enclave, KIND_KEY_ROTATED, &record, now_millis())?,
                sealed_state,
            )
        };
        Ok(Rotated {
            hello: self.hello(PROTOCOL_VERSION, cfg)?,
            leaf,
            sealed_state,
        })
    }
}
