//! Nitro attestation documents: decoding, trust roots, the certificate chain and the
//! COSE signature. Pure functions over bytes and a judging time; no I/O.
//!
//! A document is an untagged COSE_Sign1 `[protected: bstr({1: -35}), unprotected: {},
//! payload: bstr, signature: bstr(r‖s, 96 bytes)]` whose payload is the CBOR map
//! `module_id, digest, timestamp, pcrs, certificate, cabundle, public_key, user_data,
//! nonce` (AWS's layout, which the enclave's simulator reproduces).
//!
//! Why not the `attestation-doc-validation` crate: its chain check
//! (`cert::validate_cert_trust_chain`) always uses the AWS root compiled into it and the
//! system clock, so it can neither take the caller's root (`--sim-root`) nor judge a
//! document at its own time (`--at`); it also brings webpki 0.22 (unmaintained),
//! serde_cbor (unmaintained), a second x509-parser and the NSM API crate. Here `coset` +
//! `ciborium` decode, `rustls-webpki` validates the chain against the caller's anchor at
//! the caller's time, and `ring` checks the ES384 signature.

use coset::{iana, CborSerializable, CoseSign1, RegisteredLabelWithPrivate};
use pki_types::{CertificateDer, UnixTime};
use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The AWS Nitro Enclaves Root-G1 certificate (PEM), as shipped in the source of the
/// `attestation-doc-validation` crate (0.10.1, `src/nitro.pem`).
pub const AWS_ROOT_PEM: &str = include_str!("aws-nitro-root-g1.pem");

/// SHA-256 of the AWS root's DER, as AWS publishes it. The embedded bytes must hash to
/// this, checked by [`TrustRoot::aws`] every time it is loaded.
pub const AWS_ROOT_SHA256: &str = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

/// Size of each PCR for the `SHA384` digest.
pub const PCR_LEN: usize = 48;

/// A trust anchor for attestation documents: the AWS root or a simulator's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRoot {
    pub der: Vec<u8>,
    /// True for a root given with `--sim-root`: documents it verifies prove nothing
    /// about hardware.
    pub simulator: bool,
    /// Where it came from, for the report.
    pub label: String,
}

/// Lower-case hex SHA-256, as fingerprints are written.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads a certificate given as PEM or DER and returns its DER.
pub fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let der = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(bytes.trim_ascii_start())
            .map_err(|e| format!("not a PEM certificate: {e}"))?;
        if pem.label != "CERTIFICATE" {
            return Err(format!("PEM block is {:?}, expected CERTIFICATE", pem.label));
        }
        pem.contents
    } else {
        bytes.to_vec()
    };
    parse_certificate(&der)?;
    Ok(der)
}

/// Parses a whole DER certificate; trailing bytes are an error.
pub fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(format!("{} trailing bytes after the certificate", rest.len())),
        Err(e) => Err(format!("not a DER X.509 certificate: {e}")),
    }
}

impl TrustRoot {
    /// The embedded AWS Nitro Enclaves Root-G1, after checking it against the pinned
    /// fingerprint.
    pub fn aws() -> Result<TrustRoot, String> {
        let der = certificate_der(AWS_ROOT_PEM.as_bytes()).map_err(|e| format!("embedded AWS root: {e}"))?;
        let got = sha256_hex(&der);
        if got != AWS_ROOT_SHA256 {
            return Err(format!(
                "embedded AWS root hashes to {got}, not the pinned {AWS_ROOT_SHA256}: this binary is corrupt"
            ));
        }
        Ok(TrustRoot {
            der,
            simulator: false,
            label: "AWS Nitro Enclaves Root-G1 (embedded)".into(),
        })
    }

    /// A simulator root from `--sim-root` (PEM or DER); it must be self-issued.
    pub fn simulator(bytes: &[u8], label: &str) -> Result<TrustRoot, String> {
        let der = certificate_der(bytes)?;
        let cert = parse_certificate(&der)?;
        if cert.issuer().as_raw() != cert.subject().as_raw() {
            return Err("not a root certificate (its issuer is not its subject)".into());
        }
        drop(cert);
        if sha256_hex(&der) == AWS_ROOT_SHA256 {
            return Err("this is the AWS Nitro root, not a simulator root; omit --sim-root".into());
        }
        Ok(TrustRoot {
            der,
            simulator: true,
            label: label.to_string(),
        })
    }

    pub fn sha256(&self) -> String {
        sha256_hex(&self.der)
    }

    /// One line for the report; a simulator root is named in capitals.
    pub fn describe(&self) -> String {
        if self.simulator {
            format!(
                "SIMULATOR root {} (sha256 {}): this document proves nothing about hardware",
                self.label,
                self.sha256()
            )
        } else {
            format!("{} (sha256 {})", self.label, self.sha256())
        }
    }
}

/// A decoded attestation document. Nothing in it is trusted until [`verify_chain`] and
/// [`verify_signature`] pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub module_id: String,
    pub digest: String,
    pub timestamp_ms: u64,
    pub pcrs: BTreeMap<u64, Vec<u8>>,
    pub certificate: Vec<u8>,
    pub cabundle: Vec<Vec<u8>>,
    pub public_key: Option<Vec<u8>>,
    pub user_data: Option<Vec<u8>>,
    pub nonce: Option<Vec<u8>>,
    /// The COSE `Sig_structure` the signature covers.
    pub to_be_signed: Vec<u8>,
    /// r‖s, 96 bytes.
    pub signature: Vec<u8>,
}

fn text(v: ciborium::Value, key: &str) -> Result<String, String> {
    match v {
        ciborium::Value::Text(s) => Ok(s),
        _ => Err(format!("payload {key} is not a text string")),
    }
}

fn bytes(v: ciborium::Value, key: &str) -> Result<Vec<u8>, String> {
    match v {
        ciborium::Value::Bytes(b) => Ok(b),
        _ => Err(format!("payload {key} is not a byte string")),
    }
}

fn bytes_or_null(v: ciborium::Value, key: &str) -> Result<Option<Vec<u8>>, String> {
    match v {
        ciborium::Value::Null => Ok(None),
        other => bytes(other, key).map(Some),
    }
}

impl Document {
    /// Decodes an untagged COSE_Sign1 with an ES384 protected header and the AWS payload.
    /// Anything else — a tag, trailing bytes, a non-canonical re-encoding, another
    /// algorithm, unknown or missing payload fields — is an error.
    pub fn decode(cose: &[u8]) -> Result<Document, String> {
        let sign1 = CoseSign1::from_slice(cose).map_err(|e| format!("not a COSE_Sign1: {e}"))?;
        // Re-encoding must give the same bytes: no trailing data, no alternative
        // encodings of the unsigned parts (the unprotected header is not signed).
        let again = sign1.clone().to_vec().map_err(|e| format!("re-encoding: {e}"))?;
        if again != cose {
            return Err("COSE_Sign1 is not in its canonical encoding (or has trailing bytes)".into());
        }
        if !sign1.unprotected.is_empty() {
            return Err("COSE_Sign1 has a non-empty unprotected header".into());
        }
        match &sign1.protected.header.alg {
            Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES384)) => {}
            other => return Err(format!("COSE algorithm is {other:?}, expected ES384")),
        }
        let payload = sign1.payload.clone().ok_or("COSE_Sign1 has a detached (nil) payload")?;
        if sign1.signature.len() != 96 {
            return Err(format!(
                "ES384 signature is {} bytes, expected 96",
                sign1.signature.len()
            ));
        }
        let to_be_signed = sign1.tbs_data(b"");
        let mut doc = Self::decode_payload(&payload)?;
        doc.to_be_signed = to_be_signed;
        doc.signature = sign1.signature;
        Ok(doc)
    }

    fn decode_payload(payload: &[u8]) -> Result<Document, String> {
        let mut rest = payload;
        let value: ciborium::Value =
            ciborium::de::from_reader(&mut rest).map_err(|e| format!("payload is not CBOR: {e}"))?;
        if !rest.is_empty() {
            return Err(format!("{} trailing bytes after the payload map", rest.len()));
        }
        let ciborium::Value::Map(entries) = value else {
            return Err("payload is not a CBOR map".into());
        };
        let mut fields: BTreeMap<String, ciborium::Value> = BTreeMap::new();
        for (k, v) in entries {
            let k = text(k, "key")?;
            if fields.insert(k.clone(), v).is_some() {
                return Err(format!("payload has {k:?} twice"));
            }
        }
        let mut take = |k: &str| fields.remove(k).ok_or_else(|| format!("payload has no {k}"));
        let module_id = text(take("module_id")?, "module_id")?;
        let digest = text(take("digest")?, "digest")?;
        let timestamp_ms = match take("timestamp")? {
            ciborium::Value::Integer(i) => u64::try_from(i).map_err(|_| "payload timestamp is out of range")?,
            _ => return Err("payload timestamp is not an integer".into()),
        };
        let ciborium::Value::Map(raw_pcrs) = take("pcrs")? else {
            return Err("payload pcrs is not a map".into());
        };
        let certificate = bytes(take("certificate")?, "certificate")?;
        let ciborium::Value::Array(raw_bundle) = take("cabundle")? else {
            return Err("payload cabundle is not an array".into());
        };
        let public_key = bytes_or_null(take("public_key").unwrap_or(ciborium::Value::Null), "public_key")?;
        let user_data = bytes_or_null(take("user_data").unwrap_or(ciborium::Value::Null), "user_data")?;
        let nonce = bytes_or_null(take("nonce").unwrap_or(ciborium::Value::Null), "nonce")?;
        if let Some(k) = fields.keys().next() {
            return Err(format!("payload has an unknown field {k:?}"));
        }
        if module_id.is_empty() {
            return Err("payload module_id is empty".into());
        }
        if digest != "SHA384" {
            return Err(format!("payload digest is {digest:?}, expected \"SHA384\""));
        }
        let mut pcrs = BTreeMap::new();
        for (k, v) in raw_pcrs {
            let index = match k {
                ciborium::Value::Integer(i) => u64::try_from(i).ok().filter(|i| *i < 32),
                _ => None,
            }
            .ok_or("payload pcrs has a key that is not a PCR index 0..31")?;
            let value = bytes(v, "pcr")?;
            if value.len() != PCR_LEN {
                return Err(format!("PCR{index} is {} bytes, expected {PCR_LEN}", value.len()));
            }
            if pcrs.insert(index, value).is_some() {
                return Err(format!("payload has PCR{index} twice"));
            }
        }
        let cabundle = raw_bundle
            .into_iter()
            .map(|v| bytes(v, "cabundle entry"))
            .collect::<Result<Vec<_>, _>>()?;
        if cabundle.is_empty() {
            return Err("payload cabundle is empty".into());
        }
        Ok(Document {
            module_id,
            digest,
            timestamp_ms,
            pcrs,
            certificate,
            cabundle,
            public_key,
            user_data,
            nonce,
            to_be_signed: Vec::new(),
            signature: Vec::new(),
        })
    }

    /// The root the document bundles (AWS puts it first in `cabundle`). Informative
    /// only: the chain is always built to the caller's anchor.
    pub fn bundled_root(&self) -> &[u8] {
        &self.cabundle[0]
    }
}

/// Accepts whatever extended key usage the leaf has: AWS defines none for document
/// signing certificates, and the leaf signs only documents.
struct AnyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for id in iter {
            id?;
        }
        Ok(())
    }
}

/// Validates leaf → cabundle → `root` at `at_secs` (every certificate, the root included,
/// must be valid then). Returns a description of the path.
pub fn verify_chain(doc: &Document, root: &TrustRoot, at_secs: u64) -> Result<String, String> {
    let root_cert = parse_certificate(&root.der)?;
    let validity = root_cert.validity();
    let (nb, na) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    let at = i64::try_from(at_secs).unwrap_or(i64::MAX);
    if at < nb || at > na {
        return Err(format!(
            "the root is not valid at {at_secs} (valid {} to {})",
            validity.not_before, validity.not_after
        ));
    }
    let root_der = CertificateDer::from(root.der.as_slice());
    let anchor = webpki::anchor_from_trusted_cert(&root_der).map_err(|e| format!("root: {e}"))?;
    let leaf_der = CertificateDer::from(doc.certificate.as_slice());
    let leaf = webpki::EndEntityCert::try_from(&leaf_der).map_err(|e| format!("leaf certificate: {e}"))?;
    let intermediates: Vec<CertificateDer<'_>> = doc
        .cabundle
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let anchors = [anchor];
    let path = leaf
        .verify_for_usage(
            &[webpki::ring::ECDSA_P384_SHA384],
            &anchors,
            &intermediates,
            UnixTime::since_unix_epoch(Duration::from_secs(at_secs)),
            AnyUsage,
            None,
            None,
        )
        .map_err(|e| format!("leaf does not chain to the root at {at_secs}: {}", describe_webpki(&e)))?;
    let depth = path.intermediate_certificates().count();
    let leaf_cert = parse_certificate(&doc.certificate)?;
    Ok(format!(
        "leaf {:?} (valid {} to {}) → {depth} intermediate(s) → root",
        leaf_cert.subject().to_string(),
        leaf_cert.validity().not_before,
        leaf_cert.validity().not_after
    ))
}

/// rustls-webpki's errors, in words where it matters to an auditor.
fn describe_webpki(e: &webpki::Error) -> String {
    match e {
        webpki::Error::CertExpired { time, not_after } => format!(
            "a certificate expired at {} (judged at {})",
            not_after.as_secs(),
            time.as_secs()
        ),
        webpki::Error::CertNotValidYet { time, not_before } => format!(
            "a certificate is not valid before {} (judged at {})",
            not_before.as_secs(),
            time.as_secs()
        ),
        webpki::Error::UnknownIssuer => "unknown issuer: no path from the leaf to this root".into(),
        webpki::Error::InvalidSignatureForPublicKey => {
            "a certificate's signature does not verify under its issuer's key".into()
        }
        other => format!("{other:?}"),
    }
}

/// Checks the COSE ES384 signature under the leaf certificate's key.
pub fn verify_signature(doc: &Document) -> Result<(), String> {
    let leaf = parse_certificate(&doc.certificate).map_err(|e| format!("leaf certificate: {e}"))?;
    let point = &leaf.public_key().subject_public_key.data;
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, point.as_ref())
        .verify(&doc.to_be_signed, &doc.signature)
        .map_err(|_| "ES384 signature does not verify under the leaf certificate's key".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_aws_root_matches_its_pin() {
        let root = TrustRoot::aws().expect("pinned root");
        assert_eq!(root.sha256(), AWS_ROOT_SHA256);
        assert!(!root.simulator);
        let cert = parse_certificate(&root.der).unwrap();
        assert!(cert.subject().to_string().contains("aws.nitro-enclaves"));
    }

    #[test]
    fn aws_root_is_refused_as_a_simulator_root() {
        assert!(TrustRoot::simulator(AWS_ROOT_PEM.as_bytes(), "x").is_err());
        assert!(TrustRoot::simulator(b"not a certificate", "x").is_err());
    }

    #[test]
    fn garbage_is_not_a_document() {
        assert!(Document::decode(&[]).is_err());
        assert!(Document::decode(&[0x84, 0x40, 0xa0, 0xf6, 0x40]).is_err());
    }
}
