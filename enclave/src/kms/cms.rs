//! Unwrapping KMS's `CiphertextForRecipient`: a BER CMS EnvelopedData (RFC 5652).
//!
//! KMS encodes the structure in BER with indefinite lengths, and the encrypted content
//! may be split into a constructed OCTET STRING. Rather than hand-write an ASN.1 parser
//! for bytes the untrusted host forwards, this uses `rasn`'s BER decoder (which accepts
//! indefinite lengths and constructed strings) with the RFC 5652 types from `rasn-cms`.
//!
//! Only the exact shape KMS produces is accepted:
//! * ContentInfo of type id-envelopedData, nothing after it;
//! * exactly one RecipientInfo, a KeyTransRecipientInfo with id-RSAES-OAEP whose
//!   parameters say SHA-256, MGF1-SHA-256 and an empty label (the defaults, SHA-1, are
//!   refused);
//! * EncryptedContentInfo of type id-data with aes256-CBC and a 16-byte IV;
//! * a 32-byte content-encryption key and a 32-byte plaintext (the data key).
//!
//! The recipient identifier (issuerAndSerialNumber or subjectKeyIdentifier) is not
//! compared with anything: the enclave has no certificate, and KMS's choice of identifier
//! is not specified. It does not matter for security: OAEP decryption with the enclave's
//! key is what decides whether the message was addressed to it.
//!
//! Side channels: all failures after the content-encryption key is recovered (bad CBC
//! padding, wrong plaintext length) collapse into one [`CmsError::ContentDecrypt`], and
//! the ciphertext length is checked before decrypting, so the host cannot use error
//! messages as a CBC padding oracle to learn the data key.

use aws_lc_rs::cipher::{DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey, AES_256, AES_CBC_IV_LEN};
use aws_lc_rs::iv::FixedLength;
use rasn::prelude::*;
use rasn_cms::{AlgorithmIdentifier, ContentInfo, EnvelopedData, RecipientInfo};

use super::recipient::RecipientKey;

/// Length of the data key KMS returns for `KeySpec: AES_256` (the only spec we request).
pub const DATA_KEY_LEN: usize = 32;

/// Inputs larger than this are refused before parsing. A real `CiphertextForRecipient`
/// for an RSA-2048 recipient is well under 1 KiB; the cap bounds work and memory spent on
/// hostile input.
pub const MAX_INPUT_LEN: usize = 16 * 1024;

/// AES-256 key length: the content-encryption key must be exactly this long.
const CEK_LEN: usize = 32;

/// 1.2.840.113549.1.7.3 id-envelopedData.
pub const ID_ENVELOPED_DATA: &Oid = Oid::const_new(&[1, 2, 840, 113549, 1, 7, 3]);
/// 1.2.840.113549.1.7.1 id-data: the type of the encrypted content.
pub const ID_DATA: &Oid = Oid::const_new(&[1, 2, 840, 113549, 1, 7, 1]);
/// 1.2.840.113549.1.1.7 id-RSAES-OAEP.
pub const ID_RSAES_OAEP: &Oid = Oid::const_new(&[1, 2, 840, 113549, 1, 1, 7]);
/// 1.2.840.113549.1.1.8 id-mgf1.
pub const ID_MGF1: &Oid = Oid::const_new(&[1, 2, 840, 113549, 1, 1, 8]);
/// 1.2.840.113549.1.1.9 id-pSpecified (the OAEP label source).
pub const ID_P_SPECIFIED: &Oid = Oid::const_new(&[1, 2, 840, 113549, 1, 1, 9]);
/// 2.16.840.1.101.3.4.2.1 id-sha256.
pub const ID_SHA256: &Oid = Oid::const_new(&[2, 16, 840, 1, 101, 3, 4, 2, 1]);
/// 2.16.840.1.101.3.4.1.42 aes256-CBC.
pub const AES256_CBC: &Oid = Oid::const_new(&[2, 16, 840, 1, 101, 3, 4, 1, 42]);

/// RSAES-OAEP-params (RFC 8017 A.2.1; the PKCS #1 module uses EXPLICIT tags). Absent
/// fields mean SHA-1 / MGF1-SHA-1 / empty label, which we refuse except for the label.
#[derive(AsnType, Decode, Encode, Debug, Clone, PartialEq, Eq)]
pub struct RsaesOaepParams {
    /// hashAlgorithm [0]: must be SHA-256.
    #[rasn(tag(explicit(0)))]
    pub hash_func: Option<AlgorithmIdentifier>,
    /// maskGenAlgorithm [1]: must be MGF1 with SHA-256.
    #[rasn(tag(explicit(1)))]
    pub mask_gen_func: Option<AlgorithmIdentifier>,
    /// pSourceAlgorithm [2]: absent, or id-pSpecified with an empty label.
    #[rasn(tag(explicit(2)))]
    pub p_source_func: Option<AlgorithmIdentifier>,
}

/// Why a `CiphertextForRecipient` was refused.
#[derive(Debug, thiserror::Error)]
pub enum CmsError {
    /// Input longer than [`MAX_INPUT_LEN`].
    #[error("CMS input is {0} bytes, more than the {MAX_INPUT_LEN}-byte limit")]
    TooLarge(usize),
    /// The bytes are not valid BER for the expected ASN.1 type.
    #[error("malformed BER in {part}: {source}")]
    Ber {
        /// Which structure failed to decode.
        part: &'static str,
        /// The decoder's reason.
        #[source]
        source: Box<rasn::error::DecodeError>,
    },
    /// Bytes follow a complete structure (smuggled data is refused, not ignored).
    #[error("trailing bytes after {0}")]
    TrailingData(&'static str),
    /// ContentInfo's contentType is not id-envelopedData.
    #[error("content type {0} is not id-envelopedData")]
    NotEnvelopedData(String),
    /// KMS addresses exactly one recipient (the enclave).
    #[error("expected exactly one RecipientInfo, found {0}")]
    RecipientCount(usize),
    /// The recipient uses key agreement, KEK, password or another non-RSA scheme.
    #[error("RecipientInfo is not KeyTransRecipientInfo")]
    NotKeyTransport,
    /// keyEncryptionAlgorithm is not id-RSAES-OAEP (e.g. PKCS#1 v1.5).
    #[error("key encryption algorithm {0} is not id-RSAES-OAEP")]
    KeyEncryptionAlgorithm(String),
    /// The OAEP parameters are absent or not SHA-256 / MGF1-SHA-256 / empty label.
    #[error("unsupported RSAES-OAEP parameters: {0}")]
    OaepParams(&'static str),
    /// EncryptedContentInfo's contentType is not id-data.
    #[error("encrypted content type {0} is not id-data")]
    ContentType(String),
    /// contentEncryptionAlgorithm is not aes256-CBC (e.g. aes128-CBC).
    #[error("content encryption algorithm {0} is not aes256-CBC")]
    ContentEncryptionAlgorithm(String),
    /// The aes256-CBC parameters are not a 16-byte OCTET STRING IV.
    #[error("aes256-CBC parameters are not a 16-byte IV")]
    BadIv,
    /// encryptedContent is absent (detached content is not used by KMS).
    #[error("encryptedContent is absent")]
    NoEncryptedContent,
    /// The ciphertext cannot hold exactly a 32-byte plaintext plus a full padding block.
    #[error("encrypted content is {0} bytes, expected 48")]
    CiphertextLength(usize),
    /// RSA-OAEP decryption of encryptedKey failed: not addressed to this key, or tampered.
    #[error("could not decrypt the content-encryption key (wrong recipient or tampered)")]
    KeyUnwrap,
    /// The decrypted content-encryption key is not 32 bytes.
    #[error("content-encryption key is {0} bytes, expected 32")]
    CekLength(usize),
    /// AES-256-CBC decryption failed (bad padding or wrong plaintext length). One variant
    /// on purpose: distinguishing the two would be a padding oracle.
    #[error("could not decrypt the content (tampered IV or ciphertext)")]
    ContentDecrypt,
}

fn ber_decode<T: Decode>(part: &'static str, bytes: &[u8]) -> Result<T, CmsError> {
    let (value, rest) = rasn::ber::decode_with_remainder::<T>(bytes).map_err(|source| CmsError::Ber {
        part,
        source: Box::new(source),
    })?;
    if !rest.is_empty() {
        return Err(CmsError::TrailingData(part));
    }
    Ok(value)
}

fn oid_string(oid: &Oid) -> String {
    oid.iter().map(|arc| arc.to_string()).collect::<Vec<_>>().join(".")
}

fn is(oid: &ObjectIdentifier, want: &Oid) -> bool {
    &**oid == want
}

/// A hash AlgorithmIdentifier is acceptable if it is SHA-256 with parameters absent or
/// NULL (RFC 5754 allows both).
fn is_sha256(alg: &AlgorithmIdentifier) -> bool {
    if !is(&alg.algorithm, ID_SHA256) {
        return false;
    }
    match &alg.parameters {
        None => true,
        Some(any) => ber_decode::<()>("hash parameters", any.as_bytes()).is_ok(),
    }
}

/// Checks keyEncryptionAlgorithm: id-RSAES-OAEP with SHA-256, MGF1-SHA-256, empty label.
fn check_key_encryption_algorithm(alg: &AlgorithmIdentifier) -> Result<(), CmsError> {
    if !is(&alg.algorithm, ID_RSAES_OAEP) {
        return Err(CmsError::KeyEncryptionAlgorithm(oid_string(&alg.algorithm)));
    }
    let params = alg
        .parameters
        .as_ref()
        .ok_or(CmsError::OaepParams("parameters absent (SHA-1 defaults)"))?;
    let params: RsaesOaepParams = ber_decode("RSAES-OAEP-params", params.as_bytes())?;

    let hash = params
        .hash_func
        .as_ref()
        .ok_or(CmsError::OaepParams("hash absent (SHA-1 default)"))?;
    if !is_sha256(hash) {
        return Err(CmsError::OaepParams("hash is not SHA-256"));
    }

    let mgf = params
        .mask_gen_func
        .as_ref()
        .ok_or(CmsError::OaepParams("MGF absent (MGF1-SHA-1 default)"))?;
    if !is(&mgf.algorithm, ID_MGF1) {
        return Err(CmsError::OaepParams("mask generation function is not MGF1"));
    }
    let mgf_hash = mgf
        .parameters
        .as_ref()
        .ok_or(CmsError::OaepParams("MGF1 hash absent"))?;
    let mgf_hash: AlgorithmIdentifier = ber_decode("MGF1 parameters", mgf_hash.as_bytes())?;
    if !is_sha256(&mgf_hash) {
        return Err(CmsError::OaepParams("MGF1 hash is not SHA-256"));
    }

    if let Some(p_source) = &params.p_source_func {
        if !is(&p_source.algorithm, ID_P_SPECIFIED) {
            return Err(CmsError::OaepParams("label source is not id-pSpecified"));
        }
        // The label is an OCTET STRING; absent parameters are not valid for pSpecified.
        let label = p_source
            .parameters
            .as_ref()
            .ok_or(CmsError::OaepParams("pSpecified label absent"))?;
        let label: OctetString = ber_decode("OAEP label", label.as_bytes())?;
        if !label.is_empty() {
            return Err(CmsError::OaepParams("non-empty OAEP label"));
        }
    }
    Ok(())
}

/// Checks contentEncryptionAlgorithm is aes256-CBC and returns its 16-byte IV.
fn aes256_cbc_iv(alg: &AlgorithmIdentifier) -> Result<[u8; AES_CBC_IV_LEN], CmsError> {
    if !is(&alg.algorithm, AES256_CBC) {
        return Err(CmsError::ContentEncryptionAlgorithm(oid_string(&alg.algorithm)));
    }
    let params = alg.parameters.as_ref().ok_or(CmsError::BadIv)?;
    let iv: OctetString = ber_decode("aes256-CBC IV", params.as_bytes())?;
    <[u8; AES_CBC_IV_LEN]>::try_from(&iv[..]).map_err(|_| CmsError::BadIv)
}

/// Decrypts KMS's `CiphertextForRecipient` with the enclave's recipient key and returns
/// the 32-byte data key.
///
/// `ber` is untrusted: every structural, algorithm and cryptographic failure is a
/// [`CmsError`]; nothing here panics on input.
pub fn unwrap_enveloped_data(ber: &[u8], key: &RecipientKey) -> Result<[u8; DATA_KEY_LEN], CmsError> {
    if ber.len() > MAX_INPUT_LEN {
        return Err(CmsError::TooLarge(ber.len()));
    }
    let content_info: ContentInfo = ber_decode("ContentInfo", ber)?;
    if !is(&content_info.content_type, ID_ENVELOPED_DATA) {
        return Err(CmsError::NotEnvelopedData(oid_string(&content_info.content_type)));
    }
    let enveloped: EnvelopedData = ber_decode("EnvelopedData", content_info.content.as_bytes())?;

    let recipients = enveloped.recipient_infos.to_vec();
    let [recipient] = recipients.as_slice() else {
        return Err(CmsError::RecipientCount(recipients.len()));
    };
    let RecipientInfo::KeyTransRecipientInfo(ktri) = recipient else {
        return Err(CmsError::NotKeyTransport);
    };
    check_key_encryption_algorithm(&ktri.key_encryption_algorithm)?;

    let eci = &enveloped.encrypted_content_info;
    if !is(&eci.content_type, ID_DATA) {
        return Err(CmsError::ContentType(oid_string(&eci.content_type)));
    }
    let iv = aes256_cbc_iv(&eci.content_encryption_algorithm)?;
    let ciphertext = eci.encrypted_content.as_ref().ok_or(CmsError::NoEncryptedContent)?;
    // 32 bytes of data key + one full block of PKCS#7 padding. Checked before any
    // decryption so the length is not part of a padding oracle.
    let expected_len = DATA_KEY_LEN + AES_CBC_IV_LEN;
    if ciphertext.len() != expected_len {
        return Err(CmsError::CiphertextLength(ciphertext.len()));
    }

    let cek = key
        .decrypt_oaep_sha256(&ktri.encrypted_key)
        .map_err(|_| CmsError::KeyUnwrap)?;
    if cek.len() != CEK_LEN {
        return Err(CmsError::CekLength(cek.len()));
    }

    let unbound = UnboundCipherKey::new(&AES_256, &cek).map_err(|_| CmsError::ContentDecrypt)?;
    let decrypting = PaddedBlockDecryptingKey::cbc_pkcs7(unbound).map_err(|_| CmsError::ContentDecrypt)?;
    let mut buf = ciphertext.to_vec();
    let plaintext = decrypting
        .decrypt(&mut buf, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| CmsError::ContentDecrypt)?;
    let data_key = <[u8; DATA_KEY_LEN]>::try_from(&plaintext[..]).map_err(|_| CmsError::ContentDecrypt)?;
    buf.fill(0);
    Ok(data_key)
}
