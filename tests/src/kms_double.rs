//! A KMS test double for the `Recipient` (attested enclave) flow.
//!
//! Why a double and not the emulator: moto (see `../shared/AWS-EMULATOR.md`) accepts the
//! `Recipient` parameter of `GenerateDataKey` / `Decrypt` and ignores it — it returns the
//! plaintext data key and no `CiphertextForRecipient` — so nothing local checks an
//! attestation document against a key policy or encrypts to the enclave's key. This
//! double does exactly that part, and nothing else:
//!
//! - it speaks KMS's real wire protocol (HTTP POST, `X-Amz-Target: TrentService.<Op>`,
//!   `application/x-amz-json-1.1`, base64 blobs, errors as `{"__type", "message"}` with
//!   `x-amzn-errortype`) to the real `aws-sdk-kms` client the host uses; it checks that
//!   requests carry a SigV4 `Authorization` header but not the signature itself;
//! - with a `Recipient`, it verifies the attestation document with the auditor's own
//!   verifier (`sealgate-attestation`: COSE ES384 signature, certificate chain to the
//!   simulator root the test hands it, freshness), applies the condition a real key
//!   policy would (`kms:RecipientAttestation:ImageSha384` = the configured PCR0, else
//!   `AccessDeniedException`), and answers `CiphertextForRecipient` — a real CMS
//!   EnvelopedData to the document's `public_key` ([`crate::cms`]) — and no `Plaintext`,
//!   as KMS does;
//! - `CiphertextBlob` is its own AES-256-GCM encryption of the data key under an
//!   in-memory master key, bound to the key ARN: opaque to the host, and a tampered or
//!   foreign blob is refused with `InvalidCiphertextException` / `IncorrectKeyException`.
//!
//! Every data key it issues is recorded ([`KmsDouble::issued_data_keys`]) so tests can
//! prove none of them ever reaches the host's disk.

use crate::cms;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sealgate_attestation::nitro::{verify_chain, verify_signature, Document, TrustRoot};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The account the double pretends to be.
pub const ACCOUNT: &str = "111122223333";
/// How old an attestation document may be. KMS documents this as a few minutes; five is
/// what the double enforces.
pub const MAX_DOCUMENT_AGE: Duration = Duration::from_secs(300);

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Format byte of the double's `CiphertextBlob`.
const BLOB_VERSION: u8 = 1;

/// One request the double answered: the operation and `ok` or the error type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub op: String,
    pub outcome: String,
}

struct Inner {
    key_id: String,
    arn: String,
    master: LessSafeKey,
    rng: SystemRandom,
    root: Mutex<Option<TrustRoot>>,
    image_sha384: Mutex<Vec<u8>>,
    misaddress: AtomicBool,
    issued: Mutex<Vec<[u8; 32]>>,
    calls: Mutex<Vec<Call>>,
    request_ids: AtomicU64,
}

/// A running double on `127.0.0.1`; stops when dropped.
pub struct KmsDouble {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_KMS`.
    pub url: String,
    inner: Arc<Inner>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A KMS error: the exception name (`__type`) and its message.
struct KmsError {
    kind: &'static str,
    message: String,
}

fn fail(kind: &'static str, message: impl Into<String>) -> KmsError {
    KmsError {
        kind,
        message: message.into(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl KmsDouble {
    /// Starts a double holding one symmetric key `key_id` in `region`, whose key policy
    /// releases data keys only to documents with PCR0 = `image_sha384`. The simulator
    /// root documents must chain to is given later ([`KmsDouble::trust_root_pem`]),
    /// because the enclave creates it at its first start; until then every `Recipient`
    /// request is refused.
    pub fn start(key_id: &str, region: &str, image_sha384: &[u8]) -> Self {
        let rng = SystemRandom::new();
        let mut master = [0u8; 32];
        rng.fill(&mut master).expect("rng");
        let inner = Arc::new(Inner {
            key_id: key_id.to_string(),
            arn: format!("arn:aws:kms:{region}:{ACCOUNT}:key/{key_id}"),
            master: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &master).expect("aes key")),
            rng,
            root: Mutex::new(None),
            image_sha384: Mutex::new(image_sha384.to_vec()),
            misaddress: AtomicBool::new(false),
            issued: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
            request_ids: AtomicU64::new(1),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the KMS double");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(axum::routing::any(handle))
            .with_state(inner.clone());
        let thread = std::thread::Builder::new()
            .name("kms-double".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })
            .expect("spawn the KMS double");
        Self {
            url,
            inner,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The key's ARN (what `KeyId` in answers says).
    pub fn arn(&self) -> &str {
        &self.inner.arn
    }

    /// Trusts documents that chain to this simulator root (PEM or DER).
    pub fn trust_root_pem(&self, pem: &[u8]) {
        let root = TrustRoot::simulator(pem, "sealgate simulator root (KMS double)").expect("a simulator root");
        *lock(&self.inner.root) = Some(root);
    }

    /// Changes the PCR0 the key policy requires.
    pub fn require_image_sha384(&self, pcr0: &[u8]) {
        *lock(&self.inner.image_sha384) = pcr0.to_vec();
    }

    /// Fault: address `CiphertextForRecipient` to a freshly generated RSA key instead of
    /// the document's, as if KMS (or something between) encrypted to the wrong recipient.
    pub fn misaddress(&self, on: bool) {
        self.inner.misaddress.store(on, Ordering::SeqCst);
    }

    /// Every data key the double generated, in order.
    pub fn issued_data_keys(&self) -> Vec<[u8; 32]> {
        lock(&self.inner.issued).clone()
    }

    /// Every request answered so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.inner.calls).clone()
    }
}

impl Drop for KmsDouble {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn handle(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let op = target.strip_prefix("TrentService.").unwrap_or(&target).to_string();
    let result = answer(&inner, &headers, &op, &body);
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => e.kind.to_string(),
    };
    lock(&inner.calls).push(Call { op, outcome });
    let request_id = format!(
        "00000000-0000-4000-8000-{:012x}",
        inner.request_ids.fetch_add(1, Ordering::Relaxed)
    );
    match result {
        Ok(v) => (
            StatusCode::OK,
            [
                ("content-type", "application/x-amz-json-1.1".to_string()),
                ("x-amzn-requestid", request_id),
            ],
            v.to_string(),
        )
            .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            [
                ("content-type", "application/x-amz-json-1.1".to_string()),
                ("x-amzn-requestid", request_id),
                ("x-amzn-errortype", e.kind.to_string()),
            ],
            json!({ "__type": e.kind, "message": e.message }).to_string(),
        )
            .into_response(),
    }
}

fn answer(inner: &Inner, headers: &HeaderMap, op: &str, body: &[u8]) -> Result<Value, KmsError> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type != "application/x-amz-json-1.1" {
        return Err(fail(
            "SerializationException",
            format!("content type {content_type:?} is not application/x-amz-json-1.1"),
        ));
    }
    let signed = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential="));
    if !signed {
        return Err(fail(
            "MissingAuthenticationTokenException",
            "Request is missing Authentication Token",
        ));
    }
    let req: Value =
        serde_json::from_slice(body).map_err(|e| fail("SerializationException", format!("body is not JSON: {e}")))?;
    match op {
        "GenerateDataKey" => generate_data_key(inner, &req),
        "Decrypt" => decrypt(inner, &req),
        other => Err(fail(
            "UnknownOperationException",
            format!("the KMS double does not implement {other:?}"),
        )),
    }
}

fn text<'a>(req: &'a Value, field: &str) -> Result<Option<&'a str>, KmsError> {
    match req.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(fail("SerializationException", format!("{field} is not a string"))),
    }
}

fn blob(req: &Value, field: &str) -> Result<Option<Vec<u8>>, KmsError> {
    text(req, field)?
        .map(|s| {
            B64.decode(s)
                .map_err(|_| fail("SerializationException", format!("{field} is not base64")))
        })
        .transpose()
}

/// `KeyId` may be the key id or its ARN (aliases are not modelled).
fn check_key_id(inner: &Inner, key_id: &str) -> Result<(), KmsError> {
    if key_id == inner.key_id || key_id == inner.arn {
        Ok(())
    } else {
        Err(fail(
            "NotFoundException",
            format!("Key 'arn:aws:kms:…:{ACCOUNT}:key/{key_id}' does not exist"),
        ))
    }
}

fn generate_data_key(inner: &Inner, req: &Value) -> Result<Value, KmsError> {
    let key_id = text(req, "KeyId")?.ok_or_else(|| fail("ValidationException", "KeyId is required"))?;
    check_key_id(inner, key_id)?;
    let spec_ok = match (text(req, "KeySpec")?, req.get("NumberOfBytes")) {
        (Some("AES_256"), None) => true,
        (None, Some(n)) => n.as_u64() == Some(32),
        _ => false,
    };
    if !spec_ok {
        return Err(fail(
            "ValidationException",
            "the double issues only 32-byte data keys (KeySpec AES_256)",
        ));
    }
    let recipient_key = recipient(inner, req, "GenerateDataKey")?;
    let mut data_key = [0u8; 32];
    inner
        .rng
        .fill(&mut data_key)
        .map_err(|_| fail("KMSInternalException", "rng"))?;
    lock(&inner.issued).push(data_key);
    let ciphertext_blob = seal_blob(inner, &data_key)?;
    let mut out = json!({
        "CiphertextBlob": B64.encode(ciphertext_blob),
        "KeyId": inner.arn,
    });
    match recipient_key {
        Some(spki) => out["CiphertextForRecipient"] = json!(B64.encode(envelope(inner, &spki, &data_key)?)),
        None => out["Plaintext"] = json!(B64.encode(data_key)),
    }
    Ok(out)
}

fn decrypt(inner: &Inner, req: &Value) -> Result<Value, KmsError> {
    if let Some(key_id) = text(req, "KeyId")? {
        check_key_id(inner, key_id)?;
    }
    let ciphertext =
        blob(req, "CiphertextBlob")?.ok_or_else(|| fail("ValidationException", "CiphertextBlob is required"))?;
    let data_key = open_blob(inner, &ciphertext)?;
    let recipient_key = recipient(inner, req, "Decrypt")?;
    let mut out = json!({
        "KeyId": inner.arn,
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    });
    match recipient_key {
        Some(spki) => out["CiphertextForRecipient"] = json!(B64.encode(envelope(inner, &spki, &data_key)?)),
        None => out["Plaintext"] = json!(B64.encode(data_key)),
    }
    Ok(out)
}

fn envelope(inner: &Inner, spki: &[u8], data_key: &[u8; 32]) -> Result<Vec<u8>, KmsError> {
    let to = if inner.misaddress.load(Ordering::SeqCst) {
        sealgate_enclave::kms::RecipientKey::generate()
            .map_err(|_| fail("KMSInternalException", "rsa"))?
            .spki_der()
            .to_vec()
    } else {
        spki.to_vec()
    };
    cms::envelope(&to, data_key).map_err(|e| fail("KMSInternalException", e.to_string()))
}

/// Checks `Recipient` if present and returns the public key to encrypt to. The order of
/// checks is KMS's: the request must be valid before the policy is evaluated.
fn recipient(inner: &Inner, req: &Value, op: &str) -> Result<Option<Vec<u8>>, KmsError> {
    let Some(r) = req.get("Recipient").filter(|r| !r.is_null()) else {
        return Ok(None);
    };
    match text(r, "KeyEncryptionAlgorithm")? {
        Some("RSAES_OAEP_SHA_256") => {}
        other => {
            return Err(fail(
                "ValidationException",
                format!("KeyEncryptionAlgorithm {other:?} is not RSAES_OAEP_SHA_256"),
            ))
        }
    }
    let document = blob(r, "AttestationDocument")?
        .ok_or_else(|| fail("ValidationException", "AttestationDocument is required"))?;
    let invalid = |why: String| {
        fail(
            "ValidationException",
            format!("the attestation document is not valid: {why}"),
        )
    };
    let doc = Document::decode(&document).map_err(invalid)?;
    let root = lock(&inner.root)
        .clone()
        .ok_or_else(|| invalid("no trusted root is configured in the KMS double".into()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| fail("KMSInternalException", "clock"))?;
    verify_chain(&doc, &root, now.as_secs()).map_err(invalid)?;
    verify_signature(&doc).map_err(invalid)?;
    let age_ms = (now.as_millis() as u64).saturating_sub(doc.timestamp_ms);
    if age_ms > MAX_DOCUMENT_AGE.as_millis() as u64 || doc.timestamp_ms > now.as_millis() as u64 + 60_000 {
        return Err(invalid(format!("its timestamp {} ms is not recent", doc.timestamp_ms)));
    }
    let public_key = doc
        .public_key
        .clone()
        .ok_or_else(|| invalid("it carries no public_key".into()))?;
    // The key policy: kms:RecipientAttestation:ImageSha384 must equal the enclave image.
    let wanted = lock(&inner.image_sha384).clone();
    if doc.pcrs.get(&0).map(Vec::as_slice) != Some(wanted.as_slice()) {
        return Err(fail(
            "AccessDeniedException",
            format!(
                "User: arn:aws:sts::{ACCOUNT}:assumed-role/sealgate-host/i-0 is not authorized to perform: kms:{op} \
                 on resource: {} because no resource-based policy allows the kms:{op} action \
                 (kms:RecipientAttestation:ImageSha384 {} does not match the policy)",
                inner.arn,
                doc.pcrs.get(&0).map(hex::encode).unwrap_or_else(|| "(absent)".into())
            ),
        ));
    }
    Ok(Some(public_key))
}

/// `version ‖ len(arn) ‖ arn ‖ nonce ‖ AES-256-GCM(master, data key, aad = arn)`.
fn seal_blob(inner: &Inner, data_key: &[u8; 32]) -> Result<Vec<u8>, KmsError> {
    let mut nonce = [0u8; NONCE_LEN];
    inner
        .rng
        .fill(&mut nonce)
        .map_err(|_| fail("KMSInternalException", "rng"))?;
    let mut ct = data_key.to_vec();
    inner
        .master
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(inner.arn.as_bytes()),
            &mut ct,
        )
        .map_err(|_| fail("KMSInternalException", "seal"))?;
    let arn = inner.arn.as_bytes();
    let mut out = vec![BLOB_VERSION, arn.len() as u8];
    out.extend_from_slice(arn);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open_blob(inner: &Inner, blob: &[u8]) -> Result<[u8; 32], KmsError> {
    let invalid = || fail("InvalidCiphertextException", "");
    let [version, arn_len, rest @ ..] = blob else {
        return Err(invalid());
    };
    if *version != BLOB_VERSION || rest.len() < *arn_len as usize + NONCE_LEN {
        return Err(invalid());
    }
    let (arn, rest) = rest.split_at(*arn_len as usize);
    if arn != inner.arn.as_bytes() {
        return Err(fail(
            "IncorrectKeyException",
            "The key ID in the request does not identify a KMS key that can perform this operation.",
        ));
    }
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| invalid())?;
    let mut buf = ct.to_vec();
    let plain = inner
        .master
        .open_in_place(nonce, Aad::from(arn), &mut buf)
        .map_err(|_| invalid())?;
    <[u8; 32]>::try_from(&plain[..]).map_err(|_| invalid())
}
