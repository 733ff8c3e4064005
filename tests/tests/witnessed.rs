//! Witnessed release (issue 11), with the real binaries: `sealgate serve`, the
//! simulated enclave and `sealgate witness` processes.
//!
//! With witnesses sealed into the enclave's configuration, a token leaves the enclave
//! only under a checkpoint a quorum of them cosigned. So a quorum of 2 of 3 keeps
//! minting with one witness down and stops releasing with two down (and resumes when
//! one returns); and a compromised host that talks to the enclave directly gets no
//! token (break 2: "keep a minted token, never commit its leaf"), cannot hand a
//! restarted enclave an empty or uncosigned log, and, when it restores an older
//! database, can get nothing cosigned and so release nothing: an outage, visible on
//! `/readyz`, not a silent forgery.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use sealgate_shared::cosignature::{verify_quorum, Cosigner, CosignerKey};
use sealgate_shared::note::split_note;
use sealgate_shared::protocol::{ErrorCode, MintRequest, Op, Reply, WireError};
use sealgate_tests::witness_process::WitnessProcess;
use sealgate_tests::{free_port, wait_for, Api, Deployment, Options, Tenant};
use serde_json::{json, Value};
use std::time::Duration;

/// A deployment whose enclave requires `quorum` of `n` witnesses, all running.
struct Witnessed {
    d: Deployment,
    witnesses: Vec<WitnessProcess>,
    keys: Vec<CosignerKey>,
    _dir: tempfile::TempDir,
}

/// Creates the witnesses' keys first (the enclave seals their vkeys at its first
/// start), starts the deployment with them, then the witnesses with the log's key.
fn deploy(n: usize, quorum: u32) -> Witnessed {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut host_args = Vec::new();
    let mut planned = Vec::new();
    let mut keys = Vec::new();
    for i in 1..=n {
        let state = dir.path().join(format!("w{i}"));
        let name = format!("witness.test/w{i}");
        let key = WitnessProcess::print_vkey(&state, &name);
        let port = free_port();
        host_args.push("--witness".to_string());
        host_args.push(format!("{key}@http://127.0.0.1:{port}"));
        keys.push(key);
        planned.push((state, port, name));
    }
    host_args.extend(["--witness-quorum".to_string(), quorum.to_string()]);
    let d = Deployment::start_with(Options {
        host_args,
        ..Default::default()
    });
    let log_key = verifier_key(&d.api()).to_string();
    let witnesses = planned
        .iter()
        .map(|(state, port, name)| WitnessProcess::start_on(state, *port, name, std::slice::from_ref(&log_key)))
        .collect();
    Witnessed {
        d,
        witnesses,
        keys,
        _dir: dir,
    }
}

/// Mints until one succeeds (the first rounds fail while the witnesses start).
#[track_caller]
fn mint_eventually(api: &Api, key: &str) -> Minted {
    wait_for("a token to be released", Duration::from_secs(60), || {
        let (s, v) = api.post("/v1/tokens", Some(key), &json!({}));
        (s == 200).then(|| parse_minted(&v).expect("mint response fields"))
    })
}

fn readyz_witnesses(api: &Api) -> Value {
    let (s, v) = api.get("/readyz", None);
    assert_eq!(s, 200, "{v}");
    v["witnesses"].clone()
}

/// `sealgate_witness_rounds_total{result="…"}` from `/metrics`.
fn witness_rounds(api: &Api, result: &str) -> u64 {
    let (s, text) = api.get_text("/metrics", None);
    assert_eq!(s, 200, "{text}");
    let line = format!("sealgate_witness_rounds_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(line.as_str()).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("/metrics has no {line}:\n{text}"))
}

/// The served checkpoint, verified under the log's key and carrying a quorum of the
/// configured witnesses' cosignatures; returns how many cosigned.
#[track_caller]
fn cosigned_checkpoint(w: &Witnessed, quorum: usize, covering: u64) -> usize {
    let api = w.d.api();
    let (note, cp) = checkpoint(&api, &verifier_key(&api));
    assert!(
        cp.size > covering,
        "checkpoint {} does not cover leaf {covering}",
        cp.size
    );
    verify_quorum(&note, &w.keys, quorum)
        .unwrap_or_else(|e| panic!("served checkpoint lacks a quorum ({e}):\n{note}"))
        .len()
}

#[test]
fn two_of_three_keep_releasing_with_one_witness_down_and_stop_with_two() {
    let mut w = deploy(3, 2);
    let api = w.d.api();
    let t = w.d.new_tenant();

    let first = mint_eventually(&api, &t.agent_key);
    assert!(cosigned_checkpoint(&w, 2, first.log_index) >= 2);
    assert!(witness_rounds(&api, "cosigned") >= 1);
    // The attested commitment names the witnesses and the quorum.
    let (s, att) = api.get("/v1/attestation", None);
    assert_eq!(s, 200, "{att}");
    let named: Vec<String> = w.keys.iter().map(|k| k.to_string()).collect();
    assert_eq!(att["commitment"]["witnesses"], json!(named), "{att}");
    assert_eq!(att["commitment"]["witness_quorum"], 2, "{att}");
    assert_eq!(readyz_witnesses(&api)["quorum"], 2);

    // One down: the other two are a quorum.
    w.witnesses[0].stop();
    for _ in 0..5 {
        let m = mint(&api, &t.agent_key);
        assert_eq!(cosigned_checkpoint(&w, 2, m.log_index), 2);
    }

    // Two down: the token is minted and logged, but never released.
    w.witnesses[1].stop();
    let size_before = log_size(&api);
    assert_error(
        api.post("/v1/tokens", Some(&t.agent_key), &json!({})),
        503,
        "WITNESS_QUORUM_UNAVAILABLE",
    );
    assert!(log_size(&api) > size_before, "the leaf is logged all the same");
    let rw = readyz_witnesses(&api);
    assert_eq!(rw["releasing"], false, "{rw}");
    assert!(
        rw["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("1 of 2 cosignatures"),
        "{rw}"
    );
    assert!(witness_rounds(&api, "no_quorum") >= 1);
    let cosigned_before = witness_rounds(&api, "cosigned");

    // One back: releasing again, under checkpoints the monitor-facing tools accept.
    w.witnesses[1].resume();
    let back = mint_eventually(&api, &t.agent_key);
    assert!(cosigned_checkpoint(&w, 2, back.log_index) >= 2);
    assert!(witness_rounds(&api, "cosigned") > cosigned_before);
    let out = expect_exit(
        0,
        sealgate_tests::verify(&["all", "--url", &w.d.url, "--sim-root", &sim_root(&w.d)]),
    );
    assert!(
        out.contains("attested witnesses cosigned the checkpoint (quorum 2)"),
        "{out}"
    );
}

fn refused(reply: Reply) -> WireError {
    match reply {
        Reply::Error(e) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn mint_request(t: &Tenant) -> MintRequest {
    MintRequest {
        workspace: t.workspace.clone(),
        agent: t.agent.clone(),
        task: None,
        audience: "sts.amazonaws.com".into(),
        ttl_seconds: 600,
        caller: "compromised-host".into(),
        grant: None,
    }
}

#[test]
fn a_compromised_host_gets_no_token_the_witnesses_have_not_seen() {
    let mut w = deploy(1, 1);
    let api = w.d.api();
    let t = w.d.new_tenant();
    let a = mint_eventually(&api, &t.agent_key);
    // An older state of the database, with a cosigned checkpoint covering `a`.
    wait_for("a persisted cosigned checkpoint", Duration::from_secs(30), || {
        (persisted_checkpoint(&w.d.db_path()).0 > a.log_index).then_some(())
    });
    let snapshot = w.d.path("older.db");
    snapshot_db(&w.d, &snapshot);
    // The witness sees the log grow past that state.
    let mut last = a.log_index;
    for _ in 0..3 {
        last = mint(&api, &t.agent_key).log_index;
    }
    let (old_cosigned, _) = checkpoint(&api, &verifier_key(&api));
    assert!(cosigned_checkpoint(&w, 1, last) == 1);

    // Straight to the enclave, as the host: a minted token does not come back with its
    // leaf (break 2's first step, keeping a token whose leaf is never committed, fails).
    w.d.stop_host();
    let minted = match w.d.enclave_call(Op::MintToken(mint_request(&t))) {
        Reply::Minted(m) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        minted.token, None,
        "the enclave handed a token to the host before any witness saw its leaf"
    );
    let signed = match w.d.enclave_call(Op::Ack {
        size: minted.leaf.index + 1,
    }) {
        Reply::Checkpoint(cp) => cp,
        other => panic!("{other:?}"),
    };
    // The enclave's own signature is not enough, nor a cosignature under the witness's
    // name by a key the enclave was not configured with, nor an older checkpoint the
    // witness did cosign (it does not cover the leaf, and is no longer pending).
    let body = split_note(&signed.note).expect("a note").0.to_string();
    let impostor = Cosigner::new(&w.witnesses[0].name, SigningKey::from_bytes(&[9; 32])).expect("cosigner");
    let forged = format!(
        "{}{}\n",
        signed.note,
        impostor.cosign(&body, 1_800_000_000).expect("cosign")
    );
    for note in [signed.note.clone(), forged, old_cosigned.clone()] {
        let e = refused(w.d.enclave_call(Op::Witnessed { checkpoint: note }));
        assert_eq!(e.code, ErrorCode::WitnessRejected, "{e:?}");
    }

    // A restarted enclave cannot be handed an empty log, nor one from an uncosigned
    // checkpoint.
    w.d.kill9_enclave();
    w.d.start_enclave();
    let e = refused(w.d.enclave_call(Op::RestoreBegin {
        checkpoint: String::new(),
        frontier: vec![],
    }));
    assert_eq!(e.code, ErrorCode::RestoreRejected, "{e:?}");
    assert!(e.message.contains("witnesses"), "{e:?}");
    let e = refused(w.d.enclave_call(Op::RestoreBegin {
        checkpoint: signed.note.clone(),
        frontier: vec![],
    }));
    assert_eq!(e.code, ErrorCode::RestoreRejected, "{e:?}");
    assert!(e.message.contains("cosignatures"), "{e:?}");

    // The host restores the older database: a genuine cosigned checkpoint and the MAC'd
    // tail after it, so the enclave takes it, but the witness has seen more and cosigns
    // nothing after it. No token is released: the truncation is an outage.
    restore_db(&w.d, &snapshot);
    with_logs(&mut w.d, |d| d.start_host());
    assert!(log_size(&api) <= last, "the restored log is the older one");
    assert_error(
        api.post("/v1/tokens", Some(&t.agent_key), &json!({})),
        503,
        "WITNESS_QUORUM_UNAVAILABLE",
    );
    let rw = readyz_witnesses(&api);
    assert_eq!(rw["releasing"], false, "{rw}");
    assert!(
        rw["last_error"].as_str().unwrap_or_default().contains("rolled back"),
        "{rw}"
    );
}
