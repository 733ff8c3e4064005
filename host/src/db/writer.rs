//! The single writer thread and its group commit.

use super::OnCommit;
use rusqlite::{params, Connection};
use sealgate_shared::leaf;
use sealgate_shared::merkle::{self, Hash};
use sealgate_shared::protocol::LeafRecord;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Largest number of jobs folded into one transaction.
const MAX_BATCH: usize = 4096;

/// A leaf to store, with the token id to index it by when it records a token.
pub struct PendingLeaf {
    pub record: LeafRecord,
    pub jti: Option<String>,
    /// The workspace whose auditors may read it ([`leaf::workspace_of`]); `None` for
    /// operator-level events.
    workspace: Option<String>,
    /// Computed by whoever queues the leaf, so the hashing runs in parallel and not
    /// on the single writer thread every commit waits for.
    hash: Hash,
}

impl PendingLeaf {
    pub fn new(record: LeafRecord, jti: Option<String>) -> Self {
        let hash = merkle::leaf_hash(&record.bytes);
        let workspace = leaf::workspace_of(&record.bytes);
        Self {
            record,
            jti,
            workspace,
            hash,
        }
    }
}

/// A write that rides along in the same transaction as its audit leaf.
pub type Apply = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;

pub(super) struct Job {
    pub leaves: Vec<PendingLeaf>,
    pub apply: Option<Apply>,
    pub done: oneshot::Sender<Result<(), super::DbError>>,
}

/// The checkpointer's request that the writer restart the WAL (see [`super::WalPolicy`]).
pub(super) struct Restart {
    pub wanted: Arc<AtomicBool>,
    pub policy: super::WalPolicy,
}

impl Restart {
    /// Between two group commits: copy what is left of the WAL and restart it, waiting
    /// for readers at most `restart_patience`. Busy (a reader stayed): the next pass of
    /// the checkpointer asks again.
    fn run_if_wanted(&self, conn: &Connection) {
        if !self.wanted.swap(false, Ordering::Relaxed) {
            return;
        }
        let _ = conn.busy_timeout(self.policy.restart_patience);
        let done = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
        let _ = conn.busy_timeout(super::BUSY_TIMEOUT);
        match done {
            Ok(0) => {}
            Ok(_) => tracing::debug!("WAL restart deferred: a reader still uses the old log"),
            Err(e) => tracing::warn!("WAL restart failed: {e}"),
        }
    }
}

pub(super) fn spawn(conn: Connection, on_commit: OnCommit, restart: Restart) -> mpsc::UnboundedSender<Job> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || run(conn, rx, on_commit, restart))
        .expect("spawning the writer thread");
    tx
}

fn run(mut conn: Connection, mut rx: mpsc::UnboundedReceiver<Job>, on_commit: OnCommit, restart: Restart) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match commit_batch(&mut conn, &mut batch, &*on_commit) {
            Ok((committed, outcomes)) => {
                on_commit.committed(&committed);
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.done.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!("group commit failed: {e}");
                for job in batch {
                    let _ = job.done.send(Err(super::DbError::Batch(e.to_string())));
                }
            }
        }
        // After the batch is answered, so no one waits on this batch for it.
        restart.run_if_wanted(&conn);
    }
}

type Outcomes = Vec<Result<(), super::DbError>>;

/// One transaction for the whole batch. Leaves always go in; each job's `apply` runs
/// in its own savepoint so one failing admin write cannot undo anyone's leaves.
fn commit_batch(
    conn: &mut Connection,
    batch: &mut [Job],
    hook: &dyn super::CommitHook,
) -> rusqlite::Result<(Vec<(u64, Hash)>, Outcomes)> {
    let mut tx = conn.transaction()?;
    let mut committed = Vec::new();
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut insert_leaf =
            tx.prepare_cached("INSERT OR IGNORE INTO leaves (idx, bytes, mac, workspace_id) VALUES (?1, ?2, ?3, ?4)")?;
        let mut insert_token = tx.prepare_cached("INSERT OR IGNORE INTO tokens (jti, idx) VALUES (?1, ?2)")?;
        for job in batch.iter() {
            for leaf in &job.leaves {
                let r = &leaf.record;
                let idx = r.index as i64;
                if insert_leaf.execute(params![idx, r.bytes.as_slice(), r.mac.as_slice(), leaf.workspace])? == 1 {
                    committed.push((r.index, leaf.hash));
                }
                if let Some(jti) = &leaf.jti {
                    insert_token.execute(params![jti, idx])?;
                }
            }
        }
    }
    for job in batch.iter_mut() {
        let outcome = match job.apply.take() {
            None => Ok(()),
            Some(apply) => {
                let sp = tx.savepoint()?;
                match apply(&sp) {
                    Ok(()) => sp.commit().map_err(Into::into),
                    Err(e) => Err(e.into()), // dropping the savepoint rolls it back
                }
            }
        };
        outcomes.push(outcome);
    }
    if hook.has_ride_along() {
        let sp = tx.savepoint()?;
        match hook.ride_along(&sp) {
            Ok(()) => sp.commit()?,
            Err(e) => tracing::warn!("writing the tree's tiles failed (retried with the next commit): {e}"),
        }
    }
    tx.commit()?;
    Ok((committed, outcomes))
}
