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
///
/// The URL is parsed (WHATWG rules, the `url` crate), never matched as text: a prefix
/// test on the authority accepted `http://127.evil.com` (a domain, not an address) and
/// `http://127.0.0.1@evil.com` (userinfo `127.0.0.1`, host `evil.com`). Userinfo is
/// refused in every scheme: it has no place in an `iss` claim.
fn valid_issuer(s: &str) -> bool {
    if !printable(s, 256) || s.ends_with('/') || s.contains(['?', '#', '\\']) {
        return false;
    }
    // The parser forgives `http:host` and `http:\\host`; an issuer is written out in full.
    if !(s.starts_with("https://") || s.starts_with("http://")) {
        return false;
    }
    let Ok(u) = url::Url::parse(s) else {
        return false;
    };
    if !u.username().is_empty() || u.password().is_some() || u.query().is_some() || u.fragment().is_some() {
        return false;
    }
    match (u.scheme(), u.host()) {
        ("https", Some(url::Host::Domain(d))) => !d.is_empty(),
        ("https", Some(_)) => true,
        ("http", Some(host)) => is_loopback(&host),
        _ => false,
    }
}

/// `localhost` exactly, an IPv4 address in 127.0.0.0/8, or `[::1]`.
fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => *d == "localhost",
        url::Host::Ipv4(a) => a.is_loopback(),
        url::Host::Ipv6(a) => a.is_loopback(),
    }
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

    /// Hole 9: the loopback exception was a text-prefix test on the authority.
    #[test]
    fn loopback_issuer_is_parsed_not_prefix_matched() {
        let refused = [
            "http://127.evil.com",
            "http://127.0.0.1@evil.com",
            "http://127.0.0.1:8080@evil.com",
            "http://localhost@evil.com",
            "http://user:pw@127.0.0.1",
            "http://user@localhost:8080",
            "https://user:pw@sealgate.example.com",
            "https://user@sealgate.example.com",
            "http://localhost.evil.com",
            "http://localhost.evil.com:8080",
            "http://[::1].evil.com",
            "http://[::2]:80",
            "http://10.0.0.1",
            "http://evil.com/127.0.0.1",
            "http://evil.com#127.0.0.1",
            "ftp://127.0.0.1",
            "http://",
            "http:127.0.0.1",
            "127.0.0.1:8080",
            "http://127.0.0.1\\@evil.com",
        ];
        for issuer in refused {
            assert!(!valid_issuer(issuer), "{issuer} must be refused");
        }
        let accepted = [
            "http://127.0.0.1",
            "http://127.0.0.1:8080",
            "http://127.1.2.3:9",
            "http://localhost",
            "http://localhost:8080",
            "http://[::1]",
            "http://[::1]:80",
            "http://[::1]:8080/sealgate",
            "https://sealgate.example.com",
            "https://sealgate.example.com:8443/tenant",
        ];
        for issuer in accepted {
            assert!(valid_issuer(issuer), "{issuer} must be accepted");
        }
    }

    #[test]
    fn validate_refuses_look_alike_loopback_issuers() {
        type Mutation = Box<dyn Fn(&mut EnclaveConfig)>;
        let cases: Vec<Mutation> = vec![
            Box::new(|c| c.issuer = "http://127.0.0.1@evil.com".into()),
            Box::new(|c| c.issuer = "http://127.evil.com".into()),
        ];
        for (i, f) in cases.iter().enumerate() {
            let mut c = ok();
            f(&mut c);
            assert!(validate(&c).is_err(), "case {i}");
        }
    }
}
