//! BYO errors: the project's `{error: {code, message}}` shape, plus extra members inside
//! `error` where the customer needs more than a sentence to act (`field` for every
//! validation error, `artifact_ids` when a disconnect is refused, `next_steps` …).
//! Everything without extras is a plain [`ApiError`] and maps exactly as elsewhere.

use crate::error::ApiError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

#[derive(Debug)]
pub enum ByoError {
    Api(ApiError),
    Detailed {
        status: StatusCode,
        code: &'static str,
        message: String,
        extra: Map<String, Value>,
    },
}

pub type ByoResult<T> = Result<T, ByoError>;

impl ByoError {
    /// A coded error with extra members (`extra` must be a JSON object).
    pub fn detailed(status: StatusCode, code: &'static str, message: impl Into<String>, extra: Value) -> Self {
        let extra = match extra {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        ByoError::Detailed {
            status,
            code,
            message: message.into(),
            extra,
        }
    }

    /// 400 for one invalid input field, named in `error.field`.
    pub fn invalid(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        Self::detailed(StatusCode::BAD_REQUEST, code, message, json!({ "field": field }))
    }

    /// 400 `BYO_INVALID_FIELD` for fields without a code of their own.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::invalid("BYO_INVALID_FIELD", field, message)
    }

    pub fn coded(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ByoError::Api(ApiError::coded(status, code, message))
    }
}

impl From<ApiError> for ByoError {
    fn from(e: ApiError) -> Self {
        ByoError::Api(e)
    }
}

impl From<crate::db::DbError> for ByoError {
    fn from(e: crate::db::DbError) -> Self {
        ByoError::Api(e.into())
    }
}

impl From<rusqlite::Error> for ByoError {
    fn from(e: rusqlite::Error) -> Self {
        ByoError::Api(e.into())
    }
}

impl IntoResponse for ByoError {
    fn into_response(self) -> Response {
        match self {
            ByoError::Api(e) => e.into_response(),
            ByoError::Detailed {
                status,
                code,
                message,
                mut extra,
            } => {
                extra.insert("code".into(), Value::String(code.into()));
                extra.insert("message".into(), Value::String(message));
                (status, Json(json!({ "error": extra }))).into_response()
            }
        }
    }
}
