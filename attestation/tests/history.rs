//! `verify_history` (`all --since`) against a real in-memory log: a log that only grew
//! passes; a shrunk log, a forked history, and a saved note under another key fail with
//! the right class.

mod common;

use common::{sign_checkpoint, signing_key, verifier_key, Fixture, ORIGIN};
use sealgate_attestation::log::{verify_history, LogError};
use sealgate_attestation::report::FailureClass;
use sealgate_shared::merkle::proof::TreeStore;
use sealgate_shared::merkle::MerkleError;
use sealgate_shared::note::{Checkpoint, NoteError};

/// The checkpoint of the first `size` leaves of `f`, signed by `f`'s key.
fn saved_at(f: &Fixture, size: u64) -> String {
    let cp = Checkpoint {
        origin: ORIGIN.to_string(),
        size,
        root: f.store.root(size).expect("in range"),
    };
    sign_checkpoint(&f.sk, &cp)
}

fn check(f: &Fixture, saved: &str) -> Result<String, LogError> {
    verify_history(&f.honest(), &f.vk(), saved, &f.checkpoint())
}

#[test]
fn a_log_that_only_grew_is_consistent() {
    let f = Fixture::new(2345, 97);
    for size in [1u64, 2, 3, 7, 8, 1000, 1024, 2000, 2344] {
        let detail = check(&f, &saved_at(&f, size)).unwrap_or_else(|e| panic!("size {size}: {e}"));
        assert!(detail.contains("consistency proof"), "{detail}");
    }
    // Unchanged since the saved checkpoint: the same note passes without a proof.
    let detail = check(&f, &saved_at(&f, f.size())).expect("same checkpoint");
    assert!(detail.contains("unchanged"), "{detail}");
    // The empty log is extended by everything.
    check(&f, &saved_at(&f, 0)).expect("empty saved log");
}

#[test]
fn a_shrunk_log_is_history_inconsistent() {
    let big = Fixture::new(50, 7);
    let saved = saved_at(&big, 50);
    // The host now serves only the first 40 leaves, validly signed by the same key.
    let small = Fixture::new(40, 7);
    assert_eq!(small.vk(), big.vk());
    let err = check(&small, &saved).expect_err("a shrunk log must fail");
    assert_eq!(err, LogError::Truncated { saved: 50, current: 40 });
    assert_eq!(err.class(), FailureClass::History);
    assert_eq!(err.class().exit_code(), 14);
}

#[test]
fn a_forked_history_is_history_inconsistent() {
    let f = Fixture::new(300, 11);
    // The same key signed another root at size 100: a fork (split view).
    let mut other = TreeStore::new();
    for (i, leaf) in f.leaves.iter().take(100).enumerate() {
        let mut bytes = leaf.clone();
        if i == 42 {
            bytes.push(b' ');
        }
        other.push(sealgate_shared::merkle::leaf_hash(&bytes));
    }
    let forked = Checkpoint {
        origin: ORIGIN.to_string(),
        size: 100,
        root: other.root(100).expect("in range"),
    };
    assert_ne!(forked.root, f.store.root(100).unwrap());
    let err = check(&f, &sign_checkpoint(&f.sk, &forked)).expect_err("a fork must fail");
    assert!(
        matches!(
            err,
            LogError::Inconsistent {
                from: 100,
                to: 300,
                source: MerkleError::RootMismatch
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), FailureClass::History);

    // At the current size itself, a different signed root is a fork too.
    let mut same_size = f.checkpoint();
    same_size.root[0] ^= 1;
    let err = check(&f, &sign_checkpoint(&f.sk, &same_size)).expect_err("fork at equal size");
    assert!(matches!(err, LogError::Forked { size: 300, .. }), "{err:?}");
    assert_eq!(err.class().exit_code(), 14);
}

#[test]
fn a_saved_note_under_another_key_is_refused() {
    let f = Fixture::new(60, 7);
    let other = signing_key(99);
    assert_ne!(verifier_key(&other), f.vk());
    let cp = Checkpoint {
        origin: ORIGIN.to_string(),
        size: 30,
        root: f.store.root(30).unwrap(),
    };
    let err = check(&f, &sign_checkpoint(&other, &cp)).expect_err("another key must fail");
    assert!(
        matches!(
            err,
            LogError::SavedSignature {
                source: NoteError::NoSignature(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), FailureClass::Signature);

    // A tampered size line breaks the signature.
    let tampered = saved_at(&f, 30).replacen("\n30\n", "\n31\n", 1);
    let err = check(&f, &tampered).expect_err("tampered note must fail");
    assert!(
        matches!(
            err,
            LogError::SavedSignature {
                source: NoteError::BadSignature(_),
                ..
            }
        ),
        "{err:?}"
    );

    // Not a note at all: the auditor's own file is wrong (usage).
    let err = check(&f, "not a note").expect_err("garbage must fail");
    assert!(matches!(err, LogError::SavedMalformed(_)), "{err:?}");
    assert_eq!(err.class(), FailureClass::Usage);
}

#[test]
fn a_lying_consistency_proof_is_refused() {
    let f = Fixture::new(500, 13);
    let saved = saved_at(&f, 123);
    // The host serves proofs from another tree (e.g. one it rewrote after leaf 50).
    let mut log = f.honest();
    let mut rewritten = TreeStore::new();
    for (i, leaf) in f.leaves.iter().enumerate() {
        let mut bytes = leaf.clone();
        if i == 50 {
            bytes.push(b' ');
        }
        rewritten.push(sealgate_shared::merkle::leaf_hash(&bytes));
    }
    log.store = rewritten;
    let err = verify_history(&log, &f.vk(), &saved, &f.checkpoint()).expect_err("must fail");
    assert!(matches!(err, LogError::Inconsistent { .. }), "{err:?}");
}
