//! Operator actions on the enclave itself.

use crate::auth::Principal;
use crate::db::PendingLeaf;
use crate::error::ApiError;
use crate::expect_reply;
use crate::App;
use axum::extract::State;
use axum::Json;
use sealgate_shared::protocol::{Op, Reply};
use serde_json::{json, Value};
use std::sync::Arc;

/// `POST /v1/admin/keys/rotate`: a new token signing key. The old key stays in the
/// JWKS (and in the attestation commitment) until every token it signed has expired.
pub async fn rotate_keys(State(app): State<Arc<App>>, who: Principal) -> Result<Json<Value>, ApiError> {
    who.require_operator()?;
    let reply = app
        .ledger
        .call(Op::RotateKey {
            caller: who.key_id.clone(),
        })
        .await?;
    let rotated = expect_reply!(reply, Reply::Rotated, "RotateKey")?;
    let index = rotated.leaf.index;
    // KMS sealing: the new key set, sealed, is stored with the leaf that records it.
    let apply: Option<crate::db::Apply> = rotated.sealed_state.map(|sealed| {
        Box::new(move |c: &rusqlite::Connection| crate::kms_seal::store_sealed_state(c, &sealed)) as crate::db::Apply
    });
    app.ledger
        .commit(vec![PendingLeaf::new(rotated.leaf, None)], apply)
        .await?;
    let keys: Vec<Value> = rotated
        .hello
        .token_keys
        .iter()
        .map(|k| json!({ "kid": k.kid, "retire_at": k.retire_at }))
        .collect();
    let kid = rotated
        .hello
        .token_keys
        .iter()
        .find(|k| k.retire_at.is_none())
        .map(|k| k.kid.clone());
    app.ledger.set_hello(rotated.hello);
    Ok(Json(json!({ "kid": kid, "keys": keys, "log_index": index })))
}
