//! ES256 (ECDSA P-256 with SHA-256) token signing.
//!
//! Signing is the enclave's bottleneck, so the default backend is aws-lc-rs (about ten
//! times the `p256` crate's rate). The pure-Rust `p256` backend signs instead with the
//! `p256-signer` feature; it is compiled into every test build as well, so the unit
//! tests cross-check the two without a second, feature-flagged build. Both load the same
//! PKCS#8 key, so a sealed key works with either.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("token key is not a valid P-256 PKCS#8 key")]
    BadKey,
    #[error("ECDSA signing failed")]
    Sign,
}

/// Something that produces ES256 signatures (`r ‖ s`, 64 bytes) for one key.
pub trait Es256: Send + Sync {
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], SignError>;
    /// Affine coordinates of the public key.
    fn public_xy(&self) -> ([u8; 32], [u8; 32]);
}

/// Generates a new P-256 key as PKCS#8 DER.
pub fn generate_pkcs8() -> Result<Vec<u8>, SignError> {
    let rng = SystemRandom::new();
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| SignError::Sign)
}

/// Loads the backend this build signs with.
pub fn load(pkcs8: &[u8]) -> Result<Box<dyn Es256>, SignError> {
    #[cfg(feature = "p256-signer")]
    {
        Ok(Box::new(P256Signer::from_pkcs8(pkcs8)?))
    }
    #[cfg(not(feature = "p256-signer"))]
    {
        Ok(Box::new(AwsLcSigner::from_pkcs8(pkcs8)?))
    }
}

pub struct AwsLcSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl AwsLcSigner {
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, SignError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(|_| SignError::BadKey)?;
        Ok(Self {
            key,
            rng: SystemRandom::new(),
        })
    }
}

impl Es256 for AwsLcSigner {
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], SignError> {
        let sig = self.key.sign(&self.rng, msg).map_err(|_| SignError::Sign)?;
        sig.as_ref().try_into().map_err(|_| SignError::Sign)
    }

    fn public_xy(&self) -> ([u8; 32], [u8; 32]) {
        split_point(self.key.public_key().as_ref())
    }
}

/// Splits an uncompressed SEC1 point `04 ‖ x ‖ y`.
fn split_point(p: &[u8]) -> ([u8; 32], [u8; 32]) {
    let mut x = [0u8; 32];
    let mut y = [0u8; 32];
    if p.len() == 65 {
        x.copy_from_slice(&p[1..33]);
        y.copy_from_slice(&p[33..65]);
    }
    (x, y)
}

#[cfg(any(test, feature = "p256-signer"))]
pub struct P256Signer {
    key: p256::ecdsa::SigningKey,
}

#[cfg(any(test, feature = "p256-signer"))]
impl P256Signer {
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, SignError> {
        use p256::pkcs8::DecodePrivateKey;
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(pkcs8).map_err(|_| SignError::BadKey)?;
        Ok(Self { key })
    }
}

#[cfg(any(test, feature = "p256-signer"))]
impl Es256 for P256Signer {
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], SignError> {
        use p256::ecdsa::signature::Signer;
        let sig: p256::ecdsa::Signature = self.key.try_sign(msg).map_err(|_| SignError::Sign)?;
        let mut out = [0u8; 64];
        out.copy_from_slice(&sig.to_bytes());
        Ok(out)
    }

    fn public_xy(&self) -> ([u8; 32], [u8; 32]) {
        split_point(self.key.verifying_key().to_encoded_point(false).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{self, TokenFields};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    use base64::Engine;
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};

    fn token(signer: &dyn Es256) -> String {
        let now = crate::now_millis() / 1000;
        let f = TokenFields {
            issuer: "https://issuer.example",
            subject: "ws:w:agent:a",
            audience: "sts.amazonaws.com",
            workspace: "w",
            agent: "a",
            grant: None,
            iat: now,
            exp: now + 300,
            jti: "j1",
        };
        jwt::sign(signer, &jwt::encoded_header("kid-1"), &f).unwrap()
    }

    /// Verifies with jsonwebtoken, an independent JWT library, given the JWK coordinates.
    fn verify(token: &str, xy: ([u8; 32], [u8; 32])) -> Result<serde_json::Value, jsonwebtoken::errors::Error> {
        let key = DecodingKey::from_ec_components(&B64URL.encode(xy.0), &B64URL.encode(xy.1))?;
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["sts.amazonaws.com"]);
        v.set_issuer(&["https://issuer.example"]);
        decode::<serde_json::Value>(token, &key, &v).map(|d| d.claims)
    }

    #[test]
    fn tokens_verify_with_a_jwt_library_and_tampering_fails() {
        let pkcs8 = generate_pkcs8().unwrap();
        let signer = load(&pkcs8).unwrap();
        let t = token(signer.as_ref());
        assert_eq!(decode_header(&t).unwrap().kid.as_deref(), Some("kid-1"));
        let claims = verify(&t, signer.public_xy()).unwrap();
        assert_eq!(claims["sub"], "ws:w:agent:a");
        assert_eq!(
            claims["https://aws.amazon.com/tags"]["principal_tags"]["sealgate:workspace"][0],
            "w"
        );

        let mut forged = t.clone().into_bytes();
        let last = forged.len() - 5;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        assert!(verify(std::str::from_utf8(&forged).unwrap(), signer.public_xy()).is_err());
        let other = load(&generate_pkcs8().unwrap()).unwrap();
        assert!(
            verify(&t, other.public_xy()).is_err(),
            "another key's JWK must not verify"
        );
    }

    #[test]
    fn a_garbage_key_is_a_typed_error() {
        assert!(matches!(load(b"not a key"), Err(SignError::BadKey)));
    }

    #[test]
    fn p256_and_aws_lc_backends_are_interchangeable() {
        let pkcs8 = generate_pkcs8().unwrap();
        let fast = AwsLcSigner::from_pkcs8(&pkcs8).unwrap();
        let pure = P256Signer::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(fast.public_xy(), pure.public_xy(), "same key, same public point");
        for signer in [&fast as &dyn Es256, &pure as &dyn Es256] {
            let t = token(signer);
            verify(&t, fast.public_xy()).unwrap();
        }
    }
}
