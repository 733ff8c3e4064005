//! Operator actions: on the enclave itself (token key rotation) and on the operator's
//! own key.

use crate::auth::{self, Principal, Role};
use crate::db::PendingLeaf;
use crate::error::ApiError;
use crate::expect_reply;
use crate::App;
use axum::extract::State;
use axum::Json;
use rusqlite::params;
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

/// `POST /v1/admin/operator-key/rotate`: a new operator key, returned once; every other
/// operator key (the caller's included) is revoked in the same leaf and forgotten by
/// the cache at once.
///
/// When the host was started with an operator key file (`--admin-key-file`, or the
/// default next to the database), the new key is written there first, atomically and
/// 0600 ([`auth::write_secret`]); only then is the change committed. If that write
/// fails nothing changes (the old key keeps working); if the commit fails after it, the
/// old key still works and the next rotation rewrites the file.
pub async fn rotate_operator_key(
    State(app): State<Arc<App>>,
    who: Principal,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    super::no_body(&body)?;
    who.require_operator()?;
    let (id, key) = auth::generate();
    let file = app.keys.admin_key_file().map(std::path::Path::to_path_buf);
    if let Some(path) = &file {
        auth::write_secret(path, &format!("{key}\n"))
            .map_err(|e| ApiError::Internal(format!("writing the operator key to {}: {e}", path.display())))?;
    }
    let revoked: Vec<String> = app
        .ledger
        .db
        .read(|c| {
            let mut st =
                c.prepare("SELECT id FROM api_keys WHERE role = 'operator' AND revoked_at IS NULL ORDER BY id")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })
        .await?;
    let hash = auth::hash_key(&key);
    let (rid, now) = (id.clone(), crate::now_secs() as i64);
    let leaf = app
        .ledger
        .record(
            "admin.operator_key.rotated",
            json!({ "key_id": id, "revoked_keys": revoked, "by": who.key_id, "file_rewritten": file.is_some() }),
            Some(Box::new(move |c| {
                c.execute(
                    "UPDATE api_keys SET revoked_at = ?1 WHERE role = 'operator' AND revoked_at IS NULL",
                    params![now],
                )?;
                c.execute(
                    "INSERT INTO api_keys (id, hash, role, workspace_id, agent_id, created_at) \
                     VALUES (?1, ?2, 'operator', NULL, NULL, ?3)",
                    params![rid, hash.as_slice(), now],
                )?;
                Ok(())
            })),
        )
        .await?;
    app.keys.forget_matching(|p| p.role == Role::Operator && p.key_id != id);
    Ok(Json(json!({
        "id": id,
        "key": key,
        "revoked_keys": revoked,
        "admin_key_file": file.map(|p| p.display().to_string()),
        "log_index": leaf.index,
    })))
}
