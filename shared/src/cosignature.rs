//! C2SP `tlog-cosignature` Ed25519 `cosignature/v1`: the timestamped signature a
//! witness adds to a checkpoint, saying "as of this time, this is the largest tree I
//! have seen for this log, and it is consistent with everything I saw before".
//!
//! A cosignature is an ordinary signed-note signature line on the checkpoint:
//!
//! ```text
//! — witness.example.com/w1 base64(key id ‖ u64 timestamp, big-endian ‖ Ed25519 signature)
//! ```
//!
//! over the message `"cosignature/v1\ntime <timestamp>\n" ‖ <whole checkpoint body>`
//! (extension lines included). The key id is the first four bytes of
//! `SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)`, and the witness's verifier key (vkey) is
//! `name+hex(key id)+base64(0x04 ‖ public key)`. The algorithm byte 0x04 differs from a
//! log's 0x01, so a cosignature can never pass for a log signature or the reverse.
//!
//! Pure, no I/O: the witness signs with [`Cosigner`], and the enclave, the host and
//! `sealgate-verify` check with [`CosignerKey::verify`] or, for a quorum of witnesses,
//! [`verify_quorum`].

use crate::note::{split_note, valid_name, SIG_PREFIX};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Signature type byte of timestamped Ed25519 checkpoint cosignatures (signed-note).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The spec caps timestamps at 2^63 − 1 (so they fit a signed 64-bit integer).
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// Key id (4) + timestamp (8) + Ed25519 signature (64).
const RAW_LEN: usize = 4 + 8 + 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CosignatureError {
    #[error("malformed cosigner key: {0}")]
    Key(&'static str),
    #[error("malformed signed note: {0}")]
    Note(&'static str),
    /// Zero makes no statement about time (the witness protocol forbids it), and the
    /// spec caps timestamps at 2^63 − 1.
    #[error("cosignature timestamp {0} is outside 1..=2^63-1")]
    Timestamp(u64),
    #[error("no cosignature from {0} on this note")]
    NoCosignature(String),
    #[error("cosignature from {0} does not verify")]
    BadCosignature(String),
    #[error("quorum {quorum} is not within 1..={keys} distinct cosigner keys")]
    QuorumConfig { quorum: usize, keys: usize },
    #[error("{have} valid cosignatures, {need} required")]
    Quorum { have: usize, need: usize },
}

/// The four-byte key id of an Ed25519 cosigner key under `name`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_COSIGNATURE_V1]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The exact bytes a cosigner signs for a checkpoint `body` (which ends in `\n`).
pub fn signed_message(timestamp: u64, body: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{body}").into_bytes()
}

fn check_timestamp(timestamp: u64) -> Result<(), CosignatureError> {
    if timestamp == 0 || timestamp > MAX_TIMESTAMP {
        return Err(CosignatureError::Timestamp(timestamp));
    }
    Ok(())
}

/// A witness's signing side: its name and Ed25519 key.
pub struct Cosigner {
    name: String,
    key: SigningKey,
    id: [u8; 4],
}

impl fmt::Debug for Cosigner {
    // Never print the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cosigner")
            .field("vkey", &self.verifier().to_string())
            .finish()
    }
}

impl Cosigner {
    pub fn new(name: &str, key: SigningKey) -> Result<Self, CosignatureError> {
        if !valid_name(name) {
            return Err(CosignatureError::Key("name must be non-empty, without spaces or '+'"));
        }
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_string(),
            key,
            id,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key others configure to check this cosigner.
    pub fn verifier(&self) -> CosignerKey {
        CosignerKey {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// Cosigns a checkpoint body (ending in `\n`, extension lines included) at
    /// `timestamp` and returns the note signature line, without its final newline.
    pub fn cosign(&self, body: &str, timestamp: u64) -> Result<String, CosignatureError> {
        check_timestamp(timestamp)?;
        if body.is_empty() || !body.ends_with('\n') {
            return Err(CosignatureError::Note("a note body ends with a newline"));
        }
        let sig = self.key.sign(&signed_message(timestamp, body));
        let mut raw = Vec::with_capacity(RAW_LEN);
        raw.extend_from_slice(&self.id);
        raw.extend_from_slice(&timestamp.to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        Ok(format!("{SIG_PREFIX}{} {}", self.name, B64.encode(raw)))
    }
}

/// A cosigner's verifier key: name, key id and Ed25519 public key (a type 0x04 vkey).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerKey {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

/// One parsed signature line: the key name and the decoded bytes.
struct Line<'a> {
    name: &'a str,
    raw: Vec<u8>,
}

/// Splits a note into its body and parsed signature lines; a line that is not
/// `— name base64` makes the whole note malformed (signed-note).
fn parse_note(note: &str) -> Result<(&str, Vec<Line<'_>>), CosignatureError> {
    let (body, sigs) = split_note(note).map_err(|_| CosignatureError::Note("no blank line before the signatures"))?;
    let mut lines = Vec::new();
    for line in sigs.lines() {
        lines.push(parse_line(line)?);
    }
    Ok((body, lines))
}

fn parse_line(line: &str) -> Result<Line<'_>, CosignatureError> {
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or(CosignatureError::Note("signature line must start with an em dash"))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or(CosignatureError::Note("signature line lacks a signature"))?;
    let raw = B64
        .decode(b64)
        .map_err(|_| CosignatureError::Note("signature is not base64"))?;
    Ok(Line { name, raw })
}

impl CosignerKey {
    pub fn new(name: &str, public_key: [u8; 32]) -> Result<Self, CosignatureError> {
        if !valid_name(name) {
            return Err(CosignatureError::Key("name must be non-empty, without spaces or '+'"));
        }
        let key = VerifyingKey::from_bytes(&public_key).map_err(|_| CosignatureError::Key("not an Ed25519 point"))?;
        Ok(Self {
            name: name.to_string(),
            id: key_id(name, &public_key),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> [u8; 4] {
        self.id
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Whether a signature line (name and decoded bytes) claims to be from this key.
    fn claims(&self, line: &Line<'_>) -> bool {
        line.name == self.name && line.raw.len() >= 4 && line.raw[..4] == self.id
    }

    /// Checks one claimed line against `body` and returns its timestamp.
    fn check(&self, body: &str, raw: &[u8]) -> Result<u64, CosignatureError> {
        let bad = || CosignatureError::BadCosignature(self.to_string());
        if raw.len() != RAW_LEN {
            return Err(bad());
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&raw[4..12]);
        let timestamp = u64::from_be_bytes(ts);
        check_timestamp(timestamp)?;
        let sig = Signature::from_slice(&raw[12..]).map_err(|_| bad())?;
        self.key
            .verify(&signed_message(timestamp, body), &sig)
            .map_err(|_| bad())?;
        Ok(timestamp)
    }

    /// Verifies this cosigner's cosignature on a signed note and returns its timestamp.
    ///
    /// Lines from other keys are ignored (also those sharing only the name or only the
    /// id); every line from this key must verify, and if there are several the newest
    /// timestamp is returned. Whether that time is recent enough is the caller's rule.
    pub fn verify(&self, note: &str) -> Result<u64, CosignatureError> {
        let (body, lines) = parse_note(note)?;
        self.verify_parsed(body, &lines)
    }

    fn verify_parsed(&self, body: &str, lines: &[Line<'_>]) -> Result<u64, CosignatureError> {
        let mut newest = None;
        for line in lines.iter().filter(|l| self.claims(l)) {
            let t = self.check(body, &line.raw)?;
            newest = Some(newest.map_or(t, |n: u64| n.max(t)));
        }
        newest.ok_or_else(|| CosignatureError::NoCosignature(self.to_string()))
    }

    /// Verifies one signature line (as a witness returns it, without its newline)
    /// against a checkpoint body, e.g. before attaching it to the log's own note.
    pub fn verify_line(&self, body: &str, line: &str) -> Result<u64, CosignatureError> {
        let parsed = parse_line(line)?;
        if !self.claims(&parsed) {
            return Err(CosignatureError::NoCosignature(self.to_string()));
        }
        self.check(body, &parsed.raw)
    }
}

impl fmt::Display for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{}+{}", self.name, hex::encode(self.id), B64.encode(raw))
    }
}

impl FromStr for CosignerKey {
    type Err = CosignatureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().splitn(3, '+');
        let (name, id, key) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(k)) => (n, i, k),
            _ => return Err(CosignatureError::Key("expected name+keyid+key")),
        };
        let raw = B64
            .decode(key)
            .map_err(|_| CosignatureError::Key("key is not base64"))?;
        if raw.first() != Some(&ALG_COSIGNATURE_V1) {
            return Err(CosignatureError::Key("not a cosignature/v1 (type 0x04) key"));
        }
        let pk: [u8; 32] = raw[1..]
            .try_into()
            .map_err(|_| CosignatureError::Key("an Ed25519 key is 32 bytes"))?;
        let vk = CosignerKey::new(name, pk)?;
        if hex::encode(vk.id) != id {
            return Err(CosignatureError::Key("key id does not match the key"));
        }
        Ok(vk)
    }
}

/// What an operator or auditor reads about a configuration's witnesses: `none`, or
/// `2 of 3: w1.example, w2.example, w3.example` (the names of the vkeys, in order).
pub fn describe(vkeys: &[String], quorum: u32) -> String {
    if vkeys.is_empty() {
        return "none".into();
    }
    let names: Vec<&str> = vkeys.iter().map(|v| v.split('+').next().unwrap_or(v)).collect();
    format!("{quorum} of {}: {}", vkeys.len(), names.join(", "))
}

/// One valid cosignature found by [`verify_quorum`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cosigned {
    /// Index of the cosigner in the `keys` slice passed in.
    pub key: usize,
    pub timestamp: u64,
}

/// Checks that at least `quorum` distinct cosigners among `keys` validly cosigned
/// `note`, and returns the valid ones.
///
/// A cosignature that fails to verify counts as absent rather than condemning the
/// note: otherwise one faulty witness could veto a checkpoint the others vouch for,
/// which is exactly what a quorum is meant to survive. Keys with the same public key
/// count once (an Ed25519 cosignature does not commit to the name, so one key under two
/// names is one witness). A note that is not a well-formed signed note is refused.
pub fn verify_quorum(note: &str, keys: &[CosignerKey], quorum: usize) -> Result<Vec<Cosigned>, CosignatureError> {
    let mut distinct: Vec<[u8; 32]> = keys.iter().map(CosignerKey::public_key).collect();
    distinct.sort_unstable();
    distinct.dedup();
    if quorum == 0 || quorum > distinct.len() {
        return Err(CosignatureError::QuorumConfig {
            quorum,
            keys: distinct.len(),
        });
    }
    let (body, lines) = parse_note(note)?;
    let mut counted: Vec<[u8; 32]> = Vec::new();
    let mut valid = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if counted.contains(&key.public_key()) {
            continue;
        }
        if let Ok(timestamp) = key.verify_parsed(body, &lines) {
            counted.push(key.public_key());
            valid.push(Cosigned { key: i, timestamp });
        }
    }
    if valid.len() < quorum {
        return Err(CosignatureError::Quorum {
            have: valid.len(),
            need: quorum,
        });
    }
    Ok(valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn cosigner(seed: u8, name: &str) -> Cosigner {
        Cosigner::new(name, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    fn note_with(lines: &[String]) -> String {
        // A log signature line from an unrelated key: cosignature checks must skip it.
        let mut n = format!("{BODY}\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n");
        for l in lines {
            n.push_str(l);
            n.push('\n');
        }
        n
    }

    /// An independent computation (Python `cryptography`, written for this test from
    /// the spec alone) of the cosignature by seed 00 01 … 1f, named
    /// `witness.example.com/w1`, over the spec's example checkpoint at the spec's
    /// example time. Ed25519 is deterministic, so the line must match byte for byte.
    #[test]
    fn independent_vector() {
        let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
        let c = Cosigner::new("witness.example.com/w1", SigningKey::from_bytes(&seed)).unwrap();
        let vkey = "witness.example.com/w1+a0059f11+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4";
        let line = "\u{2014} witness.example.com/w1 oAWfEQAAAABkGFDLBuRDazBLVac2NE+Y+IjbjQOcXLfF9CSDZVUIoS83rE1nFZsVE8YiWV6Ngr7lV8H6bdoBQGP/l73euDMQ9k+bBQ==";
        assert_eq!(c.verifier().to_string(), vkey);
        assert_eq!(c.cosign(BODY, 1679315147).unwrap(), line);
        let k: CosignerKey = vkey.parse().unwrap();
        assert_eq!(k.verify(&note_with(&[line.to_string()])), Ok(1679315147));
        assert_eq!(k.verify_line(BODY, line), Ok(1679315147));
    }

    /// Public vkeys and signatures: a real witness's type 0x04 vkey (from
    /// transparency-dev/formats' tests) parses with its key id and formats back; the
    /// spec's example cosignature and transparency-dev's carry the timestamps they say.
    #[test]
    fn public_vectors() {
        let remora = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";
        let k: CosignerKey = remora.parse().unwrap();
        assert_eq!(k.to_string(), remora);
        assert_eq!(k.name(), "remora.n621.de");
        assert_eq!(hex::encode(k.id()), "da77ade7");
        for (b64, ts) in [
            (
                "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==",
                1679315147u64,
            ),
            (
                "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==",
                1727964367,
            ),
        ] {
            let raw = B64.decode(b64).unwrap();
            assert_eq!(raw.len(), RAW_LEN);
            assert_eq!(u64::from_be_bytes(raw[4..12].try_into().unwrap()), ts);
        }
        // A log (type 0x01) key is not a cosigner key, and the reverse.
        let log_key = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        assert!(log_key.parse::<CosignerKey>().is_err());
        assert!(remora.parse::<crate::note::VerifierKey>().is_err());
    }

    #[test]
    fn roundtrip_covers_extension_lines() {
        let c = cosigner(1, "w.example/one");
        let k = c.verifier();
        let body = format!("{BODY}extension line\n");
        let line = c.cosign(&body, 1_700_000_000).unwrap();
        let note = format!("{body}\n{line}\n");
        assert_eq!(k.verify(&note), Ok(1_700_000_000));
        let changed = note.replace("extension line", "extension lime");
        assert_eq!(k.verify(&changed), Err(CosignatureError::BadCosignature(k.to_string())));
        let parsed: CosignerKey = k.to_string().parse().unwrap();
        assert_eq!(parsed, k);
    }

    #[test]
    fn wrong_key_time_or_body_is_refused() {
        let c = cosigner(1, "w.example/one");
        let k = c.verifier();
        let line = c.cosign(BODY, 1_700_000_000).unwrap();

        // Another body (a different root) under the same line.
        let other = BODY.replace("CsUY", "DsUY");
        assert!(matches!(
            k.verify_line(&other, &line),
            Err(CosignatureError::BadCosignature(_))
        ));

        // The timestamp inside the line changed: the signature covers it.
        let mut raw = B64.decode(line.rsplit(' ').next().unwrap()).unwrap();
        raw[11] ^= 1;
        let bumped = format!("{SIG_PREFIX}w.example/one {}", B64.encode(&raw));
        assert!(matches!(
            k.verify_line(BODY, &bumped),
            Err(CosignatureError::BadCosignature(_))
        ));

        // A signature by another key, under this key's name and id.
        let impostor = cosigner(2, "w.example/one");
        let sig = impostor.key.sign(&signed_message(1_700_000_000, BODY));
        let mut forged = k.id().to_vec();
        forged.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        forged.extend_from_slice(&sig.to_bytes());
        let forged = format!("{SIG_PREFIX}w.example/one {}", B64.encode(forged));
        assert!(matches!(
            k.verify_line(BODY, &forged),
            Err(CosignatureError::BadCosignature(_))
        ));
        // …and the note with it is refused even if a good line follows.
        let both = note_with(&[forged, line.clone()]);
        assert!(matches!(k.verify(&both), Err(CosignatureError::BadCosignature(_))));

        // The impostor's own line (its own id) is simply not this key's.
        let theirs = impostor.cosign(BODY, 1_700_000_000).unwrap();
        assert_eq!(
            k.verify(&note_with(&[theirs])),
            Err(CosignatureError::NoCosignature(k.to_string()))
        );
        // The same key under another name has another id: not ours either.
        let renamed = Cosigner::new("w.example/two", SigningKey::from_bytes(&[1; 32])).unwrap();
        assert!(k.verify(&note_with(&[renamed.cosign(BODY, 5).unwrap()])).is_err());
        // A log signature (type 0x01 message, no timestamp) is no cosignature.
        assert!(k.verify(&note_with(&[])).is_err());
    }

    #[test]
    fn timestamps_are_bounded() {
        let c = cosigner(3, "w.example/t");
        assert_eq!(c.cosign(BODY, 0), Err(CosignatureError::Timestamp(0)));
        assert_eq!(
            c.cosign(BODY, MAX_TIMESTAMP + 1),
            Err(CosignatureError::Timestamp(MAX_TIMESTAMP + 1))
        );
        let max = c.cosign(BODY, MAX_TIMESTAMP).unwrap();
        assert_eq!(c.verifier().verify_line(BODY, &max), Ok(MAX_TIMESTAMP));
        // A correctly signed line with time 0 is still refused on verification.
        let sig = c.key.sign(&signed_message(0, BODY));
        let mut raw = c.id.to_vec();
        raw.extend_from_slice(&0u64.to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        let zero = format!("{SIG_PREFIX}w.example/t {}", B64.encode(raw));
        assert_eq!(
            c.verifier().verify_line(BODY, &zero),
            Err(CosignatureError::Timestamp(0))
        );
    }

    #[test]
    fn malformed_keys_and_notes_are_refused() {
        let k = cosigner(1, "w.example/one").verifier();
        let good = k.to_string();
        let (name, rest) = good.split_once('+').unwrap();
        for bad in [
            String::new(),
            "w.example/one".to_string(),
            format!("{name}+{}", rest.split_once('+').unwrap().0),
            format!("{name}+00000000+{}", rest.split_once('+').unwrap().1),
            format!("{name}+{}+!!!", rest.split_once('+').unwrap().0),
            format!("{name}+{}+BAAA", rest.split_once('+').unwrap().0),
            format!("bad name+{rest}"),
        ] {
            assert!(bad.parse::<CosignerKey>().is_err(), "{bad:?}");
        }
        assert!(Cosigner::new("", SigningKey::from_bytes(&[1; 32])).is_err());
        assert!(cosigner(1, "w").cosign("no newline", 1).is_err());
        for note in [
            "",
            BODY,
            &format!("{BODY}\nnot a signature line\n"),
            &format!("{BODY}\n\u{2014} w !!!\n"),
        ] {
            assert!(matches!(k.verify(note), Err(CosignatureError::Note(_))), "{note:?}");
        }
    }

    #[test]
    fn quorum_counts_distinct_valid_cosigners() {
        let ws: Vec<Cosigner> = (1..=3).map(|i| cosigner(i, &format!("w.example/{i}"))).collect();
        let keys: Vec<CosignerKey> = ws.iter().map(Cosigner::verifier).collect();
        let lines: Vec<String> = ws.iter().map(|w| w.cosign(BODY, 100).unwrap()).collect();

        let two = note_with(&lines[..2]);
        let got = verify_quorum(&two, &keys, 2).unwrap();
        assert_eq!(got.iter().map(|c| c.key).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(
            verify_quorum(&two, &keys, 3),
            Err(CosignatureError::Quorum { have: 2, need: 3 })
        );

        // One witness's bad line does not veto the others, nor count.
        let mut broken = lines.clone();
        broken[2] = ws[2].cosign(&BODY.replace("2085", "3085"), 100).unwrap();
        assert_eq!(verify_quorum(&note_with(&broken), &keys, 2).unwrap().len(), 2);
        assert!(verify_quorum(&note_with(&broken), &keys, 3).is_err());

        // The same key twice is one witness, whatever the quorum arithmetic says.
        let dup = vec![keys[0].clone(), keys[0].clone()];
        assert_eq!(
            verify_quorum(&note_with(&lines), &dup, 2),
            Err(CosignatureError::QuorumConfig { quorum: 2, keys: 1 })
        );
        let renamed = CosignerKey::new("w.example/alias", keys[0].public_key()).unwrap();
        let alias_line = Cosigner::new("w.example/alias", SigningKey::from_bytes(&[1; 32]))
            .unwrap()
            .cosign(BODY, 100)
            .unwrap();
        let aliased = note_with(&[lines[0].clone(), alias_line]);
        assert_eq!(
            verify_quorum(&aliased, &[keys[0].clone(), renamed, keys[1].clone()], 2),
            Err(CosignatureError::Quorum { have: 1, need: 2 })
        );

        assert!(matches!(
            verify_quorum(&two, &keys, 0),
            Err(CosignatureError::QuorumConfig { .. })
        ));
        assert!(matches!(
            verify_quorum("junk", &keys, 1),
            Err(CosignatureError::Note(_))
        ));
    }
}
