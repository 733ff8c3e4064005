//! Limits on load and waiting (issue 9, hole 6): what one key or one address may ask
//! of the host, so no tenant (or anonymous client) can starve the others or the enclave.
//!
//! - [`rate`]: request rates per API key and per source address on the routes that
//!   reach the enclave or STS (minting, grant requests, attestation, readiness, long
//!   polls), with `governor`'s keyed GCRA limiters; a refusal is a 429 `RATE_LIMITED`
//!   with `Retry-After`.
//! - [`inflight`]: how many attestation requests (unauthenticated, each an NSM call in
//!   the enclave) may be in flight at once, over all callers.
//! - [`polls`]: how many long polls (`GET /v1/aws/access/{id}?wait=`) may be held open
//!   at once, per key and in total.
//! - [`listener`]: the HTTP listener itself: a cap on open connections and a timeout
//!   for reading a request's headers (slowloris), which `axum::serve` does not offer.
//!
//! Every limit is a flag of `sealgate serve`/`sim` ([`LimitArgs`]) and is shown in
//! `/metrics` with the count of what it refused.

pub mod inflight;
pub mod listener;
pub mod polls;
pub mod rate;

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

pub use rate::Class;

/// The operator's settings. Rates are requests per second with a burst of the same
/// size (N at once, then N per second); `0` turns that limit off.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Token mints (`POST /v1/tokens`) per second per API key.
    #[arg(long, default_value_t = 50)]
    pub rate_mint_per_key: u32,
    /// Token mints per second per source address.
    #[arg(long, default_value_t = 200)]
    pub rate_mint_per_addr: u32,
    /// Grant requests (`POST /v1/aws/access`) per second per API key.
    #[arg(long, default_value_t = 20)]
    pub rate_grant_per_key: u32,
    /// Grant requests per second per source address.
    #[arg(long, default_value_t = 100)]
    pub rate_grant_per_addr: u32,
    /// Attestation documents (`GET /v1/attestation`, unauthenticated) per second per
    /// source address.
    #[arg(long, default_value_t = 10)]
    pub rate_attestation_per_addr: u32,
    /// Attestation requests (`GET /v1/attestation`) in flight at once, from all callers
    /// together; over it the answer is 429. The per-address rate does not bound the sum
    /// over many addresses; this does, so the enclave's attestation work stays bounded.
    #[arg(long, default_value_t = 4)]
    pub max_attestations_in_flight: u32,
    /// Readiness checks (`GET /readyz`, unauthenticated; each reaches the enclave) per
    /// second per source address.
    #[arg(long, default_value_t = 50)]
    pub rate_readyz_per_addr: u32,
    /// Long polls (`GET /v1/aws/access/{id}?wait=N`, N > 0) started per second per API key.
    #[arg(long, default_value_t = 20)]
    pub rate_poll_per_key: u32,
    /// Long polls started per second per source address.
    #[arg(long, default_value_t = 100)]
    pub rate_poll_per_addr: u32,
    /// Long polls held open at once by one API key.
    #[arg(long, default_value_t = 16)]
    pub max_polls_per_key: u32,
    /// Long polls held open at once in total.
    #[arg(long, default_value_t = 1024)]
    pub max_polls: u32,
    /// Open client connections; beyond it a connection is answered 503 and closed.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: u32,
    /// Seconds a client has to send a request's headers (per request, keep-alive too).
    #[arg(long, default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// A reverse proxy whose `X-Forwarded-For` names the client (repeatable). Requests
    /// from it are counted by the right-most address in that header that is not itself
    /// a trusted proxy; without this flag the header is ignored (anyone can send it).
    #[arg(long = "trusted-proxy", value_name = "IP")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for LimitArgs {
    fn default() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            a: LimitArgs,
        }
        // The defaults are clap's, so there is one place that states them.
        Wrap::parse_from(["sealgate"]).a
    }
}

/// The live limits and their refusal counters (one per host process).
pub struct Limits {
    pub args: LimitArgs,
    pub rates: rate::Rates,
    pub polls: std::sync::Arc<polls::Polls>,
    /// Attestation requests in flight (`--max-attestations-in-flight`).
    pub attestations: inflight::InFlight,
    /// Connections refused at the connection cap.
    pub connections_refused: AtomicU64,
    /// Connections closed because the headers did not arrive in time.
    pub header_timeouts: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicU64,
}

impl Limits {
    pub fn new(args: LimitArgs) -> Self {
        Self {
            rates: rate::Rates::new(&args),
            polls: std::sync::Arc::new(polls::Polls::new(args.max_polls_per_key, args.max_polls)),
            attestations: inflight::InFlight::new(
                args.max_attestations_in_flight,
                "attestation requests",
                "max-attestations-in-flight",
            ),
            args,
            connections_refused: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
        }
    }

    /// The Prometheus text for `/metrics`: every limit and what it refused.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let a = &self.args;
        let _ = writeln!(
            out,
            "# HELP sealgate_limit Configured limits (rates per second; 0 is off).\n# TYPE sealgate_limit gauge"
        );
        for (name, v) in [
            ("rate_mint_per_key", a.rate_mint_per_key as u64),
            ("rate_mint_per_addr", a.rate_mint_per_addr as u64),
            ("rate_grant_per_key", a.rate_grant_per_key as u64),
            ("rate_grant_per_addr", a.rate_grant_per_addr as u64),
            ("rate_attestation_per_addr", a.rate_attestation_per_addr as u64),
            ("max_attestations_in_flight", a.max_attestations_in_flight as u64),
            ("rate_readyz_per_addr", a.rate_readyz_per_addr as u64),
            ("rate_poll_per_key", a.rate_poll_per_key as u64),
            ("rate_poll_per_addr", a.rate_poll_per_addr as u64),
            ("max_polls_per_key", a.max_polls_per_key as u64),
            ("max_polls", a.max_polls as u64),
            ("max_connections", a.max_connections as u64),
            ("header_read_timeout_secs", a.header_read_timeout_secs),
        ] {
            let _ = writeln!(out, "sealgate_limit{{name=\"{name}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP sealgate_rate_limited_total Requests refused with 429 by a rate limit.\n# TYPE sealgate_rate_limited_total counter"
        );
        for (class, scope, v) in self.rates.refusals() {
            let _ = writeln!(
                out,
                "sealgate_rate_limited_total{{class=\"{}\",scope=\"{scope}\"}} {v}",
                class.as_str()
            );
        }
        let (per_key, global) = self.polls.refusals();
        let _ = writeln!(
            out,
            "# HELP sealgate_long_polls_refused_total Long polls refused with 429 at a concurrency cap.\n# TYPE sealgate_long_polls_refused_total counter\n\
             sealgate_long_polls_refused_total{{scope=\"key\"}} {per_key}\nsealgate_long_polls_refused_total{{scope=\"global\"}} {global}"
        );
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (name, kind, help, v) in [
            (
                "sealgate_long_polls_open",
                "gauge",
                "Long polls held open now.",
                self.polls.open(),
            ),
            (
                "sealgate_attestations_in_flight",
                "gauge",
                "Attestation requests at the enclave now.",
                self.attestations.in_flight(),
            ),
            (
                "sealgate_attestations_refused_total",
                "counter",
                "Attestation requests refused with 429 at --max-attestations-in-flight.",
                self.attestations.refused(),
            ),
            (
                "sealgate_connections_open",
                "gauge",
                "Client connections open now.",
                load(&self.connections_open),
            ),
            (
                "sealgate_connections_refused_total",
                "counter",
                "Connections refused at --max-connections.",
                load(&self.connections_refused),
            ),
            (
                "sealgate_header_read_timeouts_total",
                "counter",
                "Connections closed for not sending headers within --header-read-timeout-secs.",
                load(&self.header_timeouts),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        out
    }
}

/// Background upkeep: forget limiter state of keys and addresses that went quiet, so
/// a stream of new addresses cannot grow memory without bound.
pub fn spawn_upkeep(limits: std::sync::Arc<Limits>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            limits.rates.forget_idle();
        }
    });
}

/// Middleware: the per-address rate limits, before routing and authentication.
/// Requests without a peer address (in-process tests of the router) are not counted.
pub async fn by_address(
    axum::extract::State(app): axum::extract::State<std::sync::Arc<crate::App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let class = rate::classify(req.method(), req.uri().path(), req.uri().query());
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| client_address(c.0.ip(), req.headers(), &app.limits.args.trusted_proxies));
    if let (Some(class), Some(ip)) = (class, peer) {
        if let Err(e) = app.limits.rates.check_addr(class, ip) {
            return e.into_response();
        }
    }
    next.run(req).await
}

/// The address a request is counted by: the TCP peer, or, when the peer is a trusted
/// proxy, the right-most `X-Forwarded-For` entry that is not a trusted proxy (entries
/// further left were written by the client and prove nothing).
pub fn client_address(
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[std::net::IpAddr],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|t| rate::address_key(*t) == rate::address_key(*ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut hops: Vec<&str> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        match v.to_str() {
            Ok(s) => hops.extend(s.split(',').map(str::trim)),
            Err(_) => return peer,
        }
    }
    for hop in hops.iter().rev() {
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) if is_trusted(&ip) => continue,
            Ok(ip) => return ip,
            // Garbage where an address should be: count the proxy, not a made-up client.
            Err(_) => return peer,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse().unwrap());
        let proxy = [ip("127.0.0.1")];
        // From the proxy: the right-most entry (the one the proxy appended).
        assert_eq!(client_address(ip("127.0.0.1"), &h, &proxy), ip("203.0.113.9"));
        // From anyone else, or with no trusted proxy: the header is ignored.
        assert_eq!(client_address(ip("198.51.100.1"), &h, &proxy), ip("198.51.100.1"));
        assert_eq!(client_address(ip("127.0.0.1"), &h, &[]), ip("127.0.0.1"));
        // Chained trusted proxies are skipped; garbage counts the proxy.
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.2".parse().unwrap());
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &[ip("127.0.0.1"), ip("10.0.0.2")]),
            ip("203.0.113.9")
        );
        h.insert("x-forwarded-for", "203.0.113.9, nonsense".parse().unwrap());
        assert_eq!(client_address(ip("127.0.0.1"), &h, &proxy), ip("127.0.0.1"));
        assert_eq!(
            client_address(ip("127.0.0.1"), &HeaderMap::new(), &proxy),
            ip("127.0.0.1")
        );
    }
}
