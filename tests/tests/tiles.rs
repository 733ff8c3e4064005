//! The log as C2SP `tlog-tiles` serves it (issue 13): a client that knows only the
//! spec rebuilds the checkpoint's root from `/checkpoint` and `/tile/…`; the tiles match
//! the hashes `/v1/audit/hashes` serves; bad paths and tiles the log does not have yet
//! are refused with typed errors; entry bundles hash to the level-0 tiles and go only
//! to a key that may read every leaf in them. And the host restarts from its stored
//! tiles: the same root after a restart, and tiles still served, but not from a
//! spoilt one.

mod common;

use common::*;
use sealgate_shared::merkle::proof::{SubtreeHashes, TreeStore};
use sealgate_shared::merkle::{self, Hash};
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
        let (status, ct, body) = api.get_bytes(&format!("/tile/0/{}", tile_index(n)), None);
        assert_eq!((status, ct.as_str()), (200, "application/octet-stream"));
        assert_eq!(body.len(), 8192, "a full tile is 256 hashes");
        out.extend(hashes(&body));
    }
    if !size.is_multiple_of(256) {
        let path = format!("/tile/0/{}.p/{}", tile_index(size / 256), size % 256);
        let (status, _, body) = api.get_bytes(&path, None);
        assert_eq!(status, 200, "{path}");
        out.extend(hashes(&body));
    }
    out
}

/// An entry bundle's entries: each a big-endian u16 length, then that many bytes.
fn bundle_entries(mut body: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        assert!(body.len() >= 2, "a truncated length");
        let n = usize::from(u16::from_be_bytes([body[0], body[1]]));
        assert!(body.len() >= 2 + n, "a truncated entry");
        out.push(body[2..2 + n].to_vec());
        body = &body[2 + n..];
    }
    out
}

/// Entry bundles are leaf contents: served only to a key that may read every leaf in
/// one, and then they hash to the level-0 tile of the same name. Bundle 0 holds the
/// operator's leaves (genesis, the workspaces' creation); bundle 1 only `t`'s mints.
fn entry_bundles_follow_the_leaf_read_rule(d: &Deployment, t: &sealgate_tests::Tenant, api: &Api, leaves: &[Hash]) {
    let size = leaves.len() as u64;
    let operator = d.admin_key();
    let admin_of = |ws: &str| {
        let (s, v) = api.post(
            &format!("/v1/workspaces/{ws}/keys"),
            Some(&operator),
            &serde_json::json!({ "role": "admin" }),
        );
        assert_eq!(s, 201, "{v}");
        v["key"].as_str().expect("key").to_string()
    };
    let t_admin = admin_of(&t.workspace);
    let other = d.new_tenant();
    let other_admin = admin_of(&other.workspace);
    let bundle = |path: &str, key: &str| {
        let (status, ct, body) = api.get_bytes(path, Some(key));
        assert_eq!(
            (status, ct.as_str()),
            (200, "application/octet-stream"),
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
        let hashes: Vec<Hash> = bundle_entries(&body).iter().map(|e| merkle::leaf_hash(e)).collect();
        hashes
    };
    // The operator reads every bundle, full and partial; each hashes to its tile.
    assert_eq!(bundle("/tile/entries/000", &operator), leaves[..256]);
    assert_eq!(bundle("/tile/entries/001", &operator), leaves[256..512]);
    let w = size % 256;
    assert_eq!(bundle(&format!("/tile/entries/002.p/{w}"), &operator), leaves[512..]);
    assert_eq!(bundle("/tile/entries/002.p/1", &operator), leaves[512..513]);
    // The workspace's own admin reads the bundle of only its leaves, not one with the
    // operator's, and another workspace's admin reads neither.
    assert_eq!(bundle("/tile/entries/001", &t_admin), leaves[256..512]);
    for (path, key) in [
        ("/tile/entries/000", &t_admin),
        ("/tile/entries/001", &other_admin),
        ("/tile/entries/000", &other_admin),
    ] {
        let (status, body) = api.get(path, Some(key));
        assert_error((status, body.clone()), 403, "TILE_ENTRIES_PRIVATE");
        assert!(
            !body.to_string().contains(&t.agent),
            "a refusal shows nothing of the bundle: {body}"
        );
    }
    assert_error(api.get("/tile/entries/001", None), 401, "UNAUTHENTICATED");
    assert_error(api.get("/tile/entries/001", Some(&t.agent_key)), 403, "FORBIDDEN");
    assert_error(api.get("/tile/entries/003", Some(&operator)), 404, "TILE_NOT_FOUND");
    // (The log has grown by the keys and the workspace made above, but not to 768.)
    assert_error(
        api.get("/tile/entries/002.p/255", Some(&operator)),
        404,
        "TILE_NOT_FOUND",
    );
    assert_error(api.get("/tile/entries/5", Some(&operator)), 400, "INVALID_TILE_PATH");
    // A hash tile stays public even beside a bad Authorization.
    let (status, _, _) = api.get_bytes("/tile/0/000", Some("not-a-key"));
    assert_eq!(status, 200, "hash tiles ignore Authorization");
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
    let (status, _, l1) = api.get_bytes(&format!("/tile/1/000.p/{}", size / 256), None);
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
    // Last, as it writes leaves (keys, a workspace) that the checks above do not expect.
    entry_bundles_follow_the_leaf_read_rule(&d, &t, &api, &leaves);
}
