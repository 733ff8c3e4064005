//! A grant as stored and as shown.
//!
//! A grant is one agent request for AWS access: what it asked for, what the policy
//! decided, and where it is in its life. The row holds no credentials: they are minted
//! from STS when asked for and never stored.
//!
//! Statuses: `pending` (waiting for an approver), `active` (credentials may be fetched
//! until `expires_at`), and the final `denied`, `timed_out` (no approver decided in
//! time), `expired` and `released`. Deadlines are compared with the clock whenever a
//! grant is read, so a grant is never shown or used as `active` after `expires_at` even
//! before the sweeper has recorded the transition.

use super::policy::{AccessRequest, Decision};
use crate::error::ApiError;
use crate::App;
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Active,
    Denied,
    TimedOut,
    Expired,
    Released,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Denied => "denied",
            Status::TimedOut => "timed_out",
            Status::Expired => "expired",
            Status::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "active" => Status::Active,
            "denied" => Status::Denied,
            "timed_out" => Status::TimedOut,
            "expired" => Status::Expired,
            "released" => Status::Released,
            _ => return None,
        })
    }
}

/// What the agent asked for, as stored (the request half of the policy input).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Requested {
    pub actions: Vec<String>,
    pub resources: Vec<String>,
    pub regions: Vec<String>,
    pub ttl_seconds: u64,
}

impl Requested {
    pub fn access(&self) -> AccessRequest {
        AccessRequest {
            actions: self.actions.clone(),
            resources: self.resources.clone(),
            regions: self.regions.clone(),
            ttl_seconds: self.ttl_seconds,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Grant {
    pub id: String,
    pub workspace_id: String,
    pub agent_id: String,
    pub account_id: String,
    pub role_arn: String,
    pub run_id: String,
    pub request: Requested,
    pub reason: String,
    pub status: Status,
    pub decision: Value,
    pub denial_reason: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_sha256: String,
    pub created_at: i64,
    pub decide_by: Option<i64>,
    pub activated_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub max_ttl_seconds: i64,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
    pub resolved_at: Option<i64>,
    pub released_at: Option<i64>,
    pub hard_revoked: bool,
    pub credentials_issued: i64,
    /// The key that created the request; it can never decide it (approvals.rs).
    pub requested_by: Option<String>,
    /// Distinct approver keys needed to activate it (the deciding rule's).
    pub approvals_required: i64,
    /// Approvals given so far (from `grant_approvals`), oldest first.
    pub approvals: Vec<Approval>,
}

/// One approver key's approval of a pending grant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Approval {
    pub key_id: String,
    pub reason: String,
    pub at: i64,
}

pub const COLUMNS: &str =
    "id, workspace_id, agent_id, account_id, role_arn, run_id, request, reason, status, decision, \
     denial_reason, idempotency_key, request_sha256, created_at, decide_by, activated_at, expires_at, \
     max_ttl_seconds, resolved_by, resolution, resolved_at, released_at, hard_revoked, credentials_issued, \
     requested_by, approvals_required, \
     (SELECT json_group_array(json_object('key_id', key_id, 'reason', reason, 'at', decided_at)) \
      FROM (SELECT key_id, reason, decided_at FROM grant_approvals WHERE grant_id = grants.id \
            ORDER BY decided_at, rowid))";

fn bad_column(i: usize, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.to_string().into())
}

pub fn from_row(r: &Row<'_>) -> rusqlite::Result<Grant> {
    let request: String = r.get(6)?;
    let status: String = r.get(8)?;
    let decision: String = r.get(9)?;
    Ok(Grant {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        agent_id: r.get(2)?,
        account_id: r.get(3)?,
        role_arn: r.get(4)?,
        run_id: r.get(5)?,
        request: serde_json::from_str(&request).map_err(|e| bad_column(6, e))?,
        reason: r.get(7)?,
        status: Status::parse(&status).ok_or_else(|| bad_column(8, format!("unknown status {status:?}")))?,
        decision: serde_json::from_str(&decision).map_err(|e| bad_column(9, e))?,
        denial_reason: r.get(10)?,
        idempotency_key: r.get(11)?,
        request_sha256: r.get(12)?,
        created_at: r.get(13)?,
        decide_by: r.get(14)?,
        activated_at: r.get(15)?,
        expires_at: r.get(16)?,
        max_ttl_seconds: r.get(17)?,
        resolved_by: r.get(18)?,
        resolution: r.get(19)?,
        resolved_at: r.get(20)?,
        released_at: r.get(21)?,
        hard_revoked: r.get::<_, i64>(22)? != 0,
        credentials_issued: r.get(23)?,
        requested_by: r.get(24)?,
        approvals_required: r.get(25)?,
        approvals: {
            let text: Option<String> = r.get(26)?;
            match text {
                Some(t) => serde_json::from_str(&t).map_err(|e| bad_column(26, e))?,
                None => Vec::new(),
            }
        },
    })
}

/// Reads one grant.
pub async fn load(app: &App, id: &str) -> Result<Option<Grant>, ApiError> {
    let id = id.to_string();
    Ok(app
        .ledger
        .db
        .read(move |c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM grants WHERE id = ?1"),
                params![id],
                from_row,
            )
            .optional()
        })
        .await?)
}

pub fn now() -> i64 {
    crate::now_secs() as i64
}

impl Grant {
    /// The status as of `now`: an active grant past `expires_at` is expired and a
    /// pending one past `decide_by` has timed out, whether or not the sweeper has
    /// recorded it yet.
    pub fn status_at(&self, now: i64) -> Status {
        match self.status {
            Status::Active if self.expires_at.is_some_and(|e| now >= e) => Status::Expired,
            Status::Pending if self.decide_by.is_some_and(|d| now >= d) => Status::TimedOut,
            s => s,
        }
    }

    /// Where the credentials are fetched from; the response itself never holds them.
    pub fn secret_ref(&self) -> String {
        format!("secret_ref://aws/runs/{}/{}", self.run_id, self.id)
    }

    /// The JSON shown to agents, approvers and admins (never a secret).
    pub fn view(&self) -> Value {
        let now = now();
        let status = self.status_at(now);
        let denial_reason = match status {
            Status::TimedOut if self.status == Status::Pending => {
                Some("no approver decided before the request timed out".to_string())
            }
            _ => self.denial_reason.clone(),
        };
        let mut v = json!({
            "grant_id": self.id,
            "status": status.as_str(),
            "secret_ref": self.secret_ref(),
            "expires_at": self.expires_at,
            "workspace_id": self.workspace_id,
            "agent_id": self.agent_id,
            "account_id": self.account_id,
            "role_arn": self.role_arn,
            "run_id": self.run_id,
            "reason": self.reason,
            "actions": self.request.actions,
            "resources": self.request.resources,
            "regions": self.request.regions,
            "ttl_seconds": self.request.ttl_seconds,
            "decision": self.decision,
            "created_at": self.created_at,
            "decide_by": self.decide_by,
            "activated_at": self.activated_at,
            "released_at": self.released_at,
            "hard_revoked": self.hard_revoked,
        });
        if let Some(d) = denial_reason {
            v["denial_reason"] = json!(d);
        }
        if let Some(by) = &self.resolved_by {
            v["resolution"] = json!({ "by": by, "reason": self.resolution, "at": self.resolved_at });
        }
        v["approvals_required"] = json!(self.approvals_required);
        v["approvals"] = json!(self.approvals);
        v
    }

    /// The fields every leaf about this grant carries.
    pub fn leaf_base(&self) -> Value {
        json!({
            "grant_id": self.id,
            "workspace_id": self.workspace_id,
            "agent_id": self.agent_id,
            "account_id": self.account_id,
        })
    }
}

/// The policy decision as stored with the grant.
pub fn decision_json(d: &Decision) -> Value {
    json!({ "decision": d.decision, "reason": d.reason, "rule": d.rule })
}

/// Merges `extra`'s fields into `base` (both JSON objects).
pub fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}
