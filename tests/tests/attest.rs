//! `sealgate-verify attest` against a real deployment in simulator mode: the document
//! verifies only with the deployment's simulator root, and each way it can be wrong —
//! root kind, nonce, PCR, freshness, commitment — is refused with its own exit code.

use base64::engine::general_purpose::STANDARD as B64;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
mod common;

use common::{expect_exit as expect, sim_root};
use sealgate_tests::{target_dir, verify, Deployment};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha384};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Fetches a document (with `nonce`, hex) and saves its raw COSE bytes to `file`.
fn save_document(d: &Deployment, nonce: Option<&str>, file: &Path) -> Value {
    let path = match nonce {
        Some(n) => format!("/v1/attestation?nonce={n}"),
        None => "/v1/attestation".to_string(),
    };
    let (status, body) = d.api().get(&path, None);
    assert_eq!(status, 200, "{body}");
    let doc = B64
        .decode(body["document"].as_str().expect("document"))
        .expect("base64");
    std::fs::write(file, doc).expect("save the document");
    body
}

fn pcr0_of_enclave_binary() -> String {
    let bytes = std::fs::read(target_dir().join("sealgate-enclave")).expect("read sealgate-enclave");
    hex::encode(Sha384::digest(bytes))
}

#[test]
fn simulator_documents_verify_only_as_they_should() {
    let d = Deployment::start();
    let url = d.url.as_str();
    let root = sim_root(&d);
    let root = root.as_str();

    // Fetched with a random nonce and checked against the deployment's root.
    let out = expect(0, verify(&["attest", "--url", url, "--sim-root", root]));
    assert!(out.contains("SIMULATOR"), "{out}");
    assert!(out.contains("VERIFIED"), "{out}");
    assert!(out.contains("ok    commitment"), "{out}");
    let out = expect(0, verify(&["attest", "--url", url, "--sim-root", root, "--json"]));
    let json: Value = serde_json::from_str(&out).expect("json report");
    assert_eq!(json["verified"], true, "{json}");
    assert_eq!(json["mode"], "SIMULATOR", "{json}");

    // Without --sim-root the AWS root is used, and a simulator document is its own class.
    let out = expect(13, verify(&["attest", "--url", url]));
    assert!(out.contains("--sim-root"), "{out}");

    // PCR0 is the SHA-384 of the enclave binary.
    let pcr0 = pcr0_of_enclave_binary();
    expect(
        0,
        verify(&[
            "attest",
            "--url",
            url,
            "--sim-root",
            root,
            "--pcr",
            &format!("0={pcr0}"),
        ]),
    );
    let wrong = format!("0={}", "00".repeat(48));
    let out = expect(
        11,
        verify(&["attest", "--url", url, "--sim-root", root, "--pcr", &wrong]),
    );
    assert!(out.contains("FAIL  pcr 0"), "{out}");

    // The host echoes the nonce it was asked with.
    let nonce = "a1".repeat(32);
    expect(
        0,
        verify(&["attest", "--url", url, "--sim-root", root, "--nonce", &nonce]),
    );

    // A document fetched with one nonce does not answer another.
    let saved = d.path("doc-a1.cose");
    let saved_at = now();
    save_document(&d, Some(&nonce), &saved);
    let saved = saved.display().to_string();
    expect(
        0,
        verify(&["attest", "--document", &saved, "--sim-root", root, "--nonce", &nonce]),
    );
    let out = expect(
        10,
        verify(&[
            "attest",
            "--document",
            &saved,
            "--sim-root",
            root,
            "--nonce",
            &"b2".repeat(32),
        ]),
    );
    assert!(out.contains("FAIL  nonce"), "{out}");
    // Offline, the saved document also refuses the AWS root.
    expect(13, verify(&["attest", "--document", &saved]));
    // A saved document with --url still compares the commitment with what is served.
    let out = expect(
        0,
        verify(&["attest", "--document", &saved, "--url", url, "--sim-root", root]),
    );
    assert!(out.contains("ok    commitment"), "{out}");

    // Stale: judged 100 s later with a 10 s max age (its certificates still valid).
    let later = (saved_at + 100).to_string();
    let out = expect(
        9,
        verify(&[
            "attest",
            "--document",
            &saved,
            "--sim-root",
            root,
            "--at",
            &later,
            "--max-age",
            "10",
        ]),
    );
    assert!(out.contains("stale"), "{out}");
    // Far in the future its certificates have expired too; the chain fails first.
    let far = (saved_at + 10 * 365 * 86400).to_string();
    let out = expect(
        7,
        verify(&["attest", "--document", &saved, "--sim-root", root, "--at", &far]),
    );
    assert!(out.contains("FAIL  freshness"), "{out}");
    // From the future: judged well before it was made.
    let before = (saved_at - 3600).to_string();
    let (code, out) = verify(&["attest", "--document", &saved, "--sim-root", root, "--at", &before]);
    assert_ne!(code, 0, "{out}");

    // Another deployment's root does not verify this one's documents.
    let other = Deployment::start();
    let other_root = sim_root(&other);
    let out = expect(7, verify(&["attest", "--url", url, "--sim-root", &other_root]));
    // Both simulator roots have the same name, so the path is found and its signature fails.
    assert!(out.contains("FAIL  certificate chain"), "{out}");
}

/// A proxy in front of the host that serves an extra JWKS key when `lie` is set: the
/// JWKS then differs from what the enclave attested.
fn jwks_proxy(upstream: String, lie: bool) -> String {
    common::proxy(
        move |_| upstream.clone(),
        move |path, body| {
            if !lie || path != "/.well-known/jwks.json" {
                return body;
            }
            let mut jwks: Value = serde_json::from_slice(&body).expect("jwks");
            let mut extra = jwks["keys"][0].clone();
            extra["x"] = Value::String(B64URL.encode([9u8; 32]));
            extra["kid"] = Value::String("unattested".into());
            jwks["keys"].as_array_mut().expect("keys").push(extra);
            serde_json::to_vec(&jwks).expect("jwks")
        },
    )
}

#[test]
fn a_jwks_that_differs_from_the_attested_commitment_is_refused() {
    let d = Deployment::start();
    let root = sim_root(&d);

    let honest = jwks_proxy(d.url.clone(), false);
    expect(0, verify(&["attest", "--url", &honest, "--sim-root", &root]));

    let lying = jwks_proxy(d.url.clone(), true);
    let out = expect(12, verify(&["attest", "--url", &lying, "--sim-root", &root]));
    assert!(out.contains("jwk_thumbprints"), "{out}");
    assert!(out.contains("FAIL  commitment"), "{out}");
}

/// Issue 10, bug 4: the served `commitment_json` is exactly what `user_data` hashes,
/// checked here the way any script would (SHA-256 of the string's bytes) against the
/// `user_data` inside the signed document itself, not the hex the host puts beside it.
/// The `commitment` object, re-encoded, does not hash to it: its keys come sorted.
#[test]
fn the_served_commitment_bytes_hash_to_the_documents_user_data() {
    let d = Deployment::start();
    let (status, body) = d.api().get("/v1/attestation?nonce=00ff", None);
    assert_eq!(status, 200, "{body}");
    let cose = B64
        .decode(body["document"].as_str().expect("document"))
        .expect("base64");
    let doc = sealgate_attestation::nitro::Document::decode(&cose).expect("COSE/CBOR attestation document");
    let user_data = doc.user_data.expect("the document carries user_data");
    let bytes = body["commitment_json"].as_str().expect("commitment_json is a string");
    assert_eq!(
        Sha256::digest(bytes.as_bytes()).to_vec(),
        user_data,
        "SHA-256(commitment_json) is the document's user_data"
    );
    assert_eq!(hex::encode(&user_data), body["user_data"], "{body}");
    // The same commitment as the object beside it.
    let parsed: Value = serde_json::from_str(bytes).expect("commitment_json is JSON");
    assert_eq!(parsed, body["commitment"], "{body}");
    let reencoded = serde_json::to_vec(&body["commitment"]).expect("json");
    assert_ne!(Sha256::digest(&reencoded).to_vec(), user_data);
}

/// A host that serves `commitment_json` in another encoding than the canonical one
/// (here: the same commitment with its keys sorted) fails `sealgate-verify attest`,
/// even though the object and `user_data` beside it are honest.
#[test]
fn served_commitment_bytes_that_are_not_canonical_are_refused() {
    let d = Deployment::start();
    let root = sim_root(&d);
    let lying = common::proxy(
        {
            let upstream = d.url.clone();
            move |_| upstream.clone()
        },
        |path, body| {
            if !path.starts_with("/v1/attestation") {
                return body;
            }
            let mut v: Value = serde_json::from_slice(&body).expect("attestation");
            let sorted = serde_json::to_string(&v["commitment"]).expect("json");
            assert_ne!(
                v["commitment_json"],
                sorted.as_str(),
                "the canonical order is not sorted"
            );
            v["commitment_json"] = Value::String(sorted);
            serde_json::to_vec(&v).expect("json")
        },
    );
    let out = expect(12, verify(&["attest", "--url", &lying, "--sim-root", &root]));
    assert!(out.contains("commitment_json"), "{out}");
    assert!(out.contains("FAIL  commitment"), "{out}");
}
