//! The enclave's RSA-2048 recipient key for KMS `CiphertextForRecipient`.
//!
//! KMS only supports RSA recipients (`RSAES_OAEP_SHA_256`), so the enclave cannot reuse
//! its EC keys. The key is generated inside the enclave, never leaves it, and is
//! meant to live only as long as the enclave process: each boot makes a fresh one and
//! puts its public half into the attestation document, so a captured
//! `CiphertextForRecipient` is useless to anyone but the enclave instance that asked.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey, OAEP_SHA256_MGF1SHA256};

/// Errors from creating or using a [`RecipientKey`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecipientError {
    /// aws-lc could not generate the RSA key (entropy or allocation failure).
    #[error("RSA-2048 recipient key generation failed")]
    Generate,
    /// A supplied PKCS#8 key was not a valid RSA-2048 private key.
    #[error("not a valid RSA-2048 PKCS#8 private key")]
    InvalidKey,
    /// The public key could not be encoded as SubjectPublicKeyInfo DER.
    #[error("encoding the recipient public key as SPKI failed")]
    EncodePublicKey,
    /// OAEP decryption failed: wrong key, tampered ciphertext or wrong length.
    ///
    /// Deliberately carries no detail: distinguishing OAEP failure reasons would help a
    /// chosen-ciphertext attacker (Manger's attack).
    #[error("RSA-OAEP-SHA256 decryption failed")]
    Decrypt,
}

/// An RSA-2048 key pair used only to receive KMS data keys (RSA-OAEP with SHA-256 and
/// MGF1-SHA-256, no label).
pub struct RecipientKey {
    key: OaepPrivateDecryptingKey,
    spki_der: Vec<u8>,
}

impl RecipientKey {
    /// Size of the RSA modulus in bits. KMS accepts 2048..4096; 2048 keeps the
    /// attestation document small and generation fast at boot.
    pub const BITS: usize = 2048;

    /// Generates a fresh RSA-2048 key pair inside the enclave.
    pub fn generate() -> Result<Self, RecipientError> {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).map_err(|_| RecipientError::Generate)?;
        Self::from_private(private)
    }

    /// Loads a key from PKCS#8 DER. Only for tests and tooling that need a fixed key
    /// (e.g. to cross-check against another CMS implementation); production code should
    /// call [`RecipientKey::generate`] so the key never exists outside the enclave.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, RecipientError> {
        let private = PrivateDecryptingKey::from_pkcs8(pkcs8).map_err(|_| RecipientError::InvalidKey)?;
        if private.key_size_bits() != Self::BITS {
            return Err(RecipientError::InvalidKey);
        }
        Self::from_private(private)
    }

    fn from_private(private: PrivateDecryptingKey) -> Result<Self, RecipientError> {
        let spki_der = private
            .public_key()
            .as_der()
            .map_err(|_| RecipientError::EncodePublicKey)?
            .as_ref()
            .to_vec();
        let key = OaepPrivateDecryptingKey::new(private).map_err(|_| RecipientError::Generate)?;
        Ok(Self { key, spki_der })
    }

    /// The public key as X.509 SubjectPublicKeyInfo DER: the value for the attestation
    /// document's `public_key`, which KMS uses to encrypt `CiphertextForRecipient`.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Decrypts an RSAES-OAEP (SHA-256, MGF1-SHA-256, empty label) ciphertext.
    pub fn decrypt_oaep_sha256(&self, ciphertext: &[u8]) -> Result<Vec<u8>, RecipientError> {
        // A valid ciphertext is exactly one modulus long; refusing anything else up front
        // is public information and keeps odd sizes away from the RSA code.
        if ciphertext.len() != self.key.key_size_bytes() {
            return Err(RecipientError::Decrypt);
        }
        let mut out = vec![0u8; self.key.min_output_size()];
        let len = self
            .key
            .decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, &mut out, None)
            .map_err(|_| RecipientError::Decrypt)?
            .len();
        out.truncate(len);
        Ok(out)
    }
}

impl std::fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material; the SPKI length is enough to tell keys apart in logs.
        f.debug_struct("RecipientKey")
            .field("bits", &Self::BITS)
            .field("spki_der_len", &self.spki_der.len())
            .finish_non_exhaustive()
    }
}
