//! Harness for the end-to-end tests and the benchmark: it starts the real binaries
//! (`sealgate-enclave --sim` and `sealgate serve`) as separate processes on loopback,
//! so a test can `kill -9` either one and restart it against the same state.
//!
//! The binaries must be built first (`make build`, which `make test` runs: one
//! `cargo test --workspace --all-targets --no-run` builds them with the tests); the
//! harness finds them next to the test executable.

use serde_json::Value;
use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod aws;
pub mod cms;
pub mod fault;
pub mod http1;
pub mod kms_double;
pub mod test_ca;
pub mod webhook_receiver;
pub mod witness_process;

/// The cargo target profile directory holding the binaries.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary, with a clear message if it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `make build` (make test does) first",
        p.display()
    );
    p
}

/// A currently free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn log_file(path: &Path) -> Stdio {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout`.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `ok` until it holds, or panics after `timeout`.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    wait_for(what, timeout, || ok().then_some(()))
}

/// Sends SIGTERM (std only offers SIGKILL) and waits for the process.
pub fn terminate(child: &mut Child) {
    // A child already reaped must not be signalled: its PID may belong to another
    // process by now.
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `kill -9` and reap.
pub fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A small blocking HTTP client that never turns statuses into errors.
#[derive(Clone)]
pub struct Api {
    agent: ureq::Agent,
    pub url: String,
    /// Where the deployment's operator key is (read when needed): audit leaf contents
    /// are readable only with a key, and the operator's reads them all.
    operator_key_file: Option<PathBuf>,
}

impl Api {
    pub fn new(url: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Self {
            agent,
            url: url.trim_end_matches('/').to_string(),
            operator_key_file: None,
        }
    }

    /// The same client, knowing where the operator key will be written.
    pub fn with_operator_key_file(mut self, path: PathBuf) -> Self {
        self.operator_key_file = Some(path);
        self
    }

    /// The operator key, for the audit helpers that read leaf contents (ARCHITECTURE §5).
    pub fn operator_key(&self) -> Option<String> {
        let path = self.operator_key_file.as_ref()?;
        std::fs::read_to_string(path).ok().map(|k| k.trim().to_string())
    }

    fn finish(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, String) {
        match resp {
            Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
            Err(e) => (0, format!("transport error: {e}")),
        }
    }

    fn json(r: (u16, String)) -> (u16, Value) {
        (r.0, serde_json::from_str(&r.1).unwrap_or(Value::String(r.1)))
    }

    /// GET returning the raw text.
    pub fn get_text(&self, path: &str, key: Option<&str>) -> (u16, String) {
        let mut req = self.agent.get(format!("{}{path}", self.url));
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        Self::finish(req.call())
    }

    pub fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        Self::json(self.get_text(path, key))
    }

    /// GET returning the status, the `Content-Type` and the raw bytes.
    pub fn get_bytes(&self, path: &str, key: Option<&str>) -> (u16, String, Vec<u8>) {
        let mut req = self.agent.get(format!("{}{path}", self.url));
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        match req.call() {
            Ok(mut r) => {
                let ct = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let body = r.body_mut().read_to_vec().unwrap_or_default();
                (r.status().as_u16(), ct, body)
            }
            Err(e) => (0, String::new(), format!("transport error: {e}").into_bytes()),
        }
    }

    pub fn post(&self, path: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self.agent.post(format!("{}{path}", self.url));
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        Self::json(Self::finish(req.send_json(body)))
    }

    /// POST with a raw body and content type (for malformed-input tests).
    pub fn post_raw(&self, path: &str, key: Option<&str>, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("Content-Type", content_type);
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        Self::json(Self::finish(req.send(&body[..])))
    }

    pub fn delete(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = self.agent.delete(format!("{}{path}", self.url));
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        Self::json(Self::finish(req.call()))
    }
}

/// A workspace with one agent and that agent's key.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub workspace: String,
    pub agent: String,
    pub agent_key_id: String,
    pub agent_key: String,
}

/// Extra settings for the processes a [`Deployment`] starts.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Environment for `sealgate serve` (for example `AWS_ENDPOINT_URL`).
    pub host_env: Vec<(String, String)>,
    /// Extra arguments to `sealgate serve`.
    pub host_args: Vec<String>,
    /// Extra arguments to `sealgate-enclave`.
    pub enclave_args: Vec<String>,
}

/// One enclave and one host on loopback, their state in a temporary directory.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub url: String,
    pub options: Options,
    enclave: Option<Child>,
    host: Option<Child>,
}

impl Deployment {
    /// Starts both processes and waits until the host is ready.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// The same, with extra environment and arguments.
    pub fn start_with(options: Options) -> Self {
        let mut d = Self::prepare(options);
        d.start_enclave();
        d.start_host();
        d
    }

    /// A deployment whose directory and port are chosen but nothing is started yet, for
    /// tests that act between the two starts (e.g. hand the enclave's simulated NSM root
    /// to a KMS test double before the host asks it for a data key).
    pub fn prepare(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        Self {
            dir,
            port,
            url: format!("http://127.0.0.1:{port}"),
            options,
            enclave: None,
            host: None,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn socket(&self) -> PathBuf {
        self.path("enclave.sock")
    }

    pub fn db_path(&self) -> PathBuf {
        self.path("sealgate.db")
    }

    pub fn start_enclave(&mut self) {
        assert!(self.enclave.is_none(), "enclave already running");
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new(bin("sealgate-enclave"))
            .arg("--listen")
            .arg(format!("unix:{}", self.socket().display()))
            .arg("--state")
            .arg(self.path("enclave"))
            .arg("--sim")
            .args(&self.options.enclave_args)
            .stdin(Stdio::null())
            .stdout(log_file(&self.path("enclave.log")))
            .stderr(log_file(&self.path("enclave.log")))
            .spawn()
            .expect("spawn sealgate-enclave");
        self.enclave = Some(child);
        let sock = self.socket();
        wait_until("the enclave socket", Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
    }

    /// Starts the host and waits for `/readyz`.
    pub fn start_host(&mut self) {
        self.spawn_host();
        let api = self.api();
        wait_until("the host to be ready", Duration::from_secs(40), || {
            api.get("/readyz", None).0 == 200
        });
    }

    /// Starts the host without waiting for readiness (for hosts expected to refuse).
    ///
    /// The port came from [`free_port`], so a test running in parallel can take it
    /// first. The host binds before it creates anything and the enclave seals the
    /// issuer (which names the port) only after that, so a first start that could not
    /// listen moves to another port. This host's own "listening on" line is what is
    /// waited for: another deployment's host on the same port answers `/healthz` too.
    pub fn spawn_host(&mut self) {
        assert!(self.host.is_none(), "host already running");
        let first_start = !self.db_path().exists();
        for attempt in 1.. {
            let log_before = self.host_log().len();
            let mut child = Command::new(bin("sealgate"))
                .arg("serve")
                .arg("--enclave")
                .arg(format!("unix:{}", self.socket().display()))
                .arg("--db")
                .arg(self.db_path())
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", self.port))
                .arg("--issuer")
                .arg(&self.url)
                .args(&self.options.host_args)
                .envs(self.options.host_env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(log_file(&self.path("host.log")))
                .stderr(log_file(&self.path("host.log")))
                .spawn()
                .expect("spawn sealgate serve");
            let since = |d: &Self| d.host_log().get(log_before..).unwrap_or_default().to_string();
            let listening = wait_for("the host to listen", Duration::from_secs(40), || {
                if since(self).contains(" listening on http://") {
                    Some(true)
                } else {
                    child.try_wait().ok().flatten().map(|_| false)
                }
            });
            if !listening {
                let log = since(self);
                if first_start && attempt < 5 && log.contains("cannot listen on") {
                    self.port = free_port();
                    self.url = format!("http://127.0.0.1:{}", self.port);
                    continue;
                }
                panic!("the host exited before it listened:\n{log}");
            }
            self.host = Some(child);
            break;
        }
        let api = self.api();
        wait_until("the host to answer", Duration::from_secs(40), || {
            api.get("/healthz", None).0 == 200
        });
    }

    /// The running host's PID (what a second host on the same database is told).
    pub fn host_pid(&self) -> Option<u32> {
        self.host.as_ref().map(Child::id)
    }

    pub fn kill9_host(&mut self) {
        if let Some(mut c) = self.host.take() {
            kill9(&mut c);
        }
    }

    pub fn stop_host(&mut self) {
        if let Some(mut c) = self.host.take() {
            terminate(&mut c);
        }
    }

    /// The running enclave's PID (what a second enclave on the same state is told).
    pub fn enclave_pid(&self) -> Option<u32> {
        self.enclave.as_ref().map(Child::id)
    }

    pub fn kill9_enclave(&mut self) {
        if let Some(mut c) = self.enclave.take() {
            kill9(&mut c);
        }
    }

    /// One request straight to the enclave's socket, as the host (or a compromised
    /// host) would send it; the reply as the enclave gave it.
    pub fn enclave_call(&self, op: sealgate_shared::protocol::Op) -> sealgate_shared::protocol::Reply {
        use sealgate_shared::frame;
        use sealgate_shared::protocol::{Request, Response};
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(self.socket()).expect("the enclave is listening");
        s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        s.write_all(&frame::encode(&Request { id: 7, op }).expect("encode"))
            .expect("send");
        let mut header = [0u8; 4];
        s.read_exact(&mut header).expect("a response");
        let mut body = vec![0u8; frame::body_len(header).expect("length")];
        s.read_exact(&mut body).expect("a response body");
        let resp: Response = frame::decode(&body).expect("decode");
        assert_eq!(resp.id, 7);
        resp.reply
    }

    pub fn api(&self) -> Api {
        Api::new(&self.url).with_operator_key_file(self.path("admin.key"))
    }

    /// The operator key written at first start.
    pub fn admin_key(&self) -> String {
        std::fs::read_to_string(self.path("admin.key"))
            .expect("admin.key")
            .trim()
            .to_string()
    }

    /// Creates a workspace, an agent in it and an agent key.
    pub fn new_tenant(&self) -> Tenant {
        let api = self.api();
        let admin = self.admin_key();
        let (s, ws) = api.post("/v1/workspaces", Some(&admin), &serde_json::json!({ "name": "acme" }));
        assert_eq!(s, 201, "{ws}");
        let ws = ws["id"].as_str().expect("ws id").to_string();
        let (s, ag) = api.post(
            &format!("/v1/workspaces/{ws}/agents"),
            Some(&admin),
            &serde_json::json!({ "name": "bot" }),
        );
        assert_eq!(s, 201, "{ag}");
        let agent = ag["id"].as_str().expect("agent id").to_string();
        let (s, k) = api.post(
            &format!("/v1/workspaces/{ws}/keys"),
            Some(&admin),
            &serde_json::json!({ "role": "agent", "agent_id": agent }),
        );
        assert_eq!(s, 201, "{k}");
        Tenant {
            workspace: ws,
            agent,
            agent_key_id: k["id"].as_str().expect("key id").to_string(),
            agent_key: k["key"].as_str().expect("key").to_string(),
        }
    }

    /// The host's log, for failure messages.
    pub fn host_log(&self) -> String {
        std::fs::read_to_string(self.path("host.log")).unwrap_or_default()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        self.kill9_host();
        self.kill9_enclave();
    }
}

/// Runs `sealgate-verify` with `args`; returns the exit code and stdout+stderr.
pub fn verify(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin("sealgate-verify"))
        .args(args)
        .output()
        .expect("run sealgate-verify");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}
