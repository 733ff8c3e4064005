//! Issue 9, hole 5: webhooks as an SSRF probe and a leak. A tenant's webhook URL is
//! fetched by the host from inside the operator's network, so: https only, no
//! userinfo (it would be stored and logged), no loopback/private/link-local targets
//! (checked on IP literals at PUT and on the resolved address at every delivery,
//! unless the operator passes --allow-private-webhooks), and one workspace's dead
//! receiver never delays another's deliveries.

mod common;
mod grants_support;

use common::*;
use grants_support::*;
use sealgate_tests::wait_for;
use sealgate_tests::webhook_receiver::{ca_file, https_receiver, silent_receiver};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn routed_ceiling(role: &str) -> Value {
    let mut c = ceiling(
        role,
        "assume_role",
        json!([{ "decision": "route_to_approver", "reason": "a human decides" }]),
    );
    c["pending_timeout_seconds"] = json!(600);
    c
}

/// A host that trusts the test CA but keeps the address rule (no --allow-private-webhooks).
fn strict_env() -> Env {
    Env::start_with_args(vec!["--webhook-ca-file".into(), ca_file().display().to_string()])
}

fn hook_path(ws: &str) -> String {
    format!("/v1/workspaces/{ws}/webhook")
}

#[test]
fn webhook_ssrf_put_refuses_http_userinfo_and_private_literals() {
    let e = strict_env();
    let hook = hook_path(&e.t.workspace);
    let set = |url: &str| put(&e.api, &hook, Some(&e.admin), &json!({ "url": url }));

    for url in [
        "http://hooks.example.com/x",
        "ftp://hooks.example.com/x",
        "HTTP://hooks.example.com/",
    ] {
        let got = set(url);
        assert_error(got.clone(), 400, "GRANT_WEBHOOK_NOT_HTTPS");
        assert!(
            got.1["error"]["message"].as_str().unwrap().contains("https://"),
            "{}",
            got.1
        );
    }
    for url in [
        "https://user:hunter2pass@hooks.example.com/x",
        "https://user@hooks.example.com/x",
        "https://:hunter2pass@hooks.example.com/x",
    ] {
        let got = set(url);
        assert_error(got.clone(), 400, "GRANT_WEBHOOK_USERINFO");
        assert!(
            !got.1.to_string().contains("hunter2pass"),
            "the password is echoed: {}",
            got.1
        );
    }
    for url in [
        "https://127.0.0.1:8443/x",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.5/x",
        "https://192.168.1.1/x",
        "https://100.64.0.1/x",
        "https://[::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://[fd00::1]/x",
        "https://0.0.0.0/x",
    ] {
        assert_error(set(url), 400, "GRANT_WEBHOOK_PRIVATE_ADDRESS");
    }
    assert_error(set("https://"), 400, "GRANT_INVALID_WEBHOOK");
    assert_error(set("not a url"), 400, "GRANT_INVALID_WEBHOOK");
    // Nothing refused was stored or logged.
    assert_error(e.api.get(&hook, Some(&e.admin)), 404, "NOT_FOUND");
    assert!(!e.log_text().contains("hunter2pass"), "userinfo reached the log");
    assert!(e.leaves("grant.webhook.set").is_empty());

    // A public https name is accepted (its address is checked at delivery).
    let (s, v) = set("https://hooks.example.com/sealgate?token=t0ken");
    assert_eq!(s, 200, "{v}");
    let set_leaf = e.leaves("grant.webhook.set");
    assert_eq!(set_leaf[0].data["target"], "hooks.example.com", "host only");
    assert!(!e.log_text().contains("t0ken"));

    // A URL stored with userinfo before the rule existed: GET never shows the password.
    let ws = e.t.workspace.clone();
    e.db_exec(
        "UPDATE grant_webhooks SET url = ?1 WHERE workspace_id = ?2",
        &[&"https://ops:hunter2pass@hooks.example.com/x", &ws],
    );
    let (s, v) = e.api.get(&hook, Some(&e.admin));
    assert_eq!(s, 200, "{v}");
    assert!(
        !v.to_string().contains("hunter2pass"),
        "GET shows a stored password: {v}"
    );
    assert_eq!(v["url"], "https://hooks.example.com/x");
}

#[test]
fn webhook_ssrf_delivery_refuses_loopback_link_local_and_private_after_resolving() {
    let e = strict_env();
    let role = e.role(&unique("ssrf-role"));
    e.set_ceiling(ACCOUNT, &routed_ceiling(&role));
    let hook = hook_path(&e.t.workspace);
    // A real receiver on loopback, named by a host name: PUT cannot judge a name, the
    // delivery resolves `localhost` and must refuse to connect.
    let (base, seen) = https_receiver(vec![]);
    let port = base.rsplit(':').next().unwrap().to_string();
    let (s, v) = put(
        &e.api,
        &hook,
        Some(&e.admin),
        &json!({ "url": format!("https://localhost:{port}/hook") }),
    );
    assert_eq!(s, 200, "{v}");

    let attempt_for = |grant: &str| {
        wait_for("the attempt leaf", Duration::from_secs(20), || {
            e.leaves("grant.webhook.attempt")
                .into_iter()
                .find(|l| l.data["grant_id"] == json!(grant))
        })
    };
    let g1 = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    let a = attempt_for(&g1);
    assert_eq!(a.data["refused"], true, "{}", a.data);
    assert_eq!(a.data["state"], "failed", "a refused target is not retried: {}", a.data);
    assert_eq!(a.data["target"], "localhost");
    let err = a.data["error"].as_str().unwrap();
    assert!(err.contains("loopback"), "{err}");
    assert!(seen.lock().unwrap().is_empty(), "the loopback receiver was reached");

    // URLs stored before the rule (or by hand) are judged at delivery the same way.
    for (url, what) in [
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://10.0.0.1/x", "private"),
        ("https://127.0.0.1:1/x", "loopback"),
    ] {
        let ws = e.t.workspace.clone();
        e.db_exec(
            "UPDATE grant_webhooks SET url = ?1 WHERE workspace_id = ?2",
            &[&url, &ws],
        );
        let mut b = access("b", &["s3:GetObject"], 1800);
        b["run_id"] = json!(unique("run"));
        let g = str_of(&e.grant(&b), "grant_id").to_string();
        let a = attempt_for(&g);
        assert_eq!(a.data["refused"], true, "{url}: {}", a.data);
        let err = a.data["error"].as_str().unwrap();
        assert!(err.contains(what), "{url}: {err}");
    }
    let (_, m) = e.api.get_text("/metrics", None);
    assert!(m.contains("sealgate_webhook_refused_total 4"), "{m}");
}

#[test]
fn webhook_slow_receiver_of_one_workspace_does_not_delay_another() {
    let e = Env::start();
    // Workspace A: a receiver that accepts and never answers, and several deliveries.
    let role_a = e.role(&unique("slow-a"));
    e.set_ceiling(ACCOUNT, &routed_ceiling(&role_a));
    let (dead, accepted) = silent_receiver();
    let (s, v) = put(
        &e.api,
        &hook_path(&e.t.workspace),
        Some(&e.admin),
        &json!({ "url": format!("{dead}/hook") }),
    );
    assert_eq!(s, 200, "{v}");
    for i in 0..4 {
        let mut b = access("b", &["s3:GetObject"], 1800);
        b["run_id"] = json!(format!("a-{i}"));
        e.grant(&b);
    }
    wait_for("A's dead receiver to be connected to", Duration::from_secs(20), || {
        (accepted.load(Ordering::SeqCst) >= 1).then_some(())
    });

    // Workspace B: a healthy receiver; its delivery must not queue behind A's.
    let (b_tenant, b_admin, _) = e.other_tenant();
    // B's role trusts B's own External ID (a role made for A would refuse it).
    let (s, p) = e.api.get(
        &format!("/v1/workspaces/{}/aws/accounts/{ACCOUNT}/policies", b_tenant.workspace),
        Some(&b_admin),
    );
    assert_eq!(s, 200, "{p}");
    let role_b = e.role_in(ACCOUNT, &unique("slow-b"), &p["trust_policies"]["assume_role"]);
    let (s, v) = put(
        &e.api,
        &format!("/v1/workspaces/{}/aws/accounts/{ACCOUNT}", b_tenant.workspace),
        Some(&b_admin),
        &routed_ceiling(&role_b),
    );
    assert!(s == 200 || s == 201, "{v}");
    let (base, seen) = https_receiver(vec![]);
    let (s, v) = put(
        &e.api,
        &hook_path(&b_tenant.workspace),
        Some(&b_admin),
        &json!({ "url": format!("{base}/hook") }),
    );
    assert_eq!(s, 200, "{v}");
    let t0 = Instant::now();
    let (s, g) = e.api.post(
        "/v1/aws/access",
        Some(&b_tenant.agent_key),
        &access("b", &["s3:GetObject"], 1800),
    );
    assert_eq!(s, 201, "{g}");
    // A's four sends would each hold a sequential sender for its 10 s timeout (40 s);
    // B's delivery arrives while A's are still hanging.
    wait_for("B's delivery", Duration::from_secs(8), || {
        (!seen.lock().unwrap().is_empty()).then_some(())
    });
    let body: Value = serde_json::from_slice(&seen.lock().unwrap()[0].body).unwrap();
    assert_eq!(body["grant"]["grant_id"], g["grant_id"]);
    assert!(t0.elapsed() < Duration::from_secs(8));
    // A's receiver got at most its workspace's share of connections so far.
    assert!(accepted.load(Ordering::SeqCst) <= 2, "more than 2 sends of A at once");
}
