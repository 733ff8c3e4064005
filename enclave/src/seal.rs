//! Sealing: how private keys survive an enclave restart without ever leaving it in
//! clear.
//!
//! In production (a later issue) the sealing key is a KMS data key released only to an
//! enclave with the right measurements. In simulator mode it is a random AES-256 key in
//! the state directory, which protects nothing against someone who can read that
//! directory; every surface therefore reports `"mode": "sim"`.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Binds ciphertexts to their purpose so a blob sealed for something else never opens.
const AAD: &[u8] = b"sealgate-sealed-state-v1";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sealed state i/o at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("sealing key at {0} is not 32 bytes")]
    BadKey(PathBuf),
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

/// AES-256-GCM under a local key file: the simulator's stand-in for KMS.
pub struct SimSealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl SimSealer {
    /// Loads `dir/sim-sealing.key`, creating it on first boot.
    pub fn open(dir: &Path) -> Result<Self, SealError> {
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
            rng,
        })
    }

    /// `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Rng)?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(AAD), &mut buf)
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
            .open_in_place(nonce, Aad::from(AAD), &mut buf)
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
        let s = SimSealer::open(dir.path()).unwrap();
        let blob = s.seal(b"secret").unwrap();
        assert_eq!(SimSealer::open(dir.path()).unwrap().unseal(&blob).unwrap(), b"secret");
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(s.unseal(&bad), Err(SealError::Open)));
        let other = tempfile::tempdir().unwrap();
        assert!(matches!(
            SimSealer::open(other.path()).unwrap().unseal(&blob),
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
}
