//! The untrusted half of sealgate: the REST API, SQLite, and the client of the enclave.
//!
//! The host is assumed compromised in the threat model (ARCHITECTURE §2), so it holds no
//! private key and cannot produce a token or a checkpoint; what it can do wrong (drop,
//! reorder or invent log entries) an auditor catches with `sealgate-verify`.
#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod auth;
pub mod aws;
pub mod byo;
pub mod db;
pub mod enclave_client;
pub mod error;
pub mod grants;
pub mod https_client;
pub mod kms_seal;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod sim;
pub mod startup;
pub mod witness;

use enclave_client::EnclaveClient;
use ledger::Ledger;
use sealgate_shared::addr::Addr;
use sealgate_shared::protocol::{EnclaveConfig, Op, Reply};
use sealgate_shared::state_lock::StateLock;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Shared state of every request handler.
pub struct App {
    pub ledger: Arc<Ledger>,
    pub keys: auth::KeyCache,
    pub metrics: metrics::Metrics,
    /// `sim` or `nitro`, as the enclave reported it.
    pub mode: String,
    /// AWS clients (STS for grants, S3/KMS through customer roles for BYO storage).
    pub aws: aws::Aws,
    /// Rate limits, long-poll caps and listener limits (issue 9, hole 6).
    pub limits: Arc<limits::Limits>,
    /// Where and how approval webhooks connect (issue 9, hole 5).
    pub webhooks: grants::webhook_net::Sender,
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Everything `sealgate serve` needs.
pub struct ServeOptions {
    pub enclave: Addr,
    pub db: PathBuf,
    pub listen: SocketAddr,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub admin_key_file: PathBuf,
    /// KMS sealing: the KMS key the enclave's data key comes from (`--kms-key-id`); the
    /// enclave must run with `--seal kms`. `None`: the enclave seals locally.
    pub kms_key_id: Option<String>,
    /// Rate limits and listener limits (`crate::limits`).
    pub limits: limits::LimitArgs,
    /// Webhook address rule and TLS roots (`grants::webhook_net`).
    pub webhooks: grants::webhook_net::WebhookArgs,
    /// Set by `sealgate sim` to its state directory, so a refused start names the
    /// flags of `sim` (`--listen`, `--state`) rather than those of `serve`.
    pub sim_state: Option<PathBuf>,
    /// Witnessing (`--witness`, `--witness-quorum`): sealed into the enclave's
    /// configuration at its first start, like the issuer.
    pub witnesses: WitnessArgs,
    /// `sealgate sim`: witnesses run in this process, started once the enclave has
    /// named the log's key (their endpoints are already in `witnesses`).
    pub local_witnesses: Vec<LocalWitness>,
}

/// `--witness VKEY@URL` (repeatable) and `--witness-quorum N`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WitnessArgs {
    /// A witness whose cosignatures release tokens (repeatable): its cosignature/v1
    /// verifier key and URL, VKEY@URL (`sealgate witness --print-vkey` prints the key).
    #[arg(long = "witness", value_name = "VKEY@URL")]
    pub witnesses: Vec<witness::cosigning::WitnessEndpoint>,
    /// How many witnesses must cosign a checkpoint before its tokens are released
    /// [default: a majority].
    #[arg(long = "witness-quorum", value_name = "N")]
    pub quorum: Option<u32>,
}

impl WitnessArgs {
    /// The quorum to seal: as given, or a majority of the witnesses (0 without).
    pub fn quorum(&self) -> u32 {
        let n = self.witnesses.len() as u32;
        self.quorum.unwrap_or(if n == 0 { 0 } else { n / 2 + 1 })
    }
}

/// A witness `sealgate sim` runs itself (`--witnesses N`).
pub struct LocalWitness {
    pub listener: tokio::net::TcpListener,
    pub cosigner: sealgate_shared::cosignature::Cosigner,
    pub state: PathBuf,
}

/// Binds the API's port. Called before anything is created (database, admin key, the
/// enclave's sealed configuration), so a busy port leaves no state behind that a later
/// start on another port would trip over.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, startup::StartError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| startup::StartError::Listen { addr, source })
}

/// Locks the database for this process: two hosts on one database would interleave
/// their leaves (see `sealgate_shared::state_lock`). The lock file sits beside it.
pub fn lock_db(db: &std::path::Path) -> Result<StateLock, startup::StartError> {
    let mut path = db.as_os_str().to_owned();
    path.push(".lock");
    Ok(StateLock::acquire(
        std::path::Path::new(&path),
        format!("the database {}", db.display()),
        "--db",
        Duration::ZERO,
    )?)
}

/// The log origin (and checkpoint key name) derived from the issuer: its host and path
/// plus `/log`, e.g. `sealgate.example.com/log`.
pub fn log_origin(issuer: &str) -> String {
    let rest = issuer.split_once("://").map_or(issuer, |(_, r)| r);
    format!("{}/log", rest.trim_end_matches('/'))
}

/// Serves `sealgate sim`'s own witnesses, now that the enclave has named the log's key.
fn start_local_witnesses(ledger: &Ledger, local: Vec<LocalWitness>) -> Result<(), Box<dyn std::error::Error>> {
    if local.is_empty() {
        return Ok(());
    }
    let Some(hello) = ledger.hello() else {
        tracing::warn!("the enclave has not said its checkpoint key; the local witnesses do not start");
        return Ok(());
    };
    let log_key: sealgate_shared::note::VerifierKey = hello.checkpoint_key.parse()?;
    for w in local {
        let logs = vec![log_key.clone()];
        tokio::spawn(async move {
            if let Err(e) = witness::serve_on(w.listener, w.cosigner, logs, &w.state, std::future::pending()).await {
                tracing::error!("the local witness stopped: {e}");
            }
        });
    }
    Ok(())
}

/// Runs the host until `shutdown` resolves.
pub async fn serve(
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = bind(opts.listen).await?;
    serve_on(listener, opts, shutdown).await
}

/// [`serve`] on a listener the caller bound first (`sealgate sim` binds it before it
/// creates its state directory and starts the enclave).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error>> {
    let _db_lock = lock_db(&opts.db)?;
    let config = EnclaveConfig {
        issuer: opts.issuer.trim_end_matches('/').to_string(),
        audiences: opts.audiences.clone(),
        ttl_min_seconds: sealgate_shared::TTL_MIN_SECONDS,
        ttl_max_seconds: sealgate_shared::TTL_MAX_SECONDS,
        log_origin: log_origin(&opts.issuer),
        witnesses: opts.witnesses.witnesses.iter().map(|w| w.key.to_string()).collect(),
        witness_quorum: opts.witnesses.quorum(),
    };
    let webhooks = grants::webhook_net::Sender::new(&opts.webhooks)?;
    let enclave = Arc::new(EnclaveClient::new(opts.enclave.clone(), 2));
    let ledger = {
        let (db, enclave, config) = (opts.db.clone(), enclave.clone(), config.clone());
        tokio::task::spawn_blocking(move || Ledger::open(&db, enclave, config)).await??
    };
    if !opts.witnesses.witnesses.is_empty() {
        let cosigning = witness::cosigning::Cosigning::new(&opts.witnesses.witnesses, config.witness_quorum as usize)
            .map_err(|e| format!("witness client: {e}"))?;
        ledger.set_cosigning(Arc::new(cosigning));
    }

    // A KMS-sealed enclave is locked until it gets its data key; a failure here is final
    // (wrong key policy, tampered ciphertexts) and stops the host with the cause.
    if let Some(key_id) = &opts.kms_key_id {
        let kms = Arc::new(kms_seal::KmsSeal::new(key_id.clone()));
        let outcome = kms
            .unseal_at_startup(&enclave, &ledger.db, Duration::from_secs(30))
            .await
            .map_err(|e| format!("KMS unsealing failed: {e}"))?;
        tracing::info!(?outcome, key_id, "enclave unsealed with KMS");
        ledger.set_kms(kms);
    }

    // Bring the enclave into step before serving; keep trying while it starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match ledger.first_sync().await {
            Ok(()) => break,
            Err(ledger::SyncError::Refused(w)) => {
                let sealed = match enclave.call(Op::Status).await {
                    Ok(Reply::Status(s)) => s.config,
                    _ => None,
                };
                return Err(startup::StartError::refused(
                    opts.enclave.to_string(),
                    w,
                    &config,
                    sealed,
                    opts.sim_state.clone(),
                )
                .into());
            }
            Err(ledger::SyncError::Integrity(m)) => {
                tracing::error!("serving the audit log read-only: {m}");
                break;
            }
            Err(ledger::SyncError::Enclave(enclave_client::ClientError::Enclave(w)))
                if w.code == sealgate_shared::protocol::ErrorCode::Locked =>
            {
                return Err(format!(
                    "the enclave at {} seals its keys with KMS and is locked: start the host with --kms-key-id KEY",
                    opts.enclave
                )
                .into())
            }
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::info!("waiting for the enclave at {}: {e}", opts.enclave);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("the enclave at {} did not come up: {e}", opts.enclave).into()),
        }
    }
    start_local_witnesses(&ledger, opts.local_witnesses)?;
    ledger.spawn_background();
    let mode = ledger.hello().map_or("unknown", |h| h.mode.as_str()).to_string();
    let app = Arc::new(App {
        ledger,
        keys: auth::KeyCache::default(),
        metrics: Default::default(),
        mode,
        aws: Default::default(),
        limits: Arc::new(limits::Limits::new(opts.limits.clone())),
        webhooks,
    });
    limits::spawn_upkeep(app.limits.clone());
    // Grant lifecycle (expiry, timeouts, revocation pruning) and approval webhooks.
    grants::spawn_background(app.clone());

    if app.ledger.integrity_failure().is_none() && auth::bootstrap_operator(&app, &opts.admin_key_file).await? {
        tracing::info!(path = %opts.admin_key_file.display(), "wrote the bootstrap operator admin key");
    }

    let bound = listener.local_addr()?;
    println!("sealgate ({}) listening on http://{bound}", app.mode);
    println!("issuer: {}", config.issuer);
    println!("operator admin key: {}", opts.admin_key_file.display());
    println!("witnesses: {}", config.describe_witnesses());
    // Not axum::serve: the listener caps connections and times out header reads.
    limits::listener::serve(listener, api::router(app.clone()), app.limits.clone(), shutdown).await?;
    app.ledger.flush_checkpoint().await;
    Ok(())
}
