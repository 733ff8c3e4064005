//! The network side of approval webhooks: which addresses a delivery may reach, how
//! it connects, and how many sends run at once.
//!
//! **Addresses.** A webhook URL is chosen by a tenant and fetched by the host, inside
//! the operator's network. Every delivery resolves the host name itself, refuses
//! loopback, private (RFC 1918), shared (CGNAT 100.64/10), link-local (169.254/16,
//! the cloud metadata service), unique-local (fc00::/7), unspecified, multicast and
//! reserved addresses, also when written as IPv4-mapped, IPv4-compatible, NAT64 or
//! 6to4 IPv6, and then connects to the very address it checked: there is no second
//! lookup between check and connect that a rebinding DNS server could answer
//! differently. `sealgate serve --allow-private-webhooks` lifts the address rule, for
//! tests and closed networks.
//!
//! **Concurrency.** At most [`PER_WORKSPACE`] sends per workspace and [`MAX_IN_FLIGHT`]
//! in total run at once, each bounded by [`CONNECT_TIMEOUT`] and [`SEND_TIMEOUT`], so a
//! receiver that never answers costs its own workspace a slot, not everyone a queue.

use crate::grants::model;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::webhook::{sign, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Sends of one workspace running at once.
pub const PER_WORKSPACE: usize = 2;
/// Sends running at once in total.
pub const MAX_IN_FLIGHT: usize = 64;
/// Resolving the host and opening the TCP connection, each.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The whole attempt: connect, TLS, request, response headers.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The operator's webhook settings (`sealgate serve`/`sim` flags).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WebhookArgs {
    /// Let webhooks reach loopback, private, link-local and other non-public addresses
    /// (tests, closed networks). Off by default: a tenant's webhook could otherwise
    /// probe the operator's network and the cloud metadata service.
    #[arg(long)]
    pub allow_private_webhooks: bool,
    /// Extra PEM CA certificates trusted for webhook TLS, besides the system's roots
    /// (a private CA in a closed network; tests).
    #[arg(long)]
    pub webhook_ca_file: Option<PathBuf>,
}

/// Why an attempt got no HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The address rule refused every address of the host: not retried.
    #[error("refused: {0}")]
    Refused(String),
    #[error("the workspace's webhook was removed")]
    Gone,
    #[error("{0}")]
    Failed(String),
}

/// Why `ip` is not a webhook target, or `None` if it is a public address.
pub fn refused(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => refused_v4(a),
        IpAddr::V6(a) => refused_v6(a),
    }
}

fn refused_v4(a: Ipv4Addr) -> Option<&'static str> {
    let o = a.octets();
    Some(match o {
        [0, ..] => "an unspecified or \"this network\" address (0.0.0.0/8)",
        [127, ..] => "a loopback address (127.0.0.0/8)",
        [10, ..] => "a private address (10.0.0.0/8)",
        [172, b, ..] if (16..32).contains(&b) => "a private address (172.16.0.0/12)",
        [192, 168, ..] => "a private address (192.168.0.0/16)",
        [169, 254, ..] => "a link-local address (169.254.0.0/16, incl. the cloud metadata service)",
        [100, b, ..] if (64..128).contains(&b) => "a shared (CGNAT) address (100.64.0.0/10)",
        [192, 0, 0, _] => "an IETF protocol address (192.0.0.0/24)",
        [198, b, ..] if b == 18 || b == 19 => "a benchmarking address (198.18.0.0/15)",
        [a0, ..] if (224..240).contains(&a0) => "a multicast address (224.0.0.0/4)",
        [a0, ..] if a0 >= 240 => "a reserved or broadcast address (240.0.0.0/4)",
        _ => return None,
    })
}

fn refused_v6(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if a.is_unspecified() {
        return Some("the unspecified address (::)");
    }
    if a.is_loopback() {
        return Some("a loopback address (::1)");
    }
    // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d): the IPv4 rule.
    if s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || s[5] == 0) {
        return refused_v4(embedded(s[6], s[7])).or(if s[5] == 0 {
            Some("an IPv4-compatible address (::/96, deprecated)")
        } else {
            None
        });
    }
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the embedded IPv4 address.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return refused_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return refused_v4(embedded(s[1], s[2]));
    }
    Some(match s[0] {
        x if x & 0xfe00 == 0xfc00 => "a unique-local address (fc00::/7)",
        x if x & 0xffc0 == 0xfe80 => "a link-local address (fe80::/10)",
        x if x & 0xffc0 == 0xfec0 => "a site-local address (fec0::/10, deprecated)",
        x if x & 0xff00 == 0xff00 => "a multicast address (ff00::/8)",
        // Everything outside 2000::/3 is unassigned or special.
        x if x & 0xe000 != 0x2000 => "not a global unicast address (outside 2000::/3)",
        _ => return None,
    })
}

/// Resolves `host` (once) and picks the address to connect to: the first allowed one.
pub async fn resolve(host: &url::Host<&str>, port: u16, allow_private: bool) -> Result<SocketAddr, SendError> {
    let candidates: Vec<SocketAddr> = match host {
        url::Host::Ipv4(a) => vec![SocketAddr::new(IpAddr::V4(*a), port)],
        url::Host::Ipv6(a) => vec![SocketAddr::new(IpAddr::V6(*a), port)],
        url::Host::Domain(d) => tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((*d, port)))
            .await
            .map_err(|_| SendError::Failed(format!("resolving {d} took over {} s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| SendError::Failed(format!("resolving {d}: {e}")))?
            .collect(),
    };
    if allow_private {
        return candidates
            .first()
            .copied()
            .ok_or_else(|| SendError::Failed(format!("{host} has no address")));
    }
    if let Some(a) = candidates.iter().find(|a| refused(a.ip()).is_none()) {
        return Ok(*a);
    }
    let why: Vec<String> = candidates
        .iter()
        .map(|a| format!("{} is {}", a.ip(), refused(a.ip()).unwrap_or("refused")))
        .collect();
    Err(SendError::Refused(format!(
        "{host} resolves to no public address ({}); webhooks reach public addresses only \
         (the operator can allow private ones with --allow-private-webhooks)",
        why.join("; ")
    )))
}

/// A connector that always connects to one (already checked) address, whatever the
/// URI says; TLS on top uses the URI's host for SNI and verification.
#[derive(Clone)]
struct FixedAddress(SocketAddr);

impl tower_service::Service<hyper::Uri> for FixedAddress {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move {
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("connecting to {addr} took over {} s", CONNECT_TIMEOUT.as_secs()),
                    )
                })??;
            let _ = tcp.set_nodelay(true);
            Ok(TokioIo::new(tcp))
        })
    }
}

/// Sends in flight, by delivery and by workspace.
#[derive(Default)]
struct InFlight {
    ids: HashSet<String>,
    per_workspace: HashMap<String, usize>,
}

/// The webhook sender's settings and state (one per host).
pub struct Sender {
    allow_private: bool,
    tls: Arc<rustls::ClientConfig>,
    in_flight: Arc<Mutex<InFlight>>,
    refused: AtomicU64,
    attempts: AtomicU64,
}

/// A running send; dropping it frees its slots.
pub struct Ticket {
    in_flight: Arc<Mutex<InFlight>>,
    id: String,
    workspace: String,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut f = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        f.ids.remove(&self.id);
        if let Some(n) = f.per_workspace.get_mut(&self.workspace) {
            *n -= 1;
            if *n == 0 {
                f.per_workspace.remove(&self.workspace);
            }
        }
    }
}

impl Sender {
    pub fn new(args: &WebhookArgs) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if let Some(path) = &args.webhook_ca_file {
            use rustls::pki_types::pem::PemObject;
            let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("--webhook-ca-file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "--webhook-ca-file {}: no PEM certificate in it",
                    path.display()
                ));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("--webhook-ca-file {}: {e}", path.display()))?;
            }
        } else if added == 0 {
            tracing::warn!("no system TLS roots; webhook deliveries will fail TLS verification");
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        if args.allow_private_webhooks {
            tracing::warn!("--allow-private-webhooks: webhooks may reach loopback and private addresses");
        }
        Ok(Self {
            allow_private: args.allow_private_webhooks,
            tls: Arc::new(tls),
            in_flight: Default::default(),
            refused: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
        })
    }

    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// Claims slots for delivery `id` of `workspace`, unless it is already being sent
    /// or its workspace (or the host) has as many sends running as allowed.
    pub fn start(&self, id: &str, workspace: &str) -> Option<Ticket> {
        let mut f = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let mine = f.per_workspace.get(workspace).copied().unwrap_or(0);
        if f.ids.contains(id) || mine >= PER_WORKSPACE || f.ids.len() >= MAX_IN_FLIGHT {
            return None;
        }
        f.ids.insert(id.to_string());
        f.per_workspace.insert(workspace.to_string(), mine + 1);
        Some(Ticket {
            in_flight: self.in_flight.clone(),
            id: id.to_string(),
            workspace: workspace.to_string(),
        })
    }

    /// One attempt: `Ok(status)` if any response came back.
    pub async fn send(
        &self,
        url: &str,
        secret: &str,
        delivery: &str,
        event: &str,
        body: &str,
    ) -> Result<u16, SendError> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let out = tokio::time::timeout(SEND_TIMEOUT, self.send_inner(url, secret, delivery, event, body))
            .await
            .unwrap_or_else(|_| {
                Err(SendError::Failed(format!(
                    "no response within {} s",
                    SEND_TIMEOUT.as_secs()
                )))
            });
        if matches!(out, Err(SendError::Refused(_))) {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        out
    }

    async fn send_inner(
        &self,
        url: &str,
        secret: &str,
        delivery: &str,
        event: &str,
        body: &str,
    ) -> Result<u16, SendError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| SendError::Failed(format!("{what}: {e}"));
        // The PUT rules again: a URL stored before them is refused rather than sent.
        let u = super::webhook::check_url(url, self.allow_private)
            .map_err(|e| SendError::Refused(format!("the stored URL breaks the webhook rules ({e}); set it again")))?;
        let host = u
            .host()
            .ok_or_else(|| SendError::Failed("the stored URL has no host".into()))?;
        let port = u.port_or_known_default().unwrap_or(443);
        let addr = resolve(&host, port, self.allow_private).await?;
        // TLS (SNI and certificate name from the URL's host) over a socket to the
        // address just checked: the connector never looks the name up again.
        let mut https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.tls).clone())
            .https_only()
            .enable_http1()
            .wrap_connector(FixedAddress(addr));
        let uri: hyper::Uri = url.parse().map_err(|e| failed("the stored URL", &e))?;
        let stream = tower_service::Service::call(&mut https, uri)
            .await
            .map_err(|e| failed("connection failed", &e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(stream)
            .await
            .map_err(|e| failed("HTTP failed", &e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let authority = match u.port() {
            Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
            None => u.host_str().unwrap_or_default().to_string(),
        };
        let path = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        let req = hyper::Request::post(path)
            .header("host", authority)
            .header("content-type", "application/json")
            .header("user-agent", "sealgate-webhook")
            .header(SIGNATURE_HEADER, sign(secret, body.as_bytes()))
            .header(TIMESTAMP_HEADER, model::now().to_string())
            .header(DELIVERY_HEADER, delivery)
            .header(EVENT_HEADER, event)
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| failed("building the request", &e))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| failed("connection failed", &e))?;
        Ok(resp.status().as_u16())
    }

    /// `/metrics` text for the sender.
    pub fn render(&self) -> String {
        let in_flight = self.in_flight.lock().map(|f| f.ids.len()).unwrap_or(0);
        let mut out = String::new();
        for (name, kind, help, v) in [
            (
                "sealgate_webhook_attempts_total",
                "counter",
                "Webhook delivery attempts.",
                self.attempts.load(Ordering::Relaxed),
            ),
            (
                "sealgate_webhook_refused_total",
                "counter",
                "Webhook attempts refused by the address rule (non-public targets).",
                self.refused.load(Ordering::Relaxed),
            ),
            (
                "sealgate_webhook_in_flight",
                "gauge",
                "Webhook sends running now.",
                in_flight as u64,
            ),
            (
                "sealgate_webhook_allow_private",
                "gauge",
                "1 when --allow-private-webhooks is set.",
                self.allow_private as u64,
            ),
            (
                "sealgate_long_poll_grants",
                "gauge",
                "Grants with at least one long poll waiting on them.",
                super::coordination::waited_grants() as u64,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    #[test]
    fn webhook_ssrf_address_classifier() {
        let refused_all = [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:192.168.0.1",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff05::2",
            "100::1",
            "::2",
        ];
        for a in refused_all {
            let ip: IpAddr = a.parse().unwrap();
            assert!(refused(ip).is_some(), "{a} must be refused");
        }
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "192.169.0.1",
            "11.0.0.1",
            "93.184.216.34",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
        ];
        for a in allowed {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(refused(ip), None, "{a} is public");
        }
    }

    #[tokio::test]
    async fn webhook_ssrf_resolve_refuses_private_targets_unless_allowed() {
        for (host, port) in [("127.0.0.1", 443), ("169.254.169.254", 80), ("10.1.2.3", 443)] {
            let url = Url::parse(&format!("https://{host}:{port}/x")).unwrap();
            let h = url.host().unwrap();
            match resolve(&h, port, false).await {
                Err(SendError::Refused(m)) => assert!(m.contains(host), "{m}"),
                other => panic!("{host} must be refused, got {other:?}"),
            }
            let got = resolve(&h, port, true).await.expect("allowed with the flag");
            assert_eq!(got.ip().to_string(), host);
        }
        // A name is resolved here, once: localhost is loopback.
        let url = Url::parse("https://localhost:8443/x").unwrap();
        assert!(matches!(
            resolve(&url.host().unwrap(), 8443, false).await,
            Err(SendError::Refused(_))
        ));
    }

    #[test]
    fn sends_are_bounded_per_workspace() {
        let s = Sender::new(&WebhookArgs::default()).expect("sender");
        let a1 = s.start("d1", "ws_a").expect("first of a");
        let _a2 = s.start("d2", "ws_a").expect("second of a");
        assert!(s.start("d3", "ws_a").is_none(), "a third send of one workspace waits");
        assert!(
            s.start("d1", "ws_b").is_none(),
            "one delivery is never sent twice at once"
        );
        let _b = s.start("d4", "ws_b").expect("another workspace is not held up");
        drop(a1);
        assert!(s.start("d3", "ws_a").is_some(), "a freed slot is reused");
    }
}
