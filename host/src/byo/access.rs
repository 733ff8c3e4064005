//! Who may make a BYO call, whether the workspace is entitled to BYO storage, and the
//! per-workspace lock that serialises changes to a workspace's grant.

use super::error::{ByoError, ByoResult};
use super::store;
use crate::auth::{Principal, Role};
use crate::App;
use axum::http::StatusCode;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

async fn workspace(app: &App, ws: &str) -> ByoResult<()> {
    Ok(crate::api::workspace_exists(app, ws).await?)
}

/// 402 unless the operator enabled BYO storage for `ws`.
async fn entitled(app: &App, ws: &str) -> ByoResult<()> {
    if store::byo_enabled(app, ws).await? {
        return Ok(());
    }
    Err(ByoError::detailed(
        StatusCode::PAYMENT_REQUIRED,
        "BYO_NOT_ENABLED",
        format!(
            "BYO storage is not enabled for workspace {ws}. The operator enables it with \
             PUT /v1/workspaces/{ws}/features {{\"byo_storage\": true}} using the operator admin key."
        ),
        json!({ "enable_with": {
            "method": "PUT",
            "path": format!("/v1/workspaces/{ws}/features"),
            "body": { "byo_storage": true },
            "key": "operator admin",
        }}),
    ))
}

/// A BYO call: the operator or an admin of `ws`, an existing workspace, entitled.
pub async fn authorize(app: &App, who: &Principal, ws: &str) -> ByoResult<()> {
    who.require_admin_of(ws)?;
    workspace(app, ws).await?;
    entitled(app, ws).await
}

/// Reading the BYO audit: also the workspace's auditors (the customer's security team).
pub async fn authorize_audit_read(app: &App, who: &Principal, ws: &str) -> ByoResult<()> {
    if !(who.role == Role::Auditor && who.workspace_id.as_deref() == Some(ws)) {
        who.require_admin_of(ws)?;
    }
    workspace(app, ws).await?;
    entitled(app, ws).await
}

/// The feature switch itself needs only an existing workspace.
pub async fn existing_workspace(app: &App, ws: &str) -> ByoResult<()> {
    workspace(app, ws).await
}

type Locks = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// Serialises grant changes and artifact commits within one workspace on this host, so
/// "check, then write" cannot interleave (two registrations, or an artifact landing on a
/// grant being disconnected). Slow AWS calls of artifact registration run outside it.
pub async fn lock(ws: &str) -> tokio::sync::OwnedMutexGuard<()> {
    static LOCKS: LazyLock<Locks> = LazyLock::new(Default::default);
    let m = LOCKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(ws.to_string())
        .or_default()
        .clone();
    m.lock_owned().await
}
