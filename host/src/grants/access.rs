//! Agent operations on grants: preview, request, read (long-polling while pending) and
//! release. Credentials are in [`super::credentials`].
//!
//! Grants are visible to keys of their own workspace only; any other key gets 404, as
//! if the grant did not exist, so grant ids from one workspace reveal nothing in another.

use super::model::{self, Grant, Requested, Status};
use super::policy::{self, AccessRequest, Invalid, RuleDecision};
use super::{ceilings, coordination, revoke, transitions};
use crate::api::{GrantBody, QueryParams};
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::App;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rand::RngCore;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// The longest a `GET …?wait=` holds the request open.
pub const MAX_WAIT_SECONDS: u64 = 30;
const MAX_REASON_CHARS: usize = 1024;
const MAX_IDEMPOTENCY_KEY: usize = 128;

pub fn invalid_request(e: Invalid) -> ApiError {
    ApiError::bad_code("GRANT_INVALID_REQUEST", format!("{}: {}", e.field, e.message))
}

fn new_grant_id() -> String {
    let mut b = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("gr_{}", hex::encode(b))
}

/// Whether `who` may see grants of `workspace`.
pub fn can_see(who: &Principal, workspace: &str) -> bool {
    who.role == Role::Operator || who.workspace_id.as_deref() == Some(workspace)
}

/// The grant if `who` may see it, else 404. An agent key sees only its own agent's
/// grants: another agent of the same workspace gets the same 404 as another workspace.
pub async fn visible(app: &App, who: &Principal, id: &str) -> Result<Grant, ApiError> {
    match model::load(app, id).await? {
        Some(g)
            if can_see(who, &g.workspace_id)
                && (who.role != Role::Agent || who.agent_id.as_deref() == Some(g.agent_id.as_str())) =>
        {
            Ok(g)
        }
        _ => Err(ApiError::NotFound(format!("grant {id} does not exist"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    account_id: String,
    actions: Vec<String>,
    resources: Vec<String>,
    regions: Vec<String>,
    ttl_seconds: u64,
    // Accepted so an agent can preview the very body it is about to send.
    #[allow(dead_code)]
    reason: Option<String>,
    #[allow(dead_code)]
    run_id: Option<String>,
    #[allow(dead_code)]
    idempotency_key: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    account_id: String,
    actions: Vec<String>,
    resources: Vec<String>,
    regions: Vec<String>,
    ttl_seconds: u64,
    reason: String,
    run_id: String,
    #[serde(skip_serializing)]
    idempotency_key: Option<String>,
}

fn access(actions: &[String], resources: &[String], regions: &[String], ttl: u64) -> Result<AccessRequest, ApiError> {
    let req = AccessRequest {
        actions: actions.to_vec(),
        resources: resources.to_vec(),
        regions: regions.to_vec(),
        ttl_seconds: ttl,
    };
    req.validate().map_err(invalid_request)?;
    Ok(req)
}

/// `POST /v1/aws/access/preview`: the decision a request would get. Reads only.
pub async fn preview(
    State(app): State<Arc<App>>,
    who: Principal,
    GrantBody(body): GrantBody<PreviewBody>,
) -> Result<Json<Value>, ApiError> {
    let (ws, _) = who.require_agent()?;
    ceilings::check_account_id(&body.account_id)?;
    let req = access(&body.actions, &body.resources, &body.regions, body.ttl_seconds)?;
    let stored = ceilings::require(&app, ws, &body.account_id).await?;
    let d = policy::evaluate(&stored.ceiling, &req);
    Ok(Json(json!({
        "account_id": body.account_id,
        "decision": d.decision,
        "reason": d.reason,
        "rule": d.rule,
        "status": status_for(d.decision).as_str(),
    })))
}

fn status_for(d: RuleDecision) -> Status {
    match d {
        RuleDecision::AutoApprove => Status::Active,
        RuleDecision::RouteToApprover => Status::Pending,
        RuleDecision::HardDeny => Status::Denied,
    }
}

fn check_text(field: &str, s: &str, max: usize) -> Result<(), ApiError> {
    if s.trim().is_empty() || s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(ApiError::bad_code(
            "GRANT_INVALID_REQUEST",
            format!("{field}: must be 1-{max} characters without control characters"),
        ));
    }
    Ok(())
}

/// The idempotency key from the header or the body (both must agree if both are given).
fn idempotency_key(headers: &HeaderMap, body: Option<&str>) -> Result<Option<String>, ApiError> {
    let header = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_code("GRANT_INVALID_REQUEST", "Idempotency-Key: must be printable ASCII"))?,
        ),
    };
    let key = match (header, body) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::bad_code(
                "GRANT_INVALID_REQUEST",
                "the Idempotency-Key header and idempotency_key field differ; send one",
            ))
        }
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => return Ok(None),
    };
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_code(
            "GRANT_INVALID_REQUEST",
            format!("idempotency key: must be 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters without spaces"),
        ));
    }
    Ok(Some(key.to_string()))
}

async fn by_idempotency_key(app: &App, ws: &str, agent: &str, key: &str) -> Result<Option<Grant>, ApiError> {
    let (w, a, k) = (ws.to_string(), agent.to_string(), key.to_string());
    Ok(app
        .ledger
        .db
        .read(move |c| {
            c.query_row(
                &format!(
                    "SELECT {} FROM grants WHERE workspace_id = ?1 AND agent_id = ?2 AND idempotency_key = ?3",
                    model::COLUMNS
                ),
                params![w, a, k],
                model::from_row,
            )
            .optional()
        })
        .await?)
}

/// `POST /v1/aws/access`: decide and record a grant (active, pending or denied).
pub async fn request(
    State(app): State<Arc<App>>,
    who: Principal,
    headers: HeaderMap,
    GrantBody(body): GrantBody<RequestBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (ws, agent) = who.require_agent()?;
    app.limits.rates.check_key(crate::limits::Class::Grant, &who.key_id)?;
    ceilings::check_account_id(&body.account_id)?;
    check_text("reason", &body.reason, MAX_REASON_CHARS)?;
    if !sealgate_shared::ids::valid_id(&body.run_id) {
        return Err(ApiError::bad_code(
            "GRANT_INVALID_REQUEST",
            "run_id: must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}",
        ));
    }
    let key = idempotency_key(&headers, body.idempotency_key.as_deref())?;
    let req = access(&body.actions, &body.resources, &body.regions, body.ttl_seconds)?;
    let canonical =
        serde_json::to_string(&body).map_err(|e| ApiError::Internal(format!("serialising the request: {e}")))?;
    let request_sha256 = hex::encode(Sha256::digest(canonical.as_bytes()));

    let _guard = match &key {
        Some(k) => Some(coordination::lock_idempotency(ws, agent, k).await),
        None => None,
    };
    if let Some(k) = &key {
        if let Some(existing) = by_idempotency_key(&app, ws, agent, k).await? {
            if existing.request_sha256 != request_sha256 {
                return Err(ApiError::coded(
                    StatusCode::CONFLICT,
                    "GRANT_IDEMPOTENCY_CONFLICT",
                    format!(
                        "idempotency key {k:?} was already used for a different request (grant {}); use a new key",
                        existing.id
                    ),
                ));
            }
            let mut v = existing.view();
            v["replayed"] = json!(true);
            return Ok((StatusCode::OK, Json(v)));
        }
    }

    let stored = ceilings::require(&app, ws, &body.account_id).await?;
    let d = policy::evaluate(&stored.ceiling, &req);
    let now = model::now();
    let status = status_for(d.decision);
    let g = Grant {
        id: new_grant_id(),
        workspace_id: ws.to_string(),
        agent_id: agent.to_string(),
        account_id: body.account_id.clone(),
        role_arn: stored.ceiling.role_arn.clone(),
        run_id: body.run_id.clone(),
        request: Requested {
            actions: req.actions,
            resources: req.resources,
            regions: req.regions,
            ttl_seconds: req.ttl_seconds,
        },
        reason: body.reason.trim().to_string(),
        status,
        decision: model::decision_json(&d),
        denial_reason: (status == Status::Denied).then(|| d.reason.clone()),
        idempotency_key: key,
        request_sha256,
        created_at: now,
        decide_by: (status == Status::Pending).then_some(now + stored.pending_timeout_seconds as i64),
        activated_at: (status == Status::Active).then_some(now),
        expires_at: (status == Status::Active).then_some(now + body.ttl_seconds as i64),
        max_ttl_seconds: stored.ceiling.max_ttl_seconds as i64,
        resolved_by: None,
        resolution: None,
        resolved_at: None,
        released_at: None,
        hard_revoked: false,
        credentials_issued: 0,
        requested_by: Some(who.key_id.clone()),
        approvals_required: d
            .rule
            .and_then(|i| stored.ceiling.rules.get(i))
            .map_or(1, |r| i64::from(r.approvals_required)),
        approvals: Vec::new(),
    };
    let event = json!({
        "run_id": g.run_id,
        "role_arn": g.role_arn,
        "status": status.as_str(),
        "decision": g.decision,
        "actions": g.request.actions,
        "resources": g.request.resources,
        "regions": g.request.regions,
        "ttl_seconds": g.request.ttl_seconds,
        "reason": g.reason,
        "expires_at": g.expires_at,
        "decide_by": g.decide_by,
        "by": who.key_id,
    });
    let webhook = (status == Status::Pending).then_some(super::webhook::EVENT_REQUESTED);
    let (g, leaf) = transitions::create(&app, g, event, webhook).await?;
    let mut v = g.view();
    v["log_index"] = json!(leaf.index);
    Ok((StatusCode::CREATED, Json(v)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    wait: Option<u64>,
}

/// `GET /v1/aws/access/{grant_id}[?wait=SECS]`: the grant; while it is pending, holds
/// the request open up to `wait` seconds (at most 30) for a decision.
pub async fn get(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    who: Principal,
    QueryParams(q): QueryParams<WaitQuery>,
) -> Result<Json<Value>, ApiError> {
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(MAX_WAIT_SECONDS));
    let deadline = tokio::time::Instant::now() + wait;
    // A long poll counts against the key's rate and holds one of the capped slots
    // while it waits (crate::limits); a plain GET does neither.
    let _slot = if wait.is_zero() {
        None
    } else {
        app.limits.rates.check_key(crate::limits::Class::Poll, &who.key_id)?;
        Some(app.limits.polls.acquire(&who.key_id)?)
    };
    loop {
        let mut rx = coordination::subscribe(&id);
        let g = visible(&app, &who, &id).await?;
        let pending = g.status_at(model::now()) == Status::Pending;
        if !pending || tokio::time::Instant::now() >= deadline {
            return Ok(Json(g.view()));
        }
        // Wake on a change of this grant, at the pending deadline, or at our own deadline.
        let until = g
            .decide_by
            .map(|d| {
                let secs = (d - model::now()).max(0) as u64;
                tokio::time::Instant::now() + Duration::from_secs(secs)
            })
            .map_or(deadline, |t| t.min(deadline));
        let _ = tokio::time::timeout_at(until, rx.changed()).await;
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    #[serde(default)]
    hard: bool,
}

/// `POST /v1/aws/access/{grant_id}/release [{hard}]`: ends the grant. Idempotent: a
/// grant already over is returned as it is. `hard` also denies, on the role, any
/// session already issued (see [`revoke`]); it can follow an earlier soft release.
pub async fn release(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    who: Principal,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: ReleaseBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReleaseBody::default()
    } else {
        crate::api::parse_json(&body, "GRANT_INVALID_REQUEST")?
    };
    let g = visible(&app, &who, &id).await?;
    let allowed = match who.role {
        Role::Agent => who.agent_id.as_deref() == Some(g.agent_id.as_str()),
        Role::Admin | Role::Operator => true,
        _ => false,
    };
    if !allowed {
        return Err(ApiError::coded(
            StatusCode::FORBIDDEN,
            "GRANT_NOT_OWNER",
            "only the agent that requested a grant, or an admin of its workspace, can release it",
        ));
    }
    let _guard = coordination::lock_grant(&id).await;
    let g = visible(&app, &who, &id).await?;
    let now = model::now();
    let live = g.expires_at.is_some_and(|e| e > now);
    let by = json!({ "by": who.key_id, "hard": body.hard });
    let (g, leaf) = match g.status_at(now) {
        Status::Pending => {
            let mut after = g.clone();
            after.status = Status::Released;
            after.released_at = Some(now);
            transitions::commit(&app, &g, after, "grant.released", by, None, None).await?
        }
        Status::Active => {
            let mut after = g.clone();
            after.status = Status::Released;
            after.released_at = Some(now);
            if body.hard {
                hard_revoke(&app, &g, after, "grant.released", now, &who.key_id).await?
            } else {
                transitions::commit(&app, &g, after, "grant.released", by, None, None).await?
            }
        }
        Status::Released if body.hard && !g.hard_revoked && live => {
            let after = g.clone();
            hard_revoke(&app, &g, after, "grant.revoked", now, &who.key_id).await?
        }
        _ => return Ok(Json(g.view())),
    };
    let mut v = g.view();
    v["log_index"] = json!(leaf.index);
    Ok(Json(v))
}

/// Puts the deny policy on the role first, in the role's own account through the
/// ceiling's revoker (nothing is recorded if there is none or IAM refuses), then
/// records the release and the revocation to prune later, in one transaction.
/// Also used by [`super::offboard`] when an agent is disabled.
pub(crate) async fn hard_revoke(
    app: &App,
    before: &Grant,
    mut after: Grant,
    kind: &str,
    now: i64,
    by: &str,
) -> Result<(Grant, sealgate_shared::protocol::LeafRecord), ApiError> {
    // No revoker in the role's account: say so before anything changes (issue 9).
    let revoker = revoke::revoker_for(app, &before.workspace_id, &before.account_id).await?;
    // Held until the row is committed: the role's one deny policy lists every revoked
    // grant, read from those rows.
    let _role_guard = revoke::lock_role(&before.role_arn).await;
    revoke::add(app, &revoker, &before.role_arn, &before.id).await?;
    after.hard_revoked = true;
    let policy_name = revoke::POLICY_NAME.to_string();
    let prune_after = revoke::prune_after(before.expires_at.unwrap_or(now), before.max_ttl_seconds);
    let (gid, role, name) = (before.id.clone(), before.role_arn.clone(), policy_name.clone());
    let more: crate::db::Apply = Box::new(move |c| {
        c.execute(
            "INSERT OR REPLACE INTO grant_revocations (grant_id, role_arn, policy_name, created_at, prune_after, pruned_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
            params![gid, role, name, now, prune_after],
        )?;
        Ok(())
    });
    transitions::commit(
        app,
        before,
        after,
        kind,
        json!({
            "by": by,
            "hard": true,
            "role_arn": before.role_arn,
            "policy_name": policy_name,
            "prune_after": prune_after,
        }),
        None,
        Some(more),
    )
    .await
}
