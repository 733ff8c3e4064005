//! Building and signing a JWT. The enclave composes every byte of the header and
//! claims itself; nothing the host sends is copied in without validation (ARCHITECTURE §2.1).

use crate::signer::{Es256, SignError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::Serialize;

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// AWS session tags as `AssumeRoleWithWebIdentity` reads them from a token
/// (`https://aws.amazon.com/tags`: `principal_tags` maps each key to a one-element list,
/// `transitive_tag_keys` lists the keys that survive role chaining).
#[derive(Serialize)]
struct AwsTags<'a> {
    principal_tags: PrincipalTags<'a>,
    transitive_tag_keys: &'static [&'static str],
}

#[derive(Serialize)]
struct PrincipalTags<'a> {
    #[serde(rename = "sealgate:workspace")]
    workspace: [&'a str; 1],
    #[serde(rename = "sealgate:agent")]
    agent: [&'a str; 1],
    /// Grant-path tokens only: hard revocation denies the grant's sessions by this tag.
    #[serde(rename = "sealgate:grant", skip_serializing_if = "Option::is_none")]
    grant: Option<[&'a str; 1]>,
}

const AGENT_TAG_KEYS: &[&str] = &["sealgate:workspace", "sealgate:agent"];
const GRANT_TAG_KEYS: &[&str] = &["sealgate:workspace", "sealgate:agent", "sealgate:grant"];

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: &'a str,
    /// AWS reads session tags for `AssumeRoleWithWebIdentity` from this claim.
    #[serde(rename = "https://aws.amazon.com/tags")]
    tags: AwsTags<'a>,
}

/// The fields of one token, already validated.
pub struct TokenFields<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub audience: &'a str,
    pub workspace: &'a str,
    pub agent: &'a str,
    /// The grant a grant-path token is for (its subject is then the grant's).
    pub grant: Option<&'a str>,
    pub iat: u64,
    pub exp: u64,
    pub jti: &'a str,
}

/// The base64url JWS header for tokens signed with key `kid`: the same for every
/// token of that key, so it is built once per key, not per token.
pub fn encoded_header(kid: &str) -> String {
    let header = serde_json::to_vec(&Header {
        alg: "ES256",
        typ: "JWT",
        kid,
    })
    .unwrap_or_default();
    B64URL.encode(header)
}

/// Returns the compact JWS `header.claims.signature`, with `header` from
/// [`encoded_header`].
pub fn sign(signer: &dyn Es256, header: &str, f: &TokenFields<'_>) -> Result<String, SignError> {
    let claims = serde_json::to_vec(&Claims {
        iss: f.issuer,
        sub: f.subject,
        aud: f.audience,
        iat: f.iat,
        nbf: f.iat,
        exp: f.exp,
        jti: f.jti,
        tags: AwsTags {
            principal_tags: PrincipalTags {
                workspace: [f.workspace],
                agent: [f.agent],
                grant: f.grant.map(|g| [g]),
            },
            transitive_tag_keys: if f.grant.is_some() {
                GRANT_TAG_KEYS
            } else {
                AGENT_TAG_KEYS
            },
        },
    })
    .map_err(|_| SignError::Sign)?;
    let mut out = String::with_capacity(512);
    out.push_str(header);
    out.push('.');
    B64URL.encode_string(&claims, &mut out);
    let sig = signer.sign(out.as_bytes())?;
    out.push('.');
    B64URL.encode_string(sig, &mut out);
    Ok(out)
}
