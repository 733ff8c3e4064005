//! `verify_log` against a real in-memory log, honest and tampered with in every way a
//! host could: each lie must fail with the right error and exit code.

mod common;

use common::{make_jwt, reindex, sign_checkpoint, signing_key, verifier_key, Fixture, MemoryLog};
use sealgate_attestation::jwt::Token;
use sealgate_attestation::log::{verify_log, LogError, LogOptions, LogReport, Scan, TokenProblem};
use sealgate_attestation::report::{render_json, render_text};
use sealgate_shared::leaf::TokenLeafError;
use sealgate_shared::merkle::MerkleError;
use sealgate_shared::note::{Checkpoint, NoteError};

/// 2345 leaves: three pages, the last one partial; a token every 97 leaves.
fn fixture() -> Fixture {
    Fixture::new(2345, 97)
}

fn all_tokens(f: &Fixture) -> Vec<Token> {
    f.issued.iter().map(|t| t.token()).collect()
}

fn run(log: &MemoryLog, opts: LogOptions) -> LogReport {
    verify_log(log, &opts)
}

/// The auditor with a key that reads every leaf: the checks on contents apply.
fn run_plain(log: &MemoryLog) -> LogReport {
    run(
        log,
        LogOptions {
            scan: Scan::Contents,
            ..LogOptions::default()
        },
    )
}

/// An anonymous verifier: public hashes only.
fn run_anonymous(log: &MemoryLog, tokens: Vec<Token>) -> LogReport {
    run(
        log,
        LogOptions {
            tokens,
            ..LogOptions::default()
        },
    )
}

fn failure(report: &LogReport) -> &LogError {
    report.first_failure().expect("a check must fail")
}

#[test]
fn honest_log_with_tokens_verifies() {
    let f = fixture();
    let log = f.honest();
    let opts = LogOptions {
        pinned_key: Some(f.vk()),
        tokens: all_tokens(&f),
        scan: Scan::Contents,
        ..LogOptions::default()
    };
    assert!(opts.tokens.len() > 20);
    let report = run(&log, opts);
    assert!(report.verified(), "{}", render_text(&report));
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.checkpoint, Some(f.checkpoint()));
    assert!(report.key_pinned);
    let text = render_text(&report);
    assert!(text.ends_with("VERIFIED\n"), "{text}");
    assert!(!text.contains("FAIL"));
    let json = render_json(&report);
    assert_eq!(json["verified"], true);
    assert_eq!(json["exit_code"], 0);
    assert_eq!(json["checkpoint"]["size"], 2345);

    // Pages are contiguous, at most 1000 leaves, and stop at the checkpoint size.
    let calls = log.entries_calls.borrow().clone();
    assert_eq!(calls, vec![(0, 1000), (1000, 2000), (2000, 2345)]);
}

#[test]
fn unpinned_key_is_reported_as_trusted_on_first_fetch() {
    let f = fixture();
    let report = run_plain(&f.honest());
    assert!(report.verified());
    assert!(!report.key_pinned);
    let text = render_text(&report);
    assert!(text.contains("trusted on first fetch"), "{text}");
    assert_eq!(render_json(&report)["key_pinned"], false);
}

#[test]
fn empty_and_exact_page_logs_verify() {
    for n in [0u64, 1, 1000, 1001] {
        let f = Fixture::new(n, 5);
        let report = run(
            &f.honest(),
            LogOptions {
                pinned_key: None,
                tokens: all_tokens(&f),
                scan: Scan::Contents,
                ..LogOptions::default()
            },
        );
        assert!(report.verified(), "n={n}: {}", render_text(&report));
    }
}

#[test]
fn changed_leaf_byte_fails_root() {
    let f = fixture();
    let mut log = f.honest();
    // One digit of a timestamp: still a valid envelope at the right index.
    let leaf = &mut log.leaves[1500];
    let at = leaf.windows(5).position(|w| w == b"\"ts\":").expect("ts field") + 6;
    leaf[at] = if leaf[at] == b'9' { b'8' } else { b'9' };
    let report = run_plain(&log);
    assert!(
        matches!(failure(&report), LogError::RootMismatch { size: 2345, .. }),
        "{}",
        render_text(&report)
    );
    assert_eq!(report.exit_code(), 5);
}

#[test]
fn leaf_that_is_not_an_envelope_fails() {
    let f = fixture();
    let mut log = f.honest();
    log.leaves[10][0] = b'[';
    let report = run_plain(&log);
    assert!(matches!(failure(&report), LogError::BadLeaf { index: 10, .. }));
    assert_eq!(report.exit_code(), 5);

    let mut log = f.honest();
    log.leaves[11] = String::from_utf8(log.leaves[11].clone())
        .unwrap()
        .replacen("\"v\":1", "\"v\":2", 1)
        .into_bytes();
    let report = run_plain(&log);
    assert_eq!(failure(&report), &LogError::WrongVersion { index: 11, v: 2 });
    assert_eq!(report.exit_code(), 5);
}

#[test]
fn deleted_leaf_fails() {
    let f = fixture();
    // Plainly deleted: the next leaf shows up at the wrong position.
    let mut log = f.honest();
    log.leaves.remove(700);
    let report = run_plain(&log);
    assert_eq!(
        failure(&report),
        &LogError::WrongIndex {
            position: 700,
            claimed: 701
        }
    );
    assert_eq!(report.exit_code(), 5);

    // Deleted and renumbered: the log is one leaf short of the signed size.
    let mut log = f.honest();
    log.leaves.remove(700);
    reindex(&mut log.leaves);
    let report = run_plain(&log);
    assert_eq!(
        failure(&report),
        &LogError::PageLength {
            start: 2000,
            end: 2345,
            got: 344
        }
    );
    assert_eq!(report.exit_code(), 5);

    // Deleted, renumbered and padded back to size: only the root catches it.
    let mut log = f.honest();
    log.leaves.remove(700);
    let last = log.leaves[5].clone();
    log.leaves.push(last);
    reindex(&mut log.leaves);
    let report = run_plain(&log);
    assert!(matches!(failure(&report), LogError::RootMismatch { .. }));
    assert_eq!(report.exit_code(), 5);
}

#[test]
fn reordered_leaves_fail() {
    let f = fixture();
    let mut log = f.honest();
    log.leaves.swap(1200, 1201);
    let report = run_plain(&log);
    assert_eq!(
        failure(&report),
        &LogError::WrongIndex {
            position: 1200,
            claimed: 1201
        }
    );
    assert_eq!(report.exit_code(), 5);

    let mut log = f.honest();
    log.leaves.swap(1200, 1201);
    reindex(&mut log.leaves);
    let report = run_plain(&log);
    assert!(matches!(failure(&report), LogError::RootMismatch { .. }));
    assert_eq!(report.exit_code(), 5);
}

#[test]
fn inserted_leaf_fails() {
    let f = fixture();
    let mut log = f.honest();
    let forged = log.leaves[300].clone();
    log.leaves.insert(300, forged);
    let report = run_plain(&log);
    assert_eq!(
        failure(&report),
        &LogError::WrongIndex {
            position: 301,
            claimed: 300
        }
    );
    assert_eq!(report.exit_code(), 5);

    let mut log = f.honest();
    let forged = log.leaves[300].clone();
    log.leaves.insert(300, forged);
    reindex(&mut log.leaves);
    let report = run_plain(&log);
    assert!(matches!(failure(&report), LogError::RootMismatch { .. }));
    assert_eq!(report.exit_code(), 5);
}

#[test]
fn short_or_wrong_page_fails() {
    let f = fixture();
    let mut log = f.honest();
    log.short_page_at = Some(1000);
    let report = run_plain(&log);
    assert_eq!(
        failure(&report),
        &LogError::PageLength {
            start: 1000,
            end: 2000,
            got: 999
        }
    );
    assert_eq!(report.exit_code(), 5);

    let mut log = f.honest();
    log.wrong_range_at = Some(0);
    let report = run_plain(&log);
    assert!(matches!(
        failure(&report),
        LogError::WrongRange {
            start: 0,
            end: 1000,
            ..
        }
    ));
    assert_eq!(report.exit_code(), 5);
}

#[test]
fn checkpoint_signed_by_another_key_fails() {
    let f = fixture();
    let mut log = f.honest();
    log.checkpoint = sign_checkpoint(&signing_key(8), &f.checkpoint());
    let report = run_plain(&log);
    assert!(matches!(
        failure(&report),
        LogError::CheckpointSignature {
            source: NoteError::NoSignature(_),
            ..
        }
    ));
    assert_eq!(report.exit_code(), 4);
    // Nothing past the checkpoint is judged without a trusted root.
    assert_eq!(report.checks.len(), 2);
    assert!(report.checkpoint.is_none());
}

#[test]
fn tampered_checkpoint_size_fails() {
    let f = fixture();
    let mut log = f.honest();
    log.checkpoint = log.checkpoint.replacen("\n2345\n", "\n2344\n", 1);
    let report = run_plain(&log);
    assert!(matches!(
        failure(&report),
        LogError::CheckpointSignature {
            source: NoteError::BadSignature(_),
            ..
        }
    ));
    assert_eq!(report.exit_code(), 4);
}

#[test]
fn garbage_checkpoint_is_a_malformed_response() {
    let f = fixture();
    let mut log = f.honest();
    log.checkpoint = "not a note".into();
    let report = run_plain(&log);
    assert!(matches!(failure(&report), LogError::CheckpointMalformed(_)));
    assert_eq!(report.exit_code(), 3);

    let mut log = f.honest();
    log.key = "nonsense".into();
    let report = run_plain(&log);
    assert!(matches!(failure(&report), LogError::KeyMalformed(_)));
    assert_eq!(report.exit_code(), 3);
}

#[test]
fn pinned_key_mismatch_fails() {
    // The host consistently uses another key: signature fine, but not the pinned signer.
    let f = fixture();
    let other = signing_key(9);
    let mut log = f.honest();
    log.key = verifier_key(&other).to_string();
    log.checkpoint = sign_checkpoint(&other, &f.checkpoint());
    assert!(run_plain(&log).verified(), "self-consistent with its own key");
    let report = run(
        &log,
        LogOptions {
            pinned_key: Some(f.vk()),
            tokens: vec![],
            scan: Scan::Contents,
            ..LogOptions::default()
        },
    );
    assert!(matches!(failure(&report), LogError::KeyMismatch { .. }));
    assert_eq!(report.exit_code(), 4);
    assert_eq!(report.checks.len(), 1);
}

#[test]
fn token_whose_leaf_hash_differs_fails() {
    let f = fixture();
    let t = &f.issued[3];
    let mut log = f.honest();
    // The lookup serves a leaf for the same JWT that is not the one in the tree.
    let rec = log.token_records.get_mut(&t.jti).unwrap();
    rec.leaf = String::from_utf8(rec.leaf.clone())
        .unwrap()
        .replacen("key_0001", "key_0002", 1)
        .into_bytes();
    let report = run(
        &log,
        LogOptions {
            pinned_key: None,
            tokens: vec![t.token()],
            scan: Scan::Contents,
            ..LogOptions::default()
        },
    );
    assert_eq!(
        failure(&report),
        &LogError::Token {
            jti: t.jti.clone(),
            problem: TokenProblem::Inclusion(MerkleError::RootMismatch)
        }
    );
    assert_eq!(report.exit_code(), 6);
}

#[test]
fn forged_inclusion_proof_fails() {
    let f = fixture();
    let t = f.issued[5].token();
    let mut log = f.honest();
    log.proof_tamper = Some(|p| p[2][0] ^= 1);
    let report = run(
        &log,
        LogOptions {
            pinned_key: None,
            tokens: vec![t.clone()],
            scan: Scan::Contents,
            ..LogOptions::default()
        },
    );
    assert!(matches!(
        failure(&report),
        LogError::Token {
            problem: TokenProblem::Inclusion(MerkleError::RootMismatch),
            ..
        }
    ));
    assert_eq!(report.exit_code(), 6);

    let mut log = f.honest();
    log.proof_tamper = Some(|p| {
        p.pop();
    });
    let report = run(
        &log,
        LogOptions {
            pinned_key: None,
            tokens: vec![t],
            scan: Scan::Contents,
            ..LogOptions::default()
        },
    );
    assert!(matches!(
        failure(&report),
        LogError::Token {
            problem: TokenProblem::Inclusion(MerkleError::ProofLength),
            ..
        }
    ));
    assert_eq!(report.exit_code(), 6);
}

#[test]
fn jwt_not_in_log_fails() {
    let f = fixture();
    let stranger = Token::parse(&make_jwt("jti-never-issued", "ws:w1:agent:x", 1_800_000_000)).unwrap();
    let report = run(
        &f.honest(),
        LogOptions {
            pinned_key: None,
            tokens: vec![f.issued[0].token(), stranger],
            scan: Scan::Contents,
            ..LogOptions::default()
        },
    );
    assert_eq!(
        failure(&report),
        &LogError::Token {
            jti: "jti-never-issued".into(),
            problem: TokenProblem::NotInLog
        }
    );
    assert_eq!(report.exit_code(), 6);
    // The other token still proves.
    let ok: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.result.is_ok())
        .map(|c| c.name.as_str())
        .collect();
    assert!(ok.contains(&format!("token {}", f.issued[0].jti).as_str()), "{ok:?}");
}

#[test]
fn a_different_jwt_with_a_logged_jti_fails() {
    // Same jti as a logged token, different bytes (e.g. a re-signed or edited token).
    let f = fixture();
    let t = &f.issued[2];
    let forged = Token::parse(&make_jwt(&t.jti, "ws:w1:agent:mallory", 1_900_000_000)).unwrap();
    let report = run(
        &f.honest(),
        LogOptions {
            pinned_key: None,
            tokens: vec![forged],
            scan: Scan::Contents,
            ..LogOptions::default()
        },
    );
    assert!(matches!(
        failure(&report),
        LogError::Token {
            problem: TokenProblem::Leaf(TokenLeafError::HashMismatch { .. }),
            ..
        }
    ));
    assert_eq!(report.exit_code(), 6);
}

#[test]
fn token_leaf_of_the_wrong_kind_or_jti_fails() {
    let f = fixture();
    let t = &f.issued[1];

    // The host points the jti at a leaf that is not a token leaf.
    let mut log = f.honest();
    let rec = log.token_records.get_mut(&t.jti).unwrap();
    rec.index = 1;
    rec.leaf = log.leaves[1].clone();
    let report = run(
        &log,
        LogOptions {
            pinned_key: None,
            tokens: vec![t.token()],
            scan: Scan::Contents,
            ..LogOptions::default()
        },
    );
    assert!(matches!(
        failure(&report),
        LogError::Token {
            problem: TokenProblem::Leaf(TokenLeafError::WrongKind(_)),
            ..
        }
    ));
    assert_eq!(report.exit_code(), 6);

    // ... or at another token's leaf.
    let mut log = f.honest();
    let other = &f.issued[2];
    let rec = log.token_records.get_mut(&t.jti).unwrap();
    rec.index = other.index;
    rec.leaf = log.leaves[other.index as usize].clone();
    let report = run(
        &log,
        LogOptions {
            pinned_key: None,
            tokens: vec![t.token()],
            scan: Scan::Contents,
            ..LogOptions::default()
        },
    );
    assert!(matches!(
        failure(&report),
        LogError::Token {
            problem: TokenProblem::Leaf(TokenLeafError::WrongJti(_)),
            ..
        }
    ));

    // ... or claims an index the leaf itself contradicts.
    let mut log = f.honest();
    log.token_records.get_mut(&t.jti).unwrap().index += 1;
    let report = run(
        &log,
        LogOptions {
            pinned_key: None,
            tokens: vec![t.token()],
            scan: Scan::Contents,
            ..LogOptions::default()
        },
    );
    assert!(matches!(
        failure(&report),
        LogError::Token {
            problem: TokenProblem::Leaf(TokenLeafError::IndexMismatch { .. }),
            ..
        }
    ));
}

#[test]
fn token_after_the_checkpoint_is_not_proven() {
    // The host's checkpoint lags: it covers only the first 1000 leaves.
    let f = fixture();
    let mut log = f.honest();
    let cp = Checkpoint {
        origin: common::ORIGIN.into(),
        size: 1000,
        root: f.store.root(1000).unwrap(),
    };
    log.checkpoint = sign_checkpoint(&f.sk, &cp);
    let late = f.issued.iter().find(|t| t.index >= 1000).unwrap();
    let early = f.issued.iter().find(|t| t.index < 1000).unwrap();
    let report = run(
        &log,
        LogOptions {
            pinned_key: None,
            tokens: vec![early.token(), late.token()],
            scan: Scan::Contents,
            ..LogOptions::default()
        },
    );
    assert_eq!(
        failure(&report),
        &LogError::Token {
            jti: late.jti.clone(),
            problem: TokenProblem::NotInCheckpoint {
                index: late.index,
                size: 1000
            }
        }
    );
    assert_eq!(report.exit_code(), 6);
    assert_eq!(log.entries_calls.borrow().as_slice(), &[(0, 1000)]);
}

#[test]
fn token_leaf_differing_from_the_scanned_log_is_caught() {
    // The host serves a tampered log but the true leaf (with a valid proof) on lookup:
    // the root check fails first (exit 5), and the token check names the mismatch.
    let f = fixture();
    let t = &f.issued[4];
    let mut log = f.honest();
    let i = t.index as usize;
    log.leaves[i] = String::from_utf8(log.leaves[i].clone())
        .unwrap()
        .replacen("key_0001", "key_0666", 1)
        .into_bytes();
    let report = run(
        &log,
        LogOptions {
            pinned_key: None,
            tokens: vec![t.token()],
            scan: Scan::Contents,
            ..LogOptions::default()
        },
    );
    assert!(matches!(failure(&report), LogError::RootMismatch { .. }));
    assert_eq!(report.exit_code(), 5);
    let token_check = report.checks.last().unwrap();
    assert_eq!(
        token_check.result,
        Err(LogError::Token {
            jti: t.jti.clone(),
            problem: TokenProblem::DiffersFromLog(t.index)
        })
    );
    let text = render_text(&report);
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("FAILED: root of the 2345 served leaves"),
        "{text}"
    );
    let json = render_json(&report);
    assert_eq!(json["exit_code"], 5);
    assert_eq!(json["failure"]["class"], "log_content");
}

#[test]
fn report_text_has_one_line_per_check() {
    let f = fixture();
    let report = run(
        &f.honest(),
        LogOptions {
            pinned_key: Some(f.vk()),
            tokens: all_tokens(&f),
            scan: Scan::Contents,
            ..LogOptions::default()
        },
    );
    let text = render_text(&report);
    assert_eq!(text.lines().count(), report.checks.len() + 1);
    assert!(
        text.lines().all(|l| l.starts_with("ok    ") || l == "VERIFIED"),
        "{text}"
    );
}

// --- hole 4: contents are private, integrity is public -------------------------------

#[test]
fn hole4_anonymous_verifier_recomputes_the_root_from_hashes_alone() {
    let f = fixture();
    let log = f.honest();
    let report = run_anonymous(&log, all_tokens(&f));
    assert!(report.verified(), "{}", render_text(&report));
    assert_eq!(report.scan, Scan::Hashes);
    assert_eq!(report.readable, None);
    // Not one leaf's contents was asked for; hashes in pages of at most 1000.
    assert!(log.entries_calls.borrow().is_empty());
    assert_eq!(
        log.hashes_calls.borrow().as_slice(),
        &[(0, 1000), (1000, 2000), (2000, 2345)]
    );
    let json = render_json(&report);
    assert_eq!(json["scan"], "hashes");
    assert_eq!(json["exit_code"], 0);
}

#[test]
fn hole4_anonymous_verifier_still_catches_a_changed_leaf() {
    let f = fixture();
    let mut log = f.honest();
    let leaf = &mut log.leaves[1500];
    let at = leaf.windows(5).position(|w| w == b"\"ts\":").expect("ts field") + 6;
    leaf[at] = if leaf[at] == b'9' { b'8' } else { b'9' };
    let report = run_anonymous(&log, vec![]);
    assert!(matches!(failure(&report), LogError::RootMismatch { size: 2345, .. }));
    assert_eq!(report.exit_code(), 5);
    // A short hash page is a content failure too.
    let mut log = f.honest();
    log.short_page_at = Some(1000);
    let report = run_anonymous(&log, vec![]);
    assert!(matches!(failure(&report), LogError::PageLength { start: 1000, .. }));
}

#[test]
fn hole4_auditor_catches_a_leaf_that_does_not_hash_to_its_served_hash() {
    // The hashes are right (so the root is), but the bytes served to the auditor for
    // leaf 1234 were changed: only the contents check can see it.
    let f = fixture();
    let mut log = f.honest();
    let changed = String::from_utf8(log.leaves[1234].clone())
        .unwrap()
        .replacen("\"ok\":true", "\"ok\":false", 1)
        .into_bytes();
    assert_ne!(changed, log.leaves[1234]);
    log.served_contents.insert(1234, changed);
    assert!(run_anonymous(&log, vec![]).verified(), "the public hashes are intact");
    let report = run_plain(&log);
    assert!(
        matches!(failure(&report), LogError::LeafHashMismatch { index: 1234, .. }),
        "{}",
        render_text(&report)
    );
    assert_eq!(report.exit_code(), 5);
    assert_eq!(render_json(&report)["failure"]["class"], "log_content");
}

#[test]
fn hole4_auditor_of_one_workspace_checks_its_leaves_and_the_rest_by_hash() {
    let f = fixture();
    let mut log = f.honest();
    log.readable = Some(|i| i % 3 == 0);
    let report = run_plain(&log);
    assert!(report.verified(), "{}", render_text(&report));
    assert_eq!(report.readable, Some((0..2345).filter(|i| i % 3 == 0).count() as u64));
    let text = render_text(&report);
    assert!(text.contains("782 readable with this key"), "{text}");
    assert_eq!(render_json(&report)["readable"], 782);
    // An entry placed at another index than it says is caught before the root.
    let mut shifted = f.honest();
    shifted.misindex_at = Some(42);
    let report = run_plain(&shifted);
    assert_eq!(
        failure(&report),
        &LogError::EntryIndex {
            position: 42,
            claimed: 43
        }
    );
    assert_eq!(report.exit_code(), 5);
    // A changed leaf the key cannot read is still caught by the root.
    log.leaves[1] = String::from_utf8(log.leaves[1].clone())
        .unwrap()
        .replacen("\"ok\":true", "\"ok\":false", 1)
        .into_bytes();
    let report = run_plain(&log);
    assert!(matches!(failure(&report), LogError::RootMismatch { .. }));
}

/// An expired token is still proven (the log shows it was issued), and the check says
/// it expired, judged at the given time; before its `exp` it says it is not expired.
#[test]
fn expired_token_is_proven_and_reported_as_expired() {
    let f = Fixture::new(300, 40);
    let log = f.honest();
    let t = &f.issued[2];
    let exp = 1_732_300_300 + t.index;
    let judge = |at: Option<u64>| {
        let report = run(
            &log,
            LogOptions {
                tokens: vec![t.token()],
                judged_at: at,
                ..LogOptions::default()
            },
        );
        assert!(report.verified(), "{}", render_text(&report));
        assert_eq!(report.exit_code(), 0);
        let check = report.checks.last().expect("the token check");
        assert_eq!(check.name, format!("token {}", t.jti));
        check.result.as_ref().expect("proven").clone()
    };

    let after = judge(Some(exp + 90));
    assert!(after.contains("inclusion proof verifies"), "{after}");
    assert!(
        after.contains(&format!("EXPIRED 90 s before the judging time {}", exp + 90)),
        "{after}"
    );
    // `exp` itself is the first second the token is no longer valid (RFC 7519).
    assert!(judge(Some(exp)).contains("EXPIRED 0 s before"));

    let before = judge(Some(exp - 5));
    assert!(before.contains("not expired at the judging time"), "{before}");
    assert!(before.contains("(5 s left)"), "{before}");
    assert!(!before.contains("EXPIRED"), "{before}");

    // Without a judging time the library says nothing about expiry.
    let silent = judge(None);
    assert!(
        !silent.contains("EXPIRED") && !silent.contains("not expired"),
        "{silent}"
    );
}
