//! The witness's Ed25519 key in `STATE/witness.key`: 32 random bytes in hex, created
//! once with mode 0600 and never rewritten, since a witness that changes key silently
//! is a new witness that remembers nothing anyone configured.

use ed25519_dalek::SigningKey;
use rand::RngCore;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("{0}: not 32 bytes of hex")]
    Malformed(String),
    #[error("{0}: readable by others (mode {1:o}); chmod 600 it")]
    Exposed(String, u32),
}

/// Loads the key at `path`, creating it (0600, exclusively) if there is none.
pub fn load_or_create(path: &Path) -> Result<(SigningKey, bool), KeyError> {
    let shown = path.display().to_string();
    let io = |err| KeyError::Io {
        path: shown.clone(),
        err,
    };
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(format!("{}\n", hex::encode(seed)).as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io)?;
            return Ok((SigningKey::from_bytes(&seed), true));
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Exposed(shown, mode));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let bytes = hex::decode(text.trim()).map_err(|_| KeyError::Malformed(shown.clone()))?;
    let seed: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Malformed(shown))?;
    Ok((SigningKey::from_bytes(&seed), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("witness.key");
        let (k1, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (k2, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.to_bytes(), k2.to_bytes());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load_or_create(&path), Err(KeyError::Exposed(..))));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not hex\n").unwrap();
        assert!(matches!(load_or_create(&path), Err(KeyError::Malformed(_))));
    }
}
