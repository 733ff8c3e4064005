//! The host's one error type and its single mapping to HTTP (status, code, message).
//! Handlers return `Result<_, ApiError>`; nothing else decides a status code.

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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(code, "{self}");
        }
        let body = Json(json!({ "error": { "code": code, "message": self.to_string() } }));
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
                E::NotReady | E::Backpressure => {
                    ApiError::EnclaveUnavailable(format!("enclave busy or restoring: {}", w.message))
                }
                E::Locked | E::UnsealRejected => {
                    ApiError::EnclaveUnavailable(format!("enclave not unsealed yet: {}", w.message))
                }
                E::RestoreRejected | E::ConfigMismatch | E::Version => ApiError::LogIntegrity(w.message),
                E::Internal => ApiError::Internal(format!("enclave: {}", w.message)),
            },
            other => ApiError::EnclaveUnavailable(other.to_string()),
        }
    }
}
