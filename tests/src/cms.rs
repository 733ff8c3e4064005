//! Building CMS EnvelopedData (RFC 5652) the way KMS builds `CiphertextForRecipient`:
//! a random AES-256 content-encryption key, RSAES-OAEP (SHA-256, MGF1-SHA-256, no label)
//! to the recipient's SubjectPublicKeyInfo, and the content under AES-256-CBC (PKCS#7
//! padding), encoded in BER with indefinite lengths and the encrypted content split into
//! a constructed OCTET STRING.
//!
//! Used by the KMS test double ([`crate::kms_double`]) and by tests that hand the enclave
//! a CMS it must refuse. The crypto is aws-lc-rs's; only the DER/BER framing is written
//! here, and [`tests`] checks it against the enclave's own parser (which uses `rasn-cms`).

use aws_lc_rs::cipher::{EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey, AES_256};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256};
use sha2::{Digest, Sha256};

/// 1.2.840.113549.1.7.3 id-envelopedData.
const ID_ENVELOPED_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 3];
/// 1.2.840.113549.1.7.1 id-data.
const ID_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 1];
/// 1.2.840.113549.1.1.7 id-RSAES-OAEP.
const ID_RSAES_OAEP: &[u64] = &[1, 2, 840, 113549, 1, 1, 7];
/// 1.2.840.113549.1.1.8 id-mgf1.
const ID_MGF1: &[u64] = &[1, 2, 840, 113549, 1, 1, 8];
/// 2.16.840.1.101.3.4.2.1 id-sha256.
const ID_SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];
/// 2.16.840.1.101.3.4.1.42 aes256-CBC.
const AES256_CBC: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 1, 42];

/// Chunk size of the constructed encrypted content (KMS splits it; any size works).
const CHUNK: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum CmsBuildError {
    #[error("the recipient public key is not an RSA SubjectPublicKeyInfo")]
    PublicKey,
    #[error("encryption failed: {0}")]
    Crypto(&'static str),
}

/// An EnvelopedData carrying `content` to the RSA key `recipient_spki` (DER SPKI).
pub fn envelope(recipient_spki: &[u8], content: &[u8]) -> Result<Vec<u8>, CmsBuildError> {
    let rng = SystemRandom::new();
    let mut cek = [0u8; 32];
    let mut iv = [0u8; 16];
    rng.fill(&mut cek).map_err(|_| CmsBuildError::Crypto("rng"))?;
    rng.fill(&mut iv).map_err(|_| CmsBuildError::Crypto("rng"))?;

    let public = PublicEncryptingKey::from_der(recipient_spki).map_err(|_| CmsBuildError::PublicKey)?;
    let oaep = OaepPublicEncryptingKey::new(public).map_err(|_| CmsBuildError::PublicKey)?;
    let mut encrypted_key = vec![0u8; oaep.ciphertext_size()];
    let len = oaep
        .encrypt(&OAEP_SHA256_MGF1SHA256, &cek, &mut encrypted_key, None)
        .map_err(|_| CmsBuildError::Crypto("RSA-OAEP"))?
        .len();
    encrypted_key.truncate(len);

    let cbc = PaddedBlockEncryptingKey::cbc_pkcs7(
        UnboundCipherKey::new(&AES_256, &cek).map_err(|_| CmsBuildError::Crypto("AES key"))?,
    )
    .map_err(|_| CmsBuildError::Crypto("AES-CBC"))?;
    let mut ciphertext = content.to_vec();
    cbc.less_safe_encrypt(&mut ciphertext, EncryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| CmsBuildError::Crypto("AES-CBC"))?;
    cek.fill(0);

    // RSAES-OAEP-params: [0] hash SHA-256, [1] MGF1 with SHA-256 (the label is the default).
    let sha256 = tlv(0x30, &[oid(ID_SHA256), vec![0x05, 0x00]].concat());
    let oaep_params = tlv(
        0x30,
        &[
            tlv(0xA0, &sha256),
            tlv(0xA1, &tlv(0x30, &[oid(ID_MGF1), sha256.clone()].concat())),
        ]
        .concat(),
    );
    // The recipient is named by a subjectKeyIdentifier ([0] IMPLICIT): the enclave has
    // no certificate, and the identifier only lets a recipient pick its key.
    let ski = &Sha256::digest(recipient_spki)[..20];
    let recipient = indef(
        0x30,
        &[
            tlv(0x02, &[2]),
            tlv(0x80, ski),
            indef(0x30, &[oid(ID_RSAES_OAEP), oaep_params]),
            tlv(0x04, &encrypted_key),
        ],
    );
    let chunks: Vec<Vec<u8>> = ciphertext.chunks(CHUNK).map(|c| tlv(0x04, c)).collect();
    let content_info = indef(
        0x30,
        &[
            oid(ID_DATA),
            indef(0x30, &[oid(AES256_CBC), tlv(0x04, &iv)]),
            indef(0xA0, &chunks),
        ],
    );
    let enveloped = indef(0x30, &[tlv(0x02, &[2]), indef(0x31, &[recipient]), content_info]);
    Ok(indef(0x30, &[oid(ID_ENVELOPED_DATA), indef(0xA0, &[enveloped])]))
}

/// Definite-length TLV (short or long length form).
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Indefinite-length constructed TLV: tag, 0x80, children, end-of-contents.
fn indef(tag: u8, children: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![tag, 0x80];
    for child in children {
        out.extend_from_slice(child);
    }
    out.extend_from_slice(&[0, 0]);
    out
}

/// DER OBJECT IDENTIFIER from its arcs.
fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut push = |mut v: u64| {
        let mut tmp = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        body.extend(tmp.into_iter().rev());
    };
    push(arcs[0] * 40 + arcs[1]);
    for &arc in &arcs[2..] {
        push(arc);
    }
    tlv(0x06, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealgate_enclave::kms::{unwrap_enveloped_data, CmsError, RecipientKey};

    #[test]
    fn oids_encode_like_der() {
        assert_eq!(
            oid(ID_ENVELOPED_DATA),
            [0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x03]
        );
        assert_eq!(
            oid(AES256_CBC),
            [0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2A]
        );
    }

    #[test]
    fn the_enclave_unwraps_what_this_builds_and_only_with_its_key() {
        let key = RecipientKey::generate().expect("key");
        let other = RecipientKey::generate().expect("key");
        let data_key = [0x5a; 32];
        let cms = envelope(key.spki_der(), &data_key).expect("build");
        assert_eq!(&cms[..2], &[0x30, 0x80], "indefinite-length BER, like KMS");
        assert_eq!(unwrap_enveloped_data(&cms, &key).expect("unwrap"), data_key);
        assert!(matches!(unwrap_enveloped_data(&cms, &other), Err(CmsError::KeyUnwrap)));
        assert!(envelope(b"not a key", &data_key).is_err());
    }
}
