//! The enclave's own KMS client: `GenerateDataKey` and `Decrypt` with `Recipient`, over
//! TLS that ends here, inside the enclave.
//!
//! Why the enclave calls KMS itself: a `CiphertextForRecipient` relayed by the host
//! authenticates nothing — anyone can build a CMS EnvelopedData to the recipient public
//! key, so a host that relayed "KMS's answer" could hand in a data key it chose and then
//! read everything sealed under it (issue 11, break 1). Here the host only moves bytes:
//! the enclave opens a byte pipe through the proxy (`vsock-proxy` on the parent
//! instance, or a TCP address in simulator and test mode), runs the TLS handshake with
//! rustls against roots compiled into the enclave, and signs the request with SigV4
//! (`aws-sigv4`, the SDK's own signer) using the instance role's credentials, which the
//! host passes in (they are not secret from the host; what matters is that the answer
//! comes from KMS and the data key in it is encrypted to the enclave).
//!
//! Trust: the public web roots (`webpki-roots`) by default, and then only the KMS
//! endpoint names `kms[-fips].<region>.amazonaws.com`, so a host cannot point the enclave
//! at a server of its own that merely has a public certificate. With the sim-only
//! `--sim-kms-ca PEM`, that one CA instead (any server name it certifies); its SHA-256
//! fingerprint goes into the attested commitment (`kms_ca`), and the enclave reports
//! mode `sim`.
//!
//! Every byte that comes back is outside input: the HTTP response is parsed with
//! `httparse`, bounded in size and time, and refused with a typed [`KmsError`].

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest KMS answer read (a `CiphertextForRecipient` is about 1 KiB of base64).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The whole exchange (connect, handshake, request, answer) must finish within this.
/// Shorter than the host's own wait for an answer (15 s), so the host hears why.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a KMS call failed. The host turns each into a message an operator acts on.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("{0}")]
    Request(String),
    #[error("cannot reach the KMS proxy at {proxy}: {source}")]
    Connect { proxy: String, source: std::io::Error },
    #[error(
        "TLS to {server} failed: {source} (the enclave trusts {trust}; a relay that presents another \
         certificate is refused)"
    )]
    Tls {
        server: String,
        trust: String,
        source: std::io::Error,
    },
    #[error("talking to KMS at {server}: {source}")]
    Io { server: String, source: std::io::Error },
    #[error("KMS did not answer within {0:?}")]
    Timeout(Duration),
    #[error("KMS sent a malformed HTTP response: {0}")]
    Http(String),
    #[error("signing the request (SigV4): {0}")]
    Sign(String),
    /// KMS answered with an error (`__type` and `message`).
    #[error("KMS {op} answered {kind}: {message}")]
    Service { op: String, kind: String, message: String },
    #[error("KMS {op} answered without {field}")]
    Missing { op: String, field: &'static str },
}

/// Where the byte pipe to KMS starts: the parent's vsock-proxy, or a TCP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsProxy {
    Tcp(String),
    Vsock { cid: u32, port: u32 },
}

impl std::str::FromStr for KmsProxy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not tcp:HOST:PORT or vsock:CID:PORT");
        if let Some(rest) = s.strip_prefix("tcp:") {
            let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(bad());
            }
            return Ok(KmsProxy::Tcp(rest.to_string()));
        }
        let rest = s.strip_prefix("vsock:").ok_or_else(bad)?;
        let (cid, port) = rest.split_once(':').ok_or_else(bad)?;
        Ok(KmsProxy::Vsock {
            cid: cid.parse().map_err(|_| bad())?,
            port: port.parse().map_err(|_| bad())?,
        })
    }
}

impl std::fmt::Display for KmsProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KmsProxy::Tcp(a) => write!(f, "tcp:{a}"),
            KmsProxy::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
        }
    }
}

/// The roots KMS's certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsTrust {
    /// The Mozilla roots compiled in by `webpki-roots` (production).
    PublicRoots,
    /// One test CA (`--sim-kms-ca`), by its SHA-256 fingerprint `sha256:<hex>` of the DER.
    SimCa { fingerprint: String },
}

impl std::fmt::Display for KmsTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KmsTrust::PublicRoots => write!(f, "the public web roots"),
            KmsTrust::SimCa { fingerprint } => write!(f, "only the simulator KMS CA {fingerprint}"),
        }
    }
}

/// The instance role's credentials, as the host resolved them.
pub struct CallCredentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

/// Where to send one call and as whom.
pub struct Target<'a> {
    pub region: &'a str,
    /// The TLS server name and `Host`.
    pub endpoint_host: &'a str,
    pub credentials: CallCredentials<'a>,
}

pub struct KmsClient {
    proxy: KmsProxy,
    trust: KmsTrust,
    tls: Arc<rustls::ClientConfig>,
}

impl KmsClient {
    /// A client that trusts the public web roots.
    pub fn public(proxy: KmsProxy) -> Result<Self, KmsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::with_roots(proxy, KmsTrust::PublicRoots, roots)
    }

    /// A client that trusts only the CA in `pem` (simulator and tests).
    pub fn sim_ca(proxy: KmsProxy, pem: &[u8]) -> Result<Self, KmsError> {
        let bad = |m: String| KmsError::Request(format!("--sim-kms-ca: {m}"));
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
        let [ca] = certs.as_slice() else {
            return Err(bad(format!("expected exactly one certificate, found {}", certs.len())));
        };
        let fingerprint = format!("sha256:{}", hex::encode(Sha256::digest(ca.as_ref())));
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.clone())
            .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
        Self::with_roots(proxy, KmsTrust::SimCa { fingerprint }, roots)
    }

    fn with_roots(proxy: KmsProxy, trust: KmsTrust, roots: rustls::RootCertStore) -> Result<Self, KmsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| KmsError::Request(format!("TLS configuration: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            proxy,
            trust,
            tls: Arc::new(tls),
        })
    }

    pub fn trust(&self) -> &KmsTrust {
        &self.trust
    }

    /// `kms_ca` of the attested commitment: the test CA's fingerprint, `None` for the
    /// public roots.
    pub fn ca_fingerprint(&self) -> Option<String> {
        match &self.trust {
            KmsTrust::PublicRoots => None,
            KmsTrust::SimCa { fingerprint } => Some(fingerprint.clone()),
        }
    }

    /// Checks the region and endpoint the host named. With the public roots only KMS's
    /// own names are accepted: any name with a public certificate would do otherwise.
    fn check_target(&self, t: &Target<'_>) -> Result<(), KmsError> {
        let region_ok = !t.region.is_empty()
            && t.region.len() <= 32
            && t.region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(KmsError::Request(format!("{:?} is not an AWS region name", t.region)));
        }
        if self.trust == KmsTrust::PublicRoots {
            let allowed = [
                format!("kms.{}.amazonaws.com", t.region),
                format!("kms-fips.{}.amazonaws.com", t.region),
            ];
            if !allowed.iter().any(|a| a == t.endpoint_host) {
                return Err(KmsError::Request(format!(
                    "the KMS endpoint {:?} is not {} or {}: with the public web roots the enclave talks \
                     only to KMS's own names (a custom endpoint needs --sim-kms-ca)",
                    t.endpoint_host, allowed[0], allowed[1]
                )));
            }
        }
        Ok(())
    }

    /// One KMS JSON-protocol call: `X-Amz-Target: TrentService.<op>`, body `body`.
    /// Returns the parsed answer, or the service error KMS sent.
    pub async fn call(&self, op: &str, target: &Target<'_>, body: &Value) -> Result<Value, KmsError> {
        self.check_target(target)?;
        tokio::time::timeout(CALL_TIMEOUT, self.exchange(op, target, body))
            .await
            .map_err(|_| KmsError::Timeout(CALL_TIMEOUT))?
    }

    async fn exchange(&self, op: &str, t: &Target<'_>, body: &Value) -> Result<Value, KmsError> {
        let body = body.to_string();
        let request = signed_request(op, t, body.as_bytes(), SystemTime::now())?;
        let server = ServerName::try_from(t.endpoint_host.to_string())
            .map_err(|e| KmsError::Request(format!("{:?} is not a server name: {e}", t.endpoint_host)))?;
        let connect = |source| KmsError::Connect {
            proxy: self.proxy.to_string(),
            source,
        };
        let raw = match &self.proxy {
            KmsProxy::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr).await.map_err(connect)?;
                self.over(s, server, t.endpoint_host, &request).await?
            }
            KmsProxy::Vsock { cid, port } => {
                let s = tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(*cid, *port))
                    .await
                    .map_err(connect)?;
                self.over(s, server, t.endpoint_host, &request).await?
            }
        };
        let (status, error_type, payload) = parse_response(&raw)?;
        let json: Value = serde_json::from_slice(payload)
            .map_err(|e| KmsError::Http(format!("the body is not JSON ({e}), HTTP status {status}")))?;
        if status != 200 {
            let kind = error_type
                .or_else(|| json.get("__type").and_then(Value::as_str).map(str::to_string))
                .map(|k| k.rsplit('#').next().unwrap_or_default().to_string())
                .unwrap_or_else(|| format!("HTTP {status}"));
            let message = json
                .get("message")
                .or_else(|| json.get("Message"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            return Err(KmsError::Service {
                op: op.to_string(),
                kind,
                message,
            });
        }
        Ok(json)
    }

    /// TLS over `stream`, then the request, then the answer (read to its length).
    async fn over<S>(
        &self,
        stream: S,
        server: ServerName<'static>,
        host: &str,
        request: &[u8],
    ) -> Result<Vec<u8>, KmsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let mut tls = connector
            .connect(server, stream)
            .await
            .map_err(|source| KmsError::Tls {
                server: host.to_string(),
                trust: self.trust.to_string(),
                source,
            })?;
        let io = |source| KmsError::Io {
            server: host.to_string(),
            source,
        };
        tls.write_all(request).await.map_err(io)?;
        tls.flush().await.map_err(io)?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        loop {
            if complete(&buf)? {
                return Ok(buf);
            }
            let n = match tls.read(&mut chunk).await {
                Ok(n) => n,
                // A server that closes without close_notify: fine if the answer is whole.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(io(e)),
            };
            if n == 0 {
                return if complete(&buf)? {
                    Ok(buf)
                } else {
                    Err(KmsError::Http(
                        "the connection closed before the answer was complete".into(),
                    ))
                };
            }
            if buf.len() + n > MAX_RESPONSE_BYTES {
                return Err(KmsError::Http(format!("the answer exceeds {MAX_RESPONSE_BYTES} bytes")));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The request bytes: POST / with the KMS JSON protocol headers and a SigV4
/// `Authorization` computed by `aws-sigv4` over method, path, host, the headers below and
/// the body's SHA-256.
fn signed_request(op: &str, t: &Target<'_>, body: &[u8], now: SystemTime) -> Result<Vec<u8>, KmsError> {
    let amz_target = format!("TrentService.{op}");
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", amz_target.as_str()),
        ("host", t.endpoint_host),
    ];
    let identity = Credentials::new(
        t.credentials.access_key_id,
        t.credentials.secret_access_key,
        t.credentials.session_token.map(str::to_string),
        None,
        "sealgate-host",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(t.region)
        .name("kms")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| KmsError::Sign(e.to_string()))?
        .into();
    let url = format!("https://{}/", t.endpoint_host);
    let signable = SignableRequest::new("POST", url, headers.iter().copied(), SignableBody::Bytes(body))
        .map_err(|e| KmsError::Sign(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| KmsError::Sign(e.to_string()))?
        .into_parts();
    let mut out = String::from("POST / HTTP/1.1\r\n");
    for (name, value) in headers.iter().copied().chain(instructions.headers()) {
        if value.contains(['\r', '\n']) {
            return Err(KmsError::Request(format!("header {name} contains a line break")));
        }
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\naccept-encoding: identity\r\n\r\n",
        body.len()
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    Ok(bytes)
}

/// Whether `buf` holds a whole response (headers and `Content-Length` bytes of body).
fn complete(buf: &[u8]) -> Result<bool, KmsError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf).map_err(|e| KmsError::Http(e.to_string()))? {
        httparse::Status::Partial => Ok(false),
        httparse::Status::Complete(at) => {
            let len = content_length(resp.headers)?;
            Ok(buf.len() >= at + len)
        }
    }
}

fn content_length(headers: &[httparse::Header<'_>]) -> Result<usize, KmsError> {
    if headers.iter().any(|h| h.name.eq_ignore_ascii_case("transfer-encoding")) {
        return Err(KmsError::Http(
            "chunked transfer encoding is not accepted (KMS answers with a Content-Length)".into(),
        ));
    }
    let value = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .ok_or_else(|| KmsError::Http("no Content-Length".into()))?;
    std::str::from_utf8(value.value)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n <= MAX_RESPONSE_BYTES)
        .ok_or_else(|| KmsError::Http("Content-Length is not a number within bounds".into()))
}

/// Status, `x-amzn-errortype` and body of a whole response.
fn parse_response(buf: &[u8]) -> Result<(u16, Option<String>, &[u8]), KmsError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(at) = resp.parse(buf).map_err(|e| KmsError::Http(e.to_string()))? else {
        return Err(KmsError::Http("incomplete headers".into()));
    };
    let status = resp.code.ok_or_else(|| KmsError::Http("no status".into()))?;
    let len = content_length(resp.headers)?;
    let error_type = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("x-amzn-errortype"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        // `AccessDeniedException:http://internal.amazon.com/...` in real answers.
        .map(|v| v.split(':').next().unwrap_or_default().to_string());
    let body = buf
        .get(at..at + len)
        .ok_or_else(|| KmsError::Http("the body is shorter than its Content-Length".into()))?;
    Ok((status, error_type, body))
}

/// A base64 field of a KMS answer.
pub fn blob_field(op: &str, answer: &Value, field: &'static str) -> Result<Vec<u8>, KmsError> {
    let missing = || KmsError::Missing {
        op: op.to_string(),
        field,
    };
    let text = answer.get(field).and_then(Value::as_str).ok_or_else(missing)?;
    B64.decode(text)
        .map_err(|_| KmsError::Http(format!("{field} of the {op} answer is not base64")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(region: &'a str, host: &'a str) -> Target<'a> {
        Target {
            region,
            endpoint_host: host,
            credentials: CallCredentials {
                access_key_id: "AKIDEXAMPLE",
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                session_token: Some("token"),
            },
        }
    }

    #[test]
    fn proxies_parse() {
        assert_eq!(
            "tcp:127.0.0.1:8443".parse::<KmsProxy>(),
            Ok(KmsProxy::Tcp("127.0.0.1:8443".into()))
        );
        assert_eq!(
            "vsock:3:8000".parse::<KmsProxy>(),
            Ok(KmsProxy::Vsock { cid: 3, port: 8000 })
        );
        for bad in ["tcp:nope", "tcp::1", "vsock:3", "unix:/x", "tcp:h:99999"] {
            assert!(bad.parse::<KmsProxy>().is_err(), "{bad}");
        }
    }

    /// With the public roots, a name other than KMS's own is refused before any
    /// connection: a host-run server with a public certificate must not stand in for KMS.
    #[test]
    fn public_roots_allow_only_kms_endpoints() {
        let c = KmsClient::public(KmsProxy::Tcp("127.0.0.1:1".into())).expect("client");
        assert!(c
            .check_target(&target("eu-west-1", "kms.eu-west-1.amazonaws.com"))
            .is_ok());
        assert!(c
            .check_target(&target("eu-west-1", "kms-fips.eu-west-1.amazonaws.com"))
            .is_ok());
        for (region, host) in [
            ("eu-west-1", "kms.us-east-1.amazonaws.com"),
            ("eu-west-1", "evil.example.com"),
            ("eu-west-1", "localhost"),
            ("EU", "kms.EU.amazonaws.com"),
            ("a.b", "kms.a.b.amazonaws.com"),
        ] {
            assert!(c.check_target(&target(region, host)).is_err(), "{region} {host}");
        }
        assert_eq!(c.ca_fingerprint(), None);
    }

    #[test]
    fn the_request_is_sigv4_signed_for_kms() {
        let t = target("us-east-1", "kms.us-east-1.amazonaws.com");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let req = String::from_utf8(signed_request("Decrypt", &t, b"{}", at).expect("signed")).expect("utf8");
        assert!(req.starts_with("POST / HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("x-amz-target: TrentService.Decrypt\r\n"), "{req}");
        assert!(req.contains("x-amz-date: 20231114T221320Z\r\n"), "{req}");
        assert!(req.contains("x-amz-security-token: token\r\n"), "{req}");
        assert!(
            req.contains(
                "authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/kms/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature="
            ),
            "{req}"
        );
        assert!(req.ends_with("\r\n\r\n{}"), "{req}");
    }

    /// Responses are outside input: truncated, oversized, chunked or garbled answers are
    /// typed errors, never a panic.
    #[test]
    fn responses_are_parsed_defensively() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert!(complete(ok).expect("parse"));
        assert_eq!(parse_response(ok).expect("parse").2, b"{}");
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}").expect("parse"));
        assert!(!complete(b"HTTP/1.1 200").expect("parse"));
        for bad in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"\x00\x01garbage\r\n\r\n",
        ] {
            assert!(complete(bad).is_err() || parse_response(bad).is_err(), "{bad:?}");
        }
        let err =
            b"HTTP/1.1 400 Bad\r\nx-amzn-errortype: AccessDeniedException:http://x/\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(
            parse_response(err).expect("parse").1.as_deref(),
            Some("AccessDeniedException")
        );
    }
}
