//! AWS access grants (ARCHITECTURE §7): policy ceilings per workspace and account, agent
//! requests decided by those ceilings or by approvers, and just-in-time STS credentials.
//!
//! - [`policy`] and [`pattern`]: the ceiling, the request, and the pure decision.
//! - [`ceilings`]: admins' ceilings and agents' scope.
//! - [`access`]: preview, request, long-poll, release; [`credentials`] and [`sts`]: STS.
//! - [`approvals`] and [`webhook`]: humans in the loop; [`webhook_net`]: where and how
//!   webhook deliveries connect.
//! - [`trust`]: External IDs, the trust policies roles need, and the role probe.
//! - [`revoke`]: hard revocation on the role; [`sweeper`]: expiry, timeouts, pruning.
//! - [`offboard`]: ending the grants of an agent that is disabled.
//! - [`model`], [`transitions`], [`coordination`]: the grant row, its leaf-and-row
//!   writes, and the locks and wake-ups that keep concurrent changes honest.

pub mod access;
pub mod approvals;
pub mod ceilings;
pub mod coordination;
pub mod credentials;
pub mod model;
pub mod offboard;
pub mod pattern;
pub mod policy;
pub mod revoke;
pub mod sts;
pub mod sweeper;
pub mod transitions;
pub mod trust;
pub mod webhook;
pub mod webhook_net;

use crate::App;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// The grant endpoints, merged into the main router.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/v1/workspaces/{ws}/aws/accounts/{account_id}",
            get(ceilings::get).put(ceilings::put).delete(ceilings::delete),
        )
        .route(
            "/v1/workspaces/{ws}/aws/accounts/{account_id}/scope",
            get(ceilings::scope),
        )
        .route(
            "/v1/workspaces/{ws}/aws/accounts/{account_id}/policies",
            get(trust::policies),
        )
        .route(
            "/v1/workspaces/{ws}/aws/accounts/{account_id}/check",
            post(trust::check),
        )
        .route(
            "/v1/workspaces/{ws}/webhook",
            get(webhook::get).put(webhook::put).delete(webhook::delete),
        )
        .route("/v1/aws/access/preview", post(access::preview))
        .route("/v1/aws/access", post(access::request))
        .route("/v1/aws/access/{grant_id}", get(access::get))
        .route("/v1/aws/access/{grant_id}/credentials", get(credentials::credentials))
        .route("/v1/aws/access/{grant_id}/release", post(access::release))
        .route("/v1/approvals", get(approvals::list))
        .route("/v1/approvals/{grant_id}", post(approvals::decide))
}

/// Starts the sweeper and the webhook sender (called once by `serve`).
pub fn spawn_background(app: Arc<App>) {
    sweeper::spawn(app.clone());
    webhook::spawn(app);
}
