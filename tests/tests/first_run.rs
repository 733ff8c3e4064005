//! What an operator meets on the first runs (issue 10, bugs 1-3): a start that cannot
//! work stops at once with a non-zero status and a message that points at the fix,
//! and leaves nothing behind that breaks the next start.
//!
//! - A busy port creates no state; the same state then starts on another port.
//! - A state started with one `--listen` (issuer) is refused with another, naming what
//!   was sealed, what was asked and both ways out; the old `--listen` still works.
//! - A configuration the enclave refuses (an http issuer off loopback, an empty one)
//!   ends the process with the enclave's reason instead of being retried.
//! - A second process on a state directory or a database is refused with the first's
//!   PID, and the first keeps serving.

use sealgate_tests::{bin, free_port, terminate, wait_until, Api, Deployment};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a refused start may take to exit. The host used to wait 30 s for the
/// enclave before giving up (and forever while serving read-only); a refusal is
/// immediate, so this is only a bound that keeps a regression from hanging the test.
const REFUSAL_BOUND: Duration = Duration::from_secs(20);

fn log_path(state: &Path, name: &str) -> PathBuf {
    state.with_file_name(format!("{name}.log"))
}

fn spawn(args: &[String], log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    Command::new(bin("sealgate"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone"))
        .stderr(out)
        .spawn()
        .expect("spawn sealgate")
}

fn sim_args(state: &Path, listen: &str, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "sim".into(),
        "--listen".into(),
        listen.into(),
        "--state".into(),
        state.display().to_string(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Runs `sealgate ARGS`, which must stop on its own, and returns its status and output.
fn run_to_exit(args: &[String], log: &Path) -> (ExitStatus, String) {
    wait_exit(spawn(args, log), &format!("sealgate {}", args.join(" ")), log)
}

/// Waits for `child` (writing to `log`) to stop on its own, at most [`REFUSAL_BOUND`].
fn wait_exit(mut child: Child, what: &str, log: &Path) -> (ExitStatus, String) {
    let deadline = Instant::now() + REFUSAL_BOUND;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{what}` did not stop on its own:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(log).unwrap_or_default())
}

/// A running `sealgate sim`, stopped (SIGTERM) when dropped, so a failing assertion
/// leaves no process behind.
struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            terminate(&mut self.0);
        }
    }
}

/// Starts `sealgate sim` and waits for `/readyz`.
fn start_sim(state: &Path, port: u16, log: &str) -> (Sim, Api) {
    let child = Sim(spawn(
        &sim_args(state, &format!("127.0.0.1:{port}"), &[]),
        &log_path(state, log),
    ));
    let api = Api::new(&format!("http://127.0.0.1:{port}"));
    wait_until("sim to be ready", Duration::from_secs(40), || {
        api.get("/readyz", None).0 == 200
    });
    (child, api)
}

/// A workspace, an agent and its key, made with the operator key in `state`.
fn agent_key(api: &Api, state: &Path) -> String {
    let admin = std::fs::read_to_string(state.join("admin.key"))
        .expect("admin.key")
        .trim()
        .to_string();
    let (s, ws) = api.post("/v1/workspaces", Some(&admin), &json!({ "name": "first" }));
    assert_eq!(s, 201, "{ws}");
    let ws = ws["id"].as_str().expect("ws id").to_string();
    let (s, ag) = api.post(
        &format!("/v1/workspaces/{ws}/agents"),
        Some(&admin),
        &json!({ "name": "a" }),
    );
    assert_eq!(s, 201, "{ag}");
    let (s, k) = api.post(
        &format!("/v1/workspaces/{ws}/keys"),
        Some(&admin),
        &json!({ "role": "agent", "agent_id": ag["id"] }),
    );
    assert_eq!(s, 201, "{k}");
    k["key"].as_str().expect("key").to_string()
}

fn mint(api: &Api, key: &str) -> Value {
    let (s, v) = api.post("/v1/tokens", Some(key), &json!({}));
    assert_eq!(s, 200, "{v}");
    v
}

#[test]
fn a_busy_port_creates_no_state_and_the_state_then_starts_on_another_port() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();

    let (status, out) = run_to_exit(&sim_args(&state, &busy_addr, &[]), &log_path(&state, "busy"));
    assert!(!status.success(), "{out}");
    assert!(out.contains(&format!("cannot listen on {busy_addr}")), "{out}");
    assert!(
        !state.exists(),
        "a start that could not listen created {}",
        state.display()
    );

    // Before the fix, the failed start sealed its issuer into the state and this start
    // came up serving the log read-only, every write 503.
    let (sim, api) = start_sim(&state, free_port(), "second");
    let key = agent_key(&api, &state);
    mint(&api, &key);
    drop(sim);
    drop(busy);
}

#[test]
fn a_state_restarted_with_another_listen_is_refused_naming_both_ways_out() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let first_port = free_port();
    let (sim, api) = start_sim(&state, first_port, "first");
    let key = agent_key(&api, &state);
    mint(&api, &key);
    drop(sim);

    let other = format!("127.0.0.1:{}", free_port());
    let (status, out) = run_to_exit(&sim_args(&state, &other, &[]), &log_path(&state, "other"));
    assert!(!status.success(), "{out}");
    let state_abs = std::fs::canonicalize(&state).unwrap();
    for part in [
        format!("the state directory {}", state_abs.display()),
        format!("first started with issuer http://127.0.0.1:{first_port}"),
        format!("asks for issuer http://{other}"),
        format!("--listen 127.0.0.1:{first_port}"),
        format!("--issuer http://127.0.0.1:{first_port}"),
        "point --state at a new directory".to_string(),
    ] {
        assert!(out.contains(&part), "the refusal lacks {part:?}:\n{out}");
    }
    assert!(
        !out.contains("EnclaveConfig"),
        "a Debug dump reached the operator:\n{out}"
    );
    assert!(!out.contains("INTEGRITY"), "a mismatch is not tampering:\n{out}");

    // The way out it names works, and the refused start changed nothing.
    let (sim, api) = start_sim(&state, first_port, "again");
    mint(&api, &key);
    drop(sim);
}

/// `sim`'s issuer defaults to http://LISTEN, which the enclave refuses off loopback.
#[test]
fn sim_on_a_non_loopback_address_exits_with_the_enclaves_reason() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let port = free_port();
    let (status, out) = run_to_exit(
        &sim_args(&state, &format!("0.0.0.0:{port}"), &[]),
        &log_path(&state, "any"),
    );
    assert!(!status.success(), "{out}");
    assert!(out.contains("refused this configuration"), "{out}");
    assert!(
        out.contains(&format!("issuer \"http://0.0.0.0:{port}\" must be an https URL")),
        "the enclave's reason is in the message:\n{out}"
    );
    assert!(
        !out.contains("did not come up"),
        "it was retried as if transient:\n{out}"
    );

    // Nothing was sealed: the same state starts on loopback.
    let (sim, api) = start_sim(&state, free_port(), "loopback");
    let key = agent_key(&api, &state);
    mint(&api, &key);
    drop(sim);
}

#[test]
fn sim_with_an_empty_issuer_exits_with_the_enclaves_reason() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (status, out) = run_to_exit(
        &sim_args(&state, &format!("127.0.0.1:{}", free_port()), &["--issuer", ""]),
        &log_path(&state, "empty"),
    );
    assert!(!status.success(), "{out}");
    assert!(out.contains("refused this configuration"), "{out}");
    assert!(out.contains("issuer \"\" must be an https URL"), "{out}");
}

#[test]
fn serve_with_an_http_issuer_off_loopback_exits_with_the_enclaves_reason() {
    let mut d = Deployment::prepare(Default::default());
    d.start_enclave();
    let args: Vec<String> = [
        "serve",
        "--enclave",
        &format!("unix:{}", d.socket().display()),
        "--db",
        &d.db_path().display().to_string(),
        "--listen",
        &format!("127.0.0.1:{}", d.port),
        "--issuer",
        "http://example.com",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (status, out) = run_to_exit(&args, &d.path("serve.log"));
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("refused this configuration: issuer \"http://example.com\" must be an https URL"),
        "{out}"
    );
}

#[test]
fn a_second_sim_on_one_state_dir_is_refused_with_the_first_ones_pid() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (sim, api) = start_sim(&state, free_port(), "first");
    let key = agent_key(&api, &state);
    mint(&api, &key);

    let (status, out) = run_to_exit(
        &sim_args(&state, &format!("127.0.0.1:{}", free_port()), &[]),
        &log_path(&state, "second"),
    );
    assert!(!status.success(), "{out}");
    assert!(out.contains("already in use"), "{out}");
    assert!(
        out.contains(&format!("PID {}", sim.0.id())),
        "the refusal names the holder:\n{out}"
    );
    assert!(out.contains("another --state"), "{out}");

    // The first one's enclave socket and database were left alone.
    mint(&api, &key);
    assert_eq!(api.get("/readyz", None).0, 200);
    drop(sim);
}

#[test]
fn a_second_host_on_one_database_is_refused_with_the_first_ones_pid() {
    let d = Deployment::start();
    let t = d.new_tenant();
    let api = d.api();
    mint(&api, &t.agent_key);
    let pid = d.host_pid().expect("host running");

    let args: Vec<String> = [
        "serve",
        "--enclave",
        &format!("unix:{}", d.socket().display()),
        "--db",
        &d.db_path().display().to_string(),
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--issuer",
        &d.url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (status, out) = run_to_exit(&args, &d.path("second-host.log"));
    assert!(!status.success(), "{out}");
    assert!(
        out.contains(&format!("the database {} is already in use", d.db_path().display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("PID {pid}")),
        "the refusal names the holder:\n{out}"
    );
    assert!(out.contains("another --db"), "{out}");

    mint(&api, &t.agent_key);
}

#[test]
fn a_second_enclave_on_one_state_dir_is_refused_with_the_first_ones_pid() {
    let mut d = Deployment::prepare(Default::default());
    d.start_enclave();
    let first = d.enclave_pid().expect("enclave running");
    let other_socket = d.path("second.sock");
    let log = d.path("second-enclave.log");
    let second = Command::new(bin("sealgate-enclave"))
        .arg("--listen")
        .arg(format!("unix:{}", other_socket.display()))
        .arg("--state")
        .arg(d.path("enclave"))
        .arg("--sim")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn sealgate-enclave");
    let (status, text) = wait_exit(second, "a second sealgate-enclave", &log);
    assert!(!status.success(), "{text}");
    assert!(text.contains(&format!("PID {first}")), "{text}");
    assert!(!other_socket.exists(), "the refused enclave bound a socket");
    // The first enclave still serves the host.
    d.start_host();
    let t = d.new_tenant();
    mint(&d.api(), &t.agent_key);
}

#[test]
fn the_enclave_binary_answers_version() {
    let out = Command::new(bin("sealgate-enclave"))
        .arg("--version")
        .output()
        .expect("run sealgate-enclave --version");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.trim(),
        format!("sealgate-enclave {}", env!("CARGO_PKG_VERSION")),
        "the workspace version"
    );
}
