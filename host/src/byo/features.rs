//! Per-workspace entitlements (today: `byo_storage`). Set by the operator only: BYO
//! storage makes sealgate call into customer accounts, a commercial and operational
//! decision that a workspace admin cannot take for themselves.

use super::access;
use super::error::ByoResult;
use crate::api::JsonBody;
use crate::auth::Principal;
use crate::App;
use axum::extract::{Path, State};
use axum::Json;
use rusqlite::params;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Features {
    byo_storage: bool,
}

pub async fn put(
    State(app): State<Arc<App>>,
    Path(ws): Path<String>,
    who: Principal,
    JsonBody(body): JsonBody<Features>,
) -> ByoResult<Json<Value>> {
    who.require_operator()?;
    access::existing_workspace(&app, &ws).await?;
    let (rws, on, now) = (ws.clone(), body.byo_storage, crate::now_secs() as i64);
    app.ledger
        .record(
            "admin.features.updated",
            json!({ "workspace_id": ws, "byo_storage": body.byo_storage, "by": who.key_id }),
            Some(Box::new(move |c| {
                c.execute(
                    "INSERT INTO workspace_features (workspace_id, byo_storage, updated_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(workspace_id) DO UPDATE SET byo_storage = excluded.byo_storage, updated_at = excluded.updated_at",
                    params![rws, on, now],
                )?;
                Ok(())
            })),
        )
        .await?;
    Ok(Json(json!({ "workspace_id": ws, "byo_storage": body.byo_storage })))
}

pub async fn get(State(app): State<Arc<App>>, Path(ws): Path<String>, who: Principal) -> ByoResult<Json<Value>> {
    who.require_admin_of(&ws)?;
    access::existing_workspace(&app, &ws).await?;
    let on = super::store::byo_enabled(&app, &ws).await?;
    Ok(Json(json!({ "workspace_id": ws, "byo_storage": on })))
}
