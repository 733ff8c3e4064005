//! Crashes and restarts: no token a client received is ever missing from the signed
//! log, the signing keys survive an enclave restart, and the log only ever grows
//! (consistency proofs across every restart).

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use common::*;
use sealgate_shared::leaf::KIND_BOOT;
use sealgate_shared::merkle;
use sealgate_shared::note::{Checkpoint, VerifierKey};
use sealgate_tests::{Api, Deployment, Tenant};
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Waits until the host is ready and a mint succeeds again; returns that token.
fn wait_minting(api: &Api, t: &Tenant) -> Minted {
    wait_for(
        "the host to be ready and minting again",
        Duration::from_secs(30),
        || {
            if api.get("/readyz", None).0 != 200 {
                return None;
            }
            let (s, v) = api.post("/v1/tokens", Some(&t.agent_key), &json!({}));
            (s == 200).then(|| parse_minted(&v).expect("mint response"))
        },
    )
}

/// The full audit of the current state: every leaf present at its own index, the
/// served leaves hash to the signed root, every token proven, `sealgate-verify` happy.
fn audit(d: &Deployment, vk: &VerifierKey, tokens: &[Minted]) -> (String, Checkpoint) {
    let api = d.api();
    let need = tokens
        .iter()
        .map(|m| m.log_index + 1)
        .max()
        .unwrap_or(0)
        .max(log_size(&api));
    let (note, cp) = wait_checkpoint(&api, vk, need, Duration::from_secs(30));
    let raw = entries(&api, 0, cp.size);
    assert_eq!(
        raw.len() as u64,
        cp.size,
        "the log has a gap: {} leaves served for [0, {})",
        raw.len(),
        cp.size
    );
    all_leaves(&api, cp.size);
    assert_eq!(
        root_of(&raw),
        cp.root,
        "the served leaves do not hash to the signed root"
    );
    for m in tokens {
        prove_token(&api, &cp, m);
    }
    let (code, out) = verify_log(&d.url, &[]);
    assert_eq!(code, 0, "sealgate-verify log failed:\n{out}");
    (note, cp)
}

/// Checks a consistency proof between two signed checkpoints.
fn assert_consistent(api: &Api, old: &Checkpoint, new: &Checkpoint) {
    assert!(new.size >= old.size, "the log shrank: {} -> {}", old.size, new.size);
    if new.size == old.size {
        assert_eq!(new.root, old.root, "same size, different root");
        return;
    }
    let proof = consistency_proof(api, old.size, new.size);
    merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &proof)
        .unwrap_or_else(|e| panic!("consistency {} -> {} fails: {e}", old.size, new.size));
    // A proof is tied to its roots: it must not verify against another old root.
    let mut wrong = old.root;
    wrong[0] ^= 1;
    assert!(merkle::verify_consistency(old.size, new.size, &wrong, &new.root, &proof).is_err());
}

/// A token for `--token` that the host never issued (well-formed, unknown jti).
fn foreign_token(real: &str) -> String {
    let parts: Vec<&str> = real.split('.').collect();
    let mut claims = jwt_claims(real);
    claims["jti"] = json!("notissued0000000000000000");
    format!(
        "{}.{}.{}",
        parts[0],
        B64URL.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    )
}

/// 16 threads mint in a loop (a fresh connection per request) for `ms` milliseconds,
/// then the host (and, if asked, the enclave) is killed with SIGKILL mid-burst. Returns
/// every token a client received.
fn burst_then_kill(d: &mut Deployment, t: &Tenant, ms: u64, kill_enclave: bool) -> Vec<Minted> {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (url, key, stop) = (d.url.clone(), t.agent_key.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut last_error = None;
                while !stop.load(Ordering::Relaxed) {
                    let (s, v) = Api::new(&url).post("/v1/tokens", Some(&key), &json!({}));
                    if s != 200 {
                        last_error = Some((s, v));
                        break;
                    }
                    got.push(parse_minted(&v).expect("mint response"));
                }
                (got, last_error)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(ms));
    d.kill9_host();
    if kill_enclave {
        d.kill9_enclave();
    }
    stop.store(true, Ordering::Relaxed);
    let mut minted = Vec::new();
    let mut stopped_by_error = 0;
    for w in workers {
        let (got, err) = w.join().expect("worker");
        minted.extend(got);
        if let Some((s, v)) = err {
            assert!(s == 0 || s >= 500, "a mint failed before the kill: {s} {v}");
            stopped_by_error += 1;
        }
    }
    assert!(
        minted.len() >= 16,
        "too few tokens minted before the kill ({}); the burst did not happen",
        minted.len()
    );
    assert!(
        stopped_by_error > 0,
        "no request was cut off by the kill: the kill was not mid-burst"
    );
    minted
}

/// Indices missing from the `leaves` table below its largest index: a crash can leave
/// such holes when concurrent mints commit out of order.
fn db_gaps(d: &Deployment) -> Vec<u64> {
    let c = rusqlite::Connection::open_with_flags(d.db_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut st = c.prepare("SELECT idx FROM leaves ORDER BY idx").unwrap();
    let idx: Vec<i64> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut gaps = Vec::new();
    let mut want = 0;
    for i in idx {
        gaps.extend(want as u64..i as u64);
        want = i + 1;
    }
    gaps
}

/// Restarts after a crash; if the database had a hole, says so when the restart fails.
fn restart_after_crash(d: &mut Deployment, gaps: &[u64], enclave_too: bool) {
    if !gaps.is_empty() {
        eprintln!(
            "NOTE: after the kill the database has holes at {gaps:?}: leaves the enclave wrote whose \
             commit had not finished while later leaves had; the restart must fill them."
        );
    }
    if enclave_too {
        with_logs(d, |d| d.start_enclave());
    }
    with_logs(d, |d| d.start_host());
}

/// A deployment without mint rate limits: these tests mint thousands of tokens from one
/// key and one address in a burst on purpose (the limits are tested in limits.rs).
fn unthrottled() -> Deployment {
    Deployment::start_with(sealgate_tests::Options {
        host_args: ["--rate-mint-per-key", "0", "--rate-mint-per-addr", "0"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    })
}

/// The kill may leave a hole in the database (concurrent commits land out of order);
/// `host_recovers_from_a_crash_that_left_a_hole` forces that case.
#[test]
fn kill9_host_mid_burst_loses_no_issued_token() {
    let mut d = unthrottled();
    let t = d.new_tenant();
    let mut minted = burst_then_kill(&mut d, &t, 1000, false);
    let jtis: HashSet<&str> = minted.iter().map(|m| m.jti.as_str()).collect();
    let indices: HashSet<u64> = minted.iter().map(|m| m.log_index).collect();
    assert_eq!(jtis.len(), minted.len(), "duplicate jti");
    assert_eq!(indices.len(), minted.len(), "duplicate log_index");

    let gaps = db_gaps(&d);
    restart_after_crash(&mut d, &gaps, false);
    let api = d.api();
    let vk = verifier_key(&api);
    let (_, cp) = audit(&d, &vk, &minted);
    println!(
        "kill -9 mid-burst: {} tokens received by clients, holes in the database {gaps:?}, log size {} after restart",
        minted.len(),
        cp.size
    );

    // sealgate-verify proves a few of the tokens too (first, middle, last by index).
    minted.sort_by_key(|m| m.log_index);
    let picks = [&minted[0], &minted[minted.len() / 2], &minted[minted.len() - 1]];
    let mut args = Vec::new();
    for m in picks {
        args.extend(["--token", m.token.as_str()]);
    }
    let (code, out) = verify_log(&d.url, &args);
    assert_eq!(code, 0, "sealgate-verify with tokens:\n{out}");
    // ... and refuses one that was never issued.
    let foreign = foreign_token(&minted[0].token);
    let (code, out) = verify_log(&d.url, &["--token", &foreign]);
    assert_eq!(code, 6, "an unissued token must not be proven:\n{out}");

    // The restarted host keeps minting, right after the last leaf.
    let next = mint(&api, &t.agent_key);
    assert!(
        next.log_index >= cp.size,
        "new token at {} reuses an index below {}",
        next.log_index,
        cp.size
    );
}

/// Record of the state before a restart.
struct Before {
    jwks: String,
    key: String,
    note: String,
    cp: Checkpoint,
    tokens: Vec<Minted>,
}

fn before_restart(d: &Deployment, t: &Tenant, n: usize) -> Before {
    let api = d.api();
    let tokens: Vec<Minted> = (0..n).map(|_| mint(&api, &t.agent_key)).collect();
    let vk = verifier_key(&api);
    let (note, cp) = audit(d, &vk, &tokens);
    let (s, jwks) = api.get_text("/.well-known/jwks.json", None);
    assert_eq!(s, 200);
    let (_, key) = api.get_text("/v1/audit/key", None);
    Before {
        jwks,
        key,
        note,
        cp,
        tokens,
    }
}

/// After a restart: same keys, the log grew consistently, an `enclave.boot` leaf if the
/// enclave restarted, every old and new token proven.
fn after_restart(d: &Deployment, t: &Tenant, before: &mut Before, enclave_restarted: bool) {
    let api = d.api();
    let first = wait_minting(&api, t);
    let (s, jwks) = api.get_text("/.well-known/jwks.json", None);
    assert_eq!(s, 200);
    assert_eq!(jwks, before.jwks, "the JWKS changed across the restart");
    let (_, key) = api.get_text("/v1/audit/key", None);
    assert_eq!(key, before.key, "the checkpoint key changed across the restart");
    let vk = verifier_key(&api);
    let jwks_v: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    let kid = jwt_claims_header_kid(&first.token);
    assert!(
        jwks_v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid.as_str()),
        "new token's kid {kid} not in the JWKS"
    );

    let mut tokens = before.tokens.clone();
    tokens.push(first);
    tokens.extend((0..3).map(|_| mint(&api, &t.agent_key)));
    let (note, cp) = audit(d, &vk, &tokens);
    assert!(
        cp.size > before.cp.size,
        "checkpoint did not grow: {} -> {}",
        before.cp.size,
        cp.size
    );
    assert_ne!(note, before.note);
    assert_consistent(&api, &before.cp, &cp);

    let leaves = all_leaves(&api, cp.size);
    let boots: Vec<u64> = leaves
        .iter()
        .filter(|l| l.kind == KIND_BOOT && l.index >= before.cp.size)
        .map(|l| l.index)
        .collect();
    if enclave_restarted {
        assert_eq!(
            boots.len(),
            1,
            "expected one enclave.boot leaf after the restart, found {boots:?}"
        );
        assert_eq!(leaves[boots[0] as usize].origin, sealgate_shared::leaf::Origin::Enclave);
    } else {
        assert!(boots.is_empty(), "a host-only restart logged enclave.boot at {boots:?}");
    }
    *before = Before {
        jwks,
        key,
        note,
        cp,
        tokens,
    };
}

fn jwt_claims_header_kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let h: serde_json::Value = serde_json::from_slice(&B64URL.decode(header).unwrap()).unwrap();
    h["kid"].as_str().expect("kid").to_string()
}

#[test]
fn enclave_restart_keeps_keys_and_log() {
    let mut d = unthrottled();
    let t = d.new_tenant();
    let mut before = before_restart(&d, &t, 5);

    // The enclave alone dies and comes back; the host re-syncs on its own.
    d.kill9_enclave();
    with_logs(&mut d, |d| d.start_enclave());
    after_restart(&d, &t, &mut before, true);

    // Both restart: clean host stop, enclave killed.
    d.stop_host();
    d.kill9_enclave();
    with_logs(&mut d, |d| d.start_enclave());
    with_logs(&mut d, |d| d.start_host());
    after_restart(&d, &t, &mut before, true);
}

#[test]
fn kill9_both_with_an_unpersisted_tail() {
    // Checkpoints reach SQLite at most every 2 s; leaves minted just before a crash of
    // both processes lie beyond the last persisted checkpoint and must be restored from
    // their MACs.
    let mut d = unthrottled();
    let t = d.new_tenant();
    let api = d.api();
    let mut tokens: Vec<Minted> = (0..3).map(|_| mint(&api, &t.agent_key)).collect();
    let vk = verifier_key(&api);
    let (_, cp0) = audit(&d, &vk, &tokens);
    // Right after a persist, so the next one is ~2 s away.
    wait_persisted(&d.db_path());
    tokens.extend((0..4).map(|_| mint(&api, &t.agent_key)));
    d.kill9_host();
    d.kill9_enclave();
    let (persisted, leaves) = persisted_checkpoint(&d.db_path());
    println!("kill -9 both: persisted checkpoint {persisted}, {leaves} leaves in the database");
    assert!(
        persisted < leaves,
        "setup: the persisted checkpoint ({persisted}) already covers all {leaves} leaves"
    );
    assert_eq!(
        leaves,
        tokens.iter().map(|m| m.log_index + 1).max().unwrap(),
        "every minted leaf is in the database"
    );

    with_logs(&mut d, |d| d.start_enclave());
    with_logs(&mut d, |d| d.start_host());
    wait_minting(&api, &t);
    let (_, cp) = audit(&d, &vk, &tokens);
    assert_consistent(&api, &cp0, &cp);
    let boots = all_leaves(&api, cp.size).iter().filter(|l| l.kind == KIND_BOOT).count();
    assert_eq!(boots, 1, "one enclave.boot leaf");
}

#[test]
fn clean_host_restart_keeps_everything() {
    let mut d = unthrottled();
    let t = d.new_tenant();
    let admin = d.admin_key();
    let mut before = before_restart(&d, &t, 5);
    let api = d.api();
    let size = log_size(&api);
    let old_leaves = entries(&api, 0, size);

    d.stop_host();
    assert_ne!(api.get("/healthz", None).0, 200, "the host is still up after stop_host");
    with_logs(&mut d, |d| d.start_host());

    // Same admin key file, and the key still works.
    assert_eq!(d.admin_key(), admin, "admin.key was rewritten");
    let (s, ws) = api.post("/v1/workspaces", Some(&admin), &json!({ "name": "after-restart" }));
    assert_eq!(s, 201, "{ws}");
    // The agent key still works and the stored log is byte-identical.
    assert_eq!(
        entries(&api, 0, size),
        old_leaves,
        "stored leaves changed across the restart"
    );
    after_restart(&d, &t, &mut before, false);
    // Unknown keys are still refused after the restart.
    assert_error(
        api.post("/v1/tokens", Some(&format!("sg_{}", "B".repeat(43))), &json!({})),
        401,
        "UNAUTHENTICATED",
    );
}

/// Fresh deployments, each bursting and killed mid-burst, until one is left with a hole
/// in its database (or `attempts` run out). Returns that deployment, its tenant, the
/// tokens its clients received and the holes, or `None` (with a printed SKIP line) when
/// the timing never produced a hole: whether a kill lands between two out-of-order
/// commits is up to the scheduler.
fn crash_until_gap(enclave_too: bool, attempts: usize) -> Option<(Deployment, Tenant, Vec<Minted>, Vec<u64>)> {
    for attempt in 1..=attempts {
        let mut d = unthrottled();
        let t = d.new_tenant();
        let minted = burst_then_kill(&mut d, &t, 500, enclave_too);
        let gaps = db_gaps(&d);
        println!("attempt {attempt}: {} tokens, holes {gaps:?}", minted.len());
        if !gaps.is_empty() {
            return Some((d, t, minted, gaps));
        }
    }
    println!("SKIP: no crash in {attempts} attempts left a hole in the database; the hole case was not exercised");
    None
}

#[test]
fn host_recovers_from_a_crash_that_left_a_hole() {
    let Some((mut d, _t, minted, gaps)) = crash_until_gap(false, 20) else {
        return;
    };
    restart_after_crash(&mut d, &gaps, false);
    let vk = verifier_key(&d.api());
    audit(&d, &vk, &minted);
}

#[test]
fn both_recover_from_a_crash_that_left_a_hole() {
    let Some((mut d, t, minted, gaps)) = crash_until_gap(true, 20) else {
        return;
    };
    let after_hole = minted.iter().filter(|m| m.log_index > gaps[0]).count();
    println!("holes {gaps:?}; {after_hole} tokens clients received lie after the first hole");
    restart_after_crash(&mut d, &gaps, true);
    wait_minting(&d.api(), &t);
    let vk = verifier_key(&d.api());
    audit(&d, &vk, &minted);
}

#[test]
fn restore_of_a_long_unpersisted_tail() {
    // Checkpoints reach SQLite only every 2 s, and not at all in a host's first 2 s; a
    // crash of both processes then leaves every later leaf to be restored by MAC. Here
    // the checkpoints after genesis are removed to stand for such a crash after ~3000
    // mints (a crash loop under load reaches the same state; see the report).
    let mut d = unthrottled();
    let t = d.new_tenant();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (url, key, stop) = (d.url.clone(), t.agent_key.clone(), stop.clone());
            std::thread::spawn(move || {
                let api = Api::new(&url);
                let mut got = Vec::new();
                while !stop.load(Ordering::Relaxed) && got.len() < 200 {
                    got.push(mint(&api, &key));
                }
                got
            })
        })
        .collect();
    let minted: Vec<Minted> = workers.into_iter().flat_map(|w| w.join().expect("worker")).collect();
    assert_eq!(minted.len(), 3200);
    d.stop_host();
    d.kill9_enclave();
    {
        let c = rusqlite::Connection::open(d.db_path()).unwrap();
        c.execute("DELETE FROM checkpoints WHERE size > 1", []).unwrap();
        let (rows, tail): (i64, i64) = c
            .query_row(
                "SELECT COUNT(*), SUM(LENGTH(bytes) + LENGTH(mac)) FROM leaves WHERE idx >= 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        println!("unpersisted tail: {rows} leaves, {tail} bytes");
        assert!(tail > 1 << 20, "setup: the tail ({tail} bytes) fits one frame");
    }
    assert!(db_gaps(&d).is_empty());
    with_logs(&mut d, |d| d.start_enclave());
    with_logs(&mut d, |d| d.start_host());
    wait_minting(&d.api(), &t);
    let vk = verifier_key(&d.api());
    audit(&d, &vk, &minted);
}

/// Issue 11: a restore whose tail does not fit one frame. Every leaf after genesis is
/// left to be restored by MAC (the checkpoints after it are removed, as in
/// `restore_of_a_long_unpersisted_tail`), and enough tokens are minted that the tail,
/// sent as one message the way protocol 3 did, would exceed `MAX_FRAME`: the host sends
/// it in `RestoreLeaves` chunks and the enclave adopts it at `RestoreEnd`.
#[test]
fn restore_of_a_tail_larger_than_one_frame() {
    use sealgate_shared::frame;
    use sealgate_shared::protocol::{Op, Request, TailLeaf};
    use serde_bytes::ByteBuf;

    let mut d = unthrottled();
    let t = d.new_tenant();
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (url, key) = (d.url.clone(), t.agent_key.clone());
            std::thread::spawn(move || {
                let api = Api::new(&url);
                (0..900).map(|_| mint(&api, &key)).collect::<Vec<_>>()
            })
        })
        .collect();
    let minted: Vec<Minted> = workers.into_iter().flat_map(|w| w.join().expect("worker")).collect();
    d.stop_host();
    d.kill9_enclave();
    let before = {
        let c = rusqlite::Connection::open(d.db_path()).unwrap();
        c.execute("DELETE FROM checkpoints WHERE size > 1", []).unwrap();
        let mut st = c
            .prepare("SELECT idx, bytes, mac FROM leaves WHERE idx >= 1 ORDER BY idx")
            .unwrap();
        let tail: Vec<TailLeaf> = st
            .query_map([], |r| {
                Ok(TailLeaf {
                    index: r.get::<_, i64>(0)? as u64,
                    hash: ByteBuf::from(merkle::leaf_hash(&r.get::<_, Vec<u8>>(1)?).to_vec()),
                    mac: ByteBuf::from(r.get::<_, Vec<u8>>(2)?),
                })
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let one_message = Request {
            id: 1,
            op: Op::RestoreLeaves { leaves: tail.clone() },
        };
        let refused = frame::encode(&one_message);
        println!(
            "unrestored tail: {} leaves; as one message: {:?}",
            tail.len(),
            refused.as_ref().map(Vec::len)
        );
        assert!(
            matches!(refused, Err(frame::FrameError::TooLarge(n)) if n > frame::MAX_FRAME),
            "setup: the tail of {} leaves fits one frame",
            tail.len()
        );
        tail.len() as u64 + 1
    };
    assert!(db_gaps(&d).is_empty());
    with_logs(&mut d, |d| d.start_enclave());
    with_logs(&mut d, |d| d.start_host());
    let api = d.api();
    wait_minting(&api, &t);
    let vk = verifier_key(&api);
    let (_, cp) = audit(&d, &vk, &minted);
    assert!(cp.size > before, "the log continues past the restored tail");
    // The restored log continues the old one: one enclave.boot, right after the tail.
    let leaves = all_leaves(&api, cp.size);
    let boots: Vec<u64> = leaves.iter().filter(|l| l.kind == KIND_BOOT).map(|l| l.index).collect();
    assert_eq!(
        boots,
        vec![before],
        "one enclave.boot leaf, at the end of the restored tail"
    );
}
