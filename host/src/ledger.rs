//! The host's half of the audit log.
//!
//! The enclave decides what goes into the log; the host makes it durable and serves
//! it. This module keeps the two in step:
//!
//! - [`Ledger::commit`] stores leaves through the group-commit writer; the client gets
//!   its token only after that returns (ARCHITECTURE §2.3).
//! - Leaves can commit out of order (concurrent mints), so [`TreeState`] tracks the
//!   contiguous committed prefix; only that prefix enters the Merkle [`TreeStore`] and
//!   is acknowledged to the enclave, which answers each `Ack` with a checkpoint signed
//!   at exactly that size.
//! - [`Ledger::sync`] runs at start and whenever the enclave comes back: it replays
//!   leaves the enclave wrote but the host never stored (a host crash), or restores an
//!   enclave that restarted from the last signed checkpoint, the frontier and the
//!   MAC'd leaves after it.
//! - If a leaf's response was lost (a timed-out call), the prefix stops growing; the
//!   acker notices the gap and fetches the missing leaves with `Unacked`.
//! - With witnesses configured, the enclave keeps each token until a checkpoint
//!   covering its leaf is cosigned by a quorum of them. The acker then takes every
//!   acknowledged checkpoint to the witnesses ([`crate::witness::cosigning`]), hands the
//!   cosigned checkpoint back (`Witnessed`), and passes each released token to the mint
//!   waiting for it ([`Ledger::hold_for_release`]). Only cosigned checkpoints are served
//!   and stored: a restore starts from the newest one.

use crate::db::{Db, DbError, PendingLeaf};
use crate::enclave_client::{ClientError, EnclaveClient};
use crate::error::ApiError;
use crate::expect_reply;
use crate::kms_seal::{KmsSeal, UnsealError};
use crate::witness::cosigning::{Cosigning, ProofSource, WitnessStatus};
use rusqlite::params;
use sealgate_shared::leaf::{self, KIND_TOKEN_ISSUED};
use sealgate_shared::merkle::tiles::{TileId, TileStore, TileTree};
use sealgate_shared::merkle::{self, Hash};
use sealgate_shared::note::VerifierKey;
use sealgate_shared::protocol::*;
use serde_bytes::ByteBuf;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Notify};

/// How long a mint waits for witnesses to cosign a checkpoint covering its leaf.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Acks are coalesced: under load every commit batch would otherwise cost a signature
/// in the enclave and a verification here. Checkpoints lag commits by at most this.
/// Not with witnesses: tokens then wait for the checkpoint, and a witnessing round
/// (one at a time) batches on its own: whatever commits while one runs rides the next.
const ACK_COALESCE: Duration = Duration::from_millis(20);

/// How long the first missing leaf may stay missing before the acker fetches it from
/// the enclave (`Unacked`): far longer than any commit takes.
const GAP_PATIENCE: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Enclave(#[from] ClientError),
    #[error(transparent)]
    Db(#[from] DbError),
    /// A KMS-sealed enclave could not be unsealed (see `kms_seal`).
    #[error("unsealing the enclave: {0}")]
    Unseal(#[from] UnsealError),
    /// The database and the enclave disagree in a way only tampering or a rollback
    /// explains. The host keeps serving the audit log read-only so auditors can look.
    #[error("log integrity: {0}")]
    Integrity(String),
    /// The enclave refused the configuration at `Hello`: invalid (`BadRequest`), other
    /// than the one it is sealed to (`ConfigMismatch`), or another protocol version. No
    /// retry fixes it, so a host starting up stops with the enclave's reason
    /// ([`Ledger::first_sync`]); later, the same enclave refusing what it accepted at the
    /// start is treated as tampering ([`Ledger::sync`]).
    #[error("the enclave refused the host's configuration: {}", .0.message)]
    Refused(WireError),
}

fn ro<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn rw<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// The committed prefix of the log, shared with the writer thread. The tree keeps its
/// full tiles in the database (`db::tiles`): they ride along in the group commit after
/// the one that filled them, and until then stay in memory.
pub struct TreeState {
    tree: RwLock<TileTree>,
    store: Arc<dyn TileStore>,
    ahead: Mutex<BTreeMap<u64, Hash>>,
    size: watch::Sender<u64>,
    /// Tiles written by the transaction now committing.
    writing: Mutex<Vec<TileId>>,
}

impl TreeState {
    fn new(store: Arc<dyn TileStore>) -> Arc<Self> {
        Arc::new(Self {
            tree: RwLock::new(TileTree::new(store.clone())),
            store,
            ahead: Mutex::new(BTreeMap::new()),
            size: watch::channel(0).0,
            writing: Mutex::new(Vec::new()),
        })
    }

    /// Adds committed leaves; those past a hole wait in `ahead`.
    fn committed(&self, leaves: &[(u64, Hash)]) {
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        ahead.extend(leaves.iter().copied());
        let mut tree = rw(&self.tree);
        let before = tree.len();
        while let Some(h) = ahead.remove(&tree.len()) {
            tree.push(h);
        }
        if tree.len() != before {
            self.size.send_replace(tree.len());
        }
    }

    fn clear_ahead(&self) {
        self.ahead.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn has_gap(&self) -> bool {
        !self.ahead.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    fn writing(&self) -> std::sync::MutexGuard<'_, Vec<TileId>> {
        self.writing.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl crate::db::CommitHook for TreeState {
    fn ride_along(&self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        let tiles = ro(&self.tree).unstored();
        self.writing().clear();
        for (id, hashes) in &tiles {
            crate::db::tiles::write(conn, *id, hashes)?;
        }
        *self.writing() = tiles.into_iter().map(|(id, _)| id).collect();
        Ok(())
    }

    fn has_ride_along(&self) -> bool {
        ro(&self.tree).has_unstored()
    }

    fn committed(&self, leaves: &[(u64, Hash)]) {
        let stored = std::mem::take(&mut *self.writing());
        if !stored.is_empty() {
            rw(&self.tree).stored(&stored);
        }
        TreeState::committed(self, leaves);
    }
}

#[derive(Clone, Debug)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub note: String,
}

pub struct Ledger {
    pub db: Db,
    pub enclave: Arc<EnclaveClient>,
    pub config: EnclaveConfig,
    state: Arc<TreeState>,
    checkpoint: RwLock<Option<StoredCheckpoint>>,
    hello: RwLock<Option<HelloReply>>,
    /// The enclave's checkpoint key from `hello`, parsed once rather than per ack.
    checkpoint_key: RwLock<Option<Result<VerifierKey, String>>>,
    integrity: RwLock<Option<String>>,
    ready: AtomicBool,
    sync_lock: tokio::sync::Mutex<()>,
    wake_supervisor: Notify,
    /// KMS sealing: unseals the enclave before each sync (it boots locked after a restart).
    kms: OnceLock<Arc<KmsSeal>>,
    /// With witnesses configured: who cosigns, and the mints waiting for their tokens.
    cosigning: OnceLock<Arc<Cosigning>>,
    waiters: Mutex<HashMap<u64, oneshot::Sender<String>>>,
    /// Why the last witnessing round failed (`None` after one succeeds).
    cosign_error: RwLock<Option<String>>,
    /// The newest cosigned checkpoint, for the persister to store.
    to_persist: watch::Sender<Option<SignedCheckpoint>>,
}

/// A mint waiting for the enclave to release its token (see [`Ledger::hold_for_release`]).
/// Dropping it (the caller gave up) forgets the wait; a token released later for it is
/// discarded: it never left the host, and its leaf is in the log all the same.
pub struct ReleaseWait<'a> {
    ledger: &'a Ledger,
    index: u64,
    rx: Option<oneshot::Receiver<String>>,
}

impl ReleaseWait<'_> {
    pub async fn token(mut self) -> Result<String, ApiError> {
        if let Some(rx) = self.rx.take() {
            if let Ok(Ok(token)) = tokio::time::timeout(RELEASE_TIMEOUT, rx).await {
                return Ok(token);
            }
        }
        Err(ApiError::coded(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "WITNESS_QUORUM_UNAVAILABLE",
            format!(
                "the token is minted and its leaf {} is logged, but the enclave releases it only under a checkpoint \
                 a quorum of {} witnesses cosigned, and none came within {} s{}; nothing was issued, retry later",
                self.index,
                self.ledger.cosigning.get().map_or(0, |c| c.quorum()),
                RELEASE_TIMEOUT.as_secs(),
                self.ledger
                    .cosign_error()
                    .map(|e| format!(" (last round: {e})"))
                    .unwrap_or_default()
            ),
        ))
    }
}

impl Drop for ReleaseWait<'_> {
    fn drop(&mut self) {
        self.ledger.waiters().remove(&self.index);
    }
}

impl Ledger {
    /// Opens the database and loads the committed log into memory.
    pub fn open(
        db_path: &std::path::Path,
        enclave: Arc<EnclaveClient>,
        config: EnclaveConfig,
    ) -> Result<Arc<Self>, SyncError> {
        let state = TreeState::new(Arc::new(crate::db::tiles::DbTiles::new(db_path)));
        let db = Db::open(db_path, state.clone())?;
        let ledger = Arc::new(Self {
            db,
            enclave,
            config,
            state,
            checkpoint: RwLock::new(None),
            hello: RwLock::new(None),
            checkpoint_key: RwLock::new(None),
            integrity: RwLock::new(None),
            ready: AtomicBool::new(false),
            sync_lock: tokio::sync::Mutex::new(()),
            wake_supervisor: Notify::new(),
            kms: OnceLock::new(),
            cosigning: OnceLock::new(),
            waiters: Mutex::new(HashMap::new()),
            cosign_error: RwLock::new(None),
            to_persist: watch::channel(None).0,
        });
        ledger.load()?;
        Ok(ledger)
    }

    /// Rebuilds the Merkle tree and reads the latest checkpoint. The tree resumes from
    /// the stored tiles and hashes afresh only the leaves after them, so a restart does
    /// not re-read the log. The tiles are the host's own (the database is not trusted):
    /// the resumed tree must give the stored checkpoint's root, or it is rebuilt from
    /// every leaf's bytes, as it always was before tiles.
    fn load(&self) -> Result<(), SyncError> {
        let full = self.db.read_blocking(crate::db::tiles::full_leaf_tiles)?;
        let resumed = match TileTree::resume(self.state.store.clone(), full) {
            Ok(tree) => Some(tree),
            Err(e) => {
                tracing::warn!("the stored tiles do not resume the tree ({e}); rebuilding it from the leaves");
                None
            }
        };
        let from = resumed.as_ref().map_or(0, TileTree::len);
        self.reset_tree(resumed.unwrap_or_else(|| TileTree::new(self.state.store.clone())));
        self.load_leaves_from(from)?;
        let cp = self.db.read_blocking(|c| {
            c.query_row(
                "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1",
                [],
                |r| {
                    Ok(StoredCheckpoint {
                        size: r.get::<_, i64>(0)? as u64,
                        note: r.get(1)?,
                    })
                },
            )
            .map(Some)
            .or_else(|e| {
                if e == rusqlite::Error::QueryReturnedNoRows {
                    Ok(None)
                } else {
                    Err(e)
                }
            })
        })?;
        if from > 0 && !self.tree_matches(cp.as_ref()) {
            tracing::warn!(
                "the stored tiles do not give the stored checkpoint's root; rebuilding the tree from the leaves"
            );
            self.reset_tree(TileTree::new(self.state.store.clone()));
            self.load_leaves_from(0)?;
        }
        *rw(&self.checkpoint) = cp;
        Ok(())
    }

    /// Starts the committed prefix over from `tree` (nothing aside, its size served).
    fn reset_tree(&self, tree: TileTree) {
        let size = tree.len();
        *rw(&self.state.tree) = tree;
        self.state.clear_ahead();
        self.state.size.send_replace(size);
    }

    /// Hashes the stored leaves from `from` on into the tree (rows past a hole stay
    /// aside in `ahead` until sync: concurrent commits land out of order, so a crash
    /// can leave a hole the enclave can still fill with `Unacked`).
    fn load_leaves_from(&self, from: u64) -> Result<(), SyncError> {
        let leaves = self.db.read_blocking(move |c| {
            let mut st = c.prepare("SELECT idx, bytes FROM leaves WHERE idx >= ?1 ORDER BY idx")?;
            let rows = st.query_map([from as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, merkle::leaf_hash(&r.get::<_, Vec<u8>>(1)?)))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        self.state.committed(&leaves);
        Ok(())
    }

    /// Whether the tree gives `cp`'s root at `cp`'s size (no checkpoint, or one beyond
    /// the tree, is for the sync to judge).
    fn tree_matches(&self, cp: Option<&StoredCheckpoint>) -> bool {
        let Some(cp) = cp else { return true };
        match sealgate_shared::note::Checkpoint::unverified(&cp.note).ok() {
            Some(c) if c.size <= self.committed_size() => self.tree().root(c.size).is_ok_and(|r| r == c.root),
            _ => true,
        }
    }

    pub fn committed_size(&self) -> u64 {
        *self.state.size.borrow()
    }

    pub fn tree(&self) -> std::sync::RwLockReadGuard<'_, TileTree> {
        ro(&self.state.tree)
    }

    pub fn checkpoint(&self) -> Option<StoredCheckpoint> {
        ro(&self.checkpoint).clone()
    }

    pub fn hello(&self) -> Option<HelloReply> {
        ro(&self.hello).clone()
    }

    /// Replaces the cached `Hello` (after a key rotation changed the key set).
    pub fn set_hello(&self, hello: HelloReply) {
        *rw(&self.checkpoint_key) = Some(hello.checkpoint_key.parse().map_err(|e| format!("{e}")));
        *rw(&self.hello) = Some(hello);
    }

    /// KMS sealing: from now on every sync first unseals a locked enclave.
    pub fn set_kms(&self, kms: Arc<KmsSeal>) {
        let _ = self.kms.set(kms);
    }

    /// With witnesses configured: tokens are released only under cosigned checkpoints.
    pub fn set_cosigning(&self, cosigning: Arc<Cosigning>) {
        let _ = self.cosigning.set(cosigning);
    }

    pub fn cosigning(&self) -> Option<&Arc<Cosigning>> {
        self.cosigning.get()
    }

    /// What `/readyz` says about witnessing: `None` without witnesses.
    pub fn witness_statuses(&self) -> Option<Vec<WitnessStatus>> {
        self.cosigning.get().map(|c| c.statuses())
    }

    pub fn cosign_error(&self) -> Option<String> {
        ro(&self.cosign_error).clone()
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<String>>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a mint whose token the enclave holds (witnesses configured). Called
    /// as soon as the `Minted` answer arrives, before the leaf is committed: the enclave
    /// can release the token only after the leaf is acknowledged, which comes after the
    /// commit, so the release never precedes the registration.
    pub fn hold_for_release(&self, index: u64) -> ReleaseWait<'_> {
        let (tx, rx) = oneshot::channel();
        self.waiters().insert(index, tx);
        ReleaseWait {
            ledger: self,
            index,
            rx: Some(rx),
        }
    }

    pub fn integrity_failure(&self) -> Option<String> {
        ro(&self.integrity).clone()
    }

    fn set_integrity(&self, msg: String) {
        tracing::error!("LOG INTEGRITY FAILURE: {msg}");
        *rw(&self.integrity) = Some(msg);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.integrity_failure().is_none()
    }

    /// Asks the supervisor to re-sync soon (after a failed enclave call).
    pub fn enclave_trouble(&self) {
        self.ready.store(false, Ordering::SeqCst);
        self.wake_supervisor.notify_one();
    }

    /// Calls the enclave; anything but a refusal of this particular request (bad input,
    /// forbidden kind) wakes the supervisor to check the enclave and re-sync.
    pub async fn call(&self, op: Op) -> Result<Reply, ClientError> {
        let result = self.enclave.call(op).await;
        if let Err(e) = &result {
            let request_fault =
                matches!(e, ClientError::Enclave(w) if matches!(w.code, ErrorCode::BadRequest | ErrorCode::Forbidden));
            if !request_fault {
                self.enclave_trouble();
            }
        }
        result
    }

    /// Stores leaves the caller is about to answer for, with `apply` in the same
    /// transaction. Returns once they are durable *and* every leaf before them is too
    /// (see [`Ledger::wait_contiguous`]): the one place the release rule lives.
    pub async fn commit(&self, leaves: Vec<PendingLeaf>, apply: Option<crate::db::Apply>) -> Result<(), ApiError> {
        let last = leaves.iter().map(|l| l.record.index).max();
        self.db.commit(leaves, apply).await?;
        if let Some(index) = last {
            self.wait_contiguous(index).await?;
        }
        Ok(())
    }

    /// Appends a host-witnessed event and commits it together with `apply`.
    pub async fn record(
        &self,
        kind: &str,
        event: serde_json::Value,
        apply: Option<crate::db::Apply>,
    ) -> Result<LeafRecord, ApiError> {
        let reply = self
            .call(Op::Append {
                kind: kind.into(),
                event: event.to_string(),
            })
            .await?;
        let leaf = expect_reply!(reply, Reply::Appended, "Append")?;
        self.commit(vec![PendingLeaf::new(leaf.clone(), None)], apply).await?;
        Ok(leaf)
    }

    /// Brings the enclave and the database into step (see the module docs). A refused
    /// configuration here, after a start that was accepted, is an enclave that changed
    /// under the host: the log is served read-only like any other integrity failure.
    pub async fn sync(&self) -> Result<(), SyncError> {
        let _guard = self.sync_lock.lock().await;
        let result = match self.sync_locked().await {
            Err(SyncError::Refused(w)) => Err(SyncError::Integrity(w.message)),
            other => other,
        };
        self.note_sync(&result);
        result
    }

    /// The first sync at start-up: like [`Ledger::sync`], but a refused configuration
    /// comes back as [`SyncError::Refused`] for the caller to stop on, not as an integrity
    /// failure (a mistyped `--issuer` is the operator's error, not tampering).
    pub async fn first_sync(&self) -> Result<(), SyncError> {
        let _guard = self.sync_lock.lock().await;
        let result = self.sync_locked().await;
        self.note_sync(&result);
        result
    }

    fn note_sync(&self, result: &Result<(), SyncError>) {
        match result {
            Ok(()) => self.ready.store(true, Ordering::SeqCst),
            Err(SyncError::Integrity(m)) => self.set_integrity(m.clone()),
            Err(_) => self.ready.store(false, Ordering::SeqCst),
        }
    }

    async fn sync_locked(&self) -> Result<(), SyncError> {
        if let Some(kms) = self.kms.get() {
            kms.ensure_unsealed(&self.enclave, &self.db).await?;
        }
        let reply = self
            .enclave
            .call(Op::Hello {
                protocol_version: sealgate_shared::PROTOCOL_VERSION,
                config: self.config.clone(),
            })
            .await;
        let mut hello = match reply {
            // Hello's only `BadRequest` is `config::validate` refusing the configuration.
            Err(ClientError::Enclave(w))
                if matches!(
                    w.code,
                    ErrorCode::ConfigMismatch | ErrorCode::Version | ErrorCode::BadRequest
                ) =>
            {
                return Err(SyncError::Refused(w))
            }
            other => expect_reply!(other?, Reply::Hello, "Hello")?,
        };
        // KMS sealing: the first Hello sealed the configuration; store it before anything
        // is signed under it.
        if let Some(sealed) = hello.sealed_state.take() {
            crate::kms_seal::store_sealed_state_async(&self.db, sealed.into_vec()).await?;
        }
        self.set_hello(hello.clone());
        if let Some(m) = self.integrity_failure() {
            return Err(SyncError::Integrity(m));
        }
        // A barrier: every commit queued before this point has finished.
        self.db.commit(vec![], None).await?;
        let d = self.committed_size();

        if hello.log.needs_restore {
            self.restore(d).await?;
        } else if d < hello.log.acked {
            return Err(SyncError::Integrity(format!(
                "the database has {d} leaves but the host already acknowledged {} to the enclave: leaves were deleted or the database was rolled back",
                hello.log.acked
            )));
        } else if d > hello.log.size {
            return Err(SyncError::Integrity(format!(
                "the database has {d} leaves but the enclave wrote only {}",
                hello.log.size
            )));
        }
        self.fetch_unacked(d).await?;
        self.ack().await?;
        Ok(())
    }

    async fn restore(&self, d: u64) -> Result<(), SyncError> {
        self.set_aside_orphans(d).await?;
        // A signed checkpoint beyond the stored prefix means signed leaves went missing
        // from the database; restoring from an older state would quietly truncate the log.
        let cp = self.checkpoint();
        if let Some(c) = cp.as_ref().filter(|c| c.size > d) {
            return Err(SyncError::Integrity(format!(
                "the database holds {d} contiguous leaves but checkpoint {} was signed over them",
                c.size
            )));
        }
        let (cp_size, note) = cp.map_or((0, String::new()), |c| (c.size, c.note));
        let frontier = self
            .tree()
            .frontier(cp_size)
            .map_err(|e| SyncError::Integrity(e.to_string()))?
            .into_iter()
            .map(|h| ByteBuf::from(h.to_vec()))
            .collect();
        let macs = self
            .db
            .read(move |c| {
                let mut st = c.prepare("SELECT idx, mac FROM leaves WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")?;
                let rows = st.query_map(params![cp_size as i64, d as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        let tail = {
            let tree = self.tree();
            macs.into_iter()
                .map(|(index, mac)| {
                    let hash = tree
                        .leaf(index)
                        .ok_or_else(|| SyncError::Integrity(format!("leaf {index} is missing")))?;
                    Ok(TailLeaf {
                        index,
                        hash: ByteBuf::from(hash.to_vec()),
                        mac: ByteBuf::from(mac),
                    })
                })
                .collect::<Result<Vec<_>, SyncError>>()?
        };
        let root = self.tree().root(d).map_err(|e| SyncError::Integrity(e.to_string()))?;
        tracing::info!(checkpoint = cp_size, tail = tail.len(), "restoring the enclave's log");
        match self.send_restore(note, frontier, tail, d, root).await {
            Ok(head) => {
                tracing::info!(size = head.size, "enclave log restored");
                Ok(())
            }
            Err(ClientError::Enclave(w)) if w.code == ErrorCode::RestoreRejected => Err(SyncError::Integrity(format!(
                "the enclave refused to restore from this database: {}",
                w.message
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends a restore in steps that each fit a frame: the checkpoint and frontier, the
    /// tail in chunks of [`RESTORE_CHUNK_LEAVES`], then the end with the size and root.
    /// Each step waits for its answer (the enclave handles requests concurrently, so
    /// pipelining could reorder them). If anything fails half-way the enclave is left
    /// waiting for a restore, and the next sync starts over with `RestoreBegin`.
    async fn send_restore(
        &self,
        checkpoint: String,
        frontier: Vec<ByteBuf>,
        tail: Vec<TailLeaf>,
        size: u64,
        root: Hash,
    ) -> Result<LogHead, ClientError> {
        let reached = expect_reply!(
            self.enclave.call(Op::RestoreBegin { checkpoint, frontier }).await?,
            Reply::Restoring,
            "RestoreBegin"
        )?;
        let mut chunks = 0usize;
        for chunk in tail.chunks(RESTORE_CHUNK_LEAVES) {
            let reached = expect_reply!(
                self.enclave.call(Op::RestoreLeaves { leaves: chunk.to_vec() }).await?,
                Reply::Restoring,
                "RestoreLeaves"
            )?;
            chunks += 1;
            tracing::debug!(reached, "restore chunk accepted");
        }
        tracing::info!(
            from = reached,
            to = size,
            chunks,
            "restore chunks accepted; ending the restore"
        );
        expect_reply!(
            self.enclave
                .call(Op::RestoreEnd {
                    size,
                    root: ByteBuf::from(root.to_vec()),
                })
                .await?,
            Reply::Restored,
            "RestoreEnd"
        )
    }

    /// After an enclave restart, rows past the contiguous prefix `d` (a hole's far
    /// side) can never join the log: the leaves before them died with the enclave.
    /// No token among them was ever released (see [`Ledger::wait_contiguous`]), so
    /// they are moved to `orphaned_leaves` for forensics, out of the way of the
    /// indices the restored enclave will hand out next.
    async fn set_aside_orphans(&self, d: u64) -> Result<(), SyncError> {
        if !self.state.has_gap() {
            return Ok(());
        }
        let now = crate::now_secs() as i64;
        self.db
            .commit(
                vec![],
                Some(Box::new(move |c| {
                    let n = c.execute(
                        "INSERT OR REPLACE INTO orphaned_leaves (idx, bytes, mac, orphaned_at) \
                         SELECT idx, bytes, mac, ?2 FROM leaves WHERE idx > ?1",
                        params![d as i64, now],
                    )?;
                    c.execute("DELETE FROM tokens WHERE idx > ?1", params![d as i64])?;
                    c.execute("DELETE FROM leaves WHERE idx > ?1", params![d as i64])?;
                    tracing::warn!(
                        count = n,
                        after = d,
                        "set aside leaves stranded past a hole lost with the enclave"
                    );
                    Ok(())
                })),
            )
            .await?;
        self.state.clear_ahead();
        Ok(())
    }

    /// Stores every leaf the enclave holds from `from` on.
    async fn fetch_unacked(&self, mut from: u64) -> Result<(), SyncError> {
        loop {
            let leaves = expect_reply!(self.enclave.call(Op::Unacked { from }).await?, Reply::Leaves, "Unacked")?;
            let Some(last) = leaves.last().map(|l| l.index) else {
                return Ok(());
            };
            tracing::info!(
                from,
                count = leaves.len(),
                "storing leaves the enclave wrote but the host had not committed"
            );
            self.db.commit(leaves.into_iter().map(pending).collect(), None).await?;
            from = last + 1;
        }
    }

    /// Acknowledges the committed prefix and keeps the checkpoint it returns. With
    /// witnesses it is kept only once cosigned, by the acker's next round.
    async fn ack(&self) -> Result<(), SyncError> {
        let size = self.committed_size();
        let cp = expect_reply!(self.enclave.call(Op::Ack { size }).await?, Reply::Checkpoint, "Ack")?;
        if self.cosigning.get().is_some() {
            self.check_checkpoint(&cp.note)?;
            return Ok(());
        }
        self.keep_checkpoint(cp).await
    }

    /// The first half of a witnessing round for the enclave-signed checkpoint `cp`:
    /// cosigned by a quorum, or `None` when there is none (the tokens stay held, and the
    /// acker retries). The second half, [`Ledger::release`], runs on its own task, so the
    /// next round is already at the witnesses while this one's tokens are handed out.
    async fn cosign_round(
        &self,
        cosigning: &Cosigning,
        cp: SignedCheckpoint,
    ) -> Result<Option<SignedCheckpoint>, SyncError> {
        self.check_checkpoint(&cp.note)?;
        let state = self.state.clone();
        let proofs: ProofSource =
            Arc::new(move |old, new| ro(&state.tree).consistency_proof(old, new).map_err(|e| e.to_string()));
        match cosigning.cosign(&cp.note, cp.size, proofs).await {
            Ok(note) => Ok(Some(SignedCheckpoint { size: cp.size, note })),
            Err(e) => {
                let first = self.cosign_error().is_none();
                *rw(&self.cosign_error) = Some(e.to_string());
                if first {
                    tracing::warn!(size = cp.size, "witnessing stalled: {e}");
                } else {
                    tracing::debug!(size = cp.size, "witnessing still stalled: {e}");
                }
                Ok(None)
            }
        }
    }

    /// The second half of a witnessing round: the cosigned checkpoint goes back to the
    /// enclave, whose released tokens go to their mints; then it is served and stored.
    async fn release(&self, cosigned: SignedCheckpoint) -> Result<(), SyncError> {
        let reply = self
            .enclave
            .call(Op::Witnessed {
                checkpoint: cosigned.note.clone(),
            })
            .await
            .and_then(|r| expect_reply!(r, Reply::Released, "Witnessed"));
        let released = match reply {
            Ok(r) => r,
            Err(ClientError::Enclave(w)) if w.code == ErrorCode::WitnessRejected => {
                let e = format!("the enclave refused the witnesses' cosignatures: {}", w.message);
                tracing::warn!(size = cosigned.size, "{e}");
                *rw(&self.cosign_error) = Some(e);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        if rw(&self.cosign_error).take().is_some() {
            tracing::info!(size = cosigned.size, "witnessing resumed");
        }
        self.hand_out(released.tokens);
        // Served at once; stored by the persister, off the round's path (a round every
        // few milliseconds would otherwise wait for an fsync each).
        *rw(&self.checkpoint) = Some(StoredCheckpoint {
            size: cosigned.size,
            note: cosigned.note.clone(),
        });
        self.to_persist.send_replace(Some(cosigned));
        Ok(())
    }

    /// Runs [`Ledger::release`] for each cosigned checkpoint, in order.
    async fn releaser(self: Arc<Self>, mut rx: mpsc::Receiver<SignedCheckpoint>) {
        while let Some(cosigned) = rx.recv().await {
            match self.release(cosigned).await {
                Ok(()) => {}
                Err(SyncError::Integrity(m)) => self.set_integrity(m),
                Err(e) => {
                    tracing::warn!("releasing witnessed tokens failed: {e}");
                    self.enclave_trouble();
                }
            }
        }
    }

    /// With witnesses: stores the newest cosigned checkpoint whenever it changes, one
    /// write at a time (a restore starts from the newest stored; it need not be the
    /// very latest, since the tail after it is sent too).
    async fn persister(self: Arc<Self>) {
        let mut rx = self.to_persist.subscribe();
        while rx.changed().await.is_ok() {
            let latest = rx.borrow_and_update().clone();
            if let Some(cp) = latest {
                if let Err(e) = self.persist_checkpoint(cp).await {
                    tracing::warn!("storing a cosigned checkpoint failed: {e}");
                }
            }
            // At most one store per ack interval, as without witnesses: rounds come every
            // few milliseconds, and each store would be one more write for the writer.
            tokio::time::sleep(ACK_COALESCE).await;
        }
    }

    /// Checks a checkpoint against the stored leaves, serves it, and stores it. Every
    /// checkpoint is stored (acks are coalesced, so at most ~50 a second, and they ride
    /// in the group commit): after an enclave restart, `Restore` starts from the newest
    /// stored one (its tail is sent in chunks, so it may be of any length).
    async fn keep_checkpoint(&self, cp: SignedCheckpoint) -> Result<(), SyncError> {
        self.check_checkpoint(&cp.note)?;
        *rw(&self.checkpoint) = Some(StoredCheckpoint {
            size: cp.size,
            note: cp.note.clone(),
        });
        self.persist_checkpoint(cp).await?;
        Ok(())
    }

    /// Gives each released token to the mint waiting for it (none: the caller gave up).
    fn hand_out(&self, tokens: Vec<ReleasedToken>) {
        let mut waiters = self.waiters();
        for t in tokens {
            if let Some(tx) = waiters.remove(&t.index) {
                let _ = tx.send(t.token);
            }
        }
    }

    /// The enclave signed it, but check anyway: a bad note must never be served, nor
    /// sent to a witness.
    fn check_checkpoint(&self, note: &str) -> Result<(), SyncError> {
        let opened = match &*ro(&self.checkpoint_key) {
            None => return Ok(()),
            Some(Err(e)) => return Err(SyncError::Integrity(e.clone())),
            Some(Ok(vk)) => vk.open(note),
        }
        .map_err(|e| SyncError::Integrity(format!("enclave checkpoint: {e}")))?;
        let ours = self
            .tree()
            .root(opened.size)
            .map_err(|e| SyncError::Integrity(e.to_string()))?;
        if ours != opened.root {
            return Err(SyncError::Integrity(format!(
                "the stored leaves do not match the enclave's checkpoint at size {}",
                opened.size
            )));
        }
        Ok(())
    }

    /// Stores a checkpoint, keeping the newest of each minute and the newest overall:
    /// enough history to look back on, without a row per ack forever.
    async fn persist_checkpoint(&self, cp: SignedCheckpoint) -> Result<(), DbError> {
        let now = crate::now_secs() as i64;
        self.db
            .commit(
                vec![],
                Some(Box::new(move |c| {
                    c.execute(
                        "INSERT OR REPLACE INTO checkpoints (size, note, created_at) VALUES (?1, ?2, ?3)",
                        params![cp.size as i64, cp.note, now],
                    )?;
                    c.execute(
                        "DELETE FROM checkpoints WHERE created_at / 60 = ?1 / 60 AND size < ?2",
                        params![now, cp.size as i64],
                    )?;
                    Ok(())
                })),
            )
            .await
    }

    /// Stores the newest checkpoint again (at shutdown), in case its own store failed.
    pub async fn flush_checkpoint(&self) {
        if let Some(c) = self.checkpoint() {
            if let Err(e) = self
                .persist_checkpoint(SignedCheckpoint {
                    size: c.size,
                    note: c.note,
                })
                .await
            {
                tracing::warn!("storing the last checkpoint at shutdown failed: {e}");
            }
        }
    }

    /// Waits until every leaf up to and including `index` is committed. A token or an
    /// admin answer is released only then: a leaf committed past a hole could still be
    /// lost with the hole if the enclave died too, and the client would hold a token
    /// the log can never prove.
    async fn wait_contiguous(&self, index: u64) -> Result<(), ApiError> {
        let mut rx = self.state.size.subscribe();
        let wait = async move { rx.wait_for(|size| *size > index).await.is_ok() };
        match tokio::time::timeout(Duration::from_secs(10), wait).await {
            Ok(true) => Ok(()),
            _ => Err(ApiError::EnclaveUnavailable(format!(
                "leaf {index} is stored but the log before it is not yet complete; retry"
            ))),
        }
    }

    /// Background work: acknowledge each new committed size, fill gaps left by lost
    /// responses, and re-sync after enclave trouble.
    pub fn spawn_background(self: &Arc<Self>) {
        let release = self.cosigning.get().map(|c| {
            let me = self.clone();
            tokio::spawn(async move { me.persister().await });
            // Two rounds in flight at most: one being released, one at the witnesses.
            let (tx, rx) = mpsc::channel(1);
            let me = self.clone();
            tokio::spawn(async move { me.releaser(rx).await });
            (c.clone(), tx)
        });
        let me = self.clone();
        tokio::spawn(async move { me.acker(release).await });
        let me = self.clone();
        tokio::spawn(async move { me.supervisor().await });
    }

    /// Acknowledges each new committed size. With witnesses (`release`), each ack is
    /// a witnessing round whose cosigned checkpoint goes to the releaser.
    async fn acker(self: Arc<Self>, release: Option<(Arc<Cosigning>, mpsc::Sender<SignedCheckpoint>)>) {
        let mut rx = self.state.size.subscribe();
        // The first missing index while the committed prefix has a gap, and since when.
        let mut gap: Option<(u64, std::time::Instant)> = None;
        // With witnesses: the size last cosigned and passed on to be released.
        let mut cosigned: Option<u64> = None;
        loop {
            let changed = tokio::time::timeout(Duration::from_millis(500), rx.changed()).await;
            if matches!(changed, Ok(Err(_))) {
                return;
            }
            if changed.is_ok() && release.is_none() {
                tokio::time::sleep(ACK_COALESCE).await;
            }
            if !self.is_ready() {
                continue;
            }
            let size = self.committed_size();
            let served = self.checkpoint().map(|c| c.size);
            // A round already on its way to the releaser counts, except on the idle tick,
            // which retries anything that was cosigned but not released (the enclave was
            // busy restarting, say).
            let ahead = if changed.is_ok() { served.max(cosigned) } else { served };
            if ahead.is_none_or(|a| a < size) {
                let acked = self
                    .enclave
                    .call(Op::Ack { size })
                    .await
                    .and_then(|r| expect_reply!(r, Reply::Checkpoint, "Ack"));
                let kept = match (acked, &release) {
                    (Err(e), _) => {
                        tracing::warn!("ack failed: {e}");
                        self.enclave_trouble();
                        Ok(())
                    }
                    (Ok(cp), Some((c, tx))) => match self.cosign_round(c, cp).await {
                        Ok(Some(cp)) => {
                            cosigned = Some(cp.size);
                            let _ = tx.send(cp).await;
                            Ok(())
                        }
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    },
                    (Ok(cp), None) => self.keep_checkpoint(cp).await,
                };
                match kept {
                    Ok(()) => {}
                    Err(SyncError::Integrity(m)) => self.set_integrity(m),
                    Err(e) => tracing::warn!("keeping the checkpoint failed: {e}"),
                }
            }
            // Under load the committed prefix almost always has some gap (concurrent
            // commits land out of order); one that stays at the same index for
            // GAP_PATIENCE is a leaf whose response never arrived.
            if self.state.has_gap() {
                let first_missing = self.committed_size();
                match gap {
                    Some((at, since)) if at == first_missing && since.elapsed() >= GAP_PATIENCE => {
                        if let Err(e) = self.fetch_unacked(first_missing).await {
                            tracing::warn!("filling a gap in the log failed: {e}");
                        }
                        gap = None;
                    }
                    Some((at, _)) if at == first_missing => {}
                    _ => gap = Some((first_missing, std::time::Instant::now())),
                }
            } else {
                gap = None;
            }
        }
    }

    async fn supervisor(self: Arc<Self>) {
        loop {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.wake_supervisor.notified()).await;
            if self.integrity_failure().is_some() {
                continue;
            }
            // A cheap probe: a live, restored enclave answers Checkpoint.
            let healthy = self.ready.load(Ordering::SeqCst) && self.enclave.call(Op::Checkpoint).await.is_ok();
            if !healthy {
                match self.sync().await {
                    Ok(()) => tracing::info!("enclave in sync"),
                    Err(e) => tracing::warn!("enclave sync failed: {e}"),
                }
            }
        }
    }
}

/// A leaf from the enclave, with its token id if it records a token.
pub fn pending(record: LeafRecord) -> PendingLeaf {
    let jti = leaf::parse(&record.bytes)
        .ok()
        .filter(|l| l.kind == KIND_TOKEN_ISSUED)
        .and_then(|l| l.data.get("jti").and_then(|j| j.as_str()).map(str::to_string));
    PendingLeaf::new(record, jti)
}
