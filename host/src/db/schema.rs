//! The SQLite schema. One file so a newcomer sees every table at once.

pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS leaves (
    idx   INTEGER PRIMARY KEY,       -- position in the log
    bytes BLOB NOT NULL,             -- leaf bytes exactly as the enclave wrote them
    mac   BLOB NOT NULL              -- the enclave's MAC, needed to restore it
);
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
    created_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id           TEXT PRIMARY KEY,
    hash         BLOB NOT NULL UNIQUE,   -- SHA-256 of the key; the key itself is never stored
    role         TEXT NOT NULL,
    workspace_id TEXT REFERENCES workspaces(id),
    agent_id     TEXT REFERENCES agents(id),
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
"#;
