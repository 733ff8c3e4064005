//! BYO storage (DESIGN §7): customer buckets reached through a cross-account role that
//! sealgate assumes with an External ID it mints, probed, and audited call by call.

use crate::App;
use axum::Router;
use std::sync::Arc;

/// The BYO storage endpoints, merged into the main router.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
}
