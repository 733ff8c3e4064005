//! A loopback container-credentials endpoint for `sealgate exec`, for a command that
//! may outlive one STS session: the AWS SDKs and CLI read
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` with `AWS_CONTAINER_AUTHORIZATION_TOKEN` and
//! ask again before each set expires, and each ask within five minutes of expiry gets
//! a fresh session from sealgate. Every ask first checks that the grant is still
//! active, so once it is released or over the answer is 403 and the command's next
//! credential refresh fails, rather than being handed a cached session.
//!
//! Only `127.0.0.1`, on a port the kernel picks, and only for requests carrying the
//! per-run random token (compared in constant time): another local user who finds the
//! port learns nothing.

use super::client::Sealgate;
use super::credentials::{container_json, fetch, Credentials};
use super::AgentError;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::RngCore;
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

/// Refresh a session this close to its expiry.
const REFRESH_BEFORE_SECS: u64 = 300;

/// Where the endpoint listens and the token it requires (the two variables to set).
pub struct Endpoint {
    pub uri: String,
    pub token: String,
}

struct Served {
    api: Sealgate,
    grant: String,
    token: String,
    current: Mutex<Credentials>,
}

/// Starts the endpoint on the current runtime, with `first` as the first answer.
pub async fn serve(api: Sealgate, grant: String, first: Credentials) -> Result<Endpoint, AgentError> {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = hex::encode(raw);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| AgentError::Unreachable(format!("cannot listen on loopback for the credentials endpoint: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| AgentError::Unreachable(e.to_string()))?;
    let served = Arc::new(Served {
        api,
        grant,
        token: token.clone(),
        current: Mutex::new(first),
    });
    let app = Router::new().route("/credentials", get(answer)).with_state(served);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("sealgate: the credentials endpoint stopped: {e}");
        }
    });
    Ok(Endpoint {
        uri: format!("http://{addr}/credentials"),
        token,
    })
}

async fn answer(State(s): State<Arc<Served>>, headers: HeaderMap) -> Response {
    let presented = headers.get("authorization").map(|v| v.as_bytes()).unwrap_or_default();
    if !bool::from(presented.ct_eq(s.token.as_bytes())) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({ "message": "wrong or missing token" })),
        )
            .into_response();
    }
    match super::credentials::grant_state(&s.api, &s.grant).await {
        Ok(g) if g.status == "active" => {}
        Ok(g) => {
            return (
                StatusCode::FORBIDDEN,
                Json(json!({ "message": format!("the grant is {}", g.status) })),
            )
                .into_response()
        }
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "message": e.to_string() })),
            )
                .into_response()
        }
    }
    let mut current = s.current.lock().await;
    if current.expires_at <= crate::now_secs() + REFRESH_BEFORE_SECS {
        match fetch(&s.api, &s.grant).await {
            Ok(fresh) => *current = fresh,
            Err(e) => {
                eprintln!("sealgate: refreshing the grant's credentials failed: {e}");
                let status = match e {
                    AgentError::NotActive(_) | AgentError::Refused { .. } => StatusCode::FORBIDDEN,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                return (status, Json(json!({ "message": e.to_string() }))).into_response();
            }
        }
    }
    Json(container_json(&current)).into_response()
}
