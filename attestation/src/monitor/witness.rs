//! Cosignatures on checkpoints (C2SP `tlog-witness`, `cosignature/v1`).
//!
//! The attested commitment names the witnesses the enclave requires and their quorum.
//! An enclave so configured releases no token under a checkpoint that lacks a quorum of
//! their cosignatures, so every checkpoint the host serves must carry one: a checkpoint
//! without is either not the one that released the tokens (the host serves another
//! history than the witnesses saw) or a host that strips them. Either way the monitor
//! reports it. With no witnesses configured the monitor says `witnesses: none` once at
//! start, as every other surface does, and checks nothing here.

use super::finding::{kind, Finding};
use crate::report::FailureClass;
use sealgate_shared::commitment::Commitment;
use sealgate_shared::cosignature::{verify_quorum, CosignerKey};

/// One witness the enclave is configured to require: its C2SP vkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    pub vkey: String,
}

/// The witnesses (and quorum) the attested commitment names.
pub fn attested_witnesses(commitment: &Commitment) -> (Vec<Witness>, usize) {
    let witnesses = commitment
        .witnesses
        .iter()
        .map(|v| Witness { vkey: v.clone() })
        .collect();
    (witnesses, commitment.witness_quorum as usize)
}

/// What the monitor says at start about witnessing.
pub fn describe(witnesses: &[Witness], quorum: usize) -> Finding {
    if witnesses.is_empty() {
        Finding::ok(
            kind::WITNESSES,
            "none (the attested configuration names no witnesses; cosignatures are not checked)",
        )
    } else {
        let names: Vec<&str> = witnesses
            .iter()
            .map(|w| w.vkey.split('+').next().unwrap_or(&w.vkey))
            .collect();
        Finding::ok(
            kind::WITNESSES,
            format!(
                "{} configured, quorum {quorum} ({}); every checkpoint must carry a quorum of their cosignatures",
                witnesses.len(),
                names.join(", ")
            ),
        )
    }
}

/// Checks the cosignatures on a checkpoint `note` (already verified under the attested
/// checkpoint key) against the attested witnesses: a violation without a quorum of
/// valid ones; an OK line naming who cosigned when `report_ok` (a new checkpoint).
pub fn check_cosignatures(note: &str, witnesses: &[Witness], quorum: usize, report_ok: bool) -> Vec<Finding> {
    if witnesses.is_empty() {
        return Vec::new();
    }
    let keys: Result<Vec<CosignerKey>, _> = witnesses.iter().map(|w| w.vkey.parse::<CosignerKey>()).collect();
    let keys = match keys {
        Ok(k) => k,
        Err(e) => {
            return vec![Finding::violation(
                kind::CHECKPOINT_COSIGNATURES,
                FailureClass::Signature,
                format!("the attested commitment names a witness key that does not parse: {e}"),
            )]
        }
    };
    match verify_quorum(note, &keys, quorum) {
        Ok(valid) if report_ok => {
            let who: Vec<String> = valid
                .iter()
                .map(|c| format!("{} at {}", keys[c.key].name(), c.timestamp))
                .collect();
            vec![Finding::ok(
                kind::CHECKPOINT_COSIGNATURES,
                format!(
                    "{} of {} witnesses cosigned (quorum {quorum}): {}",
                    valid.len(),
                    keys.len(),
                    who.join(", ")
                ),
            )]
        }
        Ok(_) => Vec::new(),
        Err(e) => vec![Finding::violation(
            kind::CHECKPOINT_COSIGNATURES,
            FailureClass::Signature,
            format!(
                "the served checkpoint lacks a quorum of the attested witnesses' cosignatures ({e}): the enclave \
                 released no token under it, so this is not the history the witnesses saw, or they were stripped"
            ),
        )],
    }
}
