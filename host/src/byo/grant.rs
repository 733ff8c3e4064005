//! The bucket grant: register (probed at once), read, check, rotate the External ID,
//! disconnect, and the IAM documents to apply. One grant per workspace at a time;
//! revoked grants stay in the table for audit.

use super::access;
use super::audit::{self, Scope};
use super::calls::CallLog;
use super::checklist;
use super::error::{ByoError, ByoResult};
use super::probe::{self, Problem, Target};
use super::store::{self, Grant, ACTIVE, FAILED, PENDING, REVOKED};
use super::validate;
use crate::api::{ByoBody, QueryParams};
use crate::auth::Principal;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rusqlite::params;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    role_arn: Option<String>,
    bucket: Option<String>,
    region: Option<String>,
    kms_key_id: Option<String>,
    run_id: Option<String>,
}

struct Valid {
    role_arn: String,
    bucket: String,
    region: String,
    kms_key_id: Option<String>,
    run_id: Option<String>,
}

fn required<'a>(v: &'a Option<String>, code: &'static str, field: &str) -> ByoResult<&'a str> {
    v.as_deref()
        .ok_or_else(|| ByoError::invalid(code, field, format!("{field} is required")))
}

fn validate(b: &NewGrant) -> ByoResult<Valid> {
    let role_arn = required(&b.role_arn, "BYO_INVALID_ROLE_ARN", "role_arn")?;
    let role = validate::role_arn(role_arn)
        .map_err(|e| ByoError::invalid("BYO_INVALID_ROLE_ARN", "role_arn", format!("role_arn: {e}")))?;
    let bucket = required(&b.bucket, "BYO_INVALID_BUCKET", "bucket")?;
    validate::bucket(bucket).map_err(|e| ByoError::invalid("BYO_INVALID_BUCKET", "bucket", format!("bucket: {e}")))?;
    let region = required(&b.region, "BYO_INVALID_REGION", "region")?;
    let partition = validate::region(region)
        .map_err(|e| ByoError::invalid("BYO_INVALID_REGION", "region", format!("region: {e}")))?;
    if role.partition != partition {
        return Err(ByoError::invalid(
            "BYO_INVALID_ROLE_ARN",
            "role_arn",
            format!(
                "role_arn is in partition {} but region {region} is in partition {partition}",
                role.partition
            ),
        ));
    }
    if let Some(k) = &b.kms_key_id {
        validate::kms_key_id(k, Some(partition), Some(region))
            .map_err(|e| ByoError::invalid("BYO_INVALID_KMS_KEY_ID", "kms_key_id", format!("kms_key_id: {e}")))?;
    }
    let run_id = run_id(b.run_id.as_deref())?;
    Ok(Valid {
        role_arn: role_arn.to_string(),
        bucket: bucket.to_string(),
        region: region.to_string(),
        kms_key_id: b.kms_key_id.clone(),
        run_id,
    })
}

/// A customer-chosen correlation id, copied into every audit row of the operation.
pub fn run_id(v: Option<&str>) -> ByoResult<Option<String>> {
    match v {
        None => Ok(None),
        Some(r) => validate::token(r, 128)
            .map(|_| Some(r.to_string()))
            .map_err(|e| ByoError::field("run_id", format!("run_id {e}"))),
    }
}

fn not_found(ws: &str) -> ByoError {
    ByoError::coded(
        StatusCode::NOT_FOUND,
        "BYO_GRANT_NOT_FOUND",
        format!("workspace {ws} has no BYO grant; register one with POST /v1/workspaces/{ws}/byo/grant"),
    )
}

pub async fn live_or_404(app: &App, ws: &str) -> ByoResult<Grant> {
    store::live_grant(app, ws).await?.ok_or_else(|| not_found(ws))
}

/// The one thing the customer should do next, given the grant's state.
pub fn next_step(g: &Grant) -> String {
    let ws = &g.workspace_id;
    match g.status.as_str() {
        ACTIVE => format!(
            "The grant is active: register objects with POST /v1/workspaces/{ws}/artifacts/byo \
             {{\"s3_uri\": \"s3://{}/<key>\"}}.",
            g.bucket
        ),
        PENDING => format!(
            "Set the sts:ExternalId condition in the trust policy of {} to \"{}\" (the full documents are at \
             GET /v1/workspaces/{ws}/byo/grant/policies), then POST /v1/workspaces/{ws}/byo/grant/check.",
            g.role_arn, g.external_id
        ),
        FAILED => checklist::entry(g.last_verify_error.as_deref().unwrap_or("BYO_AWS_ERROR"), g)["fix"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        _ => format!("This grant is revoked; register a new one with POST /v1/workspaces/{ws}/byo/grant."),
    }
}

fn probe_json(g: &Grant, outcome: &Result<(), Problem>) -> Value {
    match outcome {
        Ok(()) => json!({ "status": ACTIVE, "error": null, "checklist": [] }),
        Err(p) => json!({
            "status": FAILED,
            "error": { "code": p.code, "message": p.message },
            "checklist": [checklist::entry(p.code, g)],
        }),
    }
}

/// A probe the host could not run (no AWS credentials, AWS unreachable) proves nothing
/// about the customer's role or bucket: the call answers the host's problem (503) and
/// nothing is stored, neither a new grant nor a changed status, and no call reached
/// the customer's account to be audited.
fn host_problem(ws: &str, outcome: &Result<(), Problem>) -> ByoResult<()> {
    match outcome {
        Err(p) if p.host.is_some() => Err(p.clone().into_error(ws)),
        _ => Ok(()),
    }
}

fn apply_outcome(g: &mut Grant, outcome: &Result<(), Problem>, now: i64) {
    g.last_checked_at = Some(now);
    match outcome {
        Ok(()) => {
            g.status = ACTIVE.into();
            g.last_verified_at = Some(now);
            g.last_verify_error = None;
            g.last_verify_message = None;
        }
        Err(p) => {
            g.status = FAILED.into();
            g.last_verify_error = Some(p.code.into());
            g.last_verify_message = Some(p.message.clone());
        }
    }
}

fn scope(g: &Grant, run_id: Option<String>) -> Scope {
    Scope {
        workspace_id: g.workspace_id.clone(),
        grant_id: Some(g.id.clone()),
        role_arn: g.role_arn.clone(),
        bucket: g.bucket.clone(),
        run_id,
        artifact_id: None,
    }
}

/// The log event for a grant change. The External ID is not a secret (AWS says so), but
/// the public log only needs to prove *which* one was in force: its SHA-256.
fn event(g: &Grant, by: &str) -> Value {
    json!({
        "workspace_id": g.workspace_id,
        "grant_id": g.id,
        "role_arn": g.role_arn,
        "bucket": g.bucket,
        "region": g.region,
        "kms_key_id": g.kms_key_id,
        "external_id_sha256": hex::encode(Sha256::digest(g.external_id.as_bytes())),
        "status": g.status,
        "last_verify_error": g.last_verify_error,
        "by": by,
    })
}

fn update_status(g: &Grant) -> crate::db::Apply {
    let g = g.clone();
    Box::new(move |c| {
        c.execute(
            "UPDATE byo_grants SET status = ?2, last_verify_error = ?3, last_verify_message = ?4, \
             last_checked_at = ?5, last_verified_at = ?6, external_id = ?7, rotated_at = ?8, revoked_at = ?9 \
             WHERE id = ?1",
            params![
                g.id,
                g.status,
                g.last_verify_error,
                g.last_verify_message,
                g.last_checked_at,
                g.last_verified_at,
                g.external_id,
                g.rotated_at,
                g.revoked_at
            ],
        )?;
        Ok(())
    })
}

pub async fn register(
    State(app): State<Arc<App>>,
    Path(ws): Path<String>,
    who: Principal,
    ByoBody(body): ByoBody<NewGrant>,
) -> ByoResult<(StatusCode, Json<Value>)> {
    access::authorize(&app, &who, &ws).await?;
    let v = validate(&body)?;
    let _guard = access::lock(&ws).await;
    if let Some(existing) = store::live_grant(&app, &ws).await? {
        return Err(ByoError::detailed(
            StatusCode::CONFLICT,
            "BYO_GRANT_EXISTS",
            format!(
                "workspace {ws} already has grant {} ({}); nothing was changed. Either inspect it with \
                 GET /v1/workspaces/{ws}/byo/grant (and re-probe it with POST /v1/workspaces/{ws}/byo/grant/check), \
                 or disconnect it with DELETE /v1/workspaces/{ws}/byo/grant and register again",
                existing.id, existing.status
            ),
            json!({
                "grant_id": existing.id,
                "next_steps": [
                    format!("GET /v1/workspaces/{ws}/byo/grant"),
                    format!("DELETE /v1/workspaces/{ws}/byo/grant, then POST /v1/workspaces/{ws}/byo/grant"),
                ],
            }),
        ));
    }
    let now = crate::now_secs() as i64;
    let mut g = Grant {
        id: store::new_id("byo"),
        workspace_id: ws.clone(),
        role_arn: v.role_arn,
        bucket: v.bucket,
        region: v.region,
        kms_key_id: v.kms_key_id,
        external_id: store::uuid_v4(),
        status: PENDING.into(),
        last_verify_error: None,
        last_verify_message: None,
        last_checked_at: None,
        last_verified_at: None,
        created_at: now,
        rotated_at: None,
        revoked_at: None,
    };
    let mut log = CallLog::default();
    let outcome = probe::run(&app, &Target::from(&g), &mut log).await;
    host_problem(&ws, &outcome)?;
    apply_outcome(&mut g, &outcome, now);
    let row = g.clone();
    audit::commit(
        &app,
        &scope(&g, v.run_id),
        log.records,
        Some(("byo.grant.registered", event(&g, &who.key_id))),
        Some(Box::new(move |c| {
            c.execute(
                "INSERT INTO byo_grants (id, workspace_id, role_arn, bucket, region, kms_key_id, external_id, status, \
                 last_verify_error, last_verify_message, last_checked_at, last_verified_at, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    row.id,
                    row.workspace_id,
                    row.role_arn,
                    row.bucket,
                    row.region,
                    row.kms_key_id,
                    row.external_id,
                    row.status,
                    row.last_verify_error,
                    row.last_verify_message,
                    row.last_checked_at,
                    row.last_verified_at,
                    row.created_at
                ],
            )?;
            Ok(())
        })),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "grant": g.to_json(), "probe": probe_json(&g, &outcome), "next_step": next_step(&g) })),
    ))
}

pub async fn get(State(app): State<Arc<App>>, Path(ws): Path<String>, who: Principal) -> ByoResult<Json<Value>> {
    access::authorize(&app, &who, &ws).await?;
    let g = live_or_404(&app, &ws).await?;
    Ok(Json(json!({ "grant": g.to_json(), "next_step": next_step(&g) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    run_id: Option<String>,
}

pub async fn check(
    State(app): State<Arc<App>>,
    Path(ws): Path<String>,
    who: Principal,
    QueryParams(q): QueryParams<RunQuery>,
) -> ByoResult<Json<Value>> {
    access::authorize(&app, &who, &ws).await?;
    let run = run_id(q.run_id.as_deref())?;
    let _guard = access::lock(&ws).await;
    let mut g = live_or_404(&app, &ws).await?;
    let mut log = CallLog::default();
    let outcome = probe::run(&app, &Target::from(&g), &mut log).await;
    host_problem(&ws, &outcome)?;
    apply_outcome(&mut g, &outcome, crate::now_secs() as i64);
    audit::commit(
        &app,
        &scope(&g, run),
        log.records,
        Some(("byo.grant.checked", event(&g, &who.key_id))),
        Some(update_status(&g)),
    )
    .await?;
    Ok(Json(
        json!({ "grant": g.to_json(), "probe": probe_json(&g, &outcome), "next_step": next_step(&g) }),
    ))
}

pub async fn rotate(State(app): State<Arc<App>>, Path(ws): Path<String>, who: Principal) -> ByoResult<Json<Value>> {
    access::authorize(&app, &who, &ws).await?;
    let _guard = access::lock(&ws).await;
    let mut g = live_or_404(&app, &ws).await?;
    let previous = g.external_id.clone();
    g.external_id = store::uuid_v4();
    g.status = PENDING.into();
    g.last_verify_error = None;
    g.last_verify_message = None;
    g.rotated_at = Some(crate::now_secs() as i64);
    let mut ev = event(&g, &who.key_id);
    ev["previous_external_id_sha256"] = json!(hex::encode(Sha256::digest(previous.as_bytes())));
    app.ledger
        .record("byo.grant.rotated", ev, Some(update_status(&g)))
        .await?;
    Ok(Json(json!({ "grant": g.to_json(), "next_step": next_step(&g) })))
}

/// At most this many artifact ids are listed in a refused disconnect.
const LISTED_ARTIFACTS: i64 = 100;

pub async fn disconnect(State(app): State<Arc<App>>, Path(ws): Path<String>, who: Principal) -> ByoResult<Json<Value>> {
    access::authorize(&app, &who, &ws).await?;
    let _guard = access::lock(&ws).await;
    let mut g = live_or_404(&app, &ws).await?;
    let gid = g.id.clone();
    let (ids, count) = app
        .ledger
        .db
        .read(move |c| store::artifacts_of_grant(c, &gid, LISTED_ARTIFACTS))
        .await?;
    if count > 0 {
        return Err(ByoError::detailed(
            StatusCode::CONFLICT,
            "BYO_GRANT_IN_USE",
            format!(
                "{count} artifact(s) still reference grant {}: {}{}. Delete each with \
                 DELETE /v1/workspaces/{ws}/artifacts/<artifact id> (the objects stay in your bucket), then \
                 disconnect again",
                g.id,
                ids.join(", "),
                if count > ids.len() as i64 { ", …" } else { "" }
            ),
            json!({ "artifact_ids": ids, "artifact_count": count }),
        ));
    }
    g.status = REVOKED.into();
    g.revoked_at = Some(crate::now_secs() as i64);
    app.ledger
        .record("byo.grant.revoked", event(&g, &who.key_id), Some(update_status(&g)))
        .await?;
    Ok(Json(json!({ "grant": g.to_json(), "next_step": next_step(&g) })))
}

pub async fn policies(State(app): State<Arc<App>>, Path(ws): Path<String>, who: Principal) -> ByoResult<Json<Value>> {
    access::authorize(&app, &who, &ws).await?;
    let g = live_or_404(&app, &ws).await?;
    let principal = super::policies::principal(&app).await?;
    Ok(Json(super::policies::documents(&g, &principal)))
}
