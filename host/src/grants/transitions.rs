//! Writing grants: a new grant, or a grant moving from one state to the next, always as
//! one log leaf and the row change in the same SQLite transaction.
//!
//! Callers hold the grant's lock ([`super::coordination::lock_grant`]) and pass the
//! state they read under it; the update is also conditioned on that state, so a change
//! decided from a stale read fails instead of overwriting a newer one.

use super::model::{with, Grant, Status};
use super::webhook::Outgoing;
use crate::db::Apply;
use crate::error::ApiError;
use crate::App;
use rusqlite::{params, Connection};
use sealgate_shared::protocol::LeafRecord;
use serde_json::{json, Value};

fn insert(c: &Connection, g: &Grant) -> rusqlite::Result<()> {
    let request = serde_json::to_string(&g.request).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    c.execute(
        "INSERT INTO grants (id, workspace_id, agent_id, account_id, role_arn, run_id, request, reason, status, \
         decision, denial_reason, idempotency_key, request_sha256, created_at, decide_by, activated_at, expires_at, \
         max_ttl_seconds, hard_revoked, credentials_issued, requested_by, approvals_required) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, 0, 0, ?19, ?20)",
        params![
            g.id,
            g.workspace_id,
            g.agent_id,
            g.account_id,
            g.role_arn,
            g.run_id,
            request,
            g.reason,
            g.status.as_str(),
            g.decision.to_string(),
            g.denial_reason,
            g.idempotency_key,
            g.request_sha256,
            g.created_at,
            g.decide_by,
            g.activated_at,
            g.expires_at,
            g.max_ttl_seconds,
            g.requested_by,
            g.approvals_required,
        ],
    )?;
    Ok(())
}

fn update(c: &Connection, before: Status, g: &Grant) -> rusqlite::Result<()> {
    let n = c.execute(
        "UPDATE grants SET status = ?2, denial_reason = ?3, activated_at = ?4, expires_at = ?5, resolved_by = ?6, \
         resolution = ?7, resolved_at = ?8, released_at = ?9, hard_revoked = ?10 WHERE id = ?1 AND status = ?11",
        params![
            g.id,
            g.status.as_str(),
            g.denial_reason,
            g.activated_at,
            g.expires_at,
            g.resolved_by,
            g.resolution,
            g.resolved_at,
            g.released_at,
            g.hard_revoked as i64,
            before.as_str(),
        ],
    )?;
    if n == 1 {
        Ok(())
    } else {
        Err(rusqlite::Error::StatementChangedRows(n))
    }
}

/// Records a new grant (`grant.requested`), queueing `webhook` with it if the
/// workspace has one.
pub async fn create(
    app: &App,
    g: Grant,
    event: Value,
    webhook: Option<&'static str>,
) -> Result<(Grant, LeafRecord), ApiError> {
    let out = webhook.map(|e| Outgoing::new(e, &g));
    let row = g.clone();
    let leaf = app
        .ledger
        .record(
            "grant.requested",
            with(g.leaf_base(), event),
            Some(Box::new(move |c| {
                insert(c, &row)?;
                if let Some(o) = out {
                    o.enqueue(c)?;
                }
                Ok(())
            })),
        )
        .await?;
    super::coordination::changed(&g.id);
    Ok((g, leaf))
}

/// Records `before` → `after` as a leaf of `kind` carrying `extra`, with `more` (if
/// any) in the same transaction, and queues `webhook` if the workspace has one.
pub async fn commit(
    app: &App,
    before: &Grant,
    after: Grant,
    kind: &str,
    extra: Value,
    webhook: Option<&'static str>,
    more: Option<Apply>,
) -> Result<(Grant, LeafRecord), ApiError> {
    let event = with(
        with(
            after.leaf_base(),
            json!({ "from": before.status.as_str(), "to": after.status.as_str() }),
        ),
        extra,
    );
    let out = webhook.map(|e| Outgoing::new(e, &after));
    let (row, old) = (after.clone(), before.status);
    let leaf = app
        .ledger
        .record(
            kind,
            event,
            Some(Box::new(move |c| {
                update(c, old, &row)?;
                if let Some(m) = more {
                    m(c)?;
                }
                if let Some(o) = out {
                    o.enqueue(c)?;
                }
                Ok(())
            })),
        )
        .await?;
    super::coordination::changed(&after.id);
    Ok((after, leaf))
}
