//! Approvers: the queue of pending requests of their workspace, and decisions on them.
//!
//! An approval is checked against the ceiling as it is now, not as it was when the
//! agent asked: a ceiling narrowed (or deleted) in between wins, and the grant is denied
//! with the ceiling's reason instead of activated.

use super::model::{self, Grant, Status};
use super::policy::{self, RuleDecision};
use super::{ceilings, coordination, transitions, webhook};
use crate::api::JsonBody;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rusqlite::params;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Most pending requests returned by one `GET /v1/approvals`.
const PAGE: i64 = 200;

/// An approver key: returns its workspace.
fn require_approver(who: &Principal) -> Result<&str, ApiError> {
    match (who.role, who.workspace_id.as_deref()) {
        (Role::Approver, Some(ws)) => Ok(ws),
        _ => Err(ApiError::Forbidden(format!(
            "this call needs an approver key, not a {} key",
            who.role.as_str()
        ))),
    }
}

/// `GET /v1/approvals`: pending requests of the approver's workspace, oldest first.
pub async fn list(State(app): State<Arc<App>>, who: Principal) -> Result<Json<Value>, ApiError> {
    let ws = require_approver(&who)?.to_string();
    let now = model::now();
    let grants: Vec<Grant> = app
        .ledger
        .db
        .read(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {} FROM grants WHERE status = 'pending' AND workspace_id = ?1 AND decide_by > ?2 \
                 ORDER BY created_at, rowid LIMIT ?3",
                model::COLUMNS
            ))?;
            let rows = st.query_map(params![ws, now, PAGE], model::from_row)?;
            rows.collect()
        })
        .await?;
    let pending: Vec<Value> = grants.iter().map(Grant::view).collect();
    Ok(Json(json!({ "pending": pending })))
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Approve,
    Deny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    decision: Verdict,
    reason: String,
}

/// `POST /v1/approvals/{grant_id} {decision, reason}`.
pub async fn decide(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    who: Principal,
    JsonBody(body): JsonBody<DecideBody>,
) -> Result<Json<Value>, ApiError> {
    let ws = require_approver(&who)?.to_string();
    let reason = body.reason.trim().to_string();
    if reason.is_empty() || reason.chars().count() > 1024 || reason.chars().any(char::is_control) {
        return Err(ApiError::bad_code(
            "GRANT_INVALID_REQUEST",
            "reason: must be 1-1024 characters without control characters",
        ));
    }
    let not_found = || ApiError::NotFound(format!("grant {id} does not exist"));
    let _guard = coordination::lock_grant(&id).await;
    let g = model::load(&app, &id)
        .await?
        .filter(|g| g.workspace_id == ws)
        .ok_or_else(not_found)?;
    let now = model::now();
    let status = g.status_at(now);
    if status != Status::Pending {
        return Err(ApiError::coded(
            StatusCode::CONFLICT,
            "GRANT_NOT_PENDING",
            format!(
                "grant {id} is {}, not pending: it can no longer be decided",
                status.as_str()
            ),
        ));
    }
    let mut after = g.clone();
    after.resolved_by = Some(who.key_id.clone());
    after.resolution = Some(reason.clone());
    after.resolved_at = Some(now);
    let extra = json!({ "by": who.key_id, "reason": reason });
    if body.decision == Verdict::Deny {
        after.status = Status::Denied;
        after.denial_reason = Some(format!("denied by an approver: {reason}"));
        let (g, leaf) = transitions::commit(
            &app,
            &g,
            after,
            "grant.denied",
            extra,
            Some(webhook::EVENT_RESOLVED),
            None,
        )
        .await?;
        return Ok(Json(with_index(g.view(), leaf.index)));
    }

    let ceiling_says = match ceilings::load(&app, &g.workspace_id, &g.account_id).await? {
        None => Some(format!("the ceiling for account {} has been deleted", g.account_id)),
        Some(s) if s.ceiling.role_arn != g.role_arn => Some(format!(
            "the ceiling's role changed from {} to {}",
            g.role_arn, s.ceiling.role_arn
        )),
        Some(s) => {
            let d = policy::evaluate(&s.ceiling, &g.request.access());
            (d.decision == RuleDecision::HardDeny).then_some(d.reason)
        }
    };
    if let Some(why) = ceiling_says {
        after.status = Status::Denied;
        after.denial_reason = Some(format!("approved, but the ceiling now refuses it: {why}"));
        let extra = model::with(extra, json!({ "approved": true, "ceiling": why }));
        transitions::commit(
            &app,
            &g,
            after,
            "grant.denied",
            extra,
            Some(webhook::EVENT_RESOLVED),
            None,
        )
        .await?;
        return Err(ApiError::coded(
            StatusCode::CONFLICT,
            "GRANT_OUTSIDE_CEILING",
            format!("the grant was denied instead: the ceiling no longer allows it: {why}"),
        ));
    }
    after.status = Status::Active;
    after.activated_at = Some(now);
    after.expires_at = Some(now + g.request.ttl_seconds as i64);
    let extra = model::with(extra, json!({ "expires_at": after.expires_at }));
    let (g, leaf) = transitions::commit(
        &app,
        &g,
        after,
        "grant.approved",
        extra,
        Some(webhook::EVENT_RESOLVED),
        None,
    )
    .await?;
    Ok(Json(with_index(g.view(), leaf.index)))
}

fn with_index(mut v: Value, index: u64) -> Value {
    v["log_index"] = json!(index);
    v
}
