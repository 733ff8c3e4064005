//! The attestation verifier against a real AWS-signed Nitro document (2022), read in
//! place from `../shared/testdata/nitro/` (skipped with a `SKIP:` line when absent), and
//! the commitment comparison against a host whose served values differ.

use sealgate_attestation::attest::{check_commitment, verify_attestation, AttestOptions, AttestReport, Served};
use sealgate_attestation::fetch::Jwk;
use sealgate_attestation::nitro::{self, Document, TrustRoot};
use sealgate_attestation::report::{render_attest_json, render_attest_text, FailureClass};
use sealgate_shared::commitment::{p256_thumbprint, Commitment, COMMITMENT_VERSION};
use sealgate_shared::note::VerifierKey;
use std::path::PathBuf;

/// The document's own timestamp (1657117102484 ms), in seconds.
const DOC_TIME: u64 = 1_657_117_102;
/// A "today" comfortably after the leaf certificate expired (2025-01-01).
const TODAY: u64 = 1_735_689_600;

fn testdata() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/nitro");
    if dir.join("aws-attestation-doc-2022.cose").is_file() {
        Some(dir)
    } else {
        println!(
            "SKIP: {} not found; the real Nitro document tests did not run",
            dir.display()
        );
        None
    }
}

fn aws_document() -> Option<Vec<u8>> {
    testdata().map(|d| std::fs::read(d.join("aws-attestation-doc-2022.cose")).expect("read the document"))
}

fn judge(document: &[u8], root: TrustRoot, at: u64) -> AttestReport {
    let mut opts = AttestOptions::new(root);
    opts.document = Some(document.to_vec());
    opts.at = Some(at);
    verify_attestation(None, &opts, TODAY)
}

fn failure_class(report: &AttestReport) -> Option<FailureClass> {
    report.first_failure().map(|e| e.class())
}

/// A self-signed P-384 CA standing in for a simulator's root (`tests/data`, made
/// once with openssl; its key was discarded).
fn simulator_root() -> TrustRoot {
    TrustRoot::simulator(include_bytes!("data/test-sim-root.pem"), "test-sim-root.pem").expect("simulator root")
}

#[test]
fn embedded_root_is_the_published_aws_root() {
    let root = TrustRoot::aws().expect("embedded root");
    assert_eq!(root.sha256(), nitro::AWS_ROOT_SHA256);
    let Some(dir) = testdata() else { return };
    let pem = std::fs::read(dir.join("aws-nitro-root-g1.pem")).expect("read root");
    assert_eq!(nitro::certificate_der(&pem).expect("parse"), root.der);
}

#[test]
fn real_document_verifies_at_its_own_time() {
    let Some(doc) = aws_document() else { return };
    let report = judge(&doc, TrustRoot::aws().unwrap(), DOC_TIME);
    let text = render_attest_text(&report);
    assert!(report.verified(), "{text}");
    assert_eq!(report.exit_code(), 0);
    assert!(text.ends_with("VERIFIED\n"), "{text}");
    assert!(!text.contains("SIMULATOR"), "{text}");
    let json = render_attest_json(&report);
    assert_eq!(json["verified"], true);
    assert_eq!(json["mode"], "AWS");
    assert!(json["document"]["pcr0"]
        .as_str()
        .unwrap()
        .starts_with("f8bb0133c427bc49"));
}

#[test]
fn real_document_is_expired_today() {
    let Some(doc) = aws_document() else { return };
    let report = judge(&doc, TrustRoot::aws().unwrap(), TODAY);
    assert!(!report.verified());
    assert_eq!(failure_class(&report), Some(FailureClass::Chain));
    assert_eq!(report.exit_code(), 7);
    assert!(render_attest_text(&report).contains("expired"));
}

#[test]
fn real_document_is_refused_against_a_simulator_root() {
    let Some(doc) = aws_document() else { return };
    let report = judge(&doc, simulator_root(), DOC_TIME);
    assert!(!report.verified());
    assert_eq!(failure_class(&report), Some(FailureClass::RootKind));
    assert_eq!(report.exit_code(), 13);
    // And the chain itself does not verify against that root either.
    let chain = report.checks.iter().find(|c| c.name == "certificate chain").unwrap();
    assert!(matches!(
        chain.outcome,
        sealgate_attestation::attest::Outcome::Failed(_)
    ));
}

#[test]
fn real_document_freshness_pcrs_nonce_and_commitment() {
    let Some(doc) = aws_document() else { return };
    let decoded = Document::decode(&doc).unwrap();
    let pcr0 = decoded.pcrs[&0].clone();
    let base = || {
        let mut o = AttestOptions::new(TrustRoot::aws().unwrap());
        o.document = Some(doc.clone());
        o.at = Some(DOC_TIME);
        o
    };

    // Stale: 400 s later (certificates still valid), max age 300 s.
    let mut o = base();
    o.at = Some(DOC_TIME + 400);
    let r = verify_attestation(None, &o, TODAY);
    assert_eq!(r.exit_code(), 9, "{}", render_attest_text(&r));
    o.max_age_secs = 500;
    assert_eq!(verify_attestation(None, &o, TODAY).exit_code(), 0);

    // PCR0 right and wrong.
    let mut o = base();
    o.pcrs = vec![(0, pcr0.clone())];
    assert_eq!(verify_attestation(None, &o, TODAY).exit_code(), 0);
    let mut wrong = pcr0.clone();
    wrong[0] ^= 1;
    o.pcrs = vec![(0, pcr0), (0, wrong)];
    let r = verify_attestation(None, &o, TODAY);
    assert_eq!(r.exit_code(), 11, "{}", render_attest_text(&r));

    // The document carries no nonce, so any expected nonce fails.
    let mut o = base();
    o.nonce = Some(vec![1, 2, 3]);
    assert_eq!(verify_attestation(None, &o, TODAY).exit_code(), 10);

    // Its user_data is not one of our commitments.
    let mut o = base();
    o.expected_commitment = Some(commitment(&[key(1)]));
    assert_eq!(verify_attestation(None, &o, TODAY).exit_code(), 12);
}

/// Flips one bit at a sample of positions across the whole document: the payload
/// fields, every certificate, the signature and the COSE framing. Every copy must fail.
#[test]
fn every_flipped_bit_is_rejected() {
    let Some(doc) = aws_document() else { return };
    let decoded = Document::decode(&doc).unwrap();
    let find = |needle: &[u8]| {
        doc.windows(needle.len())
            .position(|w| w == needle)
            .expect("field inside the document")
    };
    // Regions that must each be sampled.
    let mut regions = vec![("signature", doc.len() - 96, doc.len())];
    let leaf = find(&decoded.certificate);
    regions.push(("leaf certificate", leaf, leaf + decoded.certificate.len()));
    for (i, c) in decoded.cabundle.iter().enumerate() {
        let at = find(c);
        regions.push((
            ["cabundle[0]", "cabundle[1]", "cabundle[2]", "cabundle[3]"][i.min(3)],
            at,
            at + c.len(),
        ));
    }
    let pcr0 = find(&decoded.pcrs[&0]);
    regions.push(("pcr0", pcr0, pcr0 + 48));
    let ud = decoded.user_data.clone().unwrap();
    let ud_at = find(&ud);
    regions.push(("user_data", ud_at, ud_at + ud.len()));
    regions.push(("COSE header", 0, 8));

    const STRIDE: usize = 5;
    let mut positions: Vec<usize> = (0..doc.len()).step_by(STRIDE).collect();
    for (_, start, end) in &regions {
        positions.extend([*start, (*start + *end) / 2, *end - 1]);
    }
    positions.sort();
    positions.dedup();
    for (name, start, end) in &regions {
        let n = positions.iter().filter(|p| (*start..*end).contains(*p)).count();
        assert!(n >= 3, "region {name} sampled {n} times");
    }

    let root = TrustRoot::aws().unwrap();
    for (k, &pos) in positions.iter().enumerate() {
        let mut copy = doc.clone();
        copy[pos] ^= 1 << (k % 8);
        let report = judge(&copy, root.clone(), DOC_TIME);
        assert!(
            !report.verified() && report.exit_code() != 0,
            "flipping bit {} of byte {pos} was accepted",
            k % 8
        );
    }
    println!("{} tampered copies rejected", positions.len());
}

fn key(seed: u8) -> Jwk {
    Jwk {
        kid: Some(format!("k{seed}")),
        x: vec![seed; 32],
        y: vec![seed.wrapping_add(1); 32],
    }
}

fn checkpoint_key(origin: &str) -> String {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    VerifierKey::new(origin, sk.verifying_key().to_bytes())
        .unwrap()
        .to_string()
}

fn commitment(keys: &[Jwk]) -> Commitment {
    let mut thumbprints: Vec<String> = keys.iter().map(|k| p256_thumbprint(&k.x, &k.y)).collect();
    thumbprints.sort();
    Commitment {
        version: COMMITMENT_VERSION.into(),
        mode: "sim".into(),
        issuer: "http://127.0.0.1:8080".into(),
        audiences: vec!["sts.amazonaws.com".into()],
        ttl_min_seconds: 60,
        ttl_max_seconds: 3600,
        log_origin: "127.0.0.1:8080/log".into(),
        jwk_thumbprints: thumbprints,
        checkpoint_key: checkpoint_key("127.0.0.1:8080/log"),
        witnesses: vec![],
        witness_quorum: 0,
        kms_key: None,
        kms_ca: None,
    }
}

fn served(keys: Vec<Jwk>) -> Served {
    Served {
        mode: "sim".into(),
        issuer: "http://127.0.0.1:8080".into(),
        jwks: keys,
        checkpoint_key: checkpoint_key("127.0.0.1:8080/log"),
    }
}

#[test]
fn commitment_matches_what_is_served() {
    let c = commitment(&[key(2), key(1)]);
    let ud = c.digest();
    let bytes = c.canonical_json();
    check_commitment(
        Some(&ud),
        &c,
        Some(&ud),
        Some(bytes.as_bytes()),
        &served(vec![key(1), key(2)]),
    )
    .expect("consistent");
    // Served bytes that are not the canonical encoding (here: the object re-encoded
    // with its keys sorted, as a generic JSON tool would) are refused.
    let sorted = serde_json::to_string(&serde_json::to_value(&c).unwrap()).unwrap();
    assert_ne!(sorted, bytes);
    let err = check_commitment(
        Some(&ud),
        &c,
        Some(&ud),
        Some(sorted.as_bytes()),
        &served(vec![key(1), key(2)]),
    )
    .unwrap_err();
    assert!(err.contains("commitment_json"), "{err}");
}

#[test]
fn commitment_names_each_field_that_differs() {
    let c = commitment(&[key(1)]);
    let ud = c.digest();

    // The host serves an extra JWKS key the enclave never attested.
    let err = check_commitment(Some(&ud), &c, Some(&ud), None, &served(vec![key(1), key(3)])).unwrap_err();
    assert!(err.contains("jwk_thumbprints"), "{err}");
    assert!(err.contains("user_data"), "{err}");

    // The host's commitment object lists the extra key too (so it matches the JWKS),
    // but the signed user_data does not.
    let lying = commitment(&[key(1), key(3)]);
    let err = check_commitment(
        Some(&ud),
        &lying,
        Some(&lying.digest()),
        None,
        &served(vec![key(1), key(3)]),
    )
    .unwrap_err();
    assert!(!err.contains("jwk_thumbprints"), "{err}");
    assert!(err.contains("the document's user_data"), "{err}");

    let mut s = served(vec![key(1)]);
    s.issuer = "https://evil.example".into();
    let err = check_commitment(Some(&ud), &c, None, None, &s).unwrap_err();
    assert!(err.starts_with("issuer:"), "{err}");

    let mut s = served(vec![key(1)]);
    s.checkpoint_key = checkpoint_key("other/log");
    let err = check_commitment(Some(&ud), &c, None, None, &s).unwrap_err();
    assert!(err.contains("checkpoint_key") && err.contains("log_origin"), "{err}");

    let mut s = served(vec![key(1)]);
    s.mode = "nitro".into();
    let err = check_commitment(Some(&ud), &c, None, None, &s).unwrap_err();
    assert!(err.starts_with("mode:"), "{err}");

    assert!(check_commitment(None, &c, None, None, &served(vec![key(1)])).is_err());
}
