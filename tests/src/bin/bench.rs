//! `sealgate-bench`: end-to-end token-minting throughput and latency, compared with the
//! raw ES256 signing rate of the signer the enclave uses.
//!
//! Method:
//! 1. Unless `--url`/`--key` name a running server, start `sealgate sim` (the binary
//!    next to this one) in its own process group on a free loopback port with a fresh
//!    temporary state directory, wait for `/readyz`, read `admin.key`, and create a
//!    workspace, an agent and an agent key. A guard kills the process group on exit,
//!    error or panic (SIGTERM, then SIGKILL); Ctrl-C does the same.
//! 2. Mint one token as a smoke test; its `header.claims` is the signing input for step 3.
//! 3. While the server is idle, sign that input in a loop on one thread for ~3 s with
//!    `sealgate_enclave::signer` (the backend the enclave is built with): raw signs/s.
//! 4. For each `--connections` level, open that many HTTP/1.1 keep-alive connections
//!    (one tokio task each, TCP_NODELAY) and issue `POST /v1/tokens {}` back-to-back
//!    for 1 s of warm-up plus `--seconds`. Only responses that complete inside the
//!    measured window count: tokens/s = 200s in the window / window, and the latency
//!    percentiles (nearest rank) are over those 200s. Every non-200 or transport error
//!    during the level, warm-up included, is counted and reported.
//! 5. Read `sealgate_log_size` from `/metrics` before and after: every 200 must have
//!    committed its leaf, so the growth must be at least the number of 200s.
//! 6. Steps 1, 2, 4 and 5 run once per `--witnesses` setting (default `0,1`: a fresh
//!    `sealgate sim --witnesses 0`, then one with a local witness), and the run ends with
//!    the witnessed figures as a ratio of the unwitnessed ones, per level (issue 11's
//!    target: ≥ 0.85 at 64 connections), with both p99s.
//!
//! The load generator runs on the same cores as the server, so the figures understate
//! what a dedicated server would do; the output says so.
//!
//! 7. `--sustain SECONDS` instead holds one level (one `--connections` value, one
//!    `--witnesses` value) for that long on a log that keeps growing, reported per
//!    `--window` (see the `sustain` module; `make bench-sustained` runs 300 s at 32
//!    connections against `sealgate sim` as `make run` starts it, with its witness).
//!
//! Exit status: 0, or 1 when setup fails or the log check reports MISMATCH. Failed
//! requests are reported but do not change the exit status.

use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use sealgate_tests::{bin, free_port, Api};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[path = "bench/sustain.rs"]
mod sustain;

const WARMUP: Duration = Duration::from_secs(1);
const SIGN_SECONDS: f64 = 3.0;

#[derive(Parser)]
#[command(
    name = "sealgate-bench",
    about = "Token-minting throughput and latency against sealgate"
)]
struct Args {
    /// Measured seconds per level (each after a 1 s warm-up that is not counted).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent keep-alive connections, one level each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    connections: Vec<usize>,
    /// Target a running server (http://HOST:PORT) instead of starting `sealgate sim`.
    #[arg(long, requires = "key")]
    url: Option<String>,
    /// Agent key (sg_…) for `--url`.
    #[arg(long, requires = "url")]
    key: Option<String>,
    /// Also print all figures as one JSON object.
    #[arg(long)]
    json: bool,
    /// Local witnesses of each `sealgate sim` started, one run each (ignored with --url).
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    witnesses: Vec<u32>,
    /// Hold one level this many seconds on a growing log and report it per window
    /// (needs one --connections value and, without --url, one --witnesses value).
    #[arg(long, default_value_t = 0)]
    sustain: u64,
    /// Seconds per reported window with --sustain.
    #[arg(long, default_value_t = 20)]
    window: u64,
    /// Where --sustain writes its figures as JSON.
    #[arg(long, default_value = "target/bench-sustained.json")]
    out: std::path::PathBuf,
}

/// Sends `signal` to every process in group `pgid`.
fn kill_group(signal: &str, pgid: u32) {
    let _ = Command::new("kill")
        .args([signal, "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// `sealgate sim` in its own process group; dropping it stops the whole group.
struct Sim {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
}

impl Sim {
    fn start(witnesses: u32) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("sim.log")).map_err(|e| format!("sim.log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("sim.log: {e}"))?;
        let child = Command::new(bin("sealgate"))
            .args(["sim", "--listen", &format!("127.0.0.1:{port}"), "--state"])
            .arg(dir.path().join("state"))
            // The bench is one agent key on one address, far above any sane per-key or
            // per-address mint rate: raise both so the limiter runs (its cost is part
            // of the figure) but never refuses. Connections stay under the default cap.
            .args(["--rate-mint-per-key", "100000000", "--rate-mint-per-addr", "100000000"])
            .args(["--witnesses", &witnesses.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawn sealgate sim: {e}"))?;
        Ok(Self {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("sim.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn wait_ready(&mut self, api: &Api) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("sealgate sim exited ({status}):\n{}", self.log_tail(20)));
            }
            if api.get("/readyz", None).0 == 200 {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("sealgate sim not ready after 60 s:\n{}", self.log_tail(20)))
    }

    /// Creates a workspace, an agent and an agent key; returns the key.
    fn agent_key(&self, api: &Api) -> Result<String, String> {
        let path = self.dir.path().join("state").join("admin.key");
        let admin = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let admin = Some(admin.trim());
        let id = |what: &str, (status, v): (u16, Value), field: &str| match (status, v[field].as_str()) {
            (201, Some(s)) => Ok(s.to_string()),
            _ => Err(format!("creating {what}: HTTP {status} {v}")),
        };
        let ws = id(
            "workspace",
            api.post("/v1/workspaces", admin, &json!({ "name": "bench" })),
            "id",
        )?;
        let agent = id(
            "agent",
            api.post(
                &format!("/v1/workspaces/{ws}/agents"),
                admin,
                &json!({ "name": "bench" }),
            ),
            "id",
        )?;
        let body = json!({ "role": "agent", "agent_id": agent });
        id(
            "agent key",
            api.post(&format!("/v1/workspaces/{ws}/keys"), admin, &body),
            "key",
        )
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let pgid = self.child.id();
        kill_group("-TERM", pgid);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever is left of the group (the enclave, or a host that ignored SIGTERM).
        kill_group("-KILL", pgid);
        let _ = self.child.wait();
    }
}

/// `sealgate_log_size` from `/metrics`.
fn log_size(api: &Api) -> Result<u64, String> {
    let (status, text) = api.get_text("/metrics", None);
    if status != 200 {
        return Err(format!("/metrics: HTTP {status} {text}"));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("sealgate_log_size ").and_then(|v| v.trim().parse().ok()))
        .ok_or_else(|| "/metrics has no sealgate_log_size".to_string())
}

/// Raw ES256 signs/s on this thread, with a fresh key from the enclave's signer.
/// Rules in the benchmarked grant ceiling (issue 4 names 200).
const POLICY_RULES: usize = 200;

/// Grant policy decisions per second on one thread for a ceiling of [`POLICY_RULES`]
/// rules, the request matching only the last rule, so every rule is tried (the worst
/// case). Returns (decisions/s including compiling the ceiling, as a request does;
/// decisions/s with the ceiling compiled once).
fn policy_rate() -> Result<(f64, f64), String> {
    use sealgate_host::grants::policy::{evaluate, AccessRequest, Ceiling, CredentialMode, Rule, RuleDecision};
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut rules: Vec<Rule> = (0..POLICY_RULES - 1)
        .map(|i| Rule {
            decision: if i % 2 == 0 {
                RuleDecision::AutoApprove
            } else {
                RuleDecision::HardDeny
            },
            actions: Some(vec![format!("s3:Get{i}*"), format!("dynamodb:Query{i}")]),
            resources: Some(vec![format!("arn:aws:s3:::bucket-{i}/*")]),
            regions: Some(strings(&["eu-west-1"])),
            max_ttl_seconds: Some(3600),
            reason: format!("rule {i}"),
            approvals_required: 1,
        })
        .collect();
    rules.push(Rule {
        decision: RuleDecision::AutoApprove,
        actions: Some(strings(&["s3:Get*", "s3:List*"])),
        resources: Some(strings(&["arn:aws:s3:::data/*"])),
        regions: None,
        max_ttl_seconds: None,
        reason: "the last rule".into(),
        approvals_required: 1,
    });
    let ceiling = Ceiling {
        role_arn: "arn:aws:iam::123456789012:role/agents".into(),
        credential_mode: CredentialMode::WebIdentity,
        actions: strings(&["s3:*", "dynamodb:*"]),
        resources: strings(&["arn:aws:s3:::*"]),
        regions: strings(&["us-east-1", "eu-west-1"]),
        max_ttl_seconds: 3600,
        sts_region: "us-east-1".into(),
        rules,
        revoker_role_arn: None,
    };
    ceiling.validate().map_err(|e| e.to_string())?;
    let req = AccessRequest {
        actions: strings(&["s3:GetObject", "s3:ListBucket"]),
        resources: strings(&["arn:aws:s3:::data/reports/*"]),
        regions: strings(&["us-east-1"]),
        ttl_seconds: 900,
    };
    if evaluate(&ceiling, &req).rule != Some(POLICY_RULES - 1) {
        return Err("policy benchmark: the request must be decided by the last rule".into());
    }
    let time = |f: &dyn Fn() -> bool| {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed().as_secs_f64() < 1.0 {
            for _ in 0..100 {
                std::hint::black_box(f());
            }
            n += 100;
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    let cold = time(&|| evaluate(std::hint::black_box(&ceiling), &req).rule.is_some());
    let compiled = ceiling.compile();
    let warm = time(&|| compiled.evaluate(std::hint::black_box(&req)).rule.is_some());
    Ok((cold, warm))
}

fn raw_sign_rate(input: &[u8]) -> Result<f64, String> {
    use sealgate_enclave::signer;
    let pkcs8 = signer::generate_pkcs8().map_err(|e| format!("generate key: {e}"))?;
    let key = signer::load(&pkcs8).map_err(|e| format!("load key: {e}"))?;
    let sign = || {
        key.sign(std::hint::black_box(input))
            .map(std::hint::black_box)
            .map_err(|e| format!("sign: {e}"))
    };
    for _ in 0..200 {
        sign()?;
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < SIGN_SECONDS {
        for _ in 0..100 {
            sign()?;
        }
        n += 100;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Where and how to send `POST /v1/tokens`.
struct Target {
    addr: String,
    host: HeaderValue,
    bearer: HeaderValue,
}

impl Target {
    fn new(url: &str, key: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("--url {url}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("--url {url}: only http:// is supported"));
        }
        let auth = uri.authority().ok_or_else(|| format!("--url {url}: no host"))?;
        let addr = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80));
        let host = HeaderValue::from_str(auth.as_str()).map_err(|e| e.to_string())?;
        let bearer = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|e| format!("bad key: {e}"))?;
        Ok(Self { addr, host, bearer })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        stream.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// One mint on `sender`: the status and the body.
    async fn mint(&self, sender: &mut SendRequest<Full<Bytes>>) -> Result<(u16, Bytes), String> {
        let req = Request::post("/v1/tokens")
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.bearer.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .map_err(|e| e.to_string())?;
        sender.ready().await.map_err(|e| format!("connection: {e}"))?;
        let resp = sender.send_request(req).await.map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, body))
    }
}

/// What one connection (or, merged, one level) saw.
#[derive(Default)]
struct Tally {
    /// Latencies of the 200s completed inside the measured window, in µs.
    latencies_us: Vec<u32>,
    /// 200s during the whole level, warm-up included (each one is a committed leaf).
    ok_total: u64,
    /// Failures by kind ("HTTP 503", "transport"), with the first message of each kind.
    errors: BTreeMap<String, (u64, String)>,
}

impl Tally {
    fn fail(&mut self, kind: String, message: String) {
        self.errors.entry(kind).or_insert((0, message)).0 += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.ok_total += other.ok_total;
        for (kind, (n, msg)) in other.errors {
            self.errors.entry(kind).or_insert((0, msg)).0 += n;
        }
    }
}

/// One connection issuing mints back-to-back until `end`; reconnects after a transport error.
async fn connection(target: Arc<Target>, window_start: Instant, end: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut sender = None;
    while Instant::now() < end {
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match target.connect().await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    tally.fail("transport".into(), e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let t0 = Instant::now();
        let result = target.mint(s).await;
        let t1 = Instant::now();
        match result {
            Ok((200, _)) => {
                tally.ok_total += 1;
                if t1 >= window_start && t1 <= end {
                    tally
                        .latencies_us
                        .push(u32::try_from((t1 - t0).as_micros()).unwrap_or(u32::MAX));
                }
            }
            Ok((status, body)) => tally.fail(format!("HTTP {status}"), String::from_utf8_lossy(&body).into_owned()),
            Err(e) => {
                tally.fail("transport".into(), e);
                sender = None;
            }
        }
    }
    tally
}

/// Figures for one level.
struct Level {
    connections: usize,
    tokens_per_s: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    tally: Tally,
}

impl Level {
    fn errors(&self) -> u64 {
        self.tally.errors.values().map(|(n, _)| n).sum()
    }
}

async fn run_level(target: Arc<Target>, connections: usize, seconds: u64, warmup: Duration) -> Level {
    let window_start = Instant::now() + warmup;
    let end = window_start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(connection(target.clone(), window_start, end)))
        .collect();
    let mut tally = Tally::default();
    for t in tasks {
        match t.await {
            Ok(t) => tally.merge(t),
            Err(e) => tally.fail("task".into(), e.to_string()),
        }
    }
    tally.latencies_us.sort_unstable();
    let lat = &tally.latencies_us;
    let pct = |p: f64| {
        lat.get(((p * lat.len() as f64).ceil() as usize).max(1) - 1)
            .map(|&us| us as f64 / 1000.0)
    };
    Level {
        connections,
        tokens_per_s: lat.len() as f64 / seconds as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: lat.last().map(|&us| us as f64 / 1000.0),
        tally,
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

/// What one server configuration measured.
struct Measured {
    label: String,
    url: String,
    levels: Vec<Level>,
    log_before: u64,
    log_after: u64,
    tokens_total: u64,
    log_ok: bool,
}

fn run(args: Args) -> Result<bool, String> {
    if args.seconds == 0 || args.connections.is_empty() || args.connections.contains(&0) {
        return Err("--seconds and every --connections level must be positive".into());
    }
    if args.sustain > 0 && (args.connections.len() != 1 || (args.url.is_none() && args.witnesses.len() != 1)) {
        return Err(
            "--sustain holds one level on one server: give one --connections value and one --witnesses value".into(),
        );
    }
    if args.sustain > 0 && args.window == 0 {
        return Err("--window must be positive".into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let configs: Vec<Option<u32>> = match (&args.url, args.witnesses.is_empty()) {
        (Some(_), _) | (None, true) => vec![None],
        (None, false) => args.witnesses.iter().copied().map(Some).collect(),
    };
    println!(
        "{} s per level after {} s warm-up; connections {:?}",
        args.seconds,
        WARMUP.as_secs(),
        args.connections
    );
    println!("caveat: the load generator shares this machine's {cores} cores with the server (host + enclave); figures understate a dedicated server");
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!(
            "load average before the run: {} (anything else using the cores skews the figures)",
            load.split(' ').take(3).collect::<Vec<_>>().join(" ")
        );
    }

    let mut raw = None;
    let mut runs = Vec::new();
    for witnesses in configs {
        // The server: a fresh `sealgate sim`, or the one named by --url.
        let mut sim = None;
        let (url, key) = match (&args.url, &args.key, witnesses) {
            (Some(url), Some(key), _) => (url.trim_end_matches('/').to_string(), key.clone()),
            (_, _, w) => {
                let s = sim.insert(Sim::start(w.unwrap_or(0))?);
                let pgid = s.child.id();
                let dir = s.dir.path().to_path_buf();
                rt.spawn(async move {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        kill_group("-KILL", pgid);
                        let _ = std::fs::remove_dir_all(dir);
                        std::process::exit(130);
                    }
                });
                let api = Api::new(&s.url);
                s.wait_ready(&api)?;
                let key = s.agent_key(&api)?;
                (s.url.clone(), key)
            }
        };
        let label = match witnesses {
            None => url.clone(),
            Some(0) => "sealgate sim --witnesses 0 (no witness)".to_string(),
            Some(n) => format!("sealgate sim --witnesses {n} (tokens released under cosigned checkpoints)"),
        };
        let api = Api::new(&url);

        // Smoke test; the token's signed part is a realistic signing input.
        let (status, v) = api.post("/v1/tokens", Some(&key), &json!({}));
        let token = match (status, v["token"].as_str()) {
            (200, Some(t)) => t.to_string(),
            _ => return Err(format!("POST /v1/tokens: HTTP {status} {v}")),
        };
        println!();
        println!("== POST /v1/tokens {{}} against {url}: {label}");
        let raw = match raw {
            Some(r) => r,
            None => {
                let signing_input = token.rsplit_once('.').map_or(token.as_str(), |(signed, _)| signed);
                let r = raw_sign_rate(signing_input.as_bytes())?;
                println!(
                    "raw ES256 sign rate (server idle, 1 thread, {}-byte signing input): {r:.0} signs/s",
                    signing_input.len()
                );
                let (policy_cold, policy_warm) = policy_rate()?;
                println!(
                    "grant policy decisions ({POLICY_RULES}-rule ceiling, last rule decides, 1 thread): \
                     {policy_cold:.0}/s compiling the ceiling per decision, {policy_warm:.0}/s precompiled"
                );
                *raw.insert(r)
            }
        };

        if args.sustain > 0 {
            let server = sim.as_ref().map(|s| sustain::Server {
                host_pid: s.child.id(),
                wal: s.dir.path().join("state").join("sealgate.db-wal"),
            });
            println!(
                "sustained: {} s at {} connections, {} s windows",
                args.sustain, args.connections[0], args.window
            );
            sustain::run(
                &rt,
                &url,
                &key,
                server,
                args.connections[0],
                args.sustain,
                args.window,
                &args.out,
            )?;
            return Ok(true);
        }
        let log_before = log_size(&api)?;
        let target = Arc::new(Target::new(&url, &key)?);
        let mut levels = Vec::new();
        for &n in &args.connections {
            levels.push(rt.block_on(run_level(target.clone(), n, args.seconds, WARMUP)));
            std::thread::sleep(Duration::from_millis(300));
        }
        let log_after = log_size(&api)?;
        let load_tokens: u64 = levels.iter().map(|l| l.tally.ok_total).sum();
        let tokens_total = 1 + load_tokens;
        print_levels(&levels, raw);
        let grew = log_after.saturating_sub(log_before);
        let log_ok = log_after >= tokens_total && grew >= load_tokens;
        println!(
            "sealgate_log_size {log_after} (+{grew} during the load levels); successful tokens {tokens_total} (1 smoke test + {load_tokens} load) -> {}",
            if log_ok { "OK" } else { "MISMATCH" }
        );
        if let Some(s) = &sim {
            if levels.iter().any(|l| l.errors() > 0) || !log_ok {
                println!("last lines of the sim log:\n{}", s.log_tail(20));
            }
        }
        runs.push(Measured {
            label,
            url,
            levels,
            log_before,
            log_after,
            tokens_total,
            log_ok,
        });
        // `sim` drops here: one server at a time on these cores.
    }
    let raw = raw.unwrap_or(0.0);
    compare_witnessed(&runs);

    if args.json {
        let runs_json: Vec<Value> = runs
            .iter()
            .map(|r| {
                json!({
                    "label": r.label,
                    "url": r.url,
                    "levels": levels_json(&r.levels, raw),
                    "log": { "size": r.log_after, "size_before": r.log_before, "tokens_total": r.tokens_total, "ok": r.log_ok },
                })
            })
            .collect();
        let out = json!({
            "cores": cores,
            "seconds": args.seconds,
            "warmup_seconds": WARMUP.as_secs(),
            "raw_signs_per_s": raw,
            "runs": runs_json,
        });
        println!("{out}");
    }
    Ok(runs.iter().all(|r| r.log_ok))
}

fn print_levels(levels: &[Level], raw: f64) {
    println!(
        "{:>5} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "conns", "tokens/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    for l in levels {
        println!(
            "{:>5} {:>10.1} {:>9} {:>9} {:>9} {:>7}",
            l.connections,
            l.tokens_per_s,
            ms(l.p50_ms),
            ms(l.p99_ms),
            ms(l.max_ms),
            l.errors()
        );
    }
    println!("ratio end-to-end tokens/s ÷ raw single-core signs/s ({raw:.0}):");
    for l in levels {
        println!("{:>5} {:.3}", l.connections, l.tokens_per_s / raw);
    }
    for l in levels {
        for (kind, (n, msg)) in &l.tally.errors {
            println!("error: {} conns: {n} × {kind}; first: {}", l.connections, msg.trim());
        }
    }
    match levels.iter().find(|l| l.connections == 64) {
        Some(l) => println!(
            "64 conns: {:.1} tokens/s, p99 {} ms, ratio {:.3} (target ≥ 0.25, p99 < 20 ms)",
            l.tokens_per_s,
            ms(l.p99_ms),
            l.tokens_per_s / raw
        ),
        None => println!("64 conns: not measured (add 64 to --connections)"),
    }
}

/// The first run is the baseline; every later one is compared with it level by level.
fn compare_witnessed(runs: &[Measured]) {
    let Some((base, rest)) = runs.split_first() else { return };
    for r in rest {
        println!();
        println!("{} vs {}:", r.label, base.label);
        for (l, b) in r.levels.iter().zip(&base.levels) {
            let ratio = if b.tokens_per_s > 0.0 {
                l.tokens_per_s / b.tokens_per_s
            } else {
                0.0
            };
            println!(
                "{:>5} conns: {:.1} vs {:.1} tokens/s = {ratio:.3}×{}; p99 {} vs {} ms",
                l.connections,
                l.tokens_per_s,
                b.tokens_per_s,
                if l.connections == 64 { " (target ≥ 0.85)" } else { "" },
                ms(l.p99_ms),
                ms(b.p99_ms)
            );
        }
    }
}

fn levels_json(levels: &[Level], raw: f64) -> Vec<Value> {
    levels
        .iter()
        .map(|l| {
            let errors: BTreeMap<&String, u64> = l.tally.errors.iter().map(|(k, (n, _))| (k, *n)).collect();
            json!({
                "connections": l.connections,
                "tokens_per_s": l.tokens_per_s,
                "p50_ms": l.p50_ms,
                "p99_ms": l.p99_ms,
                "max_ms": l.max_ms,
                "measured_ok": l.tally.latencies_us.len(),
                "ok_incl_warmup": l.tally.ok_total,
                "errors": l.errors(),
                "errors_by_kind": errors,
                "ratio": l.tokens_per_s / raw,
            })
        })
        .collect()
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sealgate-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
