//! "The host cannot talk to AWS at all": told apart from everything AWS itself answers.
//!
//! Without credentials the SDK fails before sending anything, and with an endpoint
//! that refuses connections nothing arrives; either way the error says nothing about
//! the caller's role, bucket or trust policy, and advice about those (what a
//! `BYO_ASSUME_ROLE_FAILED` or `GRANT_STS_*` message gives) sends the reader to the
//! wrong fix. So every AWS call site asks [`HostAwsError::of`] first and, when it
//! matches, answers 503 with one of two codes whose message names the host setting to
//! change and points at `docs/local-aws.md` for running against an emulator.
//!
//! Classified from the SDK's error kinds, never from text: a `DispatchFailure` whose
//! source chain holds a [`CredentialsError`] (identity resolution runs before any
//! connection), or whose connector error is an I/O error (refused, reset, DNS).
//! Timeouts are not here: a slow endpoint is transient, and each caller already has
//! its own answer for it.

use crate::error::ApiError;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_sts::error::SdkError;
use axum::http::StatusCode;
use std::error::Error;

/// Why the host could not make an AWS call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAwsError {
    /// The default credential chain found nothing (or failed to load what it found).
    CredentialsMissing,
    /// No connection to the endpoint (refused, reset, name not resolved).
    Unreachable,
}

/// Where the recipe for a local emulator is.
pub const LOCAL_AWS_DOC: &str = "docs/local-aws.md";

impl HostAwsError {
    /// The host-side failure `e` is, if it is one.
    pub fn of<E, R>(e: &SdkError<E, R>) -> Option<Self> {
        let SdkError::DispatchFailure(d) = e else {
            return None;
        };
        let mut source: Option<&(dyn Error + 'static)> = d.as_connector_error().map(|c| c as _);
        while let Some(s) = source {
            if s.downcast_ref::<CredentialsError>().is_some() {
                return Some(HostAwsError::CredentialsMissing);
            }
            source = s.source();
        }
        d.is_io().then_some(HostAwsError::Unreachable)
    }

    pub fn code(self) -> &'static str {
        match self {
            HostAwsError::CredentialsMissing => "AWS_CREDENTIALS_MISSING",
            HostAwsError::Unreachable => "AWS_UNREACHABLE",
        }
    }

    /// What is wrong and how to fix it, for `service` (`STS`, `IAM`, `S3`, …);
    /// `endpoint` is the configured `AWS_ENDPOINT_URL` when the caller knows it.
    pub fn message(self, service: &str, endpoint: Option<&str>) -> String {
        match self {
            HostAwsError::CredentialsMissing => format!(
                "the sealgate host has no usable AWS credentials, so it could not call {service} (nothing was sent \
                 to AWS). This is the host's configuration, not the request: the SDK's default chain (\
                 AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile, web identity, instance role) gave none; the \
                 host's log has its reason. Give the host credentials (in production an instance role), or to try \
                 sealgate locally point it at an AWS emulator with AWS_ENDPOINT_URL and dummy credentials: \
                 {LOCAL_AWS_DOC} has the recipe, creating a role and a bucket included"
            ),
            HostAwsError::Unreachable => format!(
                "the sealgate host could not connect to AWS {service} (connection refused, reset or name not \
                 resolved{}), so nothing reached AWS. This is the host's configuration or network, not the \
                 request: check AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_{}) and that the endpoint is up; to run \
                 against a local emulator see {LOCAL_AWS_DOC}",
                endpoint.map_or_else(String::new, |e| format!("; AWS_ENDPOINT_URL is {e}")),
                service.to_ascii_uppercase()
            ),
        }
    }

    /// The API error: 503, since the host is misconfigured, not the caller.
    pub fn to_api(self, service: &str, endpoint: Option<&str>) -> ApiError {
        ApiError::coded(
            StatusCode::SERVICE_UNAVAILABLE,
            self.code(),
            self.message(service, endpoint),
        )
    }
}

/// An SDK error as text for a message or a log line: each error in the source chain by
/// its `Display`, never its `Debug` (which dumps whole responses, headers included),
/// and at most `MAX` characters.
pub fn describe<E: Error + 'static, R: std::fmt::Debug + 'static>(e: &SdkError<E, R>) -> String {
    const MAX: usize = 300;
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    let mut text = parts.join(": ");
    if text.chars().count() > MAX {
        text = text.chars().take(MAX).collect::<String>() + "…";
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sts::config::http::HttpResponse;
    use aws_sdk_sts::error::ConnectorError;

    type E = SdkError<aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityError, HttpResponse>;

    #[test]
    fn credential_errors_and_io_are_the_hosts() {
        let missing: E =
            SdkError::dispatch_failure(ConnectorError::other(CredentialsError::not_loaded("none").into(), None));
        assert_eq!(HostAwsError::of(&missing), Some(HostAwsError::CredentialsMissing));
        let refused: E = SdkError::dispatch_failure(ConnectorError::io(
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused").into(),
        ));
        assert_eq!(HostAwsError::of(&refused), Some(HostAwsError::Unreachable));
        let timeout: E = SdkError::dispatch_failure(ConnectorError::timeout("slow".into()));
        assert_eq!(HostAwsError::of(&timeout), None);
        let text = describe(&refused);
        assert!(!text.contains("ConnectorError") && !text.contains('{'), "{text}");
    }
}
