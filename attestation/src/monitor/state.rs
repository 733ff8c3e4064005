//! What the monitor remembers between rounds and across its own restarts: one JSON
//! file, `DIR/monitor.json`, replaced atomically (written beside, fsynced, renamed
//! over) after every round, so a monitor killed at any moment finds either the old or
//! the new state, never half of one.
//!
//! Why persist at all: a host that rolls its log back while the monitor is down must
//! still be caught on the monitor's first round, so the last *verified* checkpoint (and
//! the attested keys) must outlive the process. Only verified facts are stored: a
//! checkpoint is saved only after its signature and its consistency with the previous
//! one checked out, so a violation is reported again by the next run, not forgotten.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sealgate_shared::commitment::Commitment;
use sealgate_shared::merkle::{self, CompactRange};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The state file's format version.
pub const STATE_VERSION: u32 = 1;

/// The file inside `--state DIR`.
pub const STATE_FILE: &str = "monitor.json";

/// The last checkpoint that verified and was consistent with everything before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenCheckpoint {
    pub size: u64,
    /// Base64, as in the note.
    pub root: String,
    /// The signed note exactly as served (what the next round's consistency check
    /// opens again under the attested key).
    pub note: String,
}

/// With `--key`: how far the leaf contents were read, and what they said about keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    /// Entries `[0, scanned)` were read and folded into `frontier`.
    pub scanned: u64,
    /// The compact range of `[0, scanned)` (base64 hashes), so the next round reads
    /// only new entries and still proves they are the checkpointed log.
    pub frontier: Vec<String>,
    /// Token key ids (RFC 7638 thumbprints) the log introduced: the `token_kid` of
    /// `enclave.genesis` and `enclave.boot` leaves, and both kids of `key.rotated`.
    pub logged_kids: BTreeSet<String>,
    /// Indices of the `enclave.boot` leaves read in the verified log: a boot leaf a
    /// rolled-back or forked log serves at any other index is a restart the verified
    /// history never had.
    pub boots: BTreeSet<u64>,
    /// Attested keys not yet seen in a leaf, with the checkpoint size when first seen:
    /// the JWKS changes a moment before a checkpoint covers the `key.rotated` leaf, so a
    /// key is a violation only once a larger checkpoint still lacks its leaf.
    pub pending: BTreeMap<String, u64>,
}

impl Contents {
    /// The compact range the frontier stands for.
    pub fn range(&self) -> Result<CompactRange, String> {
        let hashes = self
            .frontier
            .iter()
            .map(|h| {
                B64.decode(h)
                    .map_err(|e| e.to_string())
                    .and_then(|b| merkle::to_hash(&b).map_err(|e| e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        CompactRange::from_parts(self.scanned, hashes).map_err(|e| e.to_string())
    }

    pub fn set_range(&mut self, range: &CompactRange) {
        self.scanned = range.size();
        self.frontier = range.hashes().iter().map(|h| B64.encode(h)).collect();
    }
}

/// Everything the monitor remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// The commitment the last verified attestation was the digest of.
    pub commitment: Option<Commitment>,
    /// PCR0 of that attestation's document (hex), when it had one.
    pub pcr0: Option<String>,
    pub checkpoint: Option<SeenCheckpoint>,
    /// Every JWKS thumbprint an attestation ever committed to.
    pub thumbprints_seen: BTreeSet<String>,
    /// `None` until a run with `--key` read leaf contents.
    pub contents: Option<Contents>,
}

/// A state directory and its file.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: &Path) -> Self {
        StateDir { dir: dir.to_path_buf() }
    }

    pub fn file(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The saved state, or a fresh one when there is none yet. A file that is not
    /// this format is an error (never silently replaced: it may be the only record of
    /// what the log looked like).
    pub fn load(&self) -> Result<State, String> {
        let path = self.file();
        let raw = match std::fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State {
                    version: STATE_VERSION,
                    ..State::default()
                })
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let state: State = serde_json::from_slice(&raw).map_err(|e| {
            format!(
                "{} is not a monitor state file ({e}); move it away to start over",
                path.display()
            )
        })?;
        if state.version != STATE_VERSION {
            return Err(format!(
                "{} has state version {}, this monitor writes {STATE_VERSION}",
                path.display(),
                state.version
            ));
        }
        Ok(state)
    }

    /// Writes `state` atomically: a temporary file in the same directory, fsynced, then
    /// renamed over the old one.
    pub fn save(&self, state: &State) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let path = self.file();
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            // The rename itself is durable once the directory is synced.
            if let Ok(d) = std::fs::File::open(&self.dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        write().map_err(|e| format!("{}: {e}", path.display()))
    }
}
