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
//! those but cannot vouch for their content (DESIGN §2.5).

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

/// The workspace a stored leaf belongs to, which decides who may read its contents
/// (DESIGN §5): the `workspace_id` of its `data` (every host event about a workspace
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

    #[test]
    fn host_kinds() {
        assert!(valid_host_kind("aws.sts.assume_role"));
        for bad in ["token.issued", "key.rotated", "enclave.boot", "", "A", "x y", ".x"] {
            assert!(!valid_host_kind(bad), "{bad}");
        }
    }
}
