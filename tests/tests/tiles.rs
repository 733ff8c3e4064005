//! The log as C2SP `tlog-tiles` serves it (issue 13): a client that knows only the
//! spec rebuilds the checkpoint's root from `/checkpoint` and `/tile/…`; the tiles match
//! the hashes `/v1/audit/hashes` serves; bad paths, tiles the log does not have yet and
//! entry bundles (tenant-private) are refused with typed errors. And the host restarts
//! from its stored tiles: the same root after a restart, and tiles still served, but
//! not from a spoilt one.

mod common;

use common::*;
use sealgate_shared::merkle::proof::{SubtreeHashes, TreeStore};
use sealgate_shared::merkle::Hash;
use sealgate_tests::{Api, Deployment};
use std::time::Duration;

/// `N` as tlog-tiles writes it: 3-digit elements, `x` before all but the last.
fn tile_index(n: u64) -> String {
    let digits = format!("{n}");
    let pad = digits.len().div_ceil(3) * 3;
    let padded = format!("{n:0>pad$}");
    let parts: Vec<&str> = (0..pad / 3).map(|i| &padded[i * 3..i * 3 + 3]).collect();
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| if i < last { format!("x{p}") } else { p.to_string() })
        .collect::<Vec<_>>()
        .join("/")
}

fn hashes(bytes: &[u8]) -> Vec<Hash> {
    assert_eq!(bytes.len() % 32, 0);
    bytes.chunks(32).map(|c| c.try_into().unwrap()).collect()
}

/// Every leaf hash of a tree of `size`, read from level-0 tiles only (full, then the
/// partial one the size names), as a tlog-tiles client would.
fn leaf_hashes_from_tiles(api: &Api, size: u64) -> Vec<Hash> {
    let mut out = Vec::new();
    for n in 0..size / 256 {
        let (status, ct, body) = api.get_bytes(&format!("/tile/0/{}", tile_index(n)));
        assert_eq!((status, ct.as_str()), (200, "application/octet-stream"));
        assert_eq!(body.len(), 8192, "a full tile is 256 hashes");
        out.extend(hashes(&body));
    }
    if !size.is_multiple_of(256) {
        let path = format!("/tile/0/{}.p/{}", tile_index(size / 256), size % 256);
        let (status, _, body) = api.get_bytes(&path);
        assert_eq!(status, 200, "{path}");
        out.extend(hashes(&body));
    }
    out
}

#[test]
fn a_tiles_client_rebuilds_the_checkpoint_and_a_restart_resumes_from_tiles() {
    // 600 mints from one key: past the default per-key limit (limits.rs tests that).
    let mut d = Deployment::start_with(sealgate_tests::Options {
        host_args: ["--rate-mint-per-key", "0", "--rate-mint-per-addr", "0"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    let t = d.new_tenant();
    let api = d.api();
    // Past two full leaf tiles, so level 1 has a partial tile of width 2.
    for _ in 0..600 {
        mint(&api, &t.agent_key);
    }
    let vk = verifier_key(&api);
    let size = log_size(&api);
    let (note, cp) = wait_checkpoint(&api, &vk, size, Duration::from_secs(30));
    assert_eq!(cp.size, size);
    let (status, served) = api.get_text("/checkpoint", None);
    assert_eq!(
        (status, served.as_str()),
        (200, note.as_str()),
        "/checkpoint is the signed note"
    );

    let leaves = leaf_hashes_from_tiles(&api, size);
    assert_eq!(leaves.len() as u64, size);
    assert_eq!(leaves, public_hashes(&api, 0, size), "tiles and /v1/audit/hashes agree");
    let mut tree = TreeStore::new();
    for h in &leaves {
        tree.push(*h);
    }
    assert_eq!(
        tree.root(size).unwrap(),
        cp.root,
        "the tiles give the checkpoint's root"
    );
    // Level 1: each hash is the root of a full level-0 tile.
    let (status, _, l1) = api.get_bytes(&format!("/tile/1/000.p/{}", size / 256));
    assert_eq!(status, 200);
    let l1 = hashes(&l1);
    assert_eq!(l1[1], tree.subtree(256, 512).unwrap());

    // Refusals, each typed.
    for bad in [
        "/tile/0/5",
        "/tile/00/000",
        "/tile/0/x000/002",
        "/tile/64/000",
        "/tile/0/000.p/0",
        "/tile/0/000.p/300",
    ] {
        assert_error(api.get(bad, None), 400, "INVALID_TILE_PATH");
    }
    assert_error(
        api.get(&format!("/tile/0/{}", tile_index(size / 256)), None),
        404,
        "TILE_NOT_FOUND",
    );
    assert_error(api.get("/tile/3/000.p/1", None), 404, "TILE_NOT_FOUND");
    assert_error(api.get("/tile/entries/000", None), 404, "TILE_ENTRIES_PRIVATE");

    // A restart resumes the tree from the stored tiles: same root, same tiles.
    d.stop_host();
    d.start_host();
    let api = d.api();
    assert_eq!(log_size(&api), size);
    assert_eq!(leaf_hashes_from_tiles(&api, size), leaves);
    let (_, again) = checkpoint(&api, &vk);
    assert_eq!(again.root, tree.root(again.size).unwrap());
    let db = rusqlite::Connection::open(d.db_path()).unwrap();
    let stored: i64 = db
        .query_row("SELECT count(*) FROM tiles WHERE level = 0", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored as u64, size / 256, "every full leaf tile is stored");

    // The host's own tiles are not trusted either: a spoilt one does not give the
    // stored checkpoint's root, so the restart rebuilds the tree from the leaves and
    // serves the right hashes (without that check it would serve the spoilt tile).
    d.stop_host();
    db.execute(
        "UPDATE tiles SET hashes = zeroblob(8192) WHERE level = 0 AND idx = 0",
        [],
    )
    .unwrap();
    drop(db);
    d.start_host();
    let api = d.api();
    assert_eq!(
        leaf_hashes_from_tiles(&api, size),
        leaves,
        "a spoilt tile is never served"
    );
}
