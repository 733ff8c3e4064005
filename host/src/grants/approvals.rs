//! Approvers: the queue of pending requests of their workspace, and decisions on them.
//!
//! An approval is checked against the ceiling as it is now, not as it was when the
//! agent asked: a ceiling narrowed (or deleted) in between wins, and the grant is denied
//! with the ceiling's reason instead of activated.
//!
//! A rule can require several approvers (`approvals_required`, copied into the grant
//! when it is requested). Each approval is counted once per approver *key* (a second
//! approval by the same key is refused, not counted) and recorded in `grant_approvals`
//! and in a `grant.approval.recorded` leaf; the grant stays pending until the last one
//! needed, which activates it (`grant.approved`, naming every approver). A deny by any
//! approver decides at once. The deciding key is kept in the row (`resolved_by`), the
//! leaf (`by`) and the view (`resolution.by`, `approvals`).
//!
//! The key that created a request can never decide it, whatever its role, and neither
//! can any key bound to the requesting agent: checked before the role, so the rule
//! holds even if a role that can both request and approve is ever added.

use super::model::{self, Approval, Grant, Status};
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
            "this call needs an approver key, not {} key",
            who.role.with_article()
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

/// Refuses a decision by the key that created the request, or by a key of its agent.
fn refuse_own_request(who: &Principal, g: &Grant) -> Result<(), ApiError> {
    let same_key = g.requested_by.as_deref() == Some(who.key_id.as_str());
    let same_agent = who.agent_id.as_deref() == Some(g.agent_id.as_str());
    if same_key || same_agent {
        return Err(ApiError::coded(
            StatusCode::FORBIDDEN,
            "GRANT_SELF_APPROVAL",
            format!(
                "grant {} was requested by this key (or its agent); a request can only be decided by another \
                 key: ask an approver of the workspace",
                g.id
            ),
        ));
    }
    Ok(())
}

/// `POST /v1/approvals/{grant_id} {decision, reason}`.
pub async fn decide(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    who: Principal,
    JsonBody(body): JsonBody<DecideBody>,
) -> Result<Json<Value>, ApiError> {
    // The operator has no workspace, hence no approvals to give.
    let Some(ws) = who.workspace_id.clone() else {
        return Err(ApiError::Forbidden(format!(
            "this call needs an approver key, not {} key",
            who.role.with_article()
        )));
    };
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
    refuse_own_request(&who, &g)?;
    require_approver(&who)?;
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

    if g.approvals.iter().any(|a| a.key_id == who.key_id) {
        let missing = g.approvals_required - g.approvals.len() as i64;
        return Err(ApiError::coded(
            StatusCode::CONFLICT,
            "GRANT_ALREADY_APPROVED",
            format!(
                "this approver key already approved grant {id}; it counts once: {missing} more approval(s) from \
                 other approver keys are needed"
            ),
        ));
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

    let approval = Approval {
        key_id: who.key_id.clone(),
        reason: reason.clone(),
        at: now,
    };
    let insert = {
        let (gid, a) = (g.id.clone(), approval.clone());
        Box::new(move |c: &rusqlite::Connection| {
            c.execute(
                "INSERT INTO grant_approvals (grant_id, key_id, reason, decided_at) VALUES (?1, ?2, ?3, ?4)",
                params![gid, a.key_id, a.reason, a.at],
            )?;
            Ok(())
        }) as crate::db::Apply
    };
    let count = g.approvals.len() as i64 + 1;
    if count < g.approvals_required {
        // Not yet enough: record this approval, the grant stays pending.
        let event = model::with(
            g.leaf_base(),
            json!({ "by": who.key_id, "reason": reason, "approvals": count, "approvals_required": g.approvals_required }),
        );
        let gid = g.id.clone();
        let leaf = app
            .ledger
            .record(
                "grant.approval.recorded",
                event,
                Some(Box::new(move |c| {
                    let n = c.execute(
                        "UPDATE grants SET status = status WHERE id = ?1 AND status = 'pending'",
                        params![gid],
                    )?;
                    if n != 1 {
                        return Err(rusqlite::Error::StatementChangedRows(n));
                    }
                    insert(c)
                })),
            )
            .await?;
        let mut g = g;
        g.approvals.push(approval);
        return Ok(Json(with_index(g.view(), leaf.index)));
    }
    after.approvals.push(approval);
    let approved_by: Vec<String> = after.approvals.iter().map(|a| a.key_id.clone()).collect();
    after.status = Status::Active;
    after.activated_at = Some(now);
    after.expires_at = Some(now + g.request.ttl_seconds as i64);
    let extra = model::with(
        extra,
        json!({ "expires_at": after.expires_at, "approved_by": approved_by }),
    );
    let (g, leaf) = transitions::commit(
        &app,
        &g,
        after,
        "grant.approved",
        extra,
        Some(webhook::EVENT_RESOLVED),
        Some(insert),
    )
    .await?;
    Ok(Json(with_index(g.view(), leaf.index)))
}

fn with_index(mut v: Value, index: u64) -> Value {
    v["log_index"] = json!(index);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::model::Requested;

    fn grant(requested_by: &str, agent: &str) -> Grant {
        Grant {
            id: "gr_1".into(),
            workspace_id: "ws_a".into(),
            agent_id: agent.into(),
            account_id: "123456789012".into(),
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
            run_id: "run".into(),
            request: Requested {
                actions: vec!["s3:GetObject".into()],
                resources: vec!["*".into()],
                regions: vec!["us-east-1".into()],
                ttl_seconds: 900,
            },
            reason: "r".into(),
            status: Status::Pending,
            decision: json!({}),
            denial_reason: None,
            idempotency_key: None,
            request_sha256: String::new(),
            created_at: 0,
            decide_by: None,
            activated_at: None,
            expires_at: None,
            max_ttl_seconds: 3600,
            resolved_by: None,
            resolution: None,
            resolved_at: None,
            released_at: None,
            hard_revoked: false,
            credentials_issued: 0,
            requested_by: Some(requested_by.into()),
            approvals_required: 1,
            approvals: Vec::new(),
        }
    }

    /// Hole 8: the rule is about keys, whatever their role: an approver (or admin) key
    /// that created a request cannot decide it, and neither can the requesting agent.
    #[test]
    fn the_key_that_created_a_request_cannot_decide_it() {
        let g = grant("key_creator", "ag_1");
        for role in [Role::Approver, Role::Admin, Role::Agent] {
            let who = Principal::for_tests("key_creator", role, Some("ws_a"), None);
            let e = refuse_own_request(&who, &g).unwrap_err();
            assert_eq!(e.code_and_message().0, "GRANT_SELF_APPROVAL");
        }
        let other_key_same_agent = Principal::for_tests("key_other", Role::Agent, Some("ws_a"), Some("ag_1"));
        assert!(refuse_own_request(&other_key_same_agent, &g).is_err());
        let approver = Principal::for_tests("key_approver", Role::Approver, Some("ws_a"), None);
        assert!(refuse_own_request(&approver, &g).is_ok());
    }
}
