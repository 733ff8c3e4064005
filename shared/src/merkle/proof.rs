//! Proof generation (RFC 9162 §2.1.3.1 PATH and §2.1.4.1 SUBPROOF) over any source of
//! subtree hashes, and [`TreeStore`], the host's in-memory source.
//!
//! The recursions only ever ask for a perfect, aligned subtree on the left and a
//! (possibly ragged) subtree ending at the tree's size on the right, so a store that
//! keeps every perfect node answers each request in O(log n) and a proof in O(log² n).

use super::{node_hash, Hash, MerkleError};

/// Anything that can give the Merkle tree hash of leaves `[lo, hi)`, `lo < hi`. A store
/// that reads from disk may fail ([`MerkleError::MissingTile`]); the in-memory one never
/// does.
pub trait SubtreeHashes {
    fn subtree(&self, lo: u64, hi: u64) -> Result<Hash, MerkleError>;
}

/// Largest power of two strictly less than `n` (`n > 1`).
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n > 1);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The inclusion proof for leaf `index` in the tree of the first `size` leaves.
pub fn inclusion<S: SubtreeHashes + ?Sized>(src: &S, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(src, index, 0, size, &mut out)?;
    Ok(out)
}

fn path<S: SubtreeHashes + ?Sized>(src: &S, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) -> Result<(), MerkleError> {
    let n = hi - lo;
    if n == 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m - lo < k {
        path(src, m, lo, lo + k, out)?;
        out.push(src.subtree(lo + k, hi)?);
    } else {
        path(src, m, lo + k, hi, out)?;
        out.push(src.subtree(lo, lo + k)?);
    }
    Ok(())
}

/// The consistency proof from the tree of `size1` leaves to the tree of `size2`.
pub fn consistency<S: SubtreeHashes + ?Sized>(src: &S, size1: u64, size2: u64) -> Result<Vec<Hash>, MerkleError> {
    if size1 > size2 {
        return Err(MerkleError::SizesOutOfOrder { from: size1, to: size2 });
    }
    let mut out = Vec::new();
    if size1 > 0 && size1 < size2 {
        subproof(src, size1, 0, size2, true, &mut out)?;
    }
    Ok(out)
}

fn subproof<S: SubtreeHashes + ?Sized>(
    src: &S,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), MerkleError> {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push(src.subtree(lo, hi)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(src, m, lo, lo + k, whole, out)?;
        out.push(src.subtree(lo + k, hi)?);
    } else {
        subproof(src, m - k, lo + k, hi, false, out)?;
        out.push(src.subtree(lo, lo + k)?);
    }
    Ok(())
}

/// Checks that a tree of `len` leaves has a tree of `size` (shared by the stores).
pub(crate) fn check_size(len: u64, size: u64) -> Result<(), MerkleError> {
    if size > len {
        return Err(MerkleError::IndexOutOfRange { index: size, size: len });
    }
    Ok(())
}

/// The root of the first `size` of `len` leaves of `src`.
pub(crate) fn root_of<S: SubtreeHashes + ?Sized>(src: &S, len: u64, size: u64) -> Result<Hash, MerkleError> {
    check_size(len, size)?;
    if size == 0 {
        return Ok(super::empty_root());
    }
    src.subtree(0, size)
}

/// Every perfect node of a growing tree, level by level: `levels[h][i]` is the root of
/// leaves `[i·2^h, (i+1)·2^h)`. Costs two hashes of memory per leaf.
#[derive(Debug, Default, Clone)]
pub struct TreeStore {
    levels: Vec<Vec<Hash>>,
}

impl TreeStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels.first()?.get(index as usize).copied()
    }

    pub fn push(&mut self, leaf_hash: Hash) {
        let mut h = leaf_hash;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(h);
            let len = self.levels[level].len();
            if len % 2 == 1 {
                return;
            }
            h = node_hash(&self.levels[level][len - 2], &self.levels[level][len - 1]);
            level += 1;
        }
    }

    /// Inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        check_size(self.len(), size)?;
        inclusion(self, index, size)
    }

    /// Consistency proof between the trees of the first `size1` and `size2` leaves.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, MerkleError> {
        check_size(self.len(), size2)?;
        consistency(self, size1, size2)
    }

    /// The root of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, MerkleError> {
        root_of(self, self.len(), size)
    }

    /// The compact range (frontier) of the first `size` leaves, largest subtree first.
    pub fn frontier(&self, size: u64) -> Result<Vec<Hash>, MerkleError> {
        check_size(self.len(), size)?;
        let mut out = Vec::new();
        let mut lo = 0u64;
        for h in (0..64).rev() {
            if size & (1 << h) != 0 {
                out.push(self.levels[h][(lo >> h) as usize]);
                lo += 1 << h;
            }
        }
        Ok(out)
    }
}

impl SubtreeHashes for TreeStore {
    fn subtree(&self, lo: u64, hi: u64) -> Result<Hash, MerkleError> {
        let n = hi - lo;
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            let h = n.trailing_zeros() as usize;
            if let Some(hash) = self.levels.get(h).and_then(|l| l.get((lo >> h) as usize)) {
                return Ok(*hash);
            }
        }
        let k = split_point(n);
        Ok(node_hash(&self.subtree(lo, lo + k)?, &self.subtree(lo + k, hi)?))
    }
}
