//! API keys: `sg_` + 43 base64url characters (256 random bits), shown once and stored
//! only as SHA-256. Looked up by hash, compared in constant time, cached in memory
//! (revocation removes the cache entry in the same request, so it takes effect at
//! once on this host).

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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

pub const KEY_PREFIX: &str = "sg_";

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
                "a {} key cannot administer a workspace",
                self.role.as_str()
            ))),
        }
    }

    /// An agent key: returns `(workspace, agent)`.
    pub fn require_agent(&self) -> Result<(&str, &str), ApiError> {
        match (self.role, self.workspace_id.as_deref(), self.agent_id.as_deref()) {
            (Role::Agent, Some(ws), Some(agent)) => Ok((ws, agent)),
            _ => Err(ApiError::Forbidden(format!(
                "this call needs an agent key, not a {} key",
                self.role.as_str()
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

#[derive(Default)]
pub struct KeyCache {
    by_hash: RwLock<HashMap<[u8; 32], Principal>>,
    /// Bumped by every revocation; a lookup that started before one does not cache
    /// its result, so a revoked key cannot slip back in.
    generation: AtomicU64,
}

impl KeyCache {
    pub fn forget(&self, key_id: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.by_hash
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, p| p.key_id != key_id);
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
        if let Some(p) = self.by_hash.read().unwrap_or_else(|p| p.into_inner()).get(&hash) {
            return Ok(p.clone());
        }
        let found = db
            .read(move |c| {
                c.query_row(
                    "SELECT id, hash, role, workspace_id, agent_id FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL",
                    params![hash.as_slice()],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?, r.get::<_, Option<String>>(3)?, r.get::<_, Option<String>>(4)?)),
                )
                .optional()
            })
            .await?;
        let Some((key_id, stored, role, workspace_id, agent_id)) = found else {
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
        let mut cache = self.by_hash.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::SeqCst) == generation {
            cache.insert(p.hash, p.clone());
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
pub async fn bootstrap_operator(app: &App, path: &std::path::Path) -> Result<bool, ApiError> {
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
    write_secret(path, &format!("{key}\n"))
        .map_err(|e| ApiError::Internal(format!("writing {}: {e}", path.display())))?;
    Ok(true)
}

fn write_secret(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}
