//! `sealgate-verify monitor`: watches a log continuously, round after round, and says
//! at once when the host or the enclave breaks a promise.
//!
//! Each round ([`Monitor::round`]):
//!
//! 1. the keys served now (`/.well-known/jwks.json`, `/v1/audit/key`) are compared with
//!    the last attested commitment; at start, and whenever they differ (or after an
//!    enclave restart), the host is attested again ([`Attestor`], the `attest` checks
//!    with a fresh nonce). A JWKS key no fresh attestation commits to is
//!    `jwks.unattested_key`; a checkpoint key other than the one the log was seen
//!    under is `checkpoint.key_changed`;
//! 2. the checkpoint must verify under the attested checkpoint key
//!    (`checkpoint.signature`) and extend the last one verified
//!    ([`verify_history`]): smaller is `checkpoint.rollback`, the same size with
//!    another root or a failing consistency proof `checkpoint.fork` — which is also how
//!    an enclave restored from a truncated log shows (the findings say so);
//! 3. cosignatures ([`witness`]): a quorum of the attested witnesses must have cosigned;
//! 4. with `--key` (the operator key: these leaves are operator-level), the new
//!    entries are read once each, folded onto the range kept from the last round and
//!    checked to give the signed root; `enclave.boot`/`enclave.genesis` leaves must
//!    name the attested checkpoint key and configuration, and every attested token key
//!    must have been introduced by a `key.rotated` (or genesis/boot) leaf
//!    (`key.rotation_unlogged`).
//!
//! Only verified facts go into the [`state::State`], which the runner persists after
//! every round, so a restarted monitor remembers the last checkpoint it verified and a
//! rollback that happened while it was down is caught on its first round.
//!
//! Pure over its sources like the rest of the crate: [`LogSource`] for the log,
//! [`AttestSource`] for the served keys, [`Attestor`] for attestation.

pub mod finding;
pub mod leaves;
pub mod post;
pub mod run;
pub mod state;
pub mod witness;

use crate::attest::{verify_attestation, AttestOptions, Outcome};
use crate::fetch::{AttestSource, FetchError, LogSource, MAX_PAGE};
use crate::log::{fold_entries, open_checkpoint, verify_history, LogError};
use crate::report::FailureClass;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use finding::{kind, Finding};
use leaves::{boot_differences, read_event, Event};
use sealgate_shared::commitment::{p256_thumbprint, Commitment};
use sealgate_shared::note::{Checkpoint, VerifierKey};
use state::{Contents, SeenCheckpoint, State};
use std::collections::BTreeSet;
use std::str::FromStr;

/// What a verified attestation established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    /// The commitment the document's `user_data` is the digest of.
    pub commitment: Commitment,
    /// PCR0 (hex) of the document.
    pub pcr0: Option<String>,
    /// One line for the report.
    pub summary: String,
}

/// Why an attestation did not verify: the first failing check's class and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestFailure {
    pub class: FailureClass,
    pub reason: String,
}

/// Attests the host now. A trait so the monitor's logic is tested without an enclave.
pub trait Attestor {
    fn attest(&self) -> Result<Attested, AttestFailure>;
}

/// [`Attestor`] over [`verify_attestation`]: the `attest` checks against a host, each
/// time with a fresh nonce from `nonce` and judged at `clock()`.
pub struct HostAttestor<'a> {
    pub src: &'a dyn AttestSource,
    /// Root, PCRs and max age; the nonce and time are set per attestation.
    pub template: AttestOptions,
    pub nonce: fn() -> Result<Vec<u8>, String>,
    pub clock: fn() -> u64,
}

impl Attestor for HostAttestor<'_> {
    fn attest(&self) -> Result<Attested, AttestFailure> {
        let mut opts = self.template.clone();
        opts.nonce = Some((self.nonce)().map_err(|reason| AttestFailure {
            class: FailureClass::Usage,
            reason,
        })?);
        opts.nonce_generated = true;
        opts.at = None;
        let report = verify_attestation(Some(self.src), &opts, (self.clock)());
        if !report.verified() {
            let failed = report.checks.iter().find_map(|c| match &c.outcome {
                Outcome::Failed(e) => Some((c.name.clone(), e)),
                _ => None,
            });
            return Err(match failed {
                Some((name, e)) => AttestFailure {
                    class: e.class(),
                    reason: format!("{name}: {e}"),
                },
                None => AttestFailure {
                    class: FailureClass::Document,
                    reason: "the document's chain and signature were not checked".into(),
                },
            });
        }
        let Some(commitment) = report.commitment.clone() else {
            return Err(AttestFailure {
                class: FailureClass::Commitment,
                reason: "the attestation verified no commitment".into(),
            });
        };
        let simulator = if report.simulator {
            " (SIMULATOR root: proves nothing about hardware)"
        } else {
            ""
        };
        Ok(Attested {
            summary: format!(
                "document verifies{simulator}; commits to checkpoint key {}, {} JWKS key(s), issuer {:?}",
                commitment.checkpoint_key,
                commitment.jwk_thumbprints.len(),
                commitment.issuer
            ),
            pcr0: report.document.as_ref().and_then(|d| d.pcr0.clone()),
            commitment,
        })
    }
}

/// Why the monitor attests now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Start,
    Jwks,
    CheckpointKey,
    Restart(u64),
}

/// The monitor's logic and what it has verified so far.
pub struct Monitor<'a> {
    log: &'a dyn LogSource,
    served: &'a dyn AttestSource,
    attestor: &'a dyn Attestor,
    /// Read leaf contents (`--key`): key rotations and restarts.
    read_contents: bool,
    pub state: State,
    /// The served keys (checkpoint key, sorted thumbprints) the last failed attestation
    /// was about: not attested (nor reported) again while the host serves the same.
    failed_keys: Option<(String, Vec<String>)>,
    /// The checkpoint note of the last violation: reported once, not every round.
    violating_note: Option<String>,
    /// Attested keys already reported as `key.rotation_unlogged`.
    unlogged_reported: BTreeSet<String>,
    witnesses_said: bool,
    /// An attestation verified since this process started (a resumed state's
    /// commitment is attested again: the enclave may have been replaced meanwhile).
    attested_this_run: bool,
}

fn fetch_error(e: &FetchError) -> Finding {
    Finding::error(kind::FETCH, FailureClass::Fetch, e.to_string())
}

fn sorted_thumbprints(jwks: &[crate::fetch::Jwk]) -> Vec<String> {
    let mut t: Vec<String> = jwks.iter().map(|k| p256_thumbprint(&k.x, &k.y)).collect();
    t.sort();
    t.dedup();
    t
}

impl<'a> Monitor<'a> {
    pub fn new(
        log: &'a dyn LogSource,
        served: &'a dyn AttestSource,
        attestor: &'a dyn Attestor,
        read_contents: bool,
        state: State,
    ) -> Self {
        Monitor {
            log,
            served,
            attestor,
            read_contents,
            state,
            failed_keys: None,
            violating_note: None,
            unlogged_reported: BTreeSet::new(),
            witnesses_said: false,
            attested_this_run: false,
        }
    }

    /// What is printed once, before the first round: where the monitor resumes, and
    /// what it cannot check.
    pub fn start(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        out.push(Finding::ok(
            kind::START,
            match &self.state.checkpoint {
                Some(c) => format!(
                    "resuming from the saved state: last verified checkpoint size {}, root {}",
                    c.size, c.root
                ),
                None => "no saved state: the first checkpoint verified becomes the baseline".to_string(),
            },
        ));
        if !self.read_contents {
            out.push(Finding::ok(
                kind::LEAVES,
                "leaf contents not read (no --key): key.rotated and enclave.boot leaves are not checked; \
                 key changes are checked against attestation only",
            ));
        }
        out
    }

    /// One round: every check of the module docs, in order. Returns its findings;
    /// `self.state` holds what is now verified.
    pub fn round(&mut self) -> Vec<Finding> {
        let mut out = Vec::new();

        // 1. The keys served now, against the attested commitment.
        let served_key = match self.served.checkpoint_key() {
            Ok(k) => k,
            Err(e) => return vec![fetch_error(&e)],
        };
        let thumbprints = match self.served.jwks() {
            Ok(j) => sorted_thumbprints(&j),
            Err(e) => return vec![fetch_error(&e)],
        };
        let why = match &self.state.commitment {
            _ if !self.attested_this_run => Some(Why::Start),
            None => Some(Why::Start),
            Some(c) if c.checkpoint_key != served_key => Some(Why::CheckpointKey),
            Some(c) if c.jwk_thumbprints != thumbprints => Some(Why::Jwks),
            Some(_) => None,
        };
        match why {
            Some(why) if self.failed_keys.as_ref() != Some(&(served_key.clone(), thumbprints.clone())) => {
                if self.attest(why, &served_key, &thumbprints, &mut out) == Some(false) {
                    self.failed_keys = Some((served_key.clone(), thumbprints.clone()));
                }
            }
            Some(_) => {}
            None => self.failed_keys = None,
        }
        let Some(commitment) = self.state.commitment.clone() else {
            return out;
        };
        let vk = match VerifierKey::from_str(&commitment.checkpoint_key) {
            Ok(vk) => vk,
            Err(e) => {
                out.push(Finding::violation(
                    kind::ATTESTATION_FAILED,
                    FailureClass::Commitment,
                    format!("the attested checkpoint_key is not a verifier key: {e}"),
                ));
                return out;
            }
        };

        // 2. The checkpoint: signed by the attested key, and extending the last one.
        let note = match self.log.checkpoint() {
            Ok(n) => n,
            Err(e) => {
                out.push(fetch_error(&e));
                return out;
            }
        };
        if self.violating_note.as_deref() == Some(note.as_str()) {
            return out;
        }
        let cp = match open_checkpoint(&vk, &note) {
            Ok(cp) => cp,
            Err(LogError::CheckpointMalformed(e)) => {
                out.push(Finding::error(
                    kind::FETCH,
                    FailureClass::Fetch,
                    format!("checkpoint is not a signed note: {e}"),
                ));
                return out;
            }
            Err(e) => {
                out.push(Finding::violation(
                    kind::CHECKPOINT_SIGNATURE,
                    FailureClass::Signature,
                    format!("the served checkpoint is not signed by the attested checkpoint key: {e}"),
                ));
                self.violating_note = Some(note);
                return out;
            }
        };
        let previous = self.state.checkpoint.clone();
        match &previous {
            None => out.push(Finding::ok(
                kind::CHECKPOINT,
                format!(
                    "size {}, root {}: signature verifies under the attested checkpoint key (first checkpoint seen)",
                    cp.size,
                    B64.encode(cp.root)
                ),
            )),
            Some(seen) => match verify_history(self.log, &vk, &seen.note, &cp) {
                Ok(_) if seen.size == cp.size => {}
                Ok(_) => out.push(Finding::ok(
                    kind::CHECKPOINT,
                    format!(
                        "grew from {} to {}, root {}: signature verifies, consistency proof from the last checkpoint verifies",
                        seen.size,
                        cp.size,
                        B64.encode(cp.root)
                    ),
                )),
                Err(LogError::Fetch(e)) => {
                    out.push(fetch_error(&e));
                    return out;
                }
                Err(e) => {
                    out.push(self.history_violation(seen, &cp, &e));
                    self.violating_note = Some(note);
                    return out;
                }
            },
        }
        self.violating_note = None;

        // 3. Cosignatures.
        let (witnesses, quorum) = witness::attested_witnesses(&commitment);
        let new = previous.as_ref().is_none_or(|p| p.size != cp.size);
        let cosigned = witness::check_cosignatures(&note, &witnesses, quorum, new);
        let violated = cosigned.iter().any(Finding::is_violation);
        out.extend(cosigned);
        if violated {
            self.violating_note = Some(note);
            return out;
        }

        // 4. Leaf contents.
        let mut restarted = None;
        if self.read_contents {
            let since = previous.as_ref().map(|p| p.size);
            restarted = self.scan(&cp, since, &commitment, &mut out);
        }
        self.state.checkpoint = Some(SeenCheckpoint {
            size: cp.size,
            root: B64.encode(cp.root),
            note,
        });
        if let Some(index) = restarted {
            self.attest(Why::Restart(index), &served_key, &thumbprints, &mut out);
        }
        if self.read_contents {
            self.check_rotations(cp.size, &mut out);
        }
        out
    }

    /// Attests the host; adopts the commitment when it verifies and keeps the log's
    /// checkpoint key. Returns whether it verified, or `None` when the host could not
    /// be asked (a fetch error: retried next round, not a verdict).
    fn attest(&mut self, why: Why, served_key: &str, thumbprints: &[String], out: &mut Vec<Finding>) -> Option<bool> {
        let old = self.state.commitment.clone();
        match self.attestor.attest() {
            Ok(a) => {
                if let Some(old) = &old {
                    if a.commitment.checkpoint_key != old.checkpoint_key {
                        out.push(Finding::violation(
                            kind::CHECKPOINT_KEY_CHANGED,
                            FailureClass::Signature,
                            format!(
                                "the enclave now attests checkpoint key {}, but the log seen so far is signed by {}: \
                                 another log (another enclave state) is served under this URL",
                                a.commitment.checkpoint_key, old.checkpoint_key
                            ),
                        ));
                        return Some(false);
                    }
                }
                let before: BTreeSet<&String> = old.iter().flat_map(|c| &c.jwk_thumbprints).collect();
                let after: BTreeSet<&String> = a.commitment.jwk_thumbprints.iter().collect();
                let reason = match why {
                    Why::Start => "at start".to_string(),
                    Why::Jwks => "the JWKS changed".to_string(),
                    Why::CheckpointKey => "the served checkpoint key changed".to_string(),
                    Why::Restart(i) => format!("the enclave restarted (leaf {i})"),
                };
                out.push(Finding::ok(kind::ATTESTATION, format!("{} ({reason})", a.summary)));
                if old.is_some() {
                    for t in after.difference(&before) {
                        out.push(Finding::ok(
                            kind::JWKS_KEY_ADDED,
                            format!("token key {t} is new in the JWKS, and the fresh attestation commits to it"),
                        ));
                    }
                    for t in before.difference(&after) {
                        out.push(Finding::ok(
                            kind::JWKS_KEY_RETIRED,
                            format!("token key {t} left the JWKS and the attested commitment"),
                        ));
                    }
                }
                if !self.witnesses_said {
                    let (w, q) = witness::attested_witnesses(&a.commitment);
                    out.push(witness::describe(&w, q));
                    self.witnesses_said = true;
                }
                self.state
                    .thumbprints_seen
                    .extend(a.commitment.jwk_thumbprints.iter().cloned());
                self.state.commitment = Some(a.commitment);
                self.state.pcr0 = a.pcr0;
                self.attested_this_run = true;
                Some(true)
            }
            Err(fail) if fail.class == FailureClass::Fetch => {
                out.push(Finding::error(
                    kind::FETCH,
                    FailureClass::Fetch,
                    format!("attestation: {}", fail.reason),
                ));
                None
            }
            Err(fail) => {
                let unattested: Vec<&String> = match &old {
                    Some(c) => thumbprints.iter().filter(|t| !c.jwk_thumbprints.contains(t)).collect(),
                    None => Vec::new(),
                };
                match (why, old) {
                    (Why::Jwks, Some(_)) if !unattested.is_empty() => {
                        for t in unattested {
                            out.push(Finding::violation(
                                kind::JWKS_UNATTESTED_KEY,
                                FailureClass::Commitment,
                                format!(
                                    "the JWKS serves token key {t}, which the attested commitment does not contain, \
                                     and a fresh attestation does not commit to it ({})",
                                    fail.reason
                                ),
                            ));
                        }
                    }
                    (Why::CheckpointKey, Some(c)) => out.push(Finding::violation(
                        kind::CHECKPOINT_KEY_CHANGED,
                        FailureClass::Signature,
                        format!(
                            "the host serves checkpoint key {served_key}, the enclave attested {}; \
                             a fresh attestation does not verify ({})",
                            c.checkpoint_key, fail.reason
                        ),
                    )),
                    _ => out.push(Finding::violation(kind::ATTESTATION_FAILED, fail.class, fail.reason)),
                }
                Some(false)
            }
        }
    }

    /// The finding for a checkpoint that does not extend the one seen before.
    fn history_violation(&self, seen: &SeenCheckpoint, cp: &Checkpoint, e: &LogError) -> Finding {
        let restart = self.restart_below(cp.size, seen.size);
        match e {
            LogError::Truncated { saved, current } => Finding::violation(
                kind::CHECKPOINT_ROLLBACK,
                FailureClass::History,
                format!(
                    "the log shrank: the host serves a validly signed checkpoint of size {current} (root {}), but size \
                     {saved} (root {}) was verified before, so the leaves [{current}, {saved}) are gone. The host's \
                     database was rolled back, or the enclave was restarted and restored from a truncated log (its new \
                     checkpoint is smaller than the last one seen){restart}",
                    B64.encode(cp.root),
                    seen.root
                ),
            ),
            other => Finding::violation(
                kind::CHECKPOINT_FORK,
                FailureClass::History,
                format!(
                    "forked log: the checkpoint of size {} (root {}) does not extend the one of size {} (root {}) \
                     verified before ({other}). The signer signed two histories: typically the enclave was \
                     restarted and restored from a truncated log that then grew again (its new checkpoints are not \
                     consistent with the last one seen){restart}",
                    cp.size,
                    B64.encode(cp.root),
                    seen.size,
                    seen.root
                ),
            ),
        }
    }

    /// With `--key`: the newest `enclave.boot` leaf of the served log `[0, size)`, read
    /// backwards a page at a time, described when the verified history had no boot at
    /// that index and it lies below `seen`: the enclave restarted inside the history the
    /// monitor had verified. The search stops at the first boot (or genesis) leaf.
    fn restart_below(&self, size: u64, seen: u64) -> String {
        if !self.read_contents {
            return " (pass --key with the operator key to find the enclave.boot leaf of a restart)".into();
        }
        let known = self.state.contents.as_ref().map(|c| &c.boots);
        let mut end = size;
        while end > 0 {
            let start = end.saturating_sub(MAX_PAGE);
            let Ok(page) = self.log.entries(start, end) else {
                return String::new();
            };
            for e in page.entries.iter().rev() {
                match e.leaf.as_deref().map(read_event) {
                    Some(Ok(Some(Event::Boot(_)))) => {}
                    Some(Ok(Some(Event::Genesis(_)))) => return String::new(),
                    _ => continue,
                }
                let new = !known.is_some_and(|k| k.contains(&e.index));
                return if new && e.index < seen {
                    format!(
                        ". Leaf {i} of the served log is enclave.boot: the enclave restarted at size {i}, inside the \
                         {seen} leaves already checkpointed, so it was restored from a truncated log",
                        i = e.index
                    )
                } else {
                    String::new()
                };
            }
            end = start;
        }
        String::new()
    }

    /// Reads the entries the last round did not, checks them and the leaves about keys
    /// and restarts. Returns the index of a restart (`enclave.boot`) within the new
    /// entries after `since` (the previous checkpoint size), if any.
    fn scan(&mut self, cp: &Checkpoint, since: Option<u64>, c: &Commitment, out: &mut Vec<Finding>) -> Option<u64> {
        let contents = self.state.contents.get_or_insert_with(Contents::default);
        if contents.scanned > cp.size {
            out.push(Finding::error(
                kind::STATE,
                FailureClass::Usage,
                format!(
                    "the saved state read {} entries, more than the verified checkpoint's {}",
                    contents.scanned, cp.size
                ),
            ));
            return None;
        }
        let mut range = match contents.range() {
            Ok(r) => r,
            Err(e) => {
                out.push(Finding::error(
                    kind::STATE,
                    FailureClass::Usage,
                    format!("saved frontier: {e}"),
                ));
                return None;
            }
        };
        let mut events = Vec::new();
        let folded = fold_entries(self.log, &mut range, cp.size, &mut |position, _, leaf| {
            if let Some(bytes) = leaf {
                match read_event(bytes) {
                    Ok(Some(e)) => events.push((position, Ok(e))),
                    Ok(None) => {}
                    Err(m) => events.push((position, Err(m))),
                }
            }
        });
        match folded {
            Ok(_) => {}
            Err(LogError::Fetch(e)) => {
                out.push(fetch_error(&e));
                return None;
            }
            Err(e) => {
                out.push(Finding::violation(kind::LOG_ENTRIES, e.class(), e.to_string()));
                return None;
            }
        }
        if range.root() != cp.root {
            out.push(Finding::violation(
                kind::LOG_ENTRIES,
                FailureClass::LogContent,
                format!(
                    "the served entries [0, {}) hash to root {}, the checkpoint says {}",
                    cp.size,
                    B64.encode(range.root()),
                    B64.encode(cp.root)
                ),
            ));
            return None;
        }
        contents.set_range(&range);
        let mut restarted = None;
        for (index, event) in events {
            match event {
                Err(m) => out.push(Finding::violation(
                    kind::LOG_ENTRIES,
                    FailureClass::LogContent,
                    format!("leaf {index}: {m}"),
                )),
                Ok(Event::Rotated(r)) => {
                    contents.logged_kids.insert(r.old_kid.clone());
                    contents.logged_kids.insert(r.new_kid.clone());
                    out.push(Finding::ok(
                        kind::KEY_ROTATED,
                        format!(
                            "leaf {index}: token key {} replaced by {} (the old one retires at {})",
                            r.old_kid, r.new_kid, r.old_key_retire_at
                        ),
                    ));
                }
                Ok(Event::Genesis(b)) | Ok(Event::Boot(b)) if !boot_differences(&b, c).is_empty() => {
                    out.push(Finding::violation(
                        kind::ENCLAVE_BOOT_MISMATCH,
                        FailureClass::LogContent,
                        format!(
                            "leaf {index}: the enclave that wrote it is not the attested one: {}",
                            boot_differences(&b, c).join("; ")
                        ),
                    ));
                }
                Ok(Event::Genesis(b)) => {
                    contents.logged_kids.insert(b.token_kid.clone());
                    if index != 0 {
                        out.push(Finding::violation(
                            kind::ENCLAVE_GENESIS_MISPLACED,
                            FailureClass::LogContent,
                            format!("leaf {index} is enclave.genesis: only leaf 0 may be"),
                        ));
                    }
                }
                Ok(Event::Boot(b)) => {
                    contents.boots.insert(index);
                    let known = contents.logged_kids.contains(&b.token_kid);
                    contents.logged_kids.insert(b.token_kid.clone());
                    if !known {
                        out.push(Finding::violation(
                            kind::ENCLAVE_BOOT_MISMATCH,
                            FailureClass::LogContent,
                            format!(
                                "leaf {index}: the enclave booted with token key {}, which no earlier leaf introduced",
                                b.token_kid
                            ),
                        ));
                        continue;
                    }
                    let continued = match since {
                        Some(s) if index >= s => {
                            restarted = Some(index);
                            format!(
                                "and was restored with the log intact: checkpoint {} is consistent with size {s} verified before",
                                cp.size
                            )
                        }
                        _ => format!("and the log verifies through size {}", cp.size),
                    };
                    out.push(Finding::ok(
                        kind::ENCLAVE_RESTARTED,
                        format!(
                            "leaf {index}: the enclave restarted {continued}; same checkpoint key and configuration as attested, token key {}, pcr0 {}",
                            b.token_kid, b.pcr0
                        ),
                    ));
                }
            }
        }
        restarted
    }

    /// Every attested token key must have been introduced by a leaf. A key the JWKS
    /// gained a moment ago may not be covered by a checkpoint yet: it waits until a
    /// larger checkpoint than the one it was first seen with.
    fn check_rotations(&mut self, size: u64, out: &mut Vec<Finding>) {
        let Some(c) = &self.state.commitment else { return };
        let Some(contents) = self.state.contents.as_mut() else {
            return;
        };
        contents.pending.retain(|t, _| c.jwk_thumbprints.contains(t));
        for t in &c.jwk_thumbprints {
            if contents.logged_kids.contains(t) {
                contents.pending.remove(t);
                continue;
            }
            match contents.pending.get(t) {
                None => {
                    contents.pending.insert(t.clone(), size);
                }
                Some(&first) if size > first && !self.unlogged_reported.contains(t) => {
                    self.unlogged_reported.insert(t.clone());
                    out.push(Finding::violation(
                        kind::KEY_ROTATION_UNLOGGED,
                        FailureClass::LogContent,
                        format!(
                            "attested token key {t} has no key.rotated (nor enclave.genesis/boot) leaf in the log's {size} \
                             leaves; it was first attested when the log had {first}"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
}
