//! The public audit log: checkpoint, verifier key, entries, proofs, look-ups.

use super::QueryParams;
use crate::error::ApiError;
use crate::App;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rusqlite::{params, OptionalExtension};
use sealgate_shared::merkle::Hash;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Most entries served per call.
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

pub async fn entries(State(app): State<Arc<App>>, QueryParams(q): QueryParams<Range>) -> Result<Json<Value>, ApiError> {
    if q.end <= q.start || q.end - q.start > MAX_ENTRIES {
        return Err(ApiError::bad_code(
            "INVALID_RANGE",
            format!("need start < end and at most {MAX_ENTRIES} entries per call"),
        ));
    }
    // No check against the log size: the host serves exactly what its database holds
    // (even in integrity-failure mode), and the auditor decides what that means.
    let (start, end) = (q.start as i64, q.end as i64);
    let rows = app
        .ledger
        .db
        .read(move |c| {
            let mut st = c.prepare_cached("SELECT bytes FROM leaves WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")?;
            let rows = st.query_map(params![start, end], |r| r.get::<_, Vec<u8>>(0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?;
    let entries: Vec<String> = rows.iter().map(|b| B64.encode(b)).collect();
    Ok(Json(json!({ "start": q.start, "end": q.end, "entries": entries })))
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

pub async fn token(State(app): State<Arc<App>>, Path(jti): Path<String>) -> Result<Json<Value>, ApiError> {
    if jti.is_empty() || jti.len() > 64 || !jti.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::bad_code(
            "INVALID_JTI",
            "jti must be 1-64 alphanumeric characters",
        ));
    }
    let q = jti.clone();
    let found = app
        .ledger
        .db
        .read(move |c| {
            c.query_row(
                "SELECT t.idx, l.bytes FROM tokens t JOIN leaves l ON l.idx = t.idx WHERE t.jti = ?1",
                params![q],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )
            .optional()
        })
        .await?;
    let (index, leaf) = found.ok_or_else(|| ApiError::NotFound(format!("no token with jti {jti} in the log")))?;
    Ok(Json(json!({ "jti": jti, "index": index, "leaf": B64.encode(leaf) })))
}
