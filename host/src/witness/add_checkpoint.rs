//! The C2SP `tlog-witness` `add-checkpoint` request: its body format, and the decision
//! whether to cosign, in the spec's order of checks and with its status codes.
//!
//! ```text
//! old 20852014                                   <- the size the client thinks we saw
//! PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=   <- consistency proof, ≤ 63 lines
//! …
//!                                                <- empty line
//! example.com/behind-the-sofa                    <- the signed checkpoint
//! 20852163
//! CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=
//!
//! — example.com/behind-the-sofa Az3g…
//! ```
//!
//! The decision is split in two so the store can run the second half against the
//! recorded state it reads, and compare-and-swap on exactly that state:
//! [`verify_submission`] needs only the configuration (400, 404, 403),
//! [`check_against`] needs the recorded size and root (409, 422).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sealgate_shared::merkle::{self, Hash};
use sealgate_shared::note::{split_note, Checkpoint, NoteError, VerifierKey, SIG_PREFIX};
use std::collections::HashMap;

use super::state::Recorded;

/// The spec: "The client MUST NOT send more than 63 consistency proof lines."
pub const MAX_PROOF_LINES: usize = 63;

/// Why a submission is not cosigned; each maps to the spec's status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400: the body is malformed, or the old size exceeds the checkpoint's size.
    #[error("{0}")]
    BadRequest(String),
    /// 403: no signature from a trusted key of the origin, or one that fails.
    #[error("{0}")]
    Forbidden(String),
    /// 404: the witness is not configured for this origin.
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// 409: the old size is not the size this witness recorded (which is given).
    #[error("the recorded size is {0}")]
    Conflict(u64),
    /// 422: the checkpoint is not consistent with what this witness recorded.
    #[error("{0}")]
    Unprocessable(String),
    /// 500: the witness's own storage or clock failed; nothing was cosigned.
    #[error("{0}")]
    Internal(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Forbidden(_) => 403,
            Refusal::UnknownOrigin(_) => 404,
            Refusal::Conflict(_) => 409,
            Refusal::Unprocessable(_) => 422,
            Refusal::Internal(_) => 500,
        }
    }
}

fn bad(m: impl Into<String>) -> Refusal {
    Refusal::BadRequest(m.into())
}

/// A parsed request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint, signature lines included.
    pub note: &'a str,
}

/// An ASCII decimal with no leading zeroes (`0` itself excepted), as the spec writes
/// sizes.
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// Parses an `add-checkpoint` body. Signed notes are UTF-8 with no control character
/// but newline, so anything else is refused here rather than half-understood later.
pub fn parse_request(body: &[u8]) -> Result<Request<'_>, Refusal> {
    let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8"))?;
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(bad("the body contains a control character other than newline"));
    }
    let (old, mut rest) = text.split_once('\n').ok_or_else(|| bad("missing the old size line"))?;
    let old_size = old
        .strip_prefix("old ")
        .and_then(parse_decimal)
        .ok_or_else(|| bad("the first line must be `old <size>` in decimal"))?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = rest
            .split_once('\n')
            .ok_or_else(|| bad("missing the empty line before the checkpoint"))?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(bad(format!("more than {MAX_PROOF_LINES} consistency proof lines")));
        }
        let hash = B64
            .decode(line)
            .ok()
            .and_then(|h| merkle::to_hash(&h).ok())
            .ok_or_else(|| bad("a consistency proof line is not a base64 SHA-256 hash"))?;
        proof.push(hash);
    }
    if rest.is_empty() {
        return Err(bad("missing the checkpoint"));
    }
    Ok(Request {
        old_size,
        proof,
        note: rest,
    })
}

/// The body a client sends (what [`parse_request`] reads).
pub fn encode_request(old_size: u64, proof: &[Hash], note: &str) -> String {
    let mut out = format!("old {old_size}\n");
    for h in proof {
        out.push_str(&B64.encode(h));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(note);
    out
}

/// The logs a witness accepts: each origin's trusted signed-note keys (a log rotating
/// its key is configured with both for a while).
#[derive(Debug, Clone, Default)]
pub struct Logs {
    by_origin: HashMap<String, Vec<VerifierKey>>,
}

impl Logs {
    /// The origin of each log is its key's name (ARCHITECTURE §5: key name = origin).
    pub fn new(keys: impl IntoIterator<Item = VerifierKey>) -> Self {
        let mut by_origin: HashMap<String, Vec<VerifierKey>> = HashMap::new();
        for k in keys {
            let v = by_origin.entry(k.name.clone()).or_default();
            if !v.contains(&k) {
                v.push(k);
            }
        }
        Self { by_origin }
    }

    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.by_origin.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.by_origin.is_empty()
    }
}

/// A submission whose log signature verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub checkpoint: Checkpoint,
    /// The note body (checkpoint text, extension lines included): what is cosigned.
    pub body: String,
    /// The body and the log's verified signature lines: the checkpoint as the witness
    /// serves it to monitors, before its own cosignature is added.
    pub log_signed: String,
    /// The trusted key(s) whose signature verified, as vkey strings.
    pub log_vkeys: Vec<String>,
}

/// The checks that need only the configuration: a well-formed signed checkpoint
/// (400), a known origin (404), a valid signature from a trusted key and none failing
/// (403), and an old size no larger than the checkpoint's (400).
pub fn verify_submission(logs: &Logs, req: &Request<'_>) -> Result<Verified, Refusal> {
    let (body, sigs) = split_note(req.note).map_err(|e| bad(e.to_string()))?;
    // Unverified, only to find the origin's keys; reparsed from the verified note below.
    let claimed = Checkpoint::parse_body(body).map_err(|e| bad(e.to_string()))?;
    let keys = logs
        .by_origin
        .get(&claimed.origin)
        .ok_or_else(|| Refusal::UnknownOrigin(claimed.origin.clone()))?;
    let mut checkpoint = None;
    let mut log_vkeys = Vec::new();
    for key in keys {
        match key.open(req.note) {
            Ok(cp) => {
                checkpoint = Some(cp);
                log_vkeys.push(key.to_string());
            }
            Err(NoteError::NoSignature(_)) => {}
            Err(e @ NoteError::BadSignature(_)) => return Err(Refusal::Forbidden(e.to_string())),
            Err(e) => return Err(bad(e.to_string())),
        }
    }
    let checkpoint = checkpoint.ok_or_else(|| {
        Refusal::Forbidden(format!(
            "no signature from a trusted key for {:?} on this checkpoint",
            claimed.origin
        ))
    })?;
    if checkpoint.size > i64::MAX as u64 {
        return Err(bad("tree sizes above 2^63-1 are not supported"));
    }
    if req.old_size > checkpoint.size {
        return Err(bad(format!(
            "old size {} is larger than the checkpoint size {}",
            req.old_size, checkpoint.size
        )));
    }
    let mut log_signed = format!("{body}\n");
    for line in sigs.lines() {
        if is_from(line, keys.iter().filter(|k| log_vkeys.contains(&k.to_string()))) {
            log_signed.push_str(line);
            log_signed.push('\n');
        }
    }
    Ok(Verified {
        checkpoint,
        body: body.to_string(),
        log_signed,
        log_vkeys,
    })
}

/// Whether a signature line carries the name and key id of one of `keys`.
fn is_from<'a>(line: &str, mut keys: impl Iterator<Item = &'a VerifierKey>) -> bool {
    let Some((name, b64)) = line.strip_prefix(SIG_PREFIX).and_then(|r| r.split_once(' ')) else {
        return false;
    };
    let Ok(raw) = B64.decode(b64) else { return false };
    keys.any(|k| k.name == name && raw.len() >= 4 && raw[..4] == k.id)
}

/// The checks against the recorded state for the origin (`None`: never cosigned):
/// the old size is the recorded size (409), a size-0 checkpoint has the empty root,
/// no proof from size 0, the same root at the same size, and a valid consistency proof
/// otherwise (422). Passing means: cosign, and record the checkpoint.
pub fn check_against(recorded: Option<&Recorded>, req: &Request<'_>, v: &Verified) -> Result<(), Refusal> {
    let recorded_size = recorded.map_or(0, |r| r.size);
    if req.old_size != recorded_size {
        return Err(Refusal::Conflict(recorded_size));
    }
    let cp = &v.checkpoint;
    if cp.size == 0 && cp.root != merkle::empty_root() {
        return Err(Refusal::Unprocessable(
            "a checkpoint of size 0 must have the empty tree's root".into(),
        ));
    }
    let Some(rec) = recorded.filter(|_| req.old_size > 0) else {
        if !req.proof.is_empty() {
            return Err(Refusal::Unprocessable(
                "a consistency proof from size 0 must be empty".into(),
            ));
        }
        return Ok(());
    };
    if req.old_size == cp.size && rec.root != cp.root {
        return Err(Refusal::Unprocessable(format!(
            "fork: a different root at the recorded size {}",
            rec.size
        )));
    }
    merkle::verify_consistency(rec.size, cp.size, &rec.root, &cp.root, &req.proof).map_err(|e| {
        Refusal::Unprocessable(format!(
            "no consistency from the recorded size {} to {}: {e}",
            rec.size, cp.size
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use sealgate_shared::merkle::proof::TreeStore;

    const ORIGIN: &str = "log.example/a";

    fn log_key() -> SigningKey {
        SigningKey::from_bytes(&[5; 32])
    }

    fn logs() -> Logs {
        Logs::new([VerifierKey::new(ORIGIN, log_key().verifying_key().to_bytes()).unwrap()])
    }

    fn sign(sk: &SigningKey, cp: &Checkpoint) -> String {
        sealgate_shared::note::sign(sk, cp)
    }

    fn tree(n: u64) -> TreeStore {
        let mut t = TreeStore::new();
        for i in 0..n {
            t.push(merkle::leaf_hash(&i.to_be_bytes()));
        }
        t
    }

    fn cp(t: &TreeStore, size: u64) -> Checkpoint {
        Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: t.root(size).unwrap(),
        }
    }

    fn decide(recorded: Option<&Recorded>, body: &str) -> Result<(), Refusal> {
        let req = parse_request(body.as_bytes())?;
        let v = verify_submission(&logs(), &req)?;
        check_against(recorded, &req, &v)
    }

    #[test]
    fn request_roundtrip_and_strict_parsing() {
        let t = tree(5);
        let note = sign(&log_key(), &cp(&t, 5));
        let proof = t.consistency_proof(3, 5).unwrap();
        let body = encode_request(3, &proof, &note);
        let req = parse_request(body.as_bytes()).unwrap();
        assert_eq!((req.old_size, req.proof.clone(), req.note), (3, proof, note.as_str()));

        let h = B64.encode([0u8; 32]);
        for bad in [
            "".to_string(),
            "old 1".into(),
            "old 01\n\nx".into(),
            "old -1\n\nx".into(),
            "old  1\n\nx".into(),
            "new 1\n\nx".into(),
            format!("old 1\n{h}\n"),
            format!("old 1\n{h}\n\n"),
            "old 1\nAAAA\n\nx".into(),
            format!("old 1\r\n\n{note}"),
            format!("old 1\n\n{}", note.replace('\n', "\t")),
            format!("old 1\n{}\n{note}", format!("{h}\n").repeat(64)),
        ] {
            assert!(
                matches!(parse_request(bad.as_bytes()), Err(Refusal::BadRequest(_))),
                "{bad:?}"
            );
        }
        assert!(parse_request(&[b'o', 0xff, b'\n']).is_err());
        let max = format!("old 1\n{}\n{note}", format!("{h}\n").repeat(63));
        assert_eq!(parse_request(max.as_bytes()).unwrap().proof.len(), 63);
    }

    #[test]
    fn the_spec_decisions() {
        let t = tree(8);
        let at = |n| Recorded {
            size: n,
            root: t.root(n).unwrap(),
        };
        let note = |n| sign(&log_key(), &cp(&t, n));
        let proof = |a, b| t.consistency_proof(a, b).unwrap();

        // First checkpoint, extension, replay.
        assert_eq!(decide(None, &encode_request(0, &[], &note(3))), Ok(()));
        assert_eq!(decide(Some(&at(3)), &encode_request(3, &proof(3, 8), &note(8))), Ok(()));
        assert_eq!(decide(Some(&at(8)), &encode_request(8, &[], &note(8))), Ok(()));
        // Size 0: the empty root only.
        assert_eq!(decide(None, &encode_request(0, &[], &note(0))), Ok(()));
        let mut zero = cp(&t, 0);
        zero.root = t.root(1).unwrap();
        assert!(matches!(
            decide(None, &encode_request(0, &[], &sign(&log_key(), &zero))),
            Err(Refusal::Unprocessable(_))
        ));
        // A proof from 0, a bad proof, a fork at the same size.
        assert!(matches!(
            decide(None, &encode_request(0, &proof(3, 8), &note(8))),
            Err(Refusal::Unprocessable(_))
        ));
        let mut wrong = proof(3, 8);
        wrong[0][0] ^= 1;
        assert!(matches!(
            decide(Some(&at(3)), &encode_request(3, &wrong, &note(8))),
            Err(Refusal::Unprocessable(_))
        ));
        let other = tree(9);
        let fork = Recorded {
            size: 8,
            root: other.root(7).unwrap(),
        };
        assert!(matches!(
            decide(Some(&fork), &encode_request(8, &[], &note(8))),
            Err(Refusal::Unprocessable(_))
        ));
        assert!(matches!(
            decide(Some(&at(8)), &encode_request(8, &proof(3, 8), &note(8))),
            Err(Refusal::Unprocessable(_))
        ));
        // Rollback and stale old sizes.
        assert!(matches!(
            decide(Some(&at(3)), &encode_request(5, &[], &note(3))),
            Err(Refusal::BadRequest(_))
        ));
        assert_eq!(
            decide(Some(&at(8)), &encode_request(3, &proof(3, 5), &note(5))),
            Err(Refusal::Conflict(8))
        );
        assert_eq!(
            decide(Some(&at(8)), &encode_request(0, &[], &note(8))),
            Err(Refusal::Conflict(8))
        );
        // Signatures and origins.
        let stranger = SigningKey::from_bytes(&[6; 32]);
        assert!(matches!(
            decide(None, &encode_request(0, &[], &sign(&stranger, &cp(&t, 3)))),
            Err(Refusal::Forbidden(_))
        ));
        let tampered = note(3).replacen("\n3\n", "\n4\n", 1);
        assert!(matches!(
            decide(None, &encode_request(0, &[], &tampered)),
            Err(Refusal::Forbidden(_))
        ));
        let mut elsewhere = cp(&t, 3);
        elsewhere.origin = "log.example/b".into();
        assert_eq!(
            decide(None, &encode_request(0, &[], &sign(&log_key(), &elsewhere))),
            Err(Refusal::UnknownOrigin("log.example/b".into()))
        );
    }

    #[test]
    fn served_checkpoint_keeps_only_verified_log_signatures() {
        let t = tree(2);
        let note = sign(&log_key(), &cp(&t, 2));
        let extra = format!("{note}\u{2014} someone.else AAAAAAAA\n");
        let body = encode_request(0, &[], &extra);
        let req = parse_request(body.as_bytes()).unwrap();
        let v = verify_submission(&logs(), &req).unwrap();
        assert_eq!(v.log_signed, note);
        assert_eq!(v.body, cp(&t, 2).body());
    }
}
