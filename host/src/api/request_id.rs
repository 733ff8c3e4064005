//! A request id for every request: the caller's `x-request-id` when it is well formed,
//! otherwise a fresh one; echoed in the response's `x-request-id` header and in every
//! error body.
//!
//! Why: internal errors (a failed SQLite statement, a broken invariant) are logged in
//! full but answered with a generic message (see [`crate::error`]), so the text of a
//! database error never reaches a client. The request id is what lets the caller and
//! the operator find the one log line that has the details.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;

pub const HEADER: &str = "x-request-id";
const MAX_LEN: usize = 64;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// 1-64 characters of `[A-Za-z0-9._:-]`: safe to log and to echo in a header.
pub fn well_formed(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Not a secret, so the thread-local CSPRNG (no system call per request) is enough.
pub fn generate() -> String {
    let mut b = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut b);
    format!("req_{}", hex::encode(b))
}

/// The id to use for a request carrying `header` (if any).
pub fn choose(header: Option<&HeaderValue>) -> String {
    header
        .and_then(|v| v.to_str().ok())
        .filter(|s| well_formed(s))
        .map_or_else(generate, str::to_string)
}

/// The id of the request being handled, if called inside one.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Runs `f` as if it were handling request `id` (the middleware, and tests).
pub async fn scope<F: std::future::Future>(id: String, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

/// The middleware: picks the id, handles the request inside its scope, echoes it.
pub async fn layer(req: Request, next: Next) -> Response {
    let id = choose(req.headers().get(HEADER));
    let mut resp = scope(id.clone(), next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HeaderName::from_static(HEADER), v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_a_well_formed_header_and_replaces_anything_else() {
        let given = HeaderValue::from_static("abc-123_X.y:z");
        assert_eq!(choose(Some(&given)), "abc-123_X.y:z");
        for bad in ["", "has space", "semi;colon", "quote\"", &"x".repeat(65)] {
            let v = HeaderValue::from_str(bad).unwrap();
            let got = choose(Some(&v));
            assert_ne!(got, bad);
            assert!(got.starts_with("req_") && well_formed(&got), "{got}");
        }
        let fresh = choose(None);
        assert!(fresh.starts_with("req_") && fresh.len() == 28, "{fresh}");
        assert_ne!(fresh, choose(None));
    }

    #[tokio::test]
    async fn current_is_the_scoped_id() {
        assert_eq!(current(), None);
        assert_eq!(scope("r1".into(), async { current() }).await.as_deref(), Some("r1"));
    }
}
