//! The log's hash tiles (C2SP `tlog-tiles`) in the database: each full tile once, as
//! its 256 hashes end to end, so the host's memory and its restart time do not grow
//! with the log ([`sealgate_shared::merkle::tiles`]).

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use sealgate_shared::merkle::tiles::{TileId, TileStore, WIDTH};
use sealgate_shared::merkle::Hash;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Reads tiles on a connection of its own (opened on first use, read-only).
pub struct DbTiles {
    path: PathBuf,
    conn: Mutex<Option<Connection>>,
}

impl DbTiles {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            conn: Mutex::new(None),
        }
    }
}

impl TileStore for DbTiles {
    fn get(&self, id: TileId) -> Result<Option<Vec<Hash>>, String> {
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let c = Connection::open_with_flags(&self.path, flags).map_err(|e| e.to_string())?;
            c.busy_timeout(super::BUSY_TIMEOUT).map_err(|e| e.to_string())?;
            *slot = Some(c);
        }
        let Some(conn) = slot.as_ref() else {
            return Ok(None);
        };
        let blob: Option<Vec<u8>> = conn
            .prepare_cached("SELECT hashes FROM tiles WHERE level = ?1 AND idx = ?2")
            .and_then(|mut st| {
                st.query_row(params![id.level, id.index as i64], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| e.to_string())?;
        Ok(blob.and_then(|b| decode(&b)))
    }
}

/// A tile's blob back into hashes; `None` unless it is exactly 256 of them.
fn decode(blob: &[u8]) -> Option<Vec<Hash>> {
    if blob.len() != WIDTH * 32 {
        return None;
    }
    blob.chunks_exact(32).map(|c| c.try_into().ok()).collect()
}

/// Stores a full tile. Its hashes follow from the leaves alone, so writing it again
/// (after a rebuild found a damaged one) replaces it with the same or the right bytes.
pub fn write(conn: &Connection, id: TileId, hashes: &[Hash]) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO tiles (level, idx, hashes) VALUES (?1, ?2, ?3)")?
        .execute(params![id.level, id.index as i64, hashes.concat()])?;
    Ok(())
}

/// How many full leaf tiles are stored: one past the highest (tiles are written in
/// the order they fill). Only the highest is looked up: counting the rows would read
/// every tile's page, over a second for 2 M leaves on a cold cache, and a restart must
/// not grow with the log. A tile missing below it shows as `MissingTile` where it is
/// needed (the resume rebuilds from the leaves then), and `sealgate check-log` finds
/// every one.
pub fn full_leaf_tiles(conn: &Connection) -> rusqlite::Result<u64> {
    let max: Option<i64> = conn.query_row("SELECT max(idx) FROM tiles WHERE level = 0", [], |r| r.get(0))?;
    Ok(max.map_or(0, |m| m as u64 + 1))
}
