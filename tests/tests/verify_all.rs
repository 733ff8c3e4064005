//! `sealgate-verify all` against a real deployment in simulator mode: attestation, the
//! log under the attested checkpoint key, tokens, and history from a saved checkpoint
//! (`--save` then `--since`); a tampered or foreign saved checkpoint is refused.

mod common;

use common::{checkpoint, expect_exit as expect, mint, sim_root, verifier_key, wait_checkpoint};
use sealgate_tests::{verify, Deployment};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn all_verifies_attestation_log_and_history() {
    let d = Deployment::start();
    let url = d.url.as_str();
    let root = sim_root(&d);
    let root = root.as_str();
    let api = d.api();
    let vk = verifier_key(&api);
    let tenant = d.new_tenant();

    // A first token, covered by a checkpoint; verify everything and save the checkpoint.
    let first = mint(&api, &tenant.agent_key);
    wait_checkpoint(&api, &vk, first.log_index + 1, Duration::from_secs(30));
    let saved = d.path("saved.note");
    let saved = saved.display().to_string();
    let out = expect(
        0,
        verify(&[
            "all",
            "--url",
            url,
            "--sim-root",
            root,
            "--token",
            &first.token,
            "--save",
            &saved,
        ]),
    );
    for section in ["== attestation ==", "== log ==", "== save =="] {
        assert!(out.contains(section), "{out}");
    }
    assert!(out.contains("checkpoint key the enclave attested"), "{out}");
    assert!(out.contains("ALL VERIFIED"), "{out}");
    let note = std::fs::read_to_string(&saved).expect("--save wrote the checkpoint");
    let saved_cp = vk.open(&note).expect("the saved note verifies");
    assert!(saved_cp.size > first.log_index, "{saved_cp:?}");

    // More tokens; the log grew, and it is consistent with the saved checkpoint.
    let second = mint(&api, &tenant.agent_key);
    let third = mint(&api, &tenant.agent_key);
    let (_, now) = wait_checkpoint(&api, &vk, third.log_index + 1, Duration::from_secs(30));
    assert!(now.size > saved_cp.size);
    let out = expect(
        0,
        verify(&[
            "all",
            "--url",
            url,
            "--sim-root",
            root,
            "--since",
            &saved,
            "--token",
            &first.token,
            "--token",
            &second.token,
            "--token",
            &third.token,
        ]),
    );
    println!("{out}");
    assert!(out.contains("== history =="), "{out}");
    assert!(out.contains("ok    consistency"), "{out}");
    let out = expect(
        0,
        verify(&["all", "--url", url, "--sim-root", root, "--since", &saved, "--json"]),
    );
    let json: Value = serde_json::from_str(&out).expect("json report");
    assert_eq!(json["verified"], true, "{json}");
    assert_eq!(json["exit_code"], 0, "{json}");
    assert_eq!(json["history"]["ok"], true, "{json}");
    assert_eq!(json["attested_key"], vk.to_string(), "{json}");
    assert_eq!(json["attestation"]["mode"], "SIMULATOR", "{json}");

    // Without --sim-root the simulator document is refused, and nothing else runs.
    let out = expect(13, verify(&["all", "--url", url, "--since", &saved]));
    assert!(out.contains("skip  log"), "{out}");

    // A saved note whose size line was changed no longer verifies under the attested key.
    let mut lines: Vec<String> = note.split('\n').map(str::to_string).collect();
    lines[1] = (saved_cp.size + 1).to_string();
    let tampered = d.path("tampered.note");
    std::fs::write(&tampered, lines.join("\n")).unwrap();
    let tampered = tampered.display().to_string();
    let out = expect(
        4,
        verify(&["all", "--url", url, "--sim-root", root, "--since", &tampered]),
    );
    println!("{out}");
    assert!(out.contains("FAIL  consistency"), "{out}");

    // A checkpoint from another deployment (another key) is refused too.
    let other = Deployment::start();
    let (foreign, _) = checkpoint(&other.api(), &verifier_key(&other.api()));
    let foreign_file = d.path("foreign.note");
    std::fs::write(&foreign_file, foreign).unwrap();
    let foreign_file = foreign_file.display().to_string();
    let out = expect(
        4,
        verify(&["all", "--url", url, "--sim-root", root, "--since", &foreign_file]),
    );
    assert!(out.contains("saved checkpoint does not verify"), "{out}");

    // A --since file that does not exist is a usage error.
    expect(
        2,
        verify(&["all", "--url", url, "--sim-root", root, "--since", "/nonexistent/note"]),
    );
}

/// A proxy in front of `upstream` that answers the first `/v1/audit/key` honestly (the
/// attestation's commitment check) and every later one, and the checkpoint, from
/// `impostor`: a host that swaps the checkpoint key after being attested.
fn key_swapping_proxy(upstream: String, impostor: String) -> String {
    let key_fetches = Arc::new(AtomicUsize::new(0));
    common::proxy(
        move |path| {
            let swapped = match path {
                "/v1/audit/key" => key_fetches.fetch_add(1, Ordering::SeqCst) > 0,
                "/v1/audit/checkpoint" => true,
                _ => false,
            };
            if swapped {
                impostor.clone()
            } else {
                upstream.clone()
            }
        },
        |_, body| body,
    )
}

#[test]
fn a_checkpoint_key_other_than_the_attested_one_is_refused() {
    let d = Deployment::start();
    let impostor = Deployment::start();
    let root = sim_root(&d);

    // Through an honest proxy everything verifies.
    let honest = key_swapping_proxy(d.url.clone(), d.url.clone());
    expect(0, verify(&["all", "--url", &honest, "--sim-root", &root]));

    // The attestation passes (the key it saw is the attested one), but the log step
    // gets another key: the signature class, and no history or save.
    let lying = key_swapping_proxy(d.url.clone(), impostor.url.clone());
    let saved = d.path("never.note");
    let out = expect(
        4,
        verify(&[
            "all",
            "--url",
            &lying,
            "--sim-root",
            &root,
            "--save",
            &saved.display().to_string(),
        ]),
    );
    assert!(out.contains("ok    commitment"), "{out}");
    assert!(out.contains("FAIL  key"), "{out}");
    assert!(!saved.exists(), "a failed run must not save a checkpoint");
}
