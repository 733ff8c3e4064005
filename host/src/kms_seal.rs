//! KMS sealing, the host's half (`sealgate serve --kms-key-id KEY`, enclave `--seal kms`).
//!
//! An enclave started with `--seal kms` has no disk state: it boots *locked*, holding only
//! a fresh RSA-2048 recipient key, and fetches its data key from KMS **itself**, over TLS
//! that terminates inside the enclave and runs through its KMS proxy (vsock-proxy on the
//! parent instance). The host's part is small and holds nothing secret:
//!
//! 1. `Status`: the enclave is locked (if not, there is nothing to do but store the
//!    newest data key and sealed state it reports, in case the host crashed before
//!    storing them).
//! 2. `UnsealKms { region, key_id, endpoint_host, credentials, stored }`: where KMS is,
//!    the instance role's credentials (resolved by the SDK's default chain; the enclave
//!    signs with them, SigV4) and, after the first boot, the stored `CiphertextBlob` and
//!    sealed state. The enclave attests its recipient key, calls `GenerateDataKey` (first
//!    boot) or `Decrypt` (restart) with `Recipient`, unwraps `CiphertextForRecipient` and
//!    opens the sealed state or generates its keys. On first boot it returns the new
//!    `CiphertextBlob`, which is stored before the first `Hello` seals anything under it.
//!
//! The enclave seals its keys and configuration with AES-256-GCM under the data key and
//! hands the sealed bytes out whenever they change (the first `Hello`, each key rotation,
//! and in `Status`); they are stored in `kms_sealed_state` next to the data key's
//! `CiphertextBlob`. Those two ciphertexts are all the host ever holds: it never sees the
//! data key or a private key, and it cannot choose the data key either — the enclave no
//! longer accepts one from the host (the old `Unseal` is refused), so a host that wraps a
//! key of its own to the recipient key, on first boot or on restart, gets nowhere. A
//! failed unseal (KMS `AccessDeniedException` because the attestation does not satisfy
//! the key policy, a tampered blob, a TLS failure such as a certificate the enclave does
//! not trust) stops `sealgate serve` with the cause; the enclave keeps running, still
//! locked, and can be unsealed again.
//!
//! What the host can still do: withhold the newest sealed state and hand back an older
//! one it stored (a rollback of the key set, which the audit log's `enclave.boot` and
//! `key.rotated` leaves make visible), or start over with a fresh data key (a new key set
//! and genesis, equally visible). The KMS key's ARN the enclave used is in the attested
//! commitment (`kms_key`), so an auditor sees a key outside the operator's account, and
//! the key policy must let the host role neither `Decrypt` without a `Recipient` nor
//! `Encrypt` (deploy/README.md).

use crate::aws::Aws;
use crate::db::Db;
use crate::enclave_client::{ClientError, EnclaveClient};
use crate::expect_reply;
use aws_credential_types::provider::ProvideCredentials;
use rusqlite::{params, Connection, OptionalExtension};
use sealgate_shared::protocol::{
    AwsCredentials, EnclaveStatus, ErrorCode, KmsUnseal, Op, Reply, Sealing, StoredSeal, Unsealed,
};
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
        "{detail}. KMS releases the data key only to an enclave whose attestation satisfies the key \
         policy of {key_id}: is kms:RecipientAttestation:ImageSha384 the enclave's PCR0 ({pcr0}), and may \
         this host's role use the key? The enclave keeps running, locked."
    )]
    AccessDenied {
        detail: String,
        key_id: String,
        pcr0: String,
    },
    #[error(
        "{detail}: the CiphertextBlob in the database was altered or belongs to another KMS key than \
         {key_id}. The enclave keeps running, locked."
    )]
    StoredDataKey { detail: String, key_id: String },
    #[error("the enclave's own call to KMS failed: {0}. The enclave keeps running, locked.")]
    Kms(String),
    #[error(
        "no AWS credentials or region for the enclave's KMS calls: {0} (the SDK's default chain: \
         AWS_REGION, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or the instance role)"
    )]
    Credentials(String),
    #[error("the enclave did not return the new data key's CiphertextBlob on first boot")]
    NoCiphertextBlob,
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
            if let Some(blob) = status.ciphertext_blob.clone() {
                let key_id = self.key_id.clone();
                db.commit(vec![], Some(Box::new(move |c| store_data_key(c, &key_id, &blob))))
                    .await?;
            }
            if let Some(blob) = status.sealed_state {
                store_sealed_state_async(db, blob.into_vec()).await?;
            }
            return Ok(Outcome::AlreadyUnsealed);
        }
        let stored = db.read(latest).await?;
        let stored = match stored {
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
                Some(StoredSeal {
                    ciphertext_blob: ByteBuf::from(ciphertext_blob),
                    sealed_state: ByteBuf::from(sealed),
                })
            }
            _ => None,
        };
        let restart = stored.is_some();
        let request = self.request(stored).await?;
        let done = self.unseal(enclave, request, &status).await?;
        if restart {
            tracing::info!(
                key_id = self.key_id,
                kms_key = done.kms_key,
                "enclave unsealed from the stored sealed state"
            );
            return Ok(Outcome::Restored);
        }
        let blob = done.ciphertext_blob.ok_or(UnsealError::NoCiphertextBlob)?.into_vec();
        // Stored before the first Hello: that Hello seals the keys under this data key,
        // and a sealed state must never exist without the data key it needs. (Should the
        // host crash first, `Status` hands the blob over again.)
        let key_id = self.key_id.clone();
        db.commit(vec![], Some(Box::new(move |c| store_data_key(c, &key_id, &blob))))
            .await?;
        tracing::info!(
            key_id = self.key_id,
            kms_key = done.kms_key,
            "first boot: the enclave fetched a new KMS data key"
        );
        Ok(Outcome::FirstBoot)
    }

    /// Where the enclave finds KMS and as whom it signs: the SDK's region and credential
    /// chain, and the KMS endpoint's host name (`AWS_ENDPOINT_URL_KMS`, `AWS_ENDPOINT_URL`,
    /// else `kms.<region>.amazonaws.com`). Only the name matters: the bytes go where the
    /// enclave's `--kms-proxy` sends them, and TLS checks the name.
    async fn request(&self, stored: Option<StoredSeal>) -> Result<Op, UnsealError> {
        let config = self.aws.config().await;
        let region = config
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| UnsealError::Credentials("no region is configured".into()))?;
        let provider = config
            .credentials_provider()
            .ok_or_else(|| UnsealError::Credentials("no credentials provider".into()))?;
        let creds = provider
            .provide_credentials()
            .await
            .map_err(|e| UnsealError::Credentials(e.to_string()))?;
        let endpoint_host = std::env::var("AWS_ENDPOINT_URL_KMS")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .ok()
            .and_then(|u| url::Url::parse(&u).ok())
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| format!("kms.{region}.amazonaws.com"));
        Ok(Op::UnsealKms(KmsUnseal {
            region,
            key_id: self.key_id.clone(),
            endpoint_host,
            credentials: AwsCredentials {
                access_key_id: creds.access_key_id().to_string(),
                secret_access_key: creds.secret_access_key().to_string(),
                session_token: creds.session_token().map(str::to_string),
            },
            stored,
        }))
    }

    async fn unseal(
        &self,
        enclave: &EnclaveClient,
        request: Op,
        status: &EnclaveStatus,
    ) -> Result<Unsealed, UnsealError> {
        match enclave.call(request).await {
            Ok(r) => {
                let done = expect_reply!(r, Reply::Unsealed, "UnsealKms").map_err(UnsealError::Enclave)?;
                tracing::info!(
                    token_kid = done.token_kid,
                    configured = done.configured,
                    "enclave unsealed"
                );
                Ok(done)
            }
            Err(ClientError::Enclave(w)) if w.code == ErrorCode::UnsealRejected => {
                Err(UnsealError::Rejected(w.message))
            }
            Err(ClientError::Enclave(w)) if w.code == ErrorCode::Kms => Err(self.kms_error(w.message, status)),
            Err(e) => Err(UnsealError::Enclave(e)),
        }
    }

    /// Names the cause of a failed KMS call from the enclave's message, which starts
    /// `KMS <op> answered <ExceptionName>:` when KMS itself refused.
    fn kms_error(&self, detail: String, status: &EnclaveStatus) -> UnsealError {
        let answered = |kind: &str| detail.contains(&format!("answered {kind}"));
        if answered("AccessDeniedException") {
            UnsealError::AccessDenied {
                detail,
                key_id: self.key_id.clone(),
                pcr0: hex::encode(&status.pcr0),
            }
        } else if answered("InvalidCiphertextException") || answered("IncorrectKeyException") {
            UnsealError::StoredDataKey {
                detail,
                key_id: self.key_id.clone(),
            }
        } else {
            UnsealError::Kms(detail)
        }
    }
}

/// Stores a data key's `CiphertextBlob` as the newest row, unless it already is.
fn store_data_key(c: &Connection, key_id: &str, blob: &[u8]) -> rusqlite::Result<()> {
    let newest: Option<Vec<u8>> = c
        .query_row(
            "SELECT ciphertext_blob FROM kms_sealed_state ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if newest.as_deref() == Some(blob) {
        return Ok(());
    }
    c.execute(
        "INSERT INTO kms_sealed_state (key_id, ciphertext_blob, sealed, created_at) VALUES (?1, ?2, NULL, ?3)",
        params![key_id, blob, crate::now_secs() as i64],
    )?;
    Ok(())
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
        drop(Db::open(&path, std::sync::Arc::new(crate::db::NoHook)).unwrap());
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

    /// A data key the enclave reports (first boot, or `Status` after a host crash) is
    /// stored once, as the newest row, so the sealed state that follows attaches to it.
    #[test]
    fn data_keys_are_stored_once_and_sealed_states_follow_them() {
        let (_dir, c) = db();
        store_data_key(&c, "k", &[7]).unwrap();
        store_data_key(&c, "k", &[7]).unwrap();
        store_sealed_state(&c, b"s").unwrap();
        store_data_key(&c, "k", &[7]).unwrap();
        assert_eq!(
            rows(&c),
            vec![("k".into(), vec![7], None), ("k".into(), vec![7], Some(b"s".to_vec()))]
        );
        store_data_key(&c, "k", &[8]).unwrap();
        store_sealed_state(&c, b"t").unwrap();
        let l = latest(&c).unwrap().unwrap();
        assert_eq!((l.ciphertext_blob, l.sealed.as_deref()), (vec![8], Some(&b"t"[..])));
    }
}
