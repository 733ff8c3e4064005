//! The REST API: the router, and extractors that turn every malformed request into
//! our JSON error shape instead of axum's plain-text rejections.

mod admin;
mod attestation;
mod audit;
mod extract;
pub mod oidc;
mod ops;
pub mod request_id;
mod tenancy;
mod tiles;

use crate::error::ApiError;
use crate::App;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use std::sync::Arc;

pub use extract::{from_value as json_from_value, parse as parse_json};
pub use extract::{ByoBody, GrantBody, JsonBody, QueryParams};
pub use tenancy::workspace_exists;

/// For POSTs that take no parameters: an empty body, or `{}`. Taking the body (instead
/// of ignoring it) also means it is read before the answer, so a client still sending
/// it is not cut off by a quick refusal.
pub fn no_body(body: &[u8]) -> Result<(), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) if m.is_empty() => Ok(()),
        _ => Err(ApiError::bad("this call takes no parameters: send no body or {}")),
    }
}

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/.well-known/openid-configuration", get(oidc::discovery))
        .route("/.well-known/jwks.json", get(oidc::jwks))
        .route("/v1/tokens", post(oidc::mint))
        .route("/v1/attestation", get(attestation::attestation))
        .route("/v1/admin/keys/rotate", post(admin::rotate_keys))
        .route("/v1/admin/operator-key/rotate", post(admin::rotate_operator_key))
        .route("/v1/workspaces", post(tenancy::create_workspace))
        .route(
            "/v1/workspaces/{ws}/agents",
            get(tenancy::list_agents).post(tenancy::create_agent),
        )
        .route(
            "/v1/workspaces/{ws}/agents/{agent}/disable",
            post(tenancy::disable_agent),
        )
        .route(
            "/v1/workspaces/{ws}/keys",
            get(tenancy::list_keys).post(tenancy::create_key),
        )
        .route("/v1/workspaces/{ws}/keys/{id}", delete(tenancy::revoke_key))
        .route("/v1/audit/checkpoint", get(audit::checkpoint))
        .route("/v1/audit/key", get(audit::key))
        .route("/v1/audit/hashes", get(audit::hashes))
        .route("/v1/audit/entries", get(audit::entries))
        .route("/v1/audit/proof/inclusion", get(audit::inclusion))
        .route("/v1/audit/proof/consistency", get(audit::consistency))
        .route("/v1/audit/tokens/{jti}", get(audit::token))
        // The same log as C2SP tlog-tiles serves it.
        .route("/checkpoint", get(audit::checkpoint))
        .route("/tile/{level}/{*rest}", get(tiles::tile))
        .merge(crate::grants::routes())
        .merge(crate::byo::routes())
        .fallback(|| async { ApiError::NotFound("no such endpoint; see /v1/openapi.json".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("this endpoint does not take that method; see /v1/openapi.json".into())
        })
        // Per-address rate limits (crate::limits), inside the counter so 429s are counted.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::limits::by_address,
        ))
        .layer(axum::middleware::from_fn_with_state(app.clone(), ops::count_requests))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Outermost, so every response (errors of extractors and fallbacks too) has one.
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(app)
}
