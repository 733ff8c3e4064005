//! The monitor's rounds against an in-memory host (real leaves, real signatures, real
//! proofs) and a scripted attestor: each finding kind, honest and dishonest, and the
//! state a restarted monitor resumes from.

mod common;

use common::{sign_checkpoint, signing_key, verifier_key, Fixture, MemoryLog, ORIGIN};
use sealgate_attestation::fetch::{
    AttestSource, AttestationResponse, ConsistencyProof, EntriesPage, FetchError, HashesPage, InclusionProof, Jwk,
    LogSource, TokenRecord,
};
use sealgate_attestation::jwt::Token;
use sealgate_attestation::monitor::finding::{Finding, Level};
use sealgate_attestation::monitor::state::{State, StateDir};
use sealgate_attestation::monitor::{AttestFailure, Attested, Attestor, Monitor};
use sealgate_attestation::report::FailureClass;
use sealgate_shared::commitment::{p256_thumbprint, Commitment, COMMITMENT_VERSION};
use sealgate_shared::cosignature::Cosigner;
use sealgate_shared::leaf::{Leaf, Origin, KIND_BOOT, KIND_GENESIS, KIND_KEY_ROTATED};
use sealgate_shared::merkle::leaf_hash;
use sealgate_shared::merkle::proof::TreeStore;
use sealgate_shared::note::split_note;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;

const ISSUER: &str = "http://127.0.0.1:8080";

fn jwk(seed: u8) -> Jwk {
    Jwk {
        kid: None,
        x: vec![seed; 32],
        y: vec![seed.wrapping_add(1); 32],
    }
}

fn kid(seed: u8) -> String {
    let k = jwk(seed);
    p256_thumbprint(&k.x, &k.y)
}

fn commitment(ck: &str, seeds: &[u8]) -> Commitment {
    let mut thumbprints: Vec<String> = seeds.iter().map(|s| kid(*s)).collect();
    thumbprints.sort();
    Commitment {
        version: COMMITMENT_VERSION.into(),
        mode: "sim".into(),
        issuer: ISSUER.into(),
        audiences: vec!["sts.amazonaws.com".into()],
        ttl_min_seconds: 60,
        ttl_max_seconds: 3600,
        log_origin: ORIGIN.into(),
        jwk_thumbprints: thumbprints,
        checkpoint_key: ck.into(),
        witnesses: vec![],
        witness_quorum: 0,
        kms_key: None,
        kms_ca: None,
    }
}

fn boot_data(ck: &str, token_kid: &str, issuer: &str) -> Value {
    json!({
        "mode": "sim", "sealing": "sim", "pcr0": "00", "token_kid": token_kid, "checkpoint_key": ck,
        "config": {"issuer": issuer, "audiences": ["sts.amazonaws.com"], "ttl_min_seconds": 60,
                   "ttl_max_seconds": 3600, "log_origin": ORIGIN},
    })
}

/// Leaf `index` of a log under `ck`: genesis at 0 (token key 1), host events
/// elsewhere, unless `special` says otherwise for that index.
fn leaf(index: u64, kind: &str, origin: Origin, data: Value) -> Vec<u8> {
    serde_json::to_vec(&Leaf {
        v: 1,
        index,
        ts: 1_732_300_000_000 + index,
        origin,
        kind: kind.to_string(),
        data,
    })
    .expect("serializes")
}

/// A log of `n` leaves signed with seed 7: genesis (token key 1), host events, and
/// `special` leaves (kind, data) at their indices.
fn log(n: u64, special: &BTreeMap<u64, (&str, Value)>) -> Fixture {
    let sk = signing_key(7);
    let ck = verifier_key(&sk).to_string();
    let mut leaves = Vec::new();
    let mut store = TreeStore::new();
    for i in 0..n {
        let bytes = match special.get(&i) {
            Some((kind, data)) => leaf(i, kind, Origin::Enclave, data.clone()),
            None if i == 0 => leaf(i, KIND_GENESIS, Origin::Enclave, boot_data(&ck, &kid(1), ISSUER)),
            None => leaf(i, "approval.decided", Origin::Host, json!({ "n": i })),
        };
        store.push(leaf_hash(&bytes));
        leaves.push(bytes);
    }
    Fixture {
        sk,
        leaves,
        issued: Vec::new(),
        store,
    }
}

fn ck() -> String {
    verifier_key(&signing_key(7)).to_string()
}

/// The in-memory host: a log (swappable between rounds) and the keys it serves.
struct Host {
    log: RefCell<MemoryLog>,
    jwks: RefCell<Vec<Jwk>>,
    key: RefCell<String>,
}

impl Host {
    fn new(f: &Fixture) -> Self {
        Host {
            log: RefCell::new(f.honest()),
            jwks: RefCell::new(vec![jwk(1)]),
            key: RefCell::new(ck()),
        }
    }
    fn serve(&self, f: &Fixture) {
        *self.log.borrow_mut() = f.honest();
    }
}

impl LogSource for Host {
    fn key(&self) -> Result<String, FetchError> {
        Ok(self.key.borrow().clone())
    }
    fn checkpoint(&self) -> Result<String, FetchError> {
        self.log.borrow().checkpoint()
    }
    fn hashes(&self, s: u64, e: u64) -> Result<HashesPage, FetchError> {
        self.log.borrow().hashes(s, e)
    }
    fn entries(&self, s: u64, e: u64) -> Result<EntriesPage, FetchError> {
        self.log.borrow().entries(s, e)
    }
    fn token(&self, t: &Token) -> Result<TokenRecord, FetchError> {
        self.log.borrow().token(t)
    }
    fn inclusion_proof(&self, i: u64, n: u64) -> Result<InclusionProof, FetchError> {
        self.log.borrow().inclusion_proof(i, n)
    }
    fn consistency_proof(&self, a: u64, b: u64) -> Result<ConsistencyProof, FetchError> {
        self.log.borrow().consistency_proof(a, b)
    }
}

impl AttestSource for Host {
    fn attestation(&self, _: Option<&[u8]>) -> Result<AttestationResponse, FetchError> {
        Err(FetchError::Transport {
            what: "attestation".into(),
            reason: "the scripted attestor answers instead".into(),
        })
    }
    fn jwks(&self) -> Result<Vec<Jwk>, FetchError> {
        Ok(self.jwks.borrow().clone())
    }
    fn issuer(&self) -> Result<String, FetchError> {
        Ok(ISSUER.into())
    }
    fn checkpoint_key(&self) -> Result<String, FetchError> {
        Ok(self.key.borrow().clone())
    }
}

/// Answers every attestation with what the test scripted, and counts them.
struct Scripted {
    answer: RefCell<Result<Attested, AttestFailure>>,
    calls: RefCell<u32>,
}

impl Scripted {
    fn committing(c: Commitment) -> Self {
        Scripted {
            answer: RefCell::new(Ok(attested(c))),
            calls: RefCell::new(0),
        }
    }
    fn set(&self, r: Result<Attested, AttestFailure>) {
        *self.answer.borrow_mut() = r;
    }
}

fn attested(c: Commitment) -> Attested {
    Attested {
        commitment: c,
        pcr0: Some("00".into()),
        summary: "scripted".into(),
    }
}

impl Attestor for Scripted {
    fn attest(&self) -> Result<Attested, AttestFailure> {
        *self.calls.borrow_mut() += 1;
        self.answer.borrow().clone()
    }
}

fn violations(f: &[Finding]) -> Vec<&Finding> {
    f.iter().filter(|f| f.level == Level::Violation).collect()
}

#[track_caller]
fn clean(f: &[Finding]) {
    assert!(
        violations(f).is_empty() && f.iter().all(|f| f.level != Level::Error),
        "{f:#?}"
    );
}

#[track_caller]
fn only_violation<'a>(f: &'a [Finding], kind: &str, class: FailureClass) -> &'a Finding {
    let v = violations(f);
    assert_eq!(v.len(), 1, "{f:#?}");
    assert_eq!(v[0].kind, kind, "{f:#?}");
    assert_eq!(v[0].class, Some(class), "{f:#?}");
    v[0]
}

fn none() -> BTreeMap<u64, (&'static str, Value)> {
    BTreeMap::new()
}

#[test]
fn an_honest_log_that_grows_is_ok_and_each_growth_is_reported_once() {
    let small = log(10, &none());
    let host = Host::new(&small);
    let att = Scripted::committing(commitment(&ck(), &[1]));
    let mut m = Monitor::new(&host, &host, &att, true, State::default());
    let f = m.round();
    clean(&f);
    assert!(
        f.iter().any(|f| f.kind == "witnesses" && f.detail.starts_with("none")),
        "{f:#?}"
    );
    assert!(
        f.iter().any(|f| f.kind == "checkpoint" && f.detail.contains("first")),
        "{f:#?}"
    );
    // Unchanged: nothing to say, and no second attestation.
    assert!(m.round().is_empty());
    assert_eq!(*att.calls.borrow(), 1);
    host.serve(&log(25, &none()));
    let f = m.round();
    clean(&f);
    assert!(
        f.iter()
            .any(|f| f.kind == "checkpoint" && f.detail.contains("grew from 10 to 25")),
        "{f:#?}"
    );
    assert_eq!(m.state.checkpoint.as_ref().map(|c| c.size), Some(25));
    assert_eq!(m.state.contents.as_ref().map(|c| c.scanned), Some(25));
}

#[test]
fn a_smaller_log_is_a_rollback_reported_once_and_not_adopted() {
    let host = Host::new(&log(30, &none()));
    let att = Scripted::committing(commitment(&ck(), &[1]));
    let mut m = Monitor::new(&host, &host, &att, false, State::default());
    clean(&m.round());
    host.serve(&log(20, &none()));
    let f = m.round();
    let v = only_violation(&f, "checkpoint.rollback", FailureClass::History);
    assert!(v.detail.contains("size 20") && v.detail.contains("size 30"), "{v:?}");
    assert!(v.detail.contains("restored from a truncated log"), "{v:?}");
    assert!(m.round().is_empty(), "the same checkpoint is reported once");
    assert_eq!(m.state.checkpoint.as_ref().map(|c| c.size), Some(30));
}

#[test]
fn another_history_under_the_same_key_is_a_fork() {
    let host = Host::new(&log(30, &none()));
    let att = Scripted::committing(commitment(&ck(), &[1]));
    let mut m = Monitor::new(&host, &host, &att, false, State::default());
    clean(&m.round());
    // Same size, another leaf at 12.
    let mut special = none();
    special.insert(12, ("approval.other", json!({})));
    let other = log(30, &special);
    host.serve(&other);
    only_violation(&m.round(), "checkpoint.fork", FailureClass::History);
    // Larger, and its proof cannot reach the seen root.
    host.serve(&log(40, &special));
    let v = only_violation(&m.round(), "checkpoint.fork", FailureClass::History).clone();
    assert!(v.detail.contains("size 40") && v.detail.contains("size 30"), "{v:?}");
}

#[test]
fn a_wrong_consistency_proof_is_a_fork() {
    let host = Host::new(&log(30, &none()));
    let att = Scripted::committing(commitment(&ck(), &[1]));
    let mut m = Monitor::new(&host, &host, &att, false, State::default());
    clean(&m.round());
    let bigger = log(40, &none());
    host.serve(&bigger);
    // The checkpoint is honest, but proofs come from another tree.
    let mut special = none();
    special.insert(3, ("approval.other", json!({})));
    host.log.borrow_mut().store = log(40, &special).store;
    only_violation(&m.round(), "checkpoint.fork", FailureClass::History);
}

#[test]
fn a_checkpoint_not_signed_by_the_attested_key_is_a_signature_violation() {
    let f = log(10, &none());
    let host = Host::new(&f);
    let att = Scripted::committing(commitment(&ck(), &[1]));
    let mut m = Monitor::new(&host, &host, &att, false, State::default());
    clean(&m.round());
    host.log.borrow_mut().checkpoint = sign_checkpoint(&signing_key(9), &log(11, &none()).checkpoint());
    only_violation(&m.round(), "checkpoint.signature", FailureClass::Signature);
}

#[test]
fn a_jwks_key_no_attestation_commits_to_is_unattested() {
    let host = Host::new(&log(10, &none()));
    let att = Scripted::committing(commitment(&ck(), &[1]));
    let mut m = Monitor::new(&host, &host, &att, false, State::default());
    clean(&m.round());
    host.jwks.borrow_mut().push(jwk(5));
    att.set(Err(AttestFailure {
        class: FailureClass::Commitment,
        reason: "commitment: jwk_thumbprints differ".into(),
    }));
    let f = m.round();
    let v = only_violation(&f, "jwks.unattested_key", FailureClass::Commitment);
    assert!(v.detail.contains(&kid(5)), "{v:?}");
    // Not attested (nor reported) again while the host serves the same keys.
    assert!(violations(&m.round()).is_empty());
    assert_eq!(*att.calls.borrow(), 2);
    // A key the fresh attestation does commit to is a key change, not a violation.
    att.set(Ok(attested(commitment(&ck(), &[1, 6]))));
    *host.jwks.borrow_mut() = vec![jwk(1), jwk(6)];
    let f = m.round();
    clean(&f);
    assert!(
        f.iter()
            .any(|f| f.kind == "jwks.key_added" && f.detail.contains(&kid(6))),
        "{f:#?}"
    );
}

#[test]
fn a_checkpoint_key_other_than_the_one_the_log_was_seen_under_is_refused() {
    let host = Host::new(&log(10, &none()));
    let att = Scripted::committing(commitment(&ck(), &[1]));
    let mut m = Monitor::new(&host, &host, &att, false, State::default());
    clean(&m.round());
    let other = verifier_key(&signing_key(9)).to_string();
    *host.key.borrow_mut() = other.clone();
    // The enclave now attests another key: another log under this URL.
    att.set(Ok(attested(commitment(&other, &[1]))));
    only_violation(&m.round(), "checkpoint.key_changed", FailureClass::Signature);
    assert_eq!(
        m.state.commitment.as_ref().map(|c| c.checkpoint_key.clone()),
        Some(ck())
    );
}

#[test]
fn a_failed_attestation_at_start_is_a_violation_and_a_fetch_failure_is_not() {
    let host = Host::new(&log(10, &none()));
    let att = Scripted::committing(commitment(&ck(), &[1]));
    att.set(Err(AttestFailure {
        class: FailureClass::Chain,
        reason: "certificate chain: unknown root".into(),
    }));
    let mut m = Monitor::new(&host, &host, &att, false, State::default());
    only_violation(&m.round(), "attestation.failed", FailureClass::Chain);
    assert!(
        m.state.checkpoint.is_none(),
        "nothing is checked without an attested key"
    );

    let att = Scripted::committing(commitment(&ck(), &[1]));
    att.set(Err(AttestFailure {
        class: FailureClass::Fetch,
        reason: "attestation: HTTP 429".into(),
    }));
    let mut m = Monitor::new(&host, &host, &att, false, State::default());
    let f = m.round();
    assert!(violations(&f).is_empty(), "{f:#?}");
    assert!(f.iter().any(|f| f.level == Level::Error && f.kind == "fetch"), "{f:#?}");
    // Retried next round.
    att.set(Ok(attested(commitment(&ck(), &[1]))));
    clean(&m.round());
    assert_eq!(*att.calls.borrow(), 2);
}

#[test]
fn every_attested_key_needs_a_key_rotated_leaf() {
    // Honest: key 2 introduced by a key.rotated leaf.
    let mut special = none();
    special.insert(
        6,
        (
            KIND_KEY_ROTATED,
            json!({"old_kid": kid(1), "new_kid": kid(2), "old_key_retire_at": 99, "caller": "k"}),
        ),
    );
    let host = Host::new(&log(10, &special));
    *host.jwks.borrow_mut() = vec![jwk(1), jwk(2)];
    let att = Scripted::committing(commitment(&ck(), &[1, 2]));
    let mut m = Monitor::new(&host, &host, &att, true, State::default());
    let f = m.round();
    clean(&f);
    assert!(
        f.iter().any(|f| f.kind == "key.rotated" && f.detail.contains("leaf 6")),
        "{f:#?}"
    );
    host.serve(&log(12, &special));
    clean(&m.round());

    // Dishonest: key 3 attested, but no leaf ever introduces it.
    let host = Host::new(&log(10, &none()));
    *host.jwks.borrow_mut() = vec![jwk(1), jwk(3)];
    let att = Scripted::committing(commitment(&ck(), &[1, 3]));
    let mut m = Monitor::new(&host, &host, &att, true, State::default());
    // The checkpoint may lag the JWKS by a moment: not yet a violation.
    clean(&m.round());
    host.serve(&log(11, &none()));
    let f = m.round();
    let v = only_violation(&f, "key.rotation_unlogged", FailureClass::LogContent);
    assert!(v.detail.contains(&kid(3)), "{v:?}");
    host.serve(&log(12, &none()));
    assert!(violations(&m.round()).is_empty(), "reported once");

    // Without --key leaves are not read, and the start says so.
    let host = Host::new(&log(10, &none()));
    *host.jwks.borrow_mut() = vec![jwk(1), jwk(3)];
    let att = Scripted::committing(commitment(&ck(), &[1, 3]));
    let mut m = Monitor::new(&host, &host, &att, false, State::default());
    assert!(m.start().iter().any(|f| f.kind == "leaves"), "{:#?}", m.start());
    clean(&m.round());
    host.serve(&log(11, &none()));
    clean(&m.round());
}

#[test]
fn boot_leaves_must_name_the_attested_enclave() {
    let ck = ck();
    // Honest restart after the first round: reported, and attested again.
    let mut special = none();
    special.insert(12, (KIND_BOOT, boot_data(&ck, &kid(1), ISSUER)));
    let host = Host::new(&log(10, &none()));
    let att = Scripted::committing(commitment(&ck, &[1]));
    let mut m = Monitor::new(&host, &host, &att, true, State::default());
    clean(&m.round());
    host.serve(&log(15, &special));
    let f = m.round();
    clean(&f);
    assert!(
        f.iter()
            .any(|f| f.kind == "enclave.restarted" && f.detail.contains("log intact")),
        "{f:#?}"
    );
    assert_eq!(*att.calls.borrow(), 2, "a restart is attested again");

    // Another issuer than attested.
    let mut bad = none();
    bad.insert(12, (KIND_BOOT, boot_data(&ck, &kid(1), "https://elsewhere")));
    let host = Host::new(&log(15, &bad));
    let att = Scripted::committing(commitment(&ck, &[1]));
    let mut m = Monitor::new(&host, &host, &att, true, State::default());
    let f = m.round();
    let v = only_violation(&f, "enclave.boot_mismatch", FailureClass::LogContent);
    assert!(v.detail.contains("issuer"), "{v:?}");

    // A token key no leaf introduced.
    let mut bad = none();
    bad.insert(12, (KIND_BOOT, boot_data(&ck, &kid(4), ISSUER)));
    let host = Host::new(&log(15, &bad));
    let mut m = Monitor::new(&host, &host, &att, true, State::default());
    only_violation(&m.round(), "enclave.boot_mismatch", FailureClass::LogContent);

    // A second genesis.
    let mut bad = none();
    bad.insert(5, (KIND_GENESIS, boot_data(&ck, &kid(1), ISSUER)));
    let host = Host::new(&log(8, &bad));
    let mut m = Monitor::new(&host, &host, &att, true, State::default());
    only_violation(&m.round(), "enclave.genesis_misplaced", FailureClass::LogContent);
}

#[test]
fn entries_that_do_not_match_their_hashes_are_a_log_violation() {
    let f = log(10, &none());
    let host = Host::new(&f);
    host.log
        .borrow_mut()
        .served_contents
        .insert(4, leaf(4, "approval.decided", Origin::Host, json!({ "n": 999 })));
    let att = Scripted::committing(commitment(&ck(), &[1]));
    let mut m = Monitor::new(&host, &host, &att, true, State::default());
    only_violation(&m.round(), "log.entries", FailureClass::LogContent);
    assert_eq!(m.state.contents.as_ref().map(|c| c.scanned), Some(0), "nothing adopted");
}

#[test]
fn a_restarted_monitor_resumes_from_its_saved_state() {
    // No tempfile crate here: a directory of this process's own, removed at the end.
    let dir = std::env::temp_dir().join(format!("sealgate-monitor-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sd = StateDir::new(&dir.join("state"));
    let host = Host::new(&log(30, &none()));
    let att = Scripted::committing(commitment(&ck(), &[1]));
    {
        let mut m = Monitor::new(&host, &host, &att, true, sd.load().expect("fresh"));
        clean(&m.round());
        sd.save(&m.state).expect("save");
    }
    let saved = sd.load().expect("load");
    assert_eq!(saved.checkpoint.as_ref().map(|c| c.size), Some(30));
    assert_eq!(saved.contents.as_ref().map(|c| c.scanned), Some(30));
    // The log was rolled back while the monitor was down.
    host.serve(&log(20, &none()));
    let mut m = Monitor::new(&host, &host, &att, true, saved);
    assert!(m.start()[0].detail.contains("size 30"), "{:#?}", m.start());
    only_violation(&m.round(), "checkpoint.rollback", FailureClass::History);
    // And it attested again at start (the enclave may have changed meanwhile).
    assert_eq!(*att.calls.borrow(), 2);

    // Growth is read from the saved frontier: only the new entries are fetched.
    host.serve(&log(40, &none()));
    let mut m = Monitor::new(&host, &host, &att, true, sd.load().expect("load"));
    clean(&m.round());
    assert_eq!(*host.log.borrow().entries_calls.borrow(), vec![(30, 40)]);

    // A file that is not a state is refused, not overwritten.
    std::fs::write(sd.file(), "{").unwrap();
    assert!(sd.load().expect_err("malformed").contains("not a monitor state file"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Appends `by`'s cosignatures to the checkpoint `host` serves.
fn cosign(host: &Host, by: &[&Cosigner]) {
    let mut log = host.log.borrow_mut();
    let mut note = log.checkpoint.clone();
    let body = split_note(&note).expect("a note").0.to_string();
    for w in by {
        note.push_str(&w.cosign(&body, 1_800_000_000).expect("cosigns"));
        note.push('\n');
    }
    log.checkpoint = note;
}

/// Issue 11: with witnesses attested, every checkpoint must carry a quorum of their
/// cosignatures; one that does not is reported and not adopted.
#[test]
fn a_checkpoint_without_a_quorum_of_the_attested_witnesses_is_reported() {
    let ws: Vec<Cosigner> = (1..=3u8)
        .map(|i| {
            Cosigner::new(
                &format!("w{i}.example"),
                ed25519_dalek::SigningKey::from_bytes(&[40 + i; 32]),
            )
            .unwrap()
        })
        .collect();
    let mut c = commitment(&ck(), &[1]);
    c.witnesses = ws[..2].iter().map(|w| w.verifier().to_string()).collect();
    c.witness_quorum = 2;
    let host = Host::new(&log(10, &none()));
    cosign(&host, &[&ws[0], &ws[1]]);
    let att = Scripted::committing(c);
    let mut m = Monitor::new(&host, &host, &att, true, State::default());
    let f = m.round();
    clean(&f);
    assert!(
        f.iter()
            .any(|f| f.kind == "witnesses" && f.detail.starts_with("2 configured, quorum 2")),
        "{f:#?}"
    );
    assert!(
        f.iter()
            .any(|f| f.kind == "checkpoint.cosignatures" && f.detail.starts_with("2 of 2 witnesses cosigned")),
        "{f:#?}"
    );
    // The log grows, but only one attested witness cosigned (and one the commitment
    // does not name, which does not count).
    host.serve(&log(20, &none()));
    cosign(&host, &[&ws[0], &ws[2]]);
    let f = m.round();
    let v = only_violation(&f, "checkpoint.cosignatures", FailureClass::Signature);
    assert!(v.detail.contains("1 valid cosignatures, 2 required"), "{}", v.detail);
    assert_eq!(m.state.checkpoint.as_ref().map(|c| c.size), Some(10));
    // Stripped altogether: the same.
    host.serve(&log(20, &none()));
    let f = m.round();
    only_violation(&f, "checkpoint.cosignatures", FailureClass::Signature);
    // Cosigned properly again: adopted.
    cosign(&host, &[&ws[1], &ws[0]]);
    let f = m.round();
    clean(&f);
    assert_eq!(m.state.checkpoint.as_ref().map(|c| c.size), Some(20));
}
