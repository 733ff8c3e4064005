//! `sealgate sim`: the whole system on one machine. Starts `sealgate-enclave --sim` as
//! a child over a Unix socket in the state directory, then the host in this process.
//!
//! The child's stdin is a pipe from us; the enclave exits when it closes, so even a
//! `kill -9` of the host takes the simulated enclave down with it and a restart never
//! finds a stale one holding the socket.

use crate::startup::StartError;
use sealgate_shared::state_lock::StateLock;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The lock file in the state directory: one `sealgate sim` per state directory (a
/// second one replaced the first's enclave socket and opened its database).
pub const LOCK_FILE: &str = "sim.lock";

/// Creates the state directory (and its `enclave/` part) and returns its absolute path.
pub fn create_state_dir(state: &Path) -> Result<PathBuf, String> {
    let fail = |e: std::io::Error| format!("cannot create the state directory {}: {e}", state.display());
    std::fs::create_dir_all(state.join("enclave")).map_err(fail)?;
    std::fs::canonicalize(state).map_err(fail)
}

/// Locks the state directory for this process, before the enclave or the database
/// is touched; a refusal names the PID that holds it.
pub fn lock_state_dir(state: &Path) -> Result<StateLock, StartError> {
    Ok(StateLock::acquire(
        &state.join(LOCK_FILE),
        format!("the state directory {}", state.display()),
        "--state",
        Duration::ZERO,
    )?)
}

/// The enclave binary: next to this one (cargo puts both in the same target dir).
pub fn enclave_binary() -> std::io::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let candidate = me.with_file_name("sealgate-enclave");
    if candidate.exists() {
        Ok(candidate)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "{} not found: `make build` (or `make release`) builds it next to sealgate",
                candidate.display()
            ),
        ))
    }
}

/// Starts the simulated enclave listening on `socket`, its state in `state`.
pub fn spawn_enclave(socket: &Path, state: &Path) -> std::io::Result<tokio::process::Child> {
    tokio::process::Command::new(enclave_binary()?)
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        .arg("--state")
        .arg(state)
        .arg("--sim")
        .arg("--exit-on-stdin-eof")
        .stdin(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
}

/// Key name of `sealgate sim`'s witness `i` (1-based).
pub fn local_witness_name(i: u32) -> String {
    format!("sealgate-sim/witness-{i}")
}

/// Prepares `sealgate sim`'s own witnesses: each one's key (created once, in
/// `STATE/witness-I`, so the vkeys sealed into the enclave stay the same across
/// restarts) and a loopback listener on a free port. They serve once the enclave has
/// named the log's key (`serve_on`).
pub async fn local_witnesses(state: &Path, n: u32) -> Result<Vec<crate::LocalWitness>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for i in 1..=n {
        let dir = state.join(format!("witness-{i}"));
        let cosigner = crate::witness::prepare(&dir, &local_witness_name(i))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        out.push(crate::LocalWitness {
            listener,
            cosigner,
            state: dir,
        });
    }
    Ok(out)
}

/// The `--witness` endpoint of a local witness.
pub fn endpoint(w: &crate::LocalWitness) -> std::io::Result<crate::witness::cosigning::WitnessEndpoint> {
    Ok(crate::witness::cosigning::WitnessEndpoint {
        key: w.cosigner.verifier(),
        url: format!("http://{}", w.listener.local_addr()?),
    })
}
