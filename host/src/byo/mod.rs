//! BYO storage (ARCHITECTURE §7): customer buckets reached through a cross-account role that
//! sealgate assumes with an External ID it mints, probed, and audited call by call.
//!
//! - `features`: the operator's per-workspace switch (402 `BYO_NOT_ENABLED` without it)
//! - `grant`: register / read / check / rotate / disconnect / policies
//! - `probe`: the readiness probe and the per-operation role session
//! - `artifacts`: objects registered by `s3://` pointer, checked through the role
//! - `calls` + `audit`: every call into the customer's account, timed out, retried on
//!   throttling, and recorded as a log leaf and a table row with AWS's request id
//! - `validate`, `regions`: input rules; `checklist`: what to fix per error code;
//!   `policies`: the IAM documents the customer applies; `store`: the rows

mod access;
mod artifacts;
mod audit;
mod calls;
mod checklist;
mod config;
mod error;
mod features;
mod grant;
mod policies;
mod probe;
pub(crate) mod regions;
mod store;
pub(crate) mod validate;

use crate::App;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// The BYO storage endpoints, merged into the main router.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/workspaces/{ws}/features", get(features::get).put(features::put))
        .route(
            "/v1/workspaces/{ws}/byo/grant",
            get(grant::get).post(grant::register).delete(grant::disconnect),
        )
        .route("/v1/workspaces/{ws}/byo/grant/check", post(grant::check))
        .route("/v1/workspaces/{ws}/byo/grant/rotate-external-id", post(grant::rotate))
        .route("/v1/workspaces/{ws}/byo/grant/policies", get(grant::policies))
        .route("/v1/workspaces/{ws}/byo/audit", get(audit::list))
        .route("/v1/workspaces/{ws}/artifacts/byo", post(artifacts::register))
        .route("/v1/workspaces/{ws}/artifacts", get(artifacts::list))
        .route(
            "/v1/workspaces/{ws}/artifacts/{id}",
            get(artifacts::get).delete(artifacts::delete),
        )
}
