//! Validation of the configuration the host proposes at `Hello`.
//!
//! The configuration is what attestation commits to, so it is checked as strictly as a
//! token request: an issuer the enclave would put in `iss`, audiences it would put in
//! `aud`, TTL bounds inside the hard [60, 3600] s, and a log origin usable as a
//! signed-note key name, and witnesses that are well-formed, distinct C2SP cosigner
//! keys with a quorum they can reach.

use sealgate_shared::cosignature::CosignerKey;
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
    witnesses(c).map(|_| ())
}

/// Most witnesses a configuration may name (each costs a verification per checkpoint).
pub const MAX_WITNESSES: usize = 16;

/// The configured witnesses' keys, checked: each a C2SP Ed25519 `cosignature/v1` vkey
/// written exactly as it parses back, no key twice (one key under two names is one
/// witness, and would let a quorum be met by fewer parties than it says), and a quorum
/// of 1..=n (0 without witnesses).
pub fn witnesses(c: &EnclaveConfig) -> Result<Vec<CosignerKey>, String> {
    if c.witnesses.len() > MAX_WITNESSES {
        return Err(format!("at most {MAX_WITNESSES} witnesses"));
    }
    let mut keys: Vec<CosignerKey> = Vec::with_capacity(c.witnesses.len());
    for v in &c.witnesses {
        let key: CosignerKey = v
            .parse()
            .map_err(|e| format!("witness {v:?} is not a cosignature/v1 verifier key: {e}"))?;
        if key.to_string() != *v {
            return Err(format!("witness {v:?} is not in canonical form ({key})"));
        }
        if keys.iter().any(|k| k.public_key() == key.public_key()) {
            return Err(format!("witness {v:?} repeats a key already configured"));
        }
        keys.push(key);
    }
    let q = c.witness_quorum as usize;
    if keys.is_empty() && q != 0 {
        return Err("a witness quorum needs witnesses".into());
    }
    if !keys.is_empty() && (q == 0 || q > keys.len()) {
        return Err(format!("the witness quorum must be between 1 and {}", keys.len()));
    }
    Ok(keys)
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
            witnesses: vec![],
            witness_quorum: 0,
        }
    }

    fn vkey(name: &str, seed: u8) -> String {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        CosignerKey::new(name, sk.verifying_key().to_bytes())
            .expect("key")
            .to_string()
    }

    #[test]
    fn witnesses_are_distinct_canonical_keys_with_a_reachable_quorum() {
        let with = |w: Vec<String>, q: u32| EnclaveConfig {
            witnesses: w,
            witness_quorum: q,
            ..ok()
        };
        let (a, b) = (vkey("w1.example", 1), vkey("w2.example", 2));
        assert!(validate(&with(vec![a.clone(), b.clone()], 2)).is_ok());
        assert!(validate(&with(vec![a.clone()], 1)).is_ok());
        let refused = [
            with(vec![a.clone(), b.clone()], 3),
            with(vec![a.clone(), b.clone()], 0),
            with(vec![], 1),
            // The same key under another name is one witness, not two.
            with(vec![a.clone(), vkey("other.example", 1)], 2),
            with(vec![a.clone(), a.clone()], 1),
            with(vec!["not a key".into()], 1),
            // A log key (type 0x01) is not a cosigner key.
            with(
                vec![sealgate_shared::note::VerifierKey::new(
                    "w1.example",
                    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
                        .verifying_key()
                        .to_bytes(),
                )
                .unwrap()
                .to_string()],
                1,
            ),
            with((1..=17).map(|i| vkey("w.example", i)).collect(), 1),
        ];
        for (i, c) in refused.iter().enumerate() {
            assert!(validate(c).is_err(), "case {i}: {:?}", c.witnesses);
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
