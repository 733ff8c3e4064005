//! The grant lifecycle clock: a background task that, every `SEALGATE_GRANT_SWEEP_MS`
//! (default 1000 ms),
//!
//! - expires active grants past `expires_at` (`grant.expired`),
//! - times out pending grants past `decide_by` (`grant.timed_out`, and the webhook),
//! - prunes hard-revocation policies whose grant can no longer have a live session
//!   (`grant.revoke.pruned`).
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
    let due: Vec<(String, String, String)> = app
        .ledger
        .db
        .read(move |c| {
            let mut st = c.prepare(
                "SELECT grant_id, role_arn, policy_name FROM grant_revocations \
                 WHERE pruned_at IS NULL AND prune_after <= ?1 ORDER BY prune_after LIMIT ?2",
            )?;
            let rows = st.query_map(params![now, BATCH], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
        .await?;
    for (grant_id, role_arn, policy_name) in due {
        if let Err(e) = revoke::prune(app, &role_arn, &policy_name).await {
            // Left for the next round; the deny only over-restricts a dead grant.
            tracing::warn!(grant = %grant_id, "pruning {policy_name} from {role_arn}: {e}");
            continue;
        }
        let gid = grant_id.clone();
        let now = model::now();
        app.ledger
            .record(
                "grant.revoke.pruned",
                json!({ "grant_id": grant_id, "role_arn": role_arn, "policy_name": policy_name }),
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
    Ok(())
}
