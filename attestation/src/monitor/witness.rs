//! Cosignatures on checkpoints (C2SP `tlog-witness`, `cosignature/v1`): the seam where
//! the monitor will check them.
//!
//! Witnessing is not part of the attested configuration yet (the commitment names no
//! witnesses), so there is nothing to check: with no witnesses configured the monitor
//! says `witnesses: none` once at start, as every other surface will. When the
//! commitment gains its witness keys and quorum, [`attested_witnesses`] reads them and
//! [`check_cosignatures`] verifies the note's cosignature lines against them (a quorum
//! of valid, timestamped `cosignature/v1` signatures over this checkpoint), returning
//! one finding per problem; the round already calls it for every new checkpoint.

use super::finding::Finding;
use sealgate_shared::commitment::Commitment;

/// One witness the enclave is configured to require: its C2SP vkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    pub vkey: String,
}

/// The witnesses (and quorum) the attested commitment names. Today's commitment has no
/// such field, so: none, quorum 0.
pub fn attested_witnesses(_commitment: &Commitment) -> (Vec<Witness>, usize) {
    (Vec::new(), 0)
}

/// What the monitor says at start about witnessing.
pub fn describe(witnesses: &[Witness], quorum: usize) -> Finding {
    if witnesses.is_empty() {
        Finding::ok(
            super::finding::kind::WITNESSES,
            "none (the attested configuration names no witnesses; cosignatures are not checked)",
        )
    } else {
        Finding::ok(
            super::finding::kind::WITNESSES,
            format!("{} configured, quorum {quorum}", witnesses.len()),
        )
    }
}

/// Checks the cosignatures on a checkpoint `note` (already verified under the attested
/// checkpoint key) against the attested witnesses. With none configured there is
/// nothing to check.
pub fn check_cosignatures(_note: &str, witnesses: &[Witness], _quorum: usize) -> Vec<Finding> {
    if witnesses.is_empty() {
        return Vec::new();
    }
    // Unreachable until `attested_witnesses` returns witnesses; kept honest rather than
    // silently passing if that happens first.
    vec![Finding::error(
        super::finding::kind::WITNESSES,
        crate::report::FailureClass::Signature,
        "the attested configuration names witnesses, but this monitor cannot check cosignatures yet",
    )]
}
