//! The enclave's private keys and how they are (de)serialized for sealing.

use crate::seal::{SealError, SimSealer};
use crate::signer::{self, Es256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use sealgate_shared::commitment::p256_thumbprint;
use sealgate_shared::protocol::{EnclaveConfig, TokenKey};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

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

/// Where the simulator keeps its sealed state.
pub struct SealedStore {
    path: PathBuf,
    sealer: SimSealer,
}

impl SealedStore {
    pub fn open(state_dir: &Path) -> Result<Self, KeyError> {
        Ok(Self {
            path: state_dir.join("sealed-state.bin"),
            sealer: SimSealer::open(state_dir)?,
        })
    }

    /// The keys and configuration sealed earlier, or `None` on first boot.
    pub fn load(&self) -> Result<Option<(Keys, Option<EnclaveConfig>)>, KeyError> {
        let blob = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SealError::Io {
                    path: self.path.clone(),
                    source,
                }
                .into())
            }
        };
        let plain = self.sealer.unseal(&blob)?;
        let s: SealedState = ciborium::from_reader(plain.as_slice()).map_err(|e| KeyError::Malformed(e.to_string()))?;
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
        Ok(Some((keys, s.config)))
    }

    pub fn save(&self, keys: &Keys, config: Option<&EnclaveConfig>) -> Result<(), KeyError> {
        self.save_with(keys, &keys.token_keys(), config)
    }

    /// Seals `keys`' fixed keys with the given token keys (a rotation seals the new set
    /// before installing it, so a failed seal changes nothing).
    pub fn save_with(&self, keys: &Keys, token: &TokenKeys, config: Option<&EnclaveConfig>) -> Result<(), KeyError> {
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
        let blob = self.sealer.seal(&plain)?;
        crate::seal::write_private(&self.path, &blob)?;
        Ok(())
    }
}
