//! The readiness probe, and the session every BYO operation starts with.
//!
//! The role is assumed afresh for each operation (no session outlives it): when the
//! customer revokes the role, an operation already holding a session finishes, and the
//! next one fails at `AssumeRole` with `BYO_ASSUME_ROLE_FAILED`.

use super::calls::{CallLog, Failure};
use super::config::settings;
use super::error::ByoError;
use crate::aws::HostAwsError;
use crate::App;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::Credentials;
use axum::http::StatusCode;
use serde_json::json;

/// What the probe (or a BYO operation) needs to reach the customer's bucket.
#[derive(Debug, Clone)]
pub struct Target {
    pub workspace_id: String,
    pub role_arn: String,
    pub external_id: String,
    pub bucket: String,
    pub region: String,
    pub kms_key_id: Option<String>,
}

impl From<&super::store::Grant> for Target {
    fn from(g: &super::store::Grant) -> Self {
        Target {
            workspace_id: g.workspace_id.clone(),
            role_arn: g.role_arn.clone(),
            external_id: g.external_id.clone(),
            bucket: g.bucket.clone(),
            region: g.region.clone(),
            kms_key_id: g.kms_key_id.clone(),
        }
    }
}

/// A typed failure of a call into the customer's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: &'static str,
    pub message: String,
    /// Set when the host could not make the call at all: the problem is the host's
    /// configuration, says nothing about the customer's grant, and is never stored on it.
    pub host: Option<HostAwsError>,
}

impl Problem {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            code,
            message: message.into(),
            host: None,
        }
    }

    /// The status when an operation other than the probe ends with this problem: the
    /// customer's account refused (424, the request depended on it), AWS was slow or
    /// throttling (503/504), or AWS failed in a way we cannot classify (502).
    pub fn status(&self) -> StatusCode {
        if self.host.is_some() {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        match self.code {
            "BYO_THROTTLED" => StatusCode::SERVICE_UNAVAILABLE,
            "BYO_PROBE_TIMEOUT" => StatusCode::GATEWAY_TIMEOUT,
            "BYO_AWS_ERROR" => StatusCode::BAD_GATEWAY,
            _ => StatusCode::FAILED_DEPENDENCY,
        }
    }

    pub fn into_error(self, ws: &str) -> ByoError {
        let code = self.code;
        let next_step = if self.host.is_some() {
            format!(
                "the operator fixes the host's AWS configuration as the message says (see {}); nothing about \
                 this workspace's grant needs changing, so retry the same call afterwards",
                crate::aws::host_error::LOCAL_AWS_DOC
            )
        } else {
            format!(
                "fix what the message says, then check the grant with POST /v1/workspaces/{ws}/byo/grant/check \
                 (its answer carries a checklist entry for {code})"
            )
        };
        ByoError::detailed(self.status(), code, self.message, json!({ "next_step": next_step }))
    }
}

/// Failures every service shares: the host unable to call AWS, the time limit,
/// throttling.
fn common(f: &Failure, what: &str) -> Option<Problem> {
    if let Some(h) = f.host {
        let service = what.split(' ').next().unwrap_or(what);
        return Some(Problem {
            code: h.code(),
            message: h.message(service, None),
            host: Some(h),
        });
    }
    if f.timeout {
        return Some(Problem::new(
            "BYO_PROBE_TIMEOUT",
            format!(
                "{what} did not answer within {} ms",
                settings().call_timeout.as_millis()
            ),
        ));
    }
    if f.throttled() {
        return Some(Problem::new(
            "BYO_THROTTLED",
            format!(
                "{what} was throttled {} times in a row: {}",
                settings().max_attempts,
                f.describe()
            ),
        ));
    }
    None
}

pub fn sts_problem(f: &Failure, t: &Target) -> Problem {
    common(f, "STS AssumeRole").unwrap_or_else(|| {
        Problem::new(
            "BYO_ASSUME_ROLE_FAILED",
            format!(
                "AssumeRole on {} with the grant's External ID failed: {}",
                t.role_arn,
                f.describe()
            ),
        )
    })
}

/// Whether S3 says the bucket is elsewhere; returns the bucket's region if known.
fn wrong_region(f: &Failure, t: &Target) -> Option<String> {
    let redirect = f.status == Some(301)
        || f.is("PermanentRedirect")
        || f.is("AuthorizationHeaderMalformed")
        || f.is("IllegalLocationConstraintException");
    match &f.bucket_region {
        Some(r) if *r != t.region => Some(r.clone()),
        _ if redirect => Some("another region".into()),
        _ => None,
    }
}

fn region_mismatch(actual: &str, t: &Target, how: &str) -> Problem {
    Problem::new(
        "BYO_REGION_MISMATCH",
        format!(
            "bucket {} is in {actual} ({how}), but the grant names {}",
            t.bucket, t.region
        ),
    )
}

pub fn bucket_problem(f: &Failure, t: &Target, action: &str) -> Problem {
    if let Some(actual) = wrong_region(f, t) {
        return region_mismatch(&actual, t, &format!("S3 answered {action} with {}", f.audit_code()));
    }
    if let Some(p) = common(f, &format!("S3 {action}")) {
        return p;
    }
    if f.status == Some(404) || f.is("NoSuchBucket") || f.is("NotFound") {
        return Problem::new(
            "BYO_BUCKET_NOT_FOUND",
            format!("bucket {} does not exist: {}", t.bucket, f.describe()),
        );
    }
    if f.status == Some(403) || f.is("AccessDenied") {
        return Problem::new(
            "BYO_ACCESS_DENIED",
            format!(
                "the role may not call {action} on bucket {}: {}",
                t.bucket,
                f.describe()
            ),
        );
    }
    Problem::new(
        "BYO_AWS_ERROR",
        format!("S3 {action} on bucket {} failed: {}", t.bucket, f.describe()),
    )
}

pub fn kms_problem(f: &Failure, t: &Target) -> Problem {
    if let Some(p) = common(f, "KMS DescribeKey") {
        return p;
    }
    let key = t.kms_key_id.as_deref().unwrap_or_default();
    let denied = f.status == Some(403)
        || f.status == Some(400)
            && f.code.as_deref().is_some_and(|c| {
                [
                    "AccessDeniedException",
                    "NotFoundException",
                    "DisabledException",
                    "KMSInvalidStateException",
                    "KMSInvalidArnException",
                ]
                .contains(&c)
            });
    if denied || f.is("AccessDeniedException") || f.is("NotFoundException") {
        return Problem::new(
            "BYO_KMS_ACCESS_DENIED",
            format!("the role cannot use KMS key {key}: {}", f.describe()),
        );
    }
    Problem::new(
        "BYO_AWS_ERROR",
        format!("KMS DescribeKey on {key} failed: {}", f.describe()),
    )
}

/// A session name STS accepts (2–64 of `[\w+=,.@-]`) naming the purpose and workspace,
/// so the customer's CloudTrail shows which sealgate workspace assumed their role.
fn session_name(purpose: &str, ws: &str) -> String {
    let mut s: String = format!("sealgate-{purpose}-{ws}")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(*c))
        .collect();
    s.truncate(64);
    s
}

/// Shortest session STS allows: a session ends with the operation that asked for it.
const SESSION_SECONDS: i32 = 900;

/// `AssumeRole` with the grant's External ID, recorded in `log`.
pub async fn assume(app: &App, t: &Target, purpose: &str, log: &mut CallLog) -> Result<Credentials, Problem> {
    let sts = app.aws.sts(&t.region).await;
    let sts = aws_sdk_sts::Client::from_conf(sts.config().to_builder().retry_config(RetryConfig::disabled()).build());
    let name = session_name(purpose, &t.workspace_id);
    let out = log
        .run("sts:AssumeRole", None, || {
            sts.assume_role()
                .role_arn(&t.role_arn)
                .role_session_name(&name)
                .external_id(&t.external_id)
                .duration_seconds(SESSION_SECONDS)
                .send()
        })
        .await
        .map_err(|f| sts_problem(&f, t))?;
    let creds = out
        .credentials()
        .ok_or_else(|| Problem::new("BYO_ASSUME_ROLE_FAILED", "STS answered AssumeRole without credentials"))?;
    Ok(crate::aws::session_credentials(creds, "sealgate-byo"))
}

/// S3 in the grant's region acting as the assumed role, without SDK retries (see `calls`).
pub async fn s3(app: &App, creds: Credentials, region: &str) -> aws_sdk_s3::Client {
    let c = app.aws.s3_as(creds, region).await;
    aws_sdk_s3::Client::from_conf(c.config().to_builder().retry_config(RetryConfig::disabled()).build())
}

async fn kms(app: &App, creds: Credentials, region: &str) -> aws_sdk_kms::Client {
    let c = app.aws.kms_as(creds, region).await;
    aws_sdk_kms::Client::from_conf(c.config().to_builder().retry_config(RetryConfig::disabled()).build())
}

/// `GetBucketLocation`'s answer as a region: empty means us-east-1, `EU` eu-west-1.
fn location_region(constraint: Option<&str>) -> String {
    match constraint.unwrap_or("") {
        "" => "us-east-1".into(),
        "EU" => "eu-west-1".into(),
        r => r.to_string(),
    }
}

/// The audit label of the probe's deliberate wrong-External-ID `AssumeRole` (CloudTrail
/// shows it as a refused `AssumeRole`; the label says it was meant to be refused).
pub const WRONG_EXTERNAL_ID_EVENT: &str = "sts:AssumeRole(wrong-external-id)";

/// The Condition the role's trust policy needs, as JSON text.
pub fn external_id_condition(external_id: &str) -> String {
    json!({ "StringEquals": { "sts:ExternalId": external_id } }).to_string()
}

/// `AssumeRole` with a deliberately wrong External ID must be refused: a trust policy
/// without the `sts:ExternalId` condition lets any sealgate workspace that names this
/// role assume it (the confused deputy, issue 9). The session, if one is granted, is
/// never used.
async fn external_id_enforced(app: &App, t: &Target, log: &mut CallLog) -> Result<(), Problem> {
    let sts = app.aws.sts(&t.region).await;
    let sts = aws_sdk_sts::Client::from_conf(sts.config().to_builder().retry_config(RetryConfig::disabled()).build());
    let name = session_name("probe-wrong-id", &t.workspace_id);
    let wrong = format!("sealgate-wrong-{}", super::store::uuid_v4());
    let deny_all = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#;
    let out = log
        .run(WRONG_EXTERNAL_ID_EVENT, None, || {
            sts.assume_role()
                .role_arn(&t.role_arn)
                .role_session_name(&name)
                .external_id(&wrong)
                .policy(deny_all)
                .duration_seconds(SESSION_SECONDS)
                .send()
        })
        .await;
    match out {
        Ok(_) => Err(Problem::new(
            "BYO_EXTERNAL_ID_NOT_ENFORCED",
            format!(
                "the trust policy of {} accepts any External ID, so another sealgate workspace naming this role \
                 could read the bucket. Add this Condition to the statement that trusts sealgate's principal: {}",
                t.role_arn,
                external_id_condition(&t.external_id)
            ),
        )),
        Err(f) if f.is("AccessDenied") || f.status == Some(403) => Ok(()),
        Err(f) => Err(sts_problem(&f, t)),
    }
}

/// The readiness probe: assume the role, check that a wrong External ID is refused,
/// `HeadBucket`, `GetBucketLocation` compared with the registered region, and
/// `DescribeKey` on the KMS key when one is set (it must be enabled and usable for
/// encryption). Stops at the first failure.
pub async fn run(app: &App, t: &Target, log: &mut CallLog) -> Result<(), Problem> {
    let creds = assume(app, t, "probe", log).await?;
    external_id_enforced(app, t, log).await?;
    let s3 = s3(app, creds.clone(), &t.region).await;

    let head = log
        .run("s3:HeadBucket", None, || s3.head_bucket().bucket(&t.bucket).send())
        .await
        .map_err(|f| bucket_problem(&f, t, "HeadBucket"))?;
    if let Some(actual) = head.bucket_region().filter(|r| *r != t.region) {
        return Err(region_mismatch(actual, t, "x-amz-bucket-region"));
    }

    let loc = log
        .run("s3:GetBucketLocation", None, || {
            s3.get_bucket_location().bucket(&t.bucket).send()
        })
        .await
        .map_err(|f| bucket_problem(&f, t, "GetBucketLocation"))?;
    let actual = location_region(loc.location_constraint().map(|c| c.as_str()));
    if actual != t.region {
        return Err(region_mismatch(&actual, t, "GetBucketLocation"));
    }

    if let Some(key) = &t.kms_key_id {
        let kms = kms(app, creds, &t.region).await;
        let out = log
            .run("kms:DescribeKey", None, || kms.describe_key().key_id(key).send())
            .await
            .map_err(|f| kms_problem(&f, t))?;
        let meta = out.key_metadata();
        let state = meta.and_then(|m| m.key_state()).map(|s| s.as_str().to_string());
        let usage = meta.and_then(|m| m.key_usage()).map(|u| u.as_str().to_string());
        if state.as_deref() != Some("Enabled") {
            return Err(Problem::new(
                "BYO_KMS_ACCESS_DENIED",
                format!(
                    "KMS key {key} is {}, not Enabled",
                    state.as_deref().unwrap_or("in an unknown state")
                ),
            ));
        }
        if usage.as_deref().is_some_and(|u| u != "ENCRYPT_DECRYPT") {
            return Err(Problem::new(
                "BYO_KMS_ACCESS_DENIED",
                format!(
                    "KMS key {key} has usage {}, S3 needs ENCRYPT_DECRYPT",
                    usage.unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            workspace_id: "ws_1".into(),
            role_arn: "arn:aws:iam::123456789012:role/R".into(),
            external_id: "e".into(),
            bucket: "b-1".into(),
            region: "us-west-2".into(),
            kms_key_id: Some("alias/k".into()),
        }
    }

    fn failure(status: u16, code: Option<&str>) -> Failure {
        Failure {
            status: Some(status),
            code: code.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn s3_failures_map_to_typed_codes() {
        let t = target();
        let code = |f: Failure| bucket_problem(&f, &t, "HeadBucket").code;
        assert_eq!(code(failure(404, None)), "BYO_BUCKET_NOT_FOUND");
        assert_eq!(code(failure(404, Some("NoSuchBucket"))), "BYO_BUCKET_NOT_FOUND");
        assert_eq!(code(failure(403, None)), "BYO_ACCESS_DENIED");
        assert_eq!(code(failure(301, None)), "BYO_REGION_MISMATCH");
        assert_eq!(
            code(failure(400, Some("AuthorizationHeaderMalformed"))),
            "BYO_REGION_MISMATCH"
        );
        let mut f = failure(403, None);
        f.bucket_region = Some("us-west-2".into());
        assert_eq!(code(f.clone()), "BYO_ACCESS_DENIED", "same region: a plain denial");
        f.bucket_region = Some("eu-west-1".into());
        assert_eq!(code(f), "BYO_REGION_MISMATCH");
        assert_eq!(code(failure(503, Some("SlowDown"))), "BYO_THROTTLED");
        assert_eq!(code(failure(500, Some("InternalError"))), "BYO_AWS_ERROR");
        assert_eq!(code(Failure::timed_out()), "BYO_PROBE_TIMEOUT");
    }

    #[test]
    fn sts_and_kms_failures_map_to_typed_codes() {
        let t = target();
        assert_eq!(
            sts_problem(&failure(403, Some("AccessDenied")), &t).code,
            "BYO_ASSUME_ROLE_FAILED"
        );
        assert_eq!(sts_problem(&failure(400, Some("Throttling")), &t).code, "BYO_THROTTLED");
        assert_eq!(sts_problem(&Failure::timed_out(), &t).code, "BYO_PROBE_TIMEOUT");
        assert_eq!(
            kms_problem(&failure(400, Some("AccessDeniedException")), &t).code,
            "BYO_KMS_ACCESS_DENIED"
        );
        assert_eq!(
            kms_problem(&failure(400, Some("NotFoundException")), &t).code,
            "BYO_KMS_ACCESS_DENIED"
        );
        assert_eq!(
            kms_problem(&failure(400, Some("ThrottlingException")), &t).code,
            "BYO_THROTTLED"
        );
        assert_eq!(
            kms_problem(&failure(500, Some("KMSInternalException")), &t).code,
            "BYO_AWS_ERROR"
        );
    }

    #[test]
    fn session_names_fit_sts_rules() {
        let n = session_name("probe", &"w".repeat(100));
        assert_eq!(n.len(), 64);
        assert_eq!(session_name("probe", "ws_1/2"), "sealgate-probe-ws_12");
    }

    #[test]
    fn bucket_location_constraints() {
        assert_eq!(location_region(None), "us-east-1");
        assert_eq!(location_region(Some("")), "us-east-1");
        assert_eq!(location_region(Some("EU")), "eu-west-1");
        assert_eq!(location_region(Some("ap-south-1")), "ap-south-1");
    }
}
