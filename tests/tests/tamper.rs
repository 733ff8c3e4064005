//! A host whose database was tampered with while it was down: the auditor's tool must
//! catch every kind of edit, and the host must refuse to become ready (it keeps serving
//! its audit log read-only, so the auditor can look).
//!
//! Observed `sealgate-verify log` exit codes are printed (`--nocapture` to see them).

mod common;

use common::*;
use rusqlite::{params, Connection};
use sealgate_tests::Deployment;
use serde_json::{json, Value};
use std::time::Duration;

/// A deployment with a verified log of ~10 tokens, stopped, its database open for editing.
struct Setup {
    d: Deployment,
    tokens: Vec<Minted>,
    agent_key: String,
    size: u64,
}

fn setup() -> Setup {
    let mut d = Deployment::start();
    let t = d.new_tenant();
    let api = d.api();
    let tokens: Vec<Minted> = (0..10).map(|_| mint(&api, &t.agent_key)).collect();
    let size = log_size(&api);
    let vk = verifier_key(&api);
    let (_, cp) = wait_checkpoint(&api, &vk, size, Duration::from_secs(30));
    assert_eq!(cp.size, size);
    // A host that refuses to start serves the checkpoint it last wrote to SQLite, so
    // wait until that one covers the whole log too: every edit below is then inside
    // what the served checkpoint signs.
    assert_eq!(wait_persisted(&d.db_path()), size);
    let (code, out) = verify_log(&d.url, &[]);
    assert_eq!(code, 0, "the untouched log must verify:\n{out}");
    d.stop_host();
    Setup {
        d,
        tokens,
        agent_key: t.agent_key,
        size,
    }
}

fn open_db(d: &Deployment) -> Connection {
    Connection::open(d.db_path()).expect("open the database")
}

fn leaf_bytes(c: &Connection, idx: u64) -> Vec<u8> {
    c.query_row("SELECT bytes FROM leaves WHERE idx = ?1", params![idx as i64], |r| {
        r.get(0)
    })
    .expect("leaf row")
}

/// Restarts the tampered host and checks that it is caught. Returns the exit code of
/// `sealgate-verify log` and its output.
fn caught(s: &mut Setup, case: &str) -> (i32, String) {
    with_logs(&mut s.d, |d| d.spawn_host());
    let api = s.d.api();
    let (code, out) = verify_log(&s.d.url, &[]);
    println!("[{case}] sealgate-verify log exit code {code}\n{out}");
    assert_ne!(code, 0, "[{case}] sealgate-verify accepted a tampered log:\n{out}");
    assert!(
        out.contains("FAIL") || out.to_lowercase().contains("fail"),
        "[{case}] no failure reason printed:\n{out}"
    );

    // The host must not claim readiness, nor mint on top of a log it cannot vouch for.
    let (rs, rv) = api.get("/readyz", None);
    println!("[{case}] /readyz: {rs} {rv}");
    assert_error((rs, rv), 503, "LOG_INTEGRITY_FAILURE");
    let (ms, mv) = api.post("/v1/tokens", Some(&s.agent_key), &json!({}));
    println!("[{case}] mint: {ms} {mv}");
    assert!(ms >= 500, "[{case}] a tampered host minted a token: {ms} {mv}");
    assert_error_shape(&mv);
    let metrics = api.get_text("/metrics", None).1;
    assert!(
        metrics.contains("sealgate_log_integrity_ok 0"),
        "[{case}] metrics do not show the integrity failure:\n{metrics}"
    );
    // The log stays readable for auditors: the public hashes, and the contents with a key.
    let (hs, hv) = api.get("/v1/audit/hashes?start=0&end=5", None);
    assert_eq!(hs, 200, "[{case}] hashes not served read-only: {hv}");
    let (es, ev) = api.get("/v1/audit/entries?start=0&end=5", Some(&s.d.admin_key()));
    assert_eq!(es, 200, "[{case}] entries not served read-only: {ev}");
    let (cs, cv) = api.get_text("/v1/audit/checkpoint", None);
    assert_eq!(cs, 200, "[{case}] checkpoint not served read-only: {cv}");
    (code, out)
}

#[test]
fn changed_byte_in_a_token_leaf() {
    let mut s = setup();
    let idx = s.tokens[3].log_index;
    {
        let c = open_db(&s.d);
        let mut bytes = leaf_bytes(&c, idx);
        // Change one hex digit of token_sha256: still a valid leaf at its own index,
        // so only the hash chain can tell.
        let pat = b"\"token_sha256\":\"";
        let at = bytes
            .windows(pat.len())
            .position(|w| w == pat)
            .expect("token_sha256 in leaf")
            + pat.len();
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        assert!(sealgate_shared::leaf::parse(&bytes).is_ok());
        let n = c
            .execute(
                "UPDATE leaves SET bytes = ?1 WHERE idx = ?2",
                params![bytes, idx as i64],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    let (code, out) = caught(&mut s, "changed byte");
    assert_eq!(code, 5, "a changed leaf is a log content mismatch:\n{out}");
    assert!(out.contains("root"), "the reason should name the root mismatch:\n{out}");
}

fn delete_leaf(s: &Setup, idx: u64) {
    let c = open_db(&s.d);
    assert_eq!(
        c.execute("DELETE FROM leaves WHERE idx = ?1", params![idx as i64])
            .unwrap(),
        1
    );
}

#[test]
fn deleted_leaf_row_is_a_content_mismatch() {
    let mut s = setup();
    delete_leaf(&s, s.tokens[4].log_index);
    let (code, out) = caught(&mut s, "deleted row, exit code");
    // The read-only audit log must include the verifier key, or no auditor can look.
    let (ks, kv) = s.d.api().get_text("/v1/audit/key", None);
    assert_eq!(ks, 200, "/v1/audit/key in read-only mode: {kv}");
    assert_eq!(code, 5, "a deleted leaf is a log content mismatch:\n{out}");
}

#[test]
fn deleted_last_leaf_row() {
    // Deleting the newest leaf leaves no gap in the database; only the enclave (which
    // was acknowledged that leaf) and the checkpoint can tell.
    let mut s = setup();
    delete_leaf(&s, s.size - 1);
    let (code, out) = caught(&mut s, "deleted last row");
    assert_eq!(code, 5, "a missing leaf is a log content mismatch:\n{out}");
}

#[test]
fn swapped_leaf_rows() {
    let mut s = setup();
    let (a, b) = (s.tokens[2].log_index, s.tokens[5].log_index);
    {
        let c = open_db(&s.d);
        let (ba, bb) = (leaf_bytes(&c, a), leaf_bytes(&c, b));
        c.execute("UPDATE leaves SET bytes = ?1 WHERE idx = ?2", params![bb, a as i64])
            .unwrap();
        c.execute("UPDATE leaves SET bytes = ?1 WHERE idx = ?2", params![ba, b as i64])
            .unwrap();
    }
    let (code, out) = caught(&mut s, "swapped rows");
    assert_eq!(code, 5, "swapped leaves are a log content mismatch:\n{out}");
}

#[test]
fn inserted_leaf() {
    let mut s = setup();
    let k = s.tokens[6].log_index;
    let copy_of = s.tokens[1].log_index;
    {
        let mut c = open_db(&s.d);
        let tx = c.transaction().unwrap();
        let (bytes, mac): (Vec<u8>, Vec<u8>) = tx
            .query_row(
                "SELECT bytes, mac FROM leaves WHERE idx = ?1",
                params![copy_of as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        // Shift idx >= k up by one (via negatives, so the primary key never collides).
        tx.execute("UPDATE leaves SET idx = -(idx + 1) WHERE idx >= ?1", params![k as i64])
            .unwrap();
        tx.execute("UPDATE leaves SET idx = -idx WHERE idx < 0", []).unwrap();
        tx.execute("UPDATE tokens SET idx = idx + 1 WHERE idx >= ?1", params![k as i64])
            .unwrap();
        tx.execute(
            "INSERT INTO leaves (idx, bytes, mac) VALUES (?1, ?2, ?3)",
            params![k as i64, bytes, mac],
        )
        .unwrap();
        tx.commit().unwrap();
        let n: i64 = c.query_row("SELECT COUNT(*) FROM leaves", [], |r| r.get(0)).unwrap();
        assert_eq!(n as u64, s.size + 1);
    }
    let (code, out) = caught(&mut s, "inserted leaf");
    assert_eq!(code, 5, "an inserted leaf is a log content mismatch:\n{out}");
}

#[test]
fn forged_mac_beyond_the_persisted_checkpoint() {
    // Both processes crash with leaves beyond the last persisted checkpoint; the enclave
    // restores them only if their MACs are its own. A forged MAC must stop the restore.
    let mut d = Deployment::start();
    let t = d.new_tenant();
    let api = d.api();
    (0..3).for_each(|_| {
        mint(&api, &t.agent_key);
    });
    let persisted = wait_persisted(&d.db_path());
    let tail: Vec<Minted> = (0..3).map(|_| mint(&api, &t.agent_key)).collect();
    d.kill9_host();
    d.kill9_enclave();
    let (cp_size, n) = persisted_checkpoint(&d.db_path());
    assert_eq!(cp_size, persisted);
    assert!(
        cp_size < n,
        "setup: the persisted checkpoint ({cp_size}) already covers all {n} leaves"
    );
    let last = n - 1;
    assert_eq!(tail.last().unwrap().log_index, last);
    {
        let c = open_db(&d);
        let mut mac: Vec<u8> = c
            .query_row("SELECT mac FROM leaves WHERE idx = ?1", params![last as i64], |r| {
                r.get(0)
            })
            .unwrap();
        mac[0] ^= 0x01;
        assert_eq!(
            c.execute("UPDATE leaves SET mac = ?1 WHERE idx = ?2", params![mac, last as i64])
                .unwrap(),
            1
        );
    }
    with_logs(&mut d, |d| d.start_enclave());
    with_logs(&mut d, |d| d.spawn_host());
    // Give the host's start-up sync time to finish (it does so before listening, but be
    // generous with the supervisor's retries).
    std::thread::sleep(Duration::from_millis(500));
    let (rs, rv): (u16, Value) = api.get("/readyz", None);
    println!("[forged mac] /readyz: {rs} {rv}");
    assert_error((rs, rv.clone()), 503, "LOG_INTEGRITY_FAILURE");
    let (ms, mv) = api.post("/v1/tokens", Some(&t.agent_key), &json!({}));
    assert!(ms >= 500, "a host whose enclave refused the restore minted: {ms} {mv}");

    // What the host still serves is the persisted checkpoint: the log up to it is intact
    // and verifies, but the forged tail is vouched for by no checkpoint, so a token
    // there is not proven.
    let (code, out) = verify_log(&d.url, &[]);
    println!("[forged mac] sealgate-verify log exit code {code}\n{out}");
    assert_eq!(code, 0, "the signed prefix is intact:\n{out}");
    let (code, out) = verify_log(&d.url, &["--token", &tail.last().unwrap().token]);
    println!("[forged mac] sealgate-verify log --token <tail token> exit code {code}\n{out}");
    assert_eq!(code, 6, "a token beyond every signed checkpoint is not proven:\n{out}");
}

#[test]
fn tamper_after_the_last_persisted_checkpoint() {
    let mut d = Deployment::start();
    let t = d.new_tenant();
    let api = d.api();
    (0..5).for_each(|_| {
        mint(&api, &t.agent_key);
    });
    wait_persisted(&d.db_path());
    let last = mint(&api, &t.agent_key);
    let size = log_size(&api);
    let vk = verifier_key(&api);
    let (_, cp) = wait_checkpoint(&api, &vk, size, Duration::from_secs(30));
    // The auditor saw (and verified) the log at this size, including the last token.
    let (code, out) = verify_log(&d.url, &["--token", &last.token]);
    assert_eq!(code, 0, "{out}");
    d.stop_host();
    let (persisted, n) = persisted_checkpoint(&d.db_path());
    println!(
        "[after persisted checkpoint] served checkpoint size {}, persisted {persisted}, leaves {n}",
        cp.size
    );
    {
        let c = open_db(&d);
        let mut bytes = leaf_bytes(&c, last.log_index);
        let pat = b"\"token_sha256\":\"";
        let at = bytes.windows(pat.len()).position(|w| w == pat).unwrap() + pat.len();
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        c.execute(
            "UPDATE leaves SET bytes = ?1 WHERE idx = ?2",
            params![bytes, last.log_index as i64],
        )
        .unwrap();
    }
    with_logs(&mut d, |d| d.spawn_host());
    let (s, note) = api.get_text("/v1/audit/checkpoint", None);
    assert_eq!(s, 200);
    let served = vk.open(&note).expect("checkpoint verifies");
    let (code, out) = verify_log(&d.url, &[]);
    println!(
        "[after persisted checkpoint] served size {} after restart; sealgate-verify exit {code}\n{out}",
        served.size
    );
    assert!(
        served.size >= cp.size,
        "the host rolled its checkpoint back from {} to {}",
        cp.size,
        served.size
    );
    assert_eq!(code, 5, "the edited leaf must be caught:\n{out}");
}
