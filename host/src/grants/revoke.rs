//! Hard revocation: one consolidated inline deny policy on the grant's role, written in
//! the role's own account by a revoker role there.
//!
//! STS credentials cannot be recalled once issued; what stops them is a deny on the
//! role they belong to, which IAM evaluates on every call the session makes.
//!
//! **Where.** The grant role lives in the customer's account, not the host's: an IAM
//! call with the host's own credentials and the role's *name* would land on a
//! same-named role in the host's account, or fail (issue 9, hole 3). So a ceiling may
//! name a `revoker_role_arn` in the same account; the broker assumes it with the
//! ceiling's External ID and puts the deny policy with that session, in that account.
//! The revoker may only put, get and delete inline policies on the grant roles
//! (`deploy/cloudformation/grant-account.yaml`). A ceiling without a revoker cannot
//! hard-revoke: the release says so (`GRANT_HARD_REVOKE_UNAVAILABLE`) before anything
//! changes, and never reports a revocation that did not happen.
//!
//! **What.** One policy per role, [`POLICY_NAME`], listing every revoked grant of that
//! role whose sessions may still be alive, in two statements (either one denies):
//!
//! - `aws:PrincipalTag/sealgate:grant` in the list: the session tag we pass to
//!   `AssumeRole`, and that grant-path tokens carry for `AssumeRoleWithWebIdentity`;
//! - `aws:userid` like `*:<grant id>`: for an assumed role that key is
//!   `<role id>:<role session name>`, and the session name is always the grant id —
//!   the backstop should a session ever lack the tag.
//!
//! Value lists keep it compact: an inline role policy may hold 10,240 characters (IAM's
//! quota for all of a role's inline policies), and at most [`MAX_REVOKED_PER_ROLE`]
//! grants are listed at once (a unit test checks that this fits with room to spare).
//! `PutRolePolicy` replaces the whole document, so every change (a revocation, a prune
//! by the sweeper once no session of a grant can be alive, [`prune_after`]) rewrites
//! the list under a per-role lock from the rows in `grant_revocations`.

use super::{ceilings, coordination, sts};
use crate::aws::{host_error, HostAwsError};
use crate::error::ApiError;
use crate::App;
use aws_sdk_iam::error::ProvideErrorMetadata;
use axum::http::StatusCode;
use rusqlite::params;
use serde_json::json;

/// The session tag keys: passed on `AssumeRole`, and carried in the grant-path token's
/// `https://aws.amazon.com/tags` claim for `AssumeRoleWithWebIdentity`.
pub const TAG_WORKSPACE: &str = "sealgate:workspace";
pub const TAG_AGENT: &str = "sealgate:agent";
pub const TAG_GRANT: &str = "sealgate:grant";

/// The one inline policy sealgate keeps on a grant role.
pub const POLICY_NAME: &str = "sealgate-revoked";
/// IAM's limit on the inline policies of one role, in characters (whitespace aside).
pub const INLINE_POLICY_QUOTA: usize = 10_240;
/// Most grants listed in one role's deny policy at once.
pub const MAX_REVOKED_PER_ROLE: usize = 100;

/// The role name (last path segment) of a role ARN.
pub fn role_name(role_arn: &str) -> &str {
    role_arn.rsplit('/').next().unwrap_or(role_arn)
}

/// The deny policy for `grant_ids` (non-empty), compact JSON.
pub fn deny_document(grant_ids: &[String]) -> String {
    let by_session: Vec<String> = grant_ids.iter().map(|g| format!("*:{g}")).collect();
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SealgateRevokedByTag",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": { "StringEquals": { format!("aws:PrincipalTag/{TAG_GRANT}"): grant_ids } }
            },
            {
                "Sid": "SealgateRevokedBySession",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": { "StringLike": { "aws:userid": by_session } }
            }
        ]
    })
    .to_string()
}

/// When a grant may leave the list: no session of the grant outlives `expires_at`
/// (credentials are never issued for longer than the grant has left), and the
/// ceiling's maximum TTL on top is the margin (clock skew, a role whose maximum session
/// is longer than what we asked for).
pub fn prune_after(expires_at: i64, max_ttl_seconds: i64) -> i64 {
    expires_at.saturating_add(max_ttl_seconds)
}

/// What the broker needs to act in a ceiling's account.
#[derive(Debug, Clone)]
pub struct Revoker {
    pub role_arn: String,
    pub external_id: String,
    pub sts_region: String,
}

fn unavailable(ws: &str, account: &str, message: String) -> ApiError {
    ApiError::coded(
        StatusCode::CONFLICT,
        "GRANT_HARD_REVOKE_UNAVAILABLE",
        format!(
            "{message}. Nothing was changed; a soft release ({{}} or {{\"hard\": false}}) still works. To enable hard \
             revocation, create the revoker role of deploy/cloudformation/grant-account.yaml in account {account} \
             and set revoker_role_arn in PUT /v1/workspaces/{ws}/aws/accounts/{account}"
        ),
    )
}

/// The revoker of `(ws, account)`'s ceiling, or `GRANT_HARD_REVOKE_UNAVAILABLE`.
pub async fn revoker_for(app: &App, ws: &str, account: &str) -> Result<Revoker, ApiError> {
    let stored = ceilings::load(app, ws, account).await?.ok_or_else(|| {
        unavailable(
            ws,
            account,
            format!("workspace {ws} has no ceiling for account {account} any more, so no revoker role"),
        )
    })?;
    let role_arn = stored.ceiling.revoker_role_arn.clone().ok_or_else(|| {
        unavailable(
            ws,
            account,
            format!("the ceiling for account {account} names no revoker_role_arn, so sealgate cannot put a deny policy on the role"),
        )
    })?;
    let external_id = stored
        .external_id
        .clone()
        .ok_or_else(|| unavailable(ws, account, format!("account {account} has no External ID yet")))?;
    Ok(Revoker {
        role_arn,
        external_id,
        sts_region: stored.ceiling.sts_region.clone(),
    })
}

/// Serialises changes to one role's deny policy (hold it from reading the list until
/// the change is committed).
pub async fn lock_role(role_arn: &str) -> tokio::sync::OwnedMutexGuard<()> {
    coordination::lock_grant(&format!("revoke-role:{role_arn}")).await
}

/// The grants currently listed (revoked, not yet pruned) on `role_arn`.
pub async fn listed(app: &App, role_arn: &str) -> Result<Vec<String>, ApiError> {
    let (role, name) = (role_arn.to_string(), POLICY_NAME);
    Ok(app
        .ledger
        .db
        .read(move |c| {
            let mut st = c.prepare(
                "SELECT grant_id FROM grant_revocations WHERE role_arn = ?1 AND policy_name = ?2 \
                 AND pruned_at IS NULL ORDER BY created_at, grant_id",
            )?;
            let rows = st.query_map(params![role, name], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
        .await?)
}

fn iam_failed(what: &str, role_arn: &str, revoker: &str, code: &str, message: &str) -> ApiError {
    let hint = match code {
        "NoSuchEntity" => format!("the role {role_arn} does not exist in its account; check the ceiling's role_arn"),
        "AccessDenied" | "AccessDeniedException" => format!(
            "the revoker role {revoker} needs iam:PutRolePolicy, iam:GetRolePolicy and iam:DeleteRolePolicy on {role_arn}"
        ),
        _ => format!("IAM said {code}: {message}"),
    };
    ApiError::coded(
        StatusCode::BAD_GATEWAY,
        "GRANT_REVOKE_FAILED",
        format!("{what} failed: {hint}. The grant is unchanged; retry the release once fixed"),
    )
}

/// What an IAM error says, without the SDK's `Debug` output.
struct IamFailure {
    host: Option<HostAwsError>,
    code: String,
    message: String,
}

impl IamFailure {
    fn of<E>(e: &aws_sdk_iam::error::SdkError<E, aws_sdk_iam::config::http::HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        IamFailure {
            host: HostAwsError::of(e),
            code: e.code().unwrap_or("an error").to_string(),
            message: e.message().map_or_else(|| host_error::describe(e), str::to_string),
        }
    }
}

/// IAM in the ceiling's account, acting as its revoker role (assumed with the External
/// ID, like every role sealgate assumes for a workspace).
async fn revoker_iam(app: &App, r: &Revoker) -> Result<aws_sdk_iam::Client, ApiError> {
    let client = sts::client(app, &r.sts_region).await;
    let call = sts::Call {
        role_arn: &r.role_arn,
        session_name: "sealgate-revoker",
        policy: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:PutRolePolicy","iam:GetRolePolicy","iam:DeleteRolePolicy"],"Resource":"*"}]}"#,
        duration_seconds: 900,
        source_identity: "sealgate-revoker",
        tags: &[],
        external_id: Some(&r.external_id),
    };
    let (out, _) = sts::with_retry(|| sts::assume_role(&client, &call)).await;
    let endpoint = app.aws.endpoint_url().await;
    let issued = out.map_err(|f| {
        if let Some(h) = f.host {
            return h.to_api("STS", endpoint.as_deref());
        }
        ApiError::coded(
            StatusCode::BAD_GATEWAY,
            "GRANT_REVOKE_FAILED",
            format!(
                "assuming the revoker role {} failed ({}: {}): its trust policy must trust sealgate's principal \
                 under StringEquals sts:ExternalId = {:?}. The grant is unchanged; retry the release once fixed",
                r.role_arn,
                f.code.as_deref().unwrap_or("error"),
                f.message,
                r.external_id
            ),
        )
    })?;
    let creds = aws_sdk_iam::config::Credentials::new(
        issued.access_key_id,
        issued.secret_access_key,
        Some(issued.session_token),
        std::time::SystemTime::try_from(issued.expiration).ok(),
        "sealgate-revoker",
    );
    let conf = aws_sdk_iam::config::Builder::from(app.aws.config().await)
        .credentials_provider(creds)
        .build();
    Ok(aws_sdk_iam::Client::from_conf(conf))
}

/// Writes the deny policy on `role_arn` listing `grant_ids`, or removes it when the
/// list is empty (already gone counts as done).
pub async fn write(app: &App, r: &Revoker, role_arn: &str, grant_ids: &[String]) -> Result<(), ApiError> {
    let iam = revoker_iam(app, r).await?;
    let name = role_name(role_arn);
    let endpoint = app.aws.endpoint_url().await;
    let failed = |what: &str, e: IamFailure| match e.host {
        Some(h) => h.to_api("IAM", endpoint.as_deref()),
        None => iam_failed(what, role_arn, &r.role_arn, &e.code, &e.message),
    };
    if grant_ids.is_empty() {
        return match iam
            .delete_role_policy()
            .role_name(name)
            .policy_name(POLICY_NAME)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("NoSuchEntity") => Ok(()),
            Err(e) => Err(failed("deleting the revocation policy", IamFailure::of(&e))),
        };
    }
    iam.put_role_policy()
        .role_name(name)
        .policy_name(POLICY_NAME)
        .policy_document(deny_document(grant_ids))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| failed("putting the revocation policy", IamFailure::of(&e)))
}

/// Adds `grant_id` to the deny policy of its role (call under [`lock_role`], and commit
/// the `grant_revocations` row before releasing it).
pub async fn add(app: &App, r: &Revoker, role_arn: &str, grant_id: &str) -> Result<(), ApiError> {
    let mut ids = listed(app, role_arn).await?;
    if !ids.iter().any(|g| g == grant_id) {
        ids.push(grant_id.to_string());
    }
    if ids.len() > MAX_REVOKED_PER_ROLE {
        return Err(ApiError::coded(
            StatusCode::CONFLICT,
            "GRANT_HARD_REVOKE_UNAVAILABLE",
            format!(
                "{role_arn} already lists {MAX_REVOKED_PER_ROLE} revoked grants whose sessions may be alive (the \
                 most its inline-policy quota allows); nothing was changed. Soft-release this grant, and retry the \
                 hard release once the sweeper has pruned older revocations"
            ),
        ));
    }
    write(app, r, role_arn, &ids).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deny_policy_fits_the_inline_policy_quota() {
        let size = |hex: usize| {
            let ids: Vec<String> = (0..MAX_REVOKED_PER_ROLE)
                .map(|i| format!("gr_{i:0width$x}", width = hex))
                .collect();
            deny_document(&ids).chars().filter(|c| !c.is_whitespace()).count()
        };
        // Grant ids are `gr_` and 24 hex digits: a full list uses under 70 % of the quota.
        let real = size(24);
        assert!(
            real * 10 < INLINE_POLICY_QUOTA * 7,
            "{real} characters for {MAX_REVOKED_PER_ROLE} grants"
        );
        // Even ids a third longer would still fit.
        let longer = size(32);
        assert!(longer < INLINE_POLICY_QUOTA, "{longer}");
        let ids: Vec<String> = (0..2).map(|i| format!("gr_{i:024x}")).collect();
        // Per grant the document grows by two list entries only.
        let one = deny_document(&ids[..1]).len();
        let two = deny_document(&ids[..2]).len();
        assert_eq!(two - one, 2 * (ids[1].len() + 3) + 2);
    }

    #[test]
    fn the_deny_policy_matches_by_tag_and_by_session_name() {
        let ids = vec!["gr_a".to_string(), "gr_b".to_string()];
        let v: serde_json::Value = serde_json::from_str(&deny_document(&ids)).unwrap();
        let s = &v["Statement"];
        assert_eq!(
            s[0]["Condition"]["StringEquals"]["aws:PrincipalTag/sealgate:grant"],
            json!(["gr_a", "gr_b"])
        );
        assert_eq!(
            s[1]["Condition"]["StringLike"]["aws:userid"],
            json!(["*:gr_a", "*:gr_b"])
        );
        assert!(s.as_array().unwrap().iter().all(|st| st["Effect"] == "Deny"));
    }
}
