//! API keys and roles: who may call what, and that every admin action is logged.

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::*;
use sealgate_shared::leaf;
use sealgate_tests::{Api, Deployment, Tenant};
use serde_json::{json, Value};

fn create_key(api: &Api, by: &str, ws: &str, body: &Value) -> (u16, Value) {
    api.post(&format!("/v1/workspaces/{ws}/keys"), Some(by), body)
}

/// Creates a key that must succeed; returns `(id, key)`.
#[track_caller]
fn new_key(api: &Api, by: &str, ws: &str, role: &str) -> (String, String) {
    let (s, v) = create_key(api, by, ws, &json!({ "role": role }));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["role"], role);
    assert_eq!(v["workspace_id"], ws);
    let key = v["key"].as_str().expect("key").to_string();
    assert!(key.starts_with("sg_") && key.len() == 46, "key format: {key}");
    (v["id"].as_str().expect("id").to_string(), key)
}

/// Every admin leaf in the log: `(kind, data)`.
fn admin_leaves(api: &Api) -> Vec<(String, Value)> {
    let n = log_size(api);
    all_leaves(api, n)
        .into_iter()
        .filter(|l| l.kind.starts_with("admin."))
        .map(|l| (l.kind, l.data))
        .collect()
}

#[test]
fn authentication_failures_are_401() {
    let d = Deployment::start();
    let t = d.new_tenant();
    let api = d.api();
    let body = json!({});
    // No Authorization header.
    assert_error(api.post("/v1/tokens", None, &body), 401, "UNAUTHENTICATED");
    assert_error(
        api.post("/v1/workspaces", None, &json!({ "name": "x" })),
        401,
        "UNAUTHENTICATED",
    );
    // Malformed keys: wrong prefix, too short, too long, bad characters.
    let good = t.agent_key.clone();
    let wrong_prefix = format!("sk_{}", &good[3..]);
    let short = good[..good.len() - 1].to_string();
    let long = format!("{good}A");
    let bad_char = format!("{}!", &good[..good.len() - 1]);
    for bad in [
        wrong_prefix.as_str(),
        short.as_str(),
        long.as_str(),
        bad_char.as_str(),
        "",
        "sg_",
    ] {
        assert_error(api.post("/v1/tokens", Some(bad), &body), 401, "UNAUTHENTICATED");
    }
    // Not a Bearer header at all.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut r = agent
        .post(format!("{}/v1/tokens", d.url))
        .header("Authorization", format!("Basic {good}"))
        .send_json(json!({}))
        .expect("request");
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).expect("JSON error body");
    assert_eq!(v["error"]["code"], "UNAUTHENTICATED");
    // Well-formed but unknown: the right shape with different secret bits.
    let last = good.chars().last().unwrap();
    let flipped = format!("{}{}", &good[..good.len() - 1], if last == 'A' { 'B' } else { 'A' });
    assert_error(api.post("/v1/tokens", Some(&flipped), &body), 401, "UNAUTHENTICATED");
    let unknown = format!("sg_{}", "A".repeat(43));
    assert_error(api.post("/v1/tokens", Some(&unknown), &body), 401, "UNAUTHENTICATED");
    assert_error(
        api.post("/v1/workspaces", Some(&unknown), &json!({ "name": "x" })),
        401,
        "UNAUTHENTICATED",
    );
    // The real key still works.
    mint(&api, &good);
}

#[test]
fn revoked_keys_stop_working_and_revoke_is_idempotent() {
    let d = Deployment::start();
    let t = d.new_tenant();
    let api = d.api();
    let admin = d.admin_key();
    mint(&api, &t.agent_key); // also puts the key in the host's cache
    let path = format!("/v1/workspaces/{}/keys/{}", t.workspace, t.agent_key_id);

    // Neither the agent itself nor an outsider may revoke it.
    assert_error(api.delete(&path, Some(&t.agent_key)), 403, "FORBIDDEN");
    assert_error(api.delete(&path, None), 401, "UNAUTHENTICATED");
    mint(&api, &t.agent_key);

    let (s, v) = api.delete(&path, Some(&admin));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({ "id": t.agent_key_id, "revoked": true }));
    assert_error(
        api.post("/v1/tokens", Some(&t.agent_key), &json!({})),
        401,
        "UNAUTHENTICATED",
    );

    // Revoking again answers the same and logs nothing new.
    let revokes = |api: &Api| {
        admin_leaves(api)
            .iter()
            .filter(|(k, _)| k == "admin.key.revoked")
            .count()
    };
    assert_eq!(revokes(&api), 1);
    let (s, v2) = api.delete(&path, Some(&admin));
    assert_eq!((s, &v2), (200, &v), "second revoke");
    assert_eq!(revokes(&api), 1, "an idempotent revoke must not log twice");
    assert_error(
        api.post("/v1/tokens", Some(&t.agent_key), &json!({})),
        401,
        "UNAUTHENTICATED",
    );

    // Unknown key id, and a key id of another workspace, are 404.
    assert_error(
        api.delete(
            &format!("/v1/workspaces/{}/keys/key_0000000000000000", t.workspace),
            Some(&admin),
        ),
        404,
        "NOT_FOUND",
    );
    let other = d.new_tenant();
    assert_error(
        api.delete(
            &format!("/v1/workspaces/{}/keys/{}", t.workspace, other.agent_key_id),
            Some(&admin),
        ),
        404,
        "NOT_FOUND",
    );
    mint(&api, &other.agent_key);

    // A revoked key stays revoked across a host restart.
    let mut d = d;
    d.stop_host();
    d.start_host();
    assert_error(
        api.post("/v1/tokens", Some(&t.agent_key), &json!({})),
        401,
        "UNAUTHENTICATED",
    );
    mint(&api, &other.agent_key);
}

#[test]
fn roles_are_enforced() {
    let d = Deployment::start();
    let a = d.new_tenant();
    let b = d.new_tenant();
    let api = d.api();
    let admin = d.admin_key();

    // The operator key cannot mint (it is not bound to an agent).
    assert_error(api.post("/v1/tokens", Some(&admin), &json!({})), 403, "FORBIDDEN");

    // An agent key cannot administer anything, not even its own workspace.
    let ak = a.agent_key.as_str();
    assert_error(
        api.post("/v1/workspaces", Some(ak), &json!({ "name": "x" })),
        403,
        "FORBIDDEN",
    );
    assert_error(
        api.post(
            &format!("/v1/workspaces/{}/agents", a.workspace),
            Some(ak),
            &json!({ "name": "x" }),
        ),
        403,
        "FORBIDDEN",
    );
    assert_error(
        create_key(&api, ak, &a.workspace, &json!({ "role": "admin" })),
        403,
        "FORBIDDEN",
    );
    assert_error(
        create_key(&api, ak, &a.workspace, &json!({ "role": "agent", "agent_id": a.agent })),
        403,
        "FORBIDDEN",
    );

    // A workspace admin of A.
    let (_, wa) = new_key(&api, &admin, &a.workspace, "admin");
    assert_error(api.post("/v1/tokens", Some(&wa), &json!({})), 403, "FORBIDDEN");
    assert_error(
        api.post("/v1/workspaces", Some(&wa), &json!({ "name": "x" })),
        403,
        "FORBIDDEN",
    );
    // ... on workspace B: refused.
    assert_error(
        api.post(
            &format!("/v1/workspaces/{}/agents", b.workspace),
            Some(&wa),
            &json!({ "name": "x" }),
        ),
        403,
        "FORBIDDEN",
    );
    assert_error(
        create_key(
            &api,
            &wa,
            &b.workspace,
            &json!({ "role": "agent", "agent_id": b.agent }),
        ),
        403,
        "FORBIDDEN",
    );
    assert_error(
        create_key(&api, &wa, &b.workspace, &json!({ "role": "admin" })),
        403,
        "FORBIDDEN",
    );
    assert_error(
        api.delete(
            &format!("/v1/workspaces/{}/keys/{}", b.workspace, b.agent_key_id),
            Some(&wa),
        ),
        403,
        "FORBIDDEN",
    );
    mint(&api, &b.agent_key); // B's key untouched
                              // ... on its own workspace: allowed.
    let (s, ag) = api.post(
        &format!("/v1/workspaces/{}/agents", a.workspace),
        Some(&wa),
        &json!({ "name": "second" }),
    );
    assert_eq!(s, 201, "{ag}");
    assert_eq!(ag["workspace_id"], a.workspace.as_str());
    assert_eq!(ag["name"], "second");
    let agent2 = ag["id"].as_str().unwrap().to_string();
    let (s, k) = create_key(&api, &wa, &a.workspace, &json!({ "role": "agent", "agent_id": agent2 }));
    assert_eq!(s, 201, "{k}");
    assert_eq!(k["agent_id"], agent2.as_str());
    let k2 = k["key"].as_str().unwrap().to_string();
    let m = mint(&api, &k2);
    assert_eq!(
        jwt_claims(&m.token)["sub"],
        format!("ws:{}:agent:{agent2}", a.workspace)
    );
    // ... and may revoke keys of its own workspace.
    let (s, v) = api.delete(
        &format!("/v1/workspaces/{}/keys/{}", a.workspace, k["id"].as_str().unwrap()),
        Some(&wa),
    );
    assert_eq!(s, 200, "{v}");
    assert_error(api.post("/v1/tokens", Some(&k2), &json!({})), 401, "UNAUTHENTICATED");

    // Approver and auditor keys cannot mint or administer.
    for role in ["approver", "auditor"] {
        let (_, k) = new_key(&api, &admin, &a.workspace, role);
        assert_error(api.post("/v1/tokens", Some(&k), &json!({})), 403, "FORBIDDEN");
        assert_error(
            api.post(
                &format!("/v1/workspaces/{}/agents", a.workspace),
                Some(&k),
                &json!({ "name": "x" }),
            ),
            403,
            "FORBIDDEN",
        );
        assert_error(
            create_key(&api, &k, &a.workspace, &json!({ "role": "admin" })),
            403,
            "FORBIDDEN",
        );
    }
}

#[test]
fn key_creation_is_validated() {
    let d = Deployment::start();
    let a: Tenant = d.new_tenant();
    let b = d.new_tenant();
    let api = d.api();
    let admin = d.admin_key();
    let before = log_size(&api);

    assert_error(
        create_key(&api, &admin, &a.workspace, &json!({ "role": "agent" })),
        400,
        "INVALID_AGENT",
    );
    assert_error(
        create_key(
            &api,
            &admin,
            &a.workspace,
            &json!({ "role": "agent", "agent_id": b.agent }),
        ),
        400,
        "INVALID_AGENT",
    );
    assert_error(
        create_key(
            &api,
            &admin,
            &a.workspace,
            &json!({ "role": "agent", "agent_id": "ag_0000000000000000" }),
        ),
        400,
        "INVALID_AGENT",
    );
    assert_error(
        create_key(
            &api,
            &admin,
            &a.workspace,
            &json!({ "role": "auditor", "agent_id": a.agent }),
        ),
        400,
        "INVALID_AGENT",
    );
    assert_error(
        create_key(&api, &admin, &a.workspace, &json!({ "role": "operator" })),
        400,
        "INVALID_ROLE",
    );
    assert_error(
        create_key(&api, &admin, &a.workspace, &json!({ "role": "root" })),
        400,
        "INVALID_ROLE",
    );
    assert_error(
        create_key(&api, &admin, &a.workspace, &json!({ "role": "admin", "extra": 1 })),
        400,
        "INVALID_REQUEST",
    );
    assert_error(
        create_key(&api, &admin, &a.workspace, &json!({})),
        400,
        "INVALID_REQUEST",
    );
    // Unknown workspace.
    assert_error(
        create_key(&api, &admin, "ws_0000000000000000", &json!({ "role": "admin" })),
        404,
        "NOT_FOUND",
    );
    assert_error(
        api.post(
            "/v1/workspaces/ws_0000000000000000/agents",
            Some(&admin),
            &json!({ "name": "x" }),
        ),
        404,
        "NOT_FOUND",
    );
    // Bad names.
    assert_error(
        api.post("/v1/workspaces", Some(&admin), &json!({ "name": "" })),
        400,
        "INVALID_NAME",
    );
    assert_error(
        api.post("/v1/workspaces", Some(&admin), &json!({ "name": "a\u{7}b" })),
        400,
        "INVALID_NAME",
    );
    assert_error(
        api.post("/v1/workspaces", Some(&admin), &json!({ "name": "x".repeat(129) })),
        400,
        "INVALID_NAME",
    );

    assert_eq!(log_size(&api), before, "refused admin requests must not add log leaves");
}

#[test]
fn admin_key_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = Deployment::start();
    let meta = std::fs::metadata(d.path("admin.key")).expect("admin.key exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "admin.key mode");
    let key = d.admin_key();
    assert!(key.starts_with("sg_") && key.len() == 46, "admin key format");
    // The file holds the key, not its hash, and the database holds only the hash.
    let conn = rusqlite::Connection::open_with_flags(d.db_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let stored: Vec<u8> = conn
        .query_row("SELECT hash FROM api_keys WHERE role = 'operator'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(hex::encode(stored), sha256_hex(key.as_bytes()));
    let raw: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM api_keys WHERE CAST(hash AS TEXT) LIKE ?1",
            [format!("%{}%", &key[3..])],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(raw, 0, "the key itself must not be stored");
}

#[test]
fn every_admin_action_is_logged() {
    let d = Deployment::start();
    let api = d.api();
    let admin = d.admin_key();
    let t = d.new_tenant(); // workspace, agent, agent key
    let (aid, _) = new_key(&api, &admin, &t.workspace, "auditor");
    let (s, _) = api.delete(&format!("/v1/workspaces/{}/keys/{aid}", t.workspace), Some(&admin));
    assert_eq!(s, 200);
    // Refused attempts are not actions and leave no trace.
    assert_error(
        api.post("/v1/workspaces", Some(&t.agent_key), &json!({ "name": "x" })),
        403,
        "FORBIDDEN",
    );

    let leaves = admin_leaves(&api);
    let kinds: Vec<&str> = leaves.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "admin.bootstrap",
            "admin.workspace.created",
            "admin.agent.created",
            "admin.key.created",
            "admin.key.created",
            "admin.key.revoked"
        ],
        "admin leaves in order"
    );
    let operator_id = leaves[0].1["key_id"].as_str().expect("bootstrap key_id").to_string();
    assert_eq!(leaves[1].1["workspace_id"], t.workspace.as_str());
    assert_eq!(leaves[2].1["agent_id"], t.agent.as_str());
    assert_eq!(leaves[3].1["key_id"], t.agent_key_id.as_str());
    assert_eq!(leaves[3].1["role"], "agent");
    assert_eq!(leaves[3].1["agent_id"], t.agent.as_str());
    assert_eq!(leaves[4].1["key_id"], aid.as_str());
    assert_eq!(leaves[4].1["role"], "auditor");
    assert_eq!(leaves[5].1["key_id"], aid.as_str());
    for (kind, data) in &leaves[1..] {
        assert_eq!(data["by"], operator_id.as_str(), "{kind} must name the acting key");
    }
    // No secret ever reaches the public log.
    let n = log_size(&api);
    for bytes in entries(&api, 0, n) {
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            !text.contains(&admin[3..]) && !text.contains(&t.agent_key[3..]),
            "a key secret is in the log: {text}"
        );
    }
    // Host-witnessed events are marked as such.
    let raw = entries(&api, 0, n);
    for bytes in &raw {
        let l = leaf::parse(bytes).unwrap();
        if l.kind.starts_with("admin.") {
            assert_eq!(l.origin, leaf::Origin::Host, "{}", B64.encode(bytes));
        }
    }
}

/// Hole 7: the operator key can be rotated; the old one is refused at once, the new
/// one works, and the key file holds the new one (still 0600).
#[test]
fn hole7_operator_key_rotation_refuses_the_old_key() {
    use std::os::unix::fs::PermissionsExt;
    let d = Deployment::start();
    let api = d.api();
    let old = d.admin_key();
    let t = d.new_tenant();
    // Only the operator rotates it.
    let admin = new_key(&api, &old, &t.workspace, "admin").1;
    for k in [&admin, &t.agent_key] {
        assert_error(
            api.post("/v1/admin/operator-key/rotate", Some(k), &json!({})),
            403,
            "FORBIDDEN",
        );
    }
    let (s, v) = api.post("/v1/admin/operator-key/rotate", Some(&old), &json!({}));
    assert_eq!(s, 200, "{v}");
    let new = v["key"].as_str().expect("the new key, once").to_string();
    assert!(new.starts_with("sg_") && new != old);
    assert_eq!(v["revoked_keys"].as_array().map(Vec::len), Some(1), "{v}");
    // The old key is refused everywhere, at once; the new one works.
    assert_error(
        api.post("/v1/workspaces", Some(&old), &json!({ "name": "x" })),
        401,
        "UNAUTHENTICATED",
    );
    assert_error(
        api.post("/v1/admin/operator-key/rotate", Some(&old), &json!({})),
        401,
        "UNAUTHENTICATED",
    );
    let (s, ws) = api.post("/v1/workspaces", Some(&new), &json!({ "name": "after" }));
    assert_eq!(s, 201, "{ws}");
    // The file was rewritten atomically with the new key, mode 0600.
    assert_eq!(d.admin_key(), new);
    let mode = std::fs::metadata(d.path("admin.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Workspace keys are untouched.
    assert_eq!(api.post("/v1/tokens", Some(&t.agent_key), &json!({})).0, 200);
    let conn = rusqlite::Connection::open_with_flags(d.db_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let live: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM api_keys WHERE role = 'operator' AND revoked_at IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(live, 1, "exactly one operator key is live");
}

/// Hole 7: the bootstrap key file is 0600 even when a looser file is already there.
#[test]
fn hole7_bootstrap_key_file_is_0600_over_a_preexisting_0644_file() {
    use std::os::unix::fs::PermissionsExt;
    let mut d = Deployment::prepare(Default::default());
    let path = d.path("admin.key");
    std::fs::write(&path, "stale\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    d.start_enclave();
    d.start_host();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    let key = d.admin_key();
    assert_ne!(key, "stale");
    let (s, v) = d.api().post("/v1/workspaces", Some(&key), &json!({ "name": "ok" }));
    assert_eq!(s, 201, "{v}");
}

/// Hole 7: a failed write of the bootstrap key file records nothing, so the next start
/// (with a writable path) creates the operator key; before, the row was committed first
/// and the key was lost forever.
#[test]
fn hole7_failed_bootstrap_write_leaves_no_operator_row() {
    use std::process::{Command, Stdio};
    let mut d = Deployment::prepare(Default::default());
    d.start_enclave();
    let bad = d.path("missing-dir").join("admin.key");
    let mut host = Command::new(sealgate_tests::bin("sealgate"))
        .arg("serve")
        .arg("--enclave")
        .arg(format!("unix:{}", d.socket().display()))
        .arg("--db")
        .arg(d.db_path())
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", d.port))
        .arg("--issuer")
        .arg(&d.url)
        .arg("--admin-key-file")
        .arg(&bad)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sealgate serve");
    let status = sealgate_tests::wait_for("the host to give up", std::time::Duration::from_secs(60), || {
        host.try_wait().expect("wait")
    });
    let mut err = String::new();
    std::io::Read::read_to_string(host.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        !status.success(),
        "the host must not serve without its operator key: {err}"
    );
    assert!(err.contains("admin.key"), "the error names the file: {err}");
    assert!(!bad.exists());
    let conn = rusqlite::Connection::open(d.db_path()).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM api_keys WHERE role = 'operator'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(rows, 0, "no operator row without its file");
    drop(conn);
    // The next start, with the default (writable) path, creates it.
    d.start_host();
    let key = d.admin_key();
    let (s, v) = d.api().post("/v1/workspaces", Some(&key), &json!({ "name": "ok" }));
    assert_eq!(s, 201, "{v}");
}

/// POST with extra request headers; returns status, the response's x-request-id, body.
fn post_with_headers(
    api: &Api,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, Option<String>, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut req = agent
        .post(format!("{}{path}", api.url))
        .header("Authorization", format!("Bearer {key}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = req.send_json(body).expect("transport");
    let rid = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (
        r.status().as_u16(),
        rid,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Hole 9: a database error's text (here a trigger's message, which a real failure
/// would replace with table and constraint names) is logged with the request id and
/// never sent; the client gets a generic message with the same id.
#[test]
fn hole9_database_error_text_does_not_reach_clients() {
    let d = Deployment::start();
    let api = d.api();
    let admin = d.admin_key();
    let conn = rusqlite::Connection::open(d.db_path()).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER refuse_workspaces BEFORE INSERT ON workspaces \
         BEGIN SELECT RAISE(ABORT, 'secret_sql_detail: constraint ws_internal_x'); END;",
    )
    .unwrap();
    let (s, rid, v) = post_with_headers(
        &api,
        "/v1/workspaces",
        &admin,
        &[("x-request-id", "test-req-0001")],
        &json!({ "name": "x" }),
    );
    assert_error((s, v.clone()), 500, "INTERNAL");
    let text = v.to_string();
    assert!(
        !text.contains("secret_sql_detail") && !text.contains("database"),
        "{text}"
    );
    assert_eq!(v["error"]["request_id"], "test-req-0001", "{v}");
    assert_eq!(rid.as_deref(), Some("test-req-0001"));
    // The operator finds the cause under the same id.
    let log = d.host_log();
    assert!(
        log.lines()
            .any(|l| l.contains("test-req-0001") && l.contains("secret_sql_detail")),
        "the host log has the details with the request id:\n{log}"
    );
    // A malformed request id is replaced by a fresh one, echoed the same way.
    let (_, rid, v) = post_with_headers(
        &api,
        "/v1/workspaces",
        &admin,
        &[("x-request-id", "bad id; with spaces")],
        &json!({ "name": "x" }),
    );
    let rid = rid.expect("a generated request id");
    assert!(rid.starts_with("req_"), "{rid}");
    assert_eq!(v["error"]["request_id"], rid.as_str());
    conn.execute_batch("DROP TRIGGER refuse_workspaces").unwrap();
    let (s, _, v) = post_with_headers(&api, "/v1/workspaces", &admin, &[], &json!({ "name": "x" }));
    assert_eq!(s, 201, "{v}");
}
