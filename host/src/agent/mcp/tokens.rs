//! OIDC tokens minted through `oidc_mint_token`, kept out of the model's context.
//!
//! A JWT is a bearer credential, so the tool answers with a *file*: the token is
//! written to `TMPDIR/sealgate-mcp-<pid>-<random>/<jti>.jwt`, the directory 0700 and
//! the file 0600, and the model passes the path on (to `AWS_WEB_IDENTITY_TOKEN_FILE`,
//! say, or a `curl -H @file`) instead of the token. The server also remembers each
//! token by its `jti` for `audit_prove_token`, which must present the token itself to
//! read its leaf. The directory is removed when the session ends.

use rand::RngCore;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Default)]
pub struct Tokens {
    dir: Mutex<Option<PathBuf>>,
    by_jti: Mutex<HashMap<String, String>>,
}

impl Tokens {
    /// Keeps `token` under `jti` and writes it to its file; returns the path.
    pub fn keep(&self, jti: &str, token: &str) -> Result<PathBuf, String> {
        if jti.is_empty() || !jti.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("the host answered an unexpected jti {jti:?}"));
        }
        self.by_jti
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(jti.to_string(), token.to_string());
        let dir = self.dir()?;
        let path = dir.join(format!("{jti}.jwt"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        f.write_all(token.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// A token this server minted, by its `jti`.
    pub fn get(&self, jti: &str) -> Option<String> {
        self.by_jti.lock().unwrap_or_else(|p| p.into_inner()).get(jti).cloned()
    }

    fn dir(&self) -> Result<PathBuf, String> {
        let mut dir = self.dir.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = dir.as_ref() {
            return Ok(d.clone());
        }
        let mut raw = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let d = std::env::temp_dir().join(format!("sealgate-mcp-{}-{}", std::process::id(), hex::encode(raw)));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&d)
            .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        *dir = Some(d.clone());
        Ok(d)
    }

    /// Removes the token files (best effort) and forgets the tokens.
    pub fn forget(&self) {
        self.by_jti.lock().unwrap_or_else(|p| p.into_inner()).clear();
        if let Some(d) = self.dir.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tokens_go_to_private_files_and_are_removed() {
        let t = Tokens::default();
        let p = t.keep("abc123", "h.p.s").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "h.p.s");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let dir = p.parent().unwrap().to_path_buf();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(t.get("abc123").as_deref(), Some("h.p.s"));
        assert!(t.keep("../x", "t").is_err());
        t.forget();
        assert!(!dir.exists());
        assert!(t.get("abc123").is_none());
    }
}
