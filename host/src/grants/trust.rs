//! Trust between sealgate and a workspace's AWS roles (issue 9, holes 1 and 2).
//!
//! **External IDs (the confused deputy).** The host assumes every `assume_role` ceiling's
//! role with its own AWS identity, the same for every workspace. Without more, workspace
//! A's admin could name workspace B's role (role ARNs are not secret) and A's agents
//! would get B's credentials. So sealgate mints one External ID per workspace and AWS
//! account, sends it as `ExternalId` on every `AssumeRole` of that ceiling, and the
//! role's trust policy must require it (`StringEquals sts:ExternalId`). A's ceiling
//! gets A's External ID, which B's trust policy does not accept.
//!
//! The ID is minted on first need (`GET …/policies`, or the first `PUT` of the ceiling)
//! and kept in its own table, not in the ceiling row: the customer must write it into
//! the trust policy *before* the ceiling can be stored (storing probes the role), and a
//! replaced or deleted ceiling keeps it, so trust policies never need re-editing.
//!
//! **The probe.** A trust policy that forgets the condition accepts any External ID,
//! which would silently reopen the hole. So when a ceiling is stored and on
//! `POST …/check`, the role is assumed twice: with the right External ID (must succeed)
//! and with a deliberately wrong one (must fail). A wrong ID that works means the role
//! does not enforce it: `GRANT_EXTERNAL_ID_NOT_ENFORCED` (409), naming the exact
//! Condition to add. Probe sessions carry a deny-all session policy, so the
//! credentials they return can do nothing. Every probe lands in the log
//! (`grant.role.probed`); `assume_role` credentials are only issued for a ceiling whose
//! last probe passed.
//!
//! **Web identity (hole 2).** Grant-path tokens carry the subject
//! `ws:<ws>:grant:<grant>`, which `/v1/tokens` can never produce; the trust policy given
//! here for `web_identity` roles matches only that namespace, so an agent's own token
//! cannot be exchanged at STS for the grant role.

use super::ceilings::{self, check_account_id, Stored};
use super::policy::{Ceiling, CredentialMode};
use super::sts::{self, Call, Context, Failure};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rand::RngCore;
use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The audience STS expects in web-identity tokens (and the OIDC provider's client id).
const STS_AUDIENCE: &str = super::credentials::STS_AUDIENCE;
/// The session policy of probe sessions: they prove the trust policy, nothing else.
const PROBE_SESSION_POLICY: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#;
const PROBE_SESSION: &str = "sealgate-probe";
const PROBE_SECONDS: i32 = 900;

/// A fresh External ID: `sg-` and 40 hex digits (160 random bits), inside the
/// characters STS allows (`[\w+=,.@:/-]`, 2–1224).
pub fn new_external_id() -> String {
    let mut b = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut b);
    format!("sg-{}", hex::encode(b))
}

/// The External ID of `(workspace, account)` and when a probe last verified it.
#[derive(Debug, Clone)]
pub struct ExternalId {
    pub value: String,
    pub verified_at: Option<i64>,
}

pub async fn load_external_id(app: &App, ws: &str, account: &str) -> Result<Option<ExternalId>, ApiError> {
    let (ws, account) = (ws.to_string(), account.to_string());
    Ok(app
        .ledger
        .db
        .read(move |c| {
            c.query_row(
                "SELECT external_id, verified_at FROM grant_external_ids WHERE workspace_id = ?1 AND account_id = ?2",
                params![ws, account],
                |r| {
                    Ok(ExternalId {
                        value: r.get(0)?,
                        verified_at: r.get(1)?,
                    })
                },
            )
            .optional()
        })
        .await?)
}

/// The External ID of `(workspace, account)`, minted (and logged, as a hash) if there is
/// none yet.
pub async fn ensure_external_id(app: &App, ws: &str, account: &str, by: &str) -> Result<ExternalId, ApiError> {
    if let Some(x) = load_external_id(app, ws, account).await? {
        return Ok(x);
    }
    let value = new_external_id();
    let (rws, racct, rval) = (ws.to_string(), account.to_string(), value.clone());
    let now = super::model::now();
    app.ledger
        .record(
            "grant.external_id.minted",
            json!({
                "workspace_id": ws,
                "account_id": account,
                "external_id_sha256": hex::encode(Sha256::digest(value.as_bytes())),
                "by": by,
            }),
            Some(Box::new(move |c| {
                // A concurrent mint may have won: its ID stays, this one is dropped.
                c.execute(
                    "INSERT INTO grant_external_ids (workspace_id, account_id, external_id, created_at) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (workspace_id, account_id) DO NOTHING",
                    params![rws, racct, rval, now],
                )?;
                Ok(())
            })),
        )
        .await?;
    load_external_id(app, ws, account)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("External ID for {ws}/{account} vanished after minting")))
}

/// The Condition a role's trust policy needs for `external_id`.
pub fn external_id_condition(external_id: &str) -> Value {
    json!({ "StringEquals": { "sts:ExternalId": external_id } })
}

/// The trust policy of an `assume_role` ceiling's role: the host's principal, with the
/// External ID required.
pub fn assume_role_trust_policy(host_principal: &str, external_id: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "SealgateBroker",
            "Effect": "Allow",
            "Principal": { "AWS": host_principal },
            "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
            "Condition": external_id_condition(external_id),
        }]
    })
}

/// The trust policy of a ceiling's revoker role: the host's principal, with the
/// External ID required (it may not tag sessions: it is never a grant's session).
pub fn revoker_trust_policy(host_principal: &str, external_id: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "SealgateBroker",
            "Effect": "Allow",
            "Principal": { "AWS": host_principal },
            "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
            "Condition": external_id_condition(external_id),
        }]
    })
}

/// What the revoker role may do: put, read and delete inline policies on the grant
/// role, nothing else.
pub fn revoker_permissions_policy(grant_role_arn: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "SealgateDenyPolicyOnGrantRole",
            "Effect": "Allow",
            "Action": ["iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy"],
            "Resource": grant_role_arn,
        }]
    })
}

/// The issuer as IAM names its OIDC provider and condition keys: the URL without its
/// scheme or trailing slash (`sealgate.example.com`).
pub fn issuer_host(issuer: &str) -> &str {
    let rest = issuer
        .strip_prefix("https://")
        .or_else(|| issuer.strip_prefix("http://"))
        .unwrap_or(issuer);
    rest.trim_end_matches('/')
}

/// The subject pattern of the grant path for `ws` (see `sealgate_shared::ids`).
pub fn grant_subject_pattern(ws: &str) -> String {
    format!("ws:{ws}:grant:*")
}

/// The trust policy of a `web_identity` ceiling's role: the IAM OIDC provider of the
/// issuer, audience `sts.amazonaws.com`, and only the grant path's subject namespace of
/// this workspace (never `ws:<ws>:agent:*`, which any agent can mint for itself).
pub fn web_identity_trust_policy(account: &str, issuer: &str, ws: &str) -> Value {
    let host = issuer_host(issuer);
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "SealgateGrantPath",
            "Effect": "Allow",
            "Principal": { "Federated": format!("arn:aws:iam::{account}:oidc-provider/{host}") },
            "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"],
            "Condition": {
                "StringEquals": { format!("{host}:aud"): STS_AUDIENCE },
                "StringLike": { format!("{host}:sub"): grant_subject_pattern(ws) },
            },
        }]
    })
}

/// The most the role itself must allow: the ceiling's actions on its resources in its
/// regions (each grant's session policy narrows it further).
pub fn permissions_policy(c: &Ceiling) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "SealgateCeiling",
            "Effect": "Allow",
            "Action": c.actions,
            "Resource": c.resources,
            "Condition": { "StringEquals": { "aws:RequestedRegion": c.regions } },
        }]
    })
}

/// The IAM principal the host's AWS credentials act as (an assumed-role session is
/// named by its role), from `GetCallerIdentity`.
async fn host_principal(app: &App, region: &str) -> Option<String> {
    let out = sts::client(app, region).await.get_caller_identity().send().await.ok()?;
    let arn = out.arn()?;
    // arn:aws:sts::123456789012:assumed-role/Name/session -> arn:aws:iam::123456789012:role/Name
    if let Some((prefix, rest)) = arn.split_once(":assumed-role/") {
        let role = rest.split('/').next().unwrap_or(rest);
        return Some(format!("{}:role/{role}", prefix.replacen(":sts:", ":iam:", 1)));
    }
    Some(arn.to_string())
}

/// What a probe found, for the caller and the leaf.
enum Outcome {
    Ok,
    /// The right External ID was refused (or STS failed).
    Refused(Failure),
    /// A wrong External ID was accepted.
    NotEnforced,
}

fn probe_call<'a>(role_arn: &'a str, external_id: &'a str, tags: &'a [(&'a str, &'a str)]) -> Call<'a> {
    Call {
        role_arn,
        session_name: PROBE_SESSION,
        policy: PROBE_SESSION_POLICY,
        duration_seconds: PROBE_SECONDS,
        source_identity: PROBE_SESSION,
        tags,
        external_id: Some(external_id),
    }
}

/// Probes an `assume_role` ceiling's role (see the module docs), records the probe and
/// whether it verified the External ID, and returns the error to answer when it did
/// not. `Ok` carries the probe's leaf index.
pub async fn probe(
    app: &App,
    ws: &str,
    account: &str,
    ceiling: &Ceiling,
    external_id: &str,
    by: &str,
) -> Result<u64, ApiError> {
    let client = sts::client(app, &ceiling.sts_region).await;
    let tags = [(super::revoke::TAG_WORKSPACE, ws)];
    let right = probe_call(&ceiling.role_arn, external_id, &tags);
    let (first, attempts) = sts::with_retry(|| sts::assume_role(&client, &right)).await;
    let mut wrong_attempts = Vec::new();
    let outcome = match first {
        Err(f) => Outcome::Refused(f),
        Ok(_) => {
            let wrong_id = new_external_id();
            let wrong = probe_call(&ceiling.role_arn, &wrong_id, &tags);
            let (second, a) = sts::with_retry(|| sts::assume_role(&client, &wrong)).await;
            wrong_attempts = a;
            match second {
                Ok(_) => Outcome::NotEnforced,
                // Refused, as the BYO probe reads it: AccessDenied, or any 403 (the right
                // ID just worked with the same credentials, so the ID is what differs).
                Err(f)
                    if f.http_status == Some(403)
                        || matches!(f.code.as_deref(), Some("AccessDenied" | "AccessDeniedException")) =>
                {
                    Outcome::Ok
                }
                // Throttled, unreachable, …: nothing proven either way.
                Err(f) => Outcome::Refused(f),
            }
        }
    };
    // The host could not call STS at all: nothing was proven either way, so nothing is
    // recorded and the External ID keeps whatever verification it had.
    if let Outcome::Refused(Failure { host: Some(h), .. }) = &outcome {
        return Err(h.to_api("STS", app.aws.endpoint_url().await.as_deref()));
    }
    let (result, verified) = match &outcome {
        Outcome::Ok => ("ok", true),
        Outcome::NotEnforced => ("external_id_not_enforced", false),
        Outcome::Refused(f) => (f.code.as_deref().unwrap_or("sts_error"), false),
    };
    let now = super::model::now();
    let (rws, racct) = (ws.to_string(), account.to_string());
    let verified_at = verified.then_some(now);
    let leaf = app
        .ledger
        .record(
            "grant.role.probed",
            json!({
                "workspace_id": ws,
                "account_id": account,
                "role_arn": ceiling.role_arn,
                "result": result,
                "attempts": attempts,
                "wrong_external_id_attempts": wrong_attempts,
                "by": by,
            }),
            Some(Box::new(move |c| {
                c.execute(
                    "UPDATE grant_external_ids SET verified_at = ?3 WHERE workspace_id = ?1 AND account_id = ?2",
                    params![rws, racct, verified_at],
                )?;
                Ok(())
            })),
        )
        .await?;
    match outcome {
        Outcome::Ok => Ok(leaf.index),
        Outcome::NotEnforced => Err(not_enforced(ws, account, &ceiling.role_arn, external_id)),
        Outcome::Refused(f) => {
            let issuer = app.ledger.config.issuer.clone();
            let cx = Context {
                mode: &CredentialMode::AssumeRole,
                workspace: ws,
                endpoint: None,
                role_arn: &ceiling.role_arn,
                account_id: account,
                sts_region: &ceiling.sts_region,
                issuer: &issuer,
                attempts: 1,
            };
            let (status, code, message) = sts::to_parts(&f, &cx);
            Err(ApiError::coded(
                status,
                code,
                format!(
                    "probing {} with the External ID failed, so the ceiling was not stored or verified. {message}. \
                     The trust policy needs the Condition {}; GET /v1/workspaces/{ws}/aws/accounts/{account}/policies \
                     gives the whole document",
                    ceiling.role_arn,
                    external_id_condition(external_id)
                ),
            ))
        }
    }
}

/// `GRANT_EXTERNAL_ID_NOT_ENFORCED`: a wrong External ID was accepted.
pub fn not_enforced(ws: &str, account: &str, role_arn: &str, external_id: &str) -> ApiError {
    ApiError::coded(
        StatusCode::CONFLICT,
        "GRANT_EXTERNAL_ID_NOT_ENFORCED",
        format!(
            "the trust policy of {role_arn} accepts any External ID, so another sealgate workspace naming this role \
             could assume it. Add this Condition to the statement that trusts sealgate's principal: {} \
             (GET /v1/workspaces/{ws}/aws/accounts/{account}/policies gives the whole trust policy), then PUT the \
             ceiling again or POST /v1/workspaces/{ws}/aws/accounts/{account}/check",
            external_id_condition(external_id)
        ),
    )
}

/// `GET /v1/workspaces/{ws}/aws/accounts/{account}/policies` (admin): the External ID,
/// the trust policy the role needs for each credential mode, and the permissions
/// outline of the ceiling. Mints the External ID on first call, so the role can be set
/// up before the ceiling is stored.
pub async fn policies(
    State(app): State<Arc<App>>,
    Path((ws, account)): Path<(String, String)>,
    who: Principal,
) -> Result<Json<Value>, ApiError> {
    who.require_admin_of(&ws)?;
    check_account_id(&account)?;
    crate::api::workspace_exists(&app, &ws).await?;
    let stored: Option<Stored> = ceilings::load(&app, &ws, &account).await?;
    let xid = ensure_external_id(&app, &ws, &account, &who.key_id).await?;
    let region = stored.as_ref().map_or("us-east-1", |s| s.ceiling.sts_region.as_str());
    let principal = host_principal(&app, region).await;
    let principal_or_hint = principal
        .clone()
        .unwrap_or_else(|| "<the ARN of sealgate's host role: GetCallerIdentity failed>".into());
    let issuer = &app.ledger.config.issuer;
    let assume = assume_role_trust_policy(&principal_or_hint, &xid.value);
    let web = web_identity_trust_policy(&account, issuer, &ws);
    let mode = stored.as_ref().map(|s| s.ceiling.credential_mode.clone());
    let trust = match mode {
        Some(CredentialMode::WebIdentity) => web.clone(),
        _ => assume.clone(),
    };
    Ok(Json(json!({
        "workspace_id": ws,
        "account_id": account,
        "role_arn": stored.as_ref().map(|s| s.ceiling.role_arn.clone()),
        "credential_mode": stored.as_ref().map(|s| s.ceiling.credential_mode.clone()),
        "external_id": xid.value,
        "external_id_verified_at": xid.verified_at,
        "external_id_condition": external_id_condition(&xid.value),
        "host_principal": principal,
        "trust_policy": trust,
        "trust_policies": { "assume_role": assume, "web_identity": web },
        "web_identity_subject_pattern": grant_subject_pattern(&ws),
        "permissions_policy": stored.as_ref().map(|s| permissions_policy(&s.ceiling)),
        "revoker": {
            "role_arn": stored.as_ref().and_then(|s| s.ceiling.revoker_role_arn.clone()),
            "trust_policy": revoker_trust_policy(&principal_or_hint, &xid.value),
            "permissions_policy": stored.as_ref().map(|s| revoker_permissions_policy(&s.ceiling.role_arn)),
        },
        "next_steps": format!(
            "apply trust_policy to the role (web_identity also needs an IAM OIDC provider for {issuer} with client id \
             {STS_AUDIENCE}) and permissions_policy as its permissions, then PUT the ceiling or POST \
             /v1/workspaces/{ws}/aws/accounts/{account}/check"
        ),
    })))
}

/// `POST /v1/workspaces/{ws}/aws/accounts/{account}/check` (admin): probes the stored
/// ceiling's role again (after its trust policy changed, for example).
pub async fn check(
    State(app): State<Arc<App>>,
    Path((ws, account)): Path<(String, String)>,
    who: Principal,
) -> Result<Json<Value>, ApiError> {
    who.require_admin_of(&ws)?;
    check_account_id(&account)?;
    let stored = ceilings::require(&app, &ws, &account).await?;
    let ceiling = &stored.ceiling;
    if ceiling.credential_mode == CredentialMode::WebIdentity {
        return Ok(Json(json!({
            "workspace_id": ws,
            "account_id": account,
            "role_arn": ceiling.role_arn,
            "credential_mode": "web_identity",
            "probed": false,
            "message": format!(
                "web_identity roles are not probed with an External ID; their trust policy must match only \
                 the subject {} (GET …/policies)",
                grant_subject_pattern(&ws)
            ),
        })));
    }
    let xid = ensure_external_id(&app, &ws, &account, &who.key_id).await?;
    let index = probe(&app, &ws, &account, ceiling, &xid.value, &who.key_id).await?;
    Ok(Json(json!({
        "workspace_id": ws,
        "account_id": account,
        "role_arn": ceiling.role_arn,
        "credential_mode": "assume_role",
        "probed": true,
        "ok": true,
        "external_id": xid.value,
        "log_index": index,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ids_are_long_random_and_sts_safe() {
        let a = new_external_id();
        assert_ne!(a, new_external_id());
        assert!(a.len() >= 32, "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c)));
    }

    #[test]
    fn web_identity_trust_matches_only_the_grant_namespace() {
        let p = web_identity_trust_policy("111122223333", "https://sealgate.example.com/", "ws_1");
        let cond = &p["Statement"][0]["Condition"];
        assert_eq!(cond["StringLike"]["sealgate.example.com:sub"], "ws:ws_1:grant:*");
        assert_eq!(cond["StringEquals"]["sealgate.example.com:aud"], "sts.amazonaws.com");
        assert_eq!(
            p["Statement"][0]["Principal"]["Federated"],
            "arn:aws:iam::111122223333:oidc-provider/sealgate.example.com"
        );
        assert_eq!(issuer_host("http://127.0.0.1:8080"), "127.0.0.1:8080");
    }

    #[test]
    fn assume_role_trust_requires_the_external_id() {
        let p = assume_role_trust_policy("arn:aws:iam::1:role/h", "sg-x");
        assert_eq!(p["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"], "sg-x");
    }
}
