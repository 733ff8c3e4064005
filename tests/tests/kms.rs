//! KMS sealing end to end: the real `sealgate-enclave --seal kms` and `sealgate serve
//! --kms-key-id` against the KMS test double (`sealgate_tests::kms_double`), which checks
//! the enclave's attestation document like a key policy would, verifies SigV4 and
//! answers with a real CMS to the enclave's recipient key. The enclave calls it itself,
//! over HTTPS under the double's test CA (`--sim-kms-ca`), through `--kms-proxy tcp:…`;
//! the host only supplies credentials and stores ciphertexts.
//!
//! What must hold: the host stores only ciphertexts (no data key, no private key in any
//! file) and cannot choose the data key, on first boot or on restart; a restart of
//! either or both processes unseals the same keys and the log goes on; a tampered sealed
//! state, a tampered `CiphertextBlob`, a foreign attestation, a CMS addressed to another
//! key, a bad signature, an untrusted certificate and a relay presenting another one are
//! each refused with a clear error, the enclave keeps running (locked) and unsealing can
//! be retried; the attested commitment names the KMS key and the test CA.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::Engine;
use rusqlite::Connection;
use sealgate_attestation::nitro::Document;
use sealgate_shared::protocol::*;
use sealgate_tests::kms_double::{self, KmsDouble};
use sealgate_tests::{bin, cms, target_dir, wait_until, Deployment, Options};
use serde_bytes::ByteBuf;
use serde_json::{json, Value};
use sha2::{Digest, Sha384};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEY_ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
const REGION: &str = "us-east-1";
/// The enclave's associated data for state sealed under a KMS data key (enclave/src/seal.rs).
const KMS_AAD: &[u8] = b"sealgate-sealed-state/kms-data-key/v1";

fn pcr0_of_enclave_binary() -> Vec<u8> {
    let bytes = std::fs::read(target_dir().join("sealgate-enclave")).expect("read sealgate-enclave");
    Sha384::digest(bytes).to_vec()
}

fn double() -> KmsDouble {
    KmsDouble::start(KEY_ID, REGION, &pcr0_of_enclave_binary())
}

/// The host's environment: region and the (test) role credentials, no endpoint override,
/// so the enclave is told `kms.us-east-1.amazonaws.com`, as in production.
fn host_env(secret: &str) -> Vec<(String, String)> {
    [
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", kms_double::ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_SESSION_TOKEN", kms_double::SESSION_TOKEN),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// An enclave that reaches `via` (a double, or a relay) and trusts `ca` for KMS.
fn enclave_args(via: &str, ca: Option<&Path>) -> Vec<String> {
    let mut args: Vec<String> = vec!["--seal".into(), "kms".into(), "--kms-proxy".into(), via.into()];
    if let Some(ca) = ca {
        args.extend(["--sim-kms-ca".into(), ca.display().to_string()]);
    }
    args
}

/// The enclave pinned to the double's key (`--kms-key-arn`), as an EIF would be.
fn options(double: &KmsDouble) -> Options {
    let mut enclave_args = enclave_args(&double.proxy(), Some(&double.ca_file()));
    enclave_args.extend(["--kms-key-arn".into(), double.arn().to_string()]);
    Options {
        host_env: host_env(kms_double::SECRET_ACCESS_KEY),
        host_args: vec!["--kms-key-id".into(), KEY_ID.into()],
        enclave_args,
    }
}

/// Starts the enclave (locked, awaiting its data key) and hands its simulated NSM root
/// to the double; the host is not started.
fn locked(double: &KmsDouble, options: Options) -> Deployment {
    let mut d = Deployment::prepare(options);
    d.start_enclave();
    trust_root(&d, double);
    d
}

/// [`locked`], then the host.
fn start(double: &KmsDouble, options: Options) -> Deployment {
    let mut d = locked(double, options);
    d.start_host();
    d
}

fn trust_root(d: &Deployment, double: &KmsDouble) {
    let root = std::fs::read(d.path("enclave/sim-nsm/root.pem")).expect("the simulated NSM root");
    double.trust_root_pem(&root);
}

fn enclave_call(d: &Deployment, op: Op) -> Reply {
    d.enclave_call(op)
}

fn status(d: &Deployment) -> EnclaveStatus {
    match enclave_call(d, Op::Status) {
        Reply::Status(s) => s,
        other => panic!("{other:?}"),
    }
}

fn refused(reply: Reply) -> WireError {
    match reply {
        Reply::Error(e) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Runs `sealgate serve` with the deployment's settings (and `extra` arguments), expects
/// it to exit on its own with a failure, and returns what it printed.
fn host_must_refuse(d: &Deployment, options: &Options) -> String {
    let log = d.path("refused-host.log");
    let _ = std::fs::remove_file(&log);
    let out = std::fs::File::create(&log).expect("log file");
    let mut child = Command::new(bin("sealgate"))
        .arg("serve")
        .arg("--enclave")
        .arg(format!("unix:{}", d.socket().display()))
        .arg("--db")
        .arg(d.db_path())
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", d.port))
        .arg("--issuer")
        .arg(&d.url)
        .args(&options.host_args)
        .envs(options.host_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone"))
        .stderr(out)
        .spawn()
        .expect("spawn sealgate serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the host did not stop on its own: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!code.success(), "the host should have refused to serve: {text}");
    assert!(
        d.api().get("/healthz", None).0 == 0,
        "a refused host must not be listening"
    );
    text
}

fn mint(d: &Deployment, key: &str) -> Value {
    let (s, v) = d.api().post("/v1/tokens", Some(key), &json!({}));
    assert_eq!(s, 200, "{v}");
    v
}

fn kids(d: &Deployment) -> Vec<String> {
    let (s, jwks) = d.api().get("/.well-known/jwks.json", None);
    assert_eq!(s, 200, "{jwks}");
    let mut k: Vec<String> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_string())
        .collect();
    k.sort();
    k
}

fn checkpoint_size(d: &Deployment) -> u64 {
    let (_, cp) = d.api().get_text("/v1/audit/checkpoint", None);
    cp.lines().nth(1).and_then(|l| l.parse().ok()).expect("checkpoint size")
}

fn leaf_kinds(d: &Deployment) -> Vec<String> {
    let size = checkpoint_size(d);
    // Leaf contents need a key: the operator's reads every leaf.
    let (_, entries) = d
        .api()
        .get(&format!("/v1/audit/entries?start=0&end={size}"), Some(&d.admin_key()));
    entries["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(e["leaf"].as_str().expect("b64"))
                .expect("b64");
            serde_json::from_slice::<Value>(&bytes).expect("leaf")["kind"]
                .as_str()
                .expect("kind")
                .to_string()
        })
        .collect()
}

/// `(id, ciphertext_blob, sealed)` rows of the host's KMS table.
fn kms_rows(d: &Deployment) -> Vec<(i64, Vec<u8>, Option<Vec<u8>>)> {
    let c = Connection::open(d.db_path()).expect("open the host database");
    let mut st = c
        .prepare("SELECT id, ciphertext_blob, sealed FROM kms_sealed_state ORDER BY id")
        .expect("the kms_sealed_state table");
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
}

fn update_newest_sealed_row(d: &Deployment, column: &str, value: &[u8]) {
    let c = Connection::open(d.db_path()).expect("open the host database");
    let n = c
        .execute(
            &format!(
                "UPDATE kms_sealed_state SET {column} = ?1 WHERE id = \
                 (SELECT MAX(id) FROM kms_sealed_state WHERE sealed IS NOT NULL)"
            ),
            [value],
        )
        .expect("update");
    assert_eq!(n, 1);
}

/// Opens a sealed state with a data key, the way the enclave does.
fn open_sealed(data_key: &[u8; 32], blob: &[u8]) -> Option<Vec<u8>> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, data_key).ok()?);
    let (nonce, ct) = blob.split_at(NONCE_LEN);
    let mut buf = ct.to_vec();
    let plain = key
        .open_in_place(
            Nonce::try_assume_unique_for_key(nonce).ok()?,
            Aad::from(KMS_AAD),
            &mut buf,
        )
        .ok()?;
    Some(plain.to_vec())
}

/// Every byte string in a sealed state's plaintext (a CBOR map): the token keys (PKCS#8),
/// the checkpoint seed and the leaf MAC key.
fn private_key_material(plain: &[u8]) -> Vec<Vec<u8>> {
    fn collect(v: &ciborium::Value, out: &mut Vec<Vec<u8>>) {
        match v {
            ciborium::Value::Bytes(b) => out.push(b.clone()),
            ciborium::Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            ciborium::Value::Map(entries) => entries.iter().for_each(|(_, v)| collect(v, out)),
            _ => {}
        }
    }
    let value: ciborium::Value = ciborium::from_reader(plain).expect("the sealed state is CBOR");
    let mut strings = Vec::new();
    collect(&value, &mut strings);
    assert!(
        strings.len() >= 4,
        "token keys, checkpoint seed and MAC key: {}",
        strings.len()
    );
    // The secret part of each: 32-byte keys as they are; of a PKCS#8 P-256 key, the
    // private scalar (ECPrivateKey: version 1, then OCTET STRING of 32 bytes), not the
    // header every such key shares nor the public key that is published anyway.
    strings
        .into_iter()
        .map(|b| {
            if b.len() == 32 {
                return b;
            }
            let at = b
                .windows(5)
                .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
                .expect("an EC private key in PKCS#8");
            b[at + 5..at + 37].to_vec()
        })
        .collect()
}

/// Every regular file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            out.extend(files(&path));
        } else if meta.is_file() {
            out.push(path);
        }
    }
    out
}

/// Fails if any secret appears in any file under `dir`, raw, hex or base64.
#[track_caller]
fn assert_nowhere(dir: &Path, secrets: &[Vec<u8>]) {
    let b64 = base64::engine::general_purpose::STANDARD;
    for file in files(dir) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        for secret in secrets {
            let probe = secret.as_slice();
            let forms = [
                probe.to_vec(),
                hex::encode(probe).into_bytes(),
                b64.encode(probe).into_bytes(),
            ];
            for form in forms {
                assert!(
                    !bytes.windows(form.len()).any(|w| w == form.as_slice()),
                    "key material found in {}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn first_boot_seals_and_restarts_unseal_the_same_keys() {
    let double = double();
    let mut d = start(&double, options(&double));
    let api = d.api();
    let admin = d.admin_key();

    // First boot: one GenerateDataKey, the enclave unsealed and configured.
    let calls = double.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0].op.as_str(), calls[0].outcome.as_str()),
        ("GenerateDataKey", "ok")
    );
    let data_keys = double.issued_data_keys();
    assert_eq!(data_keys.len(), 1);
    let st = status(&d);
    assert_eq!((st.sealing, st.locked, st.mode), (Sealing::Kms, false, Mode::Sim));
    assert_eq!(st.pcr0.as_slice(), pcr0_of_enclave_binary().as_slice());

    // Tokens, and a rotation (which seals a new key set).
    let t = d.new_tenant();
    let first = mint(&d, &t.agent_key);
    let (s, r) = api.post("/v1/admin/keys/rotate", Some(&admin), &json!({}));
    assert_eq!(s, 200, "{r}");
    let new_kid = r["kid"].as_str().expect("kid").to_string();
    let before_kids = kids(&d);
    assert_eq!(before_kids.len(), 2);
    let second = mint(&d, &t.agent_key);

    // The database: the data key as KMS encrypted it, then the sealed states (the first
    // Hello's and the rotation's), all under that one data key.
    let rows = kms_rows(&d);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows[0].2.is_none());
    assert!(rows.iter().all(|r| r.1 == rows[0].1), "one data key");
    let arn = double.arn().as_bytes();
    assert!(
        rows[0].1.windows(arn.len()).any(|w| w == arn),
        "the double's CiphertextBlob"
    );
    let sealed: Vec<&Vec<u8>> = rows.iter().filter_map(|r| r.2.as_ref()).collect();
    assert_ne!(sealed[0], sealed[1]);
    assert_eq!(
        st.sealed_state.as_ref().map(|b| b.as_slice()),
        Some(sealed[0].as_slice())
    );
    assert_eq!(
        status(&d).sealed_state.as_ref().map(|b| b.as_slice()),
        Some(sealed[1].as_slice())
    );

    // Only ciphertexts on disk: the data key opens the newest sealed state (so it is what
    // the enclave sealed under), and neither it nor any private key it reveals is in any
    // file of the host's or the enclave's state.
    let plain = open_sealed(&data_keys[0], sealed[1]).expect("the data key opens the sealed state");
    let mut secrets = private_key_material(&plain);
    secrets.push(data_keys[0].to_vec());
    d.stop_host();
    assert_nowhere(d.dir.path(), &secrets);
    assert!(!d.path("enclave/sealed-state.bin").exists());
    assert!(!d.path("enclave/sim-sealing.key").exists());

    // Restart both: the stored data key (Decrypt) opens the stored state: same keys.
    d.kill9_enclave();
    d.start_enclave();
    d.start_host();
    assert_eq!(kids(&d), before_kids);
    let third = mint(&d, &t.agent_key);
    let kid_of = |token: &Value| {
        let header = token["token"]
            .as_str()
            .expect("token")
            .split('.')
            .next()
            .expect("header");
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .expect("b64"),
        )
        .expect("json");
        header["kid"].as_str().expect("kid").to_string()
    };
    assert_eq!(kid_of(&third), new_kid);
    assert_eq!(kid_of(&second), new_kid);
    assert_ne!(kid_of(&first), new_kid);
    assert!(third["log_index"].as_u64() > second["log_index"].as_u64());
    let calls = double.calls();
    assert_eq!(
        (
            calls.last().map(|c| c.op.as_str()),
            calls.last().map(|c| c.outcome.as_str())
        ),
        (Some("Decrypt"), Some("ok"))
    );
    assert_eq!(double.issued_data_keys().len(), 1, "no new data key on restart");

    // Only the enclave restarts: the running host unseals it again by itself.
    d.kill9_enclave();
    d.start_enclave();
    wait_until(
        "the host to unseal the restarted enclave",
        Duration::from_secs(40),
        || api.get("/readyz", None).0 == 200,
    );
    assert_eq!(kids(&d), before_kids);
    let fourth = mint(&d, &t.agent_key);
    assert_eq!(kid_of(&fourth), new_kid);
    let decrypts = double
        .calls()
        .iter()
        .filter(|c| c.op == "Decrypt" && c.outcome == "ok")
        .count();
    assert_eq!(decrypts, 2);

    // The log went on through both restarts, and an auditor verifies it.
    wait_until(
        "the checkpoint to cover the last token",
        Duration::from_secs(20),
        || checkpoint_size(&d) > fourth["log_index"].as_u64().expect("index"),
    );
    let kinds = leaf_kinds(&d);
    assert_eq!(kinds[0], "enclave.genesis");
    assert_eq!(kinds.iter().filter(|k| *k == "enclave.boot").count(), 2, "{kinds:?}");
    let root = d.path("enclave/sim-nsm/root.pem");
    let (code, out) = sealgate_tests::verify(&["all", "--url", &d.url, "--sim-root", root.to_str().expect("path")]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn tampered_ciphertexts_are_refused_and_the_enclave_stays_up() {
    let double = double();
    let opts = options(&double);
    let mut d = start(&double, opts.clone());
    let t = d.new_tenant();
    mint(&d, &t.agent_key);
    let before_kids = kids(&d);
    d.stop_host();
    d.kill9_enclave();
    d.start_enclave();
    let rows = kms_rows(&d);
    let (blob, sealed) = {
        let newest = rows.iter().rev().find(|r| r.2.is_some()).expect("a sealed state");
        (newest.1.clone(), newest.2.clone().expect("sealed"))
    };

    // A tampered sealed state: KMS releases the data key, the enclave refuses the state.
    let mut bad = sealed.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x01;
    update_newest_sealed_row(&d, "sealed", &bad);
    let log = host_must_refuse(&d, &opts);
    assert!(log.contains("KMS unsealing failed"), "{log}");
    assert!(log.contains("the sealed state does not open"), "{log}");
    let st = status(&d);
    assert!(st.locked, "still locked");
    assert_eq!(
        refused(enclave_call(&d, Op::Checkpoint)).code,
        ErrorCode::Locked,
        "everything but the sealing operations is refused while locked"
    );

    // A tampered CiphertextBlob: KMS itself refuses it.
    update_newest_sealed_row(&d, "sealed", &sealed);
    let mut bad_blob = blob.clone();
    let last = bad_blob.len() - 1;
    bad_blob[last] ^= 0x80;
    update_newest_sealed_row(&d, "ciphertext_blob", &bad_blob);
    let log = host_must_refuse(&d, &opts);
    assert!(log.contains("InvalidCiphertextException"), "{log}");
    assert!(log.contains("CiphertextBlob"), "{log}");
    assert!(status(&d).locked);
    assert_eq!(
        double.calls().last().map(|c| (c.op.clone(), c.outcome.clone())),
        Some(("Decrypt".into(), "InvalidCiphertextException".into()))
    );

    // Both restored: the same enclave process unseals on the next try.
    update_newest_sealed_row(&d, "ciphertext_blob", &blob);
    d.start_host();
    assert_eq!(kids(&d), before_kids);
    mint(&d, &t.agent_key);
    assert_eq!(double.issued_data_keys().len(), 1);
}

#[test]
fn a_foreign_attestation_is_denied_by_the_key_policy() {
    // The key policy pins another image's PCR0.
    let double = KmsDouble::start(KEY_ID, REGION, &Sha384::digest(b"some other enclave image"));
    let opts = options(&double);
    let mut d = locked(&double, opts.clone());

    let log = host_must_refuse(&d, &opts);
    assert!(log.contains("AccessDeniedException"), "{log}");
    assert!(log.contains("ImageSha384"), "{log}");
    assert!(
        log.contains(&hex::encode(pcr0_of_enclave_binary())),
        "the message names the enclave's PCR0: {log}"
    );
    assert!(status(&d).locked, "the enclave keeps running, locked");
    assert!(double.issued_data_keys().is_empty(), "no data key was released");
    assert!(kms_rows(&d).is_empty(), "nothing stored");

    // Once the policy names this image, the same enclave unseals.
    double.require_image_sha384(&pcr0_of_enclave_binary());
    d.start_host();
    let t = d.new_tenant();
    mint(&d, &t.agent_key);
    assert_eq!(double.issued_data_keys().len(), 1);
}

#[test]
fn a_cms_for_another_recipient_is_refused() {
    let double = double();
    let opts = options(&double);
    let mut d = locked(&double, opts.clone());

    // KMS (or something between) encrypts the data key to another RSA key.
    double.misaddress(true);
    let log = host_must_refuse(&d, &opts);
    assert!(log.contains("the enclave refused to unseal"), "{log}");
    assert!(log.contains("content-encryption key"), "{log}");
    assert!(status(&d).locked);

    double.misaddress(false);
    d.start_host();
    assert!(!status(&d).locked);
}

/// The sealing operations straight on the enclave's socket, as a malicious host could
/// send them.
#[test]
fn unseal_protocol_rules() {
    let double = double();
    let mut d = locked(&double, options(&double));
    let config = EnclaveConfig {
        issuer: d.url.clone(),
        audiences: vec!["sts.amazonaws.com".into()],
        ttl_min_seconds: 60,
        ttl_max_seconds: 3600,
        log_origin: format!("127.0.0.1:{}/log", d.port),
        witnesses: vec![],
        witness_quorum: 0,
    };
    let hello = |d: &Deployment| {
        enclave_call(
            d,
            Op::Hello {
                protocol_version: sealgate_shared::PROTOCOL_VERSION,
                config: config.clone(),
            },
        )
    };

    // Locked: only Status, RecipientAttest and UnsealKms are answered.
    assert_eq!(refused(hello(&d)).code, ErrorCode::Locked);
    assert_eq!(
        refused(enclave_call(&d, Op::Attest { nonce: None })).code,
        ErrorCode::Locked
    );
    let st = status(&d);
    assert!(st.locked && st.ciphertext_blob.is_none(), "{st:?}");

    // The removed Unseal is a typed refusal, whatever it carries (a well-formed CMS to
    // the recipient key included), not a closed connection.
    let doc = match enclave_call(&d, Op::RecipientAttest { nonce: None }) {
        Reply::RecipientAttestation(a) => a.document.into_vec(),
        other => panic!("{other:?}"),
    };
    let doc = Document::decode(&doc).expect("an attestation document");
    assert_eq!(doc.user_data.as_deref(), Some(&b"sealgate kms recipient v1"[..]));
    let spki = doc.public_key.expect("the recipient key");
    for sealed in [None, Some(ByteBuf::from(vec![0u8; 64]))] {
        let e = refused(enclave_call(
            &d,
            Op::Unseal {
                ciphertext_for_recipient: ByteBuf::from(cms::envelope(&spki, &[0x42; 32]).expect("cms")),
                sealed_state: sealed,
            },
        ));
        assert_eq!(e.code, ErrorCode::UnsealRejected, "{e:?}");
        assert!(e.message.contains("no longer accepted"), "{e:?}");
    }
    assert!(status(&d).locked);
    assert!(double.calls().is_empty(), "nothing reached KMS");

    // The host's part: after it, the enclave reports the data key it seals under, and
    // refuses a second unseal.
    d.start_host();
    let st = status(&d);
    assert!(!st.locked);
    let rows = kms_rows(&d);
    assert_eq!(
        st.ciphertext_blob.as_ref().map(|b| b.as_slice()),
        Some(rows[0].1.as_slice())
    );
    assert_eq!(
        refused(enclave_call(&d, Op::RecipientAttest { nonce: None })).code,
        ErrorCode::BadRequest
    );
    let again = Op::UnsealKms(KmsUnseal {
        region: REGION.into(),
        key_id: KEY_ID.into(),
        endpoint_host: format!("kms.{REGION}.amazonaws.com"),
        credentials: AwsCredentials {
            access_key_id: kms_double::ACCESS_KEY_ID.into(),
            secret_access_key: kms_double::SECRET_ACCESS_KEY.into(),
            session_token: Some(kms_double::SESSION_TOKEN.into()),
        },
        stored: None,
    });
    let e = refused(enclave_call(&d, again));
    assert_eq!(e.code, ErrorCode::BadRequest, "already unsealed: {e:?}");
    assert_eq!(double.issued_data_keys().len(), 1);
}

/// The attested commitment names the KMS key (as KMS reported it) and the test CA's
/// fingerprint, and `sealgate-verify attest` checks the digest over them and shows them.
#[test]
fn the_commitment_attests_the_kms_key_and_the_test_ca() {
    let double = double();
    let d = start(&double, options(&double));
    let pem = std::fs::read_to_string(double.ca_file()).expect("the CA");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).expect("PEM body");
    let fingerprint = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&der)));

    let (s, att) = d.api().get("/v1/attestation", None);
    assert_eq!(s, 200, "{att}");
    assert_eq!(att["commitment"]["kms_ca"], json!(fingerprint), "{att}");
    assert_eq!(att["commitment"]["kms_key"], json!(double.arn()), "{att}");
    let bytes = att["commitment_json"].as_str().expect("commitment_json");
    assert!(
        bytes.ends_with(&format!(r#","kms_key":"{}","kms_ca":"{fingerprint}"}}"#, double.arn())),
        "{bytes}"
    );
    assert_eq!(att["mode"], json!("sim"), "a test CA makes the enclave a simulated one");

    let root = d.path("enclave/sim-nsm/root.pem");
    let (code, out) = sealgate_tests::verify(&["attest", "--url", &d.url, "--sim-root", root.to_str().expect("path")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&fingerprint), "{out}");
    assert!(out.contains(double.arn()), "{out}");
}

/// KMS checks the signature: a host whose credentials do not match signs requests KMS
/// refuses, and the operator reads why.
#[test]
fn a_bad_signature_is_refused() {
    let double = double();
    let mut opts = options(&double);
    opts.host_env = host_env("not-the-secret");
    let d = locked(&double, opts.clone());
    let log = host_must_refuse(&d, &opts);
    assert!(log.contains("InvalidSignatureException"), "{log}");
    assert!(status(&d).locked);
    assert_eq!(
        double.calls(),
        vec![kms_double::Call {
            op: "GenerateDataKey".into(),
            outcome: "InvalidSignatureException".into()
        }]
    );
    assert!(double.issued_data_keys().is_empty());
}

/// Without `--sim-kms-ca` the enclave trusts only the public web roots, so the double's
/// certificate (for kms.us-east-1.amazonaws.com, under a test CA) is refused in the TLS
/// handshake, and the host names the cause.
#[test]
fn without_the_sim_flag_the_test_ca_is_refused() {
    let double = double();
    let mut opts = options(&double);
    opts.enclave_args = enclave_args(&double.proxy(), None);
    let d = locked(&double, opts.clone());
    let log = host_must_refuse(&d, &opts);
    assert!(log.contains("TLS to kms.us-east-1.amazonaws.com failed"), "{log}");
    assert!(log.contains("invalid peer certificate"), "{log}");
    assert!(log.contains("the public web roots"), "{log}");
    assert!(status(&d).locked);
    assert!(double.calls().is_empty(), "no request was sent: {:?}", double.calls());
}

/// A relay between the enclave and KMS (the host, or anything on the proxy's path) that
/// terminates TLS itself with a certificate of its own — here another double, under its
/// own CA — is refused: TLS ends in the enclave, under the one CA it was started with.
#[test]
fn a_relay_presenting_another_certificate_is_refused() {
    let double = double();
    let mitm = KmsDouble::start(KEY_ID, REGION, &pcr0_of_enclave_binary());
    let mut opts = options(&double);
    opts.enclave_args = enclave_args(&mitm.proxy(), Some(&double.ca_file()));
    let d = locked(&double, opts.clone());
    trust_root(&d, &mitm);
    let log = host_must_refuse(&d, &opts);
    assert!(log.contains("invalid peer certificate"), "{log}");
    assert!(log.contains("only the simulator KMS CA sha256:"), "{log}");
    assert!(status(&d).locked);
    assert!(mitm.calls().is_empty(), "the relay saw no request: {:?}", mitm.calls());
    assert!(mitm.issued_data_keys().is_empty() && double.issued_data_keys().is_empty());
}

#[test]
fn mismatched_host_and_enclave_sealing_are_named() {
    // A host without --kms-key-id in front of a KMS-sealed enclave.
    let double = double();
    let kms = options(&double);
    let mut d = Deployment::prepare(kms.clone());
    d.start_enclave();
    let plain = Options {
        host_args: vec![],
        ..kms.clone()
    };
    let log = host_must_refuse(&d, &plain);
    assert!(log.contains("--kms-key-id"), "{log}");
    assert!(status(&d).locked);
    d.kill9_enclave();

    // A host with --kms-key-id in front of an enclave that seals locally.
    let mut d = Deployment::prepare(Options {
        enclave_args: vec![],
        ..kms.clone()
    });
    d.start_enclave();
    let log = host_must_refuse(&d, &kms);
    assert!(log.contains("--seal kms"), "{log}");
    assert!(double.calls().is_empty(), "KMS was never asked");
}

/// Break 1 of issue 11: a host that wraps a data key it chose to the enclave's recipient
/// key (the public key is in every recipient attestation document, so anyone can build
/// the CMS) and hands it in with no sealed state. Before the fix the enclave took it, on
/// first boot and on every restart alike, generated fresh keys and sealed them under the
/// host's key, so the host could open the sealed state and hold the signing keys. The
/// enclave must refuse any data key the host supplies: it takes data keys only from KMS,
/// over TLS it terminates itself.
#[test]
fn a_host_chosen_data_key_is_refused_on_first_boot_and_on_restart() {
    let double = double();
    let opts = options(&double);
    let mut d = locked(&double, opts.clone());
    let known_key = [0x66u8; 32];
    let attack = |d: &Deployment| {
        let doc = match enclave_call(d, Op::RecipientAttest { nonce: None }) {
            Reply::RecipientAttestation(a) => a.document.into_vec(),
            other => panic!("{other:?}"),
        };
        let spki = Document::decode(&doc)
            .expect("an attestation document")
            .public_key
            .expect("the recipient key");
        enclave_call(
            d,
            Op::Unseal {
                ciphertext_for_recipient: ByteBuf::from(cms::envelope(&spki, &known_key).expect("cms")),
                sealed_state: None,
            },
        )
    };
    let hello = |d: &Deployment| {
        enclave_call(
            d,
            Op::Hello {
                protocol_version: sealgate_shared::PROTOCOL_VERSION,
                config: EnclaveConfig {
                    issuer: d.url.clone(),
                    audiences: vec!["sts.amazonaws.com".into()],
                    ttl_min_seconds: 60,
                    ttl_max_seconds: 3600,
                    log_origin: format!("127.0.0.1:{}/log", d.port),
                    witnesses: vec![],
                    witness_quorum: 0,
                },
            },
        )
    };
    // What the host would learn if the enclave took its key: the sealed state opens.
    let host_reads_the_keys = |d: &Deployment| match hello(d) {
        Reply::Hello(h) => h
            .sealed_state
            .is_some_and(|s| open_sealed(&known_key, s.as_slice()).is_some()),
        _ => false,
    };

    // First boot.
    let reply = attack(&d);
    assert!(
        !host_reads_the_keys(&d),
        "first boot: the enclave took the host's data key ({reply:?}) and the host opens the sealed state"
    );
    assert_eq!(refused(reply).code, ErrorCode::UnsealRejected);
    assert!(status(&d).locked, "still locked after the refusal");

    // An honest first boot through KMS, then a restart of the enclave: the host again
    // claims "first boot" with a key of its own instead of handing back the sealed state.
    d.start_host();
    let before = kids(&d);
    d.stop_host();
    d.kill9_enclave();
    d.start_enclave();
    let reply = attack(&d);
    assert!(
        !host_reads_the_keys(&d),
        "restart: the enclave took the host's data key ({reply:?}) and the host opens the sealed state"
    );
    assert_eq!(refused(reply).code, ErrorCode::UnsealRejected);
    assert!(status(&d).locked);

    // The honest host still unseals the same enclave, with the same keys.
    d.start_host();
    assert_eq!(kids(&d), before);
    assert_eq!(double.issued_data_keys().len(), 1, "no second data key");
}

/// A host that names a KMS key it controls could decrypt the data key's CiphertextBlob
/// itself (its policy, not the enclave's, decides). A pinned enclave asks KMS for its
/// own key whatever the host names: here the host names a key the double does not
/// hold, and the enclave unseals all the same, under the pinned key, which it attests.
#[test]
fn a_pinned_enclave_asks_for_its_own_key_whatever_the_host_names() {
    let double = double();
    let mut opts = options(&double);
    opts.host_args = vec!["--kms-key-id".into(), "host-controlled-key".into()];
    let d = start(&double, opts);
    let (s, att) = d.api().get("/v1/attestation", None);
    assert_eq!(s, 200, "{att}");
    assert_eq!(att["commitment"]["kms_key"], double.arn(), "{att}");
}

/// Pinned to a key KMS will not use for it, the enclave stays locked and the host
/// stops with KMS's answer; a bad pin is refused at start.
#[test]
fn a_pin_to_another_key_keeps_the_enclave_locked() {
    let double = double();
    let mut opts = options(&double);
    let other = "arn:aws:kms:us-east-1:999999999999:key/not-this-deployments-key";
    let at = opts.enclave_args.len() - 1;
    opts.enclave_args[at] = other.to_string();
    let d = locked(&double, opts.clone());
    let text = host_must_refuse(&d, &opts);
    assert!(text.contains("NotFoundException"), "{text}");
    assert!(status(&d).locked, "the enclave must stay locked");

    let out = Command::new(bin("sealgate-enclave"))
        .args([
            "--listen",
            "unix:/nonexistent/x.sock",
            "--seal",
            "kms",
            "--nsm",
            "sim",
            "--state",
        ])
        .arg(d.path("other-state"))
        .args(["--kms-key-arn", "alias/sealgate"])
        .output()
        .expect("run sealgate-enclave");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a KMS key ARN"), "{err}");
}
