//! What an attestation document's `user_data` commits to, and how.
//!
//! `user_data = SHA-256(JSON(Commitment))`, where the JSON is serde_json's compact
//! encoding of [`Commitment`] with its fields in declaration order, `audiences` in
//! configured order and `jwk_thumbprints` sorted ([`Commitment::canonical_json`]). The
//! host serves those exact bytes beside the document (`commitment_json`, a string), as
//! well as the parsed object: a JSON object's key order is not preserved by most
//! tools (the host's own response serialiser sorts keys), so hashing the object as
//! re-encoded would not give `user_data`, while hashing the string does, with nothing
//! but `jq` and `sha256sum`. An auditor recomputes each field from what the host serves
//! right now (the JWKS, the note verifier key, the discovery document), hashes it, and
//! compares with the signed `user_data`. 32 bytes fit Nitro's 512-byte `user_data`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const COMMITMENT_VERSION: &str = "sealgate-attestation-v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    pub version: String,
    /// `sim` or `nitro`.
    pub mode: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub ttl_min_seconds: u64,
    pub ttl_max_seconds: u64,
    pub log_origin: String,
    /// RFC 7638 SHA-256 thumbprints (base64url) of every key in the JWKS, sorted.
    pub jwk_thumbprints: Vec<String>,
    /// The checkpoint signer as a signed-note verifier key string.
    pub checkpoint_key: String,
    /// The witnesses the enclave requires (C2SP vkeys, in configured order), empty for
    /// none: a token leaves the enclave only under a checkpoint `witness_quorum` of them
    /// cosigned. Always present, so a commitment says `"witnesses":[]` when there are
    /// none rather than leaving an auditor to infer it.
    #[serde(default)]
    pub witnesses: Vec<String>,
    #[serde(default)]
    pub witness_quorum: u32,
    /// KMS sealing: the ARN of the KMS key the enclave's data key belongs to, as KMS
    /// itself reported it over the enclave's own TLS connection. Absent with simulator
    /// sealing (and then the digest is that of the fields above alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
    /// KMS sealing with a simulator CA (`--sim-kms-ca`): `sha256:<hex>` of that CA
    /// certificate's DER, the only root the enclave accepted for KMS. Absent when it
    /// trusts the public web roots (or seals locally), so an auditor sees whether anything
    /// but the real KMS could have released the data key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_ca: Option<String>,
}

impl Commitment {
    /// The exact bytes [`Commitment::digest`] hashes: compact JSON, fields in
    /// declaration order.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("plain struct serializes")
    }

    /// The 32 bytes that go into the attestation document's `user_data`.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_json().as_bytes()).into()
    }
}

/// RFC 7638 thumbprint of a P-256 public key given by its affine coordinates.
pub fn p256_thumbprint(x: &[u8], y: &[u8]) -> String {
    // Required members only, in lexicographic order, no whitespace (RFC 7638 §3.2).
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        B64URL.encode(x),
        B64URL.encode(y)
    );
    B64URL.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small commitment without KMS fields.
    fn sample() -> Commitment {
        Commitment {
            version: COMMITMENT_VERSION.into(),
            mode: "sim".into(),
            issuer: "i".into(),
            audiences: vec![],
            ttl_min_seconds: 60,
            ttl_max_seconds: 3600,
            log_origin: "o".into(),
            jwk_thumbprints: vec![],
            checkpoint_key: "k".into(),
            witnesses: vec![],
            witness_quorum: 0,
            kms_key: None,
            kms_ca: None,
        }
    }

    #[test]
    fn digest_changes_with_every_field() {
        let base = Commitment {
            version: COMMITMENT_VERSION.into(),
            mode: "sim".into(),
            issuer: "http://127.0.0.1:8080".into(),
            audiences: vec!["sts.amazonaws.com".into()],
            ttl_min_seconds: 60,
            ttl_max_seconds: 3600,
            log_origin: "127.0.0.1:8080/log".into(),
            jwk_thumbprints: vec!["a".into()],
            checkpoint_key: "k".into(),
            witnesses: vec![],
            witness_quorum: 0,
            kms_key: None,
            kms_ca: None,
        };
        let d = base.digest();
        let mut c = base.clone();
        c.mode = "nitro".into();
        assert_ne!(c.digest(), d);
        let mut c = base.clone();
        c.jwk_thumbprints.push("b".into());
        assert_ne!(c.digest(), d);
        let mut c = base.clone();
        c.ttl_max_seconds = 3599;
        assert_ne!(c.digest(), d);
        let mut c = base.clone();
        c.kms_key = Some("arn:aws:kms:us-east-1:111122223333:key/k".into());
        let with_key = c.digest();
        assert_ne!(with_key, d);
        c.kms_ca = Some("sha256:00".into());
        assert_ne!(c.digest(), with_key);
        let mut c = base.clone();
        c.witnesses.push("w.example+01020304+BAAA".into());
        let with_witness = c.digest();
        assert_ne!(with_witness, d);
        c.witness_quorum = 1;
        assert_ne!(c.digest(), with_witness);
    }

    /// Without KMS sealing the KMS fields are absent, not `null`; the witness fields are
    /// always there, so "no witnesses" is said, not implied.
    #[test]
    fn kms_fields_are_absent_unless_set_and_witnesses_always_present() {
        let mut c = sample();
        assert!(c
            .canonical_json()
            .ends_with(r#""checkpoint_key":"k","witnesses":[],"witness_quorum":0}"#));
        c.kms_key = Some("arn".into());
        c.kms_ca = Some("sha256:ab".into());
        assert!(
            c.canonical_json().ends_with(
                r#""checkpoint_key":"k","witnesses":[],"witness_quorum":0,"kms_key":"arn","kms_ca":"sha256:ab"}"#
            ),
            "{}",
            c.canonical_json()
        );
    }

    #[test]
    fn canonical_json_keeps_declaration_order() {
        let c = Commitment {
            audiences: vec!["a".into()],
            ..sample()
        };
        let json = c.canonical_json();
        assert!(
            json.starts_with(r#"{"version":"sealgate-attestation-v1","mode":"sim","issuer":"i","#),
            "{json}"
        );
        assert_eq!(c.digest(), <[u8; 32]>::from(Sha256::digest(json.as_bytes())));
    }

    #[test]
    fn rfc7638_shape() {
        // Thumbprints are 43 base64url characters (32 bytes).
        assert_eq!(p256_thumbprint(&[1; 32], &[2; 32]).len(), 43);
    }
}
