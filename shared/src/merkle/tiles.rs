//! The Merkle tree kept as C2SP `tlog-tiles` hash tiles, so a host's memory does not
//! grow with its log.
//!
//! A tile at tile level `L` holds up to 256 consecutive hashes of tree level `8·L`: at
//! level 0 the leaf hashes, at level 1 the roots of each 256 leaves, and so on. A full
//! tile never changes again, so it is written once to a [`TileStore`] (the host's
//! database) and read back on demand through a small cache. Only the right edge stays in
//! memory: one partial tile per level, fewer than 256 hashes each, plus the full tiles
//! completed since the store last took them ([`TileTree::unstored`]). Any node of the
//! tree is then one tile read and at most 127 hashes away, and the proofs come from
//! [`crate::merkle::proof`] exactly as from the in-memory [`super::proof::TreeStore`]
//! (the tests check both give the same roots and proofs).
//!
//! A restart resumes from the stored tiles ([`TileTree::resume`]) and only hashes the
//! leaves after them, instead of every leaf.

use super::proof::{self, split_point, SubtreeHashes};
use super::{node_hash, Hash, MerkleError};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Tree levels per tile level.
pub const HEIGHT: u32 = 8;
/// Hashes in a full tile.
pub const WIDTH: usize = 1 << HEIGHT;
/// Full tiles kept in memory after they are stored (8 KiB each).
const CACHE_TILES: usize = 256;

/// A full tile's place in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Tile level: the tile holds hashes of tree level `8·level`.
    pub level: u8,
    /// Position among the tiles of its level.
    pub index: u64,
}

/// A full tile: exactly [`WIDTH`] hashes.
pub type Tile = Arc<[Hash]>;

/// Where full tiles are kept. `Ok(None)`: not stored.
pub trait TileStore: Send + Sync {
    fn get(&self, id: TileId) -> Result<Option<Vec<Hash>>, String>;
}

/// A store with nothing in it (a tree that never leaves memory).
pub struct NoStore;

impl TileStore for NoStore {
    fn get(&self, _: TileId) -> Result<Option<Vec<Hash>>, String> {
        Ok(None)
    }
}

/// The root of a full tile's 256 hashes (a node of tree level `8·(level+1)`).
fn tile_root(hashes: &[Hash]) -> Hash {
    up(hashes.to_vec())
}

/// Hashes `level` (a power-of-two count) up to their one root.
fn up(mut level: Vec<Hash>) -> Hash {
    while level.len() > 1 {
        level = level.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
    }
    level[0]
}

#[derive(Default)]
struct Cache {
    tiles: HashMap<TileId, Tile>,
    order: VecDeque<TileId>,
}

impl Cache {
    fn insert(&mut self, id: TileId, tile: Tile) {
        if self.tiles.insert(id, tile).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > CACHE_TILES {
            if let Some(old) = self.order.pop_front() {
                self.tiles.remove(&old);
            }
        }
    }
}

/// A growing Merkle tree whose full tiles live in a [`TileStore`].
pub struct TileTree {
    size: u64,
    /// `edge[L]`: the hashes of the partial tile of level `L` (fewer than [`WIDTH`]).
    edge: Vec<Vec<Hash>>,
    /// Full tiles the store does not have yet, until [`TileTree::stored`].
    unstored: BTreeMap<TileId, Tile>,
    cache: Mutex<Cache>,
    store: Arc<dyn TileStore>,
}

impl TileTree {
    /// An empty tree over `store`.
    pub fn new(store: Arc<dyn TileStore>) -> Self {
        Self {
            size: 0,
            edge: vec![Vec::new()],
            unstored: BTreeMap::new(),
            cache: Mutex::new(Cache::default()),
            store,
        }
    }

    /// The tree of the first `full_leaf_tiles · 256` leaves, from the tiles in `store`
    /// (each level's partial tile is rebuilt from the full tiles below it). Fails with
    /// [`MerkleError::MissingTile`] when the store lacks one it should have.
    pub fn resume(store: Arc<dyn TileStore>, full_leaf_tiles: u64) -> Result<Self, MerkleError> {
        let mut tree = Self::new(store);
        tree.size = full_leaf_tiles * WIDTH as u64;
        let mut level = 1u32;
        while (tree.size >> (HEIGHT * level)) > 0 {
            let n = tree.size >> (HEIGHT * level);
            let first = n - n % WIDTH as u64;
            let mut edge = Vec::with_capacity((n - first) as usize);
            for index in first..n {
                let below = tree.full_tile(TileId {
                    level: (level - 1) as u8,
                    index,
                })?;
                edge.push(tile_root(&below));
            }
            tree.edge.push(edge);
            level += 1;
        }
        Ok(tree)
    }

    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Appends a leaf hash; tiles it completes wait in [`TileTree::unstored`].
    pub fn push(&mut self, leaf_hash: Hash) {
        self.size += 1;
        let mut h = leaf_hash;
        let mut level = 0usize;
        loop {
            if self.edge.len() == level {
                self.edge.push(Vec::new());
            }
            self.edge[level].push(h);
            if self.edge[level].len() < WIDTH {
                return;
            }
            let hashes = std::mem::take(&mut self.edge[level]);
            h = tile_root(&hashes);
            let entries = self.size >> (HEIGHT as usize * level);
            let id = TileId {
                level: level as u8,
                index: entries / WIDTH as u64 - 1,
            };
            self.unstored.insert(id, hashes.into());
            level += 1;
        }
    }

    /// Full tiles completed since the store last took them, oldest first.
    pub fn unstored(&self) -> Vec<(TileId, Tile)> {
        self.unstored.iter().map(|(id, t)| (*id, t.clone())).collect()
    }

    /// Whether any full tile waits for the store.
    pub fn has_unstored(&self) -> bool {
        !self.unstored.is_empty()
    }

    /// The store now holds these tiles: they leave memory (through the cache).
    pub fn stored(&mut self, ids: &[TileId]) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            if let Some(tile) = self.unstored.remove(id) {
                cache.insert(*id, tile);
            }
        }
    }

    fn full_tile(&self, id: TileId) -> Result<Tile, MerkleError> {
        if let Some(t) = self.unstored.get(&id) {
            return Ok(t.clone());
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cache.tiles.get(&id) {
            return Ok(t.clone());
        }
        let missing = MerkleError::MissingTile {
            level: id.level,
            index: id.index,
        };
        let hashes = match self.store.get(id) {
            Ok(Some(h)) if h.len() == WIDTH => h,
            _ => return Err(missing),
        };
        let tile: Tile = hashes.into();
        cache.insert(id, tile.clone());
        Ok(tile)
    }

    /// `count` hashes of tree level `8·level` from `first`, all within one tile.
    fn entries(&self, level: u32, first: u64, count: u64) -> Result<Vec<Hash>, MerkleError> {
        let n = self.size >> (HEIGHT * level);
        let index = first / WIDTH as u64;
        let at = (first % WIDTH as u64) as usize;
        let range = at..at + count as usize;
        if index == n / WIDTH as u64 {
            let edge = self.edge.get(level as usize).map(Vec::as_slice).unwrap_or(&[]);
            return edge
                .get(range)
                .map(<[Hash]>::to_vec)
                .ok_or(MerkleError::IndexOutOfRange {
                    index: first + count,
                    size: n,
                });
        }
        let tile = self.full_tile(TileId {
            level: level as u8,
            index,
        })?;
        Ok(tile[range].to_vec())
    }

    /// The node of tree level `h` at position `j` (leaves `[j·2^h, (j+1)·2^h)`).
    fn node(&self, h: u32, j: u64) -> Result<Hash, MerkleError> {
        let (level, r) = (h / HEIGHT, h % HEIGHT);
        Ok(up(self.entries(level, j << r, 1 << r)?))
    }

    /// Tile `index` of tile level `level` as `tlog-tiles` serves it: the full tile
    /// (`width` `None`, or 256), or its first `width` hashes (a partial tile, which a
    /// checkpoint of a smaller tree named). `None` when the tree does not have it yet.
    pub fn tile(&self, level: u8, index: u64, width: Option<u16>) -> Result<Option<Vec<Hash>>, MerkleError> {
        let width = u64::from(width.unwrap_or(WIDTH as u16));
        if u32::from(level) * HEIGHT >= 64 || width == 0 || width > WIDTH as u64 {
            return Ok(None);
        }
        let n = self.size >> (HEIGHT * u32::from(level));
        let Some(first) = index.checked_mul(WIDTH as u64) else {
            return Ok(None);
        };
        if first.checked_add(width).is_none_or(|end| end > n) {
            return Ok(None);
        }
        self.entries(u32::from(level), first, width).map(Some)
    }

    pub fn leaf(&self, index: u64) -> Option<Hash> {
        if index >= self.size {
            return None;
        }
        self.node(0, index).ok()
    }

    pub fn root(&self, size: u64) -> Result<Hash, MerkleError> {
        proof::root_of(self, self.size, size)
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        proof::check_size(self.size, size)?;
        proof::inclusion(self, index, size)
    }

    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, MerkleError> {
        proof::check_size(self.size, size2)?;
        proof::consistency(self, size1, size2)
    }

    /// The compact range of the first `size` leaves, largest subtree first.
    pub fn frontier(&self, size: u64) -> Result<Vec<Hash>, MerkleError> {
        proof::check_size(self.size, size)?;
        let mut out = Vec::new();
        let mut lo = 0u64;
        for h in (0..64u32).rev() {
            if size & (1 << h) != 0 {
                out.push(self.node(h, lo >> h)?);
                lo += 1 << h;
            }
        }
        Ok(out)
    }
}

impl SubtreeHashes for TileTree {
    fn subtree(&self, lo: u64, hi: u64) -> Result<Hash, MerkleError> {
        let n = hi - lo;
        if n.is_power_of_two() && lo.is_multiple_of(n) && hi <= self.size {
            return self.node(n.trailing_zeros(), lo >> n.trailing_zeros());
        }
        let k = split_point(n);
        Ok(node_hash(&self.subtree(lo, lo + k)?, &self.subtree(lo + k, hi)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;
    use crate::merkle::proof::TreeStore;

    /// A store in memory that can forget or spoil a tile.
    #[derive(Default)]
    struct Mem(Mutex<BTreeMap<TileId, Vec<Hash>>>);

    impl TileStore for Mem {
        fn get(&self, id: TileId) -> Result<Option<Vec<Hash>>, String> {
            Ok(self.0.lock().unwrap().get(&id).cloned())
        }
    }

    fn take_unstored(tree: &mut TileTree, mem: &Mem) {
        let tiles = tree.unstored();
        let ids: Vec<TileId> = tiles.iter().map(|(id, _)| *id).collect();
        for (id, t) in tiles {
            mem.0.lock().unwrap().insert(id, t.to_vec());
        }
        tree.stored(&ids);
    }

    fn leaf(i: u64) -> Hash {
        leaf_hash(&i.to_be_bytes())
    }

    /// Roots, inclusion and consistency proofs and frontiers agree with the in-memory
    /// store at sizes around tile edges, with every full tile read back from the store.
    #[test]
    fn tiles_give_the_same_tree_as_memory() {
        let mem = Arc::new(Mem::default());
        let mut tiles = TileTree::new(mem.clone());
        let mut all = TreeStore::new();
        let n = 256 * 256 + 3 * 256 + 7;
        for i in 0..n {
            tiles.push(leaf(i));
            all.push(leaf(i));
            if i % 1000 == 0 {
                take_unstored(&mut tiles, &mem);
            }
        }
        take_unstored(&mut tiles, &mem);
        assert!(tiles.unstored().is_empty());
        // The cache holds at most CACHE_TILES; reads beyond come from the store.
        let sizes = [1, 2, 255, 256, 257, 511, 512, 65535, 65536, 65537, n - 1, n];
        for &size in &sizes {
            assert_eq!(tiles.root(size).unwrap(), all.root(size).unwrap(), "root at {size}");
            assert_eq!(
                tiles.frontier(size).unwrap(),
                all.frontier(size).unwrap(),
                "frontier at {size}"
            );
            for &index in &[0, size / 3, size - 1] {
                assert_eq!(
                    tiles.inclusion_proof(index, size).unwrap(),
                    all.inclusion_proof(index, size).unwrap(),
                    "inclusion of {index} in {size}"
                );
            }
            for &old in &[1, 256, 300, 65536] {
                if old <= size {
                    assert_eq!(
                        tiles.consistency_proof(old, size).unwrap(),
                        all.consistency_proof(old, size).unwrap(),
                        "consistency {old} → {size}"
                    );
                }
            }
        }
        assert_eq!(tiles.leaf(n - 1), all.leaf(n - 1));
        assert_eq!(tiles.leaf(12345), all.leaf(12345));
        assert_eq!(tiles.leaf(n), None);
        assert!(tiles.root(n + 1).is_err());
    }

    /// Tiles as served: a tree of 70,000 has 273 full level-0 tiles and a partial one of
    /// 112, one full level-1 tile and a partial one of 17, a level-2 tile of width 1
    /// (the spec's example); nothing past them is served.
    #[test]
    fn serves_the_tiles_the_spec_names() {
        let mut tiles = TileTree::new(Arc::new(NoStore));
        let mut all = TreeStore::new();
        for i in 0..70_000 {
            tiles.push(leaf(i));
            all.push(leaf(i));
        }
        let full = |l, n| tiles.tile(l, n, None).unwrap().map(|t| t.len());
        let part = |l, n, w| tiles.tile(l, n, Some(w)).unwrap().map(|t| t.len());
        assert_eq!(full(0, 272), Some(256));
        assert_eq!(full(0, 273), None);
        assert_eq!(part(0, 273, 112), Some(112));
        assert_eq!(part(0, 273, 113), None);
        assert_eq!(full(1, 0), Some(256));
        assert_eq!(part(1, 1, 17), Some(17));
        assert_eq!(part(2, 0, 1), Some(1));
        assert_eq!(part(2, 0, 2), None);
        assert_eq!(part(0, 0, 0), None);
        assert_eq!(full(8, 0), None);
        assert_eq!(full(0, u64::MAX), None);
        // A level-1 hash is the root of a full level-0 tile; the level-2 one of a level-1 tile.
        assert_eq!(
            tiles.tile(1, 1, Some(17)).unwrap().unwrap()[16],
            all.subtree(272 * 256, 273 * 256).unwrap()
        );
        assert_eq!(
            tiles.tile(2, 0, Some(1)).unwrap().unwrap()[0],
            all.subtree(0, 65536).unwrap()
        );
        assert_eq!(tiles.tile(0, 5, None).unwrap().unwrap()[7], leaf(5 * 256 + 7));
    }

    /// Resuming from the stored tiles gives the same tree, which then grows the same.
    #[test]
    fn a_resumed_tree_is_the_same_tree() {
        let mem = Arc::new(Mem::default());
        let mut tiles = TileTree::new(mem.clone());
        let mut all = TreeStore::new();
        let n = 3 * 65536 + 5 * 256 + 100;
        for i in 0..n {
            tiles.push(leaf(i));
            all.push(leaf(i));
        }
        take_unstored(&mut tiles, &mem);
        let full = n / WIDTH as u64;
        let mut resumed = TileTree::resume(mem.clone(), full).unwrap();
        assert_eq!(resumed.len(), full * WIDTH as u64);
        for i in resumed.len()..n {
            resumed.push(leaf(i));
        }
        for size in [n, full * 256, 65536, 2 * 65536 + 1] {
            assert_eq!(resumed.root(size).unwrap(), all.root(size).unwrap(), "root at {size}");
        }
        for i in n..n + 70_000 {
            resumed.push(leaf(i));
            all.push(leaf(i));
        }
        assert_eq!(resumed.root(n + 70_000).unwrap(), all.root(n + 70_000).unwrap());
    }

    /// A tile the store lost is an error, not a wrong hash; a spoilt one changes the root.
    #[test]
    fn a_lost_or_spoilt_tile_shows() {
        let mem = Arc::new(Mem::default());
        let mut tiles = TileTree::new(mem.clone());
        let mut all = TreeStore::new();
        for i in 0..(3 * 65536) {
            tiles.push(leaf(i));
            all.push(leaf(i));
        }
        take_unstored(&mut tiles, &mem);
        let lost = TileId { level: 0, index: 300 };
        mem.0.lock().unwrap().remove(&lost);
        // A fresh resume has no cache, so the store is asked; the level-0 tile is not
        // needed to resume (the level-1 tiles above it are), only to prove a leaf in it.
        let resumed = TileTree::resume(mem.clone(), 3 * 256).unwrap();
        assert_eq!(
            resumed.inclusion_proof(300 * 256 + 5, 3 * 65536).err(),
            Some(MerkleError::MissingTile { level: 0, index: 300 })
        );
        mem.0.lock().unwrap().remove(&TileId { level: 1, index: 1 });
        assert_eq!(
            TileTree::resume(mem.clone(), 3 * 256).err(),
            Some(MerkleError::MissingTile { level: 1, index: 1 })
        );
        mem.0.lock().unwrap().insert(TileId { level: 1, index: 1 }, {
            let mut t = TileTree::new(Arc::new(NoStore));
            for i in 65536..2 * 65536 {
                t.push(leaf(i));
            }
            // Tile (1, 0) of a tree of leaves 65536.. is tile (1, 1) of the whole tree.
            t.unstored()
                .into_iter()
                .find(|(id, _)| *id == TileId { level: 1, index: 0 })
                .unwrap()
                .1
                .to_vec()
        });
        let spoilt = TileId { level: 0, index: 7 };
        mem.0.lock().unwrap().get_mut(&spoilt).unwrap()[3] = [0u8; 32];
        let resumed = TileTree::resume(mem.clone(), 3 * 256).unwrap();
        assert_eq!(
            resumed.root(65536).unwrap(),
            all.root(65536).unwrap(),
            "the level-2 node hides it"
        );
        assert_ne!(resumed.root(7 * 256 + 4).unwrap(), all.root(7 * 256 + 4).unwrap());
        assert!(TileTree::resume(mem, 4 * 256).is_err(), "tiles beyond the store");
    }
}
