//! Tokens held until witnesses have seen their leaves (C2SP `tlog-witness`).
//!
//! With witnesses configured, a minted token does not leave the enclave with its leaf.
//! It waits here until the host brings back a checkpoint that
//!
//! 1. this enclave signed since it started, at a size and root it recorded when it
//!    signed (so an old checkpoint of another history, cosigned before a restart, cannot
//!    release tokens of the history the host restored since), and
//! 2. carries valid `cosignature/v1` lines from a quorum of the configured witnesses,
//!
//! and then every held token whose leaf that checkpoint covers is handed out at once
//! ([`Witnessing::witness`]). A witness cosigns only a checkpoint consistent with every
//! one it cosigned before, so a host that rolled the log back or forked it can no longer
//! get a quorum, and so can release nothing: erasing a leaf becomes an outage that
//! everyone sees instead of a forgery no one does.
//!
//! Held tokens are bounded by count and bytes like the unacknowledged leaves
//! ([`crate::log`]); a full store refuses new mints until witnesses catch up. Tokens
//! that expired while held are dropped: no one can use them any more.

use sealgate_shared::cosignature::{verify_quorum, CosignerKey};
use sealgate_shared::merkle::Hash;
use sealgate_shared::note::Checkpoint;
use sealgate_shared::protocol::{Released, ReleasedToken};
use std::collections::{BTreeMap, VecDeque};

/// Most tokens held for witnesses at once.
pub const MAX_HELD_TOKENS: usize = 100_000;
/// Most token bytes held at once (a token is ~700 bytes, so the count binds first
/// unless tokens grow); together with the log's own 64 MiB this keeps an enclave whose
/// witnesses are all down well inside its memory.
pub const MAX_HELD_BYTES: usize = 64 << 20;
/// Signed-but-not-yet-witnessed checkpoints remembered (one per ack, ~50 a second
/// under load). When witnesses fall this far behind, the oldest are forgotten; the host
/// then gets a newer one cosigned, which releases everything below it too.
pub const MAX_SIGNED: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WitnessingError {
    #[error(
        "{tokens} tokens ({bytes} bytes) await a checkpoint the witnesses cosigned (at most {MAX_HELD_TOKENS} or \
         {MAX_HELD_BYTES} bytes): no token is minted until a quorum of witnesses cosigns one"
    )]
    Full { tokens: usize, bytes: usize },
    #[error("this enclave has not signed a checkpoint at size {0} since it started (or has forgotten it)")]
    NotSigned(u64),
    #[error("the checkpoint at size {0} is not the one this enclave signed at that size")]
    OtherRoot(u64),
    #[error("the witnesses' cosignatures do not make a quorum: {0}")]
    Quorum(String),
}

struct Held {
    index: u64,
    exp: u64,
    token: String,
}

pub struct Witnessing {
    keys: Vec<CosignerKey>,
    quorum: usize,
    held: VecDeque<Held>,
    held_bytes: usize,
    /// Checkpoints signed since start and not yet witnessed: size → root.
    signed: BTreeMap<u64, Hash>,
}

impl Witnessing {
    /// `keys` and `quorum` come from a validated configuration (`config::witnesses`).
    pub fn new(keys: Vec<CosignerKey>, quorum: usize) -> Self {
        Self {
            keys,
            quorum,
            held: VecDeque::new(),
            held_bytes: 0,
            signed: BTreeMap::new(),
        }
    }

    /// Whether another token may be held (checked before one is signed).
    pub fn can_hold(&self) -> Result<(), WitnessingError> {
        if self.held.len() >= MAX_HELD_TOKENS || self.held_bytes >= MAX_HELD_BYTES {
            return Err(WitnessingError::Full {
                tokens: self.held.len(),
                bytes: self.held_bytes,
            });
        }
        Ok(())
    }

    /// Holds the token of leaf `index` (indices arrive in order: the caller holds the
    /// log's lock across the append and this).
    pub fn hold(&mut self, index: u64, exp: u64, token: String) {
        self.held_bytes += token.len();
        self.held.push_back(Held { index, exp, token });
    }

    /// Remembers a checkpoint just signed, so a cosigned copy of it can release tokens.
    pub fn signed(&mut self, size: u64, root: Hash) {
        self.signed.insert(size, root);
        while self.signed.len() > MAX_SIGNED {
            self.signed.pop_first();
        }
    }

    /// Checks a cosigned checkpoint (`opened` is `note` already verified under this
    /// enclave's checkpoint key) and releases every held token below its size, dropping
    /// those expired by `now` (seconds). A refusal changes nothing.
    pub fn witness(&mut self, opened: &Checkpoint, note: &str, now: u64) -> Result<Released, WitnessingError> {
        match self.signed.get(&opened.size) {
            None => return Err(WitnessingError::NotSigned(opened.size)),
            Some(root) if *root != opened.root => return Err(WitnessingError::OtherRoot(opened.size)),
            Some(_) => {}
        }
        self.check_quorum(note)?;
        // Everything at or below this size is vouched for; later acks are still pending.
        self.signed = self.signed.split_off(&(opened.size + 1));
        let mut tokens = Vec::new();
        while self.held.front().is_some_and(|h| h.index < opened.size) {
            let Some(h) = self.held.pop_front() else { break };
            self.held_bytes = self.held_bytes.saturating_sub(h.token.len());
            if h.exp > now {
                tokens.push(ReleasedToken {
                    index: h.index,
                    token: h.token,
                });
            }
        }
        Ok(Released {
            size: opened.size,
            tokens,
        })
    }

    /// Whether `note` carries a quorum of valid cosignatures (a restore starts only from
    /// such a checkpoint).
    pub fn check_quorum(&self, note: &str) -> Result<(), WitnessingError> {
        verify_quorum(note, &self.keys, self.quorum)
            .map(|_| ())
            .map_err(|e| WitnessingError::Quorum(e.to_string()))
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use sealgate_shared::cosignature::Cosigner;

    fn cosigner(seed: u8) -> Cosigner {
        Cosigner::new(&format!("w{seed}.example"), SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    fn checkpoint(size: u64, root: u8) -> Checkpoint {
        Checkpoint {
            origin: "log.example/log".into(),
            size,
            root: [root; 32],
        }
    }

    /// A note for `cp` with a placeholder log signature and the given witnesses' lines.
    fn cosigned(cp: &Checkpoint, by: &[&Cosigner]) -> String {
        let body = cp.body();
        let mut note = format!("{body}\n\u{2014} log.example/log AAAAAA==\n");
        for w in by {
            note.push_str(&w.cosign(&body, 1_700_000_000).unwrap());
            note.push('\n');
        }
        note
    }

    fn two_of_three() -> (Witnessing, Vec<Cosigner>) {
        let ws: Vec<Cosigner> = (1..=3).map(cosigner).collect();
        (Witnessing::new(ws.iter().map(Cosigner::verifier).collect(), 2), ws)
    }

    #[test]
    fn a_quorum_on_a_signed_checkpoint_releases_what_it_covers() {
        let (mut w, ws) = two_of_three();
        w.hold(3, u64::MAX, "t3".into());
        w.hold(5, u64::MAX, "t5".into());
        w.hold(6, 10, "expired".into());
        w.hold(9, u64::MAX, "t9".into());
        let cp = checkpoint(8, 1);
        w.signed(8, [1; 32]);
        // One cosignature is not a quorum: nothing moves.
        assert!(matches!(
            w.witness(&cp, &cosigned(&cp, &[&ws[0]]), 100),
            Err(WitnessingError::Quorum(_))
        ));
        assert_eq!(w.held(), 4);
        let r = w.witness(&cp, &cosigned(&cp, &[&ws[0], &ws[2]]), 100).unwrap();
        assert_eq!(r.size, 8);
        let got: Vec<(u64, &str)> = r.tokens.iter().map(|t| (t.index, t.token.as_str())).collect();
        assert_eq!(got, vec![(3, "t3"), (5, "t5")]);
        assert_eq!(w.held(), 1, "leaf 9 is beyond the checkpoint");
    }

    #[test]
    fn a_checkpoint_not_signed_here_or_of_another_tree_releases_nothing() {
        let (mut w, ws) = two_of_three();
        w.hold(0, u64::MAX, "t0".into());
        let all: Vec<&Cosigner> = ws.iter().collect();
        let cp = checkpoint(4, 1);
        assert_eq!(
            w.witness(&cp, &cosigned(&cp, &all), 0),
            Err(WitnessingError::NotSigned(4))
        );
        // Signed here at size 4, but with another root: a history from before a restart.
        w.signed(4, [2; 32]);
        assert_eq!(
            w.witness(&cp, &cosigned(&cp, &all), 0),
            Err(WitnessingError::OtherRoot(4))
        );
        assert_eq!(w.held(), 1);
        // Cosignatures over another body do not count for this one.
        let other = checkpoint(4, 2);
        let mut forged = cosigned(&other, &[]);
        for l in cosigned(&cp, &all).lines().skip(5) {
            forged.push_str(l);
            forged.push('\n');
        }
        assert!(matches!(w.witness(&other, &forged, 0), Err(WitnessingError::Quorum(_))));
        assert!(w.witness(&other, &cosigned(&other, &all), 0).is_ok());
        assert_eq!(w.held(), 0);
    }

    #[test]
    fn witnessed_sizes_are_forgotten_and_the_store_is_bounded() {
        let (mut w, ws) = two_of_three();
        w.signed(2, [1; 32]);
        w.signed(3, [1; 32]);
        let cp = checkpoint(3, 1);
        w.witness(&cp, &cosigned(&cp, &[&ws[0], &ws[1]]), 0).unwrap();
        let older = checkpoint(2, 1);
        assert_eq!(
            w.witness(&older, &cosigned(&older, &[&ws[0], &ws[1]]), 0),
            Err(WitnessingError::NotSigned(2))
        );
        for i in 0..MAX_HELD_TOKENS as u64 {
            assert!(w.can_hold().is_ok());
            w.hold(i, u64::MAX, String::new());
        }
        assert!(matches!(w.can_hold(), Err(WitnessingError::Full { .. })));
        for s in 0..(MAX_SIGNED as u64 + 10) {
            w.signed(s + 10, [0; 32]);
        }
        assert_eq!(w.signed.len(), MAX_SIGNED);
    }
}
