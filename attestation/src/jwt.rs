//! Reading the `jti` out of a compact JWT the auditor was handed.
//!
//! The log verifier does not check the JWT's signature: what it proves is that *these
//! exact bytes* were logged (the leaf carries `SHA-256` of the compact token), and that
//! proof does not depend on the signature. Checking the signature against the issuer's
//! JWKS belongs with attestation, which binds that JWKS to the enclave. Here we only
//! need the `jti` to ask the host where the leaf is; the leaf then has to match the
//! token's hash, so a lying `jti` gains nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Longest token accepted, so a pasted file cannot make us decode megabytes.
const MAX_JWT_LEN: usize = 64 * 1024;

/// Why a `--token` argument is not a JWT we can look up (a usage error, exit code 2).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum JwtError {
    #[error("token is longer than {MAX_JWT_LEN} bytes")]
    TooLong,
    #[error("token is not a compact JWT (three base64url parts separated by '.')")]
    NotCompact,
    #[error("token payload is not base64url")]
    PayloadEncoding,
    #[error("token payload is not a JSON object")]
    PayloadJson,
    #[error("token payload has no string `jti` claim")]
    NoJti,
}

/// A token to prove: the compact JWT exactly as given, and its `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub jwt: String,
    pub jti: String,
}

impl Token {
    /// Splits the compact JWT and reads `jti` from its payload; nothing is verified.
    pub fn parse(jwt: &str) -> Result<Self, JwtError> {
        if jwt.len() > MAX_JWT_LEN {
            return Err(JwtError::TooLong);
        }
        let mut parts = jwt.split('.');
        let (Some(_header), Some(payload), Some(_sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::NotCompact);
        };
        let raw = B64URL.decode(payload).map_err(|_| JwtError::PayloadEncoding)?;
        let claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&raw).map_err(|_| JwtError::PayloadJson)?;
        let jti = claims.get("jti").and_then(|v| v.as_str()).ok_or(JwtError::NoJti)?;
        if jti.is_empty() {
            return Err(JwtError::NoJti);
        }
        Ok(Self {
            jwt: jwt.to_string(),
            jti: jti.to_string(),
        })
    }

    /// Hex `SHA-256` of the compact token bytes, as the `token.issued` leaf records it.
    pub fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(self.jwt.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!("eyJhbGciOiJFUzI1NiJ9.{}.c2ln", B64URL.encode(payload))
    }

    #[test]
    fn reads_jti() {
        let t = Token::parse(&jwt(r#"{"jti":"abc","sub":"x"}"#)).unwrap();
        assert_eq!(t.jti, "abc");
        assert_eq!(t.sha256_hex().len(), 64);
    }

    #[test]
    fn refuses_non_jwts() {
        assert_eq!(Token::parse("a.b"), Err(JwtError::NotCompact));
        assert_eq!(Token::parse("a.b.c.d"), Err(JwtError::NotCompact));
        assert_eq!(Token::parse("a.*.c"), Err(JwtError::PayloadEncoding));
        assert_eq!(Token::parse(&jwt("[1]")), Err(JwtError::PayloadJson));
        assert_eq!(Token::parse(&jwt(r#"{"jti":7}"#)), Err(JwtError::NoJti));
        assert_eq!(Token::parse(&jwt(r#"{"jti":""}"#)), Err(JwtError::NoJti));
    }
}
