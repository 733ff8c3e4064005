//! `sealgate sim`, what `make run` starts: one command brings up the enclave (a child
//! over a Unix socket) and the host; the simulated enclave never outlives its host,
//! even after `kill -9`; a restart on the same state keeps the keys and the log.

use sealgate_shared::cosignature::CosignerKey;
use sealgate_tests::{bin, free_port, kill9, terminate, verify, wait_until, Api};
use serde_json::{json, Value};
use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn spawn_sim(state: &Path, port: u16) -> Child {
    spawn_sim_with(state, port, &[])
}

fn spawn_sim_with(state: &Path, port: u16, extra: &[&str]) -> Child {
    let log = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(state.with_extension("log"))
            .map(Stdio::from)
            .unwrap()
    };
    Command::new(bin("sealgate"))
        .args(["sim", "--listen", &format!("127.0.0.1:{port}"), "--state"])
        .arg(state)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log())
        .stderr(log())
        .spawn()
        .expect("spawn sealgate sim")
}

fn eventually(what: &str, ok: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(40), ok)
}

fn mint(api: &Api, key: &str) -> Value {
    let (s, v) = api.post("/v1/tokens", Some(key), &json!({}));
    assert_eq!(s, 200, "{v}");
    v
}

#[test]
fn sim_runs_the_whole_system_and_its_enclave_dies_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let api = Api::new(&url);

    let mut sim = spawn_sim(&state, port);
    eventually("sim to be ready", || api.get("/readyz", None).0 == 200);
    assert_eq!(api.get("/readyz", None).1["mode"], "sim");
    let (_, att) = api.get("/v1/attestation", None);
    assert_eq!(att["mode"], "sim", "every surface says sim");
    assert!(
        state.join("enclave/sim-nsm/root.pem").exists(),
        "the simulated root is persisted for auditors"
    );

    use std::os::unix::fs::PermissionsExt;
    let key_path = state.join("admin.key");
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let admin = std::fs::read_to_string(&key_path).unwrap().trim().to_string();
    let (_, ws) = api.post("/v1/workspaces", Some(&admin), &json!({ "name": "sim" }));
    let ws = ws["id"].as_str().unwrap().to_string();
    let (_, ag) = api.post(
        &format!("/v1/workspaces/{ws}/agents"),
        Some(&admin),
        &json!({ "name": "a" }),
    );
    let ag = ag["id"].as_str().unwrap().to_string();
    let (_, k) = api.post(
        &format!("/v1/workspaces/{ws}/keys"),
        Some(&admin),
        &json!({ "role": "agent", "agent_id": ag }),
    );
    let agent_key = k["key"].as_str().unwrap().to_string();
    let first = mint(&api, &agent_key);
    let (_, jwks_before) = api.get("/.well-known/jwks.json", None);
    // One local witness by default: the served checkpoint carries its cosignature, and
    // the attested commitment names it.
    let witness: CosignerKey = std::fs::read_to_string(state.join("witness-1/witness.vkey"))
        .expect("the local witness's vkey")
        .trim()
        .parse()
        .expect("a cosigner vkey");
    assert_eq!(api.get("/readyz", None).1["witnesses"]["quorum"], 1);
    let (_, att) = api.get("/v1/attestation", None);
    assert_eq!(att["commitment"]["witnesses"], json!([witness.to_string()]), "{att}");
    let (_, note) = api.get_text("/v1/audit/checkpoint", None);
    witness
        .verify(&note)
        .expect("the checkpoint is cosigned by the local witness");

    // kill -9 the host: its enclave child must go too, freeing the socket.
    kill9(&mut sim);
    let socket = state.join("enclave.sock");
    eventually("the orphaned enclave to exit", || {
        std::os::unix::net::UnixStream::connect(&socket).is_err()
    });

    let mut sim = spawn_sim(&state, port);
    eventually("sim to be ready again", || api.get("/readyz", None).0 == 200);
    let (_, jwks_after) = api.get("/.well-known/jwks.json", None);
    assert_eq!(jwks_after, jwks_before, "same keys after the restart");
    assert_eq!(
        std::fs::read_to_string(&key_path).unwrap().trim(),
        admin,
        "the admin key is not rewritten"
    );
    let second = mint(&api, &agent_key);
    assert!(second["log_index"].as_u64() > first["log_index"].as_u64());

    // The log continued: it holds the restart, and an auditor verifies both tokens.
    eventually("the checkpoint to cover the second token", || {
        let (_, cp) = api.get_text("/v1/audit/checkpoint", None);
        cp.lines().nth(1).and_then(|l| l.parse::<u64>().ok()) > second["log_index"].as_u64()
    });
    let (_, entries) = api.get(
        &format!(
            "/v1/audit/entries?start=0&end={}",
            second["log_index"].as_u64().unwrap() + 1
        ),
        Some(&admin),
    );
    let kinds: Vec<String> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(e["leaf"].as_str().unwrap())
                .unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds[0], "enclave.genesis");
    assert!(
        kinds.iter().any(|k| k == "enclave.boot"),
        "the restart is in the log: {kinds:?}"
    );
    let (code, out) = verify(&[
        "log",
        "--url",
        &url,
        "--token",
        first["token"].as_str().unwrap(),
        "--token",
        second["token"].as_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    terminate(&mut sim);
}

/// `--witnesses 0`: no witness, and every surface says so; tokens leave with their leaf.
#[test]
fn sim_without_witnesses_says_none() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let port = free_port();
    let api = Api::new(&format!("http://127.0.0.1:{port}"));
    let mut sim = spawn_sim_with(&state, port, &["--witnesses", "0"]);
    eventually("sim to be ready", || api.get("/readyz", None).0 == 200);
    assert_eq!(api.get("/readyz", None).1["witnesses"], "none");
    let (_, att) = api.get("/v1/attestation", None);
    assert_eq!(att["commitment"]["witnesses"], json!([]), "{att}");
    assert_eq!(att["commitment"]["witness_quorum"], 0, "{att}");
    assert!(!state.join("witness-1").exists());
    let printed = std::fs::read_to_string(state.with_extension("log")).unwrap();
    assert!(printed.contains("witnesses: none"), "{printed}");
    let (_, note) = api.get_text("/v1/audit/checkpoint", None);
    assert_eq!(note.matches('\u{2014}').count(), 1, "only the log's signature: {note}");
    terminate(&mut sim);
}

/// The PIDs of `parent`'s children, from `/proc` (the simulated enclave is the only one).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // "pid (comm) state ppid …"; comm may hold spaces, so split after ')'.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

#[test]
fn sim_stops_with_a_reason_when_its_enclave_dies() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let port = free_port();
    let api = Api::new(&format!("http://127.0.0.1:{port}"));
    let mut sim = spawn_sim(&state, port);
    eventually("sim to be ready", || api.get("/readyz", None).0 == 200);
    let enclave = children_of(sim.id());
    assert_eq!(enclave.len(), 1, "one enclave child: {enclave:?}");
    let killed = Command::new("kill")
        .args(["-9", &enclave[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Without the watch on the child the host went on serving 503s for ever.
    let mut status = None;
    eventually("sim to exit after its enclave died", || {
        status = sim.try_wait().unwrap();
        status.is_some()
    });
    assert!(!status.unwrap().success(), "a dead enclave is a failure exit");
    let log = std::fs::read_to_string(state.with_extension("log")).unwrap();
    assert!(log.contains("the simulated enclave exited"), "{log}");
    terminate(&mut sim);
}
