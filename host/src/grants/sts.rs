//! STS calls for grant credentials: the two operations, bounded retries with backoff on
//! throttling, and the mapping of every failure to a typed `GRANT_STS_*` error that says
//! what to fix.
//!
//! The SDK's own retries are turned off for these clients: ours are bounded, logged
//! (each attempt's AWS request id goes into the grant's leaf) and shaped for STS, where
//! `Throttling` is common under bursts and everything else is a configuration problem
//! that retrying cannot fix.

use super::policy::CredentialMode;
use crate::aws::{host_error, HostAwsError};
use crate::error::ApiError;
use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::RequestId;
use aws_sdk_sts::primitives::DateTime;
use aws_sdk_sts::types::Tag;
use axum::http::StatusCode;
use rand::Rng;
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;

/// Attempts per credential request (the first plus three retries).
pub const MAX_ATTEMPTS: u32 = 4;
const BACKOFF_BASE_MS: u64 = 100;

const THROTTLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
];

/// Credentials as STS returned them. Held only long enough to answer the request.
pub struct Issued {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expiration: DateTime,
    pub request_id: Option<String>,
}

/// One failed STS call, reduced to what decides retrying and the error we report.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
    pub http_status: Option<u16>,
    /// No response arrived (connection refused, DNS, timeout, a garbled reply).
    pub transport: bool,
    /// The host itself could not call STS (no credentials, endpoint unreachable).
    pub host: Option<HostAwsError>,
}

impl Failure {
    fn throttled(&self) -> bool {
        self.code.as_deref().is_some_and(|c| THROTTLE_CODES.contains(&c))
    }

    fn retryable(&self) -> bool {
        // Credentials do not appear between attempts; a refused connection may.
        self.host != Some(HostAwsError::CredentialsMissing)
            && (self.transport || self.throttled() || self.http_status.is_some_and(|s| s >= 500))
    }

    /// A failure before any call was made (building a request).
    fn local(message: String) -> Self {
        Failure {
            code: None,
            message,
            request_id: None,
            http_status: None,
            transport: false,
            host: None,
        }
    }

    fn from_sdk<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
        e: SdkError<E, HttpResponse>,
    ) -> Self {
        let request_id = e.request_id().map(str::to_string);
        let http_status = e.raw_response().map(|r| r.status().as_u16());
        let host = HostAwsError::of(&e);
        // The SDK's Debug output (DisplayErrorContext) dumps whole responses, headers
        // included: the log gets the Display chain, the client what STS said.
        if !matches!(e, SdkError::ServiceError(_)) {
            tracing::warn!(host_error = ?host.map(HostAwsError::code), "STS call failed: {}", host_error::describe(&e));
        }
        match &e {
            SdkError::ServiceError(se) => Failure {
                code: se.err().code().map(str::to_string),
                message: se
                    .err()
                    .message()
                    .map_or_else(|| host_error::describe(&e), str::to_string),
                request_id,
                http_status,
                transport: false,
                host,
            },
            SdkError::ConstructionFailure(_) => Failure {
                code: None,
                message: host_error::describe(&e),
                request_id,
                http_status,
                transport: false,
                host,
            },
            _ => Failure {
                code: None,
                message: host_error::describe(&e),
                request_id,
                http_status,
                transport: true,
                host,
            },
        }
    }
}

/// The record of one attempt, for the audit leaf.
pub fn attempt_json(request_id: Option<&str>, failure: Option<&Failure>) -> Value {
    match failure {
        None => json!({ "aws_request_id": request_id, "ok": true }),
        Some(f) => json!({
            "aws_request_id": f.request_id,
            "ok": false,
            "error_code": f.code,
            "http_status": f.http_status,
            "transport": f.transport,
            "host_error": f.host.map(HostAwsError::code),
        }),
    }
}

/// The STS client for `region`, without the SDK's retries.
pub async fn client(app: &crate::App, region: &str) -> aws_sdk_sts::Client {
    let base = app.aws.sts(region).await;
    let conf = base.config().to_builder().retry_config(RetryConfig::disabled()).build();
    aws_sdk_sts::Client::from_conf(conf)
}

/// Calls `call` until it succeeds, fails for good, or [`MAX_ATTEMPTS`] are spent,
/// sleeping `100 ms · 2^n` (with jitter) between throttled or transient attempts.
pub async fn with_retry<F, Fut>(mut call: F) -> (Result<Issued, Failure>, Vec<Value>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Issued, Failure>>,
{
    let mut attempts = Vec::new();
    let mut n = 0;
    loop {
        n += 1;
        match call().await {
            Ok(issued) => {
                attempts.push(attempt_json(issued.request_id.as_deref(), None));
                return (Ok(issued), attempts);
            }
            Err(f) => {
                attempts.push(attempt_json(None, Some(&f)));
                if !f.retryable() || n >= MAX_ATTEMPTS {
                    return (Err(f), attempts);
                }
                let base = BACKOFF_BASE_MS << (n - 1);
                let jitter = rand::thread_rng().gen_range(0..=base / 2);
                tracing::info!(attempt = n, code = ?f.code, "STS call failed; retrying");
                tokio::time::sleep(Duration::from_millis(base + jitter)).await;
            }
        }
    }
}

fn issued(c: Option<&aws_sdk_sts::types::Credentials>, request_id: Option<&str>) -> Result<Issued, Failure> {
    let c = c.ok_or_else(|| Failure {
        request_id: request_id.map(str::to_string),
        transport: true,
        ..Failure::local("STS answered without credentials".into())
    })?;
    Ok(Issued {
        access_key_id: c.access_key_id.clone(),
        secret_access_key: c.secret_access_key.clone(),
        session_token: c.session_token.clone(),
        expiration: c.expiration,
        request_id: request_id.map(str::to_string),
    })
}

/// Everything one credential request sends to STS.
pub struct Call<'a> {
    pub role_arn: &'a str,
    pub session_name: &'a str,
    pub policy: &'a str,
    pub duration_seconds: i32,
    pub source_identity: &'a str,
    pub tags: &'a [(&'a str, &'a str)],
    /// `AssumeRole` only: the ceiling's External ID, sent on every call (issue 9, hole
    /// 1: without it any workspace naming another's role would get its credentials).
    pub external_id: Option<&'a str>,
}

/// `AssumeRole` with the host's default credential chain.
pub async fn assume_role(sts: &aws_sdk_sts::Client, call: &Call<'_>) -> Result<Issued, Failure> {
    let mut req = sts
        .assume_role()
        .role_arn(call.role_arn)
        .role_session_name(call.session_name)
        .policy(call.policy)
        .duration_seconds(call.duration_seconds)
        .source_identity(call.source_identity)
        .set_external_id(call.external_id.map(str::to_string));
    for (k, v) in call.tags {
        let tag = Tag::builder()
            .key(*k)
            .value(*v)
            .build()
            .map_err(|e| Failure::local(format!("building session tag {k}: {e}")))?;
        req = req.tags(tag);
    }
    let out = req.send().await.map_err(Failure::from_sdk)?;
    issued(out.credentials(), out.request_id())
}

/// `AssumeRoleWithWebIdentity` with an enclave-minted grant-path token. Source identity
/// and session tags cannot be passed here: STS takes the tags from the token's
/// `https://aws.amazon.com/tags` claim, which the enclave fills with the workspace,
/// agent and grant (`sealgate:grant`); the token's subject is `ws:<ws>:grant:<grant>`,
/// a namespace `/v1/tokens` can never produce.
pub async fn assume_role_with_web_identity(
    sts: &aws_sdk_sts::Client,
    call: &Call<'_>,
    token: &str,
) -> Result<Issued, Failure> {
    let out = sts
        .assume_role_with_web_identity()
        .role_arn(call.role_arn)
        .role_session_name(call.session_name)
        .policy(call.policy)
        .duration_seconds(call.duration_seconds)
        .web_identity_token(token)
        .send()
        .await
        .map_err(Failure::from_sdk)?;
    issued(out.credentials(), out.request_id())
}

/// What the error message needs to point at the fix.
pub struct Context<'a> {
    pub mode: &'a CredentialMode,
    pub workspace: &'a str,
    pub role_arn: &'a str,
    pub account_id: &'a str,
    pub sts_region: &'a str,
    pub issuer: &'a str,
    pub attempts: usize,
    /// The host's `AWS_ENDPOINT_URL`, if set (for "cannot reach AWS" messages).
    pub endpoint: Option<&'a str>,
}

/// The typed error for a failed credential request.
pub fn to_api(f: &Failure, cx: &Context<'_>) -> ApiError {
    let (status, typed, message) = to_parts(f, cx);
    ApiError::coded(status, typed, message)
}

/// [`to_api`]'s status, code and message, for callers that add to the message (the
/// role probe names the External ID condition).
pub fn to_parts(f: &Failure, cx: &Context<'_>) -> (StatusCode, &'static str, String) {
    if let Some(h) = f.host {
        return (StatusCode::SERVICE_UNAVAILABLE, h.code(), h.message("STS", cx.endpoint));
    }
    let code = f.code.as_deref().unwrap_or("");
    let aws = format!(
        "(STS said {}: {}{})",
        if code.is_empty() { "error" } else { code },
        f.message,
        f.request_id
            .as_deref()
            .map_or_else(String::new, |r| format!("; request id {r}"))
    );
    let web = *cx.mode == CredentialMode::WebIdentity;
    let (status, typed, fix) = if f.transport {
        (
            StatusCode::BAD_GATEWAY,
            "GRANT_STS_UNAVAILABLE",
            format!(
                "STS in {} could not be reached after {} attempts: check the host's network and its AWS \
                 endpoint settings (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_STS); retry later",
                cx.sts_region, cx.attempts
            ),
        )
    } else if f.throttled() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "GRANT_STS_THROTTLED",
            format!(
                "STS kept throttling after {} attempts: retry later, or spread credential requests out",
                cx.attempts
            ),
        )
    } else {
        match code {
            "AccessDenied" | "AccessDeniedException" if web => (
                StatusCode::FORBIDDEN,
                "GRANT_STS_ACCESS_DENIED",
                format!(
                    "STS refused to let the web identity assume {}: the role's trust policy must allow \
                     sts:AssumeRoleWithWebIdentity and sts:TagSession (every sealgate token carries session tags in \
                     its https://aws.amazon.com/tags claim, and STS refuses a tagged token without sts:TagSession) \
                     for the IAM OIDC provider of {} in account {} (audience sts.amazonaws.com, subject StringLike \
                     ws:{}:grant:* — GET /v1/workspaces/{}/aws/accounts/{}/policies gives the document), and the \
                     role must allow the session policy's actions",
                    cx.role_arn, cx.issuer, cx.account_id, cx.workspace, cx.workspace, cx.account_id
                ),
            ),
            "AccessDenied" | "AccessDeniedException" => (
                StatusCode::FORBIDDEN,
                "GRANT_STS_ACCESS_DENIED",
                format!(
                    "STS refused to let the host assume {}: the role's trust policy must trust the host's \
                     AWS principal with sts:AssumeRole, sts:TagSession and sts:SetSourceIdentity under the \
                     condition StringEquals sts:ExternalId (GET /v1/workspaces/{}/aws/accounts/{}/policies \
                     gives the exact trust policy), and the host's identity must be allowed to call them",
                    cx.role_arn, cx.workspace, cx.account_id
                ),
            ),
            "InvalidClientTokenId" | "SignatureDoesNotMatch" | "UnrecognizedClientException" => (
                StatusCode::FORBIDDEN,
                "GRANT_STS_ACCESS_DENIED",
                "STS does not accept the host's own AWS credentials: fix the host's credential chain \
                 (environment, profile or instance role)"
                    .to_string(),
            ),
            "InvalidIdentityToken"
            | "InvalidIdentityTokenException"
            | "IDPRejectedClaim"
            | "IDPRejectedClaimException" => (
                StatusCode::FORBIDDEN,
                "GRANT_STS_INVALID_TOKEN",
                format!(
                    "STS rejected the enclave-signed token: account {} must have an IAM OIDC provider for \
                     {} with client id sts.amazonaws.com, and {}/.well-known/jwks.json must be reachable \
                     from AWS and serve the current signing key",
                    cx.account_id, cx.issuer, cx.issuer
                ),
            ),
            "IDPCommunicationError" | "IDPCommunicationErrorException" => (
                StatusCode::BAD_GATEWAY,
                "GRANT_STS_INVALID_TOKEN",
                format!(
                    "STS could not fetch the issuer's keys: {}/.well-known/jwks.json must be reachable from \
                     AWS over HTTPS",
                    cx.issuer
                ),
            ),
            "ExpiredToken" | "ExpiredTokenException" if web => (
                StatusCode::FORBIDDEN,
                "GRANT_STS_EXPIRED_TOKEN",
                "STS says the enclave-signed token had expired: the host's or the enclave's clock is off \
                 (check NTP); retry once fixed"
                    .to_string(),
            ),
            "ExpiredToken" | "ExpiredTokenException" => (
                StatusCode::FORBIDDEN,
                "GRANT_STS_EXPIRED_TOKEN",
                "the host's own AWS session credentials have expired: refresh them (AWS_SESSION_TOKEN, \
                 profile or instance role) and retry"
                    .to_string(),
            ),
            "RegionDisabledException" | "RegionDisabled" | "InvalidRegion" => (
                StatusCode::FORBIDDEN,
                "GRANT_STS_REGION",
                format!(
                    "STS is not active in region {} for account {}: activate it in the account's IAM \
                     settings, or set the ceiling's sts_region to an active region",
                    cx.sts_region, cx.account_id
                ),
            ),
            "MalformedPolicyDocument"
            | "MalformedPolicyDocumentException"
            | "PackedPolicyTooLarge"
            | "PackedPolicyTooLargeException" => (
                StatusCode::BAD_REQUEST,
                "GRANT_STS_POLICY",
                "STS refused the session policy built from this grant: request fewer or broader actions and \
                 resources"
                    .to_string(),
            ),
            "ValidationError" if f.message.contains("DurationSeconds") || f.message.contains("MaxSessionDuration") => (
                StatusCode::CONFLICT,
                "GRANT_STS_VALIDATION",
                format!(
                    "STS refused the session length: lower the ceiling's max_ttl_seconds or raise the \
                     MaxSessionDuration of {}",
                    cx.role_arn
                ),
            ),
            "ValidationError" => (
                StatusCode::CONFLICT,
                "GRANT_STS_VALIDATION",
                "STS refused a parameter of the request; check the ceiling's role_arn".to_string(),
            ),
            _ => (
                StatusCode::BAD_GATEWAY,
                "GRANT_STS_ERROR",
                "STS failed the request".to_string(),
            ),
        }
    };
    (status, typed, format!("{fix} {aws}"))
}
