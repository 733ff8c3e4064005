//! The witness's memory: per log origin, the size and root of the latest checkpoint it
//! cosigned, in SQLite (`STATE/witness.db`).
//!
//! This row is the whole of the witness's promise. Forgetting it, or moving it
//! backwards, would let a log show one history to some and another to others, so:
//! every change is a compare-and-swap on the recorded size and root (two submissions
//! checked against the same state cannot both be recorded: the spec's race where a
//! slower request rolls back a faster one), and a commit is durable (WAL with
//! `synchronous = FULL`) before the cosignature leaves the witness.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sealgate_shared::merkle::Hash;
use std::path::Path;
use std::sync::Mutex;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS logs (
    origin     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL CHECK (size >= 0),
    root       BLOB NOT NULL CHECK (length(root) = 32),
    -- the log key(s) that verified the recorded checkpoint
    log_vkeys  TEXT NOT NULL,
    -- the recorded checkpoint with the log's signature(s) and ours, for monitors
    checkpoint TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("witness state: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("witness state is corrupt: {0}")]
    Corrupt(String),
}

/// What the witness last cosigned for one origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub size: u64,
    pub root: Hash,
}

/// The new state to record, with what monitors are served.
#[derive(Debug, Clone)]
pub struct Update<'a> {
    pub origin: &'a str,
    pub recorded: Recorded,
    pub log_vkeys: &'a [String],
    /// The checkpoint with the log's signature(s) and this witness's cosignature.
    pub checkpoint: &'a str,
    pub now: u64,
}

/// The outcome of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap {
    Done,
    /// The state was not the expected one; this is what it is now.
    Conflict(Option<Recorded>),
}

pub struct State {
    conn: Mutex<Connection>,
}

fn size_to_sql(size: u64) -> Result<i64, StateError> {
    i64::try_from(size).map_err(|_| StateError::Corrupt(format!("size {size} does not fit")))
}

fn read(conn: &Connection, origin: &str) -> Result<Option<Recorded>, StateError> {
    let row: Option<(i64, Vec<u8>)> = conn
        .query_row("SELECT size, root FROM logs WHERE origin = ?1", [origin], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    row.map(|(size, root)| {
        Ok(Recorded {
            size: u64::try_from(size).map_err(|_| StateError::Corrupt(format!("negative size for {origin}")))?,
            root: root
                .try_into()
                .map_err(|_| StateError::Corrupt(format!("root of {origin} is not 32 bytes")))?,
        })
    })
    .transpose()
}

impl State {
    /// Opens (creating if needed) the state database.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: the WAL is fsynced at every commit, so a cosigned state survives a crash.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The recorded state of `origin`; `None` if it was never cosigned.
    pub fn get(&self, origin: &str) -> Result<Option<Recorded>, StateError> {
        read(&self.conn(), origin)
    }

    /// The recorded checkpoint (log signatures and our cosignature) of `origin`.
    pub fn checkpoint(&self, origin: &str) -> Result<Option<String>, StateError> {
        Ok(self
            .conn()
            .query_row("SELECT checkpoint FROM logs WHERE origin = ?1", [origin], |r| r.get(0))
            .optional()?)
    }

    /// Records `update` only if the state of its origin is still `expected` (`None`:
    /// no row yet), in one immediate transaction.
    pub fn swap(&self, expected: Option<&Recorded>, update: &Update<'_>) -> Result<Swap, StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let size = size_to_sql(update.recorded.size)?;
        let now = size_to_sql(update.now)?;
        let vkeys = update.log_vkeys.join("\n");
        let changed = match expected {
            None => tx.execute(
                "INSERT INTO logs (origin, size, root, log_vkeys, checkpoint, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (origin) DO NOTHING",
                params![
                    update.origin,
                    size,
                    update.recorded.root.as_slice(),
                    vkeys,
                    update.checkpoint,
                    now
                ],
            )?,
            Some(old) => tx.execute(
                "UPDATE logs SET size = ?2, root = ?3, log_vkeys = ?4, checkpoint = ?5, updated_at = ?6
                 WHERE origin = ?1 AND size = ?7 AND root = ?8",
                params![
                    update.origin,
                    size,
                    update.recorded.root.as_slice(),
                    vkeys,
                    update.checkpoint,
                    now,
                    size_to_sql(old.size)?,
                    old.root.as_slice()
                ],
            )?,
        };
        if changed == 1 {
            tx.commit()?;
            return Ok(Swap::Done);
        }
        let now = read(&tx, update.origin)?;
        tx.rollback()?;
        Ok(Swap::Conflict(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(size: u64, b: u8) -> Recorded {
        Recorded { size, root: [b; 32] }
    }

    fn update(r: &Recorded) -> Update<'_> {
        Update {
            origin: "o",
            recorded: r.clone(),
            log_vkeys: &[],
            checkpoint: "cp",
            now: 1,
        }
    }

    #[test]
    fn compare_and_swap_on_size_and_root() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let s = State::open(&path).unwrap();
        assert_eq!(s.get("o").unwrap(), None);
        assert_eq!(s.swap(None, &update(&rec(3, 1))).unwrap(), Swap::Done);
        // A second "first" checkpoint loses.
        assert_eq!(
            s.swap(None, &update(&rec(5, 2))).unwrap(),
            Swap::Conflict(Some(rec(3, 1)))
        );
        // Two requests checked against size 3: only one is recorded.
        assert_eq!(s.swap(Some(&rec(3, 1)), &update(&rec(9, 3))).unwrap(), Swap::Done);
        assert_eq!(
            s.swap(Some(&rec(3, 1)), &update(&rec(4, 4))).unwrap(),
            Swap::Conflict(Some(rec(9, 3)))
        );
        // Right size, other root: no swap either.
        assert_eq!(
            s.swap(Some(&rec(9, 7)), &update(&rec(10, 4))).unwrap(),
            Swap::Conflict(Some(rec(9, 3)))
        );
        assert_eq!(s.checkpoint("o").unwrap().as_deref(), Some("cp"));
        drop(s);
        // Durable: a reopened store has the state.
        assert_eq!(State::open(&path).unwrap().get("o").unwrap(), Some(rec(9, 3)));
    }
}
