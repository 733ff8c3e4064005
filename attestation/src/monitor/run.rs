//! The monitor's loop: a round, its findings printed (and posted), the state saved,
//! then sleep until the next round; stop on the first violation unless `--keep-going`,
//! or after one round with `--once`.
//!
//! Exit codes (the classes of [`crate::report`]): the first violation's class (e.g. 14
//! for `checkpoint.rollback`/`checkpoint.fork`, 12 for `jwks.unattested_key`); with
//! `--once` and no violation, 0 when the round completed and 3 when it could not (the
//! host was unreachable); 2 when the state cannot be read or saved (a monitor that
//! cannot remember must not pretend to watch). Without `--once`, and with
//! `--keep-going`, it runs until stopped.

use super::finding::{kind, Finding, Level};
use super::post::Poster;
use super::state::StateDir;
use super::Monitor;
use crate::report::FailureClass;
use std::time::Duration;

/// How the loop runs and reports.
pub struct RunOptions {
    /// The host, named in every JSON finding.
    pub url: String,
    /// JSON lines instead of text.
    pub json: bool,
    pub keep_going: bool,
    pub once: bool,
    pub interval: Duration,
    pub post: Option<Poster>,
    /// Unix time for the findings' `at`.
    pub clock: fn() -> u64,
}

/// Where the loop's output goes (stdout and stderr in the binary; buffers in tests).
pub trait Output {
    fn line(&mut self, text: &str);
    fn warn(&mut self, text: &str);
}

/// Runs rounds until a reason to stop; returns the exit code.
pub fn run(monitor: &mut Monitor, dir: &StateDir, opts: &RunOptions, out: &mut dyn Output) -> u8 {
    let mut first_violation: Option<FailureClass> = None;
    let mut findings = monitor.start();
    loop {
        findings.extend(monitor.round());
        let mut errors = false;
        for f in &findings {
            emit(f, opts, out);
            match f.level {
                Level::Violation => {
                    first_violation.get_or_insert(f.class.unwrap_or(FailureClass::History));
                }
                Level::Error => errors = true,
                Level::Ok => {}
            }
        }
        findings.clear();
        if let Err(e) = dir.save(&monitor.state) {
            emit(
                &Finding::error(kind::STATE, FailureClass::Usage, format!("cannot save the state: {e}")),
                opts,
                out,
            );
            return FailureClass::Usage.exit_code();
        }
        if let Some(c) = first_violation {
            if !opts.keep_going || opts.once {
                return c.exit_code();
            }
        }
        if opts.once {
            return if errors { FailureClass::Fetch.exit_code() } else { 0 };
        }
        std::thread::sleep(opts.interval);
    }
}

fn emit(f: &Finding, opts: &RunOptions, out: &mut dyn Output) {
    let json = f.json(&opts.url, (opts.clock)());
    if opts.json {
        out.line(&json.to_string());
    } else {
        out.line(&f.text());
    }
    if let Some(p) = &opts.post {
        if let Err(e) = p.post(&json) {
            out.warn(&format!("{:<9} {}: {e} (not fatal)", Level::Error.as_str(), kind::POST));
        }
    }
}

/// `monitor --help`'s epilogue: the output format, the kinds, and the exit codes.
pub const MONITOR_HELP: &str = "\
Output: one line per finding, `OK`, `VIOLATION` or `ERROR`, then its kind and detail
(--json: one JSON object per line, {level, kind, detail, class, exit_code, url, at},
also what --post sends). ERROR means the round could not check (host unreachable,
malformed answer): it is retried next round and is not a violation.
Violations: checkpoint.signature, checkpoint.rollback, checkpoint.fork,
checkpoint.key_changed, jwks.unattested_key, attestation.failed, log.entries,
key.rotation_unlogged, enclave.boot_mismatch, enclave.genesis_misplaced.

Exit codes:
  0  --once: the round completed without a violation
  2  usage, or the --state directory cannot be read or written
  3  --once: the round could not complete (fetch/HTTP error), no violation
  4  checkpoint.signature, checkpoint.key_changed
  5  log.entries, key.rotation_unlogged, enclave.boot_mismatch,
     enclave.genesis_misplaced (--key)
  7-13  attestation.failed: the attest class (chain, document, freshness, nonce,
     PCR, commitment, root kind; see `attest --help`)
 12  jwks.unattested_key
 14  checkpoint.rollback, checkpoint.fork
The code is that of the first violation. Without --once the monitor exits only on a
violation, and with --keep-going never: it reports every violation once and runs
until it is stopped.";
