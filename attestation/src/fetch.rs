//! Where the auditor's data comes from: a small [`LogSource`] trait with one method per
//! read-only audit endpoint of the host (docs/API.md, "Audit log"), and [`HttpSource`],
//! its implementation over `ureq`.
//!
//! Why a trait: everything the host serves is untrusted input, and the interesting part
//! of this tool is how it reacts to a host that lies. Keeping the transport behind a
//! trait lets the verification in [`crate::log`] be pure and lets the tests play a
//! dishonest host from memory, leaf by leaf, without a server.
//!
//! The trait hands back *decoded* values (bytes, 32-byte hashes) so that every
//! implementation shares one meaning of "malformed response": anything that is not
//! the documented JSON, not base64, or not a 32-byte hash is a [`FetchError`], and the
//! verifier only ever judges well-formed data.

use crate::jwt::Token;
use base64::engine::general_purpose::STANDARD as B64;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use sealgate_shared::commitment::Commitment;
use sealgate_shared::merkle::{self, Hash};
use serde::Deserialize;
use std::time::Duration;

/// Most leaves the host returns per entries call (docs/API.md); the verifier never asks
/// for more than this in one page.
pub const MAX_PAGE: u64 = 1000;

/// Body limit for an entries page. A page is at most [`MAX_PAGE`] leaves of at most
/// ~16.6 KiB each (a host event's 16 KiB payload plus the envelope), ×4/3 for base64:
/// about 22 MB at worst, so 32 MiB leaves room without letting a host make us buffer
/// an unbounded body.
pub const ENTRIES_BODY_LIMIT: u64 = 32 * 1024 * 1024;

/// Body limit for everything else (key, checkpoint, token record, proof). These are a
/// few KiB at most; 16 MiB is generous and still bounded.
pub const BODY_LIMIT: u64 = 16 * 1024 * 1024;

/// How much of an error response we read to quote its `error.message`.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// Per-request time limit, so a host that stalls cannot hang an audit forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a fetch failed. All of these are exit code 3 except [`FetchError::NotFound`] on
/// a token lookup, which the verifier reads as "this token is not in the log".
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The host answered 404 (for a token lookup: no leaf for that `jti`).
    #[error("{what}: not found (HTTP 404)")]
    NotFound { what: String },
    /// Any other non-2xx status; `message` is the API error's message when it had one.
    #[error("{what}: HTTP {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        what: String,
        status: u16,
        message: Option<String>,
    },
    /// Connection, TLS, timeout or other transport failure.
    #[error("{what}: {reason}")]
    Transport { what: String, reason: String },
    /// The body exceeded its size limit.
    #[error("{what}: response body larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    /// The body is not what docs/API.md documents.
    #[error("{what}: malformed response: {reason}")]
    Malformed { what: String, reason: String },
}

/// A page of public leaf hashes `[start, end)` (`/v1/audit/hashes`), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashesPage {
    pub start: u64,
    pub end: u64,
    pub hashes: Vec<Hash>,
}

/// One entry of an entries page: a leaf's index and hash, and its bytes when the key
/// the page was fetched with may read that leaf (else a hash-only placeholder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub hash: Hash,
    pub leaf: Option<Vec<u8>>,
}

/// A page of entries `[start, end)` as the host returned it (`/v1/audit/entries`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntriesPage {
    pub start: u64,
    pub end: u64,
    pub entries: Vec<Entry>,
}

/// The host's answer to a token lookup: where the leaf for `jti` is, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub jti: String,
    pub index: u64,
    pub leaf: Vec<u8>,
}

/// An inclusion proof as the host returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub index: u64,
    pub size: u64,
    pub proof: Vec<Hash>,
}

/// A consistency proof as the host returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub proof: Vec<Hash>,
}

/// The read-only audit endpoints the log verifier needs. Implementations only fetch
/// and decode; they never judge content.
///
/// Three of them are public (key, checkpoint, hashes, proofs); `entries` needs the API
/// key the source was made with (an auditor or admin key of a workspace, or the
/// operator's), and `token` presents the token itself (the holder reads its own leaf).
pub trait LogSource {
    /// `GET /v1/audit/key`: the note verifier key string.
    fn key(&self) -> Result<String, FetchError>;
    /// `GET /v1/audit/checkpoint`: the signed note.
    fn checkpoint(&self) -> Result<String, FetchError>;
    /// `GET /v1/audit/hashes?start=S&end=E` (public).
    fn hashes(&self, start: u64, end: u64) -> Result<HashesPage, FetchError>;
    /// `GET /v1/audit/entries?start=S&end=E` with the source's API key.
    fn entries(&self, start: u64, end: u64) -> Result<EntriesPage, FetchError>;
    /// `GET /v1/audit/tokens/{jti}` presenting `token` as `Authorization: Bearer <JWT>`;
    /// [`FetchError::NotFound`] when the host has no leaf for exactly this token.
    fn token(&self, token: &Token) -> Result<TokenRecord, FetchError>;
    /// `GET /v1/audit/proof/inclusion?index=I&size=N`.
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof, FetchError>;
    /// `GET /v1/audit/proof/consistency?from=A&to=B`.
    fn consistency_proof(&self, from: u64, to: u64) -> Result<ConsistencyProof, FetchError>;
    /// Every leaf hash of the tree of `size` leaves from its C2SP `tlog-tiles` level-0
    /// tiles (`GET /tile/0/…`, fetched in parallel), or `None` when the source serves
    /// no tiles (the caller then pages through [`LogSource::hashes`]).
    fn leaf_tiles(&self, _size: u64) -> Option<Result<Vec<Hash>, FetchError>> {
        None
    }
}

/// Parallel tile fetches.
const TILE_FETCHERS: u64 = 8;

/// `N` as `tlog-tiles` writes it: zero-padded 3-digit elements, `x` before all but the last.
pub fn tile_path(level: u8, index: u64, width: Option<u16>) -> String {
    let digits = index.to_string();
    let padded = format!("{index:0>w$}", w = digits.len().div_ceil(3) * 3);
    let parts: Vec<&str> = (0..padded.len() / 3).map(|i| &padded[i * 3..i * 3 + 3]).collect();
    let n = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i + 1 < parts.len() {
                format!("x{p}")
            } else {
                p.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    match width {
        Some(w) => format!("/tile/{level}/{n}.p/{w}"),
        None => format!("/tile/{level}/{n}"),
    }
}

#[derive(Deserialize)]
struct WireHashes {
    start: u64,
    end: u64,
    hashes: Vec<String>,
}

#[derive(Deserialize)]
struct WireEntries {
    start: u64,
    end: u64,
    entries: Vec<WireEntry>,
}

#[derive(Deserialize)]
struct WireEntry {
    index: u64,
    hash: String,
    leaf: Option<String>,
}

#[derive(Deserialize)]
struct WireToken {
    jti: String,
    index: u64,
    leaf: String,
}

#[derive(Deserialize)]
struct WireInclusion {
    index: u64,
    size: u64,
    proof: Vec<String>,
}

#[derive(Deserialize)]
struct WireConsistency {
    from: u64,
    to: u64,
    proof: Vec<String>,
}

#[derive(Deserialize)]
struct WireError {
    error: WireErrorBody,
}

#[derive(Deserialize)]
struct WireErrorBody {
    message: String,
}

fn malformed(what: &str, reason: impl Into<String>) -> FetchError {
    FetchError::Malformed {
        what: what.to_string(),
        reason: reason.into(),
    }
}

fn decode_b64(what: &str, field: &str, s: &str) -> Result<Vec<u8>, FetchError> {
    B64.decode(s)
        .map_err(|e| malformed(what, format!("{field} is not base64: {e}")))
}

fn parse_json<T: for<'de> Deserialize<'de>>(what: &str, body: &[u8]) -> Result<T, FetchError> {
    serde_json::from_slice(body).map_err(|e| malformed(what, format!("not the documented JSON: {e}")))
}

/// Decodes a hashes response body (shared with test sources that speak the wire format).
pub fn decode_hashes_page(what: &str, body: &[u8]) -> Result<HashesPage, FetchError> {
    let w: WireHashes = parse_json(what, body)?;
    Ok(HashesPage {
        start: w.start,
        end: w.end,
        hashes: decode_hash_list(what, "hashes", &w.hashes)?,
    })
}

/// Decodes an entries response body.
pub fn decode_entries(what: &str, body: &[u8]) -> Result<EntriesPage, FetchError> {
    let w: WireEntries = parse_json(what, body)?;
    let entries = w
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let field = format!("entries[{i}]");
            let raw = decode_b64(what, &format!("{field}.hash"), &e.hash)?;
            Ok(Entry {
                index: e.index,
                hash: merkle::to_hash(&raw).map_err(|err| malformed(what, format!("{field}.hash: {err}")))?,
                leaf: e
                    .leaf
                    .as_deref()
                    .map(|l| decode_b64(what, &format!("{field}.leaf"), l))
                    .transpose()?,
            })
        })
        .collect::<Result<_, FetchError>>()?;
    Ok(EntriesPage {
        start: w.start,
        end: w.end,
        entries,
    })
}

/// Decodes a token lookup response body.
pub fn decode_token(what: &str, body: &[u8]) -> Result<TokenRecord, FetchError> {
    let w: WireToken = parse_json(what, body)?;
    Ok(TokenRecord {
        leaf: decode_b64(what, "leaf", &w.leaf)?,
        jti: w.jti,
        index: w.index,
    })
}

/// Decodes an inclusion proof response body.
pub fn decode_inclusion(what: &str, body: &[u8]) -> Result<InclusionProof, FetchError> {
    let w: WireInclusion = parse_json(what, body)?;
    Ok(InclusionProof {
        index: w.index,
        size: w.size,
        proof: decode_hash_list(what, "proof", &w.proof)?,
    })
}

/// Decodes a consistency proof response body.
pub fn decode_consistency(what: &str, body: &[u8]) -> Result<ConsistencyProof, FetchError> {
    let w: WireConsistency = parse_json(what, body)?;
    Ok(ConsistencyProof {
        from: w.from,
        to: w.to,
        proof: decode_hash_list(what, "proof", &w.proof)?,
    })
}

/// Decodes an array of base64 32-byte hashes (a proof's `proof`, a page's `hashes`).
fn decode_hash_list(what: &str, name: &str, list: &[String]) -> Result<Vec<Hash>, FetchError> {
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            let field = format!("{name}[{i}]");
            let raw = decode_b64(what, &field, p)?;
            merkle::to_hash(&raw).map_err(|e| malformed(what, format!("{field}: {e}")))
        })
        .collect()
}

/// Percent-encodes a path segment (everything but RFC 3986 unreserved characters), so
/// a `jti` taken from an untrusted JWT cannot change which endpoint we ask.
pub fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// [`LogSource`] over HTTP(S) against a sealgate host's base URL.
pub struct HttpSource {
    base: String,
    agent: ureq::Agent,
    /// The API key for `entries` (`--key sg_…`); never sent to the public endpoints.
    api_key: Option<String>,
}

impl HttpSource {
    /// `base` is the host's root URL, e.g. `http://127.0.0.1:8080`; a trailing `/` is
    /// ignored.
    pub fn new(base: &str) -> Self {
        let config = ureq::Agent::config_builder()
            // Read error bodies ourselves, to quote the API's error message.
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(concat!("sealgate-verify/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::Agent::new_with_config(config),
            api_key: None,
        }
    }

    /// The same, reading leaf contents (`entries`) with an API key.
    pub fn with_api_key(mut self, key: &str) -> Self {
        self.api_key = Some(key.to_string());
        self
    }

    /// GETs `path` and returns the body of a 2xx answer, at most `limit` bytes.
    fn get(&self, what: &str, path: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        self.get_as(what, path, limit, None)
    }

    /// [`HttpSource::get`] with `Authorization: Bearer <bearer>` when given.
    fn get_as(&self, what: &str, path: &str, limit: u64, bearer: Option<&str>) -> Result<Vec<u8>, FetchError> {
        let url = format!("{}{}", self.base, path);
        let transport = |e: ureq::Error| match e {
            ureq::Error::BodyExceedsLimit(_) => FetchError::TooLarge {
                what: what.to_string(),
                limit,
            },
            other => FetchError::Transport {
                what: what.to_string(),
                reason: format!("GET {url}: {other}"),
            },
        };
        let mut req = self.agent.get(&url);
        if let Some(b) = bearer {
            req = req.header("Authorization", &format!("Bearer {b}"));
        }
        let mut resp = req.call().map_err(transport)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            // Best effort: the API's `{error:{code,message}}`; ignore anything else.
            let message = resp
                .body_mut()
                .with_config()
                .limit(ERROR_BODY_LIMIT)
                .read_to_vec()
                .ok()
                .and_then(|b| serde_json::from_slice::<WireError>(&b).ok())
                .map(|e| e.error.message);
            return Err(if status == 404 {
                FetchError::NotFound { what: what.to_string() }
            } else {
                FetchError::Status {
                    what: what.to_string(),
                    status,
                    message,
                }
            });
        }
        resp.body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(transport)
    }

    fn get_text(&self, what: &str, path: &str) -> Result<String, FetchError> {
        let body = self.get(what, path, BODY_LIMIT)?;
        String::from_utf8(body).map_err(|_| malformed(what, "body is not UTF-8"))
    }
}

impl HttpSource {
    /// Level-0 tile `index`, full or of `width` hashes.
    fn leaf_tile(&self, index: u64, width: Option<u16>) -> Result<Vec<Hash>, FetchError> {
        let path = tile_path(0, index, width);
        let body = self.get(&format!("tile {path}"), &path, 8192)?;
        let want = usize::from(width.unwrap_or(256)) * 32;
        if body.len() != want {
            return Err(malformed(
                &format!("tile {path}"),
                format!("{} bytes, not {want}", body.len()),
            ));
        }
        Ok(body
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap_or([0u8; 32]))
            .collect())
    }
}

impl LogSource for HttpSource {
    fn leaf_tiles(&self, size: u64) -> Option<Result<Vec<Hash>, FetchError>> {
        let full = size / 256;
        let partial = (size % 256) as u16;
        // A host without tiles answers the first one with 404: page through hashes.
        let first = if full > 0 {
            self.leaf_tile(0, None)
        } else if partial > 0 {
            self.leaf_tile(0, Some(partial))
        } else {
            return Some(Ok(Vec::new()));
        };
        let first = match first {
            Err(FetchError::NotFound { .. }) => return None,
            other => other,
        };
        let run = || -> Result<Vec<Hash>, FetchError> {
            let mut tiles: Vec<Vec<Hash>> = vec![first?];
            let rest: Vec<u64> = (1..full).collect();
            let chunk = rest.len().div_ceil(TILE_FETCHERS as usize).max(1);
            let fetched: Vec<Result<Vec<Vec<Hash>>, FetchError>> = std::thread::scope(|s| {
                let handles: Vec<_> = rest
                    .chunks(chunk)
                    .map(|c| s.spawn(move || c.iter().map(|&i| self.leaf_tile(i, None)).collect()))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(FetchError::Transport {
                                what: "tiles".into(),
                                reason: "a fetching thread panicked".into(),
                            })
                        })
                    })
                    .collect()
            });
            for part in fetched {
                tiles.extend(part?);
            }
            if full > 0 && partial > 0 {
                tiles.push(self.leaf_tile(full, Some(partial))?);
            }
            Ok(tiles.concat())
        };
        Some(run())
    }

    fn key(&self) -> Result<String, FetchError> {
        self.get_text("verifier key", "/v1/audit/key")
    }

    fn checkpoint(&self) -> Result<String, FetchError> {
        self.get_text("checkpoint", "/v1/audit/checkpoint")
    }

    fn hashes(&self, start: u64, end: u64) -> Result<HashesPage, FetchError> {
        let what = format!("hashes [{start}, {end})");
        let body = self.get(&what, &format!("/v1/audit/hashes?start={start}&end={end}"), BODY_LIMIT)?;
        decode_hashes_page(&what, &body)
    }

    fn entries(&self, start: u64, end: u64) -> Result<EntriesPage, FetchError> {
        let what = format!("entries [{start}, {end})");
        let body = self.get_as(
            &what,
            &format!("/v1/audit/entries?start={start}&end={end}"),
            ENTRIES_BODY_LIMIT,
            self.api_key.as_deref(),
        )?;
        decode_entries(&what, &body)
    }

    fn token(&self, token: &Token) -> Result<TokenRecord, FetchError> {
        let what = format!("token lookup {:?}", token.jti);
        let body = self.get_as(
            &what,
            &format!("/v1/audit/tokens/{}", encode_path_segment(&token.jti)),
            BODY_LIMIT,
            Some(&token.jwt),
        )?;
        decode_token(&what, &body)
    }

    fn inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof, FetchError> {
        let what = format!("inclusion proof of {index} in {size}");
        let body = self.get(
            &what,
            &format!("/v1/audit/proof/inclusion?index={index}&size={size}"),
            BODY_LIMIT,
        )?;
        decode_inclusion(&what, &body)
    }

    fn consistency_proof(&self, from: u64, to: u64) -> Result<ConsistencyProof, FetchError> {
        let what = format!("consistency proof from {from} to {to}");
        let body = self.get(
            &what,
            &format!("/v1/audit/proof/consistency?from={from}&to={to}"),
            BODY_LIMIT,
        )?;
        decode_consistency(&what, &body)
    }
}

/// What `GET /v1/attestation` returns, decoded (`document` from base64, `user_data`
/// from hex). Nothing in it is trusted: the verifier checks the document's signature and
/// recomputes the commitment from what the host serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationResponse {
    pub mode: String,
    pub document: Vec<u8>,
    pub user_data: Vec<u8>,
    pub commitment: Commitment,
    /// `commitment_json`: the bytes the host says `user_data` is the SHA-256 of
    /// (`None` when the host serves no such field).
    pub commitment_json: Option<Vec<u8>>,
}

/// One key of `/.well-known/jwks.json`, its coordinates base64url-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    pub x: Vec<u8>,
    pub y: Vec<u8>,
}

/// The endpoints the attestation check reads. Like [`LogSource`], implementations only
/// fetch and decode.
pub trait AttestSource {
    /// `GET /v1/attestation[?nonce=HEX]`.
    fn attestation(&self, nonce: Option<&[u8]>) -> Result<AttestationResponse, FetchError>;
    /// `GET /.well-known/jwks.json`: every key, which must all be EC P-256.
    fn jwks(&self) -> Result<Vec<Jwk>, FetchError>;
    /// `GET /.well-known/openid-configuration`: its `issuer`.
    fn issuer(&self) -> Result<String, FetchError>;
    /// `GET /v1/audit/key`: the note verifier key string, without the trailing newline.
    fn checkpoint_key(&self) -> Result<String, FetchError>;
}

#[derive(Deserialize)]
struct WireAttestation {
    mode: String,
    document: String,
    user_data: String,
    commitment: Commitment,
    commitment_json: Option<String>,
}

#[derive(Deserialize)]
struct WireJwks {
    keys: Vec<WireJwk>,
}

#[derive(Deserialize)]
struct WireJwk {
    kty: String,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct WireDiscovery {
    issuer: String,
}

/// Decodes an attestation response body.
pub fn decode_attestation(what: &str, body: &[u8]) -> Result<AttestationResponse, FetchError> {
    let w: WireAttestation = parse_json(what, body)?;
    Ok(AttestationResponse {
        document: decode_b64(what, "document", &w.document)?,
        user_data: hex::decode(&w.user_data).map_err(|e| malformed(what, format!("user_data is not hex: {e}")))?,
        mode: w.mode,
        commitment: w.commitment,
        commitment_json: w.commitment_json.map(String::into_bytes),
    })
}

/// Decodes a JWKS body; every key must be an EC P-256 key with 32-byte coordinates.
pub fn decode_jwks(what: &str, body: &[u8]) -> Result<Vec<Jwk>, FetchError> {
    let w: WireJwks = parse_json(what, body)?;
    w.keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            if k.kty != "EC" || k.crv.as_deref() != Some("P-256") {
                return Err(malformed(what, format!("keys[{i}] is not an EC P-256 key")));
            }
            let coord = |name: &str, v: Option<String>| {
                let v = v.ok_or_else(|| malformed(what, format!("keys[{i}] has no {name}")))?;
                let raw = B64URL
                    .decode(v)
                    .map_err(|e| malformed(what, format!("keys[{i}].{name} is not base64url: {e}")))?;
                if raw.len() != 32 {
                    return Err(malformed(what, format!("keys[{i}].{name} is not 32 bytes")));
                }
                Ok(raw)
            };
            Ok(Jwk {
                x: coord("x", k.x)?,
                y: coord("y", k.y)?,
                kid: k.kid,
            })
        })
        .collect()
}

impl AttestSource for HttpSource {
    fn attestation(&self, nonce: Option<&[u8]>) -> Result<AttestationResponse, FetchError> {
        let what = "attestation";
        let path = match nonce {
            Some(n) => format!("/v1/attestation?nonce={}", hex::encode(n)),
            None => "/v1/attestation".to_string(),
        };
        let body = self.get(what, &path, BODY_LIMIT)?;
        decode_attestation(what, &body)
    }

    fn jwks(&self) -> Result<Vec<Jwk>, FetchError> {
        let what = "JWKS";
        let body = self.get(what, "/.well-known/jwks.json", BODY_LIMIT)?;
        decode_jwks(what, &body)
    }

    fn issuer(&self) -> Result<String, FetchError> {
        let what = "OpenID discovery";
        let body = self.get(what, "/.well-known/openid-configuration", BODY_LIMIT)?;
        Ok(parse_json::<WireDiscovery>(what, &body)?.issuer)
    }

    fn checkpoint_key(&self) -> Result<String, FetchError> {
        Ok(self.key()?.trim_end().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(encode_path_segment("abc-123_x.y~"), "abc-123_x.y~");
        assert_eq!(encode_path_segment("../key?x=1"), "..%2Fkey%3Fx%3D1");
        assert_eq!(encode_path_segment("é"), "%C3%A9");
    }

    #[test]
    fn malformed_bodies_are_fetch_errors() {
        assert!(matches!(decode_entries("e", b"{}"), Err(FetchError::Malformed { .. })));
        let hash = B64.encode([7u8; 32]);
        assert!(matches!(
            decode_entries(
                "e",
                format!(r#"{{"start":0,"end":1,"entries":[{{"index":0,"hash":"{hash}","leaf":"***"}}]}}"#).as_bytes()
            ),
            Err(FetchError::Malformed { .. })
        ));
        assert!(matches!(
            decode_entries("e", br#"{"start":0,"end":1,"entries":[{"index":0,"hash":"AAAA"}]}"#),
            Err(FetchError::Malformed { .. })
        ));
        assert!(matches!(
            decode_hashes_page("h", br#"{"start":0,"end":1,"hashes":["AAAA"]}"#),
            Err(FetchError::Malformed { .. })
        ));
        assert!(matches!(
            decode_inclusion("p", br#"{"index":0,"size":2,"proof":["AAAA"]}"#),
            Err(FetchError::Malformed { .. })
        ));
        assert!(matches!(
            decode_consistency("c", br#"{"from":1,"to":2,"proof":["AAAA"]}"#),
            Err(FetchError::Malformed { .. })
        ));
        assert!(matches!(
            decode_token("t", br#"{"jti":"j","index":-1,"leaf":""}"#),
            Err(FetchError::Malformed { .. })
        ));
        let ok = decode_entries(
            "e",
            format!(r#"{{"start":3,"end":5,"entries":[{{"index":3,"hash":"{hash}","leaf":"eyJ9"}},{{"index":4,"hash":"{hash}"}}]}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(ok.entries[0].leaf.as_deref(), Some(&b"{\"}"[..]));
        assert_eq!(
            ok.entries[1],
            Entry {
                index: 4,
                hash: [7u8; 32],
                leaf: None
            }
        );
        let page = decode_hashes_page("h", format!(r#"{{"start":0,"end":1,"hashes":["{hash}"]}}"#).as_bytes()).unwrap();
        assert_eq!(page.hashes, vec![[7u8; 32]]);
    }
}

#[cfg(test)]
mod tile_path_tests {
    use super::tile_path;

    #[test]
    fn writes_tile_paths_as_the_spec_does() {
        assert_eq!(tile_path(0, 0, None), "/tile/0/000");
        assert_eq!(tile_path(0, 1_234_067, None), "/tile/0/x001/x234/067");
        assert_eq!(tile_path(1, 5, Some(17)), "/tile/1/005.p/17");
        assert_eq!(tile_path(0, 1000, None), "/tile/0/x001/000");
    }
}
