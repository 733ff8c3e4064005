//! `sealgate witness`: a C2SP `tlog-witness` that cosigns a log's checkpoints only
//! when they extend, consistently, the latest checkpoint it cosigned for that log.
//!
//! A compromised host can roll the log back or fork it, and the enclave's signature
//! alone cannot show that to someone who did not keep an older checkpoint. A witness
//! keeps it for everyone: it remembers, per log origin, the size and root it last
//! cosigned, and refuses any checkpoint it cannot prove consistent with them. An
//! auditor (and, with witnesses configured, the enclave itself) then trusts only
//! checkpoints a quorum of independent witnesses cosigned.
//!
//! # Usage
//!
//! ```text
//! sealgate witness --listen 127.0.0.1:7380 --state witness-state \
//!     --name witness.example.com/w1 \
//!     --log 'sealgate.example.com/log+1a2b3c4d+AXx…'     # repeatable
//! ```
//!
//! - `--log VKEY`: a log this witness accepts, as its signed-note verifier key (what a
//!   sealgate host serves at `GET /v1/audit/key`; its name is the log's origin). Give
//!   two keys with the same name while a log rotates its key.
//! - `--name`: the witness's key name, a schema-less URL that identifies it.
//! - `--state DIR`: `witness.key` (its Ed25519 key, created 0600 on first start and
//!   never rewritten), `witness.vkey` (its verifier key, for logs and auditors to
//!   configure) and `witness.db` (SQLite: per origin, the recorded size and root, the
//!   log keys that verified them, and the cosigned checkpoint).
//!
//! At start it prints `witness vkey: NAME+KEYID+BASE64(0x04 ‖ key)` and the address it
//! listens on. The vkey is a type 0x04 (`cosignature/v1`) key, not a log key.
//!
//! # Protocol
//!
//! `POST /add-checkpoint` takes `old <size>\n`, up to 63 base64 consistency-proof
//! lines, an empty line, and the signed checkpoint; it answers (checks in this order):
//!
//! | status | when |
//! |---|---|
//! | 400 | malformed body; or old size > checkpoint size (a rollback) |
//! | 404 | the checkpoint's origin is not a configured log |
//! | 403 | no valid signature from a configured key of the origin, or one that fails |
//! | 409 | old size ≠ the size recorded for the origin (0 if none); the body is the recorded size and a newline, `Content-Type: text/x.tlog.size` |
//! | 422 | size 0 with a root other than the empty tree's; a proof with old size 0; the same size with another root (a fork); a consistency proof that does not verify |
//! | 200 | the body is the witness's cosignature line (`cosignature/v1`, timestamped now); the checkpoint is recorded before the answer |
//!
//! Submitting the recorded checkpoint again (old size = size = recorded, same root) is
//! cosigned again with a fresh timestamp: the spec allows old size = checkpoint size
//! when the roots match, and a log uses it to refresh a cosignature.
//!
//! `GET /<hex SHA-256 of the origin>/checkpoint` serves the latest cosigned checkpoint
//! with the log's signature and the witness's cosignature (404 if none), for monitors.
//!
//! The log's side is [`client::add_checkpoint`].

pub mod add_checkpoint;
pub mod client;
pub mod cosigning;
pub mod key;
pub mod server;
pub mod state;

use sealgate_shared::cosignature::Cosigner;
use sealgate_shared::note::VerifierKey;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything `sealgate witness` needs.
pub struct WitnessOptions {
    pub listen: SocketAddr,
    pub state: PathBuf,
    /// The witness's key name.
    pub name: String,
    /// The logs it accepts (each key's name is the log's origin).
    pub logs: Vec<VerifierKey>,
}

/// Creates the state directory and the witness key (once), writes `witness.vkey`, and
/// returns the cosigner. `sealgate witness --print-vkey` stops here: a log's enclave
/// must be configured with the witness's vkey before the log exists, and the witness
/// needs the log's key to start, so the key comes first.
pub fn prepare(state: &Path, name: &str) -> Result<Cosigner, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(state)?;
    let (key, created) = key::load_or_create(&state.join("witness.key"))?;
    let cosigner = Cosigner::new(name, key).map_err(|e| format!("--name {name:?}: {e}"))?;
    std::fs::write(state.join("witness.vkey"), format!("{}\n", cosigner.verifier()))?;
    if created {
        tracing::info!(path = %state.join("witness.key").display(), "created the witness key");
    }
    Ok(cosigner)
}

/// Runs the witness until `shutdown` resolves.
pub async fn run(
    opts: WitnessOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error>> {
    if opts.logs.is_empty() {
        return Err("a witness needs at least one --log VKEY".into());
    }
    let cosigner = prepare(&opts.state, &opts.name)?;
    // Printed before binding, so whoever sees the port open can already read it.
    println!("witness vkey: {}", cosigner.verifier());
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    serve_on(listener, cosigner, opts.logs, &opts.state, shutdown).await
}

/// Serves a witness on a bound listener (`sealgate sim` runs its local witness so, in
/// its own process, once the enclave has named the log's key).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    cosigner: Cosigner,
    logs: Vec<VerifierKey>,
    state_dir: &Path,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error>> {
    let state = state::State::open(&state_dir.join("witness.db"))?;
    let logs = add_checkpoint::Logs::new(logs);
    for origin in logs.origins() {
        match state.get(origin)? {
            Some(r) => tracing::info!(origin, size = r.size, "accepting checkpoints"),
            None => tracing::info!(origin, "accepting checkpoints (none cosigned yet)"),
        }
    }
    let witness = Arc::new(server::Witness { cosigner, logs, state });
    let bound = listener.local_addr()?;
    println!("sealgate witness listening on http://{bound}");
    axum::serve(listener, server::router(witness))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
