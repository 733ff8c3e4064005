//! The grant lifecycle clock: a background task that, every `SEALGATE_GRANT_SWEEP_MS`
//! (default 1000 ms),
//!
//! - expires active grants past `expires_at` (`grant.expired`),
//! - times out pending grants past `decide_by` (`grant.timed_out`, and the webhook),
//! - prunes grants that can no longer have a live session from their role's deny
//!   policy (`grant.revoke.pruned`; the policy is rewritten through the ceiling's
//!   revoker role, or deleted when its list is empty).
//!
//! Readers never depend on it for correctness (an overdue grant already reads as
//! expired, see [`super::model::Grant::status_at`]); it makes the log and the row say
//! so, and cleans up IAM.

use super::model::{self, Status};
use super::{coordination, revoke, transitions, webhook};
use crate::error::ApiError;
use crate::App;
use rusqlite::params;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Most transitions of each kind per round, so one round stays short.
const BATCH: i64 = 200;

fn interval() -> Duration {
    let ms = std::env::var("SEALGATE_GRANT_SWEEP_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v > 0)
        .unwrap_or(1000);
    Duration::from_millis(ms)
}

pub fn spawn(app: Arc<App>) {
    tokio::spawn(async move {
        let every = interval();
        loop {
            tokio::time::sleep(every).await;
            if !app.ledger.is_ready() {
                continue;
            }
            if let Err(e) = round(&app).await {
                tracing::warn!("grant sweep failed: {e}");
            }
        }
    });
}

async fn overdue(app: &App, status: Status, column: &'static str) -> Result<Vec<String>, ApiError> {
    let now = model::now();
    Ok(app
        .ledger
        .db
        .read(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT id FROM grants WHERE status = ?1 AND {column} <= ?2 ORDER BY {column} LIMIT ?3"
            ))?;
            let rows = st.query_map(params![status.as_str(), now, BATCH], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
        .await?)
}

async fn round(app: &App) -> Result<(), ApiError> {
    for id in overdue(app, Status::Active, "expires_at").await? {
        let _guard = coordination::lock_grant(&id).await;
        let Some(g) = model::load(app, &id).await? else {
            continue;
        };
        let now = model::now();
        if g.status != Status::Active || g.status_at(now) != Status::Expired {
            continue;
        }
        let mut after = g.clone();
        after.status = Status::Expired;
        transitions::commit(
            app,
            &g,
            after,
            "grant.expired",
            json!({ "expires_at": g.expires_at }),
            None,
            None,
        )
        .await?;
    }
    for id in overdue(app, Status::Pending, "decide_by").await? {
        let _guard = coordination::lock_grant(&id).await;
        let Some(g) = model::load(app, &id).await? else {
            continue;
        };
        let now = model::now();
        if g.status != Status::Pending || g.status_at(now) != Status::TimedOut {
            continue;
        }
        let mut after = g.clone();
        after.status = Status::TimedOut;
        after.denial_reason = Some("no approver decided before the request timed out".into());
        after.resolved_at = Some(now);
        transitions::commit(
            app,
            &g,
            after,
            "grant.timed_out",
            json!({ "decide_by": g.decide_by }),
            Some(webhook::EVENT_RESOLVED),
            None,
        )
        .await?;
    }
    prune(app).await
}

async fn prune(app: &App) -> Result<(), ApiError> {
    let now = model::now();
    let due: Vec<(String, String, String, String)> = app
        .ledger
        .db
        .read(move |c| {
            let mut st = c.prepare(
                "SELECT r.grant_id, r.role_arn, g.workspace_id, g.account_id FROM grant_revocations r \
                 JOIN grants g ON g.id = r.grant_id \
                 WHERE r.pruned_at IS NULL AND r.prune_after <= ?1 ORDER BY r.prune_after LIMIT ?2",
            )?;
            let rows = st.query_map(params![now, BATCH], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect()
        })
        .await?;
    // One rewrite of each role's deny policy per round, whatever number of its grants
    // aged out.
    let mut by_role: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
    for (grant_id, role_arn, ws, account) in due {
        by_role.entry((role_arn, ws, account)).or_default().push(grant_id);
    }
    for ((role_arn, ws, account), grants) in by_role {
        let revoker = match revoke::revoker_for(app, &ws, &account).await {
            Ok(r) => r,
            Err(e) => {
                // Left listed: the deny only over-restricts dead grants.
                tracing::warn!(role = %role_arn, "cannot prune revocations without a revoker: {e}");
                continue;
            }
        };
        let _role_guard = revoke::lock_role(&role_arn).await;
        let remaining: Vec<String> = revoke::listed(app, &role_arn)
            .await?
            .into_iter()
            .filter(|g| !grants.contains(g))
            .collect();
        if let Err(e) = revoke::write(app, &revoker, &role_arn, &remaining).await {
            tracing::warn!(role = %role_arn, "pruning {}: {e}", revoke::POLICY_NAME);
            continue;
        }
        for grant_id in grants {
            let gid = grant_id.clone();
            let now = model::now();
            app.ledger
                .record(
                    "grant.revoke.pruned",
                    json!({
                        "grant_id": grant_id,
                        "role_arn": role_arn,
                        "policy_name": revoke::POLICY_NAME,
                        "still_listed": remaining.len(),
                    }),
                    Some(Box::new(move |c| {
                        c.execute(
                            "UPDATE grant_revocations SET pruned_at = ?2 WHERE grant_id = ?1",
                            params![gid, now],
                        )?;
                        Ok(())
                    })),
                )
                .await?;
        }
    }
    Ok(())
}
