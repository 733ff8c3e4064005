//! Body and query extractors whose rejections are [`ApiError`]s, and the one place that
//! turns a serde error into a message for clients.
//!
//! serde's own messages name Rust types (`expected struct MintBody with 3 elements`,
//! `expected u64`): internals that mean nothing to a client and change with the code.
//! [`plain`] rewrites them in JSON's terms (object, array, integer) and prefixes the
//! field's path (`rules[0].decision: …`), so every endpoint answers the same way.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `Json<T>` with JSON errors: 413 over the size limit, 400 `INVALID_REQUEST` for
/// anything malformed.
pub struct JsonBody<T>(pub T);

/// The same for the agent's access calls (`/v1/aws/access…`), whose malformed bodies
/// answer `GRANT_INVALID_REQUEST` like every other invalid request there.
pub struct GrantBody<T>(pub T);

/// The same for BYO bodies, whose invalid fields answer `BYO_INVALID_FIELD` (docs/API.md,
/// BYO storage: "`BYO_INVALID_FIELD` for the others").
pub struct ByoBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read(req, state, "INVALID_REQUEST").await.map(JsonBody)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for GrantBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read(req, state, "GRANT_INVALID_REQUEST").await.map(GrantBody)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ByoBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read(req, state, "BYO_INVALID_FIELD").await.map(ByoBody)
    }
}

async fn read<S: Send + Sync, T: DeserializeOwned>(req: Request, state: &S, code: &'static str) -> Result<T, ApiError> {
    let json_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
        .unwrap_or(false);
    if !json_type {
        return Err(ApiError::bad_code(
            code,
            "send the body as JSON with Content-Type: application/json",
        ));
    }
    let bytes = Bytes::from_request(req, state).await.map_err(|e: BytesRejection| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(super::MAX_BODY_BYTES)
        } else {
            ApiError::bad_code(code, "the request body could not be read")
        }
    })?;
    parse(&bytes, code)
}

/// Parses a JSON object body into `T`, or 400 `code` with a [`plain`] message.
///
/// The body is parsed once on the way that succeeds (every mint comes through here);
/// only a refused body is parsed a second time, as a `Value`, to say what is wrong.
pub fn parse<T: DeserializeOwned>(bytes: &[u8], code: &'static str) -> Result<T, ApiError> {
    // A derived struct would also accept a JSON array of its fields in order; every
    // body of this API is an object, so anything else is refused by what it is.
    let is_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let typed = if is_object {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        match serde_path_to_error::deserialize(&mut *de) {
            // Trailing bytes after the object are refused, as `serde_json::from_slice`
            // does; the `Value` parse below then says so.
            Ok(t) if de.end().is_ok() => return Ok(t),
            Ok(_) => None,
            Err(e) => Some(e),
        }
    } else {
        None
    };
    // Syntax first, on its own: serde_json reports some type mismatches (a number where
    // an enum's string belongs) as syntax errors, which would read "not valid JSON".
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_code(code, format!("the body is not valid JSON: {}", plain(&e, ""))))?;
    if !value.is_object() {
        return Err(ApiError::bad_code(
            code,
            format!("the body must be a JSON object, not {}", kind(&value)),
        ));
    }
    let Some(e) = typed else {
        // Unreachable in practice: an object that is valid JSON either parsed into `T`
        // or gave a typed error above.
        return Err(ApiError::bad_code(code, "invalid JSON body"));
    };
    let path = e.path().to_string();
    let inner = e.into_inner();
    let message = if inner.is_data() {
        plain(&inner, &path)
    } else {
        format!(
            "{path}: a value of the wrong type (line {}, column {})",
            inner.line(),
            inner.column()
        )
    };
    Err(ApiError::bad_code(code, format!("invalid JSON body: {message}")))
}

/// `T` from a JSON value already parsed, or the [`plain`] message (for bodies taken as
/// a `Value` and split up by the handler).
pub fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        plain(e.inner(), &path)
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde_json's message in JSON's terms, prefixed by the field's `path` (`.` or empty:
/// the body itself), with the position when there is one.
pub fn plain(e: &serde_json::Error, path: &str) -> String {
    let raw = e.to_string();
    // serde_json appends " at line L column C"; keep it, in words.
    let (body, position) = match raw.rfind(" at line ") {
        Some(i) if e.line() > 0 => (&raw[..i], format!(" (line {}, column {})", e.line(), e.column())),
        _ => (raw.as_str(), String::new()),
    };
    let body = match body.split_once(", expected ") {
        Some((head, expected))
            if head.starts_with("invalid type: ")
                || head.starts_with("invalid value: ")
                || head.starts_with("invalid length ") =>
        {
            format!("{}, expected {}", plain_unexpected(head), plain_expected(expected))
        }
        _ => body.to_string(),
    };
    match path {
        "" | "." => format!("{body}{position}"),
        p => format!("{p}: {body}{position}"),
    }
}

fn plain_unexpected(head: &str) -> String {
    match head {
        "invalid type: sequence" => "invalid type: an array".into(),
        "invalid type: map" => "invalid type: an object".into(),
        other => other.to_string(),
    }
}

/// What serde says it expected (a visitor's description), without Rust type names.
fn plain_expected(expected: &str) -> String {
    let first = expected.split(' ').next().unwrap_or_default();
    let plain = match first {
        "struct" | "tuple" | "unit" | "newtype" if expected.contains("variant") => "one of the allowed values",
        "struct" | "unit" | "newtype" => "a JSON object",
        "tuple" => "a JSON array",
        "enum" => "one of the allowed values",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "option" => "a value or null",
        _ => match expected {
            "a sequence" | "sequence" => "a JSON array",
            "a map" | "map" => "a JSON object",
            "a borrowed string" | "a char" | "field identifier" | "variant identifier" => "a string",
            // Anything else naming a type (CamelCase) is refused as such; what is left is
            // serde's plain English ("a string", "a boolean", a custom expectation).
            other
                if other
                    .split(|c: char| !c.is_alphanumeric())
                    .any(|w| w.starts_with(char::is_uppercase)) =>
            {
                "a value of another type"
            }
            other => return other.to_string(),
        },
    };
    plain.to_string()
}

/// `Query<T>` with JSON errors.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e: QueryRejection| {
                // axum's text is "Failed to deserialize query string: <serde message>".
                let text = e.body_text();
                let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
                let detail = match detail.split_once(", expected ") {
                    Some((head, expected)) if head.starts_with("invalid ") => {
                        format!("{head}, expected {}", plain_expected(expected))
                    }
                    _ => detail.to_string(),
                };
                ApiError::bad(format!("invalid query parameters: {detail}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct SecretInternalName {
        a: u64,
        b: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        kind: InnerKind,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum InnerKind {
        One,
    }

    fn message(body: &str) -> String {
        match parse::<SecretInternalName>(body.as_bytes(), "X") {
            Err(ApiError::BadRequest { code: "X", message }) => message,
            other => panic!("{body}: {other:?}"),
        }
    }

    /// The one-pass parse keeps what the two-pass one refused: anything after the
    /// object, and a body that is not an object even where serde would take it.
    #[test]
    fn trailing_bytes_and_non_objects_are_refused_and_a_good_body_parses() {
        assert!(parse::<SecretInternalName>(br#" {"a":1,"b":[]} "#, "X").is_ok());
        let trailing = message(r#"{"a":1,"b":[]} {"a":2}"#);
        assert!(trailing.starts_with("the body is not valid JSON"), "{trailing}");
        let array = message(r#"[1, [{"kind":"one"}]]"#);
        assert_eq!(array, "the body must be a JSON object, not an array");
    }

    #[test]
    fn messages_speak_json_not_rust() {
        for (body, want) in [
            ("[1, []]", "the body must be a JSON object, not an array"),
            ("\"x\"", "the body must be a JSON object, not a string"),
            (
                "{\"a\": \"x\", \"b\": []}",
                "a: invalid type: string \"x\", expected a non-negative integer",
            ),
            (
                "{\"a\": -1, \"b\": []}",
                "a: invalid value: integer `-1`, expected a non-negative integer",
            ),
            (
                "{\"a\": 1, \"b\": {}}",
                "b: invalid type: an object, expected a JSON array",
            ),
            (
                "{\"a\": 1, \"b\": [[]]}",
                "b[0]: invalid length 0, expected a JSON object",
            ),
            (
                "{\"a\": 1, \"b\": [{\"kind\": 5}]}",
                "b[0].kind: a value of the wrong type",
            ),
            (
                "{\"a\": 1, \"b\": [{\"kind\": \"two\"}]}",
                "b[0].kind: unknown variant `two`, expected `one`",
            ),
            ("{\"a\": 1}", "missing field `b`"),
            (
                "{\"a\": 1, \"b\": [], \"c\": 1}",
                "unknown field `c`, expected `a` or `b`",
            ),
            ("{\"a\": 1,", "the body is not valid JSON: EOF while parsing"),
        ] {
            let m = message(body);
            assert!(m.contains(want), "{body}: {m}");
            for internal in ["SecretInternalName", "Inner", "struct", "u64", "sequence", "elements"] {
                assert!(!m.contains(internal), "{body}: {m} names {internal}");
            }
        }
    }

    #[test]
    fn values_taken_apart_by_a_handler_get_the_same_messages() {
        let m = from_value::<SecretInternalName>(serde_json::json!({"a": 1, "b": [1]})).unwrap_err();
        assert_eq!(m, "b[0]: invalid type: integer `1`, expected a JSON object");
    }
}
