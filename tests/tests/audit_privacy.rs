//! Issue 9, hole 4: the public log showed every tenant's data. Integrity stays public —
//! checkpoint, leaf hashes (`/v1/audit/hashes`), proofs — but a leaf's contents go only
//! to an auditor or admin key of its workspace, the operator, and a token's holder for
//! its own leaf (ARCHITECTURE §5). Every test here talks to a real deployment.

mod common;

use common::*;
use rusqlite::params;
use sealgate_shared::leaf;
use sealgate_shared::merkle;
use sealgate_tests::{Api, Deployment};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// A workspace with an agent (and its token), and one key of each role that matters.
struct Ws {
    id: String,
    agent_name: String,
    auditor: String,
    admin: String,
    agent_key: String,
    approver: String,
    minted: Minted,
}

fn key(api: &Api, operator: &str, ws: &str, role: &str, agent: Option<&str>) -> String {
    let mut body = json!({ "role": role });
    if let Some(a) = agent {
        body["agent_id"] = json!(a);
    }
    let (s, v) = api.post(&format!("/v1/workspaces/{ws}/keys"), Some(operator), &body);
    assert_eq!(s, 201, "{role} key: {v}");
    v["key"].as_str().expect("key").to_string()
}

fn workspace(api: &Api, operator: &str, name: &str) -> Ws {
    let (s, v) = api.post("/v1/workspaces", Some(operator), &json!({ "name": name }));
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().expect("ws id").to_string();
    let agent_name = format!("{name}-secret-agent");
    let (s, v) = api.post(
        &format!("/v1/workspaces/{id}/agents"),
        Some(operator),
        &json!({ "name": agent_name }),
    );
    assert_eq!(s, 201, "{v}");
    let agent = v["id"].as_str().expect("agent id").to_string();
    let agent_key = key(api, operator, &id, "agent", Some(&agent));
    let minted = mint(api, &agent_key);
    Ws {
        auditor: key(api, operator, &id, "auditor", None),
        admin: key(api, operator, &id, "admin", None),
        approver: key(api, operator, &id, "approver", None),
        agent_key,
        agent_name,
        minted,
        id,
    }
}

/// A deployment with workspaces A and B, and a checkpoint covering all of it.
struct Setup {
    d: Deployment,
    api: Api,
    operator: String,
    a: Ws,
    b: Ws,
    size: u64,
}

fn setup() -> Setup {
    let d = Deployment::start();
    let api = d.api();
    let operator = d.admin_key();
    let a = workspace(&api, &operator, "alpha");
    let b = workspace(&api, &operator, "bravo");
    let size = log_size(&api);
    let vk = verifier_key(&api);
    wait_checkpoint(&api, &vk, size, Duration::from_secs(30));
    Setup {
        d,
        api,
        operator,
        a,
        b,
        size,
    }
}

/// The indices of the leaves that belong to `ws`, judged from the operator's full view.
fn leaves_of(s: &Setup, ws: &str) -> BTreeSet<u64> {
    entries(&s.api, 0, s.size)
        .iter()
        .enumerate()
        .filter(|(_, b)| leaf::workspace_of(b).as_deref() == Some(ws))
        .map(|(i, _)| i as u64)
        .collect()
}

#[test]
fn hole4_anonymous_entries_no_longer_show_tenant_data() {
    let s = setup();
    let (status, text) = s
        .api
        .get_text(&format!("/v1/audit/entries?start=0&end={}", s.size), None);
    assert_eq!(status, 401, "anonymous entries: {text}");
    let v: Value = serde_json::from_str(&text).expect("JSON error");
    assert_error_shape(&v);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("/v1/audit/hashes"),
        "the refusal should point at the public hashes: {v}"
    );
    // Neither that answer nor the public endpoints carry any tenant's names or subjects.
    let (_, hashes) = s
        .api
        .get_text(&format!("/v1/audit/hashes?start=0&end={}", s.size), None);
    let (_, token) = s.api.get_text(&format!("/v1/audit/tokens/{}", s.a.minted.jti), None);
    for body in [&text, &hashes, &token] {
        for secret in [&s.a.agent_name, &s.b.agent_name, &s.a.id, &s.b.id] {
            assert!(!body.contains(secret.as_str()), "{secret} leaked anonymously: {body}");
        }
        let decoded = serde_json::from_str::<Value>(body).expect("JSON");
        assert!(decoded.get("entries").is_none(), "{decoded}");
    }
    assert_error(
        s.api.get(&format!("/v1/audit/tokens/{}", s.a.minted.jti), None),
        401,
        "UNAUTHENTICATED",
    );
}

#[test]
fn hole4_workspace_auditors_and_admins_read_only_their_own_leaves() {
    let s = setup();
    let (mine, theirs) = (leaves_of(&s, &s.a.id), leaves_of(&s, &s.b.id));
    assert!(mine.contains(&s.a.minted.log_index) && theirs.contains(&s.b.minted.log_index));
    let public = public_hashes(&s.api, 0, s.size);
    let all = entries(&s.api, 0, s.size);

    for (who, k) in [("A's auditor", &s.a.auditor), ("A's admin", &s.a.admin)] {
        let got = entries_as(&s.api, k, 0, s.size);
        assert_eq!(got.len() as u64, s.size, "{who}: one entry per leaf");
        for (i, e) in got.iter().enumerate() {
            let i = i as u64;
            assert_eq!(e.index, i, "{who}: entries keep their indices");
            assert_eq!(e.hash, public[i as usize], "{who}: entry {i} hash");
            match &e.leaf {
                Some(bytes) => {
                    assert!(mine.contains(&i), "{who} read leaf {i}, which is not A's");
                    assert_eq!(bytes, &all[i as usize]);
                }
                None => assert!(!mine.contains(&i), "{who} was refused A's own leaf {i}"),
            }
        }
        assert!(!contents_text(&got).contains(&s.b.agent_name), "{who} sees B's agent");
        assert!(
            contents_text(&got).contains(&s.a.agent_name),
            "{who} cannot see A's agent"
        );
        // A's token leaf by jti, with the key; B's is not found.
        let (index, _) = token_record_as(&s.api, &s.a.minted.jti, k);
        assert_eq!(index, s.a.minted.log_index);
        assert_error(
            s.api.get(&format!("/v1/audit/tokens/{}", s.b.minted.jti), Some(k)),
            404,
            "NOT_FOUND",
        );
    }

    // B's auditor: none of A's leaves.
    let got = entries_as(&s.api, &s.b.auditor, 0, s.size);
    for e in &got {
        assert!(
            e.leaf.is_none() || !mine.contains(&e.index),
            "B's auditor read A's leaf {}",
            e.index
        );
    }
    assert!(!contents_text(&got).contains(&s.a.agent_name));
    assert!(got.iter().any(|e| e.leaf.is_some()), "B's auditor reads B's own leaves");

    // Keys that are not auditors cannot read contents at all.
    for (who, k) in [("A's agent", &s.a.agent_key), ("A's approver", &s.a.approver)] {
        let (st, v) = s.api.get(&format!("/v1/audit/entries?start=0&end={}", s.size), Some(k));
        assert_eq!(st, 403, "{who}: {v}");
        assert_error_shape(&v);
        assert_error(
            s.api.get(&format!("/v1/audit/tokens/{}", s.a.minted.jti), Some(k)),
            403,
            "FORBIDDEN",
        );
    }

    // The operator (the operator's auditor) reads every leaf, operator-level ones too.
    let got = entries_as(&s.api, &s.operator, 0, s.size);
    assert!(
        got.iter().all(|e| e.leaf.is_some()),
        "the operator must read every leaf"
    );
    assert!(
        got.iter()
            .any(|e| leaf::workspace_of(e.leaf.as_ref().unwrap()).is_none()),
        "the log has operator-level leaves (genesis, bootstrap)"
    );
}

fn contents_text(entries: &[Entry]) -> String {
    entries
        .iter()
        .filter_map(|e| e.leaf.as_ref())
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn hole4_token_holder_reads_its_own_leaf_and_nothing_else() {
    let s = setup();
    let m = &s.a.minted;
    let (index, bytes) = token_record_as(&s.api, &m.jti, &m.token);
    assert_eq!(index, m.log_index);
    assert_eq!(bytes, entries(&s.api, index, index + 1)[0]);
    let l = leaf::parse(&bytes).expect("leaf");
    assert_eq!(l.data["token_sha256"], sha256_hex(m.token.as_bytes()));

    // Another token, or this one altered, gets nothing (not even whether the jti exists).
    let other = &s.b.minted.token;
    let mut tampered = m.token.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (what, bearer) in [
        ("another token", other.as_str()),
        ("a tampered token", tampered.as_str()),
    ] {
        let (st, v) = s.api.get(&format!("/v1/audit/tokens/{}", m.jti), Some(bearer));
        assert_eq!(st, 404, "{what}: {v}");
        assert_error_shape(&v);
        assert!(!v.to_string().contains(&s.a.agent_name), "{what}: {v}");
        assert!(v.get("leaf").is_none(), "{what}: {v}");
    }
    // A token reads no entries.
    let (st, v) = s.api.get("/v1/audit/entries?start=0&end=1", Some(&m.token));
    assert_eq!(st, 401, "{v}");
}

#[test]
fn hole4_root_from_public_hashes_equals_the_checkpoint() {
    let s = setup();
    let vk = verifier_key(&s.api);
    let (_, cp) = checkpoint(&s.api, &vk);
    let hashes = public_hashes(&s.api, 0, cp.size);
    assert_eq!(hashes.len() as u64, cp.size);
    let mut range = merkle::CompactRange::new();
    hashes.iter().for_each(|h| range.append(*h));
    assert_eq!(range.root(), cp.root, "root recomputed from /v1/audit/hashes");
    // The hashes are those of the stored leaves, and a token's inclusion proof checks
    // against them with nothing but the public endpoints and the token.
    let all = entries(&s.api, 0, cp.size);
    for (i, b) in all.iter().enumerate() {
        assert_eq!(merkle::leaf_hash(b), hashes[i], "hash {i}");
    }
    prove_token(&s.api, &cp, &s.a.minted);
    // At most 1000 per call.
    assert_error(
        s.api.get("/v1/audit/hashes?start=0&end=1001", None),
        400,
        "INVALID_RANGE",
    );
}

fn verify_json(url: &str, extra: &[&str]) -> (i32, Value, String) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let (code, out) = verify_log(url, &args);
    // stdout's JSON object comes first (stderr, if anything, after it).
    let v = serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .next()
        .and_then(Result::ok)
        .unwrap_or(Value::Null);
    (code, v, out)
}

#[test]
fn hole4_sealgate_verify_works_anonymously_with_a_key_and_with_a_token() {
    let s = setup();
    let url = s.d.url.as_str();

    let (code, v, out) = verify_json(url, &[]);
    assert_eq!(code, 0, "anonymous:\n{out}");
    assert_eq!(v["scan"], "hashes", "{out}");

    let a_count = leaves_of(&s, &s.a.id).len() as u64;
    let (code, v, out) = verify_json(url, &["--key", &s.a.auditor]);
    assert_eq!(code, 0, "A's auditor:\n{out}");
    assert_eq!(v["scan"], "contents");
    assert_eq!(v["readable"], a_count, "{out}");
    let (code, v, out) = verify_json(url, &["--key", &s.operator]);
    assert_eq!(code, 0, "the operator:\n{out}");
    assert_eq!(v["readable"], s.size, "{out}");

    // The holder proves its token with nothing but the token.
    let (code, out) = verify_log(url, &["--token", &s.a.minted.token]);
    assert_eq!(code, 0, "token holder:\n{out}");
    // A key that may not read contents is a refused fetch (exit 3), not a pass.
    let (code, out) = verify_log(url, &["--key", &s.a.agent_key]);
    assert_eq!(code, 3, "an agent key:\n{out}");
    assert!(out.contains("403"), "{out}");

    // The host now serves a tampered leaf of A's: its row is edited under the running
    // host, whose Merkle tree (checked against every checkpoint) still holds the true
    // hash. A's auditor reads the leaf and must fail; B's auditor and anonymous
    // verifiers cannot read it, and the public hashes are still the signed ones.
    let idx = s.a.minted.log_index;
    {
        let c = rusqlite::Connection::open(s.d.db_path()).expect("open the database");
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        let bytes: Vec<u8> = c
            .query_row("SELECT bytes FROM leaves WHERE idx = ?1", params![idx as i64], |r| {
                r.get(0)
            })
            .unwrap();
        let edited = String::from_utf8(bytes)
            .unwrap()
            .replacen("\"aud\":\"", "\"aud\":\"x", 1);
        assert_eq!(
            c.execute(
                "UPDATE leaves SET bytes = ?1 WHERE idx = ?2",
                params![edited.as_bytes(), idx as i64]
            )
            .unwrap(),
            1
        );
    }
    let (code, out) = verify_log(url, &["--key", &s.a.auditor]);
    assert_eq!(code, 5, "A's auditor must catch the tampered leaf:\n{out}");
    assert!(out.contains(&format!("leaf {idx}'s bytes hash to")), "{out}");
    let (code, out) = verify_log(url, &["--key", &s.b.auditor]);
    assert_eq!(
        code, 0,
        "B's auditor cannot read A's leaf, and the rest is intact:\n{out}"
    );
    let (code, out) = verify_log(url, &[]);
    assert_eq!(code, 0, "the public hashes are still the signed ones:\n{out}");
    // The holder's own leaf no longer matches what the log signed.
    let (code, out) = verify_log(url, &["--token", &s.a.minted.token]);
    assert_eq!(code, 6, "the holder's leaf was changed:\n{out}");
}

/// Issue 10, bug 6: a range past the end of the log answers with the range it served,
/// `[start, one past the last entry)`, not the `end` that was asked; the same for the
/// public hashes, and a range wholly past the log is empty with `end == start`.
#[test]
fn entries_and_hashes_echo_the_range_served_not_the_range_asked() {
    let s = setup();
    let stored: i64 = rusqlite::Connection::open(s.d.db_path())
        .expect("db")
        .query_row("SELECT COUNT(*) FROM leaves", [], |r| r.get(0))
        .expect("count");
    let (status, v) = s.api.get("/v1/audit/entries?start=0&end=1000", Some(&s.operator));
    assert_eq!(status, 200, "{v}");
    let n = v["entries"].as_array().expect("entries").len() as u64;
    assert!(n > 0 && n < 1000 && n as i64 <= stored, "{n} of {stored}");
    assert_eq!(v["start"], 0);
    assert_eq!(v["end"], n, "end is one past the last entry returned: {v}");
    let last = v["entries"][n as usize - 1]["index"].as_u64().expect("index");
    assert_eq!(last + 1, n);

    let (status, h) = s.api.get("/v1/audit/hashes?start=1&end=1000", None);
    assert_eq!(status, 200, "{h}");
    let served = h["hashes"].as_array().expect("hashes").len() as u64;
    assert!(served > 0 && served < 999, "{h}");
    assert_eq!(h["end"], 1 + served, "{h}");

    let (status, v) = s.api.get("/v1/audit/entries?start=5000&end=5010", Some(&s.operator));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["entries"], json!([]));
    assert_eq!(
        (v["start"].clone(), v["end"].clone()),
        (json!(5000), json!(5000)),
        "{v}"
    );
}
