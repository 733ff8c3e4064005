//! A real log made in memory: real leaf envelopes, a real Ed25519 checkpoint signer,
//! real proofs from `TreeStore`, served by [`MemoryLog`] (a `LogSource`) or over HTTP by
//! [`serve`]. Tests tamper with what the "host" serves and check the verdict.
#![allow(dead_code)]

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use ed25519_dalek::SigningKey;
use sealgate_attestation::fetch::{
    ConsistencyProof, EntriesPage, Entry, FetchError, HashesPage, InclusionProof, LogSource, TokenRecord,
};
use sealgate_attestation::jwt::Token;
use sealgate_shared::leaf::{AnyLeaf, Leaf, Origin, TokenIssued, KIND_GENESIS, KIND_TOKEN_ISSUED};
use sealgate_shared::merkle::proof::TreeStore;
use sealgate_shared::merkle::{leaf_hash, Hash};
use sealgate_shared::note::{self, Checkpoint, VerifierKey};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub const ORIGIN: &str = "sealgate.test/log";

/// A token the fixture "issued": its compact JWT, jti, and leaf index.
#[derive(Debug, Clone)]
pub struct Issued {
    pub jwt: String,
    pub jti: String,
    pub index: u64,
}

impl Issued {
    pub fn token(&self) -> Token {
        Token::parse(&self.jwt).expect("fixture JWTs parse")
    }
}

/// A compact JWT with the given claims; the signature is junk (not checked by `log`).
pub fn make_jwt(jti: &str, sub: &str, exp: u64) -> String {
    let header = B64URL.encode(br#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#);
    let payload = B64URL.encode(
        serde_json::json!({ "iss": "http://127.0.0.1:8080", "sub": sub, "aud": "sts.amazonaws.com", "iat": exp - 300, "exp": exp, "jti": jti })
            .to_string(),
    );
    let sig = B64URL.encode([0x5au8; 64]);
    format!("{header}.{payload}.{sig}")
}

pub fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn verifier_key(sk: &SigningKey) -> VerifierKey {
    VerifierKey::new(ORIGIN, sk.verifying_key().to_bytes()).expect("valid key")
}

/// Signs a checkpoint the way the enclave does.
pub fn sign_checkpoint(sk: &SigningKey, cp: &Checkpoint) -> String {
    note::sign(sk, cp)
}

/// The honest log: leaves, issued tokens, and every node for proofs.
pub struct Fixture {
    pub sk: SigningKey,
    pub leaves: Vec<Vec<u8>>,
    pub issued: Vec<Issued>,
    pub store: TreeStore,
}

fn token_leaf(index: u64, jwt: &str, jti: &str, sub: &str, exp: u64) -> Vec<u8> {
    let leaf = Leaf {
        v: 1,
        index,
        ts: 1_732_300_000_000 + index,
        origin: Origin::Enclave,
        kind: KIND_TOKEN_ISSUED.to_string(),
        data: TokenIssued {
            jti: jti.to_string(),
            sub: sub.to_string(),
            aud: "sts.amazonaws.com".into(),
            iat: exp - 300,
            exp,
            token_sha256: hex::encode(Sha256::digest(jwt.as_bytes())),
            caller: "key_0001".into(),
        },
    };
    serde_json::to_vec(&leaf).expect("serializes")
}

fn other_leaf(index: u64) -> Vec<u8> {
    let leaf: AnyLeaf = if index == 0 {
        Leaf {
            v: 1,
            index,
            ts: 1_732_300_000_000,
            origin: Origin::Enclave,
            kind: KIND_GENESIS.to_string(),
            data: serde_json::json!({ "note": "genesis" }),
        }
    } else {
        Leaf {
            v: 1,
            index,
            ts: 1_732_300_000_000 + index,
            origin: Origin::Host,
            kind: "aws.sts.assume_role".to_string(),
            data: serde_json::json!({ "request": index, "ok": true }),
        }
    };
    serde_json::to_vec(&leaf).expect("serializes")
}

impl Fixture {
    /// `n` leaves: a genesis leaf, then host events with a token leaf every `every`.
    pub fn new(n: u64, every: u64) -> Self {
        let mut leaves = Vec::new();
        let mut issued = Vec::new();
        let mut store = TreeStore::new();
        for index in 0..n {
            let bytes = if index > 0 && index % every == 0 {
                let jti = format!("jti-{index:06}");
                let sub = format!("ws:w1:agent:a{index}");
                let exp = 1_732_300_300 + index;
                let jwt = make_jwt(&jti, &sub, exp);
                let bytes = token_leaf(index, &jwt, &jti, &sub, exp);
                issued.push(Issued { jwt, jti, index });
                bytes
            } else {
                other_leaf(index)
            };
            store.push(leaf_hash(&bytes));
            leaves.push(bytes);
        }
        Self {
            sk: signing_key(7),
            leaves,
            issued,
            store,
        }
    }

    pub fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            origin: ORIGIN.to_string(),
            size: self.size(),
            root: self.store.root(self.size()).expect("in range"),
        }
    }

    pub fn vk(&self) -> VerifierKey {
        verifier_key(&self.sk)
    }

    /// A host that serves this log honestly.
    pub fn honest(&self) -> MemoryLog {
        let token_records = self
            .issued
            .iter()
            .map(|t| {
                let rec = TokenRecord {
                    jti: t.jti.clone(),
                    index: t.index,
                    leaf: self.leaves[t.index as usize].clone(),
                };
                (t.jti.clone(), rec)
            })
            .collect();
        MemoryLog {
            key: self.vk().to_string(),
            checkpoint: sign_checkpoint(&self.sk, &self.checkpoint()),
            leaves: self.leaves.clone(),
            token_records,
            store: self.store.clone(),
            short_page_at: None,
            wrong_range_at: None,
            proof_tamper: None,
            served_contents: BTreeMap::new(),
            readable: None,
            misindex_at: None,
            entries_calls: RefCell::new(Vec::new()),
            hashes_calls: RefCell::new(Vec::new()),
        }
    }
}

/// A host in memory. Every field is what it *serves*; tests change them to lie.
pub struct MemoryLog {
    pub key: String,
    pub checkpoint: String,
    pub leaves: Vec<Vec<u8>>,
    pub token_records: BTreeMap<String, TokenRecord>,
    /// Proofs come from here (the honest tree unless a test swaps it).
    pub store: TreeStore,
    /// Drop the last leaf of the page starting here.
    pub short_page_at: Option<u64>,
    /// Answer the page starting here with a range shifted by one.
    pub wrong_range_at: Option<u64>,
    pub proof_tamper: Option<fn(&mut Vec<Hash>)>,
    /// Entries serve these bytes at these indices instead of `leaves` (hashes still
    /// from `leaves`): contents changed under a log whose hashes are right.
    pub served_contents: BTreeMap<u64, Vec<u8>>,
    /// Which leaves the entries' key may read (`None`: all of them).
    pub readable: Option<fn(u64) -> bool>,
    /// Entries say index + 1 for the entry at this position.
    pub misindex_at: Option<u64>,
    /// Every `(start, end)` asked of `entries`.
    pub entries_calls: RefCell<Vec<(u64, u64)>>,
    /// Every `(start, end)` asked of `hashes`.
    pub hashes_calls: RefCell<Vec<(u64, u64)>>,
}

impl MemoryLog {
    /// The served leaves `[start, end)` and their positions, with the page lies applied.
    fn page(&self, start: u64, end: u64) -> (u64, u64, Vec<(u64, Vec<u8>)>) {
        let len = self.leaves.len();
        let lo = (start as usize).min(len);
        let hi = (end as usize).min(len).max(lo);
        let mut items: Vec<(u64, Vec<u8>)> = (lo..hi).map(|i| (i as u64, self.leaves[i].clone())).collect();
        if self.short_page_at == Some(start) {
            items.pop();
        }
        let (start, end) = if self.wrong_range_at == Some(start) {
            (start + 1, end + 1)
        } else {
            (start, end)
        };
        (start, end, items)
    }
}

impl LogSource for MemoryLog {
    fn key(&self) -> Result<String, FetchError> {
        Ok(self.key.clone())
    }

    fn checkpoint(&self) -> Result<String, FetchError> {
        Ok(self.checkpoint.clone())
    }

    fn hashes(&self, start: u64, end: u64) -> Result<HashesPage, FetchError> {
        self.hashes_calls.borrow_mut().push((start, end));
        let (start, end, items) = self.page(start, end);
        let hashes = items.iter().map(|(_, b)| leaf_hash(b)).collect();
        Ok(HashesPage { start, end, hashes })
    }

    fn entries(&self, start: u64, end: u64) -> Result<EntriesPage, FetchError> {
        self.entries_calls.borrow_mut().push((start, end));
        let (start, end, items) = self.page(start, end);
        // The served index is the position (a host that renumbers its rows); the leaf
        // bytes still say where they belong, which the envelope check compares.
        let entries = items
            .into_iter()
            .map(|(i, bytes)| {
                let index = if self.misindex_at == Some(i) { i + 1 } else { i };
                let hash = leaf_hash(&bytes);
                let readable = self.readable.is_none_or(|r| r(i));
                let served = self.served_contents.get(&i).cloned().unwrap_or(bytes);
                Entry {
                    index,
                    hash,
                    leaf: readable.then_some(served),
                }
            })
            .collect();
        Ok(EntriesPage { start, end, entries })
    }

    fn token(&self, token: &Token) -> Result<TokenRecord, FetchError> {
        self.token_records.get(&token.jti).cloned().ok_or(FetchError::NotFound {
            what: format!("token lookup {:?}", token.jti),
        })
    }

    fn inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof, FetchError> {
        let mut proof = self
            .store
            .inclusion_proof(index, size)
            .map_err(|e| FetchError::Status {
                what: "inclusion proof".into(),
                status: 400,
                message: Some(e.to_string()),
            })?;
        if let Some(tamper) = self.proof_tamper {
            tamper(&mut proof);
        }
        Ok(InclusionProof { index, size, proof })
    }

    fn consistency_proof(&self, from: u64, to: u64) -> Result<ConsistencyProof, FetchError> {
        let proof = self.store.consistency_proof(from, to).map_err(|e| FetchError::Status {
            what: "consistency proof".into(),
            status: 400,
            message: Some(e.to_string()),
        })?;
        Ok(ConsistencyProof { from, to, proof })
    }
}

/// Rewrites each leaf's `index` to its position, the way a careful liar would.
pub fn reindex(leaves: &mut [Vec<u8>]) {
    for (i, bytes) in leaves.iter_mut().enumerate() {
        let mut leaf: AnyLeaf = serde_json::from_slice(bytes).expect("fixture leaf");
        if leaf.index != i as u64 {
            leaf.index = i as u64;
            *bytes = serde_json::to_vec(&leaf).expect("serializes");
        }
    }
}

/// An overridable HTTP answer for one request path (path and query).
pub type Override = Arc<Mutex<BTreeMap<String, (u16, String)>>>;

/// Serves `log` over HTTP/1.1 on a loopback port, one request per connection, as the
/// host's audit endpoints would. Returns the base URL and a table of canned answers
/// that take precedence (to serve garbage). The server thread lives until the process
/// ends.
pub fn serve(log: MemoryLog) -> (String, Override) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let overrides: Override = Arc::default();
    let ov = overrides.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(match conn.try_clone() {
                Ok(c) => c,
                Err(_) => continue,
            });
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut auth = None;
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line == "\r\n" || line == "\n" => break,
                    Ok(_) => {
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("authorization") {
                                auth = value.trim().strip_prefix("Bearer ").map(str::to_string);
                            }
                        }
                    }
                }
            }
            let target = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let canned = ov.lock().expect("lock").get(&target).cloned();
            let (status, body) = canned.unwrap_or_else(|| answer(&log, &target, auth.as_deref()));
            let reason = match status {
                200 => "OK",
                401 => "Unauthorized",
                404 => "Not Found",
                _ => "Error",
            };
            let resp = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes());
        }
    });
    (base, overrides)
}

fn error_json(code: &str, message: &str) -> String {
    serde_json::json!({ "error": { "code": code, "message": message } }).to_string()
}

fn query_u64(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
}

/// True when `leaf` records SHA-256 of `jwt` (how the real host checks a holder).
fn token_leaf_matches(leaf: &[u8], jwt: &str) -> bool {
    let hash = hex::encode(Sha256::digest(jwt.as_bytes()));
    serde_json::from_slice::<AnyLeaf>(leaf)
        .ok()
        .and_then(|l| l.data.get("token_sha256").and_then(|v| v.as_str()).map(|s| s == hash))
        .unwrap_or(false)
}

/// Answers one request; `auth` is the bearer credential, if any.
fn answer(log: &MemoryLog, target: &str, auth: Option<&str>) -> (u16, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let fetch_err = |e: FetchError| match e {
        FetchError::NotFound { .. } => (404, error_json("NOT_FOUND", "no such token")),
        other => (400, error_json("INVALID_REQUEST", &other.to_string())),
    };
    match path {
        "/v1/audit/key" => (200, log.key.clone()),
        "/v1/audit/checkpoint" => (200, log.checkpoint.clone()),
        "/v1/audit/hashes" => {
            let (Some(s), Some(e)) = (query_u64(query, "start"), query_u64(query, "end")) else {
                return (400, error_json("INVALID_REQUEST", "start and end"));
            };
            match log.hashes(s, e) {
                Ok(p) => {
                    let hashes: Vec<String> = p.hashes.iter().map(|h| B64.encode(h)).collect();
                    (
                        200,
                        serde_json::json!({ "start": p.start, "end": p.end, "hashes": hashes }).to_string(),
                    )
                }
                Err(e) => fetch_err(e),
            }
        }
        "/v1/audit/entries" => {
            if auth.is_none() {
                return (401, error_json("UNAUTHENTICATED", "entries need an auditor key"));
            }
            let (Some(s), Some(e)) = (query_u64(query, "start"), query_u64(query, "end")) else {
                return (400, error_json("INVALID_REQUEST", "start and end"));
            };
            match log.entries(s, e) {
                Ok(p) => {
                    let entries: Vec<serde_json::Value> = p
                        .entries
                        .iter()
                        .map(|e| {
                            let mut v = serde_json::json!({ "index": e.index, "hash": B64.encode(e.hash) });
                            if let Some(l) = &e.leaf {
                                v["leaf"] = B64.encode(l).into();
                            }
                            v
                        })
                        .collect();
                    (
                        200,
                        serde_json::json!({ "start": p.start, "end": p.end, "entries": entries }).to_string(),
                    )
                }
                Err(e) => fetch_err(e),
            }
        }
        "/v1/audit/proof/inclusion" => {
            let (Some(i), Some(n)) = (query_u64(query, "index"), query_u64(query, "size")) else {
                return (400, error_json("INVALID_REQUEST", "index and size"));
            };
            match log.inclusion_proof(i, n) {
                Ok(p) => {
                    let proof: Vec<String> = p.proof.iter().map(|h| B64.encode(h)).collect();
                    (
                        200,
                        serde_json::json!({ "index": p.index, "size": p.size, "proof": proof }).to_string(),
                    )
                }
                Err(e) => fetch_err(e),
            }
        }
        "/v1/audit/proof/consistency" => {
            let (Some(a), Some(b)) = (query_u64(query, "from"), query_u64(query, "to")) else {
                return (400, error_json("INVALID_REQUEST", "from and to"));
            };
            match log.consistency_proof(a, b) {
                Ok(p) => {
                    let proof: Vec<String> = p.proof.iter().map(|h| B64.encode(h)).collect();
                    (
                        200,
                        serde_json::json!({ "from": p.from, "to": p.to, "proof": proof }).to_string(),
                    )
                }
                Err(e) => fetch_err(e),
            }
        }
        _ => match path.strip_prefix("/v1/audit/tokens/") {
            Some(jti) => match log
                .token_records
                .get(jti)
                .filter(|r| auth.is_some_and(|jwt| token_leaf_matches(&r.leaf, jwt)))
                .cloned()
                .ok_or(FetchError::NotFound { what: jti.to_string() })
            {
                Ok(r) => (
                    200,
                    serde_json::json!({ "jti": r.jti, "index": r.index, "leaf": B64.encode(&r.leaf) }).to_string(),
                ),
                Err(e) => fetch_err(e),
            },
            None => (404, error_json("NOT_FOUND", "no such route")),
        },
    }
}
