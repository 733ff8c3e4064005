//! Sealing: how private keys survive an enclave restart without ever leaving it in
//! clear. One AEAD ([`Sealer`], AES-256-GCM), two sources of its key:
//!
//! - production (`--seal kms`): a KMS data key released only to an enclave whose
//!   attestation satisfies the key policy ([`Sealer::kms`], see `crate::kms`); the
//!   sealed bytes go to the host, which stores them and hands them back at `UnsealKms`;
//! - simulator (`--seal sim`): a random AES-256 key in the state directory
//!   ([`Sealer::sim`]), which protects nothing against someone who can read that
//!   directory; every surface therefore reports `"mode": "sim"`.
//!
//! Each source has its own associated data, so a blob sealed under one scheme never
//! opens under the other even with equal key bytes.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Binds simulator ciphertexts to their purpose so a blob sealed for something else never
/// opens. (Unchanged since the first release: existing simulator state must keep opening.)
const SIM_AAD: &[u8] = b"sealgate-sealed-state-v1";
/// The same for state sealed under a KMS data key: purpose, scheme and format version.
const KMS_AAD: &[u8] = b"sealgate-sealed-state/kms-data-key/v1";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sealed state i/o at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("sealing key at {0} is not 32 bytes")]
    BadKey(PathBuf),
    #[error("the data key is not a valid AES-256 key")]
    BadDataKey,
    #[error("sealed state does not open: wrong sealing key or tampered ciphertext")]
    Open,
    #[error("random number generator failed")]
    Rng,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SealError + '_ {
    move |source| SealError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename) with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SealError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

/// AES-256-GCM with a random 96-bit nonce per seal. Blobs are `nonce ‖ ciphertext ‖ tag`.
///
/// Random nonces are safe here: a key seals a handful of blobs in its life (first
/// `Hello`, each rotation), far below the 2^32 limit for random GCM nonces.
pub struct Sealer {
    key: LessSafeKey,
    aad: &'static [u8],
    rng: SystemRandom,
}

impl Sealer {
    /// Seals under a KMS data key (32 bytes, from `CiphertextForRecipient`).
    pub fn kms(data_key: &[u8; 32]) -> Result<Self, SealError> {
        let unbound = UnboundKey::new(&AES_256_GCM, data_key).map_err(|_| SealError::BadDataKey)?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            aad: KMS_AAD,
            rng: SystemRandom::new(),
        })
    }

    /// The simulator's stand-in for KMS: loads `dir/sim-sealing.key`, creating it on
    /// first boot.
    pub fn sim(dir: &Path) -> Result<Self, SealError> {
        let path = dir.join("sim-sealing.key");
        let rng = SystemRandom::new();
        let raw = match fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = [0u8; 32];
                rng.fill(&mut k).map_err(|_| SealError::Rng)?;
                write_private(&path, &k)?;
                k.to_vec()
            }
            Err(e) => return Err(SealError::Io { path, source: e }),
        };
        let unbound = UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| SealError::BadKey(path.clone()))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            aad: SIM_AAD,
            rng,
        })
    }

    /// `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Rng)?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(self.aad), &mut buf)
            .map_err(|_| SealError::Rng)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn unseal(&self, blob: &[u8]) -> Result<Vec<u8>, SealError> {
        if blob.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(self.aad), &mut buf)
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sealer::sim(dir.path()).unwrap();
        let blob = s.seal(b"secret").unwrap();
        assert_eq!(Sealer::sim(dir.path()).unwrap().unseal(&blob).unwrap(), b"secret");
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(s.unseal(&bad), Err(SealError::Open)));
        let other = tempfile::tempdir().unwrap();
        assert!(matches!(
            Sealer::sim(other.path()).unwrap().unseal(&blob),
            Err(SealError::Open)
        ));
        assert!(s.unseal(&[1, 2]).is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("sim-sealing.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn kms_sealer_roundtrip_tamper_and_domain_separation() {
        let key = [7u8; 32];
        let s = Sealer::kms(&key).unwrap();
        let blob = s.seal(b"keys").unwrap();
        assert_eq!(Sealer::kms(&key).unwrap().unseal(&blob).unwrap(), b"keys");
        // Two seals of the same plaintext differ (fresh nonce).
        assert_ne!(s.seal(b"keys").unwrap(), blob);
        for i in [0, NONCE_LEN, blob.len() - 1] {
            let mut bad = blob.clone();
            bad[i] ^= 0x80;
            assert!(matches!(s.unseal(&bad), Err(SealError::Open)), "byte {i}");
        }
        assert!(matches!(
            Sealer::kms(&[8u8; 32]).unwrap().unseal(&blob),
            Err(SealError::Open)
        ));
        // The same key bytes under the simulator's AAD do not open a KMS blob.
        let dir = tempfile::tempdir().unwrap();
        write_private(&dir.path().join("sim-sealing.key"), &key).unwrap();
        let sim = Sealer::sim(dir.path()).unwrap();
        assert!(matches!(sim.unseal(&blob), Err(SealError::Open)));
        assert!(matches!(s.unseal(&sim.seal(b"keys").unwrap()), Err(SealError::Open)));
    }
}
