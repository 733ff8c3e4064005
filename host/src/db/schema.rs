//! The SQLite schema. One file so a newcomer sees every table at once.

use rusqlite::Connection;

pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS leaves (
    idx   INTEGER PRIMARY KEY,       -- position in the log
    bytes BLOB NOT NULL,             -- leaf bytes exactly as the enclave wrote them
    mac   BLOB NOT NULL,             -- the enclave's MAC, needed to restore it
    workspace_id TEXT                -- whose leaf (leaf::workspace_of); NULL = operator-level
);
-- The Merkle tree's full hash tiles (C2SP tlog-tiles): `level` L holds hashes of tree
-- level 8·L, 256 per tile, end to end. Derived from `leaves`; a lost tile is rebuilt.
CREATE TABLE IF NOT EXISTS tiles (
    level  INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    hashes BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
-- Leaves stranded past a hole that died with the enclave (never released; kept for forensics).
CREATE TABLE IF NOT EXISTS orphaned_leaves (
    idx         INTEGER PRIMARY KEY,
    bytes       BLOB NOT NULL,
    mac         BLOB NOT NULL,
    orphaned_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    jti TEXT PRIMARY KEY,
    idx INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size       INTEGER PRIMARY KEY,
    note       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS workspaces (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    disabled_at  INTEGER                 -- set once by POST …/agents/{agent}/disable; final
);
CREATE TABLE IF NOT EXISTS api_keys (
    id           TEXT PRIMARY KEY,
    hash         BLOB NOT NULL UNIQUE,   -- SHA-256 of the key; the key itself is never stored
    role         TEXT NOT NULL,
    workspace_id TEXT REFERENCES workspaces(id),
    agent_id     TEXT REFERENCES agents(id),
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER                 -- approximate: written at most once a minute per key
);
-- AWS access grants (host/src/grants): ceilings, grants, hard revocations, webhooks.
CREATE TABLE IF NOT EXISTS grant_ceilings (
    workspace_id            TEXT NOT NULL REFERENCES workspaces(id),
    account_id              TEXT NOT NULL,
    ceiling                 TEXT NOT NULL,   -- JSON of grants::policy::Ceiling
    pending_timeout_seconds INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, account_id)
);
-- The External ID sealgate sends when assuming a workspace's role in an account (issue 9):
-- minted on first need, kept when the ceiling is replaced or deleted (trust policies name
-- it); verified_at is when a probe last proved the role refuses any other.
CREATE TABLE IF NOT EXISTS grant_external_ids (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    account_id   TEXT NOT NULL,
    external_id  TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    verified_at  INTEGER,
    PRIMARY KEY (workspace_id, account_id)
);
CREATE TABLE IF NOT EXISTS grants (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces(id),
    agent_id        TEXT NOT NULL REFERENCES agents(id),
    account_id      TEXT NOT NULL,
    role_arn        TEXT NOT NULL,   -- the ceiling's role when requested; credentials use only it
    run_id          TEXT NOT NULL,
    request         TEXT NOT NULL,   -- JSON {actions, resources, regions, ttl_seconds}
    reason          TEXT NOT NULL,
    status          TEXT NOT NULL,   -- pending | active | denied | timed_out | expired | released
    decision        TEXT NOT NULL,   -- JSON of the policy decision at request time
    denial_reason   TEXT,
    idempotency_key TEXT,
    request_sha256  TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    decide_by       INTEGER,         -- pending: when it times out
    activated_at    INTEGER,
    expires_at      INTEGER,
    max_ttl_seconds INTEGER NOT NULL, -- the ceiling's, when requested (bounds any session's life)
    resolved_by     TEXT,
    resolution      TEXT,
    resolved_at     INTEGER,
    released_at     INTEGER,
    hard_revoked    INTEGER NOT NULL DEFAULT 0,
    credentials_issued INTEGER NOT NULL DEFAULT 0,
    requested_by    TEXT,            -- the key that created the request (it can never approve it)
    approvals_required INTEGER NOT NULL DEFAULT 1 -- distinct approver keys needed (the rule's)
);
-- Approvals given so far to a pending grant, one per approver key (grants/approvals.rs).
CREATE TABLE IF NOT EXISTS grant_approvals (
    grant_id   TEXT NOT NULL REFERENCES grants(id),
    key_id     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    decided_at INTEGER NOT NULL,
    PRIMARY KEY (grant_id, key_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS grants_idempotency
    ON grants (workspace_id, agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS grants_by_status ON grants (status, workspace_id, created_at);
-- Deny statements put on a role by a hard release, pruned once no session can outlive them.
CREATE TABLE IF NOT EXISTS grant_revocations (
    grant_id    TEXT PRIMARY KEY REFERENCES grants(id),
    role_arn    TEXT NOT NULL,
    policy_name TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    prune_after INTEGER NOT NULL,
    pruned_at   INTEGER
);
CREATE TABLE IF NOT EXISTS grant_webhooks (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces(id),
    url          TEXT NOT NULL,
    secret       TEXT NOT NULL,      -- the HMAC key (needed to sign; never logged or returned again)
    updated_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS grant_webhook_deliveries (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    grant_id        TEXT NOT NULL,
    event           TEXT NOT NULL,
    body            TEXT NOT NULL,   -- the exact JSON POSTed (and signed)
    attempts        INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    state           TEXT NOT NULL,   -- pending | delivered | failed
    last_error      TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS grant_webhook_due ON grant_webhook_deliveries (state, next_attempt_ms);
-- BYO storage (host/src/byo): per-workspace entitlement, bucket grants, artifacts by
-- pointer, and one row per call sealgate made into a customer account.
CREATE TABLE IF NOT EXISTS workspace_features (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces(id),
    byo_storage  INTEGER NOT NULL DEFAULT 0,
    updated_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS byo_grants (
    id                  TEXT PRIMARY KEY,
    workspace_id        TEXT NOT NULL REFERENCES workspaces(id),
    role_arn            TEXT NOT NULL,
    bucket              TEXT NOT NULL,
    region              TEXT NOT NULL,
    kms_key_id          TEXT,
    external_id         TEXT NOT NULL,
    status              TEXT NOT NULL,   -- pending | active | failed | revoked
    last_verify_error   TEXT,            -- BYO_* code of the last failed probe
    last_verify_message TEXT,
    last_checked_at     INTEGER,         -- last probe, whatever its outcome
    last_verified_at    INTEGER,         -- last probe that passed
    created_at          INTEGER NOT NULL,
    rotated_at          INTEGER,
    revoked_at          INTEGER
);
-- At most one grant per workspace that is not revoked; revoked ones stay for audit.
CREATE UNIQUE INDEX IF NOT EXISTS byo_grants_one_live ON byo_grants(workspace_id) WHERE status <> 'revoked';
CREATE TABLE IF NOT EXISTS byo_artifacts (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    workspace_id      TEXT NOT NULL REFERENCES workspaces(id),
    grant_id          TEXT NOT NULL REFERENCES byo_grants(id),
    bucket            TEXT NOT NULL,
    s3_key            TEXT NOT NULL,
    kind              TEXT NOT NULL,
    sha256            TEXT,
    sha256_source     TEXT,            -- s3-checksum | streamed | NULL (not known)
    size_bytes        INTEGER NOT NULL,
    etag              TEXT,
    original_filename TEXT NOT NULL,
    run_id            TEXT,
    created_at        INTEGER NOT NULL,
    deleted_at        INTEGER
);
CREATE INDEX IF NOT EXISTS byo_artifacts_ws ON byo_artifacts(workspace_id, seq);
CREATE INDEX IF NOT EXISTS byo_artifacts_grant ON byo_artifacts(grant_id) WHERE deleted_at IS NULL;
CREATE TABLE IF NOT EXISTS byo_audit (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id    TEXT NOT NULL,
    grant_id        TEXT,
    event_type      TEXT NOT NULL,     -- sts:AssumeRole, s3:HeadObject, ...
    aws_request_id  TEXT,
    role_arn        TEXT NOT NULL,
    bucket          TEXT NOT NULL,
    s3_key          TEXT,
    bytes_read      INTEGER,
    worker_hostname TEXT NOT NULL,
    outcome         TEXT NOT NULL,     -- ok | error | timeout
    error_code      TEXT,
    artifact_id     TEXT,
    run_id          TEXT,
    ts              INTEGER NOT NULL,  -- Unix milliseconds
    log_index       INTEGER NOT NULL   -- the byo.call leaf recording the same call
);
CREATE INDEX IF NOT EXISTS byo_audit_ws ON byo_audit(workspace_id, seq);
CREATE INDEX IF NOT EXISTS byo_audit_run ON byo_audit(workspace_id, run_id, seq);
-- KMS sealing (kms_seal.rs): ciphertexts only. Each row is a KMS data key as KMS
-- encrypted it (CiphertextBlob) and, once the enclave has sealed something under it, the
-- enclave's sealed state (AES-256-GCM under that data key). Append-only; the newest row
-- with a sealed state is the one unsealed at restart.
CREATE TABLE IF NOT EXISTS kms_sealed_state (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id          TEXT NOT NULL,       -- the KMS key id / ARN / alias the data key came from
    ciphertext_blob BLOB NOT NULL,       -- KMS CiphertextBlob of the data key
    sealed          BLOB,                -- the enclave's sealed keys and configuration; NULL until the first Hello
    created_at      INTEGER NOT NULL
);
"#;

/// Columns added to tables after they were first created: `(table, column, definition)`.
/// `CREATE TABLE IF NOT EXISTS` leaves an existing table alone, so [`migrate`] adds each
/// one a database opened from an older release lacks. Append only; never reorder.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("agents", "disabled_at", "INTEGER"),
    ("api_keys", "last_used_at", "INTEGER"),
    ("grants", "requested_by", "TEXT"),
    ("grants", "approvals_required", "INTEGER NOT NULL DEFAULT 1"),
];

/// Brings a database created by an older sealgate up to [`SCHEMA`]: `CREATE TABLE IF
/// NOT EXISTS` never adds a column to a table that already exists, so each column added
/// later is added here, once (with its back-fill where it needs one). Runs at every open,
/// after `SCHEMA`, on the writer connection.
pub fn migrate(c: &Connection) -> rusqlite::Result<()> {
    if !has_column(c, "leaves", "workspace_id")? {
        backfill_leaf_workspaces(c)?;
    }
    for (table, column, definition) in ADDED_COLUMNS {
        if !has_column(c, table, column)? {
            c.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"))?;
        }
    }
    Ok(())
}

fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut st = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = st.query_map([], |r| r.get::<_, String>(1))?;
    for name in names {
        if name? == column {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `leaves.workspace_id` (who may read a leaf's contents, ARCHITECTURE §5): added, and filled
/// from each stored leaf's bytes, in one transaction.
fn backfill_leaf_workspaces(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE; ALTER TABLE leaves ADD COLUMN workspace_id TEXT;")?;
    let filled = (|| {
        let mut read = conn.prepare("SELECT idx, bytes FROM leaves")?;
        let mut write = conn.prepare("UPDATE leaves SET workspace_id = ?2 WHERE idx = ?1")?;
        let rows = read.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        let mut n = 0u64;
        for row in rows {
            let (idx, bytes) = row?;
            if let Some(ws) = sealgate_shared::leaf::workspace_of(&bytes) {
                write.execute(rusqlite::params![idx, ws])?;
                n += 1;
            }
        }
        Ok(n)
    })();
    match filled {
        Ok(n) => {
            conn.execute_batch("COMMIT;")?;
            tracing::info!(leaves = n, "attributed stored audit leaves to their workspaces");
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK;");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrate_adds_missing_columns_and_is_idempotent() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE agents (id TEXT PRIMARY KEY, workspace_id TEXT, name TEXT, created_at INTEGER);
             CREATE TABLE api_keys (id TEXT PRIMARY KEY, created_at INTEGER);
             CREATE TABLE grants (id TEXT PRIMARY KEY);
             CREATE TABLE leaves (idx INTEGER PRIMARY KEY, bytes BLOB NOT NULL, mac BLOB NOT NULL);
             INSERT INTO grants (id) VALUES ('g1');",
        )
        .unwrap();
        migrate(&c).unwrap();
        migrate(&c).unwrap();
        let n: i64 = c
            .query_row("SELECT approvals_required FROM grants WHERE id = 'g1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 1);
        c.prepare("SELECT disabled_at FROM agents").unwrap();
        c.prepare("SELECT last_used_at FROM api_keys").unwrap();
        c.prepare("SELECT requested_by FROM grants").unwrap();
    }

    /// A database from before `leaves.workspace_id` gains the column, filled from the
    /// leaves it already holds, and opening it again changes nothing.
    #[test]
    fn leaf_workspaces_are_backfilled() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE leaves (idx INTEGER PRIMARY KEY, bytes BLOB NOT NULL, mac BLOB NOT NULL);")
            .unwrap();
        let leaves: [&[u8]; 3] = [
            br#"{"v":1,"index":0,"ts":1,"origin":"enclave","kind":"enclave.genesis","data":{}}"#,
            br#"{"v":1,"index":1,"ts":1,"origin":"host","kind":"admin.agent.created","data":{"workspace_id":"ws_a","agent_id":"ag"}}"#,
            br#"{"v":1,"index":2,"ts":1,"origin":"enclave","kind":"token.issued","data":{"jti":"j","sub":"ws:ws_b:agent:ag"}}"#,
        ];
        for (i, b) in leaves.iter().enumerate() {
            conn.execute(
                "INSERT INTO leaves (idx, bytes, mac) VALUES (?1, ?2, x'00')",
                rusqlite::params![i as i64, b],
            )
            .unwrap();
        }
        for _ in 0..2 {
            conn.execute_batch(SCHEMA).unwrap();
            migrate(&conn).unwrap();
        }
        let ws: Vec<Option<String>> = conn
            .prepare("SELECT workspace_id FROM leaves ORDER BY idx")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ws, vec![None, Some("ws_a".into()), Some("ws_b".into())]);
    }
}
