//! The audit log over HTTP (ARCHITECTURE §5).
//!
//! Integrity is public: anyone reads the checkpoint, its verifier key, every leaf hash
//! (`/v1/audit/hashes`) and the proofs, which is all a root or an inclusion needs.
//! Contents are not: a leaf names role ARNs, buckets, object keys, reasons and agents,
//! so its bytes go only to a caller who may read that leaf —
//!
//! - an `auditor` or `admin` key of the workspace the leaf belongs to
//!   (`leaves.workspace_id`, from `leaf::workspace_of` at record time);
//! - the operator key (the operator's auditor), for every leaf, including the
//!   operator-level ones that belong to no workspace;
//! - the holder of a token, for that token's own leaf (`/v1/audit/tokens/{jti}`).

use super::QueryParams;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::App;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rusqlite::{params, OptionalExtension};
use sealgate_shared::merkle::{self, Hash};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Most entries (or hashes) served per call.
pub const MAX_ENTRIES: u64 = 1000;

const TEXT: [(header::HeaderName, &str); 1] = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];

pub async fn checkpoint(State(app): State<Arc<App>>) -> Result<impl IntoResponse, ApiError> {
    let cp = app
        .ledger
        .checkpoint()
        .ok_or_else(|| ApiError::EnclaveUnavailable("no checkpoint has been signed yet".into()))?;
    Ok((TEXT, cp.note))
}

pub async fn key(State(app): State<Arc<App>>) -> Result<impl IntoResponse, ApiError> {
    let hello = app
        .ledger
        .hello()
        .ok_or_else(|| ApiError::EnclaveUnavailable("the enclave has not been reached yet".into()))?;
    Ok((TEXT, format!("{}\n", hello.checkpoint_key)))
}

/// Sizes a proof may name: anything up to the committed prefix.
fn check_size(app: &App, size: u64) -> Result<(), ApiError> {
    let have = app.ledger.committed_size();
    if size > have {
        return Err(ApiError::bad_code(
            "INVALID_RANGE",
            format!("size {size} exceeds the log size {have}"),
        ));
    }
    Ok(())
}

fn b64_hashes(hashes: Vec<Hash>) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h)).collect()
}

#[derive(Deserialize)]
pub struct Range {
    start: u64,
    end: u64,
}

impl Range {
    fn check(&self) -> Result<(), ApiError> {
        if self.end <= self.start || self.end - self.start > MAX_ENTRIES {
            return Err(ApiError::bad_code(
                "INVALID_RANGE",
                format!("need start < end and at most {MAX_ENTRIES} entries per call"),
            ));
        }
        Ok(())
    }
}

/// `GET /v1/audit/hashes`: the leaf hashes `[start, end)`, public. Enough to recompute
/// any checkpoint's root without reading a single leaf's contents. Served from the
/// Merkle tree the host checks every checkpoint against (built at start by hashing the
/// stored leaves afresh), so it covers the committed prefix: fewer hashes than asked
/// when the log is shorter.
pub async fn hashes(State(app): State<Arc<App>>, QueryParams(q): QueryParams<Range>) -> Result<Json<Value>, ApiError> {
    q.check()?;
    let hashes: Vec<String> = {
        let tree = app.ledger.tree();
        (q.start..q.end.min(tree.len()))
            .filter_map(|i| tree.leaf(i))
            .map(|h| B64.encode(h))
            .collect()
    };
    // `end` is what was served, not what was asked: `[start, end)` names these hashes.
    let end = q.start + hashes.len() as u64;
    Ok(Json(json!({ "start": q.start, "end": end, "hashes": hashes })))
}

/// Whose leaves a key may read in full (ARCHITECTURE §5).
pub(super) enum Readable {
    /// The operator key: the operator's auditor, every leaf.
    All,
    /// An `auditor` or `admin` key: its workspace's leaves.
    Workspace(String),
}

impl Readable {
    pub(super) fn of(p: &Principal) -> Result<Self, ApiError> {
        match (p.role, p.workspace_id.as_deref()) {
            (Role::Operator, _) => Ok(Readable::All),
            (Role::Auditor | Role::Admin, Some(ws)) => Ok(Readable::Workspace(ws.to_string())),
            (role, _) => Err(ApiError::Forbidden(format!(
                "this {} key cannot read audit leaf contents: use an auditor or admin key of the workspace; \
                 leaf hashes are public at /v1/audit/hashes",
                role.as_str()
            ))),
        }
    }

    pub(super) fn allows(&self, leaf_workspace: Option<&str>) -> bool {
        match self {
            Readable::All => true,
            Readable::Workspace(ws) => leaf_workspace == Some(ws.as_str()),
        }
    }
}

/// The caller of a content endpoint, from `Authorization` (absent: anonymous).
pub enum Caller {
    Anonymous,
    /// `Bearer sg_…`: an API key, resolved like every other endpoint's.
    Key(Principal),
    /// `Bearer <anything else>`: a token the host issued, presented by its holder.
    Token(String),
}

/// Longest bearer token accepted (our JWTs are well under 1 KiB).
const MAX_BEARER: usize = 8 * 1024;

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Ok(Caller::Anonymous);
        };
        let bearer = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "Authorization must be `Bearer sg_…` (a key) or `Bearer <JWT>` (a token)".into(),
                )
            })?;
        if bearer.starts_with(crate::auth::KEY_PREFIX) {
            return Principal::from_request_parts(parts, app).await.map(Caller::Key);
        }
        if bearer.is_empty() || bearer.len() > MAX_BEARER {
            return Err(ApiError::Unauthenticated(format!(
                "the bearer token must be 1-{MAX_BEARER} characters"
            )));
        }
        Ok(Caller::Token(bearer.to_string()))
    }
}

pub(super) const CONTENTS_NEED_KEY: &str =
    "audit leaf contents are readable only with an auditor or admin key of their \
     workspace (Authorization: Bearer sg_…); anyone can verify the log from /v1/audit/hashes, \
     /v1/audit/checkpoint and the proofs";

/// A stored leaf: its index, its bytes as stored and the workspace it belongs to.
pub(super) type StoredLeaf = (u64, Vec<u8>, Option<String>);

/// The stored leaves `[start, end)` in index order: what the database holds, which a
/// caller compares with what it expects (gaps are the caller's to judge).
pub(super) async fn stored_leaves(app: &App, start: u64, end: u64) -> Result<Vec<StoredLeaf>, ApiError> {
    let (start, end) = (start as i64, end as i64);
    let rows = app
        .ledger
        .db
        .read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT idx, bytes, workspace_id FROM leaves WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
            )?;
            let rows = st.query_map(params![start, end], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?;
    Ok(rows)
}

/// `GET /v1/audit/entries`: leaves `[start, end)` as stored, one entry per stored leaf,
/// each `{index, hash, leaf?}`. `leaf` (base64 bytes) is present only for the leaves
/// the key may read; the others are placeholders with their hash, so the page still
/// recomputes the root and a verifier checks that each leaf it reads hashes to `hash`.
/// `hash` is the tree's (see [`hashes`]), not recomputed from the bytes served: a
/// leaf edited under a running host shows up as bytes that do not match it.
pub async fn entries(
    State(app): State<Arc<App>>,
    caller: Caller,
    QueryParams(q): QueryParams<Range>,
) -> Result<Json<Value>, ApiError> {
    let readable = match caller {
        Caller::Key(p) => Readable::of(&p)?,
        Caller::Anonymous => return Err(ApiError::Unauthenticated(CONTENTS_NEED_KEY.into())),
        Caller::Token(_) => {
            return Err(ApiError::Unauthenticated(format!(
                "a token reads only its own leaf, at /v1/audit/tokens/<its jti claim>; {CONTENTS_NEED_KEY}"
            )))
        }
    };
    q.check()?;
    // No check against the log size: the host serves exactly what its database holds
    // (even in integrity-failure mode), and the auditor decides what that means.
    let rows = stored_leaves(&app, q.start, q.end).await?;
    // `end` is one past the last entry served (`start` when there is none), not what
    // was asked: the answer's `[start, end)` always names exactly its entries.
    let end = rows.last().map_or(q.start, |(index, _, _)| index + 1);
    let entries: Vec<Value> = {
        let tree = app.ledger.tree();
        rows.into_iter()
            .map(|(index, bytes, ws)| {
                let hash = tree.leaf(index).unwrap_or_else(|| merkle::leaf_hash(&bytes));
                if readable.allows(ws.as_deref()) {
                    json!({ "index": index, "hash": B64.encode(hash), "leaf": B64.encode(&bytes) })
                } else {
                    json!({ "index": index, "hash": B64.encode(hash) })
                }
            })
            .collect()
    };
    Ok(Json(json!({ "start": q.start, "end": end, "entries": entries })))
}

#[derive(Deserialize)]
pub struct InclusionQuery {
    index: u64,
    size: u64,
}

pub async fn inclusion(
    State(app): State<Arc<App>>,
    QueryParams(q): QueryParams<InclusionQuery>,
) -> Result<Json<Value>, ApiError> {
    check_size(&app, q.size)?;
    let proof = app
        .ledger
        .tree()
        .inclusion_proof(q.index, q.size)
        .map_err(|e| ApiError::bad_code("INVALID_RANGE", e.to_string()))?;
    Ok(Json(
        json!({ "index": q.index, "size": q.size, "proof": b64_hashes(proof) }),
    ))
}

#[derive(Deserialize)]
pub struct ConsistencyQuery {
    from: u64,
    to: u64,
}

pub async fn consistency(
    State(app): State<Arc<App>>,
    QueryParams(q): QueryParams<ConsistencyQuery>,
) -> Result<Json<Value>, ApiError> {
    if q.from == 0 || q.from > q.to {
        return Err(ApiError::bad_code("INVALID_RANGE", "need 0 < from <= to"));
    }
    check_size(&app, q.to)?;
    let proof = app
        .ledger
        .tree()
        .consistency_proof(q.from, q.to)
        .map_err(|e| ApiError::bad_code("INVALID_RANGE", e.to_string()))?;
    Ok(Json(json!({ "from": q.from, "to": q.to, "proof": b64_hashes(proof) })))
}

/// `GET /v1/audit/tokens/{jti}`: a token's leaf, for its holder (`Bearer <the JWT>`:
/// the leaf records SHA-256 of the token exactly as issued, so matching it proves
/// possession without any signature check) or for a key that may read the leaf.
/// Anything else learns nothing, not even whether the jti exists.
pub async fn token(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(jti): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if jti.is_empty() || jti.len() > 64 || !jti.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::bad_code(
            "INVALID_JTI",
            "jti must be 1-64 alphanumeric characters",
        ));
    }
    let readable = match &caller {
        Caller::Anonymous => {
            return Err(ApiError::Unauthenticated(format!(
                "present the token itself (Authorization: Bearer <JWT>) to read its leaf; {CONTENTS_NEED_KEY}"
            )))
        }
        Caller::Key(p) => Some(Readable::of(p)?),
        Caller::Token(_) => None,
    };
    let q = jti.clone();
    let found =
        app.ledger
            .db
            .read(move |c| {
                c.query_row(
                "SELECT t.idx, l.bytes, l.workspace_id FROM tokens t JOIN leaves l ON l.idx = t.idx WHERE t.jti = ?1",
                params![q],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?, r.get::<_, Option<String>>(2)?)),
            )
            .optional()
            })
            .await?;
    let not_found = || ApiError::NotFound(format!("no token with jti {jti} in the log that this caller may read"));
    let (index, leaf, ws) = found.ok_or_else(not_found)?;
    let allowed = match (&caller, readable) {
        (_, Some(r)) => r.allows(ws.as_deref()),
        (Caller::Token(jwt), None) => holds_token(&leaf, jwt),
        _ => false,
    };
    if !allowed {
        return Err(not_found());
    }
    let hash = app
        .ledger
        .tree()
        .leaf(index)
        .unwrap_or_else(|| merkle::leaf_hash(&leaf));
    Ok(Json(json!({
        "jti": jti,
        "index": index,
        "hash": B64.encode(hash),
        "leaf": B64.encode(leaf),
    })))
}

/// True when `leaf` is the `token.issued` leaf of exactly this token: its
/// `token_sha256` equals SHA-256 of the presented bytes (compared in constant time).
fn holds_token(leaf: &[u8], presented: &str) -> bool {
    let Ok(parsed) = sealgate_shared::leaf::parse(leaf) else {
        return false;
    };
    if parsed.kind != sealgate_shared::leaf::KIND_TOKEN_ISSUED {
        return false;
    }
    let Some(logged) = parsed.data.get("token_sha256").and_then(Value::as_str) else {
        return false;
    };
    let actual = hex::encode(Sha256::digest(presented.as_bytes()));
    logged.len() == actual.len() && bool::from(logged.as_bytes().ct_eq(actual.as_bytes()))
}
