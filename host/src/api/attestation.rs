//! `GET /v1/attestation?nonce=HEX`: a fresh document from the enclave and the values
//! its `user_data` commits to (see `sealgate_shared::commitment`), both as the exact
//! bytes that are hashed (`commitment_json`) and as an object to read.

use super::QueryParams;
use crate::error::ApiError;
use crate::expect_reply;
use crate::App;
use axum::extract::State;
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sealgate_shared::protocol::{Op, Reply};
use serde::Deserialize;
use serde_bytes::ByteBuf;
use serde_json::{json, Value};
use std::sync::Arc;

/// Longest nonce accepted, in bytes.
pub const MAX_NONCE_BYTES: usize = 64;

#[derive(Deserialize)]
pub struct AttestQuery {
    nonce: Option<String>,
}

pub async fn attestation(
    State(app): State<Arc<App>>,
    QueryParams(q): QueryParams<AttestQuery>,
) -> Result<Json<Value>, ApiError> {
    let nonce = match q.nonce.as_deref() {
        None | Some("") => None,
        Some(h) => {
            let raw = hex::decode(h).map_err(|_| ApiError::bad_code("INVALID_NONCE", "nonce must be hex"))?;
            if raw.len() > MAX_NONCE_BYTES {
                return Err(ApiError::bad_code(
                    "INVALID_NONCE",
                    format!("nonce must be at most {MAX_NONCE_BYTES} bytes"),
                ));
            }
            Some(ByteBuf::from(raw))
        }
    };
    // The slot is held until the enclave answers, in a task of its own: a client that
    // hangs up does not stop the enclave's work, so it must not free the slot either.
    let slot = app.limits.attestations.acquire()?;
    let ledger = app.ledger.clone();
    let call = tokio::spawn(async move {
        let reply = ledger.call(Op::Attest { nonce }).await;
        drop(slot);
        reply
    });
    let reply = call
        .await
        .map_err(|e| ApiError::Internal(format!("attestation task: {e}")))??;
    let att = expect_reply!(reply, Reply::Attestation, "Attest")?;
    Ok(Json(json!({
        "mode": att.commitment.mode,
        "document": B64.encode(&att.document),
        "user_data": hex::encode(att.commitment.digest()),
        // The bytes user_data is the SHA-256 of: the object below is re-encoded with
        // its keys sorted, so hashing it would not give user_data.
        "commitment_json": att.commitment.canonical_json(),
        "commitment": att.commitment,
    })))
}
