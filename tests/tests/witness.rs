//! `sealgate witness`, the real binary, against the C2SP `tlog-witness` rules: a first
//! checkpoint, an extension with a consistency proof, a bad proof, forks, rollbacks, a
//! stale old size, a wrong log signature, an unknown origin and a replay, each with the
//! spec's status code; the recorded state survives a restart, and two submissions
//! from the same size cannot both be recorded.
//!
//! The logs here are real RFC 9162 trees (`sealgate_shared`'s `TreeStore` makes the
//! proofs) with checkpoints signed by Ed25519 keys as the enclave signs them, and
//! submissions go through the host's own client, so its typed errors are checked too.

mod common;

use ed25519_dalek::SigningKey;
use sealgate_host::witness::add_checkpoint::encode_request;
use sealgate_host::witness::client::{self, WitnessError};
use sealgate_shared::merkle::proof::TreeStore;
use sealgate_shared::merkle::{self, Hash};
use sealgate_shared::note::{Checkpoint, VerifierKey};
use sealgate_tests::witness_process::WitnessProcess;
use sealgate_tests::{bin, Deployment};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A log as the enclave and host keep it: a signing key named by the origin, and
/// every leaf hash (for proofs).
struct Log {
    key: SigningKey,
    origin: String,
    tree: TreeStore,
}

impl Log {
    /// `salt` makes the leaves differ between logs, so two logs with one origin fork.
    fn new(seed: u8, origin: &str, size: u64, salt: &str) -> Self {
        let mut tree = TreeStore::new();
        for i in 0..size {
            tree.push(merkle::leaf_hash(format!("{salt} leaf {i}").as_bytes()));
        }
        Self {
            key: SigningKey::from_bytes(&[seed; 32]),
            origin: origin.to_string(),
            tree,
        }
    }

    fn vkey(&self) -> String {
        VerifierKey::new(&self.origin, self.key.verifying_key().to_bytes())
            .unwrap()
            .to_string()
    }

    fn checkpoint(&self, size: u64) -> Checkpoint {
        Checkpoint {
            origin: self.origin.clone(),
            size,
            root: self.tree.root(size).unwrap(),
        }
    }

    fn sign(&self, cp: &Checkpoint) -> String {
        sealgate_shared::note::sign(&self.key, cp)
    }

    fn note(&self, size: u64) -> String {
        self.sign(&self.checkpoint(size))
    }

    fn proof(&self, from: u64, to: u64) -> Vec<Hash> {
        self.tree.consistency_proof(from, to).unwrap()
    }
}

/// A running `sealgate witness` and the requests these tests send it.
struct Witness(WitnessProcess);

impl std::ops::Deref for Witness {
    type Target = WitnessProcess;
    fn deref(&self) -> &WitnessProcess {
        &self.0
    }
}

impl Witness {
    fn start(state: &Path, logs: &[String]) -> Self {
        Self(WitnessProcess::start(state, logs))
    }

    fn restart(&mut self) {
        self.0.restart();
    }

    fn add(&self, old: u64, proof: &[Hash], note: &str) -> Result<Vec<String>, WitnessError> {
        runtime().block_on(client::add_checkpoint(&self.url, old, proof, note))
    }

    /// A raw POST: status, content type and body.
    fn post_raw(&self, body: &[u8]) -> (u16, String, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut r = agent
            .post(format!("{}/add-checkpoint", self.url))
            .send(body)
            .expect("witness reachable");
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (r.status().as_u16(), ct, r.body_mut().read_to_string().unwrap())
    }

    fn get(&self, path: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut r = agent
            .get(format!("{}{path}", self.url))
            .call()
            .expect("witness reachable");
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[track_caller]
fn unprocessable(r: Result<Vec<String>, WitnessError>) {
    assert!(
        matches!(r, Err(WitnessError::Inconsistent(_))),
        "expected 422, got {r:?}"
    );
}

#[track_caller]
fn bad_request(r: Result<Vec<String>, WitnessError>) {
    assert!(matches!(r, Err(WitnessError::BadRequest(_))), "expected 400, got {r:?}");
}

const ORIGIN: &str = "sealgate.test/log";

#[test]
fn first_checkpoint_is_cosigned_with_a_verifiable_timestamped_cosignature() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("w");
    let log = Log::new(1, ORIGIN, 5, "honest");
    let w = Witness::start(&state, &[log.vkey()]);
    let vkey = w.vkey();
    assert!(vkey.to_string().starts_with("witness.test/w1+"));
    let printed = std::fs::read_to_string(state.with_extension("log")).unwrap();
    assert!(printed.contains(&format!("witness vkey: {vkey}")), "{printed}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("witness.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let (before, note) = (now(), log.note(3));
    let lines = w.add(0, &[], &note).expect("first checkpoint cosigned");
    let after = now();
    assert_eq!(lines.len(), 1);
    let body = log.checkpoint(3).body();
    let ts = vkey.verify_line(&body, &lines[0]).expect("cosignature verifies");
    assert!(
        (before..=after).contains(&ts),
        "timestamp {ts} not within [{before}, {after}]"
    );
    // Appended to the log's note, the cosignature and the log signature both verify.
    let cosigned = format!("{note}{}\n", lines[0]);
    assert_eq!(vkey.verify(&cosigned), Ok(ts));
    let log_key: VerifierKey = log.vkey().parse().unwrap();
    assert_eq!(log_key.open(&cosigned).unwrap(), log.checkpoint(3));
    // The cosignature is for this checkpoint only.
    assert!(vkey.verify_line(&log.checkpoint(4).body(), &lines[0]).is_err());

    // Monitors get the cosigned checkpoint (spec: GET <origin hash>/checkpoint).
    let (s, served) = w.get(&format!("/{}/checkpoint", hex::encode(Sha256::digest(ORIGIN))));
    assert_eq!(s, 200);
    assert_eq!(log_key.open(&served).unwrap(), log.checkpoint(3));
    assert_eq!(vkey.verify(&served), Ok(ts));
    let unknown = hex::encode(Sha256::digest("other.test/log"));
    assert_eq!(w.get(&format!("/{unknown}/checkpoint")).0, 404);
}

#[test]
fn extension_needs_a_valid_proof_and_forks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new(1, ORIGIN, 20, "honest");
    let fork = Log::new(1, ORIGIN, 20, "forked"); // same key and origin, other leaves
    let w = Witness::start(&dir.path().join("w"), &[log.vkey()]);
    let vkey = w.vkey();

    w.add(0, &[], &log.note(3)).unwrap();
    let lines = w
        .add(3, &log.proof(3, 8), &log.note(8))
        .expect("extension with a proof");
    assert!(vkey.verify_line(&log.checkpoint(8).body(), &lines[0]).is_ok());

    // Bad proofs: a flipped hash, a proof between other sizes, none at all.
    let mut flipped = log.proof(8, 13);
    flipped[0][0] ^= 1;
    unprocessable(w.add(8, &flipped, &log.note(13)));
    unprocessable(w.add(8, &log.proof(5, 13), &log.note(13)));
    unprocessable(w.add(8, &[], &log.note(13)));

    // A fork at the recorded size (another root at 8, validly signed)…
    unprocessable(w.add(8, &[], &fork.note(8)));
    // …and a larger tree that does not extend the recorded one, with its own proof.
    unprocessable(w.add(8, &fork.proof(8, 13), &fork.note(13)));

    // None of that was recorded: the honest extension from 8 still works.
    w.add(8, &log.proof(8, 13), &log.note(13)).expect("honest extension");
    // A proof with old size 0 is refused even for the right tree (spec: it must be empty).
    let other = Log::new(2, "other.test/log", 4, "x");
    let w2 = Witness::start(&dir.path().join("w2"), &[other.vkey()]);
    unprocessable(w2.add(0, &other.proof(2, 4), &other.note(4)));
    // A size-0 checkpoint must carry the empty tree's root.
    let mut empty = other.checkpoint(0);
    assert_eq!(empty.root, merkle::empty_root());
    w2.add(0, &[], &other.sign(&empty)).expect("the empty tree");
    empty.root = other.tree.root(1).unwrap();
    unprocessable(w2.add(0, &[], &other.sign(&empty)));
}

#[test]
fn rollbacks_and_stale_sizes_are_refused_with_the_recorded_size() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new(1, ORIGIN, 20, "honest");
    let w = Witness::start(&dir.path().join("w"), &[log.vkey()]);
    w.add(0, &[], &log.note(8)).unwrap();

    // Old size larger than the checkpoint: 400 (checked before the recorded size).
    bad_request(w.add(13, &[], &log.note(8)));
    // A checkpoint smaller than the recorded one, from the recorded size: 400.
    bad_request(w.add(8, &[], &log.note(5)));
    // A stale old size: 409 with the recorded size, as text/x.tlog.size.
    assert_eq!(
        w.add(3, &log.proof(3, 13), &log.note(13)),
        Err(WitnessError::Conflict(8))
    );
    let (s, ct, body) = w.post_raw(encode_request(3, &log.proof(3, 13), &log.note(13)).as_bytes());
    assert_eq!((s, ct.as_str(), body.as_str()), (409, "text/x.tlog.size", "8\n"));
    // Old size 0 ("I know nothing") is how a client learns the recorded size.
    assert_eq!(w.add(0, &[], &log.note(13)), Err(WitnessError::Conflict(8)));
    // A size the witness has not reached yet is no better than a stale one.
    assert_eq!(
        w.add(10, &log.proof(10, 13), &log.note(13)),
        Err(WitnessError::Conflict(8))
    );

    // With the size the 409 gave, the submission goes through.
    w.add(8, &log.proof(8, 13), &log.note(13)).unwrap();
}

#[test]
fn wrong_signatures_unknown_origins_and_malformed_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new(1, ORIGIN, 8, "honest");
    let b = Log::new(3, "b.test/log", 4, "b");
    let w = Witness::start(&dir.path().join("w"), &[log.vkey(), b.vkey()]);

    // The right origin signed by another key: 403.
    let impostor = Log::new(9, ORIGIN, 8, "honest");
    let r = w.add(0, &[], &impostor.note(3));
    assert!(matches!(r, Err(WitnessError::Forbidden(_))), "{r:?}");
    // The trusted key's signature over other bytes: 403.
    let tampered = log.note(3).replacen("\n3\n", "\n4\n", 1);
    let r = w.add(0, &[], &tampered);
    assert!(matches!(r, Err(WitnessError::Forbidden(_))), "{r:?}");
    // An origin the witness was not configured for: 404.
    let stranger = Log::new(4, "stranger.test/log", 4, "s");
    let r = w.add(0, &[], &stranger.note(2));
    assert!(matches!(r, Err(WitnessError::UnknownLog(_))), "{r:?}");
    // Malformed bodies: 400.
    for body in [
        b"".to_vec(),
        b"old x\n\n".to_vec(),
        format!("old 0\nnot-base64\n\n{}", log.note(3)).into_bytes(),
        format!("old 0\n\n{}", log.checkpoint(3).body()).into_bytes(),
        format!("old 0\n\n{}", log.note(3).replace('\n', "\r\n")).into_bytes(),
    ] {
        let (s, _, text) = w.post_raw(&body);
        assert_eq!(s, 400, "{body:?}: {text}");
    }
    // Nothing above was recorded; signatures from unknown keys are ignored.
    let extra = Log::new(9, ORIGIN, 8, "honest");
    let with_unknown = format!("{}{}", log.note(3), extra.note(3).split("\n\n").nth(1).unwrap());
    assert_eq!(with_unknown.matches('\u{2014}').count(), 2);
    w.add(0, &[], &with_unknown)
        .expect("the trusted signature counts, the unknown one is ignored");
    // Each origin has its own state.
    w.add(0, &[], &b.note(4)).expect("the second log's first checkpoint");
}

#[test]
fn a_replay_of_the_recorded_checkpoint_is_cosigned_again_and_an_old_request_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new(1, ORIGIN, 8, "honest");
    let w = Witness::start(&dir.path().join("w"), &[log.vkey()]);
    let vkey = w.vkey();
    let first = encode_request(0, &[], &log.note(5));
    assert_eq!(w.post_raw(first.as_bytes()).0, 200);

    // The same checkpoint from the recorded size (old = size = recorded, same root):
    // the spec's "old size matches the checkpoint size" case, cosigned again.
    let again = w.add(5, &[], &log.note(5)).expect("replay at the recorded size");
    assert!(vkey.verify_line(&log.checkpoint(5).body(), &again[0]).is_ok());
    // …but with a proof attached it is not a valid consistency proof for equal sizes.
    unprocessable(w.add(5, &log.proof(3, 5), &log.note(5)));
    // Replaying the original request verbatim: its old size 0 is stale now.
    let (s, ct, body) = w.post_raw(first.as_bytes());
    assert_eq!((s, ct.as_str(), body.as_str()), (409, "text/x.tlog.size", "5\n"));
}

#[test]
fn the_recorded_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new(1, ORIGIN, 20, "honest");
    let fork = Log::new(1, ORIGIN, 20, "forked");
    let mut w = Witness::start(&dir.path().join("w"), &[log.vkey()]);
    let vkey = w.vkey();
    w.add(0, &[], &log.note(8)).unwrap();

    w.restart();
    assert_eq!(w.vkey(), vkey, "the witness keeps its key");
    assert_eq!(w.add(0, &[], &fork.note(13)), Err(WitnessError::Conflict(8)));
    unprocessable(w.add(8, &[], &fork.note(8)));
    let lines = w.add(8, &log.proof(8, 13), &log.note(13)).unwrap();
    assert!(vkey.verify_line(&log.checkpoint(13).body(), &lines[0]).is_ok());
}

#[test]
fn concurrent_submissions_from_one_size_record_only_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new(1, ORIGIN, 40, "honest");
    let w = Witness::start(&dir.path().join("w"), &[log.vkey()]);
    w.add(0, &[], &log.note(8)).unwrap();

    // Eight valid extensions of size 8 at once: whichever is recorded first, every
    // other one was checked against a size that is no longer the recorded one. (This
    // shows the outcome; whether two requests really interleave between check and
    // write is up to the scheduler, so the compare-and-swap that settles that case is
    // exercised directly by `witness::state`'s unit test.)
    let url = w.url.clone();
    let results: Vec<(u64, Result<Vec<String>, WitnessError>)> = runtime().block_on(async {
        let mut tasks = Vec::new();
        for to in (9..=40).step_by(4) {
            let (url, proof, note) = (url.clone(), log.proof(8, to), log.note(to));
            tasks.push(tokio::spawn(async move {
                (to, client::add_checkpoint(&url, 8, &proof, &note).await)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let won: Vec<u64> = results.iter().filter(|(_, r)| r.is_ok()).map(|(to, _)| *to).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    for (_, r) in &results {
        if let Err(e) = r {
            assert_eq!(e, &WitnessError::Conflict(won[0]), "{results:?}");
        }
    }
    // The winner is what is recorded.
    assert_eq!(w.add(0, &[], &log.note(won[0])), Err(WitnessError::Conflict(won[0])));
}

#[test]
fn a_witness_needs_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("sealgate"))
        .args(["witness", "--listen", "127.0.0.1:0", "--state"])
        .arg(dir.path().join("w"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = Command::new(bin("sealgate"))
        .args(["witness", "--listen", "127.0.0.1:0", "--log", "not-a-vkey", "--state"])
        .arg(dir.path().join("w"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log"));
}

/// The witness accepts what a real deployment produces: the enclave's checkpoints
/// (key from `/v1/audit/key`) and the host's consistency proofs between them.
#[test]
fn the_enclaves_own_checkpoints_are_witnessed() {
    let d = Deployment::start();
    let api = d.api();
    let log_key = common::verifier_key(&api);
    let (first, cp1) = common::checkpoint(&api, &log_key);
    let w = Witness::start(&d.dir.path().join("witness"), &[log_key.to_string()]);
    let vkey = w.vkey();
    w.add(0, &[], &first).expect("the enclave's checkpoint is cosigned");

    let tenant = d.new_tenant();
    common::mint(&api, &tenant.agent_key);
    let (second, cp2) = common::wait_checkpoint(&api, &log_key, cp1.size + 1, Duration::from_secs(30));
    let proof = common::consistency_proof(&api, cp1.size, cp2.size);
    let lines = w.add(cp1.size, &proof, &second).expect("the extension is cosigned");
    let cosigned = format!("{second}{}\n", lines[0]);
    assert!(vkey.verify(&cosigned).is_ok());
    assert_eq!(log_key.open(&cosigned).unwrap(), cp2);
}
