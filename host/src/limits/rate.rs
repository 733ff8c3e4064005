//! Request rates per API key and per source address, with `governor`'s keyed GCRA
//! limiters (one per route class and scope). A class's quota is N per second with a
//! burst of N; a refused request is answered 429 `RATE_LIMITED` with `Retry-After`.
//!
//! Per-key limits are checked after authentication (in the handler), never on a key
//! id the caller merely claims: key ids are public in the log, and a limit keyed on a
//! claimed id would let anyone exhaust another tenant's budget. Per-address limits are
//! checked before anything else (a middleware), on the TCP peer's address; an IPv6
//! peer counts by its /64, the smallest block one client is normally given. The host
//! does not read `X-Forwarded-For`: behind a proxy, the proxy is the address.

use super::LimitArgs;
use crate::error::ApiError;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

/// The routes with a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `POST /v1/tokens`
    Mint,
    /// `POST /v1/aws/access`
    Grant,
    /// `GET /v1/attestation`
    Attestation,
    /// `GET /readyz`
    Readyz,
    /// `GET /v1/aws/access/{id}?wait=N` with N > 0
    Poll,
}

const CLASSES: [Class; 5] = [
    Class::Mint,
    Class::Grant,
    Class::Attestation,
    Class::Readyz,
    Class::Poll,
];

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Mint => "mint",
            Class::Grant => "grant",
            Class::Attestation => "attestation",
            Class::Readyz => "readyz",
            Class::Poll => "poll",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Class::Mint => "token mints",
            Class::Grant => "grant requests",
            Class::Attestation => "attestation requests",
            Class::Readyz => "readiness checks",
            Class::Poll => "long polls",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

struct Limiter<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    per_second: u32,
    flag: &'static str,
    refused: AtomicU64,
}

impl<K: std::hash::Hash + Eq + Clone> Limiter<K> {
    fn new(per_second: u32, flag: &'static str) -> Option<Self> {
        NonZeroU32::new(per_second).map(|n| Self {
            limiter: RateLimiter::keyed(Quota::per_second(n)),
            per_second,
            flag,
            refused: AtomicU64::new(0),
        })
    }

    fn check(&self, class: Class, scope: &str, key: &K) -> Result<(), ApiError> {
        match self.limiter.check_key(key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(ApiError::RateLimited {
                    retry_after_secs: secs.max(1),
                    message: format!(
                        "too many {} from this {scope}: at most {} per second (the operator sets it with --{}); \
                         retry after the Retry-After header's seconds",
                        class.what(),
                        self.per_second,
                        self.flag
                    ),
                })
            }
        }
    }
}

struct PerClass {
    key: Option<Limiter<String>>,
    addr: Option<Limiter<IpAddr>>,
}

/// Every rate limiter of the host.
pub struct Rates {
    classes: Vec<PerClass>,
}

impl Rates {
    pub fn new(a: &LimitArgs) -> Self {
        let per = |class: Class| -> PerClass {
            let (key, addr) = match class {
                Class::Mint => (
                    Limiter::new(a.rate_mint_per_key, "rate-mint-per-key"),
                    Limiter::new(a.rate_mint_per_addr, "rate-mint-per-addr"),
                ),
                Class::Grant => (
                    Limiter::new(a.rate_grant_per_key, "rate-grant-per-key"),
                    Limiter::new(a.rate_grant_per_addr, "rate-grant-per-addr"),
                ),
                Class::Attestation => (
                    None,
                    Limiter::new(a.rate_attestation_per_addr, "rate-attestation-per-addr"),
                ),
                Class::Readyz => (None, Limiter::new(a.rate_readyz_per_addr, "rate-readyz-per-addr")),
                Class::Poll => (
                    Limiter::new(a.rate_poll_per_key, "rate-poll-per-key"),
                    Limiter::new(a.rate_poll_per_addr, "rate-poll-per-addr"),
                ),
            };
            PerClass { key, addr }
        };
        Self {
            classes: CLASSES.iter().map(|c| per(*c)).collect(),
        }
    }

    /// Counts a request of `class` by the authenticated key `key_id`.
    pub fn check_key(&self, class: Class, key_id: &str) -> Result<(), ApiError> {
        match &self.classes[class.index()].key {
            None => Ok(()),
            Some(l) => l.check(class, "API key", &key_id.to_string()),
        }
    }

    /// Counts a request of `class` from the peer address `ip`.
    pub fn check_addr(&self, class: Class, ip: IpAddr) -> Result<(), ApiError> {
        match &self.classes[class.index()].addr {
            None => Ok(()),
            Some(l) => l.check(class, "address", &address_key(ip)),
        }
    }

    /// `(class, scope, refusals)` for every limiter that is on.
    pub fn refusals(&self) -> Vec<(Class, &'static str, u64)> {
        let mut out = Vec::new();
        for (class, p) in CLASSES.iter().zip(&self.classes) {
            if let Some(l) = &p.key {
                out.push((*class, "key", l.refused.load(Ordering::Relaxed)));
            }
            if let Some(l) = &p.addr {
                out.push((*class, "addr", l.refused.load(Ordering::Relaxed)));
            }
        }
        out
    }

    /// Drops the state of keys and addresses whose budget is full again.
    pub fn forget_idle(&self) {
        for p in &self.classes {
            if let Some(l) = &p.key {
                l.limiter.retain_recent();
                l.limiter.shrink_to_fit();
            }
            if let Some(l) = &p.addr {
                l.limiter.retain_recent();
                l.limiter.shrink_to_fit();
            }
        }
    }
}

/// The address a peer is counted by: IPv4 as it is (also when IPv4-mapped), IPv6 by
/// its /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The class a request belongs to for the per-address check (before routing), or
/// `None` for routes without a rate limit.
pub fn classify(method: &axum::http::Method, path: &str, query: Option<&str>) -> Option<Class> {
    use axum::http::Method;
    match (method, path) {
        (&Method::POST, "/v1/tokens") => Some(Class::Mint),
        (&Method::POST, "/v1/aws/access") => Some(Class::Grant),
        (&Method::GET, "/v1/attestation") => Some(Class::Attestation),
        (&Method::GET, "/readyz") => Some(Class::Readyz),
        (&Method::GET, p) => {
            let id = p.strip_prefix("/v1/aws/access/")?;
            (!id.is_empty() && !id.contains('/') && waits(query)).then_some(Class::Poll)
        }
        _ => None,
    }
}

/// Whether a query string asks to wait (`wait=N`, N > 0).
fn waits(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .filter_map(|kv| kv.strip_prefix("wait="))
            .any(|v| v.parse::<u64>().map_or(true, |n| n > 0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    fn rates(f: impl FnOnce(&mut LimitArgs)) -> Rates {
        let mut a = LimitArgs::default();
        f(&mut a);
        Rates::new(&a)
    }

    #[test]
    fn mint_limit_per_key_refuses_with_retry_after() {
        let r = rates(|a| a.rate_mint_per_key = 3);
        for _ in 0..3 {
            r.check_key(Class::Mint, "key_a").expect("inside the burst");
        }
        match r.check_key(Class::Mint, "key_a") {
            Err(ApiError::RateLimited {
                retry_after_secs,
                message,
            }) => {
                assert!(retry_after_secs >= 1, "{retry_after_secs}");
                assert!(message.contains("--rate-mint-per-key"), "{message}");
            }
            other => panic!("expected RateLimited, got {other:?}"),
        }
        // Another key has its own budget; another class is not counted.
        r.check_key(Class::Mint, "key_b").expect("key_b has its own budget");
        r.check_key(Class::Grant, "key_a").expect("grants are counted apart");
        assert!(r.refusals().contains(&(Class::Mint, "key", 1)));
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let r = rates(|a| a.rate_attestation_per_addr = 0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..1000 {
            r.check_addr(Class::Attestation, ip).expect("off");
        }
    }

    #[test]
    fn ipv6_peers_count_by_their_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        let m: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert_eq!(address_key(m), "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn classify_routes() {
        assert_eq!(classify(&Method::POST, "/v1/tokens", None), Some(Class::Mint));
        assert_eq!(classify(&Method::POST, "/v1/aws/access", None), Some(Class::Grant));
        assert_eq!(
            classify(&Method::GET, "/v1/attestation", Some("nonce=00")),
            Some(Class::Attestation)
        );
        assert_eq!(classify(&Method::GET, "/readyz", None), Some(Class::Readyz));
        assert_eq!(
            classify(&Method::GET, "/v1/aws/access/g1", Some("wait=5")),
            Some(Class::Poll)
        );
        assert_eq!(classify(&Method::GET, "/v1/aws/access/g1", Some("wait=0")), None);
        assert_eq!(classify(&Method::GET, "/v1/aws/access/g1", None), None);
        assert_eq!(
            classify(&Method::GET, "/v1/aws/access/g1/credentials", Some("wait=5")),
            None
        );
        assert_eq!(classify(&Method::GET, "/healthz", None), None);
    }
}
