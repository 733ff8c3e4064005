//! Workspaces, agents and API keys. Every change is recorded as a host event in the
//! audit log, committed in the same transaction as the change itself.

use super::JsonBody;
use crate::auth::{self, Principal, Role};
use crate::error::ApiError;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rand::RngCore;
use rusqlite::{params, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("{prefix}_{}", hex::encode(b))
}

fn valid_name(name: &str) -> Result<String, ApiError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 128 || n.chars().any(char::is_control) {
        return Err(ApiError::bad_code(
            "INVALID_NAME",
            "name must be 1-128 characters without control characters",
        ));
    }
    Ok(n.to_string())
}

/// 404 unless workspace `ws` exists (shared by every workspace-scoped endpoint).
pub async fn workspace_exists(app: &App, ws: &str) -> Result<(), ApiError> {
    let ws_owned = ws.to_string();
    let found = app
        .ledger
        .db
        .read(move |c| {
            c.query_row("SELECT 1 FROM workspaces WHERE id = ?1", params![ws_owned], |_| Ok(()))
                .optional()
        })
        .await?;
    found.ok_or_else(|| ApiError::NotFound(format!("workspace {ws} does not exist")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWorkspace {
    name: String,
}

pub async fn create_workspace(
    State(app): State<Arc<App>>,
    who: Principal,
    JsonBody(body): JsonBody<NewWorkspace>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    who.require_operator()?;
    let name = valid_name(&body.name)?;
    let id = new_id("ws");
    let (rid, rname, now) = (id.clone(), name.clone(), crate::now_secs() as i64);
    app.ledger
        .record(
            "admin.workspace.created",
            json!({ "workspace_id": id, "name": name, "by": who.key_id }),
            Some(Box::new(move |c| {
                c.execute(
                    "INSERT INTO workspaces (id, name, created_at) VALUES (?1, ?2, ?3)",
                    params![rid, rname, now],
                )?;
                Ok(())
            })),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "name": name }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    name: String,
}

pub async fn create_agent(
    State(app): State<Arc<App>>,
    Path(ws): Path<String>,
    who: Principal,
    JsonBody(body): JsonBody<NewAgent>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    who.require_admin_of(&ws)?;
    let name = valid_name(&body.name)?;
    workspace_exists(&app, &ws).await?;
    let id = new_id("ag");
    let (rid, rws, rname, now) = (id.clone(), ws.clone(), name.clone(), crate::now_secs() as i64);
    app.ledger
        .record(
            "admin.agent.created",
            json!({ "workspace_id": ws, "agent_id": id, "name": name, "by": who.key_id }),
            Some(Box::new(move |c| {
                c.execute(
                    "INSERT INTO agents (id, workspace_id, name, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![rid, rws, rname, now],
                )?;
                Ok(())
            })),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "name": name, "workspace_id": ws })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    role: String,
    agent_id: Option<String>,
}

pub async fn create_key(
    State(app): State<Arc<App>>,
    Path(ws): Path<String>,
    who: Principal,
    JsonBody(body): JsonBody<NewKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    who.require_admin_of(&ws)?;
    let role = match Role::parse(&body.role) {
        Some(r) if r != Role::Operator => r,
        _ => {
            return Err(ApiError::bad_code(
                "INVALID_ROLE",
                "role must be one of admin, agent, approver, auditor",
            ))
        }
    };
    workspace_exists(&app, &ws).await?;
    match (role, &body.agent_id) {
        (Role::Agent, None) => return Err(ApiError::bad_code("INVALID_AGENT", "an agent key needs agent_id")),
        (Role::Agent, Some(agent)) => {
            let (a, w) = (agent.clone(), ws.clone());
            let found = app
                .ledger
                .db
                .read(move |c| {
                    c.query_row(
                        "SELECT 1 FROM agents WHERE id = ?1 AND workspace_id = ?2",
                        params![a, w],
                        |_| Ok(()),
                    )
                    .optional()
                })
                .await?;
            if found.is_none() {
                return Err(ApiError::bad_code(
                    "INVALID_AGENT",
                    format!("agent {agent} does not exist in workspace {ws}"),
                ));
            }
        }
        (_, Some(_)) => return Err(ApiError::bad_code("INVALID_AGENT", "agent_id is only for agent keys")),
        (_, None) => {}
    }
    let (id, key) = auth::generate();
    let hash = auth::hash_key(&key);
    let (rid, rws, ragent, now) = (id.clone(), ws.clone(), body.agent_id.clone(), crate::now_secs() as i64);
    let role_str = role.as_str();
    app.ledger
        .record(
            "admin.key.created",
            json!({ "workspace_id": ws, "key_id": id, "role": role_str, "agent_id": body.agent_id, "by": who.key_id }),
            Some(Box::new(move |c| {
                c.execute(
                    "INSERT INTO api_keys (id, hash, role, workspace_id, agent_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![rid, hash.as_slice(), role_str, rws, ragent, now],
                )?;
                Ok(())
            })),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "key": key, "role": role_str, "workspace_id": ws, "agent_id": body.agent_id })),
    ))
}

pub async fn revoke_key(
    State(app): State<Arc<App>>,
    Path((ws, id)): Path<(String, String)>,
    who: Principal,
) -> Result<Json<Value>, ApiError> {
    who.require_admin_of(&ws)?;
    let (qid, qws) = (id.clone(), ws.clone());
    let found = app
        .ledger
        .db
        .read(move |c| {
            c.query_row(
                "SELECT revoked_at FROM api_keys WHERE id = ?1 AND workspace_id = ?2",
                params![qid, qws],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()
        })
        .await?;
    match found {
        None => return Err(ApiError::NotFound(format!("key {id} does not exist in workspace {ws}"))),
        Some(Some(_)) => return Ok(Json(json!({ "id": id, "revoked": true }))),
        Some(None) => {}
    }
    let (rid, now) = (id.clone(), crate::now_secs() as i64);
    app.ledger
        .record(
            "admin.key.revoked",
            json!({ "workspace_id": ws, "key_id": id, "by": who.key_id }),
            Some(Box::new(move |c| {
                c.execute("UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2", params![now, rid])?;
                Ok(())
            })),
        )
        .await?;
    app.keys.forget(&id);
    Ok(Json(json!({ "id": id, "revoked": true })))
}
