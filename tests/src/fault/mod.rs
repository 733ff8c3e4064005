//! The fault layer: an HTTP/1.1 reverse proxy in front of moto that does what no local
//! emulator does (see `docs/TESTING.md` §4–§5).
//!
//! - It injects AWS errors in each service's real wire shape (query XML for STS/IAM,
//!   REST XML for S3, JSON for KMS), a number of times or forever, then passes through,
//!   and can hold requests back (for timeouts).
//! - It checks web-identity tokens the way STS does (ES256 signature against the
//!   issuer's JWKS, `iss`, `aud`, `exp`) before `AssumeRoleWithWebIdentity` reaches moto,
//!   which accepts any token.
//! - It rewrites moto's EC2-style IAM-auth errors into the query-XML shape real STS and
//!   IAM answer, so the SDK reports their code.
//! - When asked ([`FaultLayer::check_trust_policies`]), it evaluates the role's trust
//!   policy (as stored in moto) for `AssumeRole` (`sts:ExternalId`) and
//!   `AssumeRoleWithWebIdentity` (the token's `sub`/`aud`), which moto ignores; see
//!   [`trust`] for why and what exactly it evaluates.
//! - When asked ([`FaultLayer::shorten_sessions`]), it makes STS sessions short-lived
//!   and S3 refuse a session's key once it expired (`ExpiredToken`), which moto never
//!   does: so a test sees credentials refreshed, or not, within seconds.
//! - It records every request, because moto ignores most of what the host sends
//!   (session policies, tags, ExternalId, SourceIdentity…) and tests must still see it.
//!
//! It runs on its own runtime thread, so plain `#[test]` code and any async runtime can
//! use it, and it stops when dropped.

mod classify;
mod proxy;
mod shapes;
mod trust;
mod webid;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// A fault to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A canned AWS error in the right protocol shape for the service.
    Error { status: u16, code: String, message: String },
    /// S3's wrong-region answers: 301 `PermanentRedirect` (no `Location`) with
    /// `x-amz-bucket-region`, 307 `TemporaryRedirect`, or 400
    /// `AuthorizationHeaderMalformed` with `<Region>`; any other status gets
    /// `PermanentRedirect`'s body.
    S3WrongRegion { status: u16, region: String },
    /// Hold the request this long, then handle it as if no rule had matched.
    Delay(Duration),
}

impl Fault {
    pub fn error(status: u16, code: &str, message: &str) -> Fault {
        Fault::Error {
            status,
            code: code.to_string(),
            message: message.to_string(),
        }
    }

    pub fn s3_wrong_region(status: u16, region: &str) -> Fault {
        Fault::S3WrongRegion {
            status,
            region: region.to_string(),
        }
    }

    pub fn delay(d: Duration) -> Fault {
        Fault::Delay(d)
    }
}

/// When to inject a fault. Every set field must match; the first rule with uses left
/// wins, and each use counts down `times`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `sts`, `iam`, `s3`, `kms` (as in the SigV4 credential scope).
    pub service: String,
    /// The operation name (`AssumeRole`, `GetObject`, `GenerateDataKey`…); `None` = any.
    pub action: Option<String>,
    /// The signing region; `None` = any.
    pub region: Option<String>,
    /// A substring of the request path (for example a bucket or key name).
    pub path_contains: Option<String>,
    /// How many requests to fault; `None` = every matching request.
    pub times: Option<u32>,
    pub fault: Fault,
}

impl Rule {
    /// A rule faulting every matching request with a 500 `InternalFailure` until
    /// [`Rule::fault`] and [`Rule::times`] say otherwise.
    pub fn new(service: &str, action: Option<&str>) -> Rule {
        Rule {
            service: service.to_ascii_lowercase(),
            action: action.map(str::to_string),
            region: None,
            path_contains: None,
            times: None,
            fault: Fault::error(500, "InternalFailure", "injected by the fault layer"),
        }
    }

    pub fn times(mut self, n: u32) -> Rule {
        self.times = Some(n);
        self
    }

    pub fn fault(mut self, fault: Fault) -> Rule {
        self.fault = fault;
        self
    }

    pub fn region(mut self, region: &str) -> Rule {
        self.region = Some(region.to_string());
        self
    }

    pub fn path_contains(mut self, s: &str) -> Rule {
        self.path_contains = Some(s.to_string());
        self
    }

    fn matches(&self, r: &Seen) -> bool {
        self.service == r.service
            && self.action.as_ref().is_none_or(|a| *a == r.action)
            && self.region.as_ref().is_none_or(|g| Some(g) == r.region.as_ref())
            && self.path_contains.as_ref().is_none_or(|p| r.path.contains(p.as_str()))
    }
}

/// One request the layer saw.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// `sts`, `iam`, `s3`, `kms`, `moto-api`, or `unknown`.
    pub service: String,
    pub action: String,
    /// The SigV4 signing region (`None` for unsigned calls).
    pub region: Option<String>,
    pub method: String,
    pub path: String,
    /// The raw query string (without `?`).
    pub query: String,
    /// STS/IAM: the decoded form (and query) parameters; KMS: top-level JSON fields
    /// (strings as-is, other values as JSON); S3: the decoded query parameters.
    pub params: BTreeMap<String, String>,
    /// Request headers, lower-cased names (the last value of a repeated header).
    pub headers: BTreeMap<String, String>,
    /// The status returned to the client; 0 if the client went away before an answer.
    pub status: u16,
    /// A rule or the token check acted on this request (an injected error, a delay, a
    /// refused token).
    pub faulted: bool,
    /// The request was passed on to moto.
    pub forwarded: bool,
}

struct ActiveRule {
    rule: Rule,
    left: Option<u32>,
}

/// State shared between the handle and the proxy's tasks.
struct Shared {
    upstream: String,
    rules: Mutex<Vec<ActiveRule>>,
    /// Every request with a private id (to fill in its status when it is answered).
    seen: Mutex<Vec<(u64, Seen)>>,
    /// (issuer, audience) pairs `AssumeRoleWithWebIdentity` tokens are checked against.
    trusted: Mutex<Vec<(String, String)>>,
    /// Seconds the token check's clock runs ahead of the real one.
    clock_offset: AtomicI64,
    /// Evaluate trust policies for `AssumeRole` and `AssumeRoleWithWebIdentity`.
    check_trust: AtomicBool,
    /// Seconds an STS session lasts from its issue (0: as moto says).
    session_secs: AtomicI64,
    /// Access key id → Unix second its session expires, for the shortened sessions.
    sessions: Mutex<HashMap<String, i64>>,
    next_request_id: AtomicU64,
}

/// Locks, ignoring poisoning: a panicking test thread must not break the proxy.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Takes one use of the first matching rule with uses left.
    fn take_fault(&self, r: &Seen) -> Option<Fault> {
        let mut rules = lock(&self.rules);
        for a in rules.iter_mut() {
            if a.left != Some(0) && a.rule.matches(r) {
                if let Some(n) = a.left.as_mut() {
                    *n -= 1;
                }
                return Some(a.rule.fault.clone());
            }
        }
        None
    }

    fn request_id(&self) -> String {
        let n = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        format!("5e41a7e0-{:04x}-4000-8000-{:012x}", std::process::id() & 0xffff, n)
    }
}

/// The running proxy.
pub struct FaultLayer {
    /// `http://127.0.0.1:<port>`: give this to clients instead of moto's URL.
    pub url: String,
    pub port: u16,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultLayer {
    /// Starts a proxy to `upstream` (moto's URL) on a free loopback port.
    pub fn start(upstream: &str) -> FaultLayer {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            rules: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            trusted: Mutex::new(Vec::new()),
            clock_offset: AtomicI64::new(0),
            check_trust: AtomicBool::new(false),
            session_secs: AtomicI64::new(0),
            sessions: Mutex::new(HashMap::new()),
            next_request_id: AtomicU64::new(1),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fault layer");
        let port = listener.local_addr().expect("fault layer address").port();
        listener.set_nonblocking(true).expect("nonblocking listener");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-layer-{port}"))
            .spawn(move || proxy::run(listener, state, stopped))
            .expect("spawn the fault layer thread");
        FaultLayer {
            url: format!("http://127.0.0.1:{port}"),
            port,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Adds a rule after the existing ones.
    pub fn add(&self, rule: Rule) {
        let left = rule.times;
        lock(&self.shared.rules).push(ActiveRule { rule, left });
    }

    /// Removes every rule (trusted issuers and recorded requests stay).
    pub fn clear(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Verify `AssumeRoleWithWebIdentity` tokens before passing them on: ES256 signature
    /// against `<issuer>/.well-known/jwks.json` (fetched for every request, so key
    /// rotation is seen at once), `iss == issuer`, `aud` contains `audience`, `exp` in
    /// the future, `nbf` (if any) not in the future. A failure answers STS
    /// `InvalidIdentityToken` (400) and is not forwarded. Several issuers may be
    /// trusted; a token naming none of them is refused. Until this is called, tokens
    /// pass through unchecked (as moto accepts any token).
    pub fn trust_issuer(&self, issuer: &str, audience: &str) {
        let mut t = lock(&self.shared.trusted);
        let issuer = issuer.to_string();
        t.retain(|(i, _)| *i != issuer);
        t.push((issuer, audience.to_string()));
    }

    /// From now on, evaluate the role's trust policy before passing `AssumeRole` or
    /// `AssumeRoleWithWebIdentity` on (see [`trust`]): the role must exist in moto, in
    /// the account of its ARN, and a statement must admit the request's `ExternalId`
    /// or the token's `sub`/`aud`; otherwise STS's `AccessDenied` (403), not forwarded.
    pub fn check_trust_policies(&self) {
        self.shared.check_trust.store(true, Ordering::Relaxed);
    }

    /// Undoes [`FaultLayer::check_trust_policies`] (for moto with IAM auth on, which
    /// checks same-account trust itself and refuses the layer's unsigned `GetRole`).
    pub fn stop_checking_trust_policies(&self) {
        self.shared.check_trust.store(false, Ordering::Relaxed);
    }

    /// Moves the token check's clock `seconds` ahead (negative: back), so expiry is
    /// tested with real tokens without waiting for them to expire.
    pub fn set_clock_offset(&self, seconds: i64) {
        self.shared.clock_offset.store(seconds, Ordering::Relaxed);
    }

    /// From now on, every STS session (`AssumeRole`, `AssumeRoleWithWebIdentity`) lasts
    /// `seconds`: the answer's `Expiration` says so, and an S3 request signed with the
    /// session's access key after that is refused with S3's `ExpiredToken` (400) and
    /// not forwarded, as AWS does (moto honours no expiry at all).
    pub fn shorten_sessions(&self, seconds: i64) {
        self.shared.session_secs.store(seconds, Ordering::Relaxed);
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.shared.seen).iter().map(|(_, s)| s.clone()).collect()
    }

    /// The requests for one service and action.
    pub fn requests_for(&self, service: &str, action: &str) -> Vec<Seen> {
        lock(&self.shared.seen)
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.service == service && s.action == action)
            .cloned()
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.seen).clear();
    }
}

impl Drop for FaultLayer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
