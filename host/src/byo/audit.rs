//! The BYO audit: one row per call into a customer account, each also a `byo.call`
//! leaf in the transparency log, so the customer's security team can match sealgate's
//! record, call by call and request id by request id, against their CloudTrail — and
//! an auditor can check that the host did not edit the table after the fact.

use super::calls::CallRecord;
use super::error::{ByoError, ByoResult};
use crate::db::{Apply, PendingLeaf};
use crate::error::ApiError;
use crate::App;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use rusqlite::params;
use sealgate_shared::protocol::{LeafRecord, Op, Reply};
use serde_json::{json, Value};

/// Whose calls these are.
#[derive(Debug, Clone)]
pub struct Scope {
    pub workspace_id: String,
    pub grant_id: Option<String>,
    pub role_arn: String,
    pub bucket: String,
    pub run_id: Option<String>,
    /// Set only when the operation registered this artifact.
    pub artifact_id: Option<String>,
}

async fn append(app: &App, kind: &str, event: &Value) -> Result<LeafRecord, ApiError> {
    let reply = app
        .ledger
        .call(Op::Append {
            kind: kind.into(),
            event: event.to_string(),
        })
        .await?;
    match reply {
        Reply::Appended(leaf) => Ok(leaf),
        _ => Err(ApiError::Internal(
            "the enclave answered Append with something else".into(),
        )),
    }
}

fn call_event(scope: &Scope, c: &CallRecord) -> Value {
    json!({
        "workspace_id": scope.workspace_id,
        "grant_id": scope.grant_id,
        "event_type": c.event_type,
        "aws_request_id": c.aws_request_id,
        "role_arn": scope.role_arn,
        "bucket": scope.bucket,
        "s3_key": c.s3_key,
        "bytes_read": c.bytes_read,
        "worker_hostname": super::config::hostname(),
        "outcome": c.outcome,
        "error_code": c.error_code,
        "artifact_id": scope.artifact_id,
        "run_id": scope.run_id,
        "ts": c.ts,
    })
}

/// Appends one `byo.call` leaf per call and then the operation's own leaf (`op`), and
/// commits all of them with the audit rows and `apply` in one transaction: either the
/// operation's change and its full record land together, or the change does not land.
/// If the enclave fails part-way, the calls already logged are still committed with
/// their rows (they happened) and the operation's change is not.
pub async fn commit(
    app: &App,
    scope: &Scope,
    calls: Vec<CallRecord>,
    op: Option<(&str, Value)>,
    apply: Option<Apply>,
) -> Result<(), ApiError> {
    let mut leaves = Vec::new();
    let mut rows = Vec::new();
    let mut failed = None;
    for c in calls {
        match append(app, "byo.call", &call_event(scope, &c)).await {
            Ok(leaf) => {
                rows.push((c, leaf.index));
                leaves.push(PendingLeaf::new(leaf, None));
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let mut apply = apply;
    if let (None, Some((kind, event))) = (&failed, op) {
        match append(app, kind, &event).await {
            Ok(leaf) => leaves.push(PendingLeaf::new(leaf, None)),
            Err(e) => failed = Some(e),
        }
    }
    if failed.is_some() {
        apply = None;
    }
    if leaves.is_empty() {
        return failed.map_or(Ok(()), Err);
    }
    let scope = scope.clone();
    let host = super::config::hostname().to_string();
    let all: Apply = Box::new(move |conn| {
        {
            let mut insert = conn.prepare_cached(
                "INSERT INTO byo_audit (workspace_id, grant_id, event_type, aws_request_id, role_arn, bucket, s3_key, \
                 bytes_read, worker_hostname, outcome, error_code, artifact_id, run_id, ts, log_index) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?;
            for (c, index) in &rows {
                insert.execute(params![
                    scope.workspace_id,
                    scope.grant_id,
                    c.event_type,
                    c.aws_request_id,
                    scope.role_arn,
                    scope.bucket,
                    c.s3_key,
                    c.bytes_read.map(|n| n as i64),
                    host,
                    c.outcome,
                    c.error_code,
                    scope.artifact_id,
                    scope.run_id,
                    c.ts,
                    *index as i64
                ])?;
            }
        }
        match apply {
            Some(a) => a(conn),
            None => Ok(()),
        }
    });
    app.ledger.commit(leaves, Some(all)).await?;
    failed.map_or(Ok(()), Err)
}

/// Opaque page cursors: the last row's sequence number, versioned and base64url'd so
/// clients do not build them.
pub fn encode_cursor(seq: i64) -> String {
    B64URL.encode(format!("c1:{seq}"))
}

pub fn decode_cursor(s: &str) -> ByoResult<i64> {
    let bad = || ByoError::invalid("BYO_INVALID_CURSOR", "cursor", "cursor is not one this API returned");
    let raw = B64URL.decode(s).map_err(|_| bad())?;
    let text = std::str::from_utf8(&raw).map_err(|_| bad())?;
    let seq = text.strip_prefix("c1:").ok_or_else(bad)?;
    match seq.parse::<i64>() {
        Ok(n) if n >= 0 && seq == n.to_string() => Ok(n),
        _ => Err(bad()),
    }
}

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// `limit` from a query string: 1–500, default 50.
pub fn parse_limit(s: Option<&str>) -> ByoResult<i64> {
    match s {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ByoError::field(
                "limit",
                format!("limit must be an integer from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

/// One page of a workspace's BYO audit, oldest first.
pub async fn page(app: &App, ws: &str, run_id: Option<String>, after: i64, limit: i64) -> ByoResult<Value> {
    let ws = ws.to_string();
    let rows = app
        .ledger
        .db
        .read(move |c| {
            let mut stmt = c.prepare(
                "SELECT seq, grant_id, event_type, aws_request_id, role_arn, bucket, s3_key, bytes_read, \
                 worker_hostname, outcome, error_code, artifact_id, run_id, ts, log_index \
                 FROM byo_audit WHERE workspace_id = ?1 AND (?2 IS NULL OR run_id = ?2) AND seq > ?3 \
                 ORDER BY seq LIMIT ?4",
            )?;
            let rows = stmt
                .query_map(params![ws, run_id, after, limit + 1], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        json!({
                            "grant_id": r.get::<_, Option<String>>(1)?,
                            "event_type": r.get::<_, String>(2)?,
                            "aws_request_id": r.get::<_, Option<String>>(3)?,
                            "role_arn": r.get::<_, String>(4)?,
                            "bucket": r.get::<_, String>(5)?,
                            "s3_key": r.get::<_, Option<String>>(6)?,
                            "bytes_read": r.get::<_, Option<i64>>(7)?,
                            "worker_hostname": r.get::<_, String>(8)?,
                            "outcome": r.get::<_, String>(9)?,
                            "error_code": r.get::<_, Option<String>>(10)?,
                            "artifact_id": r.get::<_, Option<String>>(11)?,
                            "run_id": r.get::<_, Option<String>>(12)?,
                            "ts": r.get::<_, i64>(13)?,
                            "log_index": r.get::<_, i64>(14)?,
                        }),
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await?;
    Ok(paged(rows, limit, "entries"))
}

/// `{<name>: [...], next_cursor}` from up to `limit + 1` rows of `(seq, item)`.
pub fn paged(mut rows: Vec<(i64, Value)>, limit: i64, name: &str) -> Value {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = match (more, rows.last()) {
        (true, Some((seq, _))) => Value::String(encode_cursor(*seq)),
        _ => Value::Null,
    };
    let items: Vec<Value> = rows.into_iter().map(|(_, v)| v).collect();
    json!({ name: items, "next_cursor": next })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    run_id: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// `GET /v1/workspaces/{ws}/byo/audit?run_id&cursor&limit`.
pub async fn list(
    axum::extract::State(app): axum::extract::State<std::sync::Arc<App>>,
    axum::extract::Path(ws): axum::extract::Path<String>,
    who: crate::auth::Principal,
    crate::api::QueryParams(q): crate::api::QueryParams<AuditQuery>,
) -> ByoResult<axum::Json<Value>> {
    super::access::authorize_audit_read(&app, &who, &ws).await?;
    let run_id = super::grant::run_id(q.run_id.as_deref())?;
    let limit = parse_limit(q.limit.as_deref())?;
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?.unwrap_or(0);
    Ok(axum::Json(page(&app, &ws, run_id, after, limit).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        for n in [0, 1, 42, i64::MAX] {
            assert_eq!(decode_cursor(&encode_cursor(n)).ok(), Some(n));
        }
        for bad in [
            "",
            "!!",
            "MTIz",
            &B64URL.encode("c1:-1"),
            &B64URL.encode("c1:01"),
            &B64URL.encode("c2:5"),
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None).ok(), Some(50));
        assert_eq!(parse_limit(Some("500")).ok(), Some(500));
        for bad in ["0", "501", "-1", "x", ""] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pages_stop_with_a_null_cursor() {
        let rows = |n: i64| (1..=n).map(|i| (i, json!(i))).collect::<Vec<_>>();
        let p = paged(rows(3), 2, "entries");
        assert_eq!(p["entries"], json!([1, 2]));
        assert_eq!(
            decode_cursor(p["next_cursor"].as_str().unwrap_or_default()).ok(),
            Some(2)
        );
        let last = paged(rows(2), 2, "entries");
        assert_eq!(last["next_cursor"], Value::Null);
    }
}
