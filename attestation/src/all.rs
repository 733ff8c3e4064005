//! `sealgate-verify all`: attestation, then the log under the attested key, then
//! (with `--since`) that the log only grew since a checkpoint the auditor kept.
//!
//! Sections, in order (the exit code is that of the first failure):
//!
//! 1. `attestation` — [`verify_attestation`] against the host; when it verifies, its
//!    commitment names the `checkpoint_key` the enclave committed to;
//! 2. `log` — [`verify_log`] with that attested key pinned: the host's key must equal
//!    it (else the signature class, exit 4), the checkpoint must verify under it, the
//!    leaf hashes must give the signed root (with `--key`, every leaf that key may read
//!    must hash to its hash), and every `--token` must be proven;
//!    and, when the commitment names witnesses, the checkpoint must carry a quorum of
//!    their cosignatures (`witnesses`; else it says `witnesses: none`);
//! 3. `history` (with `--since`) — [`verify_history`] from the saved checkpoint to the
//!    current one, both opened with the attested key.
//!
//! Without a verified attestation there is no key to trust, so the later sections are
//! skipped rather than run against a key the host chose. Pure over the two sources,
//! like the parts it reuses; saving the checkpoint (`--save`) is the caller's I/O,
//! recorded in [`AllReport::save`].

use crate::attest::{verify_attestation, AttestOptions, AttestReport};
use crate::fetch::{AttestSource, LogSource};
use crate::jwt::Token;
use crate::log::{verify_history, verify_log, Check, LogError, LogOptions, LogReport, Scan};
use crate::report::FailureClass;
use sealgate_shared::cosignature::{verify_quorum, CosignerKey};
use sealgate_shared::note::VerifierKey;
use std::str::FromStr;

/// What `all` verifies.
#[derive(Debug, Clone)]
pub struct AllOptions {
    pub attest: AttestOptions,
    /// Tokens to prove (`--token`).
    pub tokens: Vec<Token>,
    /// A signed checkpoint note kept by an earlier run (`--since FILE`'s contents).
    pub since: Option<String>,
    /// Hashes only, or (with `--key`) the contents that key may read too.
    pub scan: Scan,
}

/// A section that did not run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub reason: String,
    /// The failure class when skipping is itself a failure; `None` when an earlier
    /// section's failure already accounts for it.
    pub class: Option<FailureClass>,
}

/// Everything `all` established or refuted, section by section.
#[derive(Debug)]
pub struct AllReport {
    pub attest: AttestReport,
    /// The attested checkpoint key, when attestation verified.
    pub attested_key: Option<String>,
    pub log: Result<LogReport, Skipped>,
    /// `None` without `--since`.
    pub history: Option<Result<Check, Skipped>>,
    /// `--save`: `Ok(description)` or `Err(reason)`; set by the caller after the checks.
    pub save: Option<Result<String, String>>,
}

impl AllReport {
    /// The failure class of the first failing section, if any.
    pub fn first_failure_class(&self) -> Option<FailureClass> {
        if !self.attest.verified() {
            return Some(
                self.attest
                    .first_failure()
                    .map(|e| e.class())
                    .unwrap_or(FailureClass::Document),
            );
        }
        match &self.log {
            Err(s) => {
                if let Some(c) = s.class {
                    return Some(c);
                }
            }
            Ok(l) if !l.verified() => {
                return Some(l.first_failure().map(|e| e.class()).unwrap_or(FailureClass::Fetch));
            }
            Ok(_) => {}
        }
        match &self.history {
            Some(Ok(Check { result: Err(e), .. })) => return Some(e.class()),
            Some(Err(Skipped { class: Some(c), .. })) => return Some(*c),
            _ => {}
        }
        match &self.save {
            Some(Err(_)) => Some(FailureClass::Usage),
            _ => None,
        }
    }

    /// Every section ran and passed.
    pub fn verified(&self) -> bool {
        self.first_failure_class().is_none() && self.log.is_ok() && !matches!(self.history, Some(Err(_)))
    }

    /// True when every check passed (the save, if any, not yet counted): the point at
    /// which the current checkpoint may be saved.
    pub fn checks_passed(&self) -> bool {
        matches!(self.save, None | Some(Ok(_))) && self.verified()
    }

    /// The current checkpoint note, verified under the attested key.
    pub fn verified_note(&self) -> Option<&str> {
        match &self.log {
            Ok(l) if l.verified() => l.note.as_deref(),
            _ => None,
        }
    }

    /// 0 when verified, else the first failing section's class.
    pub fn exit_code(&self) -> u8 {
        match self.first_failure_class() {
            None if self.verified() => 0,
            None => FailureClass::Fetch.exit_code(),
            Some(c) => c.exit_code(),
        }
    }
}

/// Runs the sections of `all` against `attest_src` and `log_src` (the same host).
pub fn verify_all(attest_src: &dyn AttestSource, log_src: &dyn LogSource, opts: &AllOptions, now: u64) -> AllReport {
    let attest = verify_attestation(Some(attest_src), &opts.attest, now);
    let mut report = AllReport {
        attest,
        attested_key: None,
        log: Err(Skipped {
            reason: "attestation did not verify, so no checkpoint key is attested".into(),
            class: None,
        }),
        history: opts.since.as_ref().map(|_| {
            Err(Skipped {
                reason: "no checkpoint verified under the attested key".into(),
                class: None,
            })
        }),
        save: None,
    };
    if !report.attest.verified() {
        return report;
    }
    let Some(commitment) = report.attest.commitment.as_ref() else {
        report.log = Err(Skipped {
            reason: "attestation verified no commitment, so no checkpoint key is attested".into(),
            class: Some(FailureClass::Commitment),
        });
        return report;
    };
    let vk = match VerifierKey::from_str(&commitment.checkpoint_key) {
        Ok(vk) => vk,
        Err(e) => {
            report.log = Err(Skipped {
                reason: format!("the attested checkpoint_key is not a verifier key: {e}"),
                class: Some(FailureClass::Commitment),
            });
            return report;
        }
    };
    report.attested_key = Some(vk.to_string());

    let mut log = verify_log(
        log_src,
        &LogOptions {
            pinned_key: Some(vk.clone()),
            tokens: opts.tokens.clone(),
            scan: opts.scan,
            judged_at: Some(opts.attest.at.unwrap_or(now)),
        },
    );
    // The pin is the attested key, not a --key.
    if let Some(Check {
        name,
        result: Ok(detail),
    }) = log.checks.first_mut()
    {
        if name == "key" {
            *detail = format!("{vk} (the checkpoint key the enclave attested)");
        }
    }
    if let Some(note) = log.note.clone().filter(|_| log.verified()) {
        log.checks.push(Check {
            name: "witnesses".into(),
            result: check_witnesses(&note, &commitment.witnesses, commitment.witness_quorum),
        });
    }
    let current = log.checkpoint.clone();
    report.log = Ok(log);

    if let (Some(saved), Some(current)) = (&opts.since, current) {
        report.history = Some(Ok(Check {
            name: "consistency".into(),
            result: verify_history(log_src, &vk, saved, &current),
        }));
    }
    report
}

/// The attested witnesses' cosignatures on the verified checkpoint `note`: "none" when
/// the commitment names none, else a quorum of valid ones or the failure.
pub fn check_witnesses(note: &str, witnesses: &[String], quorum: u32) -> Result<String, LogError> {
    if witnesses.is_empty() {
        return Ok("none (the attested configuration names no witnesses)".into());
    }
    let keys = witnesses
        .iter()
        .map(|v| CosignerKey::from_str(v))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LogError::Cosignatures(format!("an attested witness key does not parse: {e}")))?;
    let valid = verify_quorum(note, &keys, quorum as usize).map_err(|e| LogError::Cosignatures(e.to_string()))?;
    let who: Vec<&str> = valid.iter().map(|c| keys[c.key].name()).collect();
    Ok(format!(
        "{} of {} attested witnesses cosigned the checkpoint (quorum {quorum}): {}",
        valid.len(),
        keys.len(),
        who.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealgate_shared::cosignature::Cosigner;

    const BODY: &str = "log.example/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    /// With witnesses attested, the checkpoint must carry a quorum of theirs (exit 4);
    /// with none, there is nothing to require and the section says so.
    #[test]
    fn the_attested_quorum_is_required_on_the_checkpoint() {
        let w: Vec<Cosigner> = (1..=2u8)
            .map(|i| {
                Cosigner::new(
                    &format!("w{i}.example"),
                    ed25519_dalek::SigningKey::from_bytes(&[i; 32]),
                )
                .unwrap()
            })
            .collect();
        let vkeys: Vec<String> = w.iter().map(|c| c.verifier().to_string()).collect();
        let mut note = format!("{BODY}\n\u{2014} log.example/log AAAAAA==\n");
        assert!(check_witnesses(&note, &[], 0).unwrap().starts_with("none"));
        note.push_str(&w[0].cosign(BODY, 1_800_000_000).unwrap());
        note.push('\n');
        let e = check_witnesses(&note, &vkeys, 2).unwrap_err();
        assert_eq!(e.class(), FailureClass::Signature, "{e}");
        assert!(check_witnesses(&note, &vkeys, 1).is_ok());
        note.push_str(&w[1].cosign(BODY, 1_800_000_000).unwrap());
        note.push('\n');
        assert!(check_witnesses(&note, &vkeys, 2).unwrap().starts_with("2 of 2"));
    }
}
