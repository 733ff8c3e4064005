//! Why a host stops before it serves, in words an operator can act on.
//!
//! Start-up tells two kinds of trouble apart (issue 10): an enclave that is not up yet
//! is waited for, but a refusal no retry fixes (a busy port, a state already in use, a
//! configuration the enclave will not take) ends the process with a non-zero status
//! and one message that says what to do, instead of retrying forever under a service
//! manager that then reports the unit healthy.

use sealgate_shared::protocol::{EnclaveConfig, ErrorCode, WireError};
use sealgate_shared::state_lock::LockError;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Nothing is created before the port is ours: a failed bind leaves no state behind.
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    /// Another process holds the state directory or the database.
    #[error(transparent)]
    InUse(#[from] LockError),
    /// The enclave is sealed to another configuration than this start asks for.
    #[error("{}", mismatch_message(sealed, asked, sim_state.as_ref()))]
    ConfigMismatch {
        sealed: Box<EnclaveConfig>,
        asked: Box<EnclaveConfig>,
        /// `sealgate sim`'s state directory (its advice names `--listen` and `--state`);
        /// `None` for `sealgate serve`.
        sim_state: Option<PathBuf>,
    },
    /// The enclave refused the configuration itself (e.g. an http issuer off loopback).
    #[error("the enclave at {enclave} refused this configuration: {reason}")]
    ConfigRefused { enclave: String, reason: String },
    /// Host and enclave come from different builds.
    #[error(
        "the enclave at {enclave} speaks another protocol ({reason}): run a host and an enclave from the same build"
    )]
    Version { enclave: String, reason: String },
}

impl StartError {
    /// The refusal for a `Hello` the enclave answered with `w`; `sealed` is what the
    /// enclave's `Status` says it is sealed to, when it could say.
    pub fn refused(
        enclave: String,
        w: WireError,
        asked: &EnclaveConfig,
        sealed: Option<EnclaveConfig>,
        sim_state: Option<PathBuf>,
    ) -> Self {
        match (w.code, sealed) {
            (ErrorCode::ConfigMismatch, Some(sealed)) => StartError::ConfigMismatch {
                sealed: Box::new(sealed),
                asked: Box::new(asked.clone()),
                sim_state,
            },
            (ErrorCode::Version, _) => StartError::Version {
                enclave,
                reason: w.message,
            },
            _ => StartError::ConfigRefused {
                enclave,
                reason: w.message,
            },
        }
    }
}

/// "issuer X" plus every other field that differs from `other`, in plain words.
fn fields(c: &EnclaveConfig, other: &EnclaveConfig) -> String {
    let mut out = vec![format!("issuer {}", c.issuer)];
    if c.audiences != other.audiences {
        out.push(format!("audiences {}", c.audiences.join(", ")));
    }
    if (c.ttl_min_seconds, c.ttl_max_seconds) != (other.ttl_min_seconds, other.ttl_max_seconds) {
        out.push(format!("token TTL {}-{} s", c.ttl_min_seconds, c.ttl_max_seconds));
    }
    if c.log_origin != other.log_origin && c.issuer == other.issuer {
        out.push(format!("log origin {}", c.log_origin));
    }
    out.join(" and ")
}

/// The flags that start a host with the sealed configuration again.
fn flags_for(sealed: &EnclaveConfig, asked: &EnclaveConfig, sim: bool) -> String {
    let mut flags = Vec::new();
    if sealed.issuer != asked.issuer {
        // `sim` defaults its issuer to http://LISTEN, so the old port is usually the answer.
        let listen = sealed
            .issuer
            .strip_prefix("http://")
            .and_then(|a| a.parse::<SocketAddr>().ok());
        match listen {
            Some(addr) if sim => flags.push(format!("--listen {addr} (or --issuer {})", sealed.issuer)),
            _ => flags.push(format!("--issuer {}", sealed.issuer)),
        }
    }
    if sealed.audiences != asked.audiences {
        flags.extend(sealed.audiences.iter().map(|a| format!("--audience {a}")));
    }
    if flags.is_empty() {
        // Only the TTL bounds or the origin differ: this host is another build.
        return "the same sealgate build and flags it was first started with".into();
    }
    flags.join(" ")
}

fn mismatch_message(sealed: &EnclaveConfig, asked: &EnclaveConfig, sim_state: Option<&PathBuf>) -> String {
    let (what, fresh) = match sim_state {
        Some(dir) => (
            format!("the state directory {}", dir.display()),
            "point --state at a new directory to begin a new log".to_string(),
        ),
        None => (
            "the enclave".to_string(),
            "begin a new log with a fresh enclave (a new sealgate-enclave --state) and a new --db".to_string(),
        ),
    };
    format!(
        "{what} was first started with {}, and this start asks for {}. The issuer and audiences are \
         fixed at the first start (tokens and the attested log name them). Either start again with {}, \
         or {fresh}.",
        fields(sealed, asked),
        fields(asked, sealed),
        flags_for(sealed, asked, sim_state.is_some()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(issuer: &str, audiences: &[&str]) -> EnclaveConfig {
        EnclaveConfig {
            issuer: issuer.into(),
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            ttl_min_seconds: 60,
            ttl_max_seconds: 3600,
            log_origin: crate::log_origin(issuer),
            witnesses: vec![],
            witness_quorum: 0,
        }
    }

    #[test]
    fn a_sim_mismatch_names_both_configurations_and_both_ways_out() {
        let e = StartError::ConfigMismatch {
            sealed: Box::new(config("http://127.0.0.1:4001", &["sts.amazonaws.com"])),
            asked: Box::new(config("http://127.0.0.1:4002", &["sts.amazonaws.com"])),
            sim_state: Some("/srv/state".into()),
        };
        let m = e.to_string();
        assert!(m.contains("issuer http://127.0.0.1:4001"), "{m}");
        assert!(m.contains("asks for issuer http://127.0.0.1:4002"), "{m}");
        assert!(m.contains("--listen 127.0.0.1:4001"), "{m}");
        assert!(m.contains("--state"), "{m}");
        assert!(!m.contains("audiences sts"), "equal audiences are not noise in it: {m}");
        assert!(!m.contains("EnclaveConfig"), "{m}");
    }

    #[test]
    fn a_serve_mismatch_names_the_issuer_and_audience_flags() {
        let e = StartError::ConfigMismatch {
            sealed: Box::new(config("https://a.example.com", &["sts.amazonaws.com", "x"])),
            asked: Box::new(config("https://a.example.com", &["sts.amazonaws.com"])),
            sim_state: None,
        };
        let m = e.to_string();
        assert!(m.contains("audiences sts.amazonaws.com, x"), "{m}");
        assert!(m.contains("--audience sts.amazonaws.com --audience x"), "{m}");
        assert!(m.contains("--db"), "{m}");
        assert!(!m.contains("--listen"), "{m}");
    }
}
