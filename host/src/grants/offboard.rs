//! Ending a disabled agent's grants (`POST /v1/workspaces/{ws}/agents/{agent}/disable`,
//! in `api/tenancy.rs`, calls [`release_all`] after the agent and its keys are off).
//!
//! Each grant ends exactly as `POST /v1/aws/access/{id}/release` would end it, under
//! the same grant lock and through the same [`transitions::commit`]: a pending grant is
//! released, an active one too. An active grant that has handed out credentials is
//! released *hard* (a deny on the role, [`access::hard_revoke`]) so sessions already
//! issued stop working; if the hard revoke cannot be done (no revoker for that
//! account, IAM refusing) the grant is still released softly and the answer says so
//! with the error code, so nothing claims a revocation that did not happen.

use super::model::{self, Grant, Status};
use super::{access, coordination, transitions};
use crate::error::ApiError;
use crate::App;
use rusqlite::params;
use serde_json::{json, Value};

/// What happened to one grant.
pub struct Outcome {
    pub grant_id: String,
    pub from: Status,
    pub hard_revoked: bool,
    /// Why a hard revoke was wanted and not done (the error's code and message).
    pub hard_revoke_error: Option<(String, String)>,
    pub log_index: u64,
}

impl Outcome {
    pub fn view(&self) -> Value {
        let mut v = json!({
            "grant_id": self.grant_id,
            "from": self.from.as_str(),
            "status": Status::Released.as_str(),
            "hard_revoked": self.hard_revoked,
            "log_index": self.log_index,
        });
        if let Some((code, message)) = &self.hard_revoke_error {
            v["hard_revoke_error"] = json!({ "code": code, "message": message });
        }
        v
    }
}

/// Releases every pending or active grant of `agent` in `workspace`; `by` is the
/// deciding key. Grants that changed state meanwhile (expired, decided) are skipped.
pub async fn release_all(app: &App, workspace: &str, agent: &str, by: &str) -> Result<Vec<Outcome>, ApiError> {
    let (ws, ag) = (workspace.to_string(), agent.to_string());
    let ids: Vec<String> = app
        .ledger
        .db
        .read(move |c| {
            let mut st = c.prepare(
                "SELECT id FROM grants WHERE workspace_id = ?1 AND agent_id = ?2 AND status IN ('pending', 'active') \
                 ORDER BY created_at, rowid",
            )?;
            let rows = st.query_map(params![ws, ag], |r| r.get(0))?;
            rows.collect()
        })
        .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(o) = release_one(app, &id, by).await? {
            out.push(o);
        }
    }
    Ok(out)
}

async fn release_one(app: &App, id: &str, by: &str) -> Result<Option<Outcome>, ApiError> {
    let _guard = coordination::lock_grant(id).await;
    let Some(g) = model::load(app, id).await? else {
        return Ok(None);
    };
    let now = model::now();
    let from = g.status_at(now);
    if !matches!(from, Status::Pending | Status::Active) {
        return Ok(None);
    }
    let mut after: Grant = g.clone();
    after.status = Status::Released;
    after.released_at = Some(now);
    let mut hard_revoke_error = None;
    if from == Status::Active && g.credentials_issued > 0 {
        match access::hard_revoke(app, &g, after.clone(), "grant.released", now, by).await {
            Ok((_, leaf)) => {
                return Ok(Some(Outcome {
                    grant_id: g.id,
                    from,
                    hard_revoked: true,
                    hard_revoke_error: None,
                    log_index: leaf.index,
                }))
            }
            Err(e) => {
                let (code, message) = e.code_and_message();
                tracing::warn!(grant = %g.id, code, "hard revoke on agent disable failed; releasing softly: {message}");
                hard_revoke_error = Some((code.to_string(), message));
            }
        }
    }
    let extra = json!({
        "by": by,
        "hard": false,
        "cause": "agent.disabled",
        "hard_revoke_error": hard_revoke_error.as_ref().map(|(c, _)| c),
    });
    let (_, leaf) = transitions::commit(app, &g, after, "grant.released", extra, None, None).await?;
    Ok(Some(Outcome {
        grant_id: g.id,
        from,
        hard_revoked: false,
        hard_revoke_error,
        log_index: leaf.index,
    }))
}
