//! Verifying the audit log a host serves, against the checkpoint the enclave signed.
//!
//! The host stores leaves and serves them; only the enclave signs checkpoints. So the
//! auditor trusts nothing the host says except through the checkpoint signature:
//!
//! 1. fetch the note verifier key (pinned with `--key`, else trusted on first fetch;
//!    `sealgate-verify all` pins it to the key the enclave attested);
//! 2. fetch the checkpoint and verify its signature → `(origin, size, root)`;
//! 3. stream the log `[0, size)` page by page, fold the leaf hashes into a
//!    [`CompactRange`] and compare the root — this proves the host serves *exactly*
//!    the log the enclave signed, with nothing dropped, changed, reordered or
//!    inserted. Leaf hashes are public, so anyone can do this ([`Scan::Hashes`]);
//!    with an API key ([`Scan::Contents`]) the scan reads the entries instead and also
//!    checks every leaf the key may read: its bytes hash to the hash that went into
//!    the root, and it is a valid envelope at its own index;
//! 4. for each token the auditor holds, prove its leaf is in that log: the holder
//!    fetches it by presenting the token; the leaf must describe this very JWT (hash
//!    of its bytes), an inclusion proof must lead to the signed root, and the leaf must
//!    hash to what the full scan saw at that index.
//!
//! Everything here is pure over a [`LogSource`]: no I/O of its own, no panics on what
//! the source returns, and memory bounded by what the source actually delivers (the
//! claimed size only bounds a loop, never an allocation). Leaves are not kept after
//! hashing except those at the indices of the tokens being proven.

use crate::fetch::{FetchError, LogSource, TokenRecord, MAX_PAGE};
use crate::jwt::Token;
use crate::report::FailureClass;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sealgate_shared::leaf::{self, LEAF_VERSION};
use sealgate_shared::merkle::{self, CompactRange, Hash, MerkleError};
use sealgate_shared::note::{Checkpoint, NoteError, VerifierKey};
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

/// How the log is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scan {
    /// Public leaf hashes only (`/v1/audit/hashes`): the root, nothing about contents.
    #[default]
    Hashes,
    /// Entries with the source's API key (`--key sg_…`): the root, and every leaf the
    /// key may read checked against its hash.
    Contents,
}

/// What to verify beyond the log itself.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// The checkpoint key the auditor expects (`--verifier-key`); `None` trusts the
    /// host's key on first fetch.
    pub pinned_key: Option<VerifierKey>,
    /// Tokens to prove (`--token`).
    pub tokens: Vec<Token>,
    /// Hashes only, or contents too.
    pub scan: Scan,
    /// The Unix time at which each proven token's expiry is judged (`--at`, else now).
    /// An expired token is still proven: the log shows it was issued, which is what an
    /// auditor holding an old token asks; the report only says that it expired, so
    /// nobody mistakes "in the log" for "valid now". `None` says nothing about expiry.
    pub judged_at: Option<u64>,
}

/// Why a token is not proven to be in the log (exit code 6).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenProblem {
    #[error("not in the log: the host has no leaf for this exact token (looked up by jti, presenting the token)")]
    NotInLog,
    #[error("host answered the lookup with jti {0:?}")]
    WrongRecord(String),
    /// The leaf served is not this token's `token.issued` leaf (the check
    /// `sealgate_shared::leaf::token_issued_for` makes for every proof of a token).
    #[error(transparent)]
    Leaf(#[from] leaf::TokenLeafError),
    #[error(
        "leaf index {index} is not covered by the checkpoint (size {size}); retry once a newer checkpoint is signed"
    )]
    NotInCheckpoint { index: u64, size: u64 },
    #[error("inclusion proof does not verify: {0}")]
    Inclusion(MerkleError),
    #[error("leaf served for the token differs from log entry {0}")]
    DiffersFromLog(u64),
    #[error("log entry {0} was not read (the log scan stopped early), so the leaf cannot be matched with it")]
    LogEntryUnread(u64),
}

/// A failed check. Each variant belongs to one [`FailureClass`], hence one exit code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    /// Network, HTTP or response-format failure (exit 3).
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The host's key text is not a verifier key (exit 3).
    #[error("verifier key from the host is malformed: {0}")]
    KeyMalformed(NoteError),
    /// The host's key is not the pinned one (exit 4).
    #[error("host's verifier key {fetched} differs from the pinned key {pinned}")]
    KeyMismatch { pinned: String, fetched: String },
    /// The checkpoint is not even a signed note (exit 3).
    #[error("checkpoint is malformed: {0}")]
    CheckpointMalformed(NoteError),
    /// The checkpoint is not validly signed by the key (exit 4).
    #[error("checkpoint does not verify under {key}: {source}")]
    CheckpointSignature { key: String, source: NoteError },
    /// The checkpoint lacks a quorum of the attested witnesses' cosignatures (exit 4).
    #[error("checkpoint lacks a quorum of the attested witnesses' cosignatures: {0}")]
    Cosignatures(String),
    /// The host answered a different range than asked (exit 5).
    #[error("asked for entries [{start}, {end}), host answered for [{got_start}, {got_end})")]
    WrongRange {
        start: u64,
        end: u64,
        got_start: u64,
        got_end: u64,
    },
    /// The host returned too few (or too many) leaves for a page (exit 5).
    #[error("entries [{start}, {end}): expected {} leaves, host returned {got}", end - start)]
    PageLength { start: u64, end: u64, got: usize },
    /// A leaf is not a valid envelope (exit 5).
    #[error("leaf {index} is not a valid envelope: {reason}")]
    BadLeaf { index: u64, reason: String },
    /// A leaf's version is not the one this tool understands (exit 5).
    #[error("leaf {index} has version {v}, expected {LEAF_VERSION}")]
    WrongVersion { index: u64, v: u32 },
    /// A leaf's own index differs from its position (exit 5): a leaf was dropped,
    /// inserted or moved.
    #[error("leaf at position {position} says index {claimed}")]
    WrongIndex { position: u64, claimed: u64 },
    /// An entry says it is at another index than its position (exit 5).
    #[error("entry at position {position} says index {claimed}")]
    EntryIndex { position: u64, claimed: u64 },
    /// A leaf's bytes do not hash to the hash served with them, which is the one that
    /// went into the root (exit 5): the contents were changed under the log.
    #[error("leaf {index}'s bytes hash to {actual}, but the host serves hash {served} for it")]
    LeafHashMismatch { index: u64, served: String, actual: String },
    /// The leaves do not hash to the checkpoint's root (exit 5).
    #[error("root of the {size} served leaves is {computed}, the checkpoint says {expected}")]
    RootMismatch {
        size: u64,
        computed: String,
        expected: String,
    },
    /// A token is not proven (exit 6).
    #[error("token {jti}: {problem}")]
    Token { jti: String, problem: TokenProblem },
    /// The saved checkpoint (`--since`) is not a signed note (exit 2: the auditor's file).
    #[error("saved checkpoint is malformed: {0}")]
    SavedMalformed(NoteError),
    /// The saved checkpoint is not validly signed by the key (exit 4).
    #[error("saved checkpoint does not verify under {key}: {source}")]
    SavedSignature { key: String, source: NoteError },
    /// The log is smaller than the saved checkpoint (exit 14).
    #[error("the log shrank: the saved checkpoint has size {saved}, the current one only {current}")]
    Truncated { saved: u64, current: u64 },
    /// Two signed checkpoints of the same size with different roots (exit 14).
    #[error(
        "forked history: the saved and the current checkpoint both have size {size}, but roots {saved} and {current}"
    )]
    Forked { size: u64, saved: String, current: String },
    /// The current checkpoint does not extend the saved one (exit 14).
    #[error("inconsistent history: the current checkpoint (size {to}) is not proven to extend the saved one (size {from}): {source}")]
    Inconsistent { from: u64, to: u64, source: MerkleError },
}

impl LogError {
    pub fn class(&self) -> FailureClass {
        match self {
            LogError::Fetch(_) | LogError::KeyMalformed(_) | LogError::CheckpointMalformed(_) => FailureClass::Fetch,
            LogError::KeyMismatch { .. } | LogError::CheckpointSignature { .. } | LogError::Cosignatures(_) => {
                FailureClass::Signature
            }
            LogError::WrongRange { .. }
            | LogError::PageLength { .. }
            | LogError::BadLeaf { .. }
            | LogError::WrongVersion { .. }
            | LogError::WrongIndex { .. }
            | LogError::EntryIndex { .. }
            | LogError::LeafHashMismatch { .. }
            | LogError::RootMismatch { .. } => FailureClass::LogContent,
            LogError::Token { .. } => FailureClass::Token,
            LogError::SavedMalformed(_) => FailureClass::Usage,
            LogError::SavedSignature { .. } => FailureClass::Signature,
            LogError::Truncated { .. } | LogError::Forked { .. } | LogError::Inconsistent { .. } => {
                FailureClass::History
            }
        }
    }
}

/// One line of the report: a named check and either what was established or why not.
#[derive(Debug, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub result: Result<String, LogError>,
}

/// Everything `sealgate-verify log` established or refuted, in order.
#[derive(Debug, Default)]
pub struct LogReport {
    /// The verifier key used, as a note key string, once fetched and parsed.
    pub key: Option<String>,
    /// Whether the key was pinned with `--verifier-key` (else trusted on first fetch).
    pub key_pinned: bool,
    /// How the log was read.
    pub scan: Scan,
    /// With [`Scan::Contents`]: how many leaves the key could read (and were checked).
    pub readable: Option<u64>,
    /// The verified checkpoint, once its signature checked out.
    pub checkpoint: Option<Checkpoint>,
    /// The signed note of that checkpoint, exactly as served (what `all --save` keeps).
    pub note: Option<String>,
    pub checks: Vec<Check>,
}

impl LogReport {
    fn push(&mut self, name: impl Into<String>, result: Result<String, LogError>) {
        self.checks.push(Check {
            name: name.into(),
            result,
        });
    }

    /// The first failed check's error, in report order.
    pub fn first_failure(&self) -> Option<&LogError> {
        self.checks.iter().find_map(|c| c.result.as_ref().err())
    }

    /// True when at least one check ran and every check passed.
    pub fn verified(&self) -> bool {
        !self.checks.is_empty() && self.first_failure().is_none()
    }

    /// The process exit code for this report (see [`crate::report`]).
    pub fn exit_code(&self) -> u8 {
        crate::report::exit_code(self)
    }
}

/// Runs every check of `sealgate-verify log` against `src`.
///
/// Stops early only when nothing further can be judged (no usable key or checkpoint);
/// a bad log still lets tokens be checked against the signed root.
pub fn verify_log(src: &dyn LogSource, opts: &LogOptions) -> LogReport {
    let mut report = LogReport {
        key_pinned: opts.pinned_key.is_some(),
        scan: opts.scan,
        ..LogReport::default()
    };

    let vk = match fetch_key(src, opts.pinned_key.as_ref()) {
        Ok(vk) => {
            let detail = if opts.pinned_key.is_some() {
                format!("{vk} (matches --verifier-key)")
            } else {
                format!(
                    "{vk} (trusted on first fetch: pass --verifier-key to pin it; or run `all` to pin the key the enclave attested)"
                )
            };
            report.key = Some(vk.to_string());
            report.push("key", Ok(detail));
            vk
        }
        Err(e) => {
            report.push("key", Err(e));
            return report;
        }
    };

    let cp = match fetch_checkpoint(src, &vk) {
        Ok((cp, note)) => {
            let detail = format!(
                "signature verifies; origin {}, size {}, root {}",
                cp.origin,
                cp.size,
                B64.encode(cp.root)
            );
            report.push("checkpoint", Ok(detail));
            report.checkpoint = Some(cp.clone());
            report.note = Some(note);
            cp
        }
        Err(e) => {
            report.push("checkpoint", Err(e));
            return report;
        }
    };

    // Look tokens up before the scan so the scan can keep just the leaves they point at.
    let lookups: Vec<Result<TokenRecord, LogError>> = opts.tokens.iter().map(|t| lookup_token(src, t)).collect();
    let keep: BTreeSet<u64> = lookups.iter().flatten().map(|r| r.index).collect();
    let mut kept: BTreeMap<u64, Hash> = BTreeMap::new();

    let scanned = match opts.scan {
        Scan::Hashes => scan_hashes(src, &cp, &keep, &mut kept).map(|(range, pages)| {
            let detail = format!(
                "{} leaf hashes in {pages} page(s) (public; leaf contents not read: pass --key sg_… to check those an auditor may read)",
                range.size()
            );
            (range, detail)
        }),
        Scan::Contents => scan_entries(src, &cp, &keep, &mut kept).map(|(range, pages, readable)| {
            report.readable = Some(readable);
            let detail = format!(
                "{} entries in {pages} page(s), each at its own index; {readable} readable with this key, each a v{LEAF_VERSION} envelope at its own index whose bytes hash to its served hash; {} hash-only (not this key's to read)",
                range.size(),
                range.size() - readable
            );
            (range, detail)
        }),
    };
    match scanned {
        Ok((range, detail)) => {
            report.push("entries", Ok(detail));
            let root = range.root();
            if root == cp.root {
                report.push(
                    "root",
                    Ok(format!(
                        "the served leaves hash to the checkpoint root {}",
                        B64.encode(root)
                    )),
                );
            } else {
                report.push(
                    "root",
                    Err(LogError::RootMismatch {
                        size: range.size(),
                        computed: B64.encode(root),
                        expected: B64.encode(cp.root),
                    }),
                );
            }
        }
        Err(e) => report.push("entries", Err(e)),
    }

    for (token, lookup) in opts.tokens.iter().zip(lookups) {
        let result = lookup.and_then(|record| prove_token(src, &cp, token, &record, &kept, opts.judged_at));
        report.push(format!("token {}", token.jti), result);
    }
    report
}

/// Fetches and parses the host's key, and holds it to the pin if there is one.
fn fetch_key(src: &dyn LogSource, pinned: Option<&VerifierKey>) -> Result<VerifierKey, LogError> {
    let text = src.key()?;
    let vk = VerifierKey::from_str(&text).map_err(LogError::KeyMalformed)?;
    match pinned {
        Some(p) if *p != vk => Err(LogError::KeyMismatch {
            pinned: p.to_string(),
            fetched: vk.to_string(),
        }),
        _ => Ok(vk),
    }
}

/// Fetches the checkpoint and opens it with `vk`; returns it and its note.
fn fetch_checkpoint(src: &dyn LogSource, vk: &VerifierKey) -> Result<(Checkpoint, String), LogError> {
    let note = src.checkpoint()?;
    let cp = open_checkpoint(vk, &note)?;
    Ok((cp, note))
}

/// Opens a signed checkpoint note with `vk`: [`LogError::CheckpointMalformed`] when it
/// is not a signed note at all, else [`LogError::CheckpointSignature`] on any failure.
pub fn open_checkpoint(vk: &VerifierKey, note: &str) -> Result<Checkpoint, LogError> {
    vk.open(note).map_err(|e| match e {
        // Not a signed note at all: a format problem, not a signature verdict.
        NoteError::Note(_) => LogError::CheckpointMalformed(e),
        other => LogError::CheckpointSignature {
            key: vk.to_string(),
            source: other,
        },
    })
}

/// Checks that `current` (a checkpoint already verified under `vk`) extends the
/// checkpoint in `saved_note`, a signed note an earlier run kept (`all --since`):
///
/// - the saved note must verify under `vk` (the attested key), else
///   [`LogError::SavedSignature`] (or [`LogError::SavedMalformed`]);
/// - a saved size above the current size is a truncated log ([`LogError::Truncated`]);
/// - equal sizes need equal roots ([`LogError::Forked`]);
/// - otherwise the host's consistency proof from the saved size to the current size
///   must verify between the two signed roots ([`LogError::Inconsistent`]).
///
/// Returns a description of what was established.
pub fn verify_history(
    src: &dyn LogSource,
    vk: &VerifierKey,
    saved_note: &str,
    current: &Checkpoint,
) -> Result<String, LogError> {
    let saved = open_checkpoint(vk, saved_note).map_err(|e| match e {
        LogError::CheckpointMalformed(e) => LogError::SavedMalformed(e),
        LogError::CheckpointSignature { key, source } => LogError::SavedSignature { key, source },
        other => other,
    })?;
    let (from, to) = (saved.size, current.size);
    if saved.origin != current.origin {
        // Unreachable with one key (the origin is the key's name), but cheap to refuse.
        return Err(LogError::SavedSignature {
            key: vk.to_string(),
            source: NoteError::Body("origin differs from the current checkpoint's"),
        });
    }
    if from > to {
        return Err(LogError::Truncated {
            saved: from,
            current: to,
        });
    }
    if from == to {
        if saved.root != current.root {
            return Err(LogError::Forked {
                size: from,
                saved: B64.encode(saved.root),
                current: B64.encode(current.root),
            });
        }
        return Ok(format!(
            "unchanged since the saved checkpoint: size {from}, root {}",
            B64.encode(current.root)
        ));
    }
    if from == 0 {
        return Ok(format!(
            "the saved checkpoint is the empty log; every log of size {to} extends it"
        ));
    }
    let proof = src.consistency_proof(from, to)?;
    if proof.from != from || proof.to != to {
        return Err(LogError::Fetch(FetchError::Malformed {
            what: format!("consistency proof from {from} to {to}"),
            reason: format!("host answered from {} to {}", proof.from, proof.to),
        }));
    }
    merkle::verify_consistency(from, to, &saved.root, &current.root, &proof.proof)
        .map_err(|source| LogError::Inconsistent { from, to, source })?;
    Ok(format!(
        "the log grew from {from} to {to} leaves; the consistency proof ({} hashes) verifies from the saved root {} to the current root {}",
        proof.proof.len(),
        B64.encode(saved.root),
        B64.encode(current.root)
    ))
}

/// Checks one leaf's envelope: parses, is version 1, and sits at its own index.
fn check_envelope(position: u64, bytes: &[u8]) -> Result<(), LogError> {
    let leaf = leaf::parse(bytes).map_err(|e| LogError::BadLeaf {
        index: position,
        reason: e.to_string(),
    })?;
    if leaf.v != LEAF_VERSION {
        return Err(LogError::WrongVersion {
            index: position,
            v: leaf.v,
        });
    }
    if leaf.index != position {
        return Err(LogError::WrongIndex {
            position,
            claimed: leaf.index,
        });
    }
    Ok(())
}

/// Streams the public leaf hashes `[0, cp.size)` in pages into a compact range; keeps
/// the hashes at `keep`. Returns the range and the number of pages.
fn scan_hashes(
    src: &dyn LogSource,
    cp: &Checkpoint,
    keep: &BTreeSet<u64>,
    kept: &mut BTreeMap<u64, Hash>,
) -> Result<(CompactRange, u64), LogError> {
    if let Some(tiles) = src.leaf_tiles(cp.size) {
        let hashes = tiles?;
        if hashes.len() as u64 != cp.size {
            return Err(LogError::Fetch(crate::fetch::FetchError::Malformed {
                what: "tiles".into(),
                reason: format!("{} leaf hashes for a tree of {}", hashes.len(), cp.size),
            }));
        }
        for &position in keep.range(..cp.size) {
            kept.insert(position, hashes[position as usize]);
        }
        // Pages: one per tile.
        return Ok((fold_parallel(&hashes), cp.size.div_ceil(256)));
    }
    let mut range = CompactRange::new();
    let mut pages = 0u64;
    let mut start = 0u64;
    while start < cp.size {
        let end = start.saturating_add(MAX_PAGE).min(cp.size);
        let page = src.hashes(start, end)?;
        pages += 1;
        check_page(start, end, page.start, page.end, page.hashes.len())?;
        for (position, hash) in (start..end).zip(page.hashes) {
            range.append(hash);
            if keep.contains(&position) {
                kept.insert(position, hash);
            }
        }
        start = end;
    }
    Ok((range, pages))
}

/// The compact range of `hashes`, hashed on every core: each full 256-leaf subtree
/// (a level-0 tile) is folded on its own, in runs shared out among threads, and the
/// subtrees' roots are joined in order ([`CompactRange::append_subtree`]); the leaves
/// after the last full tile are appended one by one. Nearly all of a log's node hashes
/// lie inside its tiles, so this divides the fold's time by the cores.
fn fold_parallel(hashes: &[Hash]) -> CompactRange {
    const TILE: usize = 256;
    let full = hashes.len() / TILE * TILE;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Whole tiles per thread, so no tile is split.
    let per = (full / TILE).div_ceil(threads).max(1) * TILE;
    let roots: Vec<Hash> = std::thread::scope(|s| {
        let runs: Vec<_> = hashes[..full]
            .chunks(per)
            .map(|run| {
                s.spawn(move || {
                    run.chunks(TILE)
                        .map(|tile| {
                            let mut sub = CompactRange::new();
                            tile.iter().for_each(|h| sub.append(*h));
                            sub.root()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // A thread that panicked could only have done so on a bug here, not on input.
        runs.into_iter()
            .flat_map(|r| r.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut range = CompactRange::new();
    for root in roots {
        let joined = range.append_subtree(8, root);
        debug_assert!(joined, "tiles join at multiples of 256");
    }
    hashes[full..].iter().for_each(|h| range.append(*h));
    range
}

/// Streams the entries `[0, cp.size)` in pages, folding each entry's hash into a
/// compact range and checking every leaf served with it: its bytes hash to that hash
/// and it is a valid envelope at its own index. Keeps the hashes at `keep`. Returns
/// the range, the number of pages and how many leaves were readable.
fn scan_entries(
    src: &dyn LogSource,
    cp: &Checkpoint,
    keep: &BTreeSet<u64>,
    kept: &mut BTreeMap<u64, Hash>,
) -> Result<(CompactRange, u64, u64), LogError> {
    let mut range = CompactRange::new();
    let (pages, readable) = fold_entries(src, &mut range, cp.size, &mut |position, hash, _| {
        if keep.contains(&position) {
            kept.insert(position, *hash);
        }
    })?;
    Ok((range, pages, readable))
}

/// What [`fold_entries`] calls for each entry: its position, hash and readable bytes.
pub(crate) type EntryVisitor<'a> = dyn FnMut(u64, &Hash, Option<&[u8]>) + 'a;

/// Extends `range` with the entries `[range.size(), end)`, page by page, with the
/// checks of [`Scan::Contents`]: each entry sits at its position, and each leaf served
/// with it hashes to its hash and is a valid envelope at its own index. `visit` sees
/// every entry (position, hash, and the leaf bytes when readable) after its checks
/// passed. Returns the number of pages and of readable leaves. Shared with the monitor,
/// which keeps the range between rounds and so reads each entry once.
pub(crate) fn fold_entries(
    src: &dyn LogSource,
    range: &mut CompactRange,
    end: u64,
    visit: &mut EntryVisitor<'_>,
) -> Result<(u64, u64), LogError> {
    let (mut pages, mut readable) = (0u64, 0u64);
    let mut start = range.size();
    while start < end {
        let page_end = start.saturating_add(MAX_PAGE).min(end);
        let page = src.entries(start, page_end)?;
        pages += 1;
        check_page(start, page_end, page.start, page.end, page.entries.len())?;
        for (position, entry) in (start..page_end).zip(page.entries) {
            if entry.index != position {
                return Err(LogError::EntryIndex {
                    position,
                    claimed: entry.index,
                });
            }
            if let Some(bytes) = &entry.leaf {
                let actual = merkle::leaf_hash(bytes);
                if actual != entry.hash {
                    return Err(LogError::LeafHashMismatch {
                        index: position,
                        served: B64.encode(entry.hash),
                        actual: B64.encode(actual),
                    });
                }
                check_envelope(position, bytes)?;
                readable += 1;
            }
            range.append(entry.hash);
            visit(position, &entry.hash, entry.leaf.as_deref());
        }
        start = page_end;
    }
    Ok((pages, readable))
}

/// A page must answer the range asked for, with one item per index.
fn check_page(start: u64, end: u64, got_start: u64, got_end: u64, items: usize) -> Result<(), LogError> {
    if got_start != start || got_end != end {
        return Err(LogError::WrongRange {
            start,
            end,
            got_start,
            got_end,
        });
    }
    if items as u64 != end - start {
        return Err(LogError::PageLength { start, end, got: items });
    }
    Ok(())
}

/// Asks the host where the token's leaf is; a 404 means "not in the log".
fn lookup_token(src: &dyn LogSource, token: &Token) -> Result<TokenRecord, LogError> {
    src.token(token).map_err(|e| match e {
        FetchError::NotFound { .. } => LogError::Token {
            jti: token.jti.clone(),
            problem: TokenProblem::NotInLog,
        },
        other => LogError::Fetch(other),
    })
}

/// Proves one token's leaf is in the checkpointed log; see the module docs, step 4.
fn prove_token(
    src: &dyn LogSource,
    cp: &Checkpoint,
    token: &Token,
    record: &TokenRecord,
    log_hashes: &BTreeMap<u64, Hash>,
    judged_at: Option<u64>,
) -> Result<String, LogError> {
    let fail = |problem| LogError::Token {
        jti: token.jti.clone(),
        problem,
    };
    if record.jti != token.jti {
        return Err(fail(TokenProblem::WrongRecord(record.jti.clone())));
    }
    let data =
        leaf::token_issued_for(&record.leaf, record.index, &token.jti, &token.jwt).map_err(|e| fail(e.into()))?;
    let (index, size) = (record.index, cp.size);
    if index >= size {
        return Err(fail(TokenProblem::NotInCheckpoint { index, size }));
    }
    let proof = src.inclusion_proof(index, size)?;
    if proof.index != index || proof.size != size {
        return Err(LogError::Fetch(FetchError::Malformed {
            what: format!("inclusion proof of {index} in {size}"),
            reason: format!("host answered for index {} in size {}", proof.index, proof.size),
        }));
    }
    let hash = merkle::leaf_hash(&record.leaf);
    merkle::verify_inclusion(index, size, &hash, &proof.proof, &cp.root)
        .map_err(|e| fail(TokenProblem::Inclusion(e)))?;
    match log_hashes.get(&index) {
        Some(h) if *h == hash => {}
        Some(_) => return Err(fail(TokenProblem::DiffersFromLog(index))),
        None => return Err(fail(TokenProblem::LogEntryUnread(index))),
    }
    Ok(format!(
        "leaf {index} is token.issued for this JWT (sub {}, aud {}, exp {}); inclusion proof verifies against the checkpoint root and the leaf matches the log{}",
        data.sub,
        data.aud,
        data.exp,
        expiry_note(data.exp, judged_at)
    ))
}

/// What a proven token's `exp` (from its logged leaf) means at the judging time.
/// JWT `exp` is the first second the token must not be accepted (RFC 7519 §4.1.4).
fn expiry_note(exp: u64, judged_at: Option<u64>) -> String {
    match judged_at {
        None => String::new(),
        Some(at) if at >= exp => format!(
            "; the token EXPIRED {} s before the judging time {at}: its inclusion is still proven (it was issued and logged), but it is no longer valid",
            at - exp
        ),
        Some(at) => format!("; not expired at the judging time {at} ({} s left)", exp - at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parallel_fold_gives_the_serial_range() {
        for n in [0usize, 1, 255, 256, 257, 2 * 256, 5 * 256 + 3, 17 * 256, 33 * 256 + 255] {
            let hashes: Vec<Hash> = (0..n).map(|i| merkle::leaf_hash(&i.to_be_bytes())).collect();
            let mut serial = CompactRange::new();
            hashes.iter().for_each(|h| serial.append(*h));
            assert_eq!(fold_parallel(&hashes), serial, "{n} leaves");
        }
    }
}
