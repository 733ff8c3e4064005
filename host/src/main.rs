//! `sealgate serve …`, `sealgate sim …`, `sealgate witness …` and the agent commands
//! (`credential-process`, `exec`, `mcp`).

use clap::{Parser, Subcommand};
use sealgate_host::grants::webhook_net::WebhookArgs;
use sealgate_host::limits::LimitArgs;
use sealgate_host::{serve, serve_on, sim, ServeOptions, WitnessArgs};
use sealgate_shared::addr::Addr;
use sealgate_shared::note::VerifierKey;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sealgate",
    version,
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
        /// Address and port of the REST API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The issuer URL clients and AWS see (https, or http on loopback); fixed at the
        /// enclave's first start.
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
        #[command(flatten)]
        witnesses: WitnessArgs,
    },
    /// Simulator mode: start the enclave as a child and the host, on loopback.
    Sim {
        /// Address and port of the REST API (loopback unless --issuer is https).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// State directory (database, sealed keys, simulated NSM root, admin key).
        #[arg(long, default_value = "state")]
        state: PathBuf,
        /// Issuer URL [default: http://LISTEN]; fixed at the first start of --state.
        #[arg(long)]
        issuer: Option<String>,
        /// Allowed token audiences (repeatable); the first is the default.
        #[arg(long = "audience", default_value = "sts.amazonaws.com")]
        audiences: Vec<String>,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        webhooks: WebhookArgs,
        /// Witnesses to run in this process, each with its state in STATE/witness-N
        /// (0: none, unless --witness names some); fixed at the first start of --state.
        #[arg(long = "witnesses", value_name = "N", default_value_t = 1)]
        local_witnesses: u32,
        #[command(flatten)]
        witnesses: WitnessArgs,
    },
    /// Print a grant's AWS credentials as the AWS CLI's credential_process JSON
    /// (SEALGATE_URL and SEALGATE_TOKEN, an agent key, say where and as whom).
    CredentialProcess {
        #[command(flatten)]
        target: GrantTarget,
    },
    /// Run a command with a grant's AWS credentials, fetched just in time (SEALGATE_URL
    /// and SEALGATE_TOKEN, an agent key, say where and as whom).
    Exec {
        #[command(flatten)]
        target: GrantTarget,
        /// AWS_REGION for the command [default: the grant's first region].
        #[arg(long)]
        region: Option<String>,
        /// Serve the credentials on a loopback container endpoint even when one session
        /// covers the grant (it is served anyway when the grant outlives its session).
        #[arg(long)]
        refresh: bool,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Serve an agent's tools over MCP on stdin/stdout (SEALGATE_URL and SEALGATE_TOKEN,
    /// an agent key, say where and as whom); grants answer a secret_ref, never secrets.
    Mcp {
        #[command(flatten)]
        host: HostArgs,
        /// A workspace admin key for the byo_* tools (the host lets only admins manage
        /// BYO storage) [default: the agent key].
        #[arg(long = "admin-token", env = "SEALGATE_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// The agent's workspace id, which aws_describe_scope and the byo_* tools need.
        #[arg(long, env = "SEALGATE_WORKSPACE")]
        workspace: Option<String>,
        /// Let aws_get_credentials put AWS secrets, and oidc_mint_token the token, into
        /// the conversation (off: they answer how the runtime uses the grant instead).
        #[arg(long)]
        allow_inline_credentials: bool,
    },
    /// Re-verify the whole stored log offline: every leaf hashed afresh, every stored
    /// tile and the newest checkpoint's root compared (a restart only hashes the leaves
    /// after the stored tiles). Exit 1 when anything differs.
    CheckLog {
        /// SQLite database file (opened read-only; the host may keep running).
        #[arg(long)]
        db: PathBuf,
    },
    /// A C2SP tlog-witness: cosigns a log's checkpoints only when consistent with the
    /// last one it cosigned (see the witness module's docs).
    Witness {
        /// Address for the witness's HTTP API (`POST /add-checkpoint`).
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
        #[arg(long = "log", value_name = "VKEY", required_unless_present = "print_vkey")]
        logs: Vec<VerifierKey>,
        /// Create the key if needed, print the witness's vkey and exit (a log's enclave
        /// is configured with it before the log exists).
        #[arg(long)]
        print_vkey: bool,
    },
}

/// Which grant: one of the two.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct Which {
    /// The grant's id (gr_…).
    #[arg(long)]
    grant: Option<String>,
    /// The grant's secret_ref (secret_ref://aws/runs/RUN/GRANT), as the request answered.
    #[arg(long)]
    secret_ref: Option<String>,
}

/// The host and agent key the agent commands ask.
#[derive(clap::Args)]
struct HostArgs {
    /// The sealgate host.
    #[arg(long = "url", env = "SEALGATE_URL", hide_env_values = true)]
    url: Option<String>,
    /// An agent key (sg_…); better in the environment than on a command line.
    #[arg(long = "token", env = "SEALGATE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Which grant, and the host and agent key to ask.
#[derive(clap::Args)]
struct GrantTarget {
    #[command(flatten)]
    which: Which,
    #[command(flatten)]
    host: HostArgs,
}

impl GrantTarget {
    fn resolve(self) -> Result<(sealgate_host::agent::client::Sealgate, String), sealgate_host::agent::AgentError> {
        let grant = sealgate_host::agent::grant_id(self.which.grant.as_deref(), self.which.secret_ref.as_deref())?;
        Ok((
            sealgate_host::agent::client::Sealgate::new(self.host.url, self.host.token)?,
            grant,
        ))
    }
}

/// The agent commands: their own exit codes, no log lines on stderr unless asked.
fn agent_command(cmd: Cmd) -> ExitCode {
    use sealgate_host::agent::{credentials, exec};
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sealgate: cannot start the runtime: {e}");
            return ExitCode::from(5);
        }
    };
    let outcome = rt.block_on(async move {
        match cmd {
            Cmd::CredentialProcess { target } => {
                let (api, grant) = target.resolve()?;
                let c = credentials::fetch(&api, &grant).await?;
                println!("{}", credentials::process_json(&c));
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Exec {
                target,
                region,
                refresh,
                command,
            } => {
                let (api, grant) = target.resolve()?;
                exec::run(
                    api,
                    exec::ExecOptions {
                        grant,
                        region,
                        refresh,
                        command,
                    },
                )
                .await
            }
            Cmd::Mcp {
                host: HostArgs { url, token },
                admin_token,
                workspace,
                allow_inline_credentials,
            } => {
                use sealgate_host::agent::client::Sealgate;
                let api = Sealgate::new(url.clone(), token)?;
                let admin = match admin_token {
                    Some(t) => Sealgate::new(url, Some(t))?,
                    None => api.clone(),
                };
                sealgate_host::agent::mcp::run(sealgate_host::agent::mcp::McpOptions {
                    api,
                    admin,
                    workspace: workspace.filter(|w| !w.trim().is_empty()),
                    allow_inline_credentials,
                })
                .await?;
                Ok(ExitCode::SUCCESS)
            }
            _ => Err(sealgate_host::agent::AgentError::Usage("not an agent command".into())),
        }
    });
    // The runtime (and the credentials endpoint with it) goes when `exec`'s command has.
    rt.shutdown_background();
    outcome.unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.cmd,
        Cmd::Mcp { .. } | Cmd::CredentialProcess { .. } | Cmd::Exec { .. }
    ) {
        use tracing_subscriber::filter::{filter_fn, FilterExt};
        use tracing_subscriber::prelude::*;
        // Quiet unless RUST_LOG asks, and on stderr: the AWS CLI shows credential_process's
        // stderr, and stdout is `mcp`'s channel. rmcp logs whole requests and responses at
        // debug, and those can carry inline credentials or a token to prove, so its own
        // lines stop at info whatever RUST_LOG says.
        let env = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
        let no_payloads = filter_fn(|m| !m.target().starts_with("rmcp") || *m.level() <= tracing::Level::INFO);
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_filter(env.and(no_payloads)),
            )
            .init();
        return agent_command(cli.cmd);
    }
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
    match rt.block_on(run(cli)) {
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
            witnesses,
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
                    sim_state: None,
                    witnesses,
                    local_witnesses: Vec::new(),
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
            local_witnesses,
            mut witnesses,
        } => {
            // The port first, then the state directory's lock, then what is inside it: a
            // start that cannot listen creates nothing, and one that finds the state
            // in use touches neither the running enclave's socket nor its database.
            let listener = sealgate_host::bind(listen).await?;
            let state = sim::create_state_dir(&state)?;
            let _lock = sim::lock_state_dir(&state)?;
            let socket = state.join("enclave.sock");
            let mut child = sim::spawn_enclave(&socket, &state.join("enclave"))?;
            // Held here, not by `child`: `Child::wait` closes the child's stdin first, and
            // the enclave exits when its stdin closes (see `sim`).
            let _enclave_stdin = child.stdin.take();
            let issuer = issuer.unwrap_or_else(|| format!("http://{listen}"));
            let local = sim::local_witnesses(&state, local_witnesses).await?;
            for (i, w) in local.iter().enumerate() {
                witnesses.witnesses.insert(i, sim::endpoint(w)?);
            }
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
                sim_state: Some(state.clone()),
                witnesses,
                local_witnesses: local,
            };
            println!("mode: sim (simulated NSM and sealing; not for production)");
            // The enclave child is half of the system: if it dies (at start, say, on a
            // lock it cannot take, or later), the host stops with its exit status instead
            // of waiting for it or serving 503s. Its own reason is on stderr above.
            tokio::select! {
                served = serve_on(listener, opts, shutdown_signal()) => served,
                exited = child.wait() => Err(match exited {
                    Ok(status) => format!("the simulated enclave exited ({status}); its reason is logged above"),
                    Err(e) => format!("lost the simulated enclave: {e}"),
                }
                .into()),
            }
        }
        Cmd::CredentialProcess { .. } | Cmd::Exec { .. } | Cmd::Mcp { .. } => {
            Err("handled before the runtime starts".into())
        }
        Cmd::CheckLog { db } => {
            let r = sealgate_host::db::check::check_log(&db)?;
            println!(
                "{} leaves; {} full tiles rebuilt from them: {} differ from the stored ones, {} not stored",
                r.leaves, r.tiles_checked, r.tiles_differing_count, r.tiles_missing
            );
            for id in &r.tiles_differing {
                println!(
                    "DIFFERS tile {}/{}: leaves {}.. hash otherwise than stored",
                    id.level,
                    id.index,
                    id.index << (8 * (u32::from(id.level) + 1))
                );
            }
            for g in &r.gaps {
                println!("GAP the leaves stop being contiguous at index {g}");
            }
            match r.checkpoint {
                Some((size, true)) => println!("OK the newest stored checkpoint (size {size}) has the leaves' root"),
                Some((size, false)) => println!("MISMATCH the newest stored checkpoint (size {size}) has another root"),
                None => println!("no stored checkpoint"),
            }
            if !r.ok() {
                return Err("the stored log does not check out".into());
            }
            Ok(())
        }
        Cmd::Witness {
            listen,
            state,
            name,
            logs,
            print_vkey,
        } => {
            if print_vkey {
                println!("{}", sealgate_host::witness::prepare(&state, &name)?.verifier());
                return Ok(());
            }
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

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// `--help` is where an operator meets each flag: every one says what it is for.
    #[test]
    fn every_flag_of_every_command_has_a_one_line_doc() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut seen = 0;
        for cmd in std::iter::once(&cli).chain(cli.get_subcommands()) {
            for arg in cmd.get_arguments() {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(
                    !help.trim().is_empty(),
                    "`sealgate {}` --{} has no help text",
                    cmd.get_name(),
                    arg.get_id()
                );
                seen += 1;
            }
        }
        assert!(seen > 20, "the flags were not found ({seen})");
    }
}
