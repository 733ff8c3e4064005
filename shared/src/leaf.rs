//! The audit log's leaf format.
//!
//! A leaf is UTF-8 JSON with a fixed field order, produced only by the enclave and
//! stored verbatim by the host; the Merkle hash is over those exact bytes, so an
//! auditor needs nothing else. Every leaf has the same envelope:
//!
//! ```json
//! {"v":1,"index":7,"ts":1732300000123,"origin":"enclave","kind":"token.issued","data":{…}}
//! ```
//!
//! `origin` is `enclave` for what the enclave itself did and `host` for events the host
//! alone witnessed (an STS call, an approval): the enclave stamps index and time on
//! those but cannot vouch for their content (ARCHITECTURE §2.5).

use serde::{Deserialize, Serialize};

pub const LEAF_VERSION: u32 = 1;

/// Longest host event payload (JSON text) the enclave accepts.
pub const MAX_HOST_EVENT_BYTES: usize = 16 * 1024;

pub const KIND_TOKEN_ISSUED: &str = "token.issued";
pub const KIND_GENESIS: &str = "enclave.genesis";
pub const KIND_BOOT: &str = "enclave.boot";
pub const KIND_KEY_ROTATED: &str = "key.rotated";

/// Kind prefixes only the enclave may write.
const ENCLAVE_ONLY_PREFIXES: [&str; 3] = ["token.", "key.", "enclave."];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Enclave,
    Host,
}

/// The envelope, generic over its `data` so each kind serializes in its own field order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Leaf<D> {
    pub v: u32,
    pub index: u64,
    pub ts: u64,
    pub origin: Origin,
    pub kind: String,
    pub data: D,
}

/// `data` of a `token.issued` leaf.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenIssued {
    pub jti: String,
    pub sub: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    /// Hex SHA-256 of the compact JWT exactly as returned to the client.
    pub token_sha256: String,
    /// The API key id the host says made the request (host-reported).
    pub caller: String,
}

/// Any leaf, for readers that only need the envelope.
pub type AnyLeaf = Leaf<serde_json::Value>;

/// Parses a stored leaf's envelope.
pub fn parse(bytes: &[u8]) -> Result<AnyLeaf, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Why a stored leaf is not the `token.issued` leaf of a given token.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenLeafError {
    #[error("leaf is not a valid envelope: {0}")]
    BadLeaf(String),
    #[error("leaf version is {0}, expected {LEAF_VERSION}")]
    WrongVersion(u32),
    #[error("host says index {record}, but the leaf says index {leaf}")]
    IndexMismatch { record: u64, leaf: u64 },
    #[error("leaf kind is {0:?}, expected \"token.issued\"")]
    WrongKind(String),
    #[error("leaf is for jti {0:?}")]
    WrongJti(String),
    #[error("leaf records token_sha256 {logged}, but this JWT hashes to {actual}")]
    HashMismatch { logged: String, actual: String },
}

/// Checks that `bytes`, served as leaf `index`, is the `token.issued` leaf of the
/// compact JWT `jwt` whose id is `jti`, and returns its data. Every proof of a token
/// (`sealgate-verify log --token`, the MCP server's `audit_prove_token`) starts here;
/// the inclusion proof is then checked over the same bytes.
pub fn token_issued_for(bytes: &[u8], index: u64, jti: &str, jwt: &str) -> Result<TokenIssued, TokenLeafError> {
    let envelope = parse(bytes).map_err(|e| TokenLeafError::BadLeaf(e.to_string()))?;
    if envelope.v != LEAF_VERSION {
        return Err(TokenLeafError::WrongVersion(envelope.v));
    }
    if envelope.index != index {
        return Err(TokenLeafError::IndexMismatch {
            record: index,
            leaf: envelope.index,
        });
    }
    if envelope.kind != KIND_TOKEN_ISSUED {
        return Err(TokenLeafError::WrongKind(envelope.kind));
    }
    let data: TokenIssued =
        serde_json::from_value(envelope.data).map_err(|e| TokenLeafError::BadLeaf(format!("data: {e}")))?;
    if data.jti != jti {
        return Err(TokenLeafError::WrongJti(data.jti));
    }
    use sha2::Digest;
    let actual = hex::encode(sha2::Sha256::digest(jwt.as_bytes()));
    if data.token_sha256 != actual {
        return Err(TokenLeafError::HashMismatch {
            logged: data.token_sha256,
            actual,
        });
    }
    Ok(data)
}

/// The workspace a stored leaf belongs to, which decides who may read its contents
/// (ARCHITECTURE §5): the `workspace_id` of its `data` (every host event about a workspace
/// carries one), else, for a `token.issued` leaf, the workspace in its subject
/// (`ws:<ws>:…`). `None` for operator-level events (genesis, key rotation, bootstrap)
/// and for anything that is not a leaf: only the operator reads those.
pub fn workspace_of(bytes: &[u8]) -> Option<String> {
    // Only the two fields needed, so the mint path does not build a whole JSON tree.
    #[derive(Deserialize)]
    struct Probe {
        kind: String,
        data: ProbeData,
    }
    #[derive(Deserialize)]
    struct ProbeData {
        workspace_id: Option<serde_json::Value>,
        sub: Option<serde_json::Value>,
    }
    let leaf: Probe = serde_json::from_slice(bytes).ok()?;
    let valid = |ws: &str| !ws.is_empty() && ws.len() <= 128;
    if let Some(serde_json::Value::String(ws)) = leaf.data.workspace_id {
        return Some(ws).filter(|w| valid(w));
    }
    if leaf.kind == KIND_TOKEN_ISSUED {
        if let Some(serde_json::Value::String(sub)) = leaf.data.sub {
            let ws = sub.strip_prefix("ws:")?.split(':').next()?;
            return Some(ws.to_string()).filter(|w| valid(w));
        }
    }
    None
}

/// True for kinds the host must never append (`token.*`, `key.*`, `enclave.*`).
pub fn is_enclave_only(kind: &str) -> bool {
    ENCLAVE_ONLY_PREFIXES.iter().any(|p| kind.starts_with(p))
}

/// Host event kinds: `[a-z0-9][a-z0-9._-]{0,63}` and not enclave-only.
pub fn valid_host_kind(kind: &str) -> bool {
    let b = kind.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
        && !is_enclave_only(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_order_is_fixed() {
        let leaf = Leaf {
            v: 1,
            index: 3,
            ts: 9,
            origin: Origin::Enclave,
            kind: KIND_TOKEN_ISSUED.into(),
            data: TokenIssued {
                jti: "j".into(),
                sub: "s".into(),
                aud: "a".into(),
                iat: 1,
                exp: 2,
                token_sha256: "00".into(),
                caller: "k".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&leaf).unwrap(),
            r#"{"v":1,"index":3,"ts":9,"origin":"enclave","kind":"token.issued","data":{"jti":"j","sub":"s","aud":"a","iat":1,"exp":2,"token_sha256":"00","caller":"k"}}"#
        );
    }

    #[test]
    fn workspace_of_reads_the_field_or_the_token_subject() {
        let host = br#"{"v":1,"index":4,"ts":1,"origin":"host","kind":"grant.requested","data":{"grant_id":"g","workspace_id":"ws_a"}}"#;
        assert_eq!(workspace_of(host).as_deref(), Some("ws_a"));
        let token = br#"{"v":1,"index":5,"ts":1,"origin":"enclave","kind":"token.issued","data":{"jti":"j","sub":"ws:ws_b:agent:ag_1","aud":"a"}}"#;
        assert_eq!(workspace_of(token).as_deref(), Some("ws_b"));
        let grant_token =
            br#"{"v":1,"index":6,"ts":1,"origin":"enclave","kind":"token.issued","data":{"sub":"ws:ws_c:grant:gr_1"}}"#;
        assert_eq!(workspace_of(grant_token).as_deref(), Some("ws_c"));
        // Operator-level events and anything odd belong to no workspace.
        for none in [
            &br#"{"v":1,"index":0,"ts":1,"origin":"enclave","kind":"enclave.genesis","data":{}}"#[..],
            br#"{"v":1,"index":1,"ts":1,"origin":"host","kind":"admin.bootstrap","data":{"key_id":"k"}}"#,
            br#"{"v":1,"index":2,"ts":1,"origin":"host","kind":"x","data":{"workspace_id":7}}"#,
            br#"{"v":1,"index":3,"ts":1,"origin":"enclave","kind":"token.issued","data":{"sub":"operator"}}"#,
            br#"{"v":1,"index":3,"ts":1,"origin":"host","kind":"x","data":{"sub":"ws:ws_a:agent:x"}}"#,
            b"not json",
        ] {
            assert_eq!(workspace_of(none), None, "{}", String::from_utf8_lossy(none));
        }
    }

    /// Each check of a token's leaf refuses what it is there to refuse.
    #[test]
    fn a_token_leaf_must_be_this_tokens() {
        use sha2::Digest;
        let jwt = "eyJ.a.b";
        let leaf = |v: u32, index: u64, kind: &str, jti: &str, sha: &str| {
            format!(
                r#"{{"v":{v},"index":{index},"ts":1,"origin":"enclave","kind":"{kind}","data":{{"jti":"{jti}","sub":"s","aud":"a","iat":1,"exp":2,"token_sha256":"{sha}","caller":"k"}}}}"#
            )
        };
        let sha = hex::encode(sha2::Sha256::digest(jwt.as_bytes()));
        let good = leaf(1, 7, KIND_TOKEN_ISSUED, "j1", &sha);
        assert_eq!(token_issued_for(good.as_bytes(), 7, "j1", jwt).unwrap().jti, "j1");
        let refused =
            |bytes: &str, index: u64, jti: &str, jwt: &str| token_issued_for(bytes.as_bytes(), index, jti, jwt);
        assert!(matches!(refused("{", 7, "j1", jwt), Err(TokenLeafError::BadLeaf(_))));
        assert_eq!(
            refused(&leaf(2, 7, KIND_TOKEN_ISSUED, "j1", &sha), 7, "j1", jwt),
            Err(TokenLeafError::WrongVersion(2))
        );
        assert_eq!(
            refused(&good, 8, "j1", jwt),
            Err(TokenLeafError::IndexMismatch { record: 8, leaf: 7 })
        );
        assert_eq!(
            refused(&leaf(1, 7, KIND_KEY_ROTATED, "j1", &sha), 7, "j1", jwt),
            Err(TokenLeafError::WrongKind(KIND_KEY_ROTATED.into()))
        );
        assert_eq!(refused(&good, 7, "j2", jwt), Err(TokenLeafError::WrongJti("j1".into())));
        assert!(matches!(
            refused(&good, 7, "j1", "eyJ.a.c"),
            Err(TokenLeafError::HashMismatch { .. })
        ));
    }

    #[test]
    fn host_kinds() {
        assert!(valid_host_kind("aws.sts.assume_role"));
        for bad in ["token.issued", "key.rotated", "enclave.boot", "", "A", "x y", ".x"] {
            assert!(!valid_host_kind(bad), "{bad}");
        }
    }
}
