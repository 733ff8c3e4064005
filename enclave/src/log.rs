//! The enclave's view of the audit log: two compact ranges and the leaves in between.
//!
//! ```text
//!   0 ............ acked ................ head
//!   | host has these |  unacked: held here |
//! ```
//!
//! `head` is the tree including every leaf the enclave has written. `acked` is the tree
//! the host has confirmed durable; checkpoints are signed only at acknowledged sizes,
//! so a checkpoint never names a leaf the host could still lose. The leaves between the
//! two are kept here so a host that crashes after the enclave wrote a leaf but before
//! committing it can fetch them again (`Unacked`).
//!
//! Every leaf carries a MAC over `(index, leaf hash)` under a key that never leaves the
//! enclave. After an enclave restart the host hands back the leaves it holds beyond the
//! last signed checkpoint, and the MAC lets the enclave accept exactly the leaves it
//! wrote itself and nothing the host made up.

use aws_lc_rs::hmac;
use sealgate_shared::leaf::{Leaf, Origin, LEAF_VERSION};
use sealgate_shared::merkle::{self, CompactRange, Hash};
use sealgate_shared::note::Checkpoint;
use sealgate_shared::protocol::{LeafRecord, LogHead, TailLeaf};
use serde::Serialize;
use serde_bytes::ByteBuf;
use std::collections::VecDeque;

/// Leaves the enclave will hold for a host that does not acknowledge; past this it
/// refuses new leaves rather than grow without bound.
pub const MAX_UNACKED: usize = 200_000;

/// Leaf bytes (each leaf's encoded JSON plus its MAC) the enclave will hold for a host
/// that does not acknowledge. The count cap alone does not bound memory: a host event
/// may be up to `MAX_HOST_EVENT_BYTES` (16 KiB), so 200 000 of them would be ~3.2 GiB,
/// more than the whole enclave (1 GiB by default, see `deploy/enclave/run-enclave.sh`,
/// and the enclave's root file system lives in that memory too). 64 MiB is ~6% of that
/// default: an honest host acknowledges every ~20 ms, so even at tens of thousands of
/// mints a second (token leaves are ~400 bytes) it stays far below this, while a host
/// that stops acknowledging is refused long before the enclave runs short. What the
/// count cap still bounds is the per-leaf bookkeeping (a hash and a few words per
/// entry, ~25 MiB at 200 000), so the worst case stays under ~90 MiB.
///
/// The check is "refuse once the queue holds this much", like the count check, so the
/// queue can exceed it by at most one leaf; in exchange [`Log::can_append`] can promise
/// that the next append succeeds without knowing its size (rotation relies on that).
pub const MAX_UNACKED_BYTES: usize = 64 << 20;

/// Most leaf bytes returned by one `Unacked` (keeps the reply well inside a frame).
pub const MAX_UNACKED_REPLY_BYTES: usize = 512 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    #[error("the log awaits a restore (RestoreBegin … RestoreEnd) after an enclave restart")]
    NeedsRestore,
    #[error("the log is live; a restore is only accepted after a restart")]
    AlreadyLive,
    /// The unacknowledged queue is full (by count or by bytes). Nothing is lost: the host
    /// stores what `Unacked` returns and sends `Ack`, and appends succeed again.
    #[error(
        "{leaves} unacknowledged leaves ({bytes} bytes) fill the enclave's queue (at most {MAX_UNACKED} leaves or \
         {MAX_UNACKED_BYTES} bytes): the host must store them (Unacked) and acknowledge them (Ack) before \
         anything more is appended"
    )]
    Backpressure { leaves: usize, bytes: usize },
    #[error("ack of size {size} outside [{acked}, {head}]")]
    AckOutOfRange { size: u64, acked: u64, head: u64 },
    #[error("leaves below {acked} are acknowledged and no longer held (asked from {from})")]
    AlreadyAcked { from: u64, acked: u64 },
    #[error("restore rejected: {0}; start again with RestoreBegin")]
    Restore(String),
    /// `RestoreLeaves` or `RestoreEnd` with no restore begun: the enclave restarted
    /// since `RestoreBegin`, or an earlier refusal abandoned it.
    #[error("no restore is in progress (the enclave restarted, or a refusal ended it): start with RestoreBegin")]
    NoRestoreInProgress,
    #[error("cannot encode leaf: {0}")]
    Encode(String),
}

pub struct Log {
    mac_key: hmac::Key,
    acked: CompactRange,
    head: CompactRange,
    unacked: VecDeque<(LeafRecord, Hash)>,
    /// Sum of [`held_bytes`] over `unacked`, checked against [`MAX_UNACKED_BYTES`].
    unacked_bytes: usize,
    needs_restore: bool,
    /// A restore under way (between `restore_begin` and `restore_end`): the tree rebuilt
    /// so far. Only a compact range, so a restore of any length costs O(log n) here.
    restoring: Option<CompactRange>,
}

impl Log {
    /// A brand-new, empty log.
    pub fn fresh(mac_key: &[u8; 32]) -> Self {
        Self {
            mac_key: hmac::Key::new(hmac::HMAC_SHA256, mac_key),
            acked: CompactRange::new(),
            head: CompactRange::new(),
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            needs_restore: false,
            restoring: None,
        }
    }

    /// A log whose state was lost in a restart; refuses everything but `restore`.
    pub fn awaiting_restore(mac_key: &[u8; 32]) -> Self {
        Self {
            needs_restore: true,
            ..Self::fresh(mac_key)
        }
    }

    pub fn head(&self) -> LogHead {
        LogHead {
            size: self.head.size(),
            acked: self.acked.size(),
            needs_restore: self.needs_restore,
        }
    }

    pub fn ready(&self) -> Result<(), LogError> {
        if self.needs_restore {
            return Err(LogError::NeedsRestore);
        }
        Ok(())
    }

    fn mac(&self, index: u64, leaf_hash: &Hash) -> hmac::Tag {
        hmac::sign(&self.mac_key, &mac_input(index, leaf_hash))
    }

    /// Whether a leaf could be appended now (for steps that must not half-happen): if
    /// this passes, the next `append` under the same lock succeeds whatever its size.
    pub fn can_append(&self) -> Result<(), LogError> {
        self.ready()?;
        if self.unacked.len() >= MAX_UNACKED || self.unacked_bytes >= MAX_UNACKED_BYTES {
            return Err(LogError::Backpressure {
                leaves: self.unacked.len(),
                bytes: self.unacked_bytes,
            });
        }
        Ok(())
    }

    /// Appends a leaf built here from `kind` and `data`, stamped with the next index.
    pub fn append<D: Serialize>(
        &mut self,
        origin: Origin,
        kind: &str,
        data: &D,
        ts: u64,
    ) -> Result<LeafRecord, LogError> {
        self.can_append()?;
        let index = self.head.size();
        let leaf = Leaf {
            v: LEAF_VERSION,
            index,
            ts,
            origin,
            kind: kind.to_string(),
            data,
        };
        let bytes = serde_json::to_vec(&leaf).map_err(|e| LogError::Encode(e.to_string()))?;
        let hash = merkle::leaf_hash(&bytes);
        let mac = self.mac(index, &hash);
        let record = LeafRecord {
            index,
            bytes: ByteBuf::from(bytes),
            mac: ByteBuf::from(mac.as_ref().to_vec()),
        };
        self.head.append(hash);
        self.unacked_bytes += held_bytes(&record);
        self.unacked.push_back((record.clone(), hash));
        Ok(record)
    }

    /// The host has stored every leaf below `size`: move the acknowledged tree there
    /// and return its size and root, ready to be signed.
    pub fn ack(&mut self, size: u64) -> Result<(u64, Hash), LogError> {
        self.ready()?;
        let (acked, head) = (self.acked.size(), self.head.size());
        if size < acked || size > head {
            return Err(LogError::AckOutOfRange { size, acked, head });
        }
        while self.acked.size() < size {
            let Some((record, hash)) = self.unacked.pop_front() else {
                break;
            };
            self.unacked_bytes = self.unacked_bytes.saturating_sub(held_bytes(&record));
            self.acked.append(hash);
        }
        Ok((self.acked.size(), self.acked.root()))
    }

    /// The acknowledged tree's size and root.
    pub fn acked_root(&self) -> (u64, Hash) {
        (self.acked.size(), self.acked.root())
    }

    /// Unacknowledged leaves from index `from`, bounded to fit one frame; the host
    /// repeats with a higher `from` until it gets an empty list.
    pub fn unacked_from(&self, from: u64) -> Result<Vec<LeafRecord>, LogError> {
        self.ready()?;
        let acked = self.acked.size();
        if from < acked {
            return Err(LogError::AlreadyAcked { from, acked });
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for (rec, _) in self.unacked.iter().skip((from - acked) as usize) {
            bytes += rec.bytes.len() + rec.mac.len() + 16;
            if bytes > MAX_UNACKED_REPLY_BYTES && !out.is_empty() {
                break;
            }
            out.push(rec.clone());
        }
        Ok(out)
    }

    /// Starts rebuilding the log after a restart from a checkpoint whose signature the
    /// caller has already verified with this enclave's key, and the frontier at its size.
    /// The leaves after it follow in [`Log::restore_leaves`] chunks (a long tail does not
    /// fit one frame) and [`Log::restore_end`] adopts the result. Until then the log
    /// stays as it was, waiting: a host that stops half-way leaves it un-restored, never
    /// half-restored. A new `restore_begin` discards a half-done restore (the host
    /// crashed, or its connection did, and it starts over), even when it is refused.
    /// Returns the size the restore has reached.
    pub fn restore_begin(&mut self, checkpoint: Option<Checkpoint>, frontier: Vec<Hash>) -> Result<u64, LogError> {
        if !self.needs_restore {
            return Err(LogError::AlreadyLive);
        }
        self.abandon_restore();
        let range = match &checkpoint {
            None if frontier.is_empty() => CompactRange::new(),
            None => return Err(LogError::Restore("a frontier without a checkpoint".into())),
            Some(cp) => {
                let range =
                    CompactRange::from_parts(cp.size, frontier).map_err(|e| LogError::Restore(e.to_string()))?;
                if range.root() != cp.root {
                    return Err(LogError::Restore("frontier does not match the checkpoint root".into()));
                }
                range
            }
        };
        let size = range.size();
        self.restoring = Some(range);
        Ok(size)
    }

    /// Drops a half-done restore, if any (a new `RestoreBegin` arrived, even one whose
    /// checkpoint is refused before it gets here).
    pub fn abandon_restore(&mut self) {
        self.restoring = None;
    }

    /// The next chunk of leaves beyond the checkpoint, each continuing the last: by
    /// hash, with the MAC this enclave put on it, so the enclave accepts exactly the
    /// leaves it wrote itself and nothing the host made up. Any refusal abandons the
    /// whole restore (the host starts again with `restore_begin`), so no mix of checked
    /// and unchecked chunks can ever be adopted. Returns the size reached.
    pub fn restore_leaves(&mut self, leaves: &[TailLeaf]) -> Result<u64, LogError> {
        if !self.needs_restore {
            return Err(LogError::AlreadyLive);
        }
        let mut range = self.restoring.take().ok_or(LogError::NoRestoreInProgress)?;
        for leaf in leaves {
            if leaf.index != range.size() {
                return Err(LogError::Restore(format!(
                    "tail leaf has index {}, expected {}",
                    leaf.index,
                    range.size()
                )));
            }
            let hash = merkle::to_hash(&leaf.hash).map_err(|e| LogError::Restore(e.to_string()))?;
            // hmac::verify compares in constant time.
            if hmac::verify(&self.mac_key, &mac_input(leaf.index, &hash), &leaf.mac).is_err() {
                return Err(LogError::Restore(format!(
                    "leaf {} was not written by this enclave",
                    leaf.index
                )));
            }
            range.append(hash);
        }
        let size = range.size();
        self.restoring = Some(range);
        Ok(size)
    }

    /// Ends a restore at `size` with the root the host computed there: only if both
    /// match what the checked chunks built does the log adopt it. The host sends those
    /// leaves from its database, so they count as acknowledged: the next checkpoint may
    /// cover them. A mismatch (a chunk the host meant to send and did not, or a tree
    /// that differs from its own) abandons the restore like any other refusal.
    pub fn restore_end(&mut self, size: u64, root: &[u8]) -> Result<(), LogError> {
        if !self.needs_restore {
            return Err(LogError::AlreadyLive);
        }
        let range = self.restoring.take().ok_or(LogError::NoRestoreInProgress)?;
        let root = merkle::to_hash(root).map_err(|e| LogError::Restore(format!("end root: {e}")))?;
        if range.size() != size {
            return Err(LogError::Restore(format!(
                "the restore ends at size {size} but its leaves reach {}",
                range.size()
            )));
        }
        if range.root() != root {
            return Err(LogError::Restore(format!(
                "at size {size} the host's root differs from the one its checkpoint and leaves make"
            )));
        }
        self.acked = range.clone();
        self.head = range;
        self.unacked.clear();
        self.unacked_bytes = 0;
        self.needs_restore = false;
        Ok(())
    }
}

/// What one held leaf counts against [`MAX_UNACKED_BYTES`]: its encoded bytes and MAC,
/// the part whose size the host controls (through host events).
fn held_bytes(record: &LeafRecord) -> usize {
    record.bytes.len() + record.mac.len()
}

/// What a leaf MAC covers: a domain tag, the index and the leaf hash.
fn mac_input(index: u64, hash: &Hash) -> Vec<u8> {
    let mut v = b"sealgate-leaf-mac-v1".to_vec();
    v.extend_from_slice(&index.to_be_bytes());
    v.extend_from_slice(hash);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [5; 32];

    fn tail_of(recs: &[LeafRecord]) -> Vec<TailLeaf> {
        recs.iter()
            .map(|r| TailLeaf {
                index: r.index,
                hash: ByteBuf::from(merkle::leaf_hash(&r.bytes).to_vec()),
                mac: r.mac.clone(),
            })
            .collect()
    }

    /// A whole restore, one leaf per chunk, ended at the size and root `store` has
    /// there (the host's view).
    fn restore_all(
        log: &mut Log,
        cp: Option<Checkpoint>,
        frontier: Vec<Hash>,
        tail: &[TailLeaf],
        store: &sealgate_shared::merkle::proof::TreeStore,
    ) -> Result<(), LogError> {
        let size = cp.as_ref().map_or(0, |c| c.size) + tail.len() as u64;
        log.restore_begin(cp, frontier)?;
        for leaf in tail {
            log.restore_leaves(std::slice::from_ref(leaf))?;
        }
        let root = store.root(size).map_err(|e| LogError::Restore(e.to_string()))?;
        log.restore_end(size, &root)
    }

    fn filled(n: usize) -> (Log, Vec<LeafRecord>) {
        let mut log = Log::fresh(&KEY);
        let recs = (0..n)
            .map(|i| {
                log.append(Origin::Host, "test.event", &serde_json::json!({ "i": i }), 1)
                    .unwrap()
            })
            .collect();
        (log, recs)
    }

    #[test]
    fn ack_moves_the_signed_tree_and_unacked_follows() {
        let (mut log, recs) = filled(5);
        assert_eq!(
            log.head(),
            LogHead {
                size: 5,
                acked: 0,
                needs_restore: false
            }
        );
        assert_eq!(log.unacked_from(0).unwrap(), recs);
        let (size, root) = log.ack(3).unwrap();
        assert_eq!(size, 3);
        let mut cr = CompactRange::new();
        for r in &recs[..3] {
            cr.append(merkle::leaf_hash(&r.bytes));
        }
        assert_eq!(root, cr.root());
        assert_eq!(log.unacked_from(3).unwrap(), recs[3..].to_vec());
        assert_eq!(log.unacked_from(1), Err(LogError::AlreadyAcked { from: 1, acked: 3 }));
        assert!(log.ack(2).is_err());
        assert!(log.ack(6).is_err());
    }

    /// Issue 11: a host that never acknowledges, appending the largest events it may,
    /// fills the queue by bytes long before the count cap; the enclave then refuses
    /// every append (host events and its own leaves alike) until an ack frees room.
    #[test]
    fn unacked_queue_is_bounded_by_bytes() {
        let mut log = Log::fresh(&KEY);
        // A JSON object as large as a host event may be (the envelope adds ~80 bytes).
        let big = serde_json::json!({ "pad": "x".repeat(sealgate_shared::leaf::MAX_HOST_EVENT_BYTES - 16) });
        let mut appended = 0;
        let refusal = loop {
            match log.append(Origin::Host, "test.big", &big, 1) {
                Ok(_) => appended += 1,
                Err(e) => break e,
            }
            assert!(appended <= MAX_UNACKED, "the byte bound never refused");
        };
        assert!(
            appended < MAX_UNACKED / 10,
            "refused by bytes, well below the count cap: {appended} leaves"
        );
        let LogError::Backpressure { leaves, bytes } = refusal else {
            panic!("expected Backpressure, got {refusal:?}");
        };
        assert_eq!(leaves, appended);
        assert!(
            (MAX_UNACKED_BYTES..MAX_UNACKED_BYTES + 2 * sealgate_shared::leaf::MAX_HOST_EVENT_BYTES).contains(&bytes),
            "held {bytes} bytes"
        );
        assert_eq!(log.head().size, appended as u64, "a refused append writes nothing");
        // The message tells the host what to do.
        assert!(refusal.to_string().contains("Ack"), "{refusal}");
        // Small leaves are refused too, and so is the enclave's own kind of leaf.
        assert!(matches!(log.can_append(), Err(LogError::Backpressure { .. })));
        assert!(matches!(
            log.append(Origin::Enclave, "token.issued", &1, 1),
            Err(LogError::Backpressure { .. })
        ));
        // Everything held can still be fetched, so the host can store it and ack.
        assert_eq!(log.unacked_from(0).unwrap()[0].index, 0);
        log.ack(10).unwrap();
        log.append(Origin::Host, "test.big", &big, 1).unwrap();
        // Acknowledging everything empties the byte count, not just the count.
        let head = log.head().size;
        log.ack(head).unwrap();
        assert_eq!(log.unacked_bytes, 0);
        for _ in 0..appended {
            log.append(Origin::Host, "test.big", &big, 1).unwrap();
        }
    }

    #[test]
    fn leaf_bytes_have_the_fixed_envelope() {
        let (_, recs) = filled(2);
        assert_eq!(
            std::str::from_utf8(&recs[1].bytes).unwrap(),
            r#"{"v":1,"index":1,"ts":1,"origin":"host","kind":"test.event","data":{"i":1}}"#
        );
    }

    #[test]
    fn restore_accepts_own_tail_and_refuses_forgeries() {
        let (mut log, recs) = filled(6);
        let (size, root) = log.ack(4).unwrap();
        let mut store = sealgate_shared::merkle::proof::TreeStore::new();
        for r in &recs {
            store.push(merkle::leaf_hash(&r.bytes));
        }
        let cp = Checkpoint {
            origin: "o".into(),
            size,
            root,
        };
        let frontier = store.frontier(4).unwrap();

        let mut restarted = Log::awaiting_restore(&KEY);
        assert_eq!(restarted.append(Origin::Host, "x", &1, 1), Err(LogError::NeedsRestore));
        restore_all(
            &mut restarted,
            Some(cp.clone()),
            frontier.clone(),
            &tail_of(&recs[4..]),
            &store,
        )
        .unwrap();
        assert_eq!(
            restarted.head(),
            LogHead {
                size: 6,
                acked: 6,
                needs_restore: false
            }
        );
        assert_eq!(restarted.head, log.head);

        // A forged tail leaf, a MAC from another key, a gap, a bad frontier: refused.
        let mut forged = tail_of(&recs[4..5]).remove(0);
        forged.hash = ByteBuf::from(merkle::leaf_hash(b"{\"forged\":true}").to_vec());
        let mut other = Log::fresh(&[6; 32]);
        let foreign = tail_of(&[other.append(Origin::Host, "test.event", &0, 1).unwrap()]).remove(0);
        let mut bad_frontier = frontier.clone();
        bad_frontier[0][0] ^= 1;
        for (cp, fr, tail) in [
            (Some(cp.clone()), frontier.clone(), vec![forged]),
            (
                Some(cp.clone()),
                frontier.clone(),
                vec![TailLeaf { index: 4, ..foreign }],
            ),
            (Some(cp.clone()), frontier.clone(), tail_of(&recs[5..])),
            (Some(cp.clone()), bad_frontier, vec![]),
            (Some(cp.clone()), vec![], vec![]),
            (None, frontier.clone(), vec![]),
        ] {
            let mut l = Log::awaiting_restore(&KEY);
            assert!(restore_all(&mut l, cp, fr, &tail, &store).is_err());
            assert!(l.ready().is_err(), "a failed restore leaves the log waiting");
            assert_eq!(
                l.restore_end(4, &root),
                Err(LogError::NoRestoreInProgress),
                "a refusal abandons the restore"
            );
        }
        assert_eq!(log.restore_begin(None, vec![]), Err(LogError::AlreadyLive));
        assert_eq!(log.restore_leaves(&[]), Err(LogError::AlreadyLive));
        assert_eq!(log.restore_end(6, &root), Err(LogError::AlreadyLive));
    }

    /// Chunks are checked as they arrive and adopted only at the end, with the size and
    /// root the host names; a new begin starts over.
    #[test]
    fn a_chunked_restore_is_adopted_only_at_a_matching_end() {
        let (mut log, recs) = filled(9);
        let (size, root) = log.ack(3).unwrap();
        let mut store = sealgate_shared::merkle::proof::TreeStore::new();
        for r in &recs {
            store.push(merkle::leaf_hash(&r.bytes));
        }
        let cp = Checkpoint {
            origin: "o".into(),
            size,
            root,
        };
        let frontier = store.frontier(3).unwrap();
        let tail = tail_of(&recs[3..]);
        let full_root = store.root(9).unwrap();

        let mut l = Log::awaiting_restore(&KEY);
        assert_eq!(l.restore_leaves(&tail[..2]), Err(LogError::NoRestoreInProgress));
        assert_eq!(l.restore_begin(Some(cp.clone()), frontier.clone()), Ok(3));
        assert_eq!(l.restore_leaves(&tail[..2]), Ok(5));
        assert!(l.ready().is_err(), "half-way, the log still waits");
        // A new begin discards the first two chunks: continuing at 5 is now a gap.
        assert_eq!(l.restore_begin(Some(cp.clone()), frontier.clone()), Ok(3));
        assert!(matches!(l.restore_leaves(&tail[2..]), Err(LogError::Restore(_))));
        // Wrong size, then wrong root: refused, and each abandons the restore.
        for (end, end_root) in [(8, store.root(8).unwrap()), (9, store.root(8).unwrap())] {
            l.restore_begin(Some(cp.clone()), frontier.clone()).unwrap();
            assert_eq!(l.restore_leaves(&tail[..3]), Ok(6));
            assert_eq!(l.restore_leaves(&tail[3..]), Ok(9));
            assert!(matches!(l.restore_end(end, &end_root), Err(LogError::Restore(_))));
            assert!(l.ready().is_err());
            assert_eq!(l.restore_leaves(&[]), Err(LogError::NoRestoreInProgress));
        }
        l.restore_begin(Some(cp), frontier).unwrap();
        l.restore_leaves(&tail[..3]).unwrap();
        l.restore_leaves(&tail[3..]).unwrap();
        l.restore_end(9, &full_root).unwrap();
        assert_eq!(l.head, log.head);
        assert_eq!(
            l.head(),
            LogHead {
                size: 9,
                acked: 9,
                needs_restore: false
            }
        );
    }
}
