//! The enclave's private keys and how they are (de)serialized for sealing.

use crate::seal::{SealError, Sealer};
use crate::signer::{self, Es256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use sealgate_shared::commitment::p256_thumbprint;
use sealgate_shared::protocol::{EnclaveConfig, TokenKey};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("sealed state is malformed: {0}")]
    Malformed(String),
    #[error("key generation failed")]
    Generate,
}

/// What is sealed: the private keys and, once the host has proposed it, the
/// configuration they were first used with.
#[derive(Serialize, Deserialize)]
struct SealedState {
    version: u32,
    token_key_pkcs8: ByteBuf,
    checkpoint_seed: ByteBuf,
    leaf_mac_key: ByteBuf,
    config: Option<EnclaveConfig>,
    /// Rotated-out token keys still served until their tokens have expired.
    #[serde(default)]
    retired_token_keys: Vec<SealedRetiredKey>,
}

#[derive(Serialize, Deserialize)]
struct SealedRetiredKey {
    pkcs8: ByteBuf,
    retire_at: u64,
}

/// One token signing key.
pub struct TokenKeyEntry {
    pub signer: Box<dyn Es256>,
    /// The public half; `retire_at` is set once the key has been rotated out.
    pub public: TokenKey,
    /// The encoded JWS header naming this key (see `jwt::encoded_header`).
    pub jwt_header: String,
    pkcs8: Vec<u8>,
}

impl TokenKeyEntry {
    fn load(pkcs8: Vec<u8>, retire_at: Option<u64>) -> Result<Self, KeyError> {
        let signer = signer::load(&pkcs8).map_err(|e| KeyError::Malformed(e.to_string()))?;
        let (x, y) = signer.public_xy();
        let public = TokenKey {
            kid: p256_thumbprint(&x, &y),
            x: ByteBuf::from(x),
            y: ByteBuf::from(y),
            retire_at,
        };
        let jwt_header = crate::jwt::encoded_header(&public.kid);
        Ok(Self {
            signer,
            public,
            jwt_header,
            pkcs8,
        })
    }
}

/// The signing key and the rotated-out keys whose tokens may still be live.
#[derive(Clone)]
pub struct TokenKeys {
    pub current: Arc<TokenKeyEntry>,
    pub retired: Vec<Arc<TokenKeyEntry>>,
}

impl TokenKeys {
    /// The public keys to publish at `now` (Unix seconds): the current key and every
    /// retired key whose last token has not yet expired.
    pub fn served(&self, now: u64) -> Vec<TokenKey> {
        let mut keys = vec![self.current.public.clone()];
        keys.extend(
            self.retired
                .iter()
                .filter(|k| k.public.retire_at.is_some_and(|t| t > now))
                .map(|k| k.public.clone()),
        );
        keys
    }
}

/// The live keys.
pub struct Keys {
    token: RwLock<TokenKeys>,
    checkpoint_seed: [u8; 32],
    pub checkpoint: Ed25519KeyPair,
    pub leaf_mac_key: [u8; 32],
}

impl Keys {
    pub fn generate() -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let mut seed = [0u8; 32];
        let mut mac = [0u8; 32];
        rng.fill(&mut seed).map_err(|_| KeyError::Generate)?;
        rng.fill(&mut mac).map_err(|_| KeyError::Generate)?;
        let pkcs8 = signer::generate_pkcs8().map_err(|_| KeyError::Generate)?;
        Self::from_parts(pkcs8, vec![], seed, mac)
    }

    fn from_parts(
        token_pkcs8: Vec<u8>,
        retired: Vec<(Vec<u8>, u64)>,
        seed: [u8; 32],
        mac: [u8; 32],
    ) -> Result<Self, KeyError> {
        let current = Arc::new(TokenKeyEntry::load(token_pkcs8, None)?);
        let retired = retired
            .into_iter()
            .map(|(pkcs8, at)| TokenKeyEntry::load(pkcs8, Some(at)).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let checkpoint =
            Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| KeyError::Malformed("checkpoint seed".into()))?;
        Ok(Self {
            token: RwLock::new(TokenKeys { current, retired }),
            checkpoint_seed: seed,
            checkpoint,
            leaf_mac_key: mac,
        })
    }

    /// The token keys as they are now.
    pub fn token_keys(&self) -> TokenKeys {
        self.token.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The key new tokens are signed with.
    pub fn current_token(&self) -> Arc<TokenKeyEntry> {
        self.token.read().unwrap_or_else(|p| p.into_inner()).current.clone()
    }

    /// The key set after a rotation: a fresh current key; the old one retired at
    /// `retire_at`; keys already past their retirement at `now` dropped.
    pub fn rotated(&self, now: u64, retire_at: u64) -> Result<TokenKeys, KeyError> {
        let old = self.token_keys();
        let pkcs8 = signer::generate_pkcs8().map_err(|_| KeyError::Generate)?;
        let current = Arc::new(TokenKeyEntry::load(pkcs8, None)?);
        let mut retired: Vec<_> = old
            .retired
            .into_iter()
            .filter(|k| k.public.retire_at.is_some_and(|t| t > now))
            .collect();
        retired.push(Arc::new(TokenKeyEntry::load(
            old.current.pkcs8.clone(),
            Some(retire_at),
        )?));
        Ok(TokenKeys { current, retired })
    }

    /// Makes `keys` the live token keys (after they have been sealed).
    pub fn install(&self, keys: TokenKeys) {
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    pub fn checkpoint_public(&self) -> [u8; 32] {
        let mut pk = [0u8; 32];
        pk.copy_from_slice(self.checkpoint.public_key().as_ref());
        pk
    }
}

/// Where sealed state goes: a file in the enclave's state directory (simulator sealing),
/// or back to the host, which stores it and returns it at the next `UnsealKms` (KMS
/// sealing: a Nitro Enclave has no disk of its own).
enum Sink {
    File(PathBuf),
    /// The newest sealed blob, kept so `Status` can hand it over again to a host that
    /// crashed before storing it.
    Host(Mutex<Option<Vec<u8>>>),
}

/// Seals and opens the enclave's [`Keys`] and configuration.
pub struct SealedStore {
    sealer: Sealer,
    sink: Sink,
}

impl SealedStore {
    /// Simulator sealing: `state_dir/sealed-state.bin` under `state_dir/sim-sealing.key`.
    pub fn open(state_dir: &Path) -> Result<Self, KeyError> {
        Ok(Self {
            sealer: Sealer::sim(state_dir)?,
            sink: Sink::File(state_dir.join("sealed-state.bin")),
        })
    }

    /// KMS sealing under `data_key`; sealed blobs are handed to the host.
    pub fn kms(data_key: &[u8; 32]) -> Result<Self, KeyError> {
        Ok(Self {
            sealer: Sealer::kms(data_key)?,
            sink: Sink::Host(Mutex::new(None)),
        })
    }

    /// The keys and configuration sealed earlier, or `None` on first boot (simulator).
    pub fn load(&self) -> Result<Option<(Keys, Option<EnclaveConfig>)>, KeyError> {
        let Sink::File(path) = &self.sink else {
            return Ok(None);
        };
        let blob = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SealError::Io {
                    path: path.clone(),
                    source,
                }
                .into())
            }
        };
        self.open_blob(&blob).map(Some)
    }

    /// Opens a blob sealed by this store's key (for KMS sealing, the host's copy). A
    /// blob that opens becomes the newest one `Status` reports.
    pub fn open_blob(&self, blob: &[u8]) -> Result<(Keys, Option<EnclaveConfig>), KeyError> {
        let plain = Zeroing(self.sealer.unseal(blob)?);
        let opened = decode_state(&plain.0)?;
        if let Sink::Host(latest) = &self.sink {
            *latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(blob.to_vec());
        }
        Ok(opened)
    }

    /// The newest sealed blob held for the host (KMS sealing only).
    pub fn latest(&self) -> Option<Vec<u8>> {
        match &self.sink {
            Sink::File(_) => None,
            Sink::Host(latest) => latest.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    pub fn save(&self, keys: &Keys, config: Option<&EnclaveConfig>) -> Result<Option<Vec<u8>>, KeyError> {
        self.save_with(keys, &keys.token_keys(), config)
    }

    /// Seals `keys`' fixed keys with the given token keys (a rotation seals the new set
    /// before installing it, so a failed seal changes nothing). Returns the blob the host
    /// must store (KMS sealing), or `None` once it is in the state file (simulator).
    pub fn save_with(
        &self,
        keys: &Keys,
        token: &TokenKeys,
        config: Option<&EnclaveConfig>,
    ) -> Result<Option<Vec<u8>>, KeyError> {
        let plain = Zeroing(encode_state(keys, token, config)?);
        let blob = self.sealer.seal(&plain.0)?;
        match &self.sink {
            Sink::File(path) => {
                crate::seal::write_private(path, &blob)?;
                Ok(None)
            }
            Sink::Host(latest) => {
                *latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(blob.clone());
                Ok(Some(blob))
            }
        }
    }
}

/// Plaintext key material, wiped when dropped.
struct Zeroing(Vec<u8>);

impl Drop for Zeroing {
    fn drop(&mut self) {
        self.0.fill(0);
    }
}

fn encode_state(keys: &Keys, token: &TokenKeys, config: Option<&EnclaveConfig>) -> Result<Vec<u8>, KeyError> {
    let s = SealedState {
        version: 1,
        token_key_pkcs8: ByteBuf::from(token.current.pkcs8.clone()),
        checkpoint_seed: ByteBuf::from(keys.checkpoint_seed.to_vec()),
        leaf_mac_key: ByteBuf::from(keys.leaf_mac_key.to_vec()),
        config: config.cloned(),
        retired_token_keys: token
            .retired
            .iter()
            .filter_map(|k| {
                Some(SealedRetiredKey {
                    pkcs8: ByteBuf::from(k.pkcs8.clone()),
                    retire_at: k.public.retire_at?,
                })
            })
            .collect(),
    };
    let mut plain = Vec::new();
    ciborium::into_writer(&s, &mut plain).map_err(|e| KeyError::Malformed(e.to_string()))?;
    Ok(plain)
}

fn decode_state(plain: &[u8]) -> Result<(Keys, Option<EnclaveConfig>), KeyError> {
    let s: SealedState = ciborium::from_reader(plain).map_err(|e| KeyError::Malformed(e.to_string()))?;
    if s.version != 1 {
        return Err(KeyError::Malformed(format!("unknown version {}", s.version)));
    }
    let seed = s
        .checkpoint_seed
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::Malformed("seed length".into()))?;
    let mac = s
        .leaf_mac_key
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::Malformed("mac key length".into()))?;
    let retired = s
        .retired_token_keys
        .into_iter()
        .map(|k| (k.pkcs8.into_vec(), k.retire_at))
        .collect();
    let keys = Keys::from_parts(s.token_key_pkcs8.into_vec(), retired, seed, mac)?;
    Ok((keys, s.config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EnclaveConfig {
        EnclaveConfig {
            issuer: "https://sealgate.example.com".into(),
            audiences: vec!["sts.amazonaws.com".into()],
            ttl_min_seconds: 60,
            ttl_max_seconds: 3600,
            log_origin: "sealgate.example.com/log".into(),
            witnesses: vec![],
            witness_quorum: 0,
        }
    }

    #[test]
    fn kms_store_hands_blobs_to_the_host_and_reopens_them() {
        let data_key = [3u8; 32];
        let store = SealedStore::kms(&data_key).unwrap();
        assert!(store.latest().is_none());
        assert!(store.load().unwrap().is_none(), "a KMS store has no file to load");
        let keys = Keys::generate().unwrap();
        let blob = store
            .save(&keys, Some(&config()))
            .unwrap()
            .expect("a blob for the host");
        assert_eq!(store.latest().as_deref(), Some(blob.as_slice()));

        let again = SealedStore::kms(&data_key).unwrap();
        let (reopened, cfg) = again.open_blob(&blob).unwrap();
        assert_eq!(cfg, Some(config()));
        assert_eq!(reopened.current_token().public.kid, keys.current_token().public.kid);
        assert_eq!(reopened.checkpoint_public(), keys.checkpoint_public());
        assert_eq!(reopened.leaf_mac_key, keys.leaf_mac_key);
        assert_eq!(again.latest().as_deref(), Some(blob.as_slice()));

        // Another data key, or a flipped bit, does not open it, and nothing is remembered.
        let other = SealedStore::kms(&[4u8; 32]).unwrap();
        assert!(matches!(other.open_blob(&blob), Err(KeyError::Seal(SealError::Open))));
        assert!(other.latest().is_none());
        let mut bad = blob.clone();
        bad[20] ^= 1;
        assert!(matches!(again.open_blob(&bad), Err(KeyError::Seal(SealError::Open))));
        // No key material in the blob in clear.
        let pkcs8 = keys.current_token().pkcs8.clone();
        assert!(!blob.windows(16).any(|w| pkcs8.windows(16).any(|p| p == w)));
        assert!(!blob.windows(32).any(|w| w == keys.leaf_mac_key));
    }

    #[test]
    fn sim_store_writes_the_file_and_returns_nothing_for_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let store = SealedStore::open(dir.path()).unwrap();
        let keys = Keys::generate().unwrap();
        assert!(store.save(&keys, None).unwrap().is_none());
        assert!(store.latest().is_none());
        let (loaded, cfg) = SealedStore::open(dir.path()).unwrap().load().unwrap().expect("saved");
        assert_eq!(cfg, None);
        assert_eq!(loaded.current_token().public.kid, keys.current_token().public.kid);
    }
}
