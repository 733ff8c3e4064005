//! Hard revocation: an inline deny policy on the grant's role, one per grant.
//!
//! STS credentials cannot be recalled once issued; what stops them is a deny on the
//! role they belong to, which IAM evaluates on every call the session makes. The
//! statement must match this grant's sessions only, and it has two conditions so it
//! does in both credential modes:
//!
//! - `aws:PrincipalTag/sealgate:grant` equals the grant id: the session tag we pass to
//!   `AssumeRole`;
//! - `aws:userid` ends in `:<grant id>`: for an assumed role that key is
//!   `<role id>:<role session name>`, and the session name is always the grant id. This
//!   one also covers `AssumeRoleWithWebIdentity` sessions, whose tags come from the
//!   token's claims (the enclave's tokens carry none), not from the call.
//!
//! One policy per grant (`sealgate-revoke-<grant>`) keeps put and prune independent and
//! idempotent; `PutRolePolicy` replaces a policy of the same name. The sweeper deletes
//! it once no session of the grant can still be alive ([`prune_after`]).

use crate::error::ApiError;
use crate::App;
use aws_sdk_iam::error::ProvideErrorMetadata;
use axum::http::StatusCode;
use serde_json::json;

/// The session tag keys (`AssumeRole` only; see the module docs).
pub const TAG_WORKSPACE: &str = "sealgate:workspace";
pub const TAG_AGENT: &str = "sealgate:agent";
pub const TAG_GRANT: &str = "sealgate:grant";

pub fn policy_name(grant_id: &str) -> String {
    format!("sealgate-revoke-{grant_id}")
}

/// The role name (last path segment) of a role ARN.
pub fn role_name(role_arn: &str) -> &str {
    role_arn.rsplit('/').next().unwrap_or(role_arn)
}

pub fn deny_document(grant_id: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SealgateRevokeByTag",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": { "StringEquals": { format!("aws:PrincipalTag/{TAG_GRANT}"): grant_id } }
            },
            {
                "Sid": "SealgateRevokeBySession",
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": { "StringLike": { "aws:userid": format!("*:{grant_id}") } }
            }
        ]
    })
    .to_string()
}

/// When the deny may go: no session of the grant outlives `expires_at` (credentials
/// are never issued for longer than the grant has left), and the ceiling's maximum
/// TTL on top is the margin the design asks for (clock skew, a role whose maximum
/// session is longer than what we asked for).
pub fn prune_after(expires_at: i64, max_ttl_seconds: i64) -> i64 {
    expires_at.saturating_add(max_ttl_seconds)
}

fn failed(what: &str, role_arn: &str, e: &impl ProvideErrorMetadata, raw: String) -> ApiError {
    let code = e.code().unwrap_or("unknown");
    let hint = match code {
        "NoSuchEntity" => format!("the role {role_arn} does not exist in IAM; check the ceiling's role_arn"),
        "AccessDenied" | "AccessDeniedException" => {
            format!("the host's AWS credentials need iam:PutRolePolicy and iam:DeleteRolePolicy on {role_arn}")
        }
        _ => format!("IAM said {code}: {}", e.message().unwrap_or(&raw)),
    };
    ApiError::coded(
        StatusCode::BAD_GATEWAY,
        "GRANT_REVOKE_FAILED",
        format!("{what} failed: {hint}. The grant is unchanged; retry the release once fixed"),
    )
}

/// Puts the grant's deny policy on `role_arn`.
pub async fn put(app: &App, role_arn: &str, grant_id: &str) -> Result<(), ApiError> {
    let iam = app.aws.iam().await;
    iam.put_role_policy()
        .role_name(role_name(role_arn))
        .policy_name(policy_name(grant_id))
        .policy_document(deny_document(grant_id))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            let raw = e.to_string();
            failed("putting the revocation policy", role_arn, &e, raw)
        })
}

/// Deletes the grant's deny policy; one already gone (or a role deleted) counts as done.
pub async fn prune(app: &App, role_arn: &str, policy: &str) -> Result<(), String> {
    let iam = app.aws.iam().await;
    match iam
        .delete_role_policy()
        .role_name(role_name(role_arn))
        .policy_name(policy)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("NoSuchEntity") => Ok(()),
        Err(e) => Err(format!(
            "{}: {}",
            e.code().unwrap_or("error"),
            e.message().map_or_else(|| e.to_string(), str::to_string)
        )),
    }
}
