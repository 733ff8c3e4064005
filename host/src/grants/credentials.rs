//! `GET /v1/aws/access/{grant_id}/credentials`: credentials minted from STS at this
//! moment, for the agent that holds the grant, and never stored or logged.
//!
//! Every call is checked afresh: the grant must be active, its ceiling must still exist
//! with the same role and still allow the request. The session is then narrowed: the
//! inline session policy (exactly the grant's actions, resources and regions, and an
//! `aws:CurrentTime` bound at the grant's expiry), `DurationSeconds` (what the grant has
//! left, capped by the ceiling, raised to STS's 900 s minimum — the time bound in the
//! policy is what ends a session that outlives its grant), and the identity
//! (`RoleSessionName` = grant id, `SourceIdentity` = agent, session tags).
//!
//! Credentials are released only after the leaf that records the issue (AWS request id,
//! access key id, expiry — never the secret or session token) is committed; a failed
//! call is recorded too, with each attempt's request id.

use super::model::{self, Status};
use super::policy::{self, CredentialMode, RuleDecision, STS_MIN_TTL};
use super::revoke::{TAG_AGENT, TAG_GRANT, TAG_WORKSPACE};
use super::sts::{self, Call, Context};
use super::{ceilings, coordination};
use crate::api::oidc::mint_token;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::App;
use aws_sdk_sts::primitives::DateTimeFormat;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rusqlite::params;
use sealgate_shared::protocol::MintRequest;
use serde_json::{json, Value};
use std::sync::Arc;

/// The audience AWS STS expects in a web-identity token.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

fn outside(message: String) -> ApiError {
    ApiError::coded(StatusCode::CONFLICT, "GRANT_OUTSIDE_CEILING", message)
}

fn not_active(id: &str, status: Status) -> ApiError {
    let hint = match status {
        Status::Pending => format!("it is waiting for an approver; poll GET /v1/aws/access/{id}?wait=30"),
        Status::Denied => "it was denied".into(),
        Status::TimedOut => "no approver decided in time; request again".into(),
        Status::Expired => "it has expired; request a new grant".into(),
        Status::Released => "it was released; request a new grant".into(),
        Status::Active => "it is active".into(),
    };
    ApiError::coded(
        StatusCode::CONFLICT,
        "GRANT_NOT_ACTIVE",
        format!("the grant is {}: {hint}", status.as_str()),
    )
}

pub async fn credentials(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    who: Principal,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::NotFound(format!("grant {id} does not exist"));
    // A key that may see the grant (its workspace's, or the operator's) but is not the
    // requesting agent's is told whose credentials these are; any other key learns
    // nothing, not even that the grant exists.
    match model::load(&app, &id).await? {
        Some(g) if super::access::can_see(&who, &g.workspace_id) => {
            if who.role != Role::Agent || who.agent_id.as_deref() != Some(g.agent_id.as_str()) {
                return Err(ApiError::coded(
                    StatusCode::FORBIDDEN,
                    "GRANT_NOT_OWNER",
                    format!(
                        "only the agent that requested a grant can fetch its credentials; this is {} key{}",
                        who.role.with_article(),
                        if who.role == Role::Agent {
                            " of another agent"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        _ => return Err(not_found()),
    }
    // Under the grant's lock: a release waits for an issue in flight, and an issue
    // started after a release sees it.
    let _guard = coordination::lock_grant(&id).await;
    let g = model::load(&app, &id).await?.ok_or_else(not_found)?;
    let now = model::now();
    let status = g.status_at(now);
    if status != Status::Active {
        return Err(not_active(&g.id, status));
    }
    let expires_at = g.expires_at.unwrap_or(now);
    let remaining = (expires_at - now).max(1) as u64;
    let stored = ceilings::load(&app, &g.workspace_id, &g.account_id)
        .await?
        .ok_or_else(|| outside(format!("the ceiling for account {} has been deleted", g.account_id)))?;
    let ceiling = &stored.ceiling;
    if ceiling.role_arn != g.role_arn {
        return Err(outside(format!(
            "the ceiling's role changed from {} to {} since this grant was requested; request a new grant",
            g.role_arn, ceiling.role_arn
        )));
    }
    let access = g.request.access();
    let d = policy::evaluate(ceiling, &access);
    if d.decision == RuleDecision::HardDeny {
        return Err(outside(format!(
            "the ceiling no longer allows this grant: {}",
            d.reason
        )));
    }

    // STS sessions last at least 900 s; a grant with less left still gets one, and the
    // session policy's `aws:CurrentTime` bound ends it with the grant.
    let duration = remaining.min(ceiling.max_ttl_seconds).max(STS_MIN_TTL);
    let session_policy = policy::session_policy(&access, expires_at as u64);
    let tags = [
        (TAG_WORKSPACE, g.workspace_id.as_str()),
        (TAG_AGENT, g.agent_id.as_str()),
        (TAG_GRANT, g.id.as_str()),
    ];
    // assume_role: only a role proven to enforce this workspace's External ID, and the
    // ID goes on the call (issue 9, hole 1).
    let external_id = match ceiling.credential_mode {
        CredentialMode::WebIdentity => None,
        CredentialMode::AssumeRole => match (&stored.external_id, stored.external_id_verified_at) {
            (Some(x), Some(_)) => Some(x.as_str()),
            _ => {
                return Err(ApiError::coded(
                    StatusCode::CONFLICT,
                    "GRANT_EXTERNAL_ID_UNVERIFIED",
                    format!(
                        "no probe has shown that {} requires this workspace's External ID: an admin must apply \
                         the trust policy from GET /v1/workspaces/{}/aws/accounts/{}/policies and POST \
                         …/check (or PUT the ceiling again)",
                        g.role_arn, g.workspace_id, g.account_id
                    ),
                ))
            }
        },
    };
    let call = Call {
        role_arn: &g.role_arn,
        session_name: &g.id,
        policy: &session_policy,
        duration_seconds: duration as i32,
        source_identity: &g.agent_id,
        tags: &tags,
        external_id,
    };
    let client = sts::client(&app, &ceiling.sts_region).await;
    let issuer = app.ledger.config.issuer.clone();
    let mut token_leaf = Value::Null;
    let (operation, (outcome, attempts)) = match ceiling.credential_mode {
        CredentialMode::AssumeRole => ("AssumeRole", sts::with_retry(|| sts::assume_role(&client, &call)).await),
        CredentialMode::WebIdentity => {
            let cfg = &app.ledger.config;
            if !cfg.audiences.iter().any(|a| a == STS_AUDIENCE) {
                return Err(ApiError::coded(
                    StatusCode::CONFLICT,
                    "GRANT_WEB_IDENTITY_UNAVAILABLE",
                    format!(
                        "the ceiling uses web_identity but this host may not mint tokens for audience \
                         {STS_AUDIENCE}: start it with --audience {STS_AUDIENCE}, or use credential_mode assume_role"
                    ),
                ));
            }
            // Only long enough for the call: STS checks it once, at the exchange.
            let ttl = cfg.ttl_min_seconds.max(120).min(cfg.ttl_max_seconds);
            let minted = mint_token(
                &app,
                MintRequest {
                    workspace: g.workspace_id.clone(),
                    agent: g.agent_id.clone(),
                    task: None,
                    audience: STS_AUDIENCE.into(),
                    ttl_seconds: ttl,
                    caller: who.key_id.clone(),
                    // Subject `ws:<ws>:grant:<grant>`: the namespace grant roles trust,
                    // which no `/v1/tokens` token can carry (issue 9, hole 2).
                    grant: Some(g.id.clone()),
                },
            )
            .await?;
            token_leaf = json!({ "jti": minted.jti, "log_index": minted.log_index });
            let token = minted.token;
            (
                "AssumeRoleWithWebIdentity",
                sts::with_retry(|| sts::assume_role_with_web_identity(&client, &call, &token)).await,
            )
        }
    };
    let base = model::with(
        g.leaf_base(),
        json!({
            "operation": operation,
            "role_arn": g.role_arn,
            "sts_region": ceiling.sts_region,
            "duration_seconds": duration,
            "attempts": attempts,
            "token": token_leaf,
        }),
    );
    let issued = match outcome {
        Ok(i) => i,
        Err(f) => {
            let event = model::with(
                base,
                json!({ "aws_request_id": f.request_id, "error_code": f.code, "http_status": f.http_status }),
            );
            if let Err(e) = app.ledger.record("grant.sts.failed", event, None).await {
                tracing::warn!(grant = %g.id, "recording a failed STS call: {e}");
            }
            let endpoint = app.aws.endpoint_url().await;
            let cx = Context {
                mode: &ceiling.credential_mode,
                workspace: &g.workspace_id,
                endpoint: endpoint.as_deref(),
                role_arn: &g.role_arn,
                account_id: &g.account_id,
                sts_region: &ceiling.sts_region,
                issuer: &issuer,
                attempts: attempts.len(),
            };
            return Err(sts::to_api(&f, &cx));
        }
    };
    // What the caller should plan with: the session, or the grant if it ends first
    // (the session policy stops the credentials working then).
    let expiration_secs = issued.expiration.secs().min(expires_at);
    let event = model::with(
        base,
        json!({
            "aws_request_id": issued.request_id,
            "access_key_id": issued.access_key_id,
            "expiration": expiration_secs,
        }),
    );
    let gid = g.id.clone();
    let leaf = app
        .ledger
        .record(
            "grant.credentials.issued",
            event,
            Some(Box::new(move |c| {
                c.execute(
                    "UPDATE grants SET credentials_issued = credentials_issued + 1 WHERE id = ?1",
                    params![gid],
                )?;
                Ok(())
            })),
        )
        .await?;
    let expiration = aws_sdk_sts::primitives::DateTime::from_secs(expiration_secs)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| expiration_secs.to_string());
    Ok(Json(json!({
        "grant_id": g.id,
        "access_key_id": issued.access_key_id,
        "secret_access_key": issued.secret_access_key,
        "session_token": issued.session_token,
        "expiration": expiration,
        "expires_at": expiration_secs,
        "region": g.request.regions.first(),
        "regions": g.request.regions,
        "aws_request_id": issued.request_id,
        "log_index": leaf.index,
    })))
}
