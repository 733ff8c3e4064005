//! `sealgate-enclave --listen unix:PATH|vsock:CID:PORT --state DIR [--sim]`

use clap::Parser;
use sealgate_enclave::enclave::Enclave;
use sealgate_enclave::keys::SealedStore;
use sealgate_enclave::nsm::sim::SimNsm;
use sealgate_enclave::server::Listener;
use sealgate_shared::addr::Addr;
use sealgate_shared::protocol::Mode;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "sealgate-enclave", about = "The trusted half of sealgate")]
struct Args {
    /// Where to listen for the host: unix:PATH or vsock:CID:PORT.
    #[arg(long)]
    listen: Addr,
    /// Directory for sealed state (and, in simulator mode, the simulated NSM's root).
    #[arg(long)]
    state: PathBuf,
    /// Simulator mode: simulated NSM and local sealing key. Every surface reports "sim".
    #[arg(long)]
    sim: bool,
    /// Exit when standard input closes: `sealgate sim` holds the other end, so the
    /// simulated enclave never outlives its host, even after `kill -9`.
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sealgate-enclave: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if !args.sim {
        return Err("Nitro mode (real /dev/nsm and KMS sealing) is not in this build yet; run with --sim".into());
    }
    std::fs::create_dir_all(&args.state)?;
    let image = std::env::current_exe()?;
    let nsm = SimNsm::open(&args.state, &image)?;
    let store = SealedStore::open(&args.state)?;
    let enclave = Arc::new(Enclave::boot(Mode::Sim, store, Box::new(nsm))?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let listener = Listener::bind(&args.listen)?;
        tracing::info!(listen = %args.listen, mode = "sim", kid = enclave.token_kid(), "enclave listening");
        if args.exit_on_stdin_eof {
            tokio::select! {
                r = listener.serve(enclave) => r,
                _ = stdin_closed() => {
                    tracing::info!("standard input closed; exiting");
                    Ok(())
                }
            }
        } else {
            listener.serve(enclave).await
        }
    })?;
    Ok(())
}

/// Resolves when standard input reaches end of file.
async fn stdin_closed() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}
