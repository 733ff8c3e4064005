//! `sealgate serve …`, `sealgate sim …` and `sealgate witness …`.

use clap::{Parser, Subcommand};
use sealgate_host::grants::webhook_net::WebhookArgs;
use sealgate_host::limits::LimitArgs;
use sealgate_host::{serve, sim, ServeOptions};
use sealgate_shared::addr::Addr;
use sealgate_shared::note::VerifierKey;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sealgate",
    about = "Credential broker for AI agents, rooted in a Nitro Enclave"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the host against an enclave that is already running.
    Serve {
        /// The enclave: unix:PATH or vsock:CID:PORT.
        #[arg(long)]
        enclave: Addr,
        /// SQLite database file.
        #[arg(long)]
        db: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The issuer URL clients and AWS see (https, or http on loopback).
        #[arg(long)]
        issuer: String,
        /// Allowed token audiences (repeatable); the first is the default.
        #[arg(long = "audience", default_value = "sts.amazonaws.com")]
        audiences: Vec<String>,
        /// Where the bootstrap operator key is written on first start.
        #[arg(long)]
        admin_key_file: Option<PathBuf>,
        /// KMS sealing: unseal the enclave (started with --seal kms) with a data key of
        /// this KMS key (id, ARN or alias). AWS settings come from the SDK's standard
        /// environment (AWS_REGION, AWS_ENDPOINT_URL_KMS, credentials chain).
        #[arg(long)]
        kms_key_id: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        webhooks: WebhookArgs,
    },
    /// Simulator mode: start the enclave as a child and the host, on loopback.
    Sim {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// State directory (database, sealed keys, simulated NSM root, admin key).
        #[arg(long, default_value = "state")]
        state: PathBuf,
        /// Issuer URL; defaults to http://LISTEN.
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long = "audience", default_value = "sts.amazonaws.com")]
        audiences: Vec<String>,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        webhooks: WebhookArgs,
    },
    /// A C2SP tlog-witness: cosigns a log's checkpoints only when consistent with the
    /// last one it cosigned (see the witness module's docs).
    Witness {
        #[arg(long, default_value = "127.0.0.1:7380")]
        listen: SocketAddr,
        /// State directory (witness.key, witness.vkey, witness.db).
        #[arg(long, default_value = "witness-state")]
        state: PathBuf,
        /// The witness's key name, a schema-less URL identifying it.
        #[arg(long, default_value = "sealgate-witness")]
        name: String,
        /// A log to accept: its signed-note verifier key, named by its origin
        /// (repeatable; `GET /v1/audit/key` of a sealgate host).
        #[arg(long = "log", value_name = "VKEY", required = true)]
        logs: Vec<VerifierKey>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sealgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(Cli::parse())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sealgate: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.cmd {
        Cmd::Serve {
            enclave,
            db,
            listen,
            issuer,
            audiences,
            admin_key_file,
            kms_key_id,
            limits,
            webhooks,
        } => {
            let admin_key_file = admin_key_file.unwrap_or_else(|| db.with_file_name("admin.key"));
            serve(
                ServeOptions {
                    enclave,
                    db,
                    listen,
                    issuer,
                    audiences,
                    admin_key_file,
                    kms_key_id,
                    limits,
                    webhooks,
                },
                shutdown_signal(),
            )
            .await
        }
        Cmd::Sim {
            listen,
            state,
            issuer,
            audiences,
            limits,
            webhooks,
        } => {
            std::fs::create_dir_all(state.join("enclave"))?;
            let state = std::fs::canonicalize(&state)?;
            let socket = state.join("enclave.sock");
            let _child = sim::spawn_enclave(&socket, &state.join("enclave"))?;
            let issuer = issuer.unwrap_or_else(|| format!("http://{listen}"));
            let opts = ServeOptions {
                enclave: Addr::Unix(socket),
                db: state.join("sealgate.db"),
                listen,
                issuer,
                audiences,
                admin_key_file: state.join("admin.key"),
                kms_key_id: None,
                limits,
                webhooks,
            };
            println!("mode: sim (simulated NSM and sealing; not for production)");
            serve(opts, shutdown_signal()).await
        }
        Cmd::Witness {
            listen,
            state,
            name,
            logs,
        } => {
            let opts = sealgate_host::witness::WitnessOptions {
                listen,
                state,
                name,
                logs,
            };
            sealgate_host::witness::run(opts, shutdown_signal()).await
        }
    }
}
