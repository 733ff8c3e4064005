//! SQLite storage: one writer thread with group commit, readers in parallel.
//!
//! Every write goes through [`Db::commit`], which hands a job to the writer thread.
//! The writer takes everything queued, runs it in one transaction and one fsync, and
//! only then answers each job. Under load many mints share one fsync, which is how
//! durable-before-released stays cheap (DESIGN §8). Reads use a small pool of
//! connections on the blocking thread pool and never wait for the writer (WAL).

mod schema;
mod writer;

pub use writer::{Apply, PendingLeaf};

use rusqlite::{Connection, OpenFlags};
use sealgate_shared::merkle::Hash;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("group commit failed: {0}")]
    Batch(String),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("database task failed: {0}")]
    Join(String),
}

/// Called by the writer after each commit with the leaves it made durable.
pub type OnCommit = Box<dyn Fn(&[(u64, Hash)]) + Send>;

#[derive(Clone)]
pub struct Db {
    path: Arc<PathBuf>,
    writer: mpsc::UnboundedSender<writer::Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

fn open(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Copies the WAL back into the database file every half second.
fn spawn_checkpointer(conn: Connection) {
    let spawned = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!("WAL checkpoint failed: {e}");
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the WAL checkpointer: {e}");
    }
}

impl Db {
    /// Opens (creating if needed) the database and starts the writer thread.
    pub fn open(path: &Path, on_commit: OnCommit) -> Result<Self, DbError> {
        let conn = open(path, OpenFlags::default())?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: the WAL is fsynced at every commit, so "committed" means durable.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(schema::SCHEMA)?;
        schema::migrate(&conn)?;
        // Checkpointing copies the WAL into the main file and fsyncs it (7-15 ms here).
        // Done by the committing connection, it would stall every mint queued behind
        // it; so the writer never checkpoints, and a thread of its own does, PASSIVE,
        // which runs beside commits instead of blocking them.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        spawn_checkpointer(open(path, OpenFlags::default())?);
        let writer = writer::spawn(conn, on_commit);
        Ok(Self {
            path: Arc::new(path.to_path_buf()),
            writer,
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Commits `leaves` and, in the same transaction, `apply` (if any). The leaves are
    /// committed even if `apply` fails: the enclave has already written them.
    pub async fn commit(&self, leaves: Vec<PendingLeaf>, apply: Option<Apply>) -> Result<(), DbError> {
        let (done, rx) = oneshot::channel();
        self.writer
            .send(writer::Job { leaves, apply, done })
            .map_err(|_| DbError::WriterGone)?;
        rx.await.map_err(|_| DbError::WriterGone)?
    }

    /// Runs a read on a pooled connection off the async runtime.
    pub async fn read<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_blocking(f))
            .await
            .map_err(|e| DbError::Join(e.to_string()))?
    }

    /// The same, for code already on a blocking thread (start-up).
    pub fn read_blocking<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, DbError> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => open(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?,
        };
        let out = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 16 {
            pool.push(conn);
        }
        Ok(out?)
    }
}
