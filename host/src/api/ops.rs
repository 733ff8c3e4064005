//! Health, readiness, metrics, the OpenAPI document, and the request counter.

use crate::error::ApiError;
use crate::App;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

pub const OPENAPI: &str = include_str!("openapi.json");

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the enclave answers and the log is consistent.
pub async fn readyz(State(app): State<Arc<App>>) -> Result<Json<Value>, ApiError> {
    if let Some(m) = app.ledger.integrity_failure() {
        return Err(ApiError::LogIntegrity(m));
    }
    if !app.ledger.is_ready() {
        return Err(ApiError::EnclaveUnavailable(
            "the enclave is not reachable or not yet in sync".into(),
        ));
    }
    app.ledger.call(sealgate_shared::protocol::Op::Checkpoint).await?;
    Ok(Json(
        json!({ "status": "ready", "mode": app.mode, "log_size": app.ledger.committed_size(), "witnesses": witnesses(&app) }),
    ))
}

/// `"none"`, or the quorum, whether tokens are being released (the last round reached
/// a quorum), the newest cosigned size and each witness's state. Readiness does not
/// depend on it: a stalled quorum is every host's outage, not this one's, and
/// `/readyz` is what says why.
fn witnesses(app: &App) -> Value {
    let Some(c) = app.ledger.cosigning() else {
        return json!("none");
    };
    let error = app.ledger.cosign_error();
    json!({
        "quorum": c.quorum(),
        "releasing": error.is_none(),
        "last_error": error,
        "cosigned_size": app.ledger.checkpoint().map_or(0, |c| c.size),
        "witnesses": app.ledger.witness_statuses().unwrap_or_default(),
    })
}

pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let l = &app.ledger;
    let gauges = [
        (
            "sealgate_log_size",
            "Leaves committed in the contiguous log.",
            l.committed_size(),
        ),
        (
            "sealgate_checkpoint_size",
            "Size of the latest signed checkpoint.",
            l.checkpoint().map_or(0, |c| c.size),
        ),
        (
            "sealgate_enclave_ready",
            "1 when the enclave is reachable and in sync.",
            l.is_ready() as u64,
        ),
        (
            "sealgate_log_integrity_ok",
            "0 after a log integrity failure.",
            l.integrity_failure().is_none() as u64,
        ),
    ];
    // Limits, their refusals, and the webhook sender (crate::limits, grants::webhook).
    let mut text = app.metrics.render(&gauges);
    text.push_str(&app.limits.render());
    text.push_str(&app.webhooks.render());
    if let Some(c) = l.cosigning() {
        text.push_str(&c.render());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub async fn count_requests(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    app.metrics.count_status(resp.status().as_u16());
    resp
}
