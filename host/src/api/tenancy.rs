//! Workspaces, agents and API keys. Every change is recorded as a host event in the
//! audit log, committed in the same transaction as the change itself.
//!
//! An admin of a workspace (or the operator) lists its agents and keys — never a secret
//! or a hash — and can disable an agent: one leaf records the agent disabled and its
//! keys revoked, the keys leave the cache at once, and its open grants are then ended
//! one by one through the grants' own release path ([`crate::grants::offboard`]).

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
        (Role::Agent, Some(agent)) => match load_agent(&app, &ws, agent).await? {
            None => {
                return Err(ApiError::bad_code(
                    "INVALID_AGENT",
                    format!("agent {agent} does not exist in workspace {ws}"),
                ))
            }
            Some(a) if a.disabled_at.is_some() => {
                return Err(ApiError::coded(
                    StatusCode::CONFLICT,
                    "AGENT_DISABLED",
                    format!("agent {agent} is disabled and cannot get keys again; create a new agent"),
                ))
            }
            Some(_) => {}
        },
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

/// One agent row as listed.
struct AgentRow {
    id: String,
    name: String,
    created_at: i64,
    disabled_at: Option<i64>,
}

impl AgentRow {
    fn view(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "disabled": self.disabled_at.is_some(),
            "disabled_at": self.disabled_at,
        })
    }
}

fn agent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRow> {
    Ok(AgentRow {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
        disabled_at: r.get(3)?,
    })
}

async fn load_agent(app: &App, ws: &str, agent: &str) -> Result<Option<AgentRow>, ApiError> {
    let (a, w) = (agent.to_string(), ws.to_string());
    Ok(app
        .ledger
        .db
        .read(move |c| {
            c.query_row(
                "SELECT id, name, created_at, disabled_at FROM agents WHERE id = ?1 AND workspace_id = ?2",
                params![a, w],
                agent_row,
            )
            .optional()
        })
        .await?)
}

/// Most rows one listing returns; `truncated` says when there were more.
const LIST_LIMIT: i64 = 1000;

/// `GET /v1/workspaces/{ws}/agents`: the workspace's agents, oldest first.
pub async fn list_agents(
    State(app): State<Arc<App>>,
    Path(ws): Path<String>,
    who: Principal,
) -> Result<Json<Value>, ApiError> {
    who.require_admin_of(&ws)?;
    workspace_exists(&app, &ws).await?;
    let w = ws.clone();
    let rows: Vec<AgentRow> = app
        .ledger
        .db
        .read(move |c| {
            let mut st = c.prepare(
                "SELECT id, name, created_at, disabled_at FROM agents WHERE workspace_id = ?1 \
                 ORDER BY created_at, rowid LIMIT ?2",
            )?;
            let rows = st.query_map(params![w, LIST_LIMIT + 1], agent_row)?;
            rows.collect()
        })
        .await?;
    let truncated = rows.len() as i64 > LIST_LIMIT;
    let agents: Vec<Value> = rows.iter().take(LIST_LIMIT as usize).map(AgentRow::view).collect();
    Ok(Json(
        json!({ "workspace_id": ws, "agents": agents, "truncated": truncated }),
    ))
}

/// `GET /v1/workspaces/{ws}/keys`: the workspace's keys, oldest first — ids, roles,
/// agents and dates only. The secret is never stored and its hash is never shown.
pub async fn list_keys(
    State(app): State<Arc<App>>,
    Path(ws): Path<String>,
    who: Principal,
) -> Result<Json<Value>, ApiError> {
    who.require_admin_of(&ws)?;
    workspace_exists(&app, &ws).await?;
    let w = ws.clone();
    let rows: Vec<Value> = app
        .ledger
        .db
        .read(move |c| {
            let mut st = c.prepare(
                "SELECT id, role, agent_id, created_at, last_used_at, revoked_at FROM api_keys \
                 WHERE workspace_id = ?1 ORDER BY created_at, rowid LIMIT ?2",
            )?;
            let rows = st.query_map(params![w, LIST_LIMIT + 1], |r| {
                let revoked_at: Option<i64> = r.get(5)?;
                Ok(json!({
                    "id": r.get::<_, String>(0)?,
                    "role": r.get::<_, String>(1)?,
                    "agent_id": r.get::<_, Option<String>>(2)?,
                    "created_at": r.get::<_, i64>(3)?,
                    "last_used_at": r.get::<_, Option<i64>>(4)?,
                    "revoked": revoked_at.is_some(),
                    "revoked_at": revoked_at,
                }))
            })?;
            rows.collect()
        })
        .await?;
    let truncated = rows.len() as i64 > LIST_LIMIT;
    let keys: Vec<Value> = rows.into_iter().take(LIST_LIMIT as usize).collect();
    Ok(Json(json!({
        "workspace_id": ws,
        "keys": keys,
        "truncated": truncated,
        "last_used_resolution_seconds": auth::TOUCH_EVERY_SECS,
    })))
}

/// `POST /v1/workspaces/{ws}/agents/{agent}/disable`: the agent is disabled and its
/// keys revoked in one leaf (`admin.agent.disabled`), the keys are forgotten by the
/// cache at once, then its pending and active grants are released (hard where it has
/// credentials out; see [`crate::grants::offboard`]). Disabling is final. Calling it
/// again is harmless and finishes any release an earlier call did not get to.
pub async fn disable_agent(
    State(app): State<Arc<App>>,
    Path((ws, agent)): Path<(String, String)>,
    who: Principal,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    super::no_body(&body)?;
    who.require_admin_of(&ws)?;
    workspace_exists(&app, &ws).await?;
    let row = load_agent(&app, &ws, &agent)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("agent {agent} does not exist in workspace {ws}")))?;
    let mut log_index = None;
    let mut revoked_keys: Vec<String> = Vec::new();
    let disabled_at = match row.disabled_at {
        Some(at) => at,
        None => {
            let a = agent.clone();
            revoked_keys = app
                .ledger
                .db
                .read(move |c| {
                    let mut st =
                        c.prepare("SELECT id FROM api_keys WHERE agent_id = ?1 AND revoked_at IS NULL ORDER BY id")?;
                    let rows = st.query_map(params![a], |r| r.get(0))?;
                    rows.collect()
                })
                .await?;
            let (ra, now) = (agent.clone(), crate::now_secs() as i64);
            let leaf = app
                .ledger
                .record(
                    "admin.agent.disabled",
                    json!({ "workspace_id": ws, "agent_id": agent, "revoked_keys": revoked_keys, "by": who.key_id }),
                    Some(Box::new(move |c| {
                        c.execute(
                            "UPDATE agents SET disabled_at = ?1 WHERE id = ?2 AND disabled_at IS NULL",
                            params![now, ra],
                        )?;
                        // Every key of the agent, including one created after the read above.
                        c.execute(
                            "UPDATE api_keys SET revoked_at = ?1 WHERE agent_id = ?2 AND revoked_at IS NULL",
                            params![now, ra],
                        )?;
                        Ok(())
                    })),
                )
                .await?;
            log_index = Some(leaf.index);
            now
        }
    };
    app.keys
        .forget_matching(|p| p.agent_id.as_deref() == Some(agent.as_str()));
    let released = crate::grants::offboard::release_all(&app, &ws, &agent, &who.key_id).await?;
    let grants: Vec<Value> = released.iter().map(|o| o.view()).collect();
    Ok(Json(json!({
        "workspace_id": ws,
        "agent_id": agent,
        "disabled": true,
        "disabled_at": disabled_at,
        "revoked_keys": revoked_keys,
        "released_grants": grants,
        "log_index": log_index,
    })))
}
