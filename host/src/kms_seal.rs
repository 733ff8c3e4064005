//! KMS sealing, the host's half (`sealgate serve --kms-key-id KEY`, enclave `--seal kms`).
//!
//! An enclave started with `--seal kms` has no disk state: it boots *locked*, holding only
//! a fresh RSA-2048 recipient key, and the host brings it a KMS data key:
//!
//! 1. `Status`: the enclave is locked (if not, there is nothing to do but store the
//!    newest sealed state it reports, in case the host crashed before storing it).
//! 2. `RecipientAttest`: an attestation document whose `public_key` is the recipient key.
//! 3. KMS, with `Recipient { AttestationDocument, RSAES_OAEP_SHA_256 }`:
//!    `GenerateDataKey { KeySpec: AES_256 }` on first boot, or `Decrypt { CiphertextBlob }`
//!    of the stored data key on restart. KMS checks the document against the key policy
//!    (`kms:RecipientAttestation:ImageSha384` = the enclave's PCR0) and answers
//!    `CiphertextForRecipient`, a CMS EnvelopedData only the enclave can open, instead of
//!    the plaintext.
//! 4. `Unseal { ciphertext_for_recipient, sealed_state }`: the enclave unwraps the data
//!    key and opens the sealed state it had handed out (restart), or generates its keys
//!    (first boot).
//!
//! The enclave seals its keys and configuration with AES-256-GCM under the data key and
//! hands the sealed bytes out whenever they change (the first `Hello`, each key rotation,
//! and in `Status`); they are stored in `kms_sealed_state` next to the data key's
//! `CiphertextBlob`. Those two ciphertexts are all the host ever holds: it never sees the
//! data key or a private key. A failed unseal (KMS `AccessDeniedException` because the
//! attestation does not satisfy the key policy, a tampered blob) stops `sealgate serve`
//! with the cause; the enclave keeps running, still locked, and can be unsealed again.
//!
//! # Known weakness: the first boot trusts the host
//!
//! On the *first* boot the data key reaches the enclave through the host, and anyone
//! holding the recipient public key (it is in the attestation document) can build a CMS
//! EnvelopedData for it. A malicious host can therefore skip KMS on first boot and hand
//! the enclave a data key it chose, then read everything sealed under it. The proper fix
//! is for the enclave to call KMS itself over TLS it terminates (through `vsock-proxy`),
//! so the host only relays ciphertext. Restarts are safe: the sealed state is
//! authenticated by AES-GCM under the original data key, so a substituted key does not
//! open it, and the enclave refuses. (The host can still withhold the newest sealed state
//! and hand back an older one it stored — a rollback of the key set — which the audit
//! log's `enclave.boot` and `key.rotated` leaves make visible to auditors.)

use crate::aws::Aws;
use crate::db::Db;
use crate::enclave_client::{ClientError, EnclaveClient};
use crate::expect_reply;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyEncryptionMechanism, RecipientInfo};
use rusqlite::{params, Connection, OptionalExtension};
use sealgate_shared::protocol::{EnclaveStatus, ErrorCode, Op, Reply, Sealing};
use serde_bytes::ByteBuf;
use std::time::{Duration, Instant};

/// Why the enclave could not be unsealed. Each message names the cause an operator acts on.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    #[error("the enclave did not answer: {0}")]
    Enclave(ClientError),
    #[error(
        "the enclave seals with a local key (it was started without --seal kms): drop --kms-key-id, \
         or restart the enclave with --seal kms"
    )]
    NotKmsSealed,
    #[error("the enclave speaks protocol {enclave}, this host {host}: deploy matching builds")]
    Version { enclave: u32, host: u32 },
    #[error(
        "KMS {op} was denied ({code}: {message}). KMS releases the data key only to an enclave whose \
         attestation satisfies the key policy of {key_id}: is kms:RecipientAttestation:ImageSha384 \
         the enclave's PCR0 ({pcr0}), and may this host's role use the key? The enclave keeps running, locked."
    )]
    AccessDenied {
        op: &'static str,
        code: String,
        message: String,
        key_id: String,
        pcr0: String,
    },
    #[error(
        "KMS Decrypt refused the stored data key ({code}: {message}): the CiphertextBlob in the database \
         was altered or belongs to another KMS key than {key_id}. The enclave keeps running, locked."
    )]
    StoredDataKey {
        code: String,
        message: String,
        key_id: String,
    },
    #[error("KMS {op} failed: {detail}")]
    Kms { op: &'static str, detail: String },
    #[error(
        "KMS {op} answered without CiphertextForRecipient: the endpoint ignores the Recipient parameter \
         (local KMS emulators do), so it cannot unseal an enclave"
    )]
    NoCiphertextForRecipient { op: &'static str },
    #[error(
        "the enclave refused to unseal: {0}. The enclave keeps running, locked; the stored sealed state \
         and data key are unchanged"
    )]
    Rejected(String),
    #[error("storing the KMS ciphertexts: {0}")]
    Db(#[from] crate::db::DbError),
}

impl UnsealError {
    /// The enclave could not be reached at all (still starting, or restarting).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            UnsealError::Enclave(ClientError::Connect { .. } | ClientError::Disconnected | ClientError::Timeout(_))
        )
    }
}

/// What [`KmsSeal::ensure_unsealed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The enclave was already unsealed (the host restarted, the enclave did not).
    AlreadyUnsealed,
    /// First boot: a new data key from `GenerateDataKey`; keys are sealed at `Hello`.
    FirstBoot,
    /// Restart: the stored data key from `Decrypt` opened the stored sealed state.
    Restored,
}

/// The newest stored data key and sealed state.
struct Stored {
    key_id: String,
    ciphertext_blob: Vec<u8>,
    sealed: Option<Vec<u8>>,
}

/// Unseals a KMS-sealed enclave with the KMS key `key_id` (id, ARN or alias).
pub struct KmsSeal {
    key_id: String,
    aws: Aws,
}

impl KmsSeal {
    pub fn new(key_id: String) -> Self {
        Self {
            key_id,
            aws: Aws::default(),
        }
    }

    /// At start-up: waits up to `wait` for the enclave to answer, then unseals it. Any
    /// failure other than an unreachable enclave is final (the caller refuses to serve).
    pub async fn unseal_at_startup(
        &self,
        enclave: &EnclaveClient,
        db: &Db,
        wait: Duration,
    ) -> Result<Outcome, UnsealError> {
        let deadline = Instant::now() + wait;
        loop {
            match self.ensure_unsealed(enclave, db).await {
                Err(e) if e.is_unreachable() && Instant::now() < deadline => {
                    tracing::info!("waiting for the enclave: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other,
            }
        }
    }

    /// Unseals the enclave if it is locked (see the module docs for the steps).
    pub async fn ensure_unsealed(&self, enclave: &EnclaveClient, db: &Db) -> Result<Outcome, UnsealError> {
        let status = expect_reply!(
            enclave.call(Op::Status).await.map_err(UnsealError::Enclave)?,
            Reply::Status,
            "Status"
        )
        .map_err(UnsealError::Enclave)?;
        if status.protocol_version != sealgate_shared::PROTOCOL_VERSION {
            return Err(UnsealError::Version {
                enclave: status.protocol_version,
                host: sealgate_shared::PROTOCOL_VERSION,
            });
        }
        if status.sealing != Sealing::Kms {
            return Err(UnsealError::NotKmsSealed);
        }
        if !status.locked {
            if let Some(blob) = status.sealed_state {
                store_sealed_state_async(db, blob.into_vec()).await?;
            }
            return Ok(Outcome::AlreadyUnsealed);
        }
        let stored = db.read(latest).await?;
        let document = self.recipient_document(enclave).await?;
        let recipient = RecipientInfo::builder()
            .attestation_document(Blob::new(document))
            .key_encryption_algorithm(KeyEncryptionMechanism::RsaesOaepSha256)
            .build();
        let kms = self.aws.kms().await;
        match stored {
            Some(Stored {
                key_id,
                ciphertext_blob,
                sealed: Some(sealed),
            }) => {
                if key_id != self.key_id {
                    tracing::warn!(
                        stored = key_id,
                        configured = self.key_id,
                        "the data key was generated under another key id"
                    );
                }
                let out = kms
                    .decrypt()
                    .key_id(&self.key_id)
                    .ciphertext_blob(Blob::new(ciphertext_blob))
                    .recipient(recipient)
                    .send()
                    .await
                    .map_err(|e| self.kms_error("Decrypt", e, &status))?;
                let cms = out
                    .ciphertext_for_recipient()
                    .ok_or(UnsealError::NoCiphertextForRecipient { op: "Decrypt" })?
                    .as_ref()
                    .to_vec();
                self.unseal(enclave, cms, Some(sealed)).await?;
                tracing::info!(key_id = self.key_id, "enclave unsealed from the stored sealed state");
                Ok(Outcome::Restored)
            }
            _ => {
                let out = kms
                    .generate_data_key()
                    .key_id(&self.key_id)
                    .key_spec(DataKeySpec::Aes256)
                    .recipient(recipient)
                    .send()
                    .await
                    .map_err(|e| self.kms_error("GenerateDataKey", e, &status))?;
                if out.plaintext().is_some_and(|p| !p.as_ref().is_empty()) {
                    // Real KMS never sends it with a Recipient. Not stored, not logged.
                    tracing::warn!("KMS GenerateDataKey returned a plaintext data key despite Recipient; ignoring it");
                }
                let cms = out
                    .ciphertext_for_recipient()
                    .ok_or(UnsealError::NoCiphertextForRecipient { op: "GenerateDataKey" })?
                    .as_ref()
                    .to_vec();
                let blob = out
                    .ciphertext_blob()
                    .ok_or_else(|| UnsealError::Kms {
                        op: "GenerateDataKey",
                        detail: "the answer has no CiphertextBlob".into(),
                    })?
                    .as_ref()
                    .to_vec();
                // Stored before the enclave uses it: a data key the enclave seals under
                // must never exist only in the enclave's memory.
                let key_id = self.key_id.clone();
                db.commit(
                    vec![],
                    Some(Box::new(move |c| {
                        c.execute(
                            "INSERT INTO kms_sealed_state (key_id, ciphertext_blob, sealed, created_at) \
                             VALUES (?1, ?2, NULL, ?3)",
                            params![key_id, blob, crate::now_secs() as i64],
                        )?;
                        Ok(())
                    })),
                )
                .await?;
                self.unseal(enclave, cms, None).await?;
                tracing::info!(
                    key_id = self.key_id,
                    "first boot: enclave unsealed with a new KMS data key"
                );
                Ok(Outcome::FirstBoot)
            }
        }
    }

    async fn recipient_document(&self, enclave: &EnclaveClient) -> Result<Vec<u8>, UnsealError> {
        let reply = enclave
            .call(Op::RecipientAttest { nonce: None })
            .await
            .map_err(UnsealError::Enclave)?;
        let att = expect_reply!(reply, Reply::RecipientAttestation, "RecipientAttest").map_err(UnsealError::Enclave)?;
        Ok(att.document.into_vec())
    }

    async fn unseal(&self, enclave: &EnclaveClient, cms: Vec<u8>, sealed: Option<Vec<u8>>) -> Result<(), UnsealError> {
        let reply = enclave
            .call(Op::Unseal {
                ciphertext_for_recipient: ByteBuf::from(cms),
                sealed_state: sealed.map(ByteBuf::from),
            })
            .await;
        match reply {
            Ok(r) => {
                let done = expect_reply!(r, Reply::Unsealed, "Unseal").map_err(UnsealError::Enclave)?;
                tracing::info!(
                    token_kid = done.token_kid,
                    configured = done.configured,
                    "enclave unsealed"
                );
                Ok(())
            }
            Err(ClientError::Enclave(w)) if w.code == ErrorCode::UnsealRejected => {
                Err(UnsealError::Rejected(w.message))
            }
            Err(e) => Err(UnsealError::Enclave(e)),
        }
    }

    fn kms_error<E, R>(&self, op: &'static str, e: SdkError<E, R>, status: &EnclaveStatus) -> UnsealError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = e.code().unwrap_or_default().to_string();
        let message = e.message().unwrap_or_default().to_string();
        match code.as_str() {
            "AccessDeniedException" => UnsealError::AccessDenied {
                op,
                code,
                message,
                key_id: self.key_id.clone(),
                pcr0: hex::encode(&status.pcr0),
            },
            "InvalidCiphertextException" | "IncorrectKeyException" => UnsealError::StoredDataKey {
                code,
                message,
                key_id: self.key_id.clone(),
            },
            _ => UnsealError::Kms {
                op,
                detail: DisplayErrorContext(&e).to_string(),
            },
        }
    }
}

/// The newest row, preferring one with a sealed state: a row without one is a first boot
/// that never reached `Hello`, whose data key sealed nothing.
fn latest(c: &Connection) -> rusqlite::Result<Option<Stored>> {
    c.query_row(
        "SELECT key_id, ciphertext_blob, sealed FROM kms_sealed_state \
         ORDER BY sealed IS NOT NULL DESC, id DESC LIMIT 1",
        [],
        |r| {
            Ok(Stored {
                key_id: r.get(0)?,
                ciphertext_blob: r.get(1)?,
                sealed: r.get(2)?,
            })
        },
    )
    .optional()
}

/// Stores a sealed state the enclave handed out (at `Hello`, rotation or `Status`) with
/// the data key it is sealed under: the newest data key row, which is the one the enclave
/// was unsealed with. A blob equal to the newest stored one is not stored again.
pub fn store_sealed_state(c: &Connection, sealed: &[u8]) -> rusqlite::Result<()> {
    let newest: Option<Option<Vec<u8>>> = c
        .query_row(
            "SELECT sealed FROM kms_sealed_state ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match newest {
        None => {
            tracing::error!("the enclave sealed its state under a KMS data key this database does not hold");
            Ok(())
        }
        Some(Some(same)) if same == sealed => Ok(()),
        Some(_) => {
            c.execute(
                "INSERT INTO kms_sealed_state (key_id, ciphertext_blob, sealed, created_at) \
                 SELECT key_id, ciphertext_blob, ?1, ?2 FROM kms_sealed_state ORDER BY id DESC LIMIT 1",
                params![sealed, crate::now_secs() as i64],
            )?;
            Ok(())
        }
    }
}

/// [`store_sealed_state`] through the group-commit writer.
pub async fn store_sealed_state_async(db: &Db, sealed: Vec<u8>) -> Result<(), crate::db::DbError> {
    db.commit(vec![], Some(Box::new(move |c| store_sealed_state(c, &sealed))))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection to a database created by [`Db::open`] (the real schema).
    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(Db::open(&path, Box::new(|_| {})).unwrap());
        let c = Connection::open(&path).unwrap();
        (dir, c)
    }

    fn rows(c: &Connection) -> Vec<(String, Vec<u8>, Option<Vec<u8>>)> {
        let mut st = c
            .prepare("SELECT key_id, ciphertext_blob, sealed FROM kms_sealed_state ORDER BY id")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn sealed_states_follow_the_newest_data_key() {
        let (_dir, c) = db();
        assert!(latest(&c).unwrap().is_none());
        // Nothing to attach a sealed state to: refused quietly (logged), nothing stored.
        store_sealed_state(&c, b"orphan").unwrap();
        assert!(rows(&c).is_empty());

        c.execute(
            "INSERT INTO kms_sealed_state (key_id, ciphertext_blob, sealed, created_at) VALUES ('k', x'01', NULL, 0)",
            [],
        )
        .unwrap();
        let l = latest(&c).unwrap().unwrap();
        assert_eq!((l.ciphertext_blob, l.sealed), (vec![1], None));

        store_sealed_state(&c, b"s1").unwrap();
        store_sealed_state(&c, b"s1").unwrap();
        store_sealed_state(&c, b"s2").unwrap();
        assert_eq!(
            rows(&c),
            vec![
                ("k".into(), vec![1], None),
                ("k".into(), vec![1], Some(b"s1".to_vec())),
                ("k".into(), vec![1], Some(b"s2".to_vec())),
            ]
        );
        let l = latest(&c).unwrap().unwrap();
        assert_eq!(l.sealed.as_deref(), Some(&b"s2"[..]));

        // A first-boot attempt that never sealed anything does not hide the sealed state.
        c.execute(
            "INSERT INTO kms_sealed_state (key_id, ciphertext_blob, sealed, created_at) VALUES ('k', x'02', NULL, 0)",
            [],
        )
        .unwrap();
        let l = latest(&c).unwrap().unwrap();
        assert_eq!((l.ciphertext_blob, l.sealed.as_deref()), (vec![1], Some(&b"s2"[..])));
    }
}
