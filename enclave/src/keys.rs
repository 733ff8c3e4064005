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
}

/// The live keys.
pub struct Keys {
    pub token: Box<dyn Es256>,
    pub token_public: TokenKey,
    token_pkcs8: Vec<u8>,
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
        Self::from_parts(pkcs8, seed, mac)
    }

    fn from_parts(token_pkcs8: Vec<u8>, seed: [u8; 32], mac: [u8; 32]) -> Result<Self, KeyError> {
        let token = signer::load(&token_pkcs8).map_err(|e| KeyError::Malformed(e.to_string()))?;
        let (x, y) = token.public_xy();
        let token_public = TokenKey {
            kid: p256_thumbprint(&x, &y),
            x: ByteBuf::from(x),
            y: ByteBuf::from(y),
        };
        let checkpoint =
            Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| KeyError::Malformed("checkpoint seed".into()))?;
        Ok(Self {
            token,
            token_public,
            token_pkcs8,
            checkpoint_seed: seed,
            checkpoint,
            leaf_mac_key: mac,
        })
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
        let keys = Keys::from_parts(s.token_key_pkcs8.into_vec(), seed, mac)?;
        Ok(Some((keys, s.config)))
    }

    pub fn save(&self, keys: &Keys, config: Option<&EnclaveConfig>) -> Result<(), KeyError> {
        let s = SealedState {
            version: 1,
            token_key_pkcs8: ByteBuf::from(keys.token_pkcs8.clone()),
            checkpoint_seed: ByteBuf::from(keys.checkpoint_seed.to_vec()),
            leaf_mac_key: ByteBuf::from(keys.leaf_mac_key.to_vec()),
            config: config.cloned(),
        };
        let mut plain = Vec::new();
        ciborium::into_writer(&s, &mut plain).map_err(|e| KeyError::Malformed(e.to_string()))?;
        let blob = self.sealer.seal(&plain)?;
        crate::seal::write_private(&self.path, &blob)?;
        Ok(())
    }
}
