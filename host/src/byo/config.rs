//! BYO knobs, read once from the environment so that the shared start-up code needs no
//! new flags. A malformed value is reported in the log and the default used: a typo in
//! an optional tuning variable should not stop the broker.

use std::sync::OnceLock;
use std::time::Duration;

pub struct Settings {
    /// Limit on each AWS call into a customer account (`SEALGATE_BYO_PROBE_TIMEOUT_MS`,
    /// default 10 s). A customer account that hangs must not hold a request forever.
    pub call_timeout: Duration,
    /// Largest object hashed by streaming it (`SEALGATE_BYO_MAX_HASH_BYTES`, default
    /// 256 MiB) when S3 holds no whole-object SHA-256 for it.
    pub max_hash_bytes: u64,
    /// Attempts per call when AWS throttles or has a transient 5xx
    /// (`SEALGATE_BYO_MAX_ATTEMPTS`, default 4).
    pub max_attempts: u32,
    /// First back-off between attempts, doubled each time (`SEALGATE_BYO_BACKOFF_MS`,
    /// default 200 ms, capped at 5 s per wait).
    pub backoff: Duration,
    /// The principal customers trust (`SEALGATE_BYO_PRINCIPAL_ARN`); without it, the
    /// host's own identity from STS `GetCallerIdentity`.
    pub principal_arn: Option<String>,
}

fn number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => {
                tracing::warn!("{name}={v:?} is not a positive integer; using {default}");
                default
            }
        },
    }
}

pub fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| Settings {
        call_timeout: Duration::from_millis(number("SEALGATE_BYO_PROBE_TIMEOUT_MS", 10_000)),
        max_hash_bytes: number("SEALGATE_BYO_MAX_HASH_BYTES", 256 * 1024 * 1024),
        max_attempts: number("SEALGATE_BYO_MAX_ATTEMPTS", 4).min(10) as u32,
        backoff: Duration::from_millis(number("SEALGATE_BYO_BACKOFF_MS", 200)),
        principal_arn: std::env::var("SEALGATE_BYO_PRINCIPAL_ARN")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
    })
}

/// The host name recorded with every BYO call (which worker made it).
pub fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into())
    })
}
