//! C2SP `tlog-checkpoint` bodies and C2SP `signed-note` Ed25519 signatures, so that any
//! existing note verifier (Go's `golang.org/x/mod/sumdb/note`, for one) can check our
//! checkpoints.
//!
//! ```text
//! sealgate.example.com/log          <- origin
//! 42                                <- tree size
//! 3q2+7w…=                          <- base64 root hash
//!
//! — sealgate.example.com/log AbCdEf…  <- em dash, key name, base64(key id ‖ signature)
//! ```
//!
//! The key id is the first four bytes of `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`,
//! and the verifier key string is `name+hex(key id)+base64(0x01 ‖ public key)`.

use crate::merkle::Hash;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Algorithm byte for Ed25519 in signed notes.
const ALG_ED25519: u8 = 0x01;
/// What every signature line starts with: an em dash and a space.
pub const SIG_PREFIX: &str = "\u{2014} ";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("malformed checkpoint body: {0}")]
    Body(&'static str),
    #[error("malformed signed note: {0}")]
    Note(&'static str),
    #[error("malformed verifier key: {0}")]
    Key(&'static str),
    #[error("no signature from key {0} on this note")]
    NoSignature(String),
    #[error("signature from key {0} does not verify")]
    BadSignature(String),
}

/// A checkpoint: the log's origin, size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note body: three lines, each ending in `\n`.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }

    /// The checkpoint a signed note carries, its signatures NOT checked: only for a
    /// note read back from one's own store and judged by its root (the host's restart,
    /// `sealgate check-log`), never for one that came from someone else.
    pub fn unverified(note: &str) -> Result<Self, NoteError> {
        Self::parse_body(split_note(note)?.0)
    }

    /// Parses a body; extension lines after the root are allowed and ignored.
    pub fn parse_body(body: &str) -> Result<Self, NoteError> {
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::Body("missing origin"))?;
        let size = lines.next().ok_or(NoteError::Body("missing size"))?;
        if size.is_empty()
            || size.len() > 20
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(NoteError::Body("size is not a decimal number"));
        }
        let size = size.parse().map_err(|_| NoteError::Body("size out of range"))?;
        let root = lines.next().ok_or(NoteError::Body("missing root"))?;
        let root = B64.decode(root).map_err(|_| NoteError::Body("root is not base64"))?;
        let root = root.try_into().map_err(|_| NoteError::Body("root is not 32 bytes"))?;
        if !body.ends_with('\n') {
            return Err(NoteError::Body("body must end with a newline"));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

/// A note verifier key: name, key id and Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    pub id: [u8; 4],
    pub key: VerifyingKey,
}

/// The four-byte key id of an Ed25519 key under `name`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Key names are non-empty, with no Unicode space and no `+` (signed-note).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl VerifierKey {
    pub fn new(name: &str, public_key: [u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::Key("name must be non-empty, without spaces or '+'"));
        }
        let key = VerifyingKey::from_bytes(&public_key).map_err(|_| NoteError::Key("not an Ed25519 point"))?;
        Ok(Self {
            name: name.to_string(),
            id: key_id(name, &public_key),
            key,
        })
    }

    /// Verifies a signed note and returns its checkpoint.
    pub fn open(&self, note: &str) -> Result<Checkpoint, NoteError> {
        let (body, sigs) = split_note(note)?;
        let mut found = false;
        for line in sigs.lines() {
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or(NoteError::Note("signature line must start with an em dash"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or(NoteError::Note("signature line lacks a signature"))?;
            let raw = B64
                .decode(b64)
                .map_err(|_| NoteError::Note("signature is not base64"))?;
            if name != self.name || raw.len() < 4 || raw[..4] != self.id {
                continue;
            }
            found = true;
            let sig = Signature::from_slice(&raw[4..]).map_err(|_| NoteError::BadSignature(self.to_string()))?;
            self.key
                .verify(body.as_bytes(), &sig)
                .map_err(|_| NoteError::BadSignature(self.to_string()))?;
        }
        if !found {
            return Err(NoteError::NoSignature(self.to_string()));
        }
        let cp = Checkpoint::parse_body(body)?;
        if cp.origin != self.name {
            return Err(NoteError::Body("origin differs from the key name"));
        }
        Ok(cp)
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{}+{}", self.name, hex::encode(self.id), B64.encode(raw))
    }
}

impl FromStr for VerifierKey {
    type Err = NoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().splitn(3, '+');
        let (name, id, key) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(k)) => (n, i, k),
            _ => return Err(NoteError::Key("expected name+keyid+key")),
        };
        let raw = B64.decode(key).map_err(|_| NoteError::Key("key is not base64"))?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(NoteError::Key("not an Ed25519 key"));
        }
        let pk: [u8; 32] = raw[1..].try_into().map_err(|_| NoteError::Key("not an Ed25519 key"))?;
        let vk = VerifierKey::new(name, pk)?;
        if hex::encode(vk.id) != id {
            return Err(NoteError::Key("key id does not match the key"));
        }
        Ok(vk)
    }
}

/// Splits a signed note into its body (ending in `\n`) and its signature lines (the text
/// after the last blank line, itself ending in `\n`).
pub fn split_note(note: &str) -> Result<(&str, &str), NoteError> {
    let at = note
        .rfind("\n\n")
        .ok_or(NoteError::Note("no blank line before the signatures"))?;
    let (body, sigs) = (&note[..=at], &note[at + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(NoteError::Note("signature block must end with a newline"));
    }
    Ok((body, sigs))
}

/// Signs a checkpoint as a log does, with an Ed25519 key named by its origin: what the
/// witness's, the verifier's and the end-to-end tests' logs use. (The enclave signs with
/// aws-lc-rs and [`assemble`]s the same note.)
pub fn sign(key: &ed25519_dalek::SigningKey, cp: &Checkpoint) -> String {
    use ed25519_dalek::Signer;
    let body = cp.body();
    let sig = key.sign(body.as_bytes()).to_bytes();
    assemble(
        &body,
        &cp.origin,
        key_id(&cp.origin, key.verifying_key().as_bytes()),
        &sig,
    )
}

/// Assembles a signed note from a body and one signature (what the enclave emits).
pub fn assemble(body: &str, name: &str, id: [u8; 4], signature: &[u8; 64]) -> String {
    let mut raw = id.to_vec();
    raw.extend_from_slice(signature);
    format!("{body}\n{SIG_PREFIX}{name} {}\n", B64.encode(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn signed(sk: &SigningKey, cp: &Checkpoint) -> String {
        sign(sk, cp)
    }

    fn setup() -> (SigningKey, VerifierKey, Checkpoint) {
        let sk = SigningKey::from_bytes(&[7u8; 32]);
        let vk = VerifierKey::new("example.com/log", sk.verifying_key().to_bytes()).unwrap();
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 5,
            root: [9u8; 32],
        };
        (sk, vk, cp)
    }

    #[test]
    fn roundtrip_and_key_string() {
        let (sk, vk, cp) = setup();
        let note = signed(&sk, &cp);
        assert_eq!(vk.open(&note).unwrap(), cp);
        let parsed: VerifierKey = vk.to_string().parse().unwrap();
        assert_eq!(parsed, vk);
        assert!(vk.to_string().starts_with("example.com/log+"));
    }

    #[test]
    fn golang_sumdb_note_vector() {
        // From golang.org/x/mod/sumdb/note's tests: a known key string round-trips.
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let k: VerifierKey = vkey.parse().unwrap();
        assert_eq!(k.to_string(), vkey);
        let text =
            "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
        let note = format!("{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n");
        let (body, _) = split_note(&note).unwrap();
        assert_eq!(body, text);
        let raw = B64
            .decode("x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=")
            .unwrap();
        assert_eq!(raw[..4], k.id);
        let sig = Signature::from_slice(&raw[4..]).unwrap();
        assert!(k.key.verify(text.as_bytes(), &sig).is_ok());
    }

    #[test]
    fn tampering_is_refused() {
        let (sk, vk, cp) = setup();
        let note = signed(&sk, &cp);
        let bigger = note.replacen("\n5\n", "\n6\n", 1);
        assert!(matches!(vk.open(&bigger), Err(NoteError::BadSignature(_))));
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let forged = signed(&other, &cp);
        assert!(matches!(vk.open(&forged), Err(NoteError::NoSignature(_))));
        assert!(vk.open("garbage").is_err());
        assert!(vk.open(&note[..note.len() - 1]).is_err());
        assert!("x+00000000+AAAA".parse::<VerifierKey>().is_err());
        let mut wrong_id = vk.to_string();
        wrong_id.replace_range(16..18, "zz");
        assert!(wrong_id.parse::<VerifierKey>().is_err());
    }

    #[test]
    fn body_parsing_is_strict() {
        for bad in ["", "o\n", "o\n01\nAA==\n", "o\n-1\n", "o\n1\nnot-b64\n", "o\n1\nAAAA\n"] {
            assert!(Checkpoint::parse_body(bad).is_err(), "{bad:?}");
        }
    }
}
