//! `sealgate-verify monitor` against real deployments (simulator mode): an honest log
//! under a minute of minting, a key rotation and an honest enclave restart raises no
//! violation; a rolled-back database, a forked log, a JWKS with an extra key, a
//! checkpoint signed by another key and an enclave restored from a truncated tail are
//! each reported with their own kind and exit code; a restarted monitor remembers.
//!
//! Everything is asserted on the monitor's output and exit codes, never on timings
//! (waits are bounded guards that fail the test, not measurements).

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use common::{
    expect_exit, mint, restore_db, sim_root, snapshot_db, verifier_key, wait_checkpoint, wait_persisted, with_logs,
};
use sealgate_tests::{bin, kill9, verify, wait_for, Deployment};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `sealgate-verify monitor` running in the background, its stdout and stderr in files.
struct Running {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Running {
    /// `monitor --url URL --state STATE --interval 1 --sim-root ROOT` and `extra`.
    fn watch(dir: &Path, name: &str, url: &str, state: &str, root: &str, extra: &[&str]) -> Self {
        let mut args = vec!["--url", url, "--state", state, "--interval", "1", "--sim-root", root];
        args.extend_from_slice(extra);
        Self::start(dir, name, &args)
    }

    fn start(dir: &Path, name: &str, args: &[&str]) -> Self {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let child = Command::new(bin("sealgate-verify"))
            .arg("monitor")
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("run sealgate-verify monitor");
        Running { child, out, err }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits until a line of stdout satisfies `pred`; returns that line.
    #[track_caller]
    fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        wait_for(what, Duration::from_secs(90), || {
            let out = self.output();
            out.lines().find(|l| pred(l)).map(str::to_string).or_else(|| {
                assert!(
                    !out.contains("VIOLATION") || what.contains("VIOLATION"),
                    "unexpected violation while waiting for {what}:\n{out}"
                );
                None
            })
        })
    }

    /// Waits for the process to exit; returns its code.
    #[track_caller]
    fn wait_exit(&mut self) -> i32 {
        let child = &mut self.child;
        wait_for("the monitor to exit", Duration::from_secs(90), || {
            child.try_wait().ok().flatten().map(|s| s.code().unwrap_or(-1))
        })
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        kill9(&mut self.child);
    }
}

/// Runs one round (`--once`); returns the exit code and output.
fn once(args: &[&str]) -> (i32, String) {
    let mut all = vec!["monitor", "--once"];
    all.extend_from_slice(args);
    verify(&all)
}

fn violations(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("VIOLATION")).collect()
}

/// Mints `n` tokens and waits until a checkpoint covers them; returns its size.
fn mint_covered(d: &Deployment, key: &str, n: usize) -> u64 {
    let api = d.api();
    let vk = verifier_key(&api);
    let mut last = 0;
    for _ in 0..n {
        last = mint(&api, key).log_index;
    }
    wait_checkpoint(&api, &vk, last + 1, Duration::from_secs(30)).1.size
}

/// Restarts both halves with the database as it was in `snapshot`: the host restores
/// the fresh enclave from the older checkpoint and its (shorter) tail, which the
/// enclave accepts (issue 11, break 2).
fn restart_from_truncated(d: &mut Deployment, snapshot: &Path) {
    d.stop_host();
    d.kill9_enclave();
    restore_db(d, snapshot);
    with_logs(d, |d| {
        d.start_enclave();
        d.start_host();
    });
}

#[test]
fn an_honest_log_passes_a_minute_of_minting_a_rotation_and_a_restart() {
    let mut d = Deployment::start();
    let t = d.new_tenant();
    let admin = d.admin_key();
    let root = sim_root(&d);
    let state = d.path("monitor-state");
    let state = state.display().to_string();
    let mut m = Running::watch(d.dir.path(), "honest", &d.url, &state, &root, &["--key", &admin]);
    m.wait_line("the first checkpoint", |l| l.starts_with("OK        checkpoint: size"));

    // Mint continuously in the background; an enclave restart makes some mints fail.
    let stop = Arc::new(AtomicBool::new(false));
    let minted = Arc::new(AtomicU64::new(0));
    let minter = {
        let (api, key, stop, minted) = (d.api(), t.agent_key.clone(), stop.clone(), minted.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if api.post("/v1/tokens", Some(&key), &json!({})).0 == 200 {
                    minted.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let begin = Instant::now();
    std::thread::sleep(Duration::from_secs(15));
    let (s, v) = d.api().post("/v1/admin/keys/rotate", Some(&admin), &json!({}));
    assert_eq!(s, 200, "rotate: {v}");
    let new_kid = v["kid"].as_str().expect("kid").to_string();
    m.wait_line("the rotation's leaf", |l| {
        l.starts_with("OK        key.rotated") && l.contains(&new_kid)
    });
    std::thread::sleep(Duration::from_secs(10));
    // An honest enclave restart: the host restores it from the whole log.
    d.kill9_enclave();
    with_logs(&mut d, |d| d.start_enclave());
    m.wait_line("the restart's boot leaf", |l| {
        l.starts_with("OK        enclave.restarted")
    });
    while begin.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::SeqCst);
    minter.join().expect("minter");
    assert!(minted.load(Ordering::SeqCst) > 100, "too few tokens minted");

    // The monitor sees the final checkpoint, then has reported nothing wrong.
    let api = d.api();
    let size = common::log_size(&api);
    let (_, last) = wait_checkpoint(&api, &verifier_key(&api), size, Duration::from_secs(30));
    m.wait_line("the final checkpoint", |l| {
        l.starts_with("OK        checkpoint: grew") && l.contains(&format!(" to {},", last.size))
    });
    assert!(m.running(), "the monitor exited:\n{}", m.output());
    let out = m.output();
    println!("{out}");
    assert!(violations(&out).is_empty(), "violations on an honest log:\n{out}");
    let grew = out
        .lines()
        .filter(|l| l.starts_with("OK        checkpoint: grew"))
        .count();
    assert!(grew >= 10, "only {grew} checkpoints seen:\n{out}");
    assert_eq!(out.matches("witnesses: none").count(), 1, "{out}");
    assert!(
        out.contains("OK        jwks.key_added") && out.contains(&new_kid),
        "{out}"
    );
    assert!(out.contains("restarted and was restored with the log intact"), "{out}");
    // Attested at start, after the JWKS changed, and after the restart.
    assert!(
        out.lines().filter(|l| l.starts_with("OK        attestation")).count() >= 3,
        "{out}"
    );
    assert!(
        !out.contains("ERROR") || out.lines().all(|l| !l.starts_with("ERROR     state")),
        "{out}"
    );
}

#[test]
fn a_rolled_back_database_is_a_rollback() {
    let mut d = Deployment::start();
    let t = d.new_tenant();
    let root = sim_root(&d);
    let state = d.path("monitor-state").display().to_string();
    let url = d.url.clone();
    let args = ["--url", url.as_str(), "--state", &state, "--sim-root", &root];

    mint_covered(&d, &t.agent_key, 3);
    let small = wait_persisted(&d.db_path());
    let snapshot = d.path("small.db");
    snapshot_db(&d, &snapshot);
    let out = expect_exit(0, once(&args));
    assert!(out.contains("OK        checkpoint: size"), "{out}");

    let big = mint_covered(&d, &t.agent_key, 10);
    let out = expect_exit(0, once(&args));
    assert!(out.contains(&format!(" to {big},")), "{out}");

    // The database goes back to the snapshot; the enclave keeps running, so the host
    // finds the database behind what it acknowledged, refuses to mint, and serves its
    // audit log read-only with the checkpoint it had stored: the smaller one.
    d.stop_host();
    restore_db(&d, &snapshot);
    d.spawn_host();
    let api = d.api();
    let (_, served) = common::checkpoint(&api, &verifier_key(&api));
    assert_eq!(served.size, small, "the rolled-back host serves its stored checkpoint");
    assert!(served.size < big);

    let (code, out) = once(&args);
    println!("{out}");
    assert_eq!(code, 14, "{out}");
    let v = violations(&out);
    assert_eq!(v.len(), 1, "{out}");
    assert!(v[0].starts_with("VIOLATION checkpoint.rollback"), "{out}");
    assert!(
        v[0].contains(&format!("size {small}")) && v[0].contains(&format!("size {big}")),
        "{out}"
    );
    assert!(v[0].contains("database was rolled back"), "{out}");

    // The violation did not become the new baseline: the next round reports it again.
    expect_exit(14, once(&args));
    // JSON lines carry the same, with the class and exit code.
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let (code, out) = once(&json_args);
    assert_eq!(code, 14, "{out}");
    let found: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .filter(|v: &Value| v["level"] == "VIOLATION")
        .collect();
    assert_eq!(found.len(), 1, "{out}");
    assert_eq!(found[0]["kind"], "checkpoint.rollback");
    assert_eq!(found[0]["class"], "history");
    assert_eq!(found[0]["exit_code"], 14);
}

#[test]
fn a_fork_made_while_the_monitor_was_down_is_caught_on_its_first_round() {
    let mut d = Deployment::start();
    let t = d.new_tenant();
    let admin = d.admin_key();
    let root = sim_root(&d);
    let state = d.path("monitor-state").display().to_string();

    mint_covered(&d, &t.agent_key, 3);
    let small = wait_persisted(&d.db_path());
    let snapshot = d.path("small.db");
    snapshot_db(&d, &snapshot);
    let seen = mint_covered(&d, &t.agent_key, 10);
    let url = d.url.clone();
    let args = [
        "--url",
        url.as_str(),
        "--state",
        &state,
        "--sim-root",
        &root,
        "--key",
        &admin,
    ];
    let out = expect_exit(0, once(&args));
    assert!(out.contains(&format!("size {seen}")), "{out}");

    // While the monitor is down: restore both halves from the older database, then
    // mint past the size the monitor saw. Same key, another history: a fork.
    restart_from_truncated(&mut d, &snapshot);
    let now = mint_covered(&d, &t.agent_key, 15);
    assert!(now > seen, "{now} <= {seen}");

    // A monitor without memory of the old history cannot tell.
    let fresh = d.path("fresh-state").display().to_string();
    expect_exit(
        0,
        once(&["--url", d.url.as_str(), "--state", &fresh, "--sim-root", &root]),
    );

    // The restarted monitor remembers size `seen`, and the log no longer extends it.
    let (code, out) = once(&args);
    println!("{out}");
    assert_eq!(code, 14, "{out}");
    let v = violations(&out);
    assert_eq!(v.len(), 1, "{out}");
    assert!(v[0].starts_with("VIOLATION checkpoint.fork"), "{out}");
    assert!(v[0].contains(&format!("size {seen}")), "{out}");
    assert!(v[0].contains("restored from a truncated log"), "{out}");
    // With --key it names the boot leaf the truncated restore wrote.
    assert!(
        v[0].contains(&format!("Leaf {small} of the served log is enclave.boot")),
        "{out}"
    );
}

#[test]
fn an_enclave_restored_from_a_truncated_tail_is_reported() {
    let mut d = Deployment::start();
    let t = d.new_tenant();
    let admin = d.admin_key();
    let root = sim_root(&d);
    let state = d.path("monitor-state").display().to_string();

    mint_covered(&d, &t.agent_key, 3);
    let small = wait_persisted(&d.db_path());
    let snapshot = d.path("small.db");
    snapshot_db(&d, &snapshot);
    let mut m = Running::watch(
        d.dir.path(),
        "truncated",
        &d.url,
        &state,
        &root,
        &["--key", &admin, "--keep-going"],
    );
    m.wait_line("the first checkpoint", |l| l.starts_with("OK        checkpoint: size"));
    let seen = mint_covered(&d, &t.agent_key, 10);
    m.wait_line("the larger checkpoint", |l| l.contains(&format!(" to {seen},")));

    restart_from_truncated(&mut d, &snapshot);
    let rollback = m.wait_line("VIOLATION checkpoint.rollback", |l| {
        l.starts_with("VIOLATION checkpoint.rollback")
    });
    println!("{rollback}");
    assert!(rollback.contains(&format!("size {}", small + 1)), "{rollback}");
    assert!(
        rollback.contains("the enclave was restarted and restored from a truncated log"),
        "{rollback}"
    );
    assert!(
        rollback.contains(&format!("Leaf {small} of the served log is enclave.boot")),
        "{rollback}"
    );

    // The truncated log grows past what was seen: now a fork, and still reported.
    mint_covered(&d, &t.agent_key, 15);
    let fork = m.wait_line("VIOLATION checkpoint.fork", |l| {
        l.starts_with("VIOLATION checkpoint.fork")
    });
    println!("{fork}");
    assert!(fork.contains(&format!("size {seen}")), "{fork}");
    assert!(m.running(), "--keep-going must keep watching:\n{}", m.output());
    // Each violation once, not once per round.
    let out = m.output();
    assert_eq!(out.matches("VIOLATION checkpoint.rollback").count(), 1, "{out}");
}

/// A proxy in front of `upstream` that adds a JWK once `lie` is set.
fn jwks_proxy(upstream: String, lie: Arc<AtomicBool>) -> String {
    common::proxy(
        move |_| upstream.clone(),
        move |path, body| {
            if !lie.load(Ordering::SeqCst) || path != "/.well-known/jwks.json" {
                return body;
            }
            let mut jwks: Value = serde_json::from_slice(&body).expect("jwks");
            let mut extra = jwks["keys"][0].clone();
            extra["x"] = Value::String(B64URL.encode([9u8; 32]));
            extra["kid"] = Value::String("extra".into());
            jwks["keys"].as_array_mut().expect("keys").push(extra);
            serde_json::to_vec(&jwks).expect("jwks")
        },
    )
}

/// A plain HTTP receiver for `--post`: records each body.
fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/findings", listener.local_addr().expect("addr"));
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = got.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = (|| -> std::io::Result<()> {
                let mut reader = BufReader::new(stream.try_clone()?);
                let mut line = String::new();
                let mut length = 0usize;
                reader.read_line(&mut line)?;
                loop {
                    line.clear();
                    reader.read_line(&mut line)?;
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body)?;
                if let Ok(v) = serde_json::from_slice(&body) {
                    seen.lock().expect("lock").push(v);
                }
                stream.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
            })();
        }
    });
    (url, got)
}

#[test]
fn a_jwks_with_an_extra_key_is_unattested_and_posted() {
    let d = Deployment::start();
    let root = sim_root(&d);
    let lie = Arc::new(AtomicBool::new(false));
    let url = jwks_proxy(d.url.clone(), lie.clone());
    let (post, posted) = receiver();
    let state = d.path("monitor-state").display().to_string();
    let mut m = Running::watch(d.dir.path(), "jwks", &url, &state, &root, &["--post", &post]);
    m.wait_line("the first checkpoint", |l| l.starts_with("OK        checkpoint: size"));
    lie.store(true, Ordering::SeqCst);
    assert_eq!(m.wait_exit(), 12, "{}", m.output());
    let out = m.output();
    println!("{out}");
    let v = violations(&out);
    assert_eq!(v.len(), 1, "{out}");
    let extra = sealgate_shared::commitment::p256_thumbprint(&[9u8; 32], &{
        let (_, jwks) = d.api().get("/.well-known/jwks.json", None);
        B64URL
            .decode(jwks["keys"][0]["y"].as_str().expect("y"))
            .expect("base64url")
    });
    assert!(v[0].starts_with("VIOLATION jwks.unattested_key"), "{out}");
    assert!(v[0].contains(&extra), "the finding names the extra key {extra}:\n{out}");
    // Every finding was posted, the violation included.
    let posted = wait_for("the posted violation", Duration::from_secs(10), || {
        let p = posted.lock().expect("lock").clone();
        p.iter().any(|f| f["level"] == "VIOLATION").then_some(p)
    });
    let bad: Vec<&Value> = posted.iter().filter(|f| f["level"] == "VIOLATION").collect();
    assert_eq!(bad[0]["kind"], "jwks.unattested_key", "{posted:?}");
    assert_eq!(bad[0]["exit_code"], 12, "{posted:?}");
    assert_eq!(bad[0]["url"], url.as_str(), "{posted:?}");
    assert!(posted.iter().any(|f| f["kind"] == "attestation"), "{posted:?}");
}

#[test]
fn a_checkpoint_signed_by_another_key_is_a_signature_violation() {
    let d = Deployment::start();
    let other = Deployment::start();
    let root = sim_root(&d);
    let swap = Arc::new(AtomicBool::new(false));
    let url = {
        let (up, impostor, swap) = (d.url.clone(), other.url.clone(), swap.clone());
        common::proxy(
            move |path| {
                if swap.load(Ordering::SeqCst) && path == "/v1/audit/checkpoint" {
                    impostor.clone()
                } else {
                    up.clone()
                }
            },
            |_, body| body,
        )
    };
    let state = d.path("monitor-state").display().to_string();
    // A receiver that is not there: the POST fails, the monitor goes on.
    let mut m = Running::watch(
        d.dir.path(),
        "signature",
        &url,
        &state,
        &root,
        &["--post", "http://127.0.0.1:9/nowhere"],
    );
    m.wait_line("the first checkpoint", |l| l.starts_with("OK        checkpoint: size"));
    swap.store(true, Ordering::SeqCst);
    assert_eq!(m.wait_exit(), 4, "{}", m.output());
    let out = m.output();
    let v = violations(&out);
    assert_eq!(v.len(), 1, "{out}");
    assert!(v[0].starts_with("VIOLATION checkpoint.signature"), "{out}");
    assert!(m.stderr().contains("ERROR     post:"), "{}", m.stderr());
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("monitor.json"), "not json").unwrap();
    let state = state.display().to_string();
    let (code, out) = once(&["--url", "http://127.0.0.1:9", "--state", &state]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not a monitor state file"), "{out}");
    let (code, out) = once(&["--url", "ftp://x", "--state", &state]);
    assert_eq!(code, 2, "{out}");
    // A host that cannot be reached is not a violation: exit 3 with --once.
    let empty = dir.path().join("empty").display().to_string();
    let (code, out) = once(&["--url", "http://127.0.0.1:9", "--state", &empty]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("ERROR     fetch"), "{out}");
}
