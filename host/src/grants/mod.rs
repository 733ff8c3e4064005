//! AWS access grants (DESIGN §7): policy ceilings per workspace and account, agent
//! requests decided by those ceilings or by approvers, and just-in-time STS credentials.

use crate::App;
use axum::Router;
use std::sync::Arc;

/// The grant endpoints, merged into the main router.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
}
