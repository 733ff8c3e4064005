//! Artifacts by pointer: an object in the customer's bucket, checked through their role
//! (size, ETag, optionally SHA-256) and recorded without copying a byte.

use super::access;
use super::audit::{self, Scope};
use super::calls::{CallLog, Failure};
use super::config::settings;
use super::error::{ByoError, ByoResult};
use super::grant::run_id;
use super::probe::{self, Problem, Target};
use super::store::{self, Artifact, Grant, ACTIVE};
use super::validate;
use crate::api::{ByoBody, QueryParams};
use crate::auth::Principal;
use crate::App;
use aws_sdk_s3::types::{ChecksumMode, ChecksumType};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rusqlite::params;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewArtifact {
    s3_uri: Option<String>,
    expected_sha256: Option<String>,
    /// A JSON number; taken as a `Value` so a negative or fractional size is refused
    /// with the field named instead of a generic parse error.
    expected_size: Option<Value>,
    kind: Option<String>,
    original_filename: Option<String>,
    run_id: Option<String>,
}

struct Valid {
    bucket: String,
    key: String,
    expected_sha256: Option<String>,
    expected_size: Option<u64>,
    kind: String,
    original_filename: String,
    run_id: Option<String>,
}

fn validate(b: &NewArtifact) -> ByoResult<Valid> {
    let uri = b
        .s3_uri
        .as_deref()
        .ok_or_else(|| ByoError::invalid("BYO_INVALID_S3_URI", "s3_uri", "s3_uri is required"))?;
    let (bucket, key) = validate::s3_uri(uri).map_err(|e| ByoError::invalid("BYO_INVALID_S3_URI", "s3_uri", e))?;
    let expected_sha256 = match &b.expected_sha256 {
        None => None,
        Some(s) => Some(validate::sha256_hex(s).map_err(|e| ByoError::field("expected_sha256", e))?),
    };
    let expected_size =
        match &b.expected_size {
            None => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                ByoError::field("expected_size", "expected_size must be a non-negative integer (bytes)")
            })?),
        };
    let kind = match &b.kind {
        None => "file".to_string(),
        Some(k) => {
            validate::token(k, 64).map_err(|e| ByoError::field("kind", format!("kind {e}")))?;
            k.clone()
        }
    };
    let original_filename = match &b.original_filename {
        Some(f) => {
            validate::filename(f)
                .map_err(|e| ByoError::field("original_filename", format!("original_filename {e}")))?;
            f.clone()
        }
        None => {
            let last = key.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(&key);
            last.chars().take(255).collect()
        }
    };
    Ok(Valid {
        bucket,
        key,
        expected_sha256,
        expected_size,
        kind,
        original_filename,
        run_id: run_id(b.run_id.as_deref())?,
    })
}

/// What S3 told us about the object.
struct Checked {
    size: u64,
    etag: Option<String>,
    sha256: Option<String>,
    sha256_source: Option<&'static str>,
}

fn object_problem(f: &Failure, t: &Target, key: &str, action: &str) -> ByoError {
    if f.status == Some(404) || f.is("NoSuchKey") || f.is("NotFound") {
        return ByoError::invalid(
            "BYO_OBJECT_NOT_FOUND",
            "s3_uri",
            format!("s3://{}/{key} does not exist (S3 {action}: {})", t.bucket, f.describe()),
        );
    }
    if f.status == Some(412) || f.is("PreconditionFailed") {
        return ByoError::coded(
            StatusCode::CONFLICT,
            "BYO_OBJECT_CHANGED",
            format!(
                "s3://{}/{key} was overwritten while it was being hashed; register it again",
                t.bucket
            ),
        );
    }
    let mut p = probe::bucket_problem(f, t, action);
    if p.code == "BYO_ACCESS_DENIED" {
        p.message = format!(
            "the role may not call {action} on s3://{}/{key} (without s3:ListBucket a missing object also \
             answers 403): {}",
            t.bucket,
            f.describe()
        );
    }
    p.into_error(&t.workspace_id)
}

/// S3's whole-object SHA-256 as hex, if it has one. A multipart upload's composite
/// checksum (`…-N`, or `ChecksumType::Composite`) is a hash of part hashes, not of the
/// object, and is ignored.
fn whole_object_sha256(checksum: Option<&str>, kind: Option<&ChecksumType>) -> Option<String> {
    let c = checksum?;
    if c.contains('-') || matches!(kind, Some(ChecksumType::Composite)) {
        return None;
    }
    let raw = B64.decode(c).ok()?;
    (raw.len() == 32).then(|| hex::encode(raw))
}

/// HeadObject, size and SHA-256 checks, and streaming the object through SHA-256 when
/// a hash is asked for and S3 holds none.
async fn inspect(app: &App, t: &Target, v: &Valid, log: &mut CallLog) -> ByoResult<Checked> {
    let creds = probe::assume(app, t, "artifact", log)
        .await
        .map_err(|p: Problem| p.into_error(&t.workspace_id))?;
    let s3 = probe::s3(app, creds, &t.region).await;
    let key = v.key.as_str();
    let head = log
        .run("s3:HeadObject", Some(key), || {
            s3.head_object()
                .bucket(&t.bucket)
                .key(key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
        })
        .await
        .map_err(|f| object_problem(&f, t, key, "HeadObject"))?;
    let size = head.content_length().unwrap_or(0).max(0) as u64;
    let raw_etag = head.e_tag().map(str::to_string);
    if let Some(want) = v.expected_size {
        if want != size {
            return Err(ByoError::invalid(
                "BYO_SIZE_MISMATCH",
                "expected_size",
                format!("s3://{}/{key} is {size} bytes, expected_size says {want}", t.bucket),
            ));
        }
    }
    let mut sha256 = whole_object_sha256(head.checksum_sha256(), head.checksum_type());
    let mut source = sha256.as_ref().map(|_| "s3-checksum");
    if let (None, Some(_)) = (&sha256, &v.expected_sha256) {
        let limit = settings().max_hash_bytes;
        if size > limit {
            return Err(ByoError::invalid(
                "BYO_HASH_LIMIT_EXCEEDED",
                "expected_sha256",
                format!(
                    "s3://{}/{key} has no whole-object SHA-256 checksum in S3 and is {size} bytes, over the \
                     {limit}-byte limit for hashing it here. Upload it with a SHA-256 checksum \
                     (x-amz-checksum-algorithm: SHA256, full-object) or register it without expected_sha256",
                    t.bucket
                ),
            ));
        }
        sha256 = Some(stream_sha256(&s3, t, key, raw_etag.as_deref(), limit, log).await?);
        source = Some("streamed");
    }
    if let (Some(want), Some(got)) = (&v.expected_sha256, &sha256) {
        if want != got {
            return Err(ByoError::invalid(
                "BYO_SHA256_MISMATCH",
                "expected_sha256",
                format!(
                    "s3://{}/{key} has SHA-256 {got} ({}), expected_sha256 says {want}",
                    t.bucket,
                    source.unwrap_or("")
                ),
            ));
        }
    }
    Ok(Checked {
        size,
        etag: raw_etag.map(|e| e.trim_matches('"').to_string()),
        sha256,
        sha256_source: source,
    })
}

/// `GetObject` (pinned to the ETag just seen, so the bytes hashed are the object that
/// was measured) through SHA-256, reading at most `limit` bytes, each chunk under the
/// call time limit.
async fn stream_sha256(
    s3: &aws_sdk_s3::Client,
    t: &Target,
    key: &str,
    etag: Option<&str>,
    limit: u64,
    log: &mut CallLog,
) -> ByoResult<String> {
    let out = log
        .run("s3:GetObject", Some(key), || {
            let mut req = s3.get_object().bucket(&t.bucket).key(key);
            if let Some(e) = etag {
                req = req.if_match(e);
            }
            req.send()
        })
        .await
        .map_err(|f| object_problem(&f, t, key, "GetObject"))?;
    let mut body = out.body;
    let mut hasher = Sha256::new();
    let mut read = 0u64;
    loop {
        match tokio::time::timeout(settings().call_timeout, body.try_next()).await {
            Err(_) => {
                log.amend_last(read, Some("Timeout"));
                return Err(Problem {
                    code: "BYO_PROBE_TIMEOUT",
                    message: format!("reading s3://{}/{key} stalled after {read} bytes", t.bucket),
                    host: None,
                }
                .into_error(&t.workspace_id));
            }
            Ok(Err(e)) => {
                log.amend_last(read, Some("StreamError"));
                return Err(Problem {
                    code: "BYO_AWS_ERROR",
                    message: format!("reading s3://{}/{key} failed after {read} bytes: {e}", t.bucket),
                    host: None,
                }
                .into_error(&t.workspace_id));
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => {
                read += chunk.len() as u64;
                if read > limit {
                    log.amend_last(read, Some("HashLimitExceeded"));
                    return Err(ByoError::invalid(
                        "BYO_HASH_LIMIT_EXCEEDED",
                        "expected_sha256",
                        format!(
                            "s3://{}/{key} grew past the {limit}-byte hashing limit while being read",
                            t.bucket
                        ),
                    ));
                }
                hasher.update(&chunk);
            }
        }
    }
    log.amend_last(read, None);
    Ok(hex::encode(hasher.finalize()))
}

fn not_active(g: Option<&Grant>, ws: &str) -> ByoError {
    let (status, message) = match g {
        None => (
            Value::Null,
            format!("workspace {ws} has no BYO grant; register one with POST /v1/workspaces/{ws}/byo/grant"),
        ),
        Some(g) => (
            json!(g.status),
            format!(
                "grant {} is {}{}; artifacts can be registered only while it is active. {}",
                g.id,
                g.status,
                g.last_verify_error
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default(),
                super::grant::next_step(g)
            ),
        ),
    };
    ByoError::detailed(
        StatusCode::CONFLICT,
        "BYO_GRANT_NOT_ACTIVE",
        message,
        json!({ "grant_status": status }),
    )
}

pub async fn register(
    State(app): State<Arc<App>>,
    Path(ws): Path<String>,
    who: Principal,
    ByoBody(body): ByoBody<NewArtifact>,
) -> ByoResult<(StatusCode, Json<Value>)> {
    access::authorize(&app, &who, &ws).await?;
    let v = validate(&body)?;
    let g = store::live_grant(&app, &ws).await?;
    let g = match g {
        Some(g) if g.status == ACTIVE => g,
        other => return Err(not_active(other.as_ref(), &ws)),
    };
    if v.bucket != g.bucket {
        return Err(ByoError::invalid(
            "BYO_BUCKET_MISMATCH",
            "s3_uri",
            format!(
                "s3_uri names bucket {} but this workspace's grant covers only {}",
                v.bucket, g.bucket
            ),
        ));
    }
    let t = Target::from(&g);
    let mut log = CallLog::default();
    let inspected = inspect(&app, &t, &v, &mut log).await;

    // The grant may have been disconnected or rotated while S3 was answering: decide
    // and write under the workspace lock, so an artifact never lands on a dead grant.
    let _guard = access::lock(&ws).await;
    let current = store::live_grant(&app, &ws).await?;
    let still_active = current.as_ref().is_some_and(|c| c.id == g.id && c.status == ACTIVE);
    let mut scope = Scope {
        workspace_id: ws.clone(),
        grant_id: Some(g.id.clone()),
        role_arn: g.role_arn.clone(),
        bucket: g.bucket.clone(),
        run_id: v.run_id.clone(),
        artifact_id: None,
    };
    let checked = match (inspected, still_active) {
        (Ok(c), true) => c,
        (Ok(_), false) => {
            audit::commit(&app, &scope, log.records, None, None).await?;
            return Err(not_active(current.as_ref(), &ws));
        }
        (Err(e), _) => {
            audit::commit(&app, &scope, log.records, None, None).await?;
            return Err(e);
        }
    };
    let a = Artifact {
        seq: 0,
        id: store::new_id("art"),
        workspace_id: ws.clone(),
        grant_id: g.id.clone(),
        bucket: v.bucket,
        s3_key: v.key,
        kind: v.kind,
        sha256: checked.sha256,
        sha256_source: checked.sha256_source.map(str::to_string),
        size_bytes: checked.size as i64,
        etag: checked.etag,
        original_filename: v.original_filename,
        run_id: v.run_id,
        created_at: crate::now_secs() as i64,
    };
    scope.artifact_id = Some(a.id.clone());
    let mut event = a.to_json();
    event["by"] = json!(who.key_id);
    let row = a.clone();
    audit::commit(
        &app,
        &scope,
        log.records,
        Some(("byo.artifact.registered", event)),
        Some(Box::new(move |c| row.insert(c))),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(a.to_json())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

pub async fn list(
    State(app): State<Arc<App>>,
    Path(ws): Path<String>,
    who: Principal,
    QueryParams(q): QueryParams<ListQuery>,
) -> ByoResult<Json<Value>> {
    access::authorize(&app, &who, &ws).await?;
    let limit = audit::parse_limit(q.limit.as_deref())?;
    let after = q.cursor.as_deref().map(audit::decode_cursor).transpose()?.unwrap_or(0);
    let rows = app
        .ledger
        .db
        .read(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {} FROM byo_artifacts WHERE workspace_id = ?1 AND deleted_at IS NULL AND seq > ?2 \
                 ORDER BY seq LIMIT ?3",
                store::ARTIFACT_COLUMNS
            ))?;
            let rows = stmt
                .query_map(params![ws, after, limit + 1], store::artifact_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await?;
    let rows = rows.into_iter().map(|a| (a.seq, a.to_json())).collect();
    Ok(Json(audit::paged(rows, limit, "artifacts")))
}

fn artifact_not_found(ws: &str, id: &str) -> ByoError {
    ByoError::coded(
        StatusCode::NOT_FOUND,
        "BYO_ARTIFACT_NOT_FOUND",
        format!("no artifact {id} in workspace {ws}"),
    )
}

pub async fn get(
    State(app): State<Arc<App>>,
    Path((ws, id)): Path<(String, String)>,
    who: Principal,
) -> ByoResult<Json<Value>> {
    access::authorize(&app, &who, &ws).await?;
    let a = store::artifact(&app, &ws, &id)
        .await?
        .ok_or_else(|| artifact_not_found(&ws, &id))?;
    Ok(Json(a.to_json()))
}

/// Forgets the pointer; the object stays in the customer's bucket.
pub async fn delete(
    State(app): State<Arc<App>>,
    Path((ws, id)): Path<(String, String)>,
    who: Principal,
) -> ByoResult<Json<Value>> {
    access::authorize(&app, &who, &ws).await?;
    let _guard = access::lock(&ws).await;
    let a = store::artifact(&app, &ws, &id)
        .await?
        .ok_or_else(|| artifact_not_found(&ws, &id))?;
    let (rid, now) = (a.id.clone(), crate::now_secs() as i64);
    app.ledger
        .record(
            "byo.artifact.deleted",
            json!({ "workspace_id": ws, "artifact_id": a.id, "grant_id": a.grant_id, "by": who.key_id }),
            Some(Box::new(move |c| {
                c.execute(
                    "UPDATE byo_artifacts SET deleted_at = ?2 WHERE id = ?1",
                    params![rid, now],
                )?;
                Ok(())
            })),
        )
        .await?;
    Ok(Json(json!({ "id": id, "deleted": true })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_object_checksums_count() {
        let digest = B64.encode(Sha256::digest(b"hello"));
        let hex_digest = hex::encode(Sha256::digest(b"hello"));
        assert_eq!(whole_object_sha256(Some(&digest), None), Some(hex_digest.clone()));
        assert_eq!(
            whole_object_sha256(Some(&digest), Some(&ChecksumType::FullObject)),
            Some(hex_digest)
        );
        assert_eq!(whole_object_sha256(Some(&format!("{digest}-3")), None), None);
        assert_eq!(whole_object_sha256(Some(&digest), Some(&ChecksumType::Composite)), None);
        assert_eq!(whole_object_sha256(Some("bm90IGEgaGFzaA=="), None), None);
        assert_eq!(whole_object_sha256(None, None), None);
    }
}
