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

/// Most leaf bytes returned by one `Unacked` (keeps the reply well inside a frame).
pub const MAX_UNACKED_REPLY_BYTES: usize = 512 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    #[error("the log awaits Restore after an enclave restart")]
    NeedsRestore,
    #[error("the log is live; Restore is only accepted after a restart")]
    AlreadyLive,
    #[error("{0} leaves await acknowledgement; commit and Ack first")]
    Backpressure(usize),
    #[error("ack of size {size} outside [{acked}, {head}]")]
    AckOutOfRange { size: u64, acked: u64, head: u64 },
    #[error("leaves below {acked} are acknowledged and no longer held (asked from {from})")]
    AlreadyAcked { from: u64, acked: u64 },
    #[error("restore rejected: {0}")]
    Restore(String),
    #[error("cannot encode leaf: {0}")]
    Encode(String),
}

pub struct Log {
    mac_key: hmac::Key,
    acked: CompactRange,
    head: CompactRange,
    unacked: VecDeque<(LeafRecord, Hash)>,
    needs_restore: bool,
}

impl Log {
    /// A brand-new, empty log.
    pub fn fresh(mac_key: &[u8; 32]) -> Self {
        Self {
            mac_key: hmac::Key::new(hmac::HMAC_SHA256, mac_key),
            acked: CompactRange::new(),
            head: CompactRange::new(),
            unacked: VecDeque::new(),
            needs_restore: false,
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

    /// Whether a leaf could be appended now (for steps that must not half-happen).
    pub fn can_append(&self) -> Result<(), LogError> {
        self.ready()?;
        if self.unacked.len() >= MAX_UNACKED {
            return Err(LogError::Backpressure(self.unacked.len()));
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
            let Some((_, hash)) = self.unacked.pop_front() else {
                break;
            };
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

    /// Rebuilds the log after a restart from a checkpoint whose signature the caller
    /// has already verified with this enclave's key, the frontier at its size, and the
    /// leaves beyond it that this enclave MAC'd. The host sends those leaves from its
    /// database, so they count as acknowledged: the next checkpoint may cover them.
    pub fn restore(
        &mut self,
        checkpoint: Option<Checkpoint>,
        frontier: Vec<Hash>,
        tail: &[TailLeaf],
    ) -> Result<(), LogError> {
        if !self.needs_restore {
            return Err(LogError::AlreadyLive);
        }
        let mut range = match &checkpoint {
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
        for leaf in tail {
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
        self.acked = range.clone();
        self.head = range;
        self.unacked.clear();
        self.needs_restore = false;
        Ok(())
    }
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
        restarted
            .restore(Some(cp.clone()), frontier.clone(), &tail_of(&recs[4..]))
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
            assert!(l.restore(cp, fr, &tail).is_err());
            assert!(l.ready().is_err(), "a failed restore leaves the log waiting");
        }
        assert_eq!(log.restore(None, vec![], &[]), Err(LogError::AlreadyLive));
    }
}
