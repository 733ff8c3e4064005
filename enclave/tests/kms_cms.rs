//! Tests for unwrapping KMS `CiphertextForRecipient` (CMS EnvelopedData).
//!
//! Every message here is built for real, the way KMS builds it: a random 32-byte CEK is
//! RSA-OAEP-SHA256-encrypted to the recipient key's SPKI, and a random 32-byte data key
//! is AES-256-CBC (PKCS#7) encrypted under the CEK. Each message is encoded twice: as DER
//! by `rasn` with the `rasn-cms` types, and as KMS-style BER by a small writer below
//! (indefinite lengths everywhere, encrypted content split into a constructed OCTET
//! STRING of chunks). If `openssl` is on PATH, a message from `openssl cms -encrypt
//! -stream` is checked too.

use std::sync::OnceLock;

use aws_lc_rs::cipher::{EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey, AES_256};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256};
use proptest::prelude::*;
use rasn::prelude::*;
use rasn_cms::{
    AlgorithmIdentifier, ContentInfo, EncryptedContentInfo, EnvelopedData, KeyTransRecipientInfo, RecipientIdentifier,
    RecipientInfo,
};
use sealgate_enclave::kms::{
    unwrap_enveloped_data, CmsError, RecipientKey, RsaesOaepParams, AES256_CBC, ID_DATA, ID_ENVELOPED_DATA, ID_MGF1,
    ID_RSAES_OAEP, ID_SHA256, MAX_INPUT_LEN,
};

const RSA_PKCS1_V15: &Oid = Oid::const_new(&[1, 2, 840, 113549, 1, 1, 1]);
const AES128_CBC: &Oid = Oid::const_new(&[2, 16, 840, 1, 101, 3, 4, 1, 2]);
const ID_SHA1: &Oid = Oid::const_new(&[1, 3, 14, 3, 2, 26]);
const ID_SIGNED_DATA: &Oid = Oid::const_new(&[1, 2, 840, 113549, 1, 7, 2]);

/// RSA-2048 generation is slow; share two keys across tests.
fn key() -> &'static RecipientKey {
    static KEY: OnceLock<RecipientKey> = OnceLock::new();
    KEY.get_or_init(|| RecipientKey::generate().expect("generate"))
}

fn other_key() -> &'static RecipientKey {
    static KEY: OnceLock<RecipientKey> = OnceLock::new();
    KEY.get_or_init(|| RecipientKey::generate().expect("generate"))
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    SystemRandom::new().fill(&mut out).expect("rng");
    out
}

fn oaep_encrypt(spki: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let public = PublicEncryptingKey::from_der(spki).expect("spki");
    let oaep = OaepPublicEncryptingKey::new(public).expect("oaep key");
    let mut out = vec![0u8; oaep.ciphertext_size()];
    let len = oaep
        .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, None)
        .expect("encrypt")
        .len();
    out.truncate(len);
    out
}

fn cbc_encrypt(cek: &[u8], iv: [u8; 16], plaintext: &[u8]) -> Vec<u8> {
    let key = PaddedBlockEncryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_256, cek).expect("aes key")).expect("cbc");
    let mut buf = plaintext.to_vec();
    key.less_safe_encrypt(&mut buf, EncryptionContext::Iv128(FixedLength::from(iv)))
        .expect("cbc encrypt");
    buf
}

/// One recipient entry of a message under construction.
#[derive(Clone)]
struct Recipient {
    kea_oid: &'static Oid,
    /// DER of the keyEncryptionAlgorithm parameters, or None for absent.
    kea_params: Option<Vec<u8>>,
    encrypted_key: Vec<u8>,
}

/// Everything a message is made of, so tests can change one thing at a time.
#[derive(Clone)]
struct Spec {
    content_type: &'static Oid,
    recipients: Vec<Recipient>,
    cea_oid: &'static Oid,
    iv: [u8; 16],
    ciphertext: Vec<u8>,
}

fn der<T: Encode>(value: &T) -> Vec<u8> {
    rasn::der::encode(value).expect("der encode")
}

fn alg(oid: &Oid, params: Option<Vec<u8>>) -> AlgorithmIdentifier {
    AlgorithmIdentifier {
        algorithm: oid.to_owned(),
        parameters: params.map(Any::new),
    }
}

/// RSAES-OAEP-params for SHA-256 / MGF1-SHA-256, as KMS and OpenSSL write them.
fn oaep_sha256_params() -> Vec<u8> {
    let sha256 = alg(ID_SHA256, Some(vec![0x05, 0x00]));
    der(&RsaesOaepParams {
        hash_func: Some(sha256.clone()),
        mask_gen_func: Some(alg(ID_MGF1, Some(der(&sha256)))),
        p_source_func: None,
    })
}

/// A message as KMS would send it: returns the spec and the data key it carries.
fn kms_like(key: &RecipientKey) -> (Spec, [u8; 32]) {
    let data_key: [u8; 32] = random();
    let cek: [u8; 32] = random();
    let iv: [u8; 16] = random();
    let spec = Spec {
        content_type: ID_ENVELOPED_DATA,
        recipients: vec![Recipient {
            kea_oid: ID_RSAES_OAEP,
            kea_params: Some(oaep_sha256_params()),
            encrypted_key: oaep_encrypt(key.spki_der(), &cek),
        }],
        cea_oid: AES256_CBC,
        iv,
        ciphertext: cbc_encrypt(&cek, iv, &data_key),
    };
    (spec, data_key)
}

/// DER encoding through rasn's CMS types.
fn encode_der(spec: &Spec) -> Vec<u8> {
    let recipients = spec
        .recipients
        .iter()
        .enumerate()
        .map(|(i, r)| {
            RecipientInfo::KeyTransRecipientInfo(KeyTransRecipientInfo {
                version: Integer::from(2),
                rid: RecipientIdentifier::SubjectKeyIdentifier(OctetString::from(vec![i as u8; 20])),
                key_encryption_algorithm: alg(r.kea_oid, r.kea_params.clone()),
                encrypted_key: OctetString::from(r.encrypted_key.clone()),
            })
        })
        .collect();
    let enveloped = EnvelopedData {
        version: Integer::from(2),
        originator_info: None,
        recipient_infos: SetOf::from_vec(recipients),
        encrypted_content_info: EncryptedContentInfo {
            content_type: ID_DATA.to_owned(),
            content_encryption_algorithm: alg(spec.cea_oid, Some(der(&OctetString::from(spec.iv.to_vec())))),
            encrypted_content: Some(OctetString::from(spec.ciphertext.clone())),
        },
        unprotected_attrs: None,
    };
    der(&ContentInfo {
        content_type: spec.content_type.to_owned(),
        content: Any::new(der(&enveloped)),
    })
}

// ---- A minimal BER writer: just enough to write what KMS writes. ----

/// Definite-length TLV (short or long form).
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

fn oid_tlv(oid: &Oid) -> Vec<u8> {
    der(&oid.to_owned())
}

/// KMS-style BER: indefinite lengths for every constructed value, and the encrypted
/// content as a constructed [0] of OCTET STRING chunks of `chunk` bytes.
fn encode_ber(spec: &Spec, chunk: usize) -> Vec<u8> {
    let recipients: Vec<Vec<u8>> = spec
        .recipients
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut kea = vec![oid_tlv(r.kea_oid)];
            if let Some(params) = &r.kea_params {
                kea.push(params.clone());
            }
            indef(
                0x30,
                &[
                    tlv(0x02, &[2]),
                    tlv(0x80, &[i as u8; 20]),
                    indef(0x30, &kea),
                    tlv(0x04, &r.encrypted_key),
                ],
            )
        })
        .collect();
    let chunks: Vec<Vec<u8>> = spec.ciphertext.chunks(chunk).map(|c| tlv(0x04, c)).collect();
    let eci = indef(
        0x30,
        &[
            oid_tlv(ID_DATA),
            indef(0x30, &[oid_tlv(spec.cea_oid), tlv(0x04, &spec.iv)]),
            indef(0xA0, &chunks),
        ],
    );
    let enveloped = indef(0x30, &[tlv(0x02, &[2]), indef(0x31, &recipients), eci]);
    indef(0x30, &[oid_tlv(spec.content_type), indef(0xA0, &[enveloped])])
}

/// Both encodings of a spec (BER with 16- and 5-byte chunks).
fn encodings(spec: &Spec) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("DER", encode_der(spec)),
        ("BER/16", encode_ber(spec, 16)),
        ("BER/5", encode_ber(spec, 5)),
    ]
}

fn flip(bytes: &mut [u8], bit: usize) {
    bytes[bit / 8] ^= 1 << (bit % 8);
}

#[test]
fn recipient_key_spki_and_oaep_roundtrip() {
    let spki = key().spki_der();
    assert_eq!(spki[0], 0x30, "SPKI is a DER SEQUENCE");
    let public = PublicEncryptingKey::from_der(spki).expect("SPKI parses");
    assert_eq!(public.key_size_bits(), 2048);
    assert_ne!(key().spki_der(), other_key().spki_der());

    let secret = random::<32>();
    let ct = oaep_encrypt(spki, &secret);
    assert_eq!(key().decrypt_oaep_sha256(&ct).expect("decrypt"), secret);
    assert!(other_key().decrypt_oaep_sha256(&ct).is_err());
    assert!(key().decrypt_oaep_sha256(&ct[1..]).is_err());
    assert!(key().decrypt_oaep_sha256(&[]).is_err());
}

#[test]
fn der_and_ber_decode_to_the_data_key() {
    let (spec, data_key) = kms_like(key());
    for (name, bytes) in encodings(&spec) {
        let got = unwrap_enveloped_data(&bytes, key());
        assert_eq!(got.ok(), Some(data_key), "{name}");
    }
    // The BER really is indefinite-length and chunked (guards the writer itself).
    let ber = encode_ber(&spec, 5);
    assert_eq!(&ber[..2], &[0x30, 0x80]);
    assert_ne!(ber, encode_der(&spec));
}

#[test]
fn another_recipient_key_fails() {
    let (spec, _) = kms_like(key());
    for (name, bytes) in encodings(&spec) {
        let err = unwrap_enveloped_data(&bytes, other_key()).unwrap_err();
        assert!(matches!(err, CmsError::KeyUnwrap), "{name}: {err:?}");
    }
}

#[test]
fn flipped_encrypted_key_bits_fail() {
    let (spec, _) = kms_like(key());
    for bit in [0, 7, 100, 1000, 2047] {
        let mut bad = spec.clone();
        flip(&mut bad.recipients[0].encrypted_key, bit);
        for (name, bytes) in encodings(&bad) {
            let err = unwrap_enveloped_data(&bytes, key()).unwrap_err();
            assert!(matches!(err, CmsError::KeyUnwrap), "{name} bit {bit}: {err:?}");
        }
    }
}

#[test]
fn flipped_bits_in_the_last_two_ciphertext_blocks_fail() {
    let (spec, _) = kms_like(key());
    // Blocks 2 and 3 (bytes 16..48): a flip reaches the padding block, which must then
    // be anything but the 16 bytes of 0x10 that a 32-byte plaintext needs.
    for bit in (128..384).step_by(7) {
        let mut bad = spec.clone();
        flip(&mut bad.ciphertext, bit);
        for (name, bytes) in encodings(&bad) {
            let err = unwrap_enveloped_data(&bytes, key()).unwrap_err();
            assert!(matches!(err, CmsError::ContentDecrypt), "{name} bit {bit}: {err:?}");
        }
    }
}

/// CMS EnvelopedData with CBC has no integrity: a flipped IV bit (or first-block bit)
/// turns into a changed data key, not an error. This pins that behaviour so nobody relies
/// on the CMS layer for integrity: the AES-256-GCM unwrap of the sealed keys under the
/// data key is what detects it.
#[test]
fn flipped_iv_bits_change_the_data_key_instead_of_failing() {
    let (spec, data_key) = kms_like(key());
    for bit in [0, 9, 64, 127] {
        let mut bad = spec.clone();
        flip(&mut bad.iv, bit);
        let mut expected = data_key;
        flip(&mut expected, bit);
        for (name, bytes) in encodings(&bad) {
            let got = unwrap_enveloped_data(&bytes, key()).expect(name);
            assert_ne!(got, data_key, "{name}");
            assert_eq!(got, expected, "{name}");
        }
    }
}

#[test]
fn every_truncation_fails() {
    let (spec, _) = kms_like(key());
    for (name, bytes) in encodings(&spec) {
        for len in 0..bytes.len() {
            let err = unwrap_enveloped_data(&bytes[..len], key());
            assert!(err.is_err(), "{name} truncated to {len} decoded");
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let (spec, _) = kms_like(key());
    for (name, mut bytes) in encodings(&spec) {
        bytes.push(0);
        let err = unwrap_enveloped_data(&bytes, key()).unwrap_err();
        assert!(matches!(err, CmsError::TrailingData(_)), "{name}: {err:?}");
    }
}

#[test]
fn rsa_pkcs1_v15_key_transport_is_refused() {
    let (mut spec, _) = kms_like(key());
    spec.recipients[0].kea_oid = RSA_PKCS1_V15;
    spec.recipients[0].kea_params = Some(vec![0x05, 0x00]);
    for (name, bytes) in encodings(&spec) {
        let err = unwrap_enveloped_data(&bytes, key()).unwrap_err();
        assert!(
            matches!(err, CmsError::KeyEncryptionAlgorithm(ref oid) if oid == "1.2.840.113549.1.1.1"),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn oaep_with_sha1_or_missing_params_is_refused() {
    let sha1 = alg(ID_SHA1, Some(vec![0x05, 0x00]));
    let sha256 = alg(ID_SHA256, None);
    let variants: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("absent params (SHA-1 defaults)", None),
        (
            "empty params (SHA-1 defaults)",
            Some(der(&RsaesOaepParams {
                hash_func: None,
                mask_gen_func: None,
                p_source_func: None,
            })),
        ),
        (
            "SHA-1 hash",
            Some(der(&RsaesOaepParams {
                hash_func: Some(sha1.clone()),
                mask_gen_func: Some(alg(ID_MGF1, Some(der(&sha256)))),
                p_source_func: None,
            })),
        ),
        (
            "MGF1-SHA-1",
            Some(der(&RsaesOaepParams {
                hash_func: Some(sha256.clone()),
                mask_gen_func: Some(alg(ID_MGF1, Some(der(&sha1)))),
                p_source_func: None,
            })),
        ),
        ("NULL instead of params", Some(vec![0x05, 0x00])),
    ];
    for (what, params) in variants {
        let (mut spec, _) = kms_like(key());
        spec.recipients[0].kea_params = params;
        for (name, bytes) in encodings(&spec) {
            let err = unwrap_enveloped_data(&bytes, key()).unwrap_err();
            assert!(
                matches!(err, CmsError::OaepParams(_) | CmsError::Ber { .. }),
                "{what} {name}: {err:?}"
            );
        }
    }
    // Sanity: the absent-NULL SHA-256 form (RFC 5754 allows it) is accepted.
    let (mut spec, data_key) = kms_like(key());
    spec.recipients[0].kea_params = Some(der(&RsaesOaepParams {
        hash_func: Some(sha256.clone()),
        mask_gen_func: Some(alg(ID_MGF1, Some(der(&sha256)))),
        p_source_func: None,
    }));
    assert_eq!(unwrap_enveloped_data(&encode_der(&spec), key()).ok(), Some(data_key));
}

#[test]
fn aes128_cbc_is_refused() {
    let (mut spec, _) = kms_like(key());
    spec.cea_oid = AES128_CBC;
    for (name, bytes) in encodings(&spec) {
        let err = unwrap_enveloped_data(&bytes, key()).unwrap_err();
        assert!(
            matches!(err, CmsError::ContentEncryptionAlgorithm(_)),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn other_content_types_are_refused() {
    let (mut spec, _) = kms_like(key());
    spec.content_type = ID_SIGNED_DATA;
    for (name, bytes) in encodings(&spec) {
        let err = unwrap_enveloped_data(&bytes, key()).unwrap_err();
        assert!(matches!(err, CmsError::NotEnvelopedData(_)), "{name}: {err:?}");
    }
}

#[test]
fn zero_or_two_recipients_are_refused() {
    let (spec, _) = kms_like(key());
    let mut none = spec.clone();
    none.recipients.clear();
    let mut two = spec.clone();
    let (other, _) = kms_like(other_key());
    two.recipients.push(other.recipients[0].clone());
    for (want, bad) in [(0, none), (2, two)] {
        for (name, bytes) in encodings(&bad) {
            let err = unwrap_enveloped_data(&bytes, key()).unwrap_err();
            assert!(
                matches!(err, CmsError::RecipientCount(n) if n == want),
                "{name}: {err:?}"
            );
        }
    }
}

#[test]
fn wrong_sizes_are_refused() {
    // A 16-byte "data key": ciphertext is 32 bytes, refused before decryption.
    let (mut spec, _) = kms_like(key());
    let cek: [u8; 32] = random();
    spec.recipients[0].encrypted_key = oaep_encrypt(key().spki_der(), &cek);
    spec.ciphertext = cbc_encrypt(&cek, spec.iv, &[7u8; 16]);
    for (name, bytes) in encodings(&spec) {
        let err = unwrap_enveloped_data(&bytes, key()).unwrap_err();
        assert!(matches!(err, CmsError::CiphertextLength(32)), "{name}: {err:?}");
    }
    // A 16-byte CEK (AES-128 key under an aes256-CBC label).
    let (mut spec, _) = kms_like(key());
    spec.recipients[0].encrypted_key = oaep_encrypt(key().spki_der(), &[1u8; 16]);
    for (name, bytes) in encodings(&spec) {
        let err = unwrap_enveloped_data(&bytes, key()).unwrap_err();
        assert!(matches!(err, CmsError::CekLength(16)), "{name}: {err:?}");
    }
    // A 33-byte plaintext: the ciphertext is 48 bytes like a real one, but the plaintext
    // length is wrong, which must look like any other content failure.
    let (mut spec, _) = kms_like(key());
    let cek: [u8; 32] = random();
    spec.recipients[0].encrypted_key = oaep_encrypt(key().spki_der(), &cek);
    spec.ciphertext = cbc_encrypt(&cek, spec.iv, &[7u8; 33]);
    assert_eq!(spec.ciphertext.len(), 48);
    for (name, bytes) in encodings(&spec) {
        let err = unwrap_enveloped_data(&bytes, key()).unwrap_err();
        assert!(matches!(err, CmsError::ContentDecrypt), "{name}: {err:?}");
    }
    // A short IV.
    let (spec, _) = kms_like(key());
    let mut bytes = encode_der(&spec);
    let at = bytes
        .windows(18)
        .position(|w| w[0] == 0x04 && w[1] == 0x10 && w[2..] == spec.iv)
        .expect("IV in DER");
    bytes[at + 1] = 0x0f;
    bytes.remove(at + 2);
    // Outer lengths are now off by one; the decoder must refuse either way.
    assert!(unwrap_enveloped_data(&bytes, key()).is_err());
    // Oversized input.
    let err = unwrap_enveloped_data(&vec![0x30; MAX_INPUT_LEN + 1], key()).unwrap_err();
    assert!(matches!(err, CmsError::TooLarge(_)), "{err:?}");
}

#[test]
fn deeply_nested_constructed_strings_do_not_crash() {
    // A hostile host could nest constructed OCTET STRINGs as deep as the size cap allows.
    let (spec, _) = kms_like(key());
    let ber = encode_ber(&spec, 16);
    let mut nested = tlv(0x04, &spec.ciphertext);
    for _ in 0..3000 {
        nested = indef(0x24, &[nested]);
    }
    // Replace the chunked content with the nested one: it must not overflow the stack.
    let chunks_start = ber
        .windows(4)
        .position(|w| w == [0xA0, 0x80, 0x04, 0x10])
        .expect("chunked content");
    let mut hostile = ber[..chunks_start].to_vec();
    hostile.extend(indef(0xA0, &[nested]));
    hostile.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    // rasn caps its BER nesting depth, so this is refused as malformed BER.
    let err = unwrap_enveloped_data(&hostile, key()).unwrap_err();
    assert!(matches!(err, CmsError::Ber { .. }), "{err:?}");
}

#[test]
fn openssl_cms_stream_output_decodes() {
    let have_openssl = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_openssl {
        println!("SKIP: openssl not on PATH");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "key.pem",
    ]);
    run(&[
        "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out", "key.der",
    ]);
    run(&[
        "req",
        "-new",
        "-x509",
        "-key",
        "key.pem",
        "-subj",
        "/CN=sealgate-test",
        "-days",
        "1",
        "-out",
        "cert.pem",
    ]);
    let data_key: [u8; 32] = random();
    std::fs::write(dir.path().join("data.bin"), data_key).expect("write");
    run(&[
        "cms",
        "-encrypt",
        "-stream",
        "-binary",
        "-outform",
        "DER",
        "-aes256",
        "-in",
        "data.bin",
        "-out",
        "cms.ber",
        "-recip",
        "cert.pem",
        "-keyopt",
        "rsa_padding_mode:oaep",
        "-keyopt",
        "rsa_oaep_md:sha256",
        "-keyopt",
        "rsa_mgf1_md:sha256",
    ]);
    let pkcs8 = std::fs::read(dir.path().join("key.der")).expect("read key");
    let recipient = RecipientKey::from_pkcs8(&pkcs8).expect("load key");
    let cms = std::fs::read(dir.path().join("cms.ber")).expect("read cms");
    assert_eq!(&cms[..2], &[0x30, 0x80], "openssl -stream writes indefinite lengths");
    assert_eq!(unwrap_enveloped_data(&cms, &recipient).ok(), Some(data_key));
    let err = unwrap_enveloped_data(&cms, key()).unwrap_err();
    assert!(matches!(err, CmsError::KeyUnwrap), "{err:?}");
}

fn valid_messages() -> &'static Vec<Vec<u8>> {
    static MSGS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    MSGS.get_or_init(|| {
        let (spec, _) = kms_like(key());
        encodings(&spec).into_iter().map(|(_, b)| b).collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        prop_assert!(unwrap_enveloped_data(&bytes, key()).is_err());
    }

    #[test]
    fn mutated_messages_never_panic(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = valid_messages()[which].clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let _ = unwrap_enveloped_data(&bytes, key());
    }
}
