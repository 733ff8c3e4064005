//! Every call sealgate makes into a customer account goes through [`CallLog::run`]: it
//! puts the call under the configured timeout, retries throttling and transient 5xx
//! with exponential back-off (the SDK's own retries are switched off on BYO clients so
//! that *each* attempt is visible and recorded), and writes down one [`CallRecord`] per
//! attempt with AWS's request id, so the customer can match every row against their
//! CloudTrail. The records are committed by `audit::commit` together with whatever the
//! operation changed.

use super::config::settings;
use crate::aws::{host_error, HostAwsError};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::RequestId;
use rand::Rng;
use serde::Serialize;
use std::future::Future;
use std::time::Duration;

/// One attempt of one AWS call, as the BYO audit stores it.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// `service:Action`, e.g. `sts:AssumeRole`, `s3:HeadObject` (CloudTrail's naming).
    pub event_type: &'static str,
    pub aws_request_id: Option<String>,
    pub s3_key: Option<String>,
    pub bytes_read: Option<u64>,
    /// `ok`, `error` or `timeout`.
    pub outcome: &'static str,
    /// AWS's error code as received (`AccessDenied`, `Throttling`, …), `HTTP <status>`
    /// when the response had none (HEAD requests carry no body), or `Timeout`.
    pub error_code: Option<String>,
    /// Unix milliseconds when the attempt started.
    pub ts: i64,
}

/// What went wrong with one AWS call, independent of the service.
#[derive(Debug, Clone, Default)]
pub struct Failure {
    pub timeout: bool,
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
    /// The bucket's real region when S3 said so (`x-amz-bucket-region`, or `<Region>` in
    /// an `AuthorizationHeaderMalformed` / `PermanentRedirect` body).
    pub bucket_region: Option<String>,
    /// The host itself could not make the call (no credentials, endpoint unreachable):
    /// nothing reached the customer's account.
    pub host: Option<HostAwsError>,
}

const THROTTLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "LimitExceededException",
];

impl Failure {
    pub fn throttled(&self) -> bool {
        self.code.as_deref().is_some_and(|c| THROTTLE_CODES.contains(&c))
            || self.status == Some(429)
            || (self.status == Some(503) && self.code.is_none())
    }

    /// A 5xx worth another attempt.
    pub fn transient(&self) -> bool {
        self.status.is_some_and(|s| (500..600).contains(&s))
    }

    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// The code written into the audit row.
    pub fn audit_code(&self) -> String {
        match (&self.code, self.status, self.timeout) {
            (_, _, true) => "Timeout".into(),
            (Some(c), _, _) => c.clone(),
            (None, Some(s), _) => format!("HTTP {s}"),
            (None, None, _) => "TransportError".into(),
        }
    }

    /// `Code (HTTP 403): message` for error messages shown to the customer.
    pub fn describe(&self) -> String {
        if self.timeout {
            return "no answer within the time limit".into();
        }
        let mut s = self.audit_code();
        if let (Some(st), Some(_)) = (self.status, &self.code) {
            s.push_str(&format!(" (HTTP {st})"));
        }
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        if let Some(id) = &self.request_id {
            s.push_str(&format!(" [request id {id}]"));
        }
        s
    }

    pub fn timed_out() -> Self {
        Failure {
            timeout: true,
            ..Default::default()
        }
    }

    /// Reads what an SDK error tells about the call, for any service.
    pub fn from_sdk<E>(e: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let mut f = Failure {
            request_id: e.request_id().map(str::to_string),
            host: HostAwsError::of(e),
            ..Default::default()
        };
        if let Some(h) = f.host {
            // The client gets the fix; the operator's log gets the SDK's reason.
            tracing::warn!(
                code = h.code(),
                "BYO AWS call failed on the host: {}",
                host_error::describe(e)
            );
        }
        match e {
            SdkError::TimeoutError(_) => f.timeout = true,
            SdkError::DispatchFailure(d) if d.is_timeout() => f.timeout = true,
            _ => {}
        }
        if let Some(raw) = e.raw_response() {
            f.status = Some(raw.status().as_u16());
            f.bucket_region = raw.headers().get("x-amz-bucket-region").map(str::to_string);
            if f.bucket_region.is_none() {
                f.bucket_region = raw.body().bytes().and_then(region_in_body);
            }
        }
        f.code = e.code().map(str::to_string).filter(|c| !c.is_empty());
        // Never the SDK's Debug output (DisplayErrorContext): it dumps whole responses,
        // headers included.
        f.message = match (e.message(), e) {
            (Some(m), _) => m.to_string(),
            (None, SdkError::ServiceError(_) | SdkError::ResponseError(_)) => String::new(),
            (None, other) => host_error::describe(other),
        };
        f
    }
}

/// `<Region>eu-west-1</Region>` in an S3 error body.
fn region_in_body(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Region>")? + "<Region>".len();
    let len = text[start..].find("</Region>")?;
    let region = text[start..start + len].trim();
    (!region.is_empty() && region.len() <= 32).then(|| region.to_string())
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The calls of one operation, in order.
#[derive(Debug, Default)]
pub struct CallLog {
    pub records: Vec<CallRecord>,
}

impl CallLog {
    /// Runs one AWS call: every attempt under the time limit, throttling and transient
    /// 5xx retried with jittered exponential back-off up to the configured attempts,
    /// each attempt recorded. A timed-out attempt is not retried: the limit bounds how
    /// long a customer account can hold a request.
    pub async fn run<T, E, F, Fut>(
        &mut self,
        event_type: &'static str,
        s3_key: Option<&str>,
        mut call: F,
    ) -> Result<T, Failure>
    where
        T: RequestId,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        let s = settings();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let ts = now_millis();
            let result = match tokio::time::timeout(s.call_timeout, call()).await {
                Ok(Ok(out)) => Ok(out),
                Ok(Err(e)) => Err(Failure::from_sdk(&e)),
                Err(_) => Err(Failure::timed_out()),
            };
            let mut record = CallRecord {
                event_type,
                aws_request_id: None,
                s3_key: s3_key.map(str::to_string),
                bytes_read: None,
                outcome: "ok",
                error_code: None,
                ts,
            };
            match result {
                Ok(out) => {
                    record.aws_request_id = out.request_id().map(str::to_string);
                    self.records.push(record);
                    return Ok(out);
                }
                Err(f) => {
                    record.aws_request_id = f.request_id.clone();
                    record.outcome = if f.timeout { "timeout" } else { "error" };
                    record.error_code = Some(f.audit_code());
                    self.records.push(record);
                    let retry = !f.timeout && (f.throttled() || f.transient());
                    if !retry || attempt >= s.max_attempts {
                        return Err(f);
                    }
                    tokio::time::sleep(backoff(s.backoff, attempt)).await;
                }
            }
        }
    }

    /// Amends the last record (a streamed body: the bytes read, or how the read ended).
    pub fn amend_last(&mut self, bytes_read: u64, error: Option<&str>) {
        if let Some(r) = self.records.last_mut() {
            r.bytes_read = Some(bytes_read);
            if let Some(code) = error {
                r.outcome = if code == "Timeout" { "timeout" } else { "error" };
                r.error_code = Some(code.to_string());
            }
        }
    }
}

/// `base · 2^(attempt-1)`, capped at 5 s, with full jitter in its upper half.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << (attempt - 1).min(10));
    let capped = exp.min(Duration::from_secs(5));
    let half = capped / 2;
    half + half.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_from_error_body() {
        let body =
            b"<Error><Code>AuthorizationHeaderMalformed</Code><Message>m</Message><Region>eu-west-1</Region></Error>";
        assert_eq!(region_in_body(body).as_deref(), Some("eu-west-1"));
        assert_eq!(region_in_body(b"<Error><Code>X</Code></Error>"), None);
        assert_eq!(region_in_body(b"<Region></Region>"), None);
    }

    #[test]
    fn throttling_is_recognised() {
        let f = |code: Option<&str>, status| Failure {
            code: code.map(str::to_string),
            status: Some(status),
            ..Default::default()
        };
        assert!(f(Some("Throttling"), 400).throttled());
        assert!(f(Some("SlowDown"), 503).throttled());
        assert!(f(None, 503).throttled(), "HEAD SlowDown has no body");
        assert!(f(None, 429).throttled());
        assert!(!f(Some("AccessDenied"), 403).throttled());
        assert!(f(Some("InternalError"), 500).transient());
        assert!(!f(Some("AccessDenied"), 403).transient());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        assert!(backoff(base, 1) <= Duration::from_millis(100));
        assert!(backoff(base, 3) >= Duration::from_millis(200));
        assert!(backoff(base, 30) <= Duration::from_secs(5));
    }
}
