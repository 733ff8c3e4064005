//! API keys: `sg_` + 43 base64url characters (256 random bits), shown once and stored
//! only as SHA-256. Looked up by hash, compared in constant time, cached in memory
//! (revocation removes the cache entry in the same request, so it takes effect at
//! once on this host).
//!
//! A key of a disabled agent never resolves, even one that somehow escaped revocation:
//! the lookup joins the agent and refuses it once `disabled_at` is set.
//!
//! `last_used_at` is approximate on purpose: a cached key is written back at most once
//! per [`TOUCH_EVERY_SECS`], by a task of its own riding the writer's next group commit,
//! so authenticating a request (a mint, say) never waits for a database write.
//!
//! The operator key file is always written before the key's row is committed, atomically
//! (a temporary file in the same directory, created 0600, fsynced, renamed over the
//! path): a failed write leaves no row, so the next start makes a new key, and a file
//! that existed with looser permissions is replaced, not reused.

use crate::error::ApiError;
use crate::App;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use rand::RngCore;
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use subtle::ConstantTimeEq;

pub const KEY_PREFIX: &str = "sg_";

/// A key's `last_used_at` is written back at most this often.
pub const TOUCH_EVERY_SECS: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The global operator admin (bootstrap key).
    Operator,
    Admin,
    Agent,
    Approver,
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "operator" => Role::Operator,
            "admin" => Role::Admin,
            "agent" => Role::Agent,
            "approver" => Role::Approver,
            "auditor" => Role::Auditor,
            _ => return None,
        })
    }

    /// The role with its indefinite article, for messages ("an admin", "an agent").
    pub fn with_article(&self) -> String {
        let name = self.as_str();
        let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        format!("{article} {name}")
    }
}

/// Who is calling: resolved from a valid, unrevoked key.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    pub role: Role,
    pub workspace_id: Option<String>,
    pub agent_id: Option<String>,
    hash: [u8; 32],
}

impl Principal {
    pub fn require_operator(&self) -> Result<(), ApiError> {
        if self.role == Role::Operator {
            Ok(())
        } else {
            Err(ApiError::Forbidden("this call needs the operator admin key".into()))
        }
    }

    /// The operator, or an admin of workspace `ws`.
    pub fn require_admin_of(&self, ws: &str) -> Result<(), ApiError> {
        match self.role {
            Role::Operator => Ok(()),
            Role::Admin if self.workspace_id.as_deref() == Some(ws) => Ok(()),
            Role::Admin => Err(ApiError::Forbidden("this key belongs to another workspace".into())),
            _ => Err(ApiError::Forbidden(format!(
                "{} key cannot administer a workspace",
                self.role.with_article()
            ))),
        }
    }

    /// A principal without a key behind it, for unit tests of authorisation rules.
    #[cfg(test)]
    pub fn for_tests(key_id: &str, role: Role, workspace_id: Option<&str>, agent_id: Option<&str>) -> Principal {
        Principal {
            key_id: key_id.into(),
            role,
            workspace_id: workspace_id.map(Into::into),
            agent_id: agent_id.map(Into::into),
            hash: [0; 32],
        }
    }

    /// An agent key: returns `(workspace, agent)`.
    pub fn require_agent(&self) -> Result<(&str, &str), ApiError> {
        match (self.role, self.workspace_id.as_deref(), self.agent_id.as_deref()) {
            (Role::Agent, Some(ws), Some(agent)) => Ok((ws, agent)),
            _ => Err(ApiError::Forbidden(format!(
                "this call needs an agent key, not {} key",
                self.role.with_article()
            ))),
        }
    }
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A new key id and secret.
pub fn generate() -> (String, String) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    (
        format!("key_{}", hex::encode(id)),
        format!("{KEY_PREFIX}{}", B64URL.encode(secret)),
    )
}

/// A resolved key and when its use was last written back.
struct Cached {
    principal: Principal,
    last_touch: Arc<AtomicI64>,
}

#[derive(Default)]
pub struct KeyCache {
    by_hash: RwLock<HashMap<[u8; 32], Cached>>,
    /// Bumped by every revocation; a lookup that started before one does not cache
    /// its result, so a revoked key cannot slip back in.
    generation: AtomicU64,
    /// Where the operator key file lives (set at bootstrap); rotation rewrites it.
    admin_key_file: OnceLock<PathBuf>,
}

impl KeyCache {
    pub fn forget(&self, key_id: &str) {
        self.forget_matching(|p| p.key_id == key_id);
    }

    /// Forgets every cached key for which `pred` holds (an agent's keys, the operator's).
    pub fn forget_matching(&self, pred: impl Fn(&Principal) -> bool) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.by_hash
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, c| !pred(&c.principal));
    }

    /// The operator key file the host was started with, once bootstrap has run.
    pub fn admin_key_file(&self) -> Option<&Path> {
        self.admin_key_file.get().map(PathBuf::as_path)
    }

    /// Records that the key was used, writing it back if the last write is a minute old.
    /// Never awaited: the write is a task of its own (see the module docs).
    fn touch(db: &crate::db::Db, key_id: &str, last_touch: &AtomicI64) {
        let now = crate::now_secs() as i64;
        let prev = last_touch.load(Ordering::Relaxed);
        if now - prev < TOUCH_EVERY_SECS
            || last_touch
                .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let (db, id) = (db.clone(), key_id.to_string());
        tokio::spawn(async move {
            let write: crate::db::Apply = Box::new(move |c| {
                c.execute(
                    "UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)",
                    params![now, id],
                )?;
                Ok(())
            });
            if let Err(e) = db.commit(Vec::new(), Some(write)).await {
                tracing::warn!("recording a key's last use failed: {e}");
            }
        });
    }

    async fn resolve(&self, db: &crate::db::Db, key: &str) -> Result<Principal, ApiError> {
        let well_formed = key.len() == KEY_PREFIX.len() + 43
            && key.starts_with(KEY_PREFIX)
            && key[KEY_PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(ApiError::Unauthenticated(
                "malformed API key: expected sg_ followed by 43 characters".into(),
            ));
        }
        let hash = hash_key(key);
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some(c) = self.by_hash.read().unwrap_or_else(|p| p.into_inner()).get(&hash) {
            Self::touch(db, &c.principal.key_id, &c.last_touch);
            return Ok(c.principal.clone());
        }
        let found = db
            .read(move |c| {
                c.query_row(
                    "SELECT k.id, k.hash, k.role, k.workspace_id, k.agent_id, k.last_used_at FROM api_keys k \
                     LEFT JOIN agents a ON a.id = k.agent_id \
                     WHERE k.hash = ?1 AND k.revoked_at IS NULL AND a.disabled_at IS NULL",
                    params![hash.as_slice()],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Vec<u8>>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, Option<i64>>(5)?,
                        ))
                    },
                )
                .optional()
            })
            .await?;
        let Some((key_id, stored, role, workspace_id, agent_id, last_used)) = found else {
            return Err(ApiError::Unauthenticated("unknown or revoked API key".into()));
        };
        if !bool::from(stored.as_slice().ct_eq(hash.as_slice())) {
            return Err(ApiError::Unauthenticated("unknown or revoked API key".into()));
        }
        let role = Role::parse(&role).ok_or_else(|| ApiError::Internal(format!("stored role {role:?} is unknown")))?;
        let p = Principal {
            key_id,
            role,
            workspace_id,
            agent_id,
            hash,
        };
        let last_touch = Arc::new(AtomicI64::new(last_used.unwrap_or(0)));
        Self::touch(db, &p.key_id, &last_touch);
        let mut cache = self.by_hash.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::SeqCst) == generation {
            cache.insert(
                p.hash,
                Cached {
                    principal: p.clone(),
                    last_touch,
                },
            );
        }
        Ok(p)
    }
}

impl FromRequestParts<Arc<App>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthenticated("missing Authorization: Bearer sg_… header".into()))?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::Unauthenticated("Authorization header is not ASCII".into()))?;
        let key = value
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::Unauthenticated("Authorization must be `Bearer sg_…`".into()))?;
        app.keys.resolve(&app.ledger.db, key.trim()).await
    }
}

/// Creates the operator key on first start and writes it to `path` (mode 0600).
/// Later starts leave an existing operator key alone.
///
/// The file is written first and the row committed after: if the write fails nothing
/// is recorded and the start fails, so the next start (with a writable path) creates
/// the key; if the commit fails after the write, the file holds a key that never
/// worked and the next start replaces it.
pub async fn bootstrap_operator(app: &App, path: &Path) -> Result<bool, ApiError> {
    let _ = app.keys.admin_key_file.set(path.to_path_buf());
    let exists = app
        .ledger
        .db
        .read(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM api_keys WHERE role = 'operator' AND revoked_at IS NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .await?;
    if exists > 0 {
        return Ok(false);
    }
    let (id, key) = generate();
    write_secret(path, &format!("{key}\n"))
        .map_err(|e| ApiError::Internal(format!("writing the operator key to {}: {e}", path.display())))?;
    let hash = hash_key(&key);
    let now = crate::now_secs() as i64;
    let event = serde_json::json!({ "action": "operator_key.created", "key_id": id });
    let apply_id = id.clone();
    app.ledger
        .record(
            "admin.bootstrap",
            event,
            Some(Box::new(move |c| {
                c.execute(
                    "INSERT INTO api_keys (id, hash, role, workspace_id, agent_id, created_at) VALUES (?1, ?2, 'operator', NULL, NULL, ?3)",
                    params![apply_id, hash.as_slice(), now],
                )?;
                Ok(())
            })),
        )
        .await?;
    Ok(true)
}

/// Writes `contents` to `path` atomically with mode 0600: a new file in the same
/// directory (created 0600, so the secret is never readable by others, not even for a
/// moment), fsynced, renamed over `path`, and the directory fsynced. A file already at
/// `path` is replaced whatever its mode; on any failure `path` is left as it was.
pub fn write_secret(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the key file path names no file"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut nonce = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), hex::encode(nonce)));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Hole 7: a pre-existing 0644 file must not keep its mode when the key is written.
    #[test]
    fn write_secret_replaces_a_loose_file_with_a_0600_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.key");
        std::fs::write(&path, "old\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_secret(&path, "sg_new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "sg_new\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "a temporary file was left behind");
    }

    #[test]
    fn write_secret_into_a_missing_directory_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("admin.key");
        assert!(write_secret(&path, "sg_x\n").is_err());
        assert!(!path.exists());
    }
}
