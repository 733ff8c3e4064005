//! `sealgate-verify`: the auditor's command-line tool.
//!
//! ```text
//! sealgate-verify log --url URL [--key sg_…] [--token JWT]... [--verifier-key VKEY]
//!                     [--at UNIX_SECONDS] [--json]
//! sealgate-verify attest --url URL [--nonce HEX] [--pcr N=HEX]... [--sim-root FILE]
//!                        [--max-age SECS] [--at UNIX_SECONDS] [--json]
//! sealgate-verify attest --document FILE [--url URL] [--commitment FILE] [...same]
//! sealgate-verify all --url URL [--nonce HEX] [--pcr N=HEX]... [--sim-root FILE]
//!                     [--max-age SECS] [--at UNIX_SECONDS] [--since FILE] [--save FILE]
//!                     [--key sg_…] [--token JWT]... [--json]
//! sealgate-verify monitor --url URL --state DIR [--interval SECS] [--once] [--keep-going]
//!                         [--post URL] [--key sg_…] [--pcr N=HEX]... [--sim-root FILE]
//!                         [--max-age SECS] [--json]
//! ```
//!
//! Three ways to read the log, one per kind of auditor (ARCHITECTURE §5):
//! - anonymous (no `--key`): the public leaf hashes recompute the checkpoint's root;
//!   nothing about the leaves' contents is read;
//! - `--key sg_…` (an `auditor` or `admin` key of a workspace, or the operator key):
//!   the same, and every leaf that key may read is checked against its hash;
//! - `--token JWT` (the token's holder, with or without `--key`): the token's own leaf
//!   is fetched by presenting the token, and proven in the checkpointed log.
//!
//! Subcommands are one enum so that `attest` (check the attestation document and the
//! commitment) and `all` (both, with the key bound by attestation) slot in beside `log`.
//!
//! Exit codes (also in `--help`, see [`sealgate_attestation::report`]):
//! 0 verified, 2 usage, 3 fetch/HTTP/malformed response, 4 checkpoint signature or key
//! mismatch, 5 log content mismatch, 6 token not proven; for `attest`: 7 certificate
//! chain, 8 document/COSE signature, 9 freshness, 10 nonce, 11 PCR, 12 commitment, 13
//! simulator root without `--sim-root` or vice versa; for `all --since`: 14 history
//! inconsistent (the log shrank or forked). With several failures the code is that of
//! the first failing check. `monitor`'s codes are in its own `--help`
//! ([`sealgate_attestation::monitor::run::MONITOR_HELP`]).
#![forbid(unsafe_code)]

use clap::{ArgGroup, Args, Parser, Subcommand};
use sealgate_attestation::all::{verify_all, AllOptions};
use sealgate_attestation::attest::{verify_attestation, AttestOptions, DEFAULT_MAX_AGE_SECS};
use sealgate_attestation::fetch::AttestSource;
use sealgate_attestation::fetch::HttpSource;
use sealgate_attestation::jwt::Token;
use sealgate_attestation::log::{verify_log, LogOptions, Scan};
use sealgate_attestation::monitor::post::Poster;
use sealgate_attestation::monitor::run::{self as monitor_run, RunOptions, MONITOR_HELP};
use sealgate_attestation::monitor::state::StateDir;
use sealgate_attestation::monitor::{HostAttestor, Monitor};
use sealgate_attestation::nitro::TrustRoot;
use sealgate_attestation::report::{self, FailureClass, EXIT_CODES_HELP};
use sealgate_shared::commitment::Commitment;
use sealgate_shared::note::VerifierKey;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

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
    /// Verify the audit log: checkpoint signature, every leaf hash against the signed
    /// root (public), with --key the leaves that key may read against their hashes, and
    /// that each --token is in the log.
    #[command(after_help = EXIT_CODES_HELP)]
    Log(LogArgs),
    /// Verify an attestation document: its certificate chain to the AWS Nitro root (or
    /// --sim-root), its COSE signature, freshness, nonce, PCRs, and that its user_data
    /// commits to the keys and configuration the host serves now.
    // Two forms, so the usage line names both: clap's generated one shows only --url,
    // and an auditor with a saved document would not learn it can work offline.
    #[command(after_help = EXIT_CODES_HELP, override_usage = ATTEST_USAGE)]
    Attest(AttestArgs),
    /// Everything, in order: attest the host; verify the checkpoint under the attested
    /// checkpoint key, the full log and each --token; with --since, that the log only
    /// grew since a checkpoint saved earlier; with --save, keep the current checkpoint.
    #[command(after_help = EXIT_CODES_HELP)]
    All(AllArgs),
    /// Watch the log continuously: each round, the checkpoint's signature under the
    /// attested key and its consistency with the last one seen, the JWKS and checkpoint
    /// key against the attested commitment (attesting again when they change), and with
    /// --key every new leaf, key.rotated and enclave.boot leaves included. Remembers what
    /// it verified in --state, so a restarted monitor still catches a rollback.
    #[command(after_help = MONITOR_HELP)]
    Monitor(MonitorArgs),
}

#[derive(Args)]
struct MonitorArgs {
    /// Base URL of the sealgate host, e.g. http://127.0.0.1:8080
    #[arg(long, value_name = "URL")]
    url: String,
    /// Print each finding as one JSON object per line (the body --post sends).
    #[arg(long)]
    json: bool,
    /// Directory for what the monitor has verified (monitor.json, replaced atomically
    /// after every round); created if missing. Reuse it across restarts.
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// Seconds between rounds (1 to 86400).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86400))]
    interval: u64,
    /// Run one round, then exit (0 if no violation, 3 if the round could not complete).
    #[arg(long)]
    once: bool,
    /// Report every violation (each once) and keep watching instead of exiting on the
    /// first.
    #[arg(long)]
    keep_going: bool,
    /// POST each finding as JSON to this URL (best effort: a failed POST is reported on
    /// stderr and the monitor goes on).
    #[arg(long, value_name = "URL")]
    post: Option<String>,
    #[command(flatten)]
    reader: Reader,
    /// Expected PCR value, e.g. 0=<96 hex digits> (repeatable), checked at every
    /// attestation.
    #[arg(long = "pcr", value_name = "N=HEX")]
    pcrs: Vec<String>,
    /// Trust this simulator root (PEM or DER, e.g. STATE/enclave/sim-nsm/root.pem)
    /// instead of the AWS Nitro root.
    #[arg(long, value_name = "FILE")]
    sim_root: Option<PathBuf>,
    /// Largest accepted age of an attestation document, in seconds. Each attestation
    /// is fetched with a fresh random nonce and judged at the time it is made.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_MAX_AGE_SECS)]
    max_age: u64,
}

/// `attest`'s usage line (clap prefixes `Usage: `): fetch from a host, or verify a saved
/// document offline against a commitment file (or against what a host serves now).
const ATTEST_USAGE: &str = "\
sealgate-verify attest --url URL [OPTIONS]
       sealgate-verify attest --document FILE [--commitment FILE | --url URL] [OPTIONS]";

/// The attestation checks' options, shared by `attest` and `all`.
#[derive(Args)]
struct AttestChecks {
    /// Nonce (hex, at most 64 bytes) to fetch with and to expect in the document. When
    /// fetching without it, a random nonce is used.
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,
    /// Expected PCR value, e.g. 0=<96 hex digits> (repeatable).
    #[arg(long = "pcr", value_name = "N=HEX")]
    pcrs: Vec<String>,
    /// Trust this simulator root (PEM or DER, e.g. STATE/enclave/sim-nsm/root.pem)
    /// instead of the AWS Nitro root. Simulator documents prove nothing about hardware.
    #[arg(long, value_name = "FILE")]
    sim_root: Option<PathBuf>,
    /// Largest accepted age of the document, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_MAX_AGE_SECS)]
    max_age: u64,
    /// Judge certificates and freshness (with `all`, also each --token's expiry) at this
    /// Unix time instead of now.
    #[arg(long, value_name = "UNIX_SECONDS")]
    at: Option<u64>,
}

#[derive(Args)]
struct AllArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    checks: AttestChecks,
    /// A compact JWT the host issued; prove its leaf is in the checkpointed log
    /// (repeatable). Its leaf is fetched by presenting the token (the holder reads its
    /// own leaf); its signature is not checked here.
    #[arg(long = "token", value_name = "JWT")]
    tokens: Vec<String>,
    #[command(flatten)]
    reader: Reader,
    /// A signed checkpoint note saved earlier (by --save, or from
    /// /v1/audit/checkpoint): it must verify under the attested key, and the current
    /// log must extend it (consistency proof); a shrunk or forked log exits 14.
    #[arg(long, value_name = "FILE")]
    since: Option<PathBuf>,
    /// After every check passed, write the current checkpoint note to FILE (for the
    /// next run's --since).
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
}

#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true).multiple(true).args(["url", "document"])))]
struct AttestArgs {
    /// Base URL of the sealgate host. Without --document the document is fetched from
    /// it; with --document the saved document is verified and the commitment is still
    /// compared with what the host serves.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Verify a saved document (raw COSE_Sign1 bytes, or its base64) instead of fetching.
    #[arg(long, value_name = "FILE")]
    document: Option<PathBuf>,
    #[command(flatten)]
    checks: AttestChecks,
    /// Offline (no --url): a commitment JSON file that user_data must be the digest of.
    #[arg(long, value_name = "FILE", conflicts_with = "url")]
    commitment: Option<PathBuf>,
    /// Print one JSON object instead of the human-readable report.
    #[arg(long)]
    json: bool,
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

/// Whose eyes read the log; shared by `log` and `all`.
#[derive(Args)]
struct Reader {
    /// An API key (`sg_…`) that may read leaf contents: an auditor or admin key of a
    /// workspace (its leaves), or the operator key (all). The leaves it may read are
    /// fetched and each must hash to the hash that went into the root; the others are
    /// checked by hash alone. Without it only the public hashes are read.
    #[arg(long = "key", value_name = "sg_…")]
    api_key: Option<String>,
}

#[derive(Args)]
struct LogArgs {
    #[command(flatten)]
    target: Target,
    /// A compact JWT the host issued; prove its leaf is in the checkpointed log
    /// (repeatable). Its leaf is fetched by presenting the token (the holder reads its
    /// own leaf); its signature is not checked here.
    #[arg(long = "token", value_name = "JWT")]
    tokens: Vec<String>,
    #[command(flatten)]
    reader: Reader,
    /// Pin the checkpoint signer: the note verifier key `name+keyid+base64key` the host
    /// must serve. Without it the host's key is trusted on first fetch.
    #[arg(long, value_name = "VKEY")]
    verifier_key: Option<String>,
    /// Judge each --token's expiry at this Unix time instead of now. An expired token
    /// is still proven (exit 0) and the report says it expired.
    #[arg(long, value_name = "UNIX_SECONDS")]
    at: Option<u64>,
}

/// The `--key` as given, checked to be an API key: `sg_` and 43 base64url characters.
/// A verifier key here is the old meaning of `--key` (now `--verifier-key`).
fn api_key(reader: &Reader) -> Result<Option<String>, String> {
    let Some(key) = reader.api_key.as_deref().map(str::trim) else {
        return Ok(None);
    };
    let body = key.strip_prefix("sg_").unwrap_or("");
    if body.len() == 43
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Ok(Some(key.to_string()));
    }
    if VerifierKey::from_str(key).is_ok() {
        return Err("--key takes an sg_ API key (auditor, admin or operator); pin a checkpoint verifier key with --verifier-key".into());
    }
    Err("--key must be an sg_ API key: sg_ followed by 43 base64url characters".into())
}

/// The source for `url`, reading contents with `key` when given.
fn source(url: &str, key: Option<&str>) -> (HttpSource, Scan) {
    let src = HttpSource::new(url);
    match key {
        Some(k) => (src.with_api_key(k), Scan::Contents),
        None => (src, Scan::Hashes),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Log(args) => run_log(args),
        Command::Attest(args) => run_attest(args),
        Command::All(args) => run_all(args),
        Command::Monitor(args) => run_monitor(args),
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

fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("--url must start with http:// or https://, got {url:?}"))
    }
}

fn parse_tokens(jwts: &[String]) -> Result<Vec<Token>, String> {
    jwts.iter()
        .enumerate()
        .map(|(i, jwt)| Token::parse(jwt.trim()).map_err(|e| format!("--token #{}: {e}", i + 1)))
        .collect()
}

fn run_log(args: LogArgs) -> ExitCode {
    let json = args.target.json;
    let url = args.target.url.trim();
    if let Err(e) = check_url(url) {
        return usage_failure(json, &e);
    }
    let pinned_key = match args.verifier_key.as_deref().map(VerifierKey::from_str).transpose() {
        Ok(k) => k,
        Err(e) => return usage_failure(json, &format!("--verifier-key: {e}")),
    };
    let key = match api_key(&args.reader) {
        Ok(k) => k,
        Err(e) => return usage_failure(json, &e),
    };
    let tokens = match parse_tokens(&args.tokens) {
        Ok(t) => t,
        Err(e) => return usage_failure(json, &e),
    };

    let (source, scan) = source(url, key.as_deref());
    let result = verify_log(
        &source,
        &LogOptions {
            pinned_key,
            tokens,
            scan,
            judged_at: Some(args.at.unwrap_or_else(now)),
        },
    );
    if json {
        emit_json(&report::render_json(&result));
    } else {
        emit(&report::render_text(&result));
    }
    ExitCode::from(result.exit_code())
}

/// A saved document: raw COSE bytes (a CBOR array of four starts with 0x84), or base64
/// as the API serves it.
fn read_document(path: &PathBuf) -> Result<Vec<u8>, String> {
    let raw = std::fs::read(path).map_err(|e| format!("--document {}: {e}", path.display()))?;
    if raw.first() == Some(&0x84) {
        return Ok(raw);
    }
    let text = String::from_utf8(raw).map_err(|_| format!("--document {}: neither COSE nor base64", path.display()))?;
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text.trim())
        .map_err(|_| format!("--document {}: neither COSE nor base64", path.display()))
}

fn parse_pcr(arg: &str) -> Result<(u64, Vec<u8>), String> {
    let (n, h) = arg.split_once('=').ok_or(format!("--pcr {arg:?}: expected N=HEX"))?;
    let n: u64 = n
        .trim()
        .parse()
        .ok()
        .filter(|n| *n < 32)
        .ok_or(format!("--pcr {arg:?}: PCR index must be 0 to 31"))?;
    let v = hex::decode(h.trim()).map_err(|e| format!("--pcr {arg:?}: {e}"))?;
    if v.len() != sealgate_attestation::nitro::PCR_LEN {
        return Err(format!("--pcr {arg:?}: a SHA-384 PCR is 48 bytes (96 hex digits)"));
    }
    Ok((n, v))
}

fn random_nonce() -> Result<Vec<u8>, String> {
    let mut n = vec![0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut n)
        .map_err(|_| "the system random generator failed".to_string())?;
    Ok(n)
}

/// The attestation options from the shared flags; `fetching` when the document is
/// fetched from a host (a random nonce is then used unless one is given).
fn attest_options(args: &AttestChecks, fetching: bool) -> Result<AttestOptions, String> {
    let mut opts = attest_template(args.sim_root.as_ref(), &args.pcrs, args.max_age)?;
    opts.at = args.at;
    match &args.nonce {
        Some(h) => {
            let n = hex::decode(h.trim()).map_err(|e| format!("--nonce: {e}"))?;
            if n.is_empty() || n.len() > 64 {
                return Err("--nonce must be 1 to 64 bytes".into());
            }
            opts.nonce = Some(n);
        }
        None if fetching => {
            opts.nonce = Some(random_nonce()?);
            opts.nonce_generated = true;
        }
        None => {}
    }
    Ok(opts)
}

/// The trust root, PCRs and max age (shared by `attest`, `all` and `monitor`).
fn attest_template(sim_root: Option<&PathBuf>, pcrs: &[String], max_age: u64) -> Result<AttestOptions, String> {
    let root = match sim_root {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("--sim-root {}: {e}", path.display()))?;
            TrustRoot::simulator(&bytes, &path.display().to_string())
                .map_err(|e| format!("--sim-root {}: {e}", path.display()))?
        }
        None => TrustRoot::aws()?,
    };
    let mut opts = AttestOptions::new(root);
    opts.max_age_secs = max_age;
    opts.pcrs = pcrs.iter().map(|p| parse_pcr(p)).collect::<Result<_, _>>()?;
    Ok(opts)
}

fn run_attest(args: AttestArgs) -> ExitCode {
    let json = args.json;
    let url = args.url.as_deref().map(str::trim);
    if let Some(Err(e)) = url.map(check_url) {
        return usage_failure(json, &e);
    }
    let mut opts = match attest_options(&args.checks, args.url.is_some() && args.document.is_none()) {
        Ok(o) => o,
        Err(e) => return usage_failure(json, &e),
    };
    if let Some(path) = &args.document {
        match read_document(path) {
            Ok(d) => opts.document = Some(d),
            Err(e) => return usage_failure(json, &e),
        }
    }
    if let Some(path) = &args.commitment {
        let c = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|raw| serde_json::from_slice::<Commitment>(&raw).map_err(|e| e.to_string()));
        match c {
            Ok(c) => opts.expected_commitment = Some(c),
            Err(e) => return usage_failure(json, &format!("--commitment {}: {e}", path.display())),
        }
    }
    let source = url.map(HttpSource::new);
    let report = verify_attestation(source.as_ref().map(|s| s as &dyn AttestSource), &opts, now());
    if json {
        emit_json(&report::render_attest_json(&report));
    } else {
        emit(&report::render_attest_text(&report));
    }
    ExitCode::from(report.exit_code())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `text` to `path` through a temporary file in the same directory, so an
/// interrupted save never leaves half a checkpoint behind.
fn save_note(path: &PathBuf, text: &str) -> Result<(), String> {
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("--save {}: {e}", path.display()))
}

fn run_all(args: AllArgs) -> ExitCode {
    let json = args.target.json;
    let url = args.target.url.trim();
    if let Err(e) = check_url(url) {
        return usage_failure(json, &e);
    }
    let tokens = match parse_tokens(&args.tokens) {
        Ok(t) => t,
        Err(e) => return usage_failure(json, &e),
    };
    let since = match &args.since {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) => return usage_failure(json, &format!("--since {}: {e}", path.display())),
        },
        None => None,
    };
    let attest = match attest_options(&args.checks, true) {
        Ok(o) => o,
        Err(e) => return usage_failure(json, &e),
    };
    let key = match api_key(&args.reader) {
        Ok(k) => k,
        Err(e) => return usage_failure(json, &e),
    };
    let (source, scan) = source(url, key.as_deref());
    let opts = AllOptions {
        attest,
        tokens,
        since,
        scan,
    };
    let mut report = verify_all(&source, &source, &opts, now());
    if let Some(path) = &args.save {
        if report.checks_passed() {
            let saved = match report.verified_note() {
                Some(note) => save_note(path, note).map(|()| {
                    let size = report
                        .log
                        .as_ref()
                        .ok()
                        .and_then(|l| l.checkpoint.as_ref())
                        .map(|c| c.size)
                        .unwrap_or_default();
                    format!("checkpoint of size {size} written to {}", path.display())
                }),
                None => Err("no verified checkpoint to save".to_string()),
            };
            report.save = Some(saved);
        }
    }
    if json {
        emit_json(&report::render_all_json(&report));
    } else {
        emit(&report::render_all_text(&report));
    }
    ExitCode::from(report.exit_code())
}

/// The monitor's output: findings on stdout, failed POSTs on stderr.
struct StdOutput;

impl monitor_run::Output for StdOutput {
    fn line(&mut self, text: &str) {
        emit(&format!("{text}\n"));
    }
    fn warn(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

fn run_monitor(args: MonitorArgs) -> ExitCode {
    let json = args.json;
    let url = args.url.trim();
    if let Err(e) = check_url(url) {
        return usage_failure(json, &e);
    }
    if let Some(Err(e)) = args.post.as_deref().map(check_url) {
        return usage_failure(json, &format!("--post: {e}"));
    }
    let template = match attest_template(args.sim_root.as_ref(), &args.pcrs, args.max_age) {
        Ok(o) => o,
        Err(e) => return usage_failure(json, &e),
    };
    let key = match api_key(&args.reader) {
        Ok(k) => k,
        Err(e) => return usage_failure(json, &e),
    };
    let dir = StateDir::new(&args.state);
    let state = match dir.load() {
        Ok(s) => s,
        Err(e) => return usage_failure(json, &format!("--state: {e}")),
    };
    // Save once before the first round, so an unwritable directory is a usage error
    // now rather than after a round's findings.
    if let Err(e) = dir.save(&state) {
        return usage_failure(json, &format!("--state: {e}"));
    }
    let (source, scan) = source(url, key.as_deref());
    let attestor = HostAttestor {
        src: &source,
        template,
        nonce: random_nonce,
        clock: now,
    };
    let mut monitor = Monitor::new(&source, &source, &attestor, scan == Scan::Contents, state);
    let opts = RunOptions {
        url: url.to_string(),
        json,
        keep_going: args.keep_going,
        once: args.once,
        interval: std::time::Duration::from_secs(args.interval),
        post: args.post.as_deref().map(|u| Poster::new(u.trim())),
        clock: now,
    };
    ExitCode::from(monitor_run::run(&mut monitor, &dir, &opts, &mut StdOutput))
}
