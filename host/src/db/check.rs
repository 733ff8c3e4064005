//! `sealgate check-log`: the full re-verification a restart no longer does.
//!
//! A restart resumes the tree from the stored tiles and hashes only the leaves after
//! them (`Ledger::load`), so leaf bytes changed under an intact tile would not show
//! there. This reads the whole log instead: every leaf's bytes hashed afresh, every
//! full tile rebuilt from them and compared with the stored one, and the newest stored
//! checkpoint's root compared with the tree's. Memory stays bounded: each tile is
//! compared as soon as it is full, then dropped.

use rusqlite::{Connection, OpenFlags};
use sealgate_shared::merkle::tiles::{NoStore, TileId, TileTree, WIDTH};
use sealgate_shared::merkle::{self, Hash};
use std::path::Path;
use std::sync::Arc;

/// Most problems listed by kind; the counts are always complete.
const LISTED: usize = 10;

#[derive(Debug, Default)]
pub struct CheckReport {
    pub leaves: u64,
    pub tiles_checked: u64,
    /// Full tiles the database does not hold (the host rewrites them; not an error).
    pub tiles_missing: u64,
    /// Stored tiles that differ from the leaves' hashes: tampered or corrupted rows.
    pub tiles_differing: Vec<TileId>,
    pub tiles_differing_count: u64,
    /// Indices where the leaves stop being contiguous.
    pub gaps: Vec<u64>,
    /// The newest stored checkpoint: size, and whether the leaves give its root.
    pub checkpoint: Option<(u64, bool)>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.tiles_differing_count == 0 && self.gaps.is_empty() && self.checkpoint.is_none_or(|(_, ok)| ok)
    }
}

fn stored_tile(conn: &Connection, id: TileId) -> rusqlite::Result<Option<Vec<u8>>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached("SELECT hashes FROM tiles WHERE level = ?1 AND idx = ?2")?
        .query_row(rusqlite::params![id.level, id.index as i64], |r| r.get(0))
        .optional()
}

fn compare(conn: &Connection, tree: &mut TileTree, report: &mut CheckReport) -> rusqlite::Result<()> {
    let tiles = tree.unstored();
    for (id, hashes) in &tiles {
        report.tiles_checked += 1;
        match stored_tile(conn, *id)? {
            None => report.tiles_missing += 1,
            Some(blob) if blob == hashes.concat() => {}
            Some(_) => {
                report.tiles_differing_count += 1;
                if report.tiles_differing.len() < LISTED {
                    report.tiles_differing.push(*id);
                }
            }
        }
    }
    let ids: Vec<TileId> = tiles.into_iter().map(|(id, _)| id).collect();
    tree.stored(&ids);
    Ok(())
}

/// Checks the log stored in the database at `path` (opened read-only).
pub fn check_log(path: &Path) -> Result<CheckReport, super::DbError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut report = CheckReport::default();
    let mut tree = TileTree::new(Arc::new(NoStore));
    {
        let mut st = conn.prepare("SELECT idx, bytes FROM leaves ORDER BY idx")?;
        let mut rows = st.query([])?;
        while let Some(row) = rows.next()? {
            let idx = row.get::<_, i64>(0)? as u64;
            if idx != tree.len() {
                if report.gaps.len() < LISTED {
                    report.gaps.push(tree.len());
                }
                break;
            }
            let hash: Hash = merkle::leaf_hash(&row.get::<_, Vec<u8>>(1)?);
            tree.push(hash);
            if tree.len().is_multiple_of(WIDTH as u64) {
                compare(&conn, &mut tree, &mut report)?;
            }
        }
    }
    compare(&conn, &mut tree, &mut report)?;
    report.leaves = tree.len();
    let newest: Option<String> = {
        use rusqlite::OptionalExtension;
        conn.query_row("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1", [], |r| {
            r.get(0)
        })
        .optional()?
    };
    if let Some(note) = newest {
        report.checkpoint = Some(match sealgate_shared::note::Checkpoint::unverified(&note).ok() {
            Some(cp) => (cp.size, tree.root(cp.size).is_ok_and(|r| r == cp.root)),
            None => (0, false),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{tiles, Db, NoHook, PendingLeaf};
    use sealgate_shared::protocol::LeafRecord;
    use serde_bytes::ByteBuf;

    fn record(index: u64) -> LeafRecord {
        LeafRecord {
            index,
            bytes: ByteBuf::from(format!("leaf {index}").into_bytes()),
            mac: ByteBuf::from(vec![0u8; 32]),
        }
    }

    /// 700 leaves and their two full tiles: the check passes; a leaf's bytes changed
    /// under its stored tile fail it (the restart would not have seen that).
    #[tokio::test]
    async fn a_leaf_changed_under_its_tile_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path, Arc::new(NoHook)).unwrap();
        let mut tree = TileTree::new(Arc::new(NoStore));
        let leaves: Vec<PendingLeaf> = (0..700).map(|i| PendingLeaf::new(record(i), None)).collect();
        for i in 0..700 {
            tree.push(merkle::leaf_hash(&record(i).bytes));
        }
        let full = tree.unstored();
        assert_eq!(full.len(), 2);
        let apply: crate::db::Apply = Box::new(move |c| {
            for (id, hashes) in &full {
                tiles::write(c, *id, hashes)?;
            }
            Ok(())
        });
        db.commit(leaves, Some(apply)).await.unwrap();

        let report = check_log(&path).unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!((report.leaves, report.tiles_checked, report.tiles_missing), (700, 2, 0));

        db.commit(
            vec![],
            Some(Box::new(|c| {
                c.execute("UPDATE leaves SET bytes = X'00' WHERE idx = 300", [])?;
                Ok(())
            })),
        )
        .await
        .unwrap();
        let report = check_log(&path).unwrap();
        assert!(!report.ok());
        assert_eq!(report.tiles_differing, vec![TileId { level: 0, index: 1 }]);
    }
}
