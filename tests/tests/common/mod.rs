//! Helpers shared by the end-to-end test files (each file does `mod common;`).
//! Everything here talks to a running deployment over HTTP, exactly as a client or an
//! auditor would, and checks what it gets with `sealgate_shared`'s own primitives.
#![allow(dead_code)]

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use sealgate_shared::leaf::{self, AnyLeaf, TokenIssued, KIND_TOKEN_ISSUED};
use sealgate_shared::merkle::{self, Hash};
use sealgate_shared::note::{Checkpoint, VerifierKey};
use sealgate_tests::Api;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A token a client received from `POST /v1/tokens`.
#[derive(Debug, Clone)]
pub struct Minted {
    pub token: String,
    pub jti: String,
    pub log_index: u64,
    pub expires_at: u64,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Asserts the documented error shape `{error: {code, message}}` with this status and code.
#[track_caller]
pub fn assert_error(got: (u16, Value), status: u16, code: &str) {
    let (s, body) = got;
    assert_eq!(s, status, "expected HTTP {status} {code}, got {s}: {body}");
    assert_error_shape(&body);
    assert_eq!(body["error"]["code"], code, "wrong error code: {body}");
}

/// Asserts `{error: {code: non-empty string, message: non-empty string}}`.
#[track_caller]
pub fn assert_error_shape(body: &Value) {
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("error body lacks error.code: {body}"));
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error body lacks error.message: {body}"));
    assert!(!code.is_empty() && !message.is_empty(), "empty code or message: {body}");
}

/// Mints a token with `body`, asserting success.
#[track_caller]
pub fn mint_with(api: &Api, key: &str, body: &Value) -> Minted {
    let (s, v) = api.post("/v1/tokens", Some(key), body);
    assert_eq!(s, 200, "mint failed: {v}");
    parse_minted(&v).unwrap_or_else(|| panic!("mint response lacks fields: {v}"))
}

#[track_caller]
pub fn mint(api: &Api, key: &str) -> Minted {
    mint_with(api, key, &json!({}))
}

pub fn parse_minted(v: &Value) -> Option<Minted> {
    Some(Minted {
        token: v["token"].as_str()?.to_string(),
        jti: v["jti"].as_str()?.to_string(),
        log_index: v["log_index"].as_u64()?,
        expires_at: v["expires_at"].as_u64()?,
    })
}

/// The checkpoint signer's key from `/v1/audit/key`.
#[track_caller]
pub fn verifier_key(api: &Api) -> VerifierKey {
    let (s, text) = api.get_text("/v1/audit/key", None);
    assert_eq!(s, 200, "/v1/audit/key: {text}");
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("/v1/audit/key is not a verifier key ({e}): {text:?}"))
}

/// The current checkpoint note and its verified contents.
#[track_caller]
pub fn checkpoint(api: &Api, vk: &VerifierKey) -> (String, Checkpoint) {
    let (s, note) = api.get_text("/v1/audit/checkpoint", None);
    assert_eq!(s, 200, "/v1/audit/checkpoint: {note}");
    let cp = vk
        .open(&note)
        .unwrap_or_else(|e| panic!("checkpoint does not verify ({e}): {note:?}"));
    (note, cp)
}

/// Polls until the signed checkpoint covers at least `size` leaves.
#[track_caller]
pub fn wait_checkpoint(api: &Api, vk: &VerifierKey, size: u64, timeout: Duration) -> (String, Checkpoint) {
    wait_for(&format!("the checkpoint to reach size {size}"), timeout, || {
        let (s, note) = api.get_text("/v1/audit/checkpoint", None);
        if s != 200 {
            return None;
        }
        let cp = vk
            .open(&note)
            .unwrap_or_else(|e| panic!("checkpoint does not verify ({e}): {note:?}"));
        (cp.size >= size).then_some((note, cp))
    })
}

/// The committed log size `/readyz` reports (the host must be ready).
#[track_caller]
pub fn log_size(api: &Api) -> u64 {
    let (s, v) = api.get("/readyz", None);
    assert_eq!(s, 200, "/readyz: {v}");
    v["log_size"]
        .as_u64()
        .unwrap_or_else(|| panic!("/readyz lacks log_size: {v}"))
}

fn b64(s: &Value) -> Vec<u8> {
    B64.decode(s.as_str().unwrap_or_else(|| panic!("not a string: {s}")))
        .unwrap_or_else(|e| panic!("not base64 ({e}): {s}"))
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .unwrap_or_else(|| panic!("proof is not an array: {v}"))
        .iter()
        .map(|h| merkle::to_hash(&b64(h)).expect("32-byte hash"))
        .collect()
}

/// One entry of `/v1/audit/entries`: index, hash, and the bytes when readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub hash: Hash,
    pub leaf: Option<Vec<u8>>,
}

/// `/v1/audit/entries` pages `[start, end)` read with `key`, as served.
#[track_caller]
pub fn entries_as(api: &Api, key: &str, start: u64, end: u64) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let to = (at + 1000).min(end);
        let (s, v) = api.get(&format!("/v1/audit/entries?start={at}&end={to}"), Some(key));
        assert_eq!(s, 200, "entries [{at}, {to}): {v}");
        let page: Vec<Entry> = v["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("no entries: {v}"))
            .iter()
            .map(|e| Entry {
                index: e["index"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("entry without index: {e}")),
                hash: merkle::to_hash(&b64(&e["hash"])).expect("32-byte hash"),
                leaf: e.get("leaf").map(b64),
            })
            .collect();
        if page.is_empty() {
            break;
        }
        at += page.len() as u64;
        out.extend(page);
    }
    out
}

/// Public leaf hashes `[start, end)` from `/v1/audit/hashes` (pages of at most 1000).
#[track_caller]
pub fn public_hashes(api: &Api, start: u64, end: u64) -> Vec<Hash> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let to = (at + 1000).min(end);
        let (s, v) = api.get(&format!("/v1/audit/hashes?start={at}&end={to}"), None);
        assert_eq!(s, 200, "hashes [{at}, {to}): {v}");
        let page = hashes(&v["hashes"]);
        if page.is_empty() {
            break;
        }
        at += page.len() as u64;
        out.extend(page);
    }
    out
}

/// Leaves `[start, end)` exactly as served, read with the operator key (the operator's
/// auditor reads every leaf; at most 1000 per call, so this pages).
#[track_caller]
pub fn entries(api: &Api, start: u64, end: u64) -> Vec<Vec<u8>> {
    let key = api
        .operator_key()
        .expect("audit contents need the operator key: make the Api with Deployment::api()");
    entries_as(api, &key, start, end)
        .into_iter()
        .map(|e| {
            let bytes = e
                .leaf
                .unwrap_or_else(|| panic!("the operator key was not served leaf {}", e.index));
            assert_eq!(
                merkle::leaf_hash(&bytes),
                e.hash,
                "leaf {} does not hash to its served hash",
                e.index
            );
            bytes
        })
        .collect()
}

/// Every leaf `[0, size)`, each checked to parse and to carry its own index (no gap,
/// no duplicate, no reordering).
#[track_caller]
pub fn all_leaves(api: &Api, size: u64) -> Vec<AnyLeaf> {
    let raw = entries(api, 0, size);
    assert_eq!(
        raw.len() as u64,
        size,
        "the host served {} leaves for [0, {size})",
        raw.len()
    );
    raw.iter()
        .enumerate()
        .map(|(i, bytes)| {
            let l = leaf::parse(bytes)
                .unwrap_or_else(|e| panic!("leaf {i} does not parse ({e}): {}", String::from_utf8_lossy(bytes)));
            assert_eq!(l.v, 1, "leaf {i} version");
            assert_eq!(l.index, i as u64, "leaf at position {i} says index {}", l.index);
            l
        })
        .collect()
}

/// The Merkle root of leaves `[0, size)` computed from the served bytes.
pub fn root_of(leaves: &[Vec<u8>]) -> Hash {
    let mut range = merkle::CompactRange::new();
    for l in leaves {
        range.append(merkle::leaf_hash(l));
    }
    range.root()
}

#[track_caller]
pub fn inclusion_proof(api: &Api, index: u64, size: u64) -> Vec<Hash> {
    let (s, v) = api.get(&format!("/v1/audit/proof/inclusion?index={index}&size={size}"), None);
    assert_eq!(s, 200, "inclusion proof {index}/{size}: {v}");
    assert_eq!(v["index"], index);
    assert_eq!(v["size"], size);
    hashes(&v["proof"])
}

#[track_caller]
pub fn consistency_proof(api: &Api, from: u64, to: u64) -> Vec<Hash> {
    let (s, v) = api.get(&format!("/v1/audit/proof/consistency?from={from}&to={to}"), None);
    assert_eq!(s, 200, "consistency proof {from}->{to}: {v}");
    assert_eq!(v["from"], from);
    assert_eq!(v["to"], to);
    hashes(&v["proof"])
}

/// `GET /v1/audit/tokens/{jti}` read with the operator key: the index and leaf bytes.
#[track_caller]
pub fn token_record(api: &Api, jti: &str) -> (u64, Vec<u8>) {
    let key = api.operator_key().expect("the operator key");
    token_record_as(api, jti, &key)
}

/// `GET /v1/audit/tokens/{jti}` presenting `bearer` (a key, or the token itself).
#[track_caller]
pub fn token_record_as(api: &Api, jti: &str, bearer: &str) -> (u64, Vec<u8>) {
    let (s, v) = api.get(&format!("/v1/audit/tokens/{jti}"), Some(bearer));
    assert_eq!(s, 200, "token lookup {jti}: {v}");
    assert_eq!(v["jti"], jti, "{v}");
    let index = v["index"].as_u64().unwrap_or_else(|| panic!("no index: {v}"));
    (index, b64(&v["leaf"]))
}

/// Everything an auditor checks for one token the client holds: the host's record
/// points at the index the client was told, the leaf is a `token.issued` leaf for this
/// very JWT, and it is included in the signed checkpoint `cp`.
#[track_caller]
pub fn prove_token(api: &Api, cp: &Checkpoint, m: &Minted) -> TokenIssued {
    // The holder reads its own leaf by presenting the token.
    let (index, bytes) = token_record_as(api, &m.jti, &m.token);
    assert_eq!(
        index, m.log_index,
        "token {} was reported at index {} but the log has it at {index}",
        m.jti, m.log_index
    );
    let l = leaf::parse(&bytes).expect("token leaf parses");
    assert_eq!(l.index, index, "leaf index");
    assert_eq!(l.kind, KIND_TOKEN_ISSUED, "leaf kind");
    let data: TokenIssued = serde_json::from_value(l.data).expect("token.issued data");
    assert_eq!(data.jti, m.jti);
    assert_eq!(
        data.token_sha256,
        sha256_hex(m.token.as_bytes()),
        "leaf token_sha256 does not match the JWT {}",
        m.jti
    );
    assert!(
        index < cp.size,
        "token {} at index {index} is not covered by checkpoint size {}",
        m.jti,
        cp.size
    );
    let proof = inclusion_proof(api, index, cp.size);
    merkle::verify_inclusion(index, cp.size, &merkle::leaf_hash(&bytes), &proof, &cp.root).unwrap_or_else(|e| {
        panic!(
            "inclusion proof for {} (index {index}, size {}) fails: {e}",
            m.jti, cp.size
        )
    });
    data
}

/// The JWT's claims, decoded without verification (for comparisons only).
pub fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three-part JWT");
    serde_json::from_slice(&B64URL.decode(payload).expect("base64url payload")).expect("JSON payload")
}

/// Runs `sealgate-verify log --url URL` plus extra args.
pub fn verify_log(url: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["log", "--url", url];
    args.extend_from_slice(extra);
    sealgate_tests::verify(&args)
}

pub use sealgate_tests::wait_for;

/// `(largest persisted checkpoint size, number of leaves)` straight from SQLite.
pub fn persisted_checkpoint(db: &std::path::Path) -> (u64, u64) {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open db");
    let cp: i64 = c
        .query_row("SELECT COALESCE(MAX(size), 0) FROM checkpoints", [], |r| r.get(0))
        .unwrap();
    let n: i64 = c.query_row("SELECT COUNT(*) FROM leaves", [], |r| r.get(0)).unwrap();
    (cp as u64, n as u64)
}

/// Waits until the host has written a checkpoint covering every stored leaf to SQLite
/// (it persists one at most every 2 s; the in-memory one is newer).
#[track_caller]
pub fn wait_persisted(db: &std::path::Path) -> u64 {
    wait_for(
        "a persisted checkpoint covering the whole log",
        Duration::from_secs(15),
        || {
            let (cp, n) = persisted_checkpoint(db);
            (cp == n && n > 0).then_some(n)
        },
    )
}

/// Runs `f` (a restart, typically); if it panics, prints the host's and the enclave's
/// logs first, since the deployment's directory is gone once the test unwinds.
pub fn with_logs<T>(d: &mut sealgate_tests::Deployment, f: impl FnOnce(&mut sealgate_tests::Deployment) -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(d))) {
        Ok(v) => v,
        Err(e) => {
            let enclave = std::fs::read_to_string(d.path("enclave.log")).unwrap_or_default();
            eprintln!("---- host.log ----\n{}\n---- enclave.log ----\n{enclave}", d.host_log());
            std::panic::resume_unwind(e)
        }
    }
}

/// The simulated Nitro root of a deployment, for `sealgate-verify --sim-root`.
pub fn sim_root(d: &sealgate_tests::Deployment) -> String {
    let p = d.path("enclave/sim-nsm/root.pem");
    assert!(p.is_file(), "{} missing", p.display());
    p.display().to_string()
}

/// Asserts a `sealgate-verify` run exited with `code`; returns its output.
pub fn expect_exit(code: i32, (got, out): (i32, String)) -> String {
    assert_eq!(got, code, "expected exit {code}, got {got}:\n{out}");
    out
}

/// A GET-only HTTP proxy that plays a lying host: each request is fetched from the
/// upstream `route(path)` names (with the request's `Authorization`, if any), and its body
/// passes through `rewrite(path, body)`.
/// Returns the proxy's URL; it serves until the test process ends.
pub fn proxy<R, W>(route: R, rewrite: W) -> String
where
    R: Fn(&str) -> String + Send + 'static,
    W: Fn(&str, Vec<u8>) -> Vec<u8> + Send + 'static,
{
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = (|| -> std::io::Result<()> {
                let mut reader = BufReader::new(stream.try_clone()?);
                let mut request_line = String::new();
                reader.read_line(&mut request_line)?;
                let mut line = String::new();
                let mut auth = None;
                while reader.read_line(&mut line)? > 0 && line != "\r\n" {
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("authorization") {
                            auth = Some(value.trim().to_string());
                        }
                    }
                    line.clear();
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut req = ureq::get(&format!("{}{path}", route(&path)));
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                let (status, body) = match req.call() {
                    Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_vec().unwrap_or_default()),
                    Err(ureq::Error::StatusCode(c)) => (c, b"{}".to_vec()),
                    Err(_) => (502, b"{}".to_vec()),
                };
                let body = rewrite(&path, body);
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                )?;
                stream.write_all(&body)?;
                stream.flush()
            })();
        }
    });
    format!("http://{addr}")
}

/// A consistent copy of the database taken while the host runs (`VACUUM INTO`).
pub fn snapshot_db(d: &sealgate_tests::Deployment, to: &std::path::Path) {
    let c = rusqlite::Connection::open(d.db_path()).expect("open the database");
    c.execute("VACUUM INTO ?1", [to.display().to_string()])
        .expect("snapshot the database");
}

/// Puts a snapshot back in place of the (stopped) host's database.
pub fn restore_db(d: &sealgate_tests::Deployment, from: &std::path::Path) {
    for suffix in ["-wal", "-shm"] {
        let mut p = d.db_path().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(std::path::PathBuf::from(p));
    }
    std::fs::copy(from, d.db_path()).expect("restore the snapshot");
}
