//! Policy ceilings: per workspace and AWS account, the most a grant may ever allow.
//!
//! Admins (of the workspace, or the operator) `PUT`, `GET` and `DELETE` them; agents of
//! the workspace read the resolved ceiling as their scope. The ceiling is stored as the
//! JSON of [`Ceiling`] next to one setting of our own, `pending_timeout_seconds` (how
//! long a routed request waits for an approver), which is not part of the policy.
//!
//! An `assume_role` ceiling is stored only after its role passed the External ID probe
//! ([`super::trust`]); its view shows the External ID the role's trust policy requires.

use super::policy::{self, Ceiling, Invalid};
use crate::api::JsonBody;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// How long a request routed to an approver waits when the ceiling does not say.
pub const DEFAULT_PENDING_TIMEOUT: u64 = 900;
pub const MAX_PENDING_TIMEOUT: u64 = 7 * 24 * 3600;
/// Ceilings larger than this go into their leaf as a hash only (a leaf holds 16 KiB).
const LEAF_INLINE_MAX: usize = 12 * 1024;

pub fn invalid_ceiling(e: Invalid) -> ApiError {
    ApiError::bad_code("GRANT_INVALID_CEILING", format!("{}: {}", e.field, e.message))
}

/// `123456789012`.
pub fn check_account_id(account: &str) -> Result<(), ApiError> {
    if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ApiError::bad_code(
            "GRANT_INVALID_ACCOUNT",
            format!("account_id {account:?} must be a 12-digit AWS account id"),
        ))
    }
}

/// A ceiling as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    pub ceiling: Ceiling,
    pub pending_timeout_seconds: u64,
    pub updated_at: i64,
    /// The workspace's External ID for this account (kept when the ceiling is replaced).
    pub external_id: Option<String>,
    /// When a probe last proved the role enforces it.
    pub external_id_verified_at: Option<i64>,
}

impl Stored {
    pub fn view(&self, workspace: &str, account: &str) -> Value {
        let mut v = serde_json::to_value(&self.ceiling).unwrap_or_else(|_| json!({}));
        v["workspace_id"] = json!(workspace);
        v["account_id"] = json!(account);
        v["pending_timeout_seconds"] = json!(self.pending_timeout_seconds);
        v["updated_at"] = json!(self.updated_at);
        v["external_id"] = json!(self.external_id);
        v["external_id_verified_at"] = json!(self.external_id_verified_at);
        v
    }
}

pub async fn load(app: &App, workspace: &str, account: &str) -> Result<Option<Stored>, ApiError> {
    let (ws, acct) = (workspace.to_string(), account.to_string());
    let row = app
        .ledger
        .db
        .read(move |c| {
            c.query_row(
                "SELECT c.ceiling, c.pending_timeout_seconds, c.updated_at, x.external_id, x.verified_at \
                 FROM grant_ceilings c LEFT JOIN grant_external_ids x \
                 ON x.workspace_id = c.workspace_id AND x.account_id = c.account_id \
                 WHERE c.workspace_id = ?1 AND c.account_id = ?2",
                params![ws, acct],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                },
            )
            .optional()
        })
        .await?;
    let Some((json, timeout, updated_at, external_id, external_id_verified_at)) = row else {
        return Ok(None);
    };
    let ceiling: Ceiling = serde_json::from_str(&json)
        .map_err(|e| ApiError::Internal(format!("stored ceiling for {workspace}/{account} does not parse: {e}")))?;
    Ok(Some(Stored {
        ceiling,
        pending_timeout_seconds: timeout.max(1) as u64,
        updated_at,
        external_id,
        external_id_verified_at,
    }))
}

/// The ceiling an agent request needs, or the error that tells the agent there is none.
pub async fn require(app: &App, workspace: &str, account: &str) -> Result<Stored, ApiError> {
    load(app, workspace, account).await?.ok_or_else(|| {
        ApiError::coded(
            StatusCode::NOT_FOUND,
            "GRANT_UNKNOWN_ACCOUNT",
            format!(
                "workspace {workspace} has no ceiling for AWS account {account}; a workspace admin must \
                 PUT /v1/workspaces/{workspace}/aws/accounts/{account} first"
            ),
        )
    })
}

/// What `GET` adds to a ceiling and `PUT` does not set: a ceiling read can be written
/// back unchanged (edit a field, `PUT` the whole object). `workspace_id` and
/// `account_id` must name the path's; `external_id` must be the workspace's own (it is
/// minted by sealgate, never chosen); the rest is ignored.
const READ_ONLY: &[&str] = &[
    "workspace_id",
    "account_id",
    "updated_at",
    "external_id",
    "external_id_verified_at",
    "log_index",
];

/// A `PUT` body: the ceiling, our own setting, and the `external_id` it repeats, if any.
struct Body {
    ceiling: Ceiling,
    pending_timeout_seconds: u64,
    external_id: Option<String>,
}

/// Splits our own setting and the read-only fields off the body and parses the rest as
/// a [`Ceiling`] (which refuses unknown fields).
fn parse_body(body: Value, ws: &str, account: &str) -> Result<Body, ApiError> {
    let Value::Object(mut obj) = body else {
        return Err(ApiError::bad_code(
            "GRANT_INVALID_CEILING",
            "the body must be a JSON object",
        ));
    };
    let mut external_id = None;
    for field in READ_ONLY {
        let Some(v) = obj.remove(*field) else { continue };
        let must_be = match *field {
            "workspace_id" => Some(ws),
            "account_id" => Some(account),
            _ => None,
        };
        if let Some(want) = must_be {
            if v.as_str() != Some(want) {
                return Err(ApiError::bad_code(
                    "GRANT_INVALID_CEILING",
                    format!("{field}: the path names {want}; leave the field out or send the same value"),
                ));
            }
        }
        if *field == "external_id" {
            external_id = match v {
                Value::Null => None,
                Value::String(x) => Some(x),
                _ => {
                    return Err(ApiError::bad_code(
                        "GRANT_INVALID_CEILING",
                        "external_id: must be a string (the one GET shows), or left out",
                    ))
                }
            };
        }
    }
    let timeout = match obj.remove("pending_timeout_seconds") {
        None | Some(Value::Null) => DEFAULT_PENDING_TIMEOUT,
        Some(v) => match v.as_u64() {
            Some(t) if (1..=MAX_PENDING_TIMEOUT).contains(&t) => t,
            _ => {
                return Err(ApiError::bad_code(
                    "GRANT_INVALID_CEILING",
                    format!("pending_timeout_seconds: must be an integer within [1, {MAX_PENDING_TIMEOUT}]"),
                ))
            }
        },
    };
    let ceiling: Ceiling = crate::api::json_from_value(Value::Object(obj))
        .map_err(|e| ApiError::bad_code("GRANT_INVALID_CEILING", format!("invalid ceiling: {e}")))?;
    Ok(Body {
        ceiling,
        pending_timeout_seconds: timeout,
        external_id,
    })
}

pub async fn put(
    State(app): State<Arc<App>>,
    Path((ws, account)): Path<(String, String)>,
    who: Principal,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    who.require_admin_of(&ws)?;
    check_account_id(&account)?;
    let Body {
        ceiling,
        pending_timeout_seconds: timeout,
        external_id: repeated_xid,
    } = parse_body(body, &ws, &account)?;
    ceiling.validate().map_err(invalid_ceiling)?;
    if policy::role_account(&ceiling.role_arn) != Some(account.as_str()) {
        return Err(ApiError::bad_code(
            "GRANT_INVALID_CEILING",
            format!(
                "role_arn: {} belongs to another account than {account}; the ceiling's role must be in the account it is for",
                ceiling.role_arn
            ),
        ));
    }
    crate::api::workspace_exists(&app, &ws).await?;
    let existed = load(&app, &ws, &account).await?.is_some();
    // Minted before the probe and kept whatever it finds: the admin puts this ID into
    // the trust policy and tries again.
    let xid = super::trust::ensure_external_id(&app, &ws, &account, &who.key_id).await?;
    if let Some(x) = repeated_xid.filter(|x| *x != xid.value) {
        return Err(ApiError::bad_code(
            "GRANT_INVALID_CEILING",
            format!(
                "external_id: sealgate mints it and it cannot be set; this workspace's External ID for account \
                 {account} is {}, not {x:?}: leave the field out (the ID is kept when the ceiling is replaced)",
                xid.value
            ),
        ));
    }
    let mut verified_at = xid.verified_at;
    if ceiling.credential_mode == policy::CredentialMode::AssumeRole {
        super::trust::probe(&app, &ws, &account, &ceiling, &xid.value, &who.key_id).await?;
        verified_at = Some(super::model::now());
    }
    let stored_json =
        serde_json::to_string(&ceiling).map_err(|e| ApiError::Internal(format!("serialising the ceiling: {e}")))?;
    let digest = hex::encode(Sha256::digest(stored_json.as_bytes()));
    let mut event = json!({
        "workspace_id": ws,
        "account_id": account,
        "ceiling_sha256": digest,
        "pending_timeout_seconds": timeout,
        "external_id_sha256": hex::encode(Sha256::digest(xid.value.as_bytes())),
        "by": who.key_id,
    });
    if stored_json.len() <= LEAF_INLINE_MAX {
        event["ceiling"] = serde_json::to_value(&ceiling).unwrap_or(Value::Null);
    }
    let now = super::model::now();
    let (rws, racct) = (ws.clone(), account.clone());
    let leaf = app
        .ledger
        .record(
            "grant.ceiling.put",
            event,
            Some(Box::new(move |c| {
                c.execute(
                    "INSERT INTO grant_ceilings (workspace_id, account_id, ceiling, pending_timeout_seconds, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (workspace_id, account_id) DO UPDATE SET \
                     ceiling = excluded.ceiling, pending_timeout_seconds = excluded.pending_timeout_seconds, \
                     updated_at = excluded.updated_at",
                    params![rws, racct, stored_json, timeout as i64, now],
                )?;
                Ok(())
            })),
        )
        .await?;
    let stored = Stored {
        ceiling,
        pending_timeout_seconds: timeout,
        updated_at: now,
        external_id: Some(xid.value),
        external_id_verified_at: verified_at,
    };
    let mut v = stored.view(&ws, &account);
    v["log_index"] = json!(leaf.index);
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(v)))
}

pub async fn get(
    State(app): State<Arc<App>>,
    Path((ws, account)): Path<(String, String)>,
    who: Principal,
) -> Result<Json<Value>, ApiError> {
    who.require_admin_of(&ws)?;
    check_account_id(&account)?;
    let stored = load(&app, &ws, &account)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("workspace {ws} has no ceiling for account {account}")))?;
    Ok(Json(stored.view(&ws, &account)))
}

pub async fn delete(
    State(app): State<Arc<App>>,
    Path((ws, account)): Path<(String, String)>,
    who: Principal,
) -> Result<Json<Value>, ApiError> {
    who.require_admin_of(&ws)?;
    check_account_id(&account)?;
    if load(&app, &ws, &account).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "workspace {ws} has no ceiling for account {account}"
        )));
    }
    let (rws, racct) = (ws.clone(), account.clone());
    let leaf = app
        .ledger
        .record(
            "grant.ceiling.deleted",
            json!({ "workspace_id": ws, "account_id": account, "by": who.key_id }),
            Some(Box::new(move |c| {
                c.execute(
                    "DELETE FROM grant_ceilings WHERE workspace_id = ?1 AND account_id = ?2",
                    params![rws, racct],
                )?;
                Ok(())
            })),
        )
        .await?;
    Ok(Json(
        json!({ "workspace_id": ws, "account_id": account, "deleted": true, "log_index": leaf.index }),
    ))
}

/// `GET …/aws/accounts/{id}/scope`: the resolved ceiling, for the workspace's agents
/// (and its admins). A key of another workspace gets 404, as for any grant resource.
pub async fn scope(
    State(app): State<Arc<App>>,
    Path((ws, account)): Path<(String, String)>,
    who: Principal,
) -> Result<Json<Value>, ApiError> {
    let allowed = match who.role {
        Role::Operator => true,
        Role::Agent | Role::Admin | Role::Approver | Role::Auditor => who.workspace_id.as_deref() == Some(ws.as_str()),
    };
    if !allowed {
        return Err(ApiError::NotFound(format!(
            "workspace {ws} has no ceiling for account {account}"
        )));
    }
    check_account_id(&account)?;
    let stored = require(&app, &ws, &account).await?;
    Ok(Json(stored.view(&ws, &account)))
}
