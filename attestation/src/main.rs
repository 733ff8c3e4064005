//! `sealgate-verify`: the auditor's command-line tool.
//!
//! ```text
//! sealgate-verify log --url URL [--token JWT]... [--key VERIFIER_KEY] [--json]
//! ```
//!
//! Subcommands are one enum so that `attest` (check the attestation document and the
//! commitment) and `all` (both, with the key bound by attestation) slot in beside `log`.
//!
//! Exit codes (also in `--help`, see [`sealgate_attestation::report`]):
//! 0 verified, 2 usage, 3 fetch/HTTP/malformed response, 4 checkpoint signature or key
//! mismatch, 5 log content mismatch, 6 token not proven. With several failures the code
//! is that of the first failing check.
#![forbid(unsafe_code)]

use clap::{Args, Parser, Subcommand};
use sealgate_attestation::fetch::HttpSource;
use sealgate_attestation::jwt::Token;
use sealgate_attestation::log::{verify_log, LogOptions};
use sealgate_attestation::report::{self, FailureClass, EXIT_CODES_HELP};
use sealgate_shared::note::VerifierKey;
use std::io::Write;
use std::process::ExitCode;
use std::str::FromStr;

#[derive(Parser)]
#[command(
    name = "sealgate-verify",
    version,
    about = "Verify a sealgate deployment from the outside: its signed audit log and the tokens it issued",
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify the audit log: checkpoint signature, every leaf against the signed root,
    /// and that each --token is in the log.
    #[command(after_help = EXIT_CODES_HELP)]
    Log(LogArgs),
}

/// Where the host is and how to print; shared by every subcommand.
#[derive(Args)]
struct Target {
    /// Base URL of the sealgate host, e.g. http://127.0.0.1:8080
    #[arg(long, value_name = "URL")]
    url: String,
    /// Print one JSON object instead of the human-readable report.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct LogArgs {
    #[command(flatten)]
    target: Target,
    /// A compact JWT the host issued; prove its leaf is in the checkpointed log
    /// (repeatable). Its signature is not checked here.
    #[arg(long = "token", value_name = "JWT")]
    tokens: Vec<String>,
    /// Pin the checkpoint signer: the note verifier key `name+keyid+base64key` the host
    /// must serve. Without it the host's key is trusted on first fetch.
    #[arg(long, value_name = "VERIFIER_KEY")]
    key: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Log(args) => run_log(args),
    }
}

/// Writes to stdout; a closed pipe is not worth a panic.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn emit_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    emit(&format!("{text}\n"));
}

fn usage_failure(json: bool, reason: &str) -> ExitCode {
    if json {
        emit_json(&report::usage_json(reason));
    } else {
        eprint!("{}", report::usage_text(reason));
    }
    ExitCode::from(FailureClass::Usage.exit_code())
}

fn run_log(args: LogArgs) -> ExitCode {
    let json = args.target.json;
    let url = args.target.url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return usage_failure(json, &format!("--url must start with http:// or https://, got {url:?}"));
    }
    let pinned_key = match args.key.as_deref().map(VerifierKey::from_str).transpose() {
        Ok(k) => k,
        Err(e) => return usage_failure(json, &format!("--key: {e}")),
    };
    let mut tokens = Vec::with_capacity(args.tokens.len());
    for (i, jwt) in args.tokens.iter().enumerate() {
        match Token::parse(jwt.trim()) {
            Ok(t) => tokens.push(t),
            Err(e) => return usage_failure(json, &format!("--token #{}: {e}", i + 1)),
        }
    }

    let source = HttpSource::new(url);
    let result = verify_log(&source, &LogOptions { pinned_key, tokens });
    if json {
        emit_json(&report::render_json(&result));
    } else {
        emit(&report::render_text(&result));
    }
    ExitCode::from(result.exit_code())
}
