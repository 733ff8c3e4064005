//! The simulated NSM, checked from the outside: every document is taken apart with
//! code that shares nothing with the simulator's own paths (ciborium, coset, aws-lc-rs, AWS's own
//! `AttestationDoc` type) and verified up to the persisted root, the way an auditor would.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};
use aws_nitro_enclaves_nsm_api::api::{AttestationDoc, Digest as NsmDigest};
use ciborium::Value;
use coset::{iana, CborSerializable, CoseSign1, RegisteredLabelWithPrivate};
use sealgate_enclave::nsm::sim::{
    SimNsm, PCR1_INPUT, PCR2_INPUT, ROOT_CERT_FILE, ROOT_KEY_FILE, ROOT_PEM_FILE, STATE_SUBDIR,
};
use sealgate_enclave::nsm::{Nsm, NsmError};
use sha2::{Digest, Sha384};
use tempfile::TempDir;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

const PAYLOAD_KEYS: [&str; 9] = [
    "module_id",
    "digest",
    "timestamp",
    "pcrs",
    "certificate",
    "cabundle",
    "public_key",
    "user_data",
    "nonce",
];

/// `{1: -35}`: alg = ES384, exactly as AWS encodes the protected header.
const PROTECTED_ES384: [u8; 4] = [0xa1, 0x01, 0x38, 0x22];

const LEAF_LIFETIME_SECS: i64 = 3 * 3600;
const RENEW_MARGIN_SECS: u64 = 10 * 60;

struct Fixture {
    _dir: TempDir,
    state: PathBuf,
    image: PathBuf,
    image_bytes: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let image = dir.path().join("enclave-image.bin");
        // A few hundred KiB so the image is read in more than one chunk.
        let image_bytes: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        fs::write(&image, &image_bytes).expect("write image");
        Fixture {
            _dir: dir,
            state,
            image,
            image_bytes,
        }
    }

    fn open(&self) -> SimNsm {
        SimNsm::open(&self.state, &self.image).expect("open SimNsm")
    }

    fn sim_dir(&self) -> PathBuf {
        self.state.join(STATE_SUBDIR)
    }
}

fn sha384(data: &[u8]) -> Vec<u8> {
    Sha384::digest(data).to_vec()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

fn cert(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).expect("parse certificate");
    assert!(rest.is_empty(), "trailing bytes after certificate");
    cert
}

/// What a verified document says.
#[derive(Debug)]
struct Verified {
    module_id: String,
    timestamp_ms: u64,
    pcrs: Vec<(u64, Vec<u8>)>,
    certificate: Vec<u8>,
    cabundle: Vec<Vec<u8>>,
    public_key: Option<Vec<u8>>,
    user_data: Option<Vec<u8>>,
    nonce: Option<Vec<u8>>,
    payload: Vec<u8>,
}

fn as_bytes_or_null(v: &Value, what: &str) -> Result<Option<Vec<u8>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Bytes(b) => Ok(Some(b.clone())),
        other => Err(format!("{what}: expected bstr or null, got {other:?}")),
    }
}

/// Verifies `doc` the way an auditor does, trusting only `root_der`: structure, COSE
/// signature under the leaf, leaf ← intermediate ← root signatures, validity at the
/// document's timestamp. Returns the fields on success and a reason on any failure.
fn verify_document(doc: &[u8], root_der: &[u8]) -> Result<Verified, String> {
    // Untagged COSE_Sign1: a 4-element array, not tag 18.
    if doc.first() != Some(&0x84) {
        return Err(format!("document starts with {:?}, not array(4)", doc.first()));
    }
    let sign1 = CoseSign1::from_slice(doc).map_err(|e| format!("COSE_Sign1: {e:?}"))?;
    let raw: Value = ciborium::de::from_reader(doc).map_err(|e| format!("CBOR: {e}"))?;
    let Value::Array(items) = &raw else {
        return Err("not an array".into());
    };
    if items.len() != 4 {
        return Err(format!("{} elements", items.len()));
    }
    let (Value::Bytes(protected), Value::Map(unprotected), Value::Bytes(payload), Value::Bytes(signature)) =
        (&items[0], &items[1], &items[2], &items[3])
    else {
        return Err(format!("wrong element types: {items:?}"));
    };
    if protected.as_slice() != PROTECTED_ES384 {
        return Err(format!("protected header {protected:02x?}"));
    }
    if sign1.protected.header.alg != Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES384)) {
        return Err("alg is not ES384".into());
    }
    if !unprotected.is_empty() {
        return Err(format!("unprotected header not empty: {unprotected:?}"));
    }
    if signature.len() != 96 {
        return Err(format!("signature is {} bytes, not 96", signature.len()));
    }

    // The payload: a map with exactly AWS's keys, in AWS's order.
    let map: Value = ciborium::de::from_reader(payload.as_slice()).map_err(|e| format!("payload: {e}"))?;
    let Value::Map(entries) = map else {
        return Err("payload is not a map".into());
    };
    let keys: Vec<&str> = entries
        .iter()
        .map(|(k, _)| k.as_text().unwrap_or("<non-text key>"))
        .collect();
    if keys != PAYLOAD_KEYS {
        return Err(format!("payload keys {keys:?}"));
    }
    let field = |i: usize| &entries[i].1;
    let module_id = field(0).as_text().ok_or("module_id not text")?.to_owned();
    if field(1).as_text() != Some("SHA384") {
        return Err(format!("digest {:?}", field(1)));
    }
    let timestamp_ms: u64 = field(2)
        .as_integer()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or("timestamp not a uint")?;
    let mut pcrs = Vec::new();
    for (k, v) in field(3).as_map().ok_or("pcrs not a map")? {
        let index = k
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or("pcr index not a uint")?;
        let value = v.as_bytes().ok_or("pcr not bstr")?.clone();
        pcrs.push((index, value));
    }
    let certificate = field(4).as_bytes().ok_or("certificate not bstr")?.clone();
    let cabundle = field(5)
        .as_array()
        .ok_or("cabundle not an array")?
        .iter()
        .map(|c| c.as_bytes().cloned().ok_or("cabundle entry not bstr"))
        .collect::<Result<Vec<_>, _>>()?;
    let public_key = as_bytes_or_null(field(6), "public_key")?;
    let user_data = as_bytes_or_null(field(7), "user_data")?;
    let nonce = as_bytes_or_null(field(8), "nonce")?;

    // The COSE signature, over a Sig_structure built here rather than by coset.
    let sig_structure = Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.clone()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.clone()),
    ]);
    let mut tbs = Vec::new();
    ciborium::ser::into_writer(&sig_structure, &mut tbs).map_err(|e| e.to_string())?;
    let (rest, leaf) = X509Certificate::from_der(&certificate).map_err(|e| format!("leaf: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after leaf".into());
    }
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &leaf.public_key().subject_public_key.data)
        .verify(&tbs, signature)
        .map_err(|_| "COSE signature does not verify under the leaf key".to_string())?;
    // coset agrees.
    sign1
        .verify_signature(b"", |sig, data| {
            UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &leaf.public_key().subject_public_key.data)
                .verify(data, sig)
        })
        .map_err(|_| "coset: signature does not verify".to_string())?;

    // The chain: cabundle = [root, intermediate], root = the pinned one.
    if cabundle.len() != 2 {
        return Err(format!("cabundle has {} certificates", cabundle.len()));
    }
    if cabundle[0] != root_der {
        return Err("cabundle[0] is not the pinned root".into());
    }
    let (_, root) = X509Certificate::from_der(root_der).map_err(|e| format!("root: {e}"))?;
    let (_, intermediate) = X509Certificate::from_der(&cabundle[1]).map_err(|e| format!("intermediate: {e}"))?;
    root.verify_signature(None)
        .map_err(|e| format!("root is not self-signed: {e}"))?;
    intermediate
        .verify_signature(Some(root.public_key()))
        .map_err(|e| format!("intermediate not signed by root: {e}"))?;
    leaf.verify_signature(Some(intermediate.public_key()))
        .map_err(|e| format!("leaf not signed by intermediate: {e}"))?;
    if intermediate.issuer() != root.subject() || leaf.issuer() != intermediate.subject() {
        return Err("issuer names do not link up".into());
    }
    if !root.is_ca() || !intermediate.is_ca() || leaf.is_ca() {
        return Err("CA flags wrong".into());
    }
    let at = (timestamp_ms / 1000) as i64;
    for (name, c) in [("root", &root), ("intermediate", &intermediate), ("leaf", &leaf)] {
        let v = c.validity();
        if !(v.not_before.timestamp() <= at && at < v.not_after.timestamp()) {
            return Err(format!("{name} is not valid at the document's timestamp"));
        }
    }

    Ok(Verified {
        module_id,
        timestamp_ms,
        pcrs,
        certificate,
        cabundle,
        public_key,
        user_data,
        nonce,
        payload: payload.clone(),
    })
}

#[test]
fn document_has_aws_layout_and_verifies_to_persisted_root() {
    let fx = Fixture::new();
    let nsm = fx.open();
    let user_data = b"sha256-of-the-commitment-json..".to_vec();
    let nonce = vec![0x5a; 32];
    let public_key = vec![0x04; 97];

    let before = now_ms();
    let doc = nsm
        .attest(Some(&user_data), Some(&nonce), Some(&public_key))
        .expect("attest");
    let after = now_ms();

    let root_on_disk = fs::read(fx.sim_dir().join(ROOT_CERT_FILE)).expect("root.der");
    assert_eq!(nsm.root_certificate_der(), root_on_disk.as_slice());
    let v = verify_document(&doc, &root_on_disk).expect("document verifies");

    // Echoes.
    assert_eq!(v.user_data.as_deref(), Some(user_data.as_slice()));
    assert_eq!(v.nonce.as_deref(), Some(nonce.as_slice()));
    assert_eq!(v.public_key.as_deref(), Some(public_key.as_slice()));

    // PCRs: 0..=15, 48 bytes each; PCR0 is what `sha384sum image` prints.
    let image_hash = sha384(&fx.image_bytes);
    assert_eq!(
        v.pcrs.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (0..16).collect::<Vec<u64>>()
    );
    for (index, value) in &v.pcrs {
        let expected = match index {
            0 => image_hash.clone(),
            1 => sha384(PCR1_INPUT),
            2 => sha384(PCR2_INPUT),
            _ => vec![0; 48],
        };
        assert_eq!(value, &expected, "PCR{index}");
    }
    assert_eq!(PCR1_INPUT, b"sealgate-sim kernel");
    assert_eq!(PCR2_INPUT, b"sealgate-sim application");
    assert_eq!(nsm.pcr0(), image_hash);
    assert_eq!(nsm.pcr(0), Some(image_hash.as_slice()));
    assert_eq!(nsm.pcr(16), None);

    assert_eq!(v.module_id, format!("sealgate-sim-{}", hex::encode(&image_hash[..4])));
    assert_eq!(nsm.module_id(), v.module_id);
    assert!(
        (before..=after).contains(&v.timestamp_ms),
        "timestamp {} not in [{before}, {after}]",
        v.timestamp_ms
    );

    // The certificates look like AWS's: P-384 everywhere, a ~3 h leaf, a ~30 y root.
    let leaf = cert(&v.certificate);
    let intermediate = cert(&v.cabundle[1]);
    let root = cert(&v.cabundle[0]);
    for c in [&leaf, &intermediate, &root] {
        assert_eq!(
            c.signature_algorithm.algorithm.to_id_string(),
            "1.2.840.10045.4.3.3",
            "ecdsa-with-SHA384"
        );
        let params = c.public_key().algorithm.parameters.as_ref().expect("curve");
        assert_eq!(
            params.as_oid().expect("named curve").to_id_string(),
            "1.3.132.0.34",
            "secp384r1"
        );
    }
    let lifetime = |c: &X509Certificate| c.validity().not_after.timestamp() - c.validity().not_before.timestamp();
    assert_eq!(lifetime(&leaf), LEAF_LIFETIME_SECS);
    assert!(lifetime(&root) >= 29 * 365 * 86400, "root lifetime {}", lifetime(&root));
    assert!(lifetime(&intermediate) > LEAF_LIFETIME_SECS);
    assert!(leaf.validity().not_after.timestamp() <= intermediate.validity().not_after.timestamp());

    let leaf_ku = leaf.key_usage().expect("ku").expect("leaf has key usage").value;
    assert!(leaf_ku.digital_signature() && !leaf_ku.key_cert_sign());
    for ca in [&root, &intermediate] {
        let ku = ca.key_usage().expect("ku").expect("CA has key usage").value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
    }
    let bc = intermediate
        .basic_constraints()
        .expect("bc")
        .expect("intermediate has basic constraints")
        .value;
    assert!(bc.ca);
    let root_cn: Vec<_> = root
        .subject()
        .iter_common_name()
        .map(|cn| cn.as_str().expect("utf8 CN"))
        .collect();
    assert_eq!(root_cn, ["sealgate simulated Nitro root"]);

    // AWS's own type accepts the payload, and re-encodes it to the very same bytes:
    // field order, integer widths and null/bstr choices all match AWS's encoder.
    let official = AttestationDoc::from_binary(&v.payload).expect("AttestationDoc parses");
    assert_eq!(official.module_id, v.module_id);
    assert!(matches!(official.digest, NsmDigest::SHA384));
    assert_eq!(official.timestamp, v.timestamp_ms);
    assert_eq!(official.pcrs.len(), 16);
    assert_eq!(official.pcrs[&0].as_slice(), image_hash.as_slice());
    assert_eq!(official.certificate.as_slice(), v.certificate.as_slice());
    assert_eq!(official.cabundle.len(), 2);
    assert_eq!(official.nonce.as_deref().map(|b| b.as_slice()), Some(nonce.as_slice()));
    assert_eq!(official.to_binary(), v.payload);
}

#[test]
fn absent_fields_are_null_and_empty_fields_are_empty() {
    let fx = Fixture::new();
    let nsm = fx.open();
    let doc = nsm.attest(None, None, None).expect("attest");
    let v = verify_document(&doc, nsm.root_certificate_der()).expect("verifies");
    assert_eq!((v.public_key, v.user_data, v.nonce), (None, None, None));
    let official = AttestationDoc::from_binary(&v.payload).expect("AttestationDoc parses");
    assert!(official.user_data.is_none() && official.nonce.is_none() && official.public_key.is_none());

    let doc = nsm.attest(Some(&[]), Some(&[]), None).expect("attest");
    let v = verify_document(&doc, nsm.root_certificate_der()).expect("verifies");
    assert_eq!(v.user_data, Some(Vec::new()));
    assert_eq!(v.nonce, Some(Vec::new()));
    assert_eq!(v.public_key, None);
}

#[test]
fn any_flipped_bit_fails_verification() {
    let fx = Fixture::new();
    let nsm = fx.open();
    let root = nsm.root_certificate_der().to_vec();
    let doc = nsm
        .attest(Some(b"user data"), Some(b"nonce"), Some(b"key"))
        .expect("attest");
    verify_document(&doc, &root).expect("the untouched document verifies");

    // A bit in the payload, re-encoded as a well-formed COSE_Sign1.
    let sign1 = CoseSign1::from_slice(&doc).expect("decode");
    let payload_len = sign1.payload.as_ref().expect("payload").len();
    for pos in [payload_len - 1, payload_len / 2, 20] {
        let mut tampered = sign1.clone();
        if let Some(p) = tampered.payload.as_mut() {
            p[pos] ^= 0x01;
        }
        let bytes = tampered.to_vec().expect("encode");
        assert!(
            verify_document(&bytes, &root).is_err(),
            "payload bit at {pos} went unnoticed"
        );
    }
    // A bit in the signature.
    for pos in [0, 47, 48, 95] {
        let mut tampered = sign1.clone();
        tampered.signature[pos] ^= 0x80;
        let bytes = tampered.to_vec().expect("encode");
        let err = verify_document(&bytes, &root).expect_err("signature bit went unnoticed");
        assert!(err.contains("signature"), "{err}");
    }
    // And a bit anywhere in the raw document: headers, payload, certificates, signature.
    for (n, pos) in (0..doc.len()).step_by(7).enumerate() {
        let mut tampered = doc.clone();
        tampered[pos] ^= 1 << (n % 8);
        assert!(
            verify_document(&tampered, &root).is_err(),
            "bit {} of byte {pos} went unnoticed",
            n % 8
        );
    }
}

#[test]
fn reopening_keeps_the_root_and_another_dir_gets_another() {
    let fx = Fixture::new();
    let first = fx.open();
    let root = first.root_certificate_der().to_vec();
    let key = fs::read(fx.sim_dir().join(ROOT_KEY_FILE)).expect("root.key");
    let doc_first = first.attest(None, Some(b"1"), None).expect("attest");
    drop(first);

    let second = fx.open();
    assert_eq!(second.root_certificate_der(), root.as_slice(), "root changed on reopen");
    assert_eq!(fs::read(fx.sim_dir().join(ROOT_KEY_FILE)).expect("root.key"), key);
    let doc_second = second.attest(None, Some(b"2"), None).expect("attest");
    // Both verify against the one pinned root, though each open has its own intermediate.
    let v1 = verify_document(&doc_first, &root).expect("first verifies");
    let v2 = verify_document(&doc_second, &root).expect("second verifies");
    assert_ne!(v1.cabundle[1], v2.cabundle[1], "intermediate not re-issued per open");
    assert_ne!(v1.certificate, v2.certificate);

    // The PEM for auditors is the same certificate.
    let pem_file = fs::read_to_string(fx.sim_dir().join(ROOT_PEM_FILE)).expect("root.pem");
    assert_eq!(pem_file, second.root_certificate_pem());
    assert_eq!(second.root_pem_path(), fx.sim_dir().join(ROOT_PEM_FILE));
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_file.as_bytes()).expect("PEM");
    assert_eq!(pem.label, "CERTIFICATE");
    assert_eq!(pem.contents, root);
    // A deleted root.pem is re-derived.
    fs::remove_file(fx.sim_dir().join(ROOT_PEM_FILE)).expect("rm root.pem");
    drop(fx.open());
    assert_eq!(
        fs::read_to_string(fx.sim_dir().join(ROOT_PEM_FILE)).expect("root.pem"),
        pem_file
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(fx.sim_dir().join(ROOT_KEY_FILE))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "root.key mode {:o}", mode & 0o777);
    }

    let other = Fixture::new();
    let other_nsm = other.open();
    assert_ne!(other_nsm.root_certificate_der(), root.as_slice());
    let other_doc = other_nsm.attest(None, None, None).expect("attest");
    let err = verify_document(&other_doc, &root).expect_err("foreign root accepted");
    assert!(err.contains("pinned root"), "{err}");
}

#[test]
fn oversize_inputs_are_typed_errors_and_limits_are_inclusive() {
    let fx = Fixture::new();
    let nsm = fx.open();
    type Request<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, Option<&'a [u8]>);
    let cases: [Request; 3] = [
        (Some(&[0; 513]), None, None),
        (None, Some(&[0; 513]), None),
        (None, None, Some(&[0; 1025])),
    ];
    for (user_data, nonce, public_key) in cases {
        match nsm.attest(user_data, nonce, public_key) {
            Err(NsmError::InvalidInput(msg)) => assert!(msg.contains("at most"), "{msg}"),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }
    let doc = nsm
        .attest(Some(&[1; 512]), Some(&[2; 512]), Some(&[3; 1024]))
        .expect("inputs at the limits are accepted");
    let v = verify_document(&doc, nsm.root_certificate_der()).expect("verifies");
    assert_eq!(v.user_data, Some(vec![1; 512]));
    assert_eq!(v.nonce, Some(vec![2; 512]));
    assert_eq!(v.public_key, Some(vec![3; 1024]));
}

fn expect_open_error(fx: &Fixture) -> NsmError {
    match SimNsm::open(&fx.state, &fx.image) {
        Ok(nsm) => panic!("open succeeded: {nsm:?}"),
        Err(e) => e,
    }
}

#[test]
fn corrupt_root_files_are_errors_not_regenerated() {
    let fx = Fixture::new();
    let root = fx.open().root_certificate_der().to_vec();
    let key_path = fx.sim_dir().join(ROOT_KEY_FILE);
    let cert_path = fx.sim_dir().join(ROOT_CERT_FILE);
    let key = fs::read(&key_path).expect("root.key");

    // Garbage key.
    fs::write(&key_path, b"not a key").expect("write");
    let err = expect_open_error(&fx);
    assert!(matches!(err, NsmError::Crypto(_)), "{err:?}");
    assert!(err.to_string().contains(ROOT_KEY_FILE), "{err}");
    assert_eq!(fs::read(&key_path).expect("read"), b"not a key", "key was overwritten");
    assert_eq!(fs::read(&cert_path).expect("read"), root, "cert was overwritten");

    // A single flipped bit in the key.
    let mut flipped = key.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    fs::write(&key_path, &flipped).expect("write");
    assert!(matches!(expect_open_error(&fx), NsmError::Crypto(_)));

    // Another simulator's key: well-formed, but not the key the certificate certifies.
    let other = Fixture::new();
    drop(other.open());
    fs::copy(other.sim_dir().join(ROOT_KEY_FILE), &key_path).expect("copy");
    let err = expect_open_error(&fx);
    assert!(matches!(err, NsmError::Crypto(_)), "{err:?}");

    // The right key again, and a certificate with a flipped signature bit.
    fs::write(&key_path, &key).expect("write");
    drop(fx.open());
    let mut bad_cert = root.clone();
    let last = bad_cert.len() - 1;
    bad_cert[last] ^= 0x01;
    fs::write(&cert_path, &bad_cert).expect("write");
    assert!(matches!(expect_open_error(&fx), NsmError::Crypto(_)));
    fs::write(&cert_path, b"").expect("write");
    assert!(matches!(expect_open_error(&fx), NsmError::Crypto(_)));

    // Half a root: the certificate is gone. Still an error, never a fresh root.
    fs::remove_file(&cert_path).expect("rm");
    let err = expect_open_error(&fx);
    assert!(matches!(err, NsmError::Io { .. }), "{err:?}");
    assert!(!cert_path.exists(), "root.der was regenerated");

    // Restored, it opens with the same root.
    fs::write(&cert_path, &root).expect("write");
    assert_eq!(fx.open().root_certificate_der(), root.as_slice());
}

#[test]
fn missing_image_is_an_io_error() {
    let fx = Fixture::new();
    match SimNsm::open(&fx.state, Path::new("/nonexistent/sealgate-enclave")) {
        Err(NsmError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("expected Io error, got {other:?}"),
    }
}

#[test]
fn certificates_are_renewed_before_they_expire() {
    let fx = Fixture::new();
    let nsm = fx.open();
    let root = nsm.root_certificate_der().to_vec();
    let t0 = SystemTime::now();
    let attest = |at: SystemTime| {
        let doc = nsm.attest_at(at, None, Some(b"n"), None).expect("attest_at");
        let v = verify_document(&doc, &root).expect("verifies at its own timestamp");
        let leaf = cert(&v.certificate);
        let not_after = leaf.validity().not_after.timestamp() as u64;
        let at_secs = at.duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
        assert!(
            not_after >= at_secs + RENEW_MARGIN_SECS,
            "leaf expires {}s after the document",
            not_after as i64 - at_secs as i64
        );
        v
    };

    let a = attest(t0);
    // A minute later the same leaf is still good: no needless re-issue.
    let b = attest(t0 + Duration::from_secs(60));
    assert_eq!(a.certificate, b.certificate);
    // 2 h 55 min later the leaf has 5 minutes left: a new one, same intermediate.
    let c = attest(t0 + Duration::from_secs(2 * 3600 + 55 * 60));
    assert_ne!(a.certificate, c.certificate, "leaf not renewed near expiry");
    assert_eq!(a.cabundle, c.cabundle);
    // Eight days later the intermediate is past its life too.
    let d = attest(t0 + Duration::from_secs(8 * 86400));
    assert_ne!(c.certificate, d.certificate);
    assert_ne!(c.cabundle[1], d.cabundle[1], "intermediate not renewed");
    // The clock stepping back gets a certificate valid at that time again.
    let e = attest(t0);
    assert_ne!(d.certificate, e.certificate);
}

#[test]
fn shared_across_threads_as_a_trait_object() {
    let fx = Fixture::new();
    let nsm: Arc<dyn Nsm> = Arc::new(fx.open());
    let root = fs::read(fx.sim_dir().join(ROOT_CERT_FILE)).expect("root.der");
    let handles: Vec<_> = (0..4u8)
        .map(|i| {
            let nsm = Arc::clone(&nsm);
            std::thread::spawn(move || {
                (0..3u8)
                    .map(|j| nsm.attest(None, Some(&[i, j]), None).expect("attest"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut nonces = HashSet::new();
    for handle in handles {
        for doc in handle.join().expect("thread") {
            let v = verify_document(&doc, &root).expect("verifies");
            assert!(nonces.insert(v.nonce.expect("nonce")));
        }
    }
    assert_eq!(nonces.len(), 12);
}
