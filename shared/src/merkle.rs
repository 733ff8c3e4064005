//! RFC 9162 Merkle tree hashing, the compact range the enclave keeps, and the proof
//! checks auditors run.
//!
//! The enclave never holds leaves: a [`CompactRange`] is the O(log n) list of roots of
//! the perfect subtrees that make up a tree of `size` leaves, which is all that is
//! needed to append and to compute the root. Proof *generation* lives in
//! [`crate::merkle::proof`]; verification here follows RFC 9162 §2.1.3.2 and §2.1.4.2.

use sha2::{Digest, Sha256};

pub mod proof;
pub mod tiles;

pub type Hash = [u8; 32];

/// SHA-256 of the empty string: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x00 ‖ leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MerkleError {
    #[error("a compact range of size {size} has {want} hashes, got {got}")]
    FrontierLength { size: u64, want: usize, got: usize },
    #[error("index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("sizes out of order: {from} > {to}")]
    SizesOutOfOrder { from: u64, to: u64 },
    #[error("proof has the wrong length")]
    ProofLength,
    #[error("proof does not lead to the expected root")]
    RootMismatch,
    #[error("a consistency proof from the empty tree proves nothing")]
    EmptyTreeConsistency,
    #[error("hash must be 32 bytes, got {0}")]
    HashLength(usize),
    /// A stored tile the tree needs is not in the store (or not 256 hashes).
    #[error("tile {level}/{index} is missing from the store")]
    MissingTile { level: u8, index: u64 },
}

/// Converts a byte slice from the wire into a hash.
pub fn to_hash(bytes: &[u8]) -> Result<Hash, MerkleError> {
    bytes.try_into().map_err(|_| MerkleError::HashLength(bytes.len()))
}

/// The roots of the perfect subtrees covering leaves `[0, size)`, largest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactRange {
    size: u64,
    hashes: Vec<Hash>,
}

impl CompactRange {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a range from its parts, checking that the shape fits the size.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, MerkleError> {
        let want = size.count_ones() as usize;
        if hashes.len() != want {
            return Err(MerkleError::FrontierLength {
                size,
                want,
                got: hashes.len(),
            });
        }
        Ok(Self { size, hashes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends one leaf (given by its leaf hash): merges equal-sized subtrees the way
    /// binary addition carries.
    pub fn append(&mut self, leaf_hash: Hash) {
        let appended = self.append_subtree(0, leaf_hash);
        debug_assert!(appended, "a single leaf always fits");
    }

    /// Appends a perfect subtree of `2^height` leaves, given by its root, exactly as
    /// appending its leaves one by one would (so a caller can hash subtrees apart, in
    /// parallel, and join them here). A subtree starts only where one of its size can:
    /// unless the range's size is a multiple of `2^height`, nothing changes and this
    /// returns `false`.
    #[must_use]
    pub fn append_subtree(&mut self, height: u32, root: Hash) -> bool {
        let Some(leaves) = 1u64.checked_shl(height).filter(|_| height < 64) else {
            return false;
        };
        if !self.size.is_multiple_of(leaves) || self.size.checked_add(leaves).is_none() {
            return false;
        }
        let mut h = root;
        let mut n = self.size >> height;
        while n & 1 == 1 {
            // A set low bit means a subtree of this height is waiting on the right edge.
            let left = self.hashes.pop().expect("popcount invariant");
            h = node_hash(&left, &h);
            n >>= 1;
        }
        self.hashes.push(h);
        self.size += leaves;
        true
    }

    /// The RFC 9162 root of the tree this range covers.
    pub fn root(&self) -> Hash {
        let mut iter = self.hashes.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(last) => iter.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            return Err(MerkleError::ProofLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(MerkleError::ProofLength);
    }
    if &r != root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof between two tree sizes (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if size1 > size2 {
        return Err(MerkleError::SizesOutOfOrder { from: size1, to: size2 });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(MerkleError::ProofLength);
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    if size1 == 0 {
        // Every tree extends the empty tree, so such a "proof" proves nothing; refuse it
        // rather than let a caller believe something was checked (as transparency-dev does).
        return Err(MerkleError::EmptyTreeConsistency);
    }
    if proof.is_empty() {
        return Err(MerkleError::ProofLength);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(*root1);
    }
    path.extend_from_slice(proof);

    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(MerkleError::ProofLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(MerkleError::ProofLength);
    }
    if &fr != root1 || &sr != root2 {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}
