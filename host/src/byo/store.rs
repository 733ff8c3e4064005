//! Reading BYO rows. Writes happen only inside `Ledger` commits (see `audit::commit`
//! and the handlers), so every change sits in the same transaction as its log leaf.

use crate::App;
use rand::RngCore;
use rusqlite::{params, OptionalExtension, Row};
use serde_json::{json, Value};

pub const PENDING: &str = "pending";
pub const ACTIVE: &str = "active";
pub const FAILED: &str = "failed";
pub const REVOKED: &str = "revoked";

pub fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("{prefix}_{}", hex::encode(b))
}

/// A random (version 4) UUID, the External ID customers put in their trust policy.
pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[derive(Debug, Clone)]
pub struct Grant {
    pub id: String,
    pub workspace_id: String,
    pub role_arn: String,
    pub bucket: String,
    pub region: String,
    pub kms_key_id: Option<String>,
    pub external_id: String,
    pub status: String,
    pub last_verify_error: Option<String>,
    pub last_verify_message: Option<String>,
    pub last_checked_at: Option<i64>,
    pub last_verified_at: Option<i64>,
    pub created_at: i64,
    pub rotated_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const GRANT_COLUMNS: &str = "id, workspace_id, role_arn, bucket, region, kms_key_id, external_id, status, \
    last_verify_error, last_verify_message, last_checked_at, last_verified_at, created_at, rotated_at, revoked_at";

fn grant_row(r: &Row) -> rusqlite::Result<Grant> {
    Ok(Grant {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        role_arn: r.get(2)?,
        bucket: r.get(3)?,
        region: r.get(4)?,
        kms_key_id: r.get(5)?,
        external_id: r.get(6)?,
        status: r.get(7)?,
        last_verify_error: r.get(8)?,
        last_verify_message: r.get(9)?,
        last_checked_at: r.get(10)?,
        last_verified_at: r.get(11)?,
        created_at: r.get(12)?,
        rotated_at: r.get(13)?,
        revoked_at: r.get(14)?,
    })
}

impl Grant {
    pub fn to_json(&self) -> Value {
        let checklist: Vec<Value> = self
            .last_verify_error
            .as_deref()
            .filter(|_| self.status == FAILED)
            .map(|code| super::checklist::entry(code, self))
            .into_iter()
            .collect();
        json!({
            "id": self.id,
            "workspace_id": self.workspace_id,
            "role_arn": self.role_arn,
            "bucket": self.bucket,
            "region": self.region,
            "kms_key_id": self.kms_key_id,
            "external_id": self.external_id,
            "status": self.status,
            "last_verify_error": self.last_verify_error,
            "last_verify_message": self.last_verify_message,
            "last_checked_at": self.last_checked_at,
            "last_verified_at": self.last_verified_at,
            "created_at": self.created_at,
            "rotated_at": self.rotated_at,
            "revoked_at": self.revoked_at,
            "checklist": checklist,
        })
    }
}

/// The workspace's grant that is not revoked, if any (at most one, by a unique index).
pub fn live_grant_in(c: &rusqlite::Connection, ws: &str) -> rusqlite::Result<Option<Grant>> {
    c.query_row(
        &format!("SELECT {GRANT_COLUMNS} FROM byo_grants WHERE workspace_id = ?1 AND status <> 'revoked'"),
        params![ws],
        grant_row,
    )
    .optional()
}

pub async fn live_grant(app: &App, ws: &str) -> Result<Option<Grant>, crate::db::DbError> {
    let ws = ws.to_string();
    app.ledger.db.read(move |c| live_grant_in(c, &ws)).await
}

pub async fn byo_enabled(app: &App, ws: &str) -> Result<bool, crate::db::DbError> {
    let ws = ws.to_string();
    app.ledger
        .db
        .read(move |c| {
            c.query_row(
                "SELECT byo_storage FROM workspace_features WHERE workspace_id = ?1",
                params![ws],
                |r| r.get::<_, bool>(0),
            )
            .optional()
        })
        .await
        .map(|r| r.unwrap_or(false))
}

#[derive(Debug, Clone)]
pub struct Artifact {
    pub seq: i64,
    pub id: String,
    pub workspace_id: String,
    pub grant_id: String,
    pub bucket: String,
    pub s3_key: String,
    pub kind: String,
    pub sha256: Option<String>,
    pub sha256_source: Option<String>,
    pub size_bytes: i64,
    pub etag: Option<String>,
    pub original_filename: String,
    pub run_id: Option<String>,
    pub created_at: i64,
}

pub const ARTIFACT_COLUMNS: &str = "seq, id, workspace_id, grant_id, bucket, s3_key, kind, sha256, sha256_source, \
    size_bytes, etag, original_filename, run_id, created_at";

pub fn artifact_row(r: &Row) -> rusqlite::Result<Artifact> {
    Ok(Artifact {
        seq: r.get(0)?,
        id: r.get(1)?,
        workspace_id: r.get(2)?,
        grant_id: r.get(3)?,
        bucket: r.get(4)?,
        s3_key: r.get(5)?,
        kind: r.get(6)?,
        sha256: r.get(7)?,
        sha256_source: r.get(8)?,
        size_bytes: r.get(9)?,
        etag: r.get(10)?,
        original_filename: r.get(11)?,
        run_id: r.get(12)?,
        created_at: r.get(13)?,
    })
}

impl Artifact {
    pub fn insert(&self, c: &rusqlite::Connection) -> rusqlite::Result<()> {
        c.execute(
            "INSERT INTO byo_artifacts (id, workspace_id, grant_id, bucket, s3_key, kind, sha256, sha256_source, \
             size_bytes, etag, original_filename, run_id, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                self.id,
                self.workspace_id,
                self.grant_id,
                self.bucket,
                self.s3_key,
                self.kind,
                self.sha256,
                self.sha256_source,
                self.size_bytes,
                self.etag,
                self.original_filename,
                self.run_id,
                self.created_at
            ],
        )?;
        Ok(())
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "workspace_id": self.workspace_id,
            "grant_id": self.grant_id,
            "kind": self.kind,
            "sha256": self.sha256,
            "sha256_source": self.sha256_source,
            "size_bytes": self.size_bytes,
            "etag": self.etag,
            "original_filename": self.original_filename,
            "storage_url": format!("byo-s3://{}/{}", self.bucket, self.s3_key),
            "s3_uri": format!("s3://{}/{}", self.bucket, self.s3_key),
            "run_id": self.run_id,
            "created_at": self.created_at,
        })
    }
}

pub async fn artifact(app: &App, ws: &str, id: &str) -> Result<Option<Artifact>, crate::db::DbError> {
    let (ws, id) = (ws.to_string(), id.to_string());
    app.ledger
        .db
        .read(move |c| {
            c.query_row(
                &format!(
                    "SELECT {ARTIFACT_COLUMNS} FROM byo_artifacts WHERE id = ?1 AND workspace_id = ?2 AND deleted_at IS NULL"
                ),
                params![id, ws],
                artifact_row,
            )
            .optional()
        })
        .await
}

/// Ids of the live artifacts registered under `grant` (at most `limit`) and their count.
pub fn artifacts_of_grant(c: &rusqlite::Connection, grant: &str, limit: i64) -> rusqlite::Result<(Vec<String>, i64)> {
    let count = c.query_row(
        "SELECT COUNT(*) FROM byo_artifacts WHERE grant_id = ?1 AND deleted_at IS NULL",
        params![grant],
        |r| r.get(0),
    )?;
    let mut stmt =
        c.prepare("SELECT id FROM byo_artifacts WHERE grant_id = ?1 AND deleted_at IS NULL ORDER BY seq LIMIT ?2")?;
    let ids = stmt
        .query_map(params![grant, limit], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok((ids, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ids_are_v4_uuids() {
        let a = uuid_v4();
        let b = uuid_v4();
        assert_ne!(a, b);
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(groups.iter().map(|g| g.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert!(groups[2].starts_with('4'), "version nibble: {a}");
        assert!("89ab".contains(&groups[3][..1]), "variant bits: {a}");
    }
}
