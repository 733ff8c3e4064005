//! Validation of the configuration the host proposes at `Hello`.
//!
//! The configuration is what attestation commits to, so it is checked as strictly as a
//! token request: an issuer the enclave would put in `iss`, audiences it would put in
//! `aud`, TTL bounds inside the hard [60, 3600] s, and a log origin usable as a
//! signed-note key name.

use sealgate_shared::protocol::EnclaveConfig;
use sealgate_shared::{TTL_MAX_SECONDS, TTL_MIN_SECONDS};

/// 1 to `max` printable ASCII characters, no spaces.
pub(crate) fn printable(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Loopback issuers may use plain http (simulator); everything else must be https.
fn valid_issuer(s: &str) -> bool {
    if !printable(s, 256) || s.ends_with('/') || s.contains(['?', '#']) {
        return false;
    }
    if s.strip_prefix("https://").is_some_and(|rest| !rest.is_empty()) {
        return true;
    }
    s.strip_prefix("http://").is_some_and(|rest| {
        let host = rest.split(['/', ':']).next().unwrap_or("");
        host == "localhost" || host.starts_with("127.") || rest.starts_with("[::1]")
    })
}

pub fn validate(c: &EnclaveConfig) -> Result<(), String> {
    if !valid_issuer(&c.issuer) {
        return Err(format!(
            "issuer {:?} must be an https URL (http only on loopback) without a trailing slash",
            c.issuer
        ));
    }
    if c.audiences.is_empty() || c.audiences.len() > 16 {
        return Err("between 1 and 16 audiences are required".into());
    }
    if let Some(a) = c.audiences.iter().find(|a| !printable(a, 256)) {
        return Err(format!("audience {a:?} must be 1-256 printable characters"));
    }
    if c.ttl_min_seconds < TTL_MIN_SECONDS
        || c.ttl_max_seconds > TTL_MAX_SECONDS
        || c.ttl_min_seconds > c.ttl_max_seconds
    {
        return Err(format!(
            "TTL bounds must satisfy {TTL_MIN_SECONDS} <= min <= max <= {TTL_MAX_SECONDS}"
        ));
    }
    if !printable(&c.log_origin, 256) || c.log_origin.contains('+') {
        return Err("log origin must be 1-256 printable characters without '+'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> EnclaveConfig {
        EnclaveConfig {
            issuer: "https://sealgate.example.com".into(),
            audiences: vec!["sts.amazonaws.com".into()],
            ttl_min_seconds: 60,
            ttl_max_seconds: 3600,
            log_origin: "sealgate.example.com/log".into(),
        }
    }

    #[test]
    fn accepts_good_and_loopback() {
        assert!(validate(&ok()).is_ok());
        let mut c = ok();
        c.issuer = "http://127.0.0.1:8080".into();
        assert!(validate(&c).is_ok());
    }

    #[test]
    fn rejects_each_bad_field() {
        type Mutation = Box<dyn Fn(&mut EnclaveConfig)>;
        let cases: Vec<Mutation> = vec![
            Box::new(|c| c.issuer = "http://evil.example.com".into()),
            Box::new(|c| c.issuer = "https://x/".into()),
            Box::new(|c| c.issuer = "https://".into()),
            Box::new(|c| c.audiences.clear()),
            Box::new(|c| c.audiences = vec!["has space".into()]),
            Box::new(|c| c.ttl_min_seconds = 59),
            Box::new(|c| c.ttl_max_seconds = 3601),
            Box::new(|c| c.ttl_min_seconds = 3000 + c.ttl_max_seconds),
            Box::new(|c| c.log_origin = "a+b".into()),
        ];
        for (i, f) in cases.iter().enumerate() {
            let mut c = ok();
            f(&mut c);
            assert!(validate(&c).is_err(), "case {i}");
        }
    }
}
