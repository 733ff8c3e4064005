//! The log's side of `add-checkpoint`: submit a signed checkpoint with a consistency
//! proof to a witness and get its cosignature lines back, or a typed refusal per the
//! spec's status codes (a 409 carries the size the witness recorded, so the caller can
//! send the right proof and retry).
//!
//! The lines are returned as the witness sent them; check them with
//! [`sealgate_shared::cosignature::CosignerKey::verify_line`] before attaching them
//! to a checkpoint (a witness's reply is not trusted either).

use super::add_checkpoint::{encode_request, parse_decimal};
use super::server::SIZE_CONTENT_TYPE;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use sealgate_shared::merkle::Hash;
use sealgate_shared::note::SIG_PREFIX;
use std::time::Duration;

/// The whole exchange: connect, TLS, request, response.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// A response is a few signature lines; anything much larger is not a witness.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// 400: malformed request, or an old size larger than the checkpoint's.
    #[error("the witness refused the request (400): {0}")]
    BadRequest(String),
    /// 403: the witness does not accept the log's signature.
    #[error("the witness refused the log's signature (403): {0}")]
    Forbidden(String),
    /// 404: the witness is not configured for this log's origin.
    #[error("the witness does not know this log (404): {0}")]
    UnknownLog(String),
    /// 409: the old size was not the witness's; this is the size it recorded.
    #[error("the witness has recorded size {0} for this log (409)")]
    Conflict(u64),
    /// 422: the checkpoint is inconsistent with what the witness recorded (a bad
    /// proof, or a fork).
    #[error("the witness found the checkpoint inconsistent (422): {0}")]
    Inconsistent(String),
    #[error("the witness answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("malformed response from the witness: {0}")]
    BadResponse(String),
    #[error("cannot reach the witness: {0}")]
    Transport(String),
}

/// A witness client; keeps connections alive between submissions (the spec asks
/// clients to).
#[derive(Clone)]
pub struct Client {
    http: HyperClient<crate::https_client::Connector, Full<Bytes>>,
    /// The witness's submission prefix, e.g. `https://witness.example/`.
    prefix: String,
}

impl Client {
    /// A client for the witness at `prefix` (http or https; TLS trusts the system's
    /// roots).
    pub fn new(prefix: &str) -> Result<Self, WitnessError> {
        let https = crate::https_client::connector().map_err(WitnessError::Transport)?;
        Ok(Self {
            http: HyperClient::builder(TokioExecutor::new()).build(https),
            prefix: prefix.trim_end_matches('/').to_string(),
        })
    }

    /// Submits `signed_note` (a checkpoint with the log's signature) with the
    /// consistency proof from `old_size`, the size the witness last recorded (0 the
    /// first time), and returns its cosignature lines, without their newlines.
    pub async fn add_checkpoint(
        &self,
        old_size: u64,
        proof: &[Hash],
        signed_note: &str,
    ) -> Result<Vec<String>, WitnessError> {
        tokio::time::timeout(TIMEOUT, self.exchange(old_size, proof, signed_note))
            .await
            .unwrap_or_else(|_| {
                Err(WitnessError::Transport(format!(
                    "no answer within {} s",
                    TIMEOUT.as_secs()
                )))
            })
    }

    async fn exchange(&self, old_size: u64, proof: &[Hash], signed_note: &str) -> Result<Vec<String>, WitnessError> {
        let transport = |e: &dyn std::fmt::Display| WitnessError::Transport(e.to_string());
        let req = hyper::Request::post(format!("{}/add-checkpoint", self.prefix))
            .header("content-type", "text/plain; charset=utf-8")
            .header("user-agent", "sealgate")
            .body(Full::new(Bytes::from(encode_request(old_size, proof, signed_note))))
            .map_err(|e| transport(&e))?;
        let resp = self.http.request(req).await.map_err(|e| transport(&e))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| WitnessError::BadResponse(format!("reading the body: {e}")))?
            .to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        interpret(status, &content_type, &body)
    }
}

/// Turns a witness's answer into cosignature lines or a typed refusal.
fn interpret(status: u16, content_type: &str, body: &str) -> Result<Vec<String>, WitnessError> {
    let message = || body.trim().chars().take(500).collect::<String>();
    match status {
        200 => {
            if !body.ends_with('\n') {
                return Err(WitnessError::BadResponse("the body must end with a newline".into()));
            }
            let lines: Vec<String> = body.lines().map(str::to_string).collect();
            if lines.is_empty() || lines.iter().any(|l| !l.starts_with(SIG_PREFIX)) {
                return Err(WitnessError::BadResponse(
                    "the body must be one or more signature lines".into(),
                ));
            }
            Ok(lines)
        }
        400 => Err(WitnessError::BadRequest(message())),
        403 => Err(WitnessError::Forbidden(message())),
        404 => Err(WitnessError::UnknownLog(message())),
        409 => {
            if content_type.split(';').next().map(str::trim) != Some(SIZE_CONTENT_TYPE) {
                return Err(WitnessError::BadResponse(format!(
                    "a 409 must be {SIZE_CONTENT_TYPE}, got {content_type:?}"
                )));
            }
            body.strip_suffix('\n')
                .and_then(parse_decimal)
                .map(WitnessError::Conflict)
                .map_or_else(
                    || {
                        Err(WitnessError::BadResponse(
                            "a 409's body must be a decimal size and a newline".into(),
                        ))
                    },
                    Err,
                )
        }
        422 => Err(WitnessError::Inconsistent(message())),
        _ => Err(WitnessError::Status {
            status,
            body: message(),
        }),
    }
}

/// One submission with a fresh client (see [`Client::add_checkpoint`]); keep a
/// [`Client`] instead when submitting repeatedly.
pub async fn add_checkpoint(
    url: &str,
    old_size: u64,
    proof: &[Hash],
    signed_note: &str,
) -> Result<Vec<String>, WitnessError> {
    Client::new(url)?.add_checkpoint(old_size, proof, signed_note).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_typed() {
        let line = "\u{2014} w.example abc=";
        assert_eq!(
            interpret(200, "text/plain", &format!("{line}\n{line}\n")),
            Ok(vec![line.to_string(); 2])
        );
        for bad in ["", "\n", "hello\n", line] {
            assert!(
                matches!(interpret(200, "text/plain", bad), Err(WitnessError::BadResponse(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            interpret(409, SIZE_CONTENT_TYPE, "42\n"),
            Err(WitnessError::Conflict(42))
        );
        assert!(matches!(
            interpret(409, "text/plain", "42\n"),
            Err(WitnessError::BadResponse(_))
        ));
        assert!(matches!(
            interpret(409, SIZE_CONTENT_TYPE, "042\n"),
            Err(WitnessError::BadResponse(_))
        ));
        assert!(matches!(
            interpret(409, SIZE_CONTENT_TYPE, "42"),
            Err(WitnessError::BadResponse(_))
        ));
        assert!(matches!(interpret(400, "", "x"), Err(WitnessError::BadRequest(_))));
        assert!(matches!(interpret(403, "", "x"), Err(WitnessError::Forbidden(_))));
        assert!(matches!(interpret(404, "", "x"), Err(WitnessError::UnknownLog(_))));
        assert!(matches!(interpret(422, "", "x"), Err(WitnessError::Inconsistent(_))));
        assert!(matches!(
            interpret(503, "", "x"),
            Err(WitnessError::Status { status: 503, .. })
        ));
    }
}
