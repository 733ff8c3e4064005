//! SQLite storage: one writer thread with group commit, readers in parallel.
//!
//! Every write goes through [`Db::commit`], which hands a job to the writer thread.
//! The writer takes everything queued, runs it in one transaction and one fsync, and
//! only then answers each job. Under load many mints share one fsync, which is how
//! durable-before-released (ARCHITECTURE §2.3) stays cheap (§8). Reads use a small pool of
//! connections on the blocking thread pool and never wait for the writer (WAL).

pub mod check;
mod schema;
pub mod tiles;
mod writer;

pub use writer::{Apply, PendingLeaf};

use rusqlite::{Connection, OpenFlags};
use sealgate_shared::merkle::Hash;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// What the writer calls around each group commit.
pub trait CommitHook: Send + Sync {
    /// Inside the transaction, after the batch's own writes: rows derived from earlier
    /// commits that ride along for free (the tree's newly full tiles). A failure here
    /// is rolled back alone and logged; it never fails the batch.
    fn ride_along(&self, conn: &Connection) -> rusqlite::Result<()>;
    /// Whether there is anything to ride along (most commits have nothing: asked first,
    /// so those pay no savepoint).
    fn has_ride_along(&self) -> bool;
    /// After the commit, with the leaves it made durable.
    fn committed(&self, leaves: &[(u64, Hash)]);
}

/// A hook that does nothing (tests that only need the schema).
pub struct NoHook;

impl CommitHook for NoHook {
    fn ride_along(&self, _: &Connection) -> rusqlite::Result<()> {
        Ok(())
    }
    fn has_ride_along(&self) -> bool {
        false
    }
    fn committed(&self, _: &[(u64, Hash)]) {}
}

pub type OnCommit = Arc<dyn CommitHook>;

#[derive(Clone)]
pub struct Db {
    path: Arc<PathBuf>,
    writer: mpsc::UnboundedSender<writer::Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

/// How long a connection waits for a lock another holds.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn open(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// How the WAL is kept short under sustained load.
///
/// SQLite can start the WAL from its beginning again only when a checkpoint has copied
/// every frame back and the next write transaction begins. A background checkpoint
/// (PASSIVE, beside the commits) never gets there while commits keep coming: each pass
/// copies the frames written before it started, and by then more have been appended. So
/// the WAL grew for as long as load lasted (1.2 GB in a minute at 6.5 k tokens/s). Now
/// the background thread does the bulk of the copying, and once the WAL passes
/// `restart_at_frames` the writer itself, between two group commits, copies the few
/// frames that are left and restarts the log (RESTART): a pause of a few milliseconds
/// every few seconds instead of a file that fills the disk.
#[derive(Debug, Clone, Copy)]
pub struct WalPolicy {
    /// Pause between two background passes.
    pub pass_every: std::time::Duration,
    /// WAL frames (pages) past which the writer restarts the log.
    pub restart_at_frames: i64,
    /// How long the writer waits for readers still on the old WAL before it gives up
    /// and lets the next pass ask again (a long read must not stall every mint).
    pub restart_patience: std::time::Duration,
}

impl Default for WalPolicy {
    fn default() -> Self {
        Self {
            pass_every: std::time::Duration::from_millis(100),
            // 8192 pages of 4 KiB: the WAL stays near 32 MiB.
            restart_at_frames: 8192,
            restart_patience: std::time::Duration::from_millis(20),
        }
    }
}

/// Copies the WAL back into the database file (PASSIVE, beside commits) and asks the
/// writer to restart the log once it is long.
fn spawn_checkpointer(conn: Connection, policy: WalPolicy, restart: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || loop {
            std::thread::sleep(policy.pass_every);
            let pass = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1));
            match pass {
                Ok(frames) if frames >= policy.restart_at_frames => restart.store(true, Ordering::Relaxed),
                Ok(_) => {}
                Err(e) => tracing::warn!("WAL checkpoint failed: {e}"),
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the WAL checkpointer: {e}");
    }
}

impl Db {
    /// Opens (creating if needed) the database and starts the writer thread.
    pub fn open(path: &Path, on_commit: OnCommit) -> Result<Self, DbError> {
        Self::open_with(path, on_commit, WalPolicy::default())
    }

    /// [`Db::open`] with a WAL policy of the caller's (tests use a small one).
    pub fn open_with(path: &Path, on_commit: OnCommit, wal: WalPolicy) -> Result<Self, DbError> {
        let conn = open(path, OpenFlags::default())?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: the WAL is fsynced at every commit, so "committed" means durable.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(schema::SCHEMA)?;
        schema::migrate(&conn)?;
        // Checkpointing copies the WAL into the main file and fsyncs it (7-15 ms here).
        // Done by the committing connection after every commit, it would stall every
        // mint queued behind it; so a thread of its own copies, PASSIVE, beside the
        // commits, and the writer only finishes the copy now and then (`WalPolicy`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // A restarted WAL is cut back to this, so the file stays near its working size.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        let restart = Arc::new(AtomicBool::new(false));
        spawn_checkpointer(open(path, OpenFlags::default())?, wal, restart.clone());
        let writer = writer::spawn(
            conn,
            on_commit,
            writer::Restart {
                wanted: restart,
                policy: wal,
            },
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use sealgate_shared::protocol::LeafRecord;
    use serde_bytes::ByteBuf;
    use std::time::Duration;

    fn leaf(index: u64) -> PendingLeaf {
        let record = LeafRecord {
            index,
            bytes: ByteBuf::from(vec![b'x'; 4000]),
            mac: ByteBuf::from(vec![0u8; 32]),
        };
        PendingLeaf::new(record, None)
    }

    /// Sustained commits (about 40 MB of leaves, back to back) keep the WAL near the
    /// policy's length instead of growing with everything written: without the writer's
    /// restart the background checkpoint never catches up and the WAL holds it all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_short_under_sustained_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let policy = WalPolicy {
            pass_every: Duration::from_millis(10),
            restart_at_frames: 256,
            restart_patience: Duration::from_millis(20),
        };
        let db = Db::open_with(&path, Arc::new(NoHook), policy).unwrap();
        let wal = dir.path().join("t.db-wal");
        let (mut next, mut longest) = (0u64, 0u64);
        for _ in 0..400 {
            let leaves = (next..next + 25).map(leaf).collect();
            next += 25;
            db.commit(leaves, None).await.unwrap();
            longest = longest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        assert!(
            longest < 8 << 20,
            "the WAL reached {longest} bytes after {} MB of leaves",
            (next * 4000) >> 20
        );
        // Nothing was lost on the way.
        let stored: i64 = db
            .read(|c| c.query_row("SELECT count(*) FROM leaves", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(stored as u64, next);
    }
}
