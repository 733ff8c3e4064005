//! ES256 (ECDSA P-256 with SHA-256) token signing.
//!
//! Signing is the enclave's bottleneck, so the default backend is aws-lc-rs (about ten
//! times the `p256` crate's rate). The pure-Rust `p256` backend stays behind the
//! `p256-signer` feature so the two can be cross-checked and the enclave can be built
//! without a C toolchain. Both load the same PKCS#8 key, so a sealed key works with
//! either.

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
        Ok(Self { key, rng: SystemRandom::new() })
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

#[cfg(feature = "p256-signer")]
pub struct P256Signer {
    key: p256::ecdsa::SigningKey,
}

#[cfg(feature = "p256-signer")]
impl P256Signer {
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, SignError> {
        use p256::pkcs8::DecodePrivateKey;
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(pkcs8).map_err(|_| SignError::BadKey)?;
        Ok(Self { key })
    }
}

#[cfg(feature = "p256-signer")]
impl Es256 for P256Signer {
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], SignError> {
        use p256::ecdsa::signature::Signer;
        let sig: p256::ecdsa::Signature = self.key.try_sign(msg).map_err(|_| SignError::Sign)?;
        sig.to_bytes().as_slice().try_into().map_err(|_| SignError::Sign)
    }

    fn public_xy(&self) -> ([u8; 32], [u8; 32]) {
        split_point(self.key.verifying_key().to_encoded_point(false).as_bytes())
    }
}
