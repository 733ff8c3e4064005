//! `sealgate-enclave --listen unix:PATH|vsock:CID:PORT [--state DIR] [--sim]
//! [--nsm sim|nitro] [--seal sim|kms] [--kms-proxy tcp:HOST:PORT|vsock:CID:PORT]
//! [--sim-kms-ca PEM]`
//!
//! Production inside a Nitro Enclave: `--listen vsock:4294967295:5000 --nsm nitro --seal
//! kms` (no state directory: the enclave has no disk, and the host stores the sealed
//! state); the enclave reaches KMS itself through the parent's vsock-proxy
//! (`--kms-proxy`, default `vsock:3:8000`). `--sim` keeps meaning the whole simulator (`--nsm sim --seal sim`); either
//! half can be overridden, e.g. `--sim --seal kms` to exercise KMS sealing off Nitro.

use clap::{Parser, ValueEnum};
use sealgate_enclave::enclave::Enclave;
use sealgate_enclave::keys::SealedStore;
use sealgate_enclave::kms::client::{KmsClient, KmsProxy};
use sealgate_enclave::nsm::nitro::NitroNsm;
use sealgate_enclave::nsm::sim::SimNsm;
use sealgate_enclave::nsm::Nsm;
use sealgate_enclave::server::Listener;
use sealgate_shared::addr::Addr;
use sealgate_shared::protocol::Mode;
use sealgate_shared::state_lock::StateLock;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum NsmKind {
    /// The simulated NSM (documents chain to a local root in `STATE/sim-nsm/`).
    Sim,
    /// The real `/dev/nsm` of a Nitro Enclave.
    Nitro,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SealKind {
    /// AES-256-GCM under a key file in `--state` (protects nothing against its readers).
    Sim,
    /// AES-256-GCM under a KMS data key released to this enclave's attestation; boots
    /// locked until it has fetched the data key from KMS itself (the host's UnsealKms).
    Kms,
}

#[derive(Parser)]
#[command(name = "sealgate-enclave", version, about = "The trusted half of sealgate")]
struct Args {
    /// Where to listen for the host: unix:PATH or vsock:CID:PORT.
    #[arg(long)]
    listen: Addr,
    /// Directory for the simulator's sealed state and simulated NSM root; required
    /// unless both --nsm nitro and --seal kms.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Simulator mode: simulated NSM and local sealing key unless --nsm / --seal say
    /// otherwise. Every surface reports "sim".
    #[arg(long)]
    sim: bool,
    /// Which NSM attests [default: sim with --sim, else nitro].
    #[arg(long, value_enum)]
    nsm: Option<NsmKind>,
    /// How the private keys are sealed across restarts [default: sim].
    #[arg(long, value_enum)]
    seal: Option<SealKind>,
    /// KMS sealing: where the byte pipe to KMS starts (TLS runs inside the enclave):
    /// vsock:CID:PORT of the parent's vsock-proxy, or tcp:HOST:PORT [default: vsock:3:8000].
    #[arg(long, value_name = "ADDR")]
    kms_proxy: Option<String>,
    /// Simulator only: trust this CA (PEM) for KMS instead of the public web roots. Its
    /// SHA-256 fingerprint is attested (`kms_ca`) and the mode becomes "sim".
    #[arg(long, value_name = "PEM")]
    sim_kms_ca: Option<PathBuf>,
    /// KMS sealing: the only KMS key (its ARN) this enclave takes a data key from. The
    /// host names the key otherwise, and a key it controls would let it decrypt the
    /// data key's CiphertextBlob itself; in an EIF this flag is part of the measured
    /// image (deploy/enclave/Dockerfile's KMS_KEY_ARN), so PCR0 covers the pin.
    /// Required with --nsm nitro --seal kms.
    #[arg(long, value_name = "ARN", env = "SEALGATE_KMS_KEY_ARN")]
    kms_key_arn: Option<String>,
    /// Exit when standard input closes: `sealgate sim` holds the other end, so the
    /// simulated enclave never outlives its host, even after `kill -9`.
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

/// `arn:aws:kms:REGION:ACCOUNT:key/ID` (any partition): the form KMS answers with, so
/// the pin can be compared with KMS's `KeyId` exactly.
fn valid_kms_key_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "kms", region, account, resource]
        if !partition.is_empty()
            && !region.is_empty()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && resource.strip_prefix("key/").is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')))
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

fn state_dir<'a>(state: &'a Option<PathBuf>, why: &str) -> Result<&'a Path, Box<dyn std::error::Error>> {
    let dir = state
        .as_deref()
        .ok_or_else(|| format!("--state DIR is required for {why}"))?;
    std::fs::create_dir_all(dir)?;
    Ok(dir)
}

/// The parent instance (CID 3) and the port `deploy/vsock-proxy.yaml`'s KMS entry uses.
const DEFAULT_KMS_PROXY: &str = "vsock:3:8000";

/// The lock file inside `--state`: one enclave per state directory (two would each
/// think they own the keys and the log, and the second replaced the first's socket).
const LOCK_FILE: &str = "enclave.lock";

/// How long a previous enclave on this state may take to exit: `sealgate sim`'s child
/// notices its host died only when its stdin closes, moments after a restart began.
const LOCK_WAIT: Duration = Duration::from_secs(3);

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Before anything reads or writes the state, and before the socket is bound.
    let _lock = match &args.state {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Some(StateLock::acquire(
                &dir.join(LOCK_FILE),
                format!("the enclave state directory {}", dir.display()),
                "--state",
                LOCK_WAIT,
            )?)
        }
        None => None,
    };
    let nsm_kind = args.nsm.unwrap_or(if args.sim { NsmKind::Sim } else { NsmKind::Nitro });
    let seal_kind = args.seal.unwrap_or(SealKind::Sim);
    if seal_kind == SealKind::Sim
        && (args.kms_proxy.is_some() || args.sim_kms_ca.is_some() || args.kms_key_arn.is_some())
    {
        return Err("--kms-proxy, --sim-kms-ca and --kms-key-arn are for --seal kms".into());
    }
    if let Some(arn) = args.kms_key_arn.as_deref().filter(|a| !valid_kms_key_arn(a)) {
        return Err(format!("--kms-key-arn {arn:?} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)").into());
    }
    // "nitro" only when nothing is simulated: a real NSM with a local sealing key still
    // keeps its keys where the host can read them, and a KMS reached under a test CA
    // need not be KMS at all.
    let mode = match (nsm_kind, seal_kind, &args.sim_kms_ca) {
        (NsmKind::Nitro, SealKind::Kms, None) => Mode::Nitro,
        _ => Mode::Sim,
    };
    let nsm: Box<dyn Nsm> = match nsm_kind {
        NsmKind::Sim => {
            let dir = state_dir(&args.state, "the simulated NSM (--nsm sim)")?;
            Box::new(SimNsm::open(dir, &std::env::current_exe()?)?)
        }
        NsmKind::Nitro => Box::new(NitroNsm::open()?),
    };
    let enclave = match seal_kind {
        SealKind::Sim => {
            if nsm_kind == NsmKind::Nitro {
                tracing::warn!("a real NSM with simulator sealing: the sealing key is a local file; mode is \"sim\"");
            }
            let dir = state_dir(&args.state, "simulator sealing (--seal sim)")?;
            Enclave::boot(mode, SealedStore::open(dir)?, nsm)?
        }
        SealKind::Kms => {
            let proxy: KmsProxy = args.kms_proxy.as_deref().unwrap_or(DEFAULT_KMS_PROXY).parse()?;
            let client = match &args.sim_kms_ca {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| format!("--sim-kms-ca {}: {e}", path.display()))?;
                    let client = KmsClient::sim_ca(proxy, &pem)?;
                    tracing::warn!(
                        "KMS is trusted under the simulator CA {}: mode is \"sim\"",
                        client.ca_fingerprint().unwrap_or_default()
                    );
                    client
                }
                None => KmsClient::public(proxy)?,
            };
            match (&args.kms_key_arn, mode) {
                (None, Mode::Nitro) => {
                    return Err("--nsm nitro --seal kms needs --kms-key-arn (SEALGATE_KMS_KEY_ARN, baked into the EIF): \
                                without it the host chooses the KMS key, and a key it controls would let it read \
                                the data key"
                        .into())
                }
                (None, _) => tracing::warn!(
                    "no --kms-key-arn: the enclave takes its data key from whichever KMS key the host names (simulator only)"
                ),
                (Some(arn), _) => tracing::info!(kms_key = arn, "data keys only from the pinned KMS key"),
            }
            Enclave::boot_locked(mode, nsm, client, args.kms_key_arn.clone())?
        }
    };
    let enclave = Arc::new(enclave);
    let sealing = enclave.sealing();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let listener = Listener::bind(&args.listen)?;
        match enclave.token_kid() {
            Some(kid) => tracing::info!(listen = %args.listen, mode = mode.as_str(), sealing = sealing.as_str(), kid, "enclave listening"),
            None => tracing::info!(
                listen = %args.listen,
                mode = mode.as_str(),
                sealing = sealing.as_str(),
                "enclave listening, locked until it fetches its data key from KMS (UnsealKms)"
            ),
        }
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

#[cfg(test)]
mod tests {
    #[test]
    fn kms_key_arns_are_checked_by_form() {
        for ok in [
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/k1",
        ] {
            assert!(super::valid_kms_key_arn(ok), "{ok}");
        }
        for bad in [
            "alias/sealgate",
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:alias/sealgate",
            "arn:aws:kms:us-east-1:1111:key/k",
            "arn:aws:kms::111122223333:key/k",
            "arn:aws:kms:us-east-1:111122223333:key/",
            "arn:aws:s3:us-east-1:111122223333:key/k",
        ] {
            assert!(!super::valid_kms_key_arn(bad), "{bad}");
        }
    }

    use super::Args;
    use clap::CommandFactory;

    /// `--help` is where an operator meets each flag: every one says what it is for.
    #[test]
    fn every_flag_has_a_one_line_doc() {
        let cmd = Args::command();
        cmd.clone().debug_assert();
        for arg in cmd.get_arguments() {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(!help.trim().is_empty(), "--{} has no help text", arg.get_id());
        }
    }
}
