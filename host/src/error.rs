//! The host's one error type and its single mapping to HTTP (status, code, message).
//! Handlers return `Result<_, ApiError>`; nothing else decides a status code.
//!
//! [`ApiError::Internal`] (every SQLite error among them) is logged in full with the
//! request id and answered with a generic message carrying the same id: the text of a
//! database error names tables, columns and constraint details and is nobody's business
//! outside the host.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("request body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    EnclaveUnavailable(String),
    #[error("{0}")]
    LogIntegrity(String),
    #[error("{0}")]
    Internal(String),
    /// 429 `RATE_LIMITED` with `Retry-After` (see `crate::limits`).
    #[error("{message}")]
    RateLimited { retry_after_secs: u64, message: String },
    /// A domain error with its own status and typed code (`BYO_*`, `GRANT_*`, …).
    #[error("{message}")]
    Coded {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code: "INVALID_REQUEST",
            message: message.into(),
        }
    }

    pub fn bad_code(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn coded(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Coded {
            status,
            code,
            message: message.into(),
        }
    }

    /// The typed code and the message a client would see (for callers that report an
    /// error inside a successful answer, e.g. a hard revoke that fell back to soft).
    pub fn code_and_message(&self) -> (&'static str, String) {
        let (_, code) = self.status_and_code();
        match self {
            ApiError::Internal(_) => (code, INTERNAL_MESSAGE.to_string()),
            other => (code, other.to_string()),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_LARGE"),
            ApiError::EnclaveUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "ENCLAVE_UNAVAILABLE"),
            ApiError::LogIntegrity(_) => (StatusCode::SERVICE_UNAVAILABLE, "LOG_INTEGRITY_FAILURE"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            ApiError::Coded { status, code, .. } => (*status, code),
        }
    }
}

/// What a client reads instead of an internal error's details.
pub const INTERNAL_MESSAGE: &str = "internal error: the request was not completed; give the operator the request id \
     so they can find the cause in the host's log";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let request_id = crate::api::request_id::current();
        let rid = request_id.as_deref().unwrap_or("-");
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(request_id = rid, code, "{detail}");
                INTERNAL_MESSAGE.to_string()
            }
            other => {
                if status.is_server_error() {
                    tracing::warn!(request_id = rid, code, "{other}");
                }
                other.to_string()
            }
        };
        let mut error = json!({ "code": code, "message": message });
        if let Some(id) = request_id {
            error["request_id"] = json!(id);
        }
        let body = Json(json!({ "error": error }));
        if let ApiError::RateLimited { retry_after_secs, .. } = &self {
            return (status, [(header::RETRY_AFTER, retry_after_secs.to_string())], body).into_response();
        }
        (status, body).into_response()
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::Internal(format!("database: {e}"))
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<crate::enclave_client::ClientError> for ApiError {
    fn from(e: crate::enclave_client::ClientError) -> Self {
        use crate::enclave_client::ClientError as C;
        use sealgate_shared::protocol::ErrorCode as E;
        match e {
            C::Enclave(w) => match w.code {
                E::BadRequest => ApiError::bad(w.message),
                E::Forbidden => ApiError::Forbidden(w.message),
                E::NotReady => ApiError::EnclaveUnavailable(format!("enclave busy or restoring: {}", w.message)),
                // The host's own acknowledgements are behind (`Ledger::call` wakes the
                // supervisor, whose sync stores what the enclave holds and acks it).
                E::Backpressure => ApiError::coded(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "LOG_BACKPRESSURE",
                    format!(
                        "the enclave holds as many log leaves awaiting the host's acknowledgement as it can, \
                         and writes nothing more until the host has stored and acknowledged them; the host \
                         catches up on its own, so retry in a few seconds (enclave: {})",
                        w.message
                    ),
                ),
                E::Locked | E::UnsealRejected | E::Kms => {
                    ApiError::EnclaveUnavailable(format!("enclave not unsealed yet: {}", w.message))
                }
                E::RestoreRejected | E::ConfigMismatch | E::Version => ApiError::LogIntegrity(w.message),
                // Answers only `Witnessed`, which no request handler sends; mapped all the same.
                E::WitnessRejected => ApiError::coded(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "WITNESS_QUORUM_UNAVAILABLE",
                    format!("the enclave refused the witnesses' cosignatures: {}", w.message),
                ),
                E::Internal => ApiError::Internal(format!("enclave: {}", w.message)),
            },
            other => ApiError::EnclaveUnavailable(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(e: ApiError, request_id: &str) -> (StatusCode, serde_json::Value) {
        let resp = crate::api::request_id::scope(request_id.to_string(), async { e.into_response() }).await;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// Hole 9: a real SQLite error (its text names the table) must not reach the client.
    #[tokio::test]
    async fn database_error_text_never_reaches_the_client() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let e = c
            .execute("INSERT INTO secret_table_xyz (col_abc) VALUES (1)", [])
            .unwrap_err();
        assert!(e.to_string().contains("secret_table_xyz"), "{e}");
        let (status, body) = body_of(ApiError::from(e), "req-42").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let text = body.to_string();
        assert!(
            !text.contains("secret_table_xyz") && !text.contains("database"),
            "{text}"
        );
        assert_eq!(body["error"]["code"], "INTERNAL");
        assert_eq!(body["error"]["message"], INTERNAL_MESSAGE);
        assert_eq!(body["error"]["request_id"], "req-42");
    }

    /// Issue 11: an enclave whose unacknowledged queue is full answers `Backpressure`;
    /// the client gets a 503 with its own code and a message that says to retry.
    #[tokio::test]
    async fn enclave_backpressure_is_a_503_with_its_own_code() {
        use sealgate_shared::protocol::{ErrorCode, WireError};
        let e = ApiError::from(crate::enclave_client::ClientError::Enclave(WireError::new(
            ErrorCode::Backpressure,
            "4097 unacknowledged leaves (67125000 bytes) fill the enclave's queue",
        )));
        let (status, body) = body_of(e, "r3").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "LOG_BACKPRESSURE");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("retry") && message.contains("67125000 bytes"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn internal_messages_are_generic_and_client_errors_keep_theirs() {
        let (_, body) = body_of(ApiError::Internal("stored role \"x\" is unknown".into()), "r").await;
        assert_eq!(body["error"]["message"], INTERNAL_MESSAGE);
        let (_, body) = body_of(
            ApiError::from(crate::db::DbError::Batch("UNIQUE constraint failed: t.c".into())),
            "r",
        )
        .await;
        assert!(!body.to_string().contains("UNIQUE"), "{body}");
        let (status, body) = body_of(
            ApiError::bad_code("INVALID_NAME", "name must be 1-128 characters"),
            "r2",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["message"], "name must be 1-128 characters");
        assert_eq!(body["error"]["request_id"], "r2");
    }
}
