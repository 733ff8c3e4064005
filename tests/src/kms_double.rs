//! A KMS test double for the `Recipient` (attested enclave) flow.
//!
//! Why a double and not the emulator: moto (see `docs/TESTING.md` §4) accepts the
//! `Recipient` parameter of `GenerateDataKey` / `Decrypt` and ignores it — it returns the
//! plaintext data key and no `CiphertextForRecipient` — so nothing local checks an
//! attestation document against a key policy or encrypts to the enclave's key. This
//! double does exactly that part, and nothing else:
//!
//! - it speaks KMS's real wire protocol (HTTP POST, `X-Amz-Target: TrentService.<Op>`,
//!   `application/x-amz-json-1.1`, base64 blobs, errors as `{"__type", "message"}` with
//!   `x-amzn-errortype`) over HTTPS, to the enclave's own KMS client: TLS under a test CA
//!   generated per double ([`KmsDouble::ca_file`], for the enclave's `--sim-kms-ca`),
//!   with a server certificate for `kms.<region>.amazonaws.com`, `localhost` and
//!   `127.0.0.1`, so the enclave reaches it through `--kms-proxy tcp:…` exactly as it
//!   reaches KMS through vsock-proxy;
//! - it verifies SigV4: the credential scope (access key, date, region, `kms`), the
//!   signed headers, and the signature itself, recomputed with `aws-sigv4` from the
//!   test credentials ([`ACCESS_KEY_ID`] …) — a wrong one is `InvalidSignatureException`;
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
use base64::Engine as _;
use sealgate_attestation::nitro::{verify_chain, verify_signature, Document, TrustRoot};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The credentials the double accepts (the host's environment in the tests).
pub const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
pub const SESSION_TOKEN: &str = "FwoGZXIvYXdzEXAMPLEsessiontoken";

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
    region: String,
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

/// A running double on `127.0.0.1`; stops accepting when dropped.
pub struct KmsDouble {
    /// `127.0.0.1:PORT`, where it serves HTTPS.
    pub addr: String,
    inner: Arc<Inner>,
    ca_pem: PathBuf,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
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
            region: region.to_string(),
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
        let (dir, ca_pem, tls) = test_ca(region);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the KMS double");
        let addr = listener.local_addr().expect("local addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (state, stopped) = (inner.clone(), stop.clone());
        std::thread::Builder::new()
            .name("kms-double".into())
            .spawn(move || {
                for tcp in listener.incoming().flatten() {
                    if stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    let (state, tls) = (state.clone(), tls.clone());
                    std::thread::spawn(move || {
                        let _ = serve_one(tcp, tls, &state);
                    });
                }
            })
            .expect("spawn the KMS double");
        Self {
            addr,
            inner,
            ca_pem,
            stop,
            _dir: dir,
        }
    }

    /// `--kms-proxy` for an enclave that reaches this double directly.
    pub fn proxy(&self) -> String {
        format!("tcp:{}", self.addr)
    }

    /// The double's test CA (PEM), for the enclave's `--sim-kms-ca`.
    pub fn ca_file(&self) -> PathBuf {
        self.ca_pem.clone()
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
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(&self.addr);
    }
}

/// A CA and a server certificate it issued, the CA written as PEM into a temporary
/// directory; one per double, so another double's certificate is a stranger's.
fn test_ca(region: &str) -> (tempfile::TempDir, PathBuf, Arc<rustls::ServerConfig>) {
    let ca = crate::test_ca::TestCa::new(
        "sealgate KMS double test CA",
        vec![
            format!("kms.{region}.amazonaws.com"),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ],
        "kms-double-ca.pem",
    );
    (ca.dir, ca.pem_path, ca.server)
}

/// One HTTPS request: parse it, answer it, record it, close.
fn serve_one(tcp: std::net::TcpStream, tls: Arc<rustls::ServerConfig>, inner: &Inner) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    let conn = rustls::ServerConnection::new(tls).map_err(std::io::Error::other)?;
    let mut reader = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    let crate::http1::Request {
        method,
        path,
        headers,
        body,
    } = crate::http1::read_request(&mut reader)?;
    let target = headers.get("x-amz-target").cloned().unwrap_or_default();
    let op = target.strip_prefix("TrentService.").unwrap_or(&target).to_string();
    let result = if method != "POST" || path != "/" {
        Err(fail("UnknownOperationException", format!("{method} {path}")))
    } else {
        answer(inner, &headers, &op, &body)
    };
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => e.kind.to_string(),
    };
    lock(&inner.calls).push(Call { op, outcome });
    let request_id = format!(
        "00000000-0000-4000-8000-{:012x}",
        inner.request_ids.fetch_add(1, Ordering::Relaxed)
    );
    let (status, extra, body) = match result {
        Ok(v) => ("200 OK", String::new(), v.to_string()),
        Err(e) => (
            "400 Bad Request",
            format!("x-amzn-errortype: {}\r\n", e.kind),
            json!({ "__type": e.kind, "message": e.message }).to_string(),
        ),
    };
    let stream = reader.get_mut();
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-requestid: {request_id}\r\n\
         {extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()?;
    stream.conn.send_close_notify();
    stream.flush()
}

/// Verifies the request's SigV4 signature by signing the same request again with
/// `aws-sigv4` and the test credentials at the request's own `x-amz-date`.
fn check_sigv4(inner: &Inner, headers: &BTreeMap<String, String>, body: &[u8]) -> Result<(), KmsError> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let missing = || {
        fail(
            "MissingAuthenticationTokenException",
            "Request is missing Authentication Token",
        )
    };
    let auth = headers.get("authorization").ok_or_else(missing)?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 Credential=").ok_or_else(missing)?;
    let (scope, rest) = rest.split_once(", SignedHeaders=").ok_or_else(missing)?;
    let (signed, _signature) = rest.split_once(", Signature=").ok_or_else(missing)?;
    let date = headers.get("x-amz-date").ok_or_else(missing)?;
    let want_scope = format!(
        "{ACCESS_KEY_ID}/{}/{}/kms/aws4_request",
        date.get(..8).unwrap_or_default(),
        inner.region
    );
    if scope != want_scope {
        return Err(fail(
            "InvalidSignatureException",
            format!("credential scope {scope:?}, expected {want_scope:?}"),
        ));
    }
    for needed in [
        "content-type",
        "host",
        "x-amz-date",
        "x-amz-target",
        "x-amz-security-token",
    ] {
        if !signed.split(';').any(|h| h == needed) {
            return Err(fail(
                "InvalidSignatureException",
                format!("SignedHeaders {signed:?} lacks {needed}"),
            ));
        }
    }
    let time = parse_amz_date(date).ok_or_else(|| fail("InvalidSignatureException", "bad x-amz-date"))?;
    let identity = aws_credential_types::Credentials::new(
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        Some(SESSION_TOKEN.to_string()),
        None,
        "kms-double",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&inner.region)
        .name("kms")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| fail("KMSInternalException", e.to_string()))?
        .into();
    // The signer adds x-amz-date and the session token itself.
    let resign: Vec<(&str, &str)> = signed
        .split(';')
        .filter(|h| !matches!(*h, "x-amz-date" | "x-amz-security-token"))
        .filter_map(|h| headers.get(h).map(|v| (h, v.as_str())))
        .collect();
    let host = headers.get("host").cloned().unwrap_or_default();
    let request = SignableRequest::new(
        "POST",
        format!("https://{host}/"),
        resign.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| fail("KMSInternalException", e.to_string()))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| fail("KMSInternalException", e.to_string()))?
        .into_parts();
    let expected = instructions
        .headers()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    if &expected != auth {
        return Err(fail(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    Ok(())
}

/// `20231114T221320Z` → the instant.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    if s.len() != 16 || s.as_bytes()[8] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

fn answer(inner: &Inner, headers: &BTreeMap<String, String>, op: &str, body: &[u8]) -> Result<Value, KmsError> {
    let content_type = headers.get("content-type").map(String::as_str).unwrap_or("");
    if content_type != "application/x-amz-json-1.1" {
        return Err(fail(
            "SerializationException",
            format!("content type {content_type:?} is not application/x-amz-json-1.1"),
        ));
    }
    check_sigv4(inner, headers, body)?;
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
