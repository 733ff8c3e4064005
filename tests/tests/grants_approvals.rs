//! AWS grants with a human in the loop: the approver's queue, approve and deny, a
//! long poll woken by the decision, timeouts, a ceiling that changed before the
//! approval, and the signed webhook (a receiver in the test verifies the HMAC with
//! aws-lc-rs and fails the first delivery to see the retry).

mod common;
mod grants_support;

use common::*;
use grants_support::*;
use sealgate_tests::webhook_receiver::Delivery;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn routed_ceiling(role: &str, timeout: u64) -> Value {
    let mut c = ceiling(
        role,
        "assume_role",
        json!([
            { "decision": "auto_approve", "actions": ["s3:List*"], "reason": "listing is harmless" },
            { "decision": "route_to_approver", "reason": "everything else needs a human" }
        ]),
    );
    c["pending_timeout_seconds"] = json!(timeout);
    c
}

#[test]
fn approve_deny_and_the_queue() {
    let e = Env::start();
    let role = e.role(&unique("appr-role"));
    e.set_ceiling(ACCOUNT, &routed_ceiling(&role, 600));
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let mut b = access("b", &["s3:GetObject"], 1800);
            b["run_id"] = json!(format!("run-{i}"));
            let g = e.grant(&b);
            assert_eq!(g["status"], "pending", "{g}");
            assert!(g["expires_at"].is_null(), "no life before approval: {g}");
            assert!(g["decide_by"].as_i64().unwrap() > g["created_at"].as_i64().unwrap());
            str_of(&g, "grant_id").to_string()
        })
        .collect();
    // An auto-approved one does not queue.
    assert_eq!(e.grant(&access("b", &["s3:ListBucket"], 1800))["status"], "active");

    // Only approvers read the queue; oldest first.
    for k in [&e.t.agent_key, &e.admin, &e.operator] {
        assert_error(e.api.get("/v1/approvals", Some(k)), 403, "FORBIDDEN");
    }
    let (s, q) = e.api.get("/v1/approvals", Some(&e.approver));
    assert_eq!(s, 200, "{q}");
    let queued: Vec<&str> = q["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| str_of(g, "grant_id"))
        .collect();
    assert_eq!(queued, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(q["pending"][0]["reason"], "integration test");

    // Input is checked.
    let path = |id: &str| format!("/v1/approvals/{id}");
    assert_error(
        e.api.post(
            &path(&ids[0]),
            Some(&e.approver),
            &json!({ "decision": "maybe", "reason": "x" }),
        ),
        400,
        "INVALID_REQUEST",
    );
    assert_error(
        e.api.post(
            &path(&ids[0]),
            Some(&e.approver),
            &json!({ "decision": "approve", "reason": " " }),
        ),
        400,
        "GRANT_INVALID_REQUEST",
    );
    // The requesting agent's key: refused as the request's creator (issue 9, hole 8).
    assert_error(
        e.api.post(
            &path(&ids[0]),
            Some(&e.t.agent_key),
            &json!({ "decision": "approve", "reason": "self-service" }),
        ),
        403,
        "GRANT_SELF_APPROVAL",
    );
    assert_error(
        e.api.post(
            &path("gr_nope"),
            Some(&e.approver),
            &json!({ "decision": "approve", "reason": "x" }),
        ),
        404,
        "NOT_FOUND",
    );

    // Approve: active from now for its TTL; credentials work.
    let (s, a) = e.api.post(
        &path(&ids[0]),
        Some(&e.approver),
        &json!({ "decision": "approve", "reason": "ticket 7" }),
    );
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["status"], "active");
    assert_eq!(
        a["expires_at"].as_i64(),
        Some(a["activated_at"].as_i64().unwrap() + 1800)
    );
    assert_eq!(a["resolution"]["reason"], "ticket 7");
    assert_eq!(e.credentials(&ids[0]).0, 200);
    // Deny: final, with the approver's reason.
    let (s, d) = e.api.post(
        &path(&ids[1]),
        Some(&e.approver),
        &json!({ "decision": "deny", "reason": "not today" }),
    );
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["status"], "denied");
    assert!(str_of(&d, "denial_reason").contains("not today"), "{d}");
    assert_error(e.credentials(&ids[1]), 409, "GRANT_NOT_ACTIVE");
    // Decided is decided.
    for (id, verdict) in [(&ids[0], "deny"), (&ids[1], "approve")] {
        assert_error(
            e.api.post(
                &path(id),
                Some(&e.approver),
                &json!({ "decision": verdict, "reason": "again" }),
            ),
            409,
            "GRANT_NOT_PENDING",
        );
    }
    let (_, q) = e.api.get("/v1/approvals", Some(&e.approver));
    assert_eq!(q["pending"].as_array().unwrap().len(), 1);
    assert_eq!(q["pending"][0]["grant_id"], json!(ids[2]));

    let approved = e.leaves("grant.approved");
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0].data["grant_id"], json!(ids[0]));
    assert_eq!(approved[0].data["reason"], "ticket 7");
    assert!(approved[0].data["by"].as_str().unwrap().starts_with("key_"));
    let denied = e.leaves("grant.denied");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].data["to"], "denied");

    // The ceiling narrowed while the last one waited: approving it denies it instead.
    let mut narrow = routed_ceiling(&role, 600);
    narrow["actions"] = json!(["s3:List*"]);
    e.set_ceiling(ACCOUNT, &narrow);
    let (s, v) = e.api.post(
        &path(&ids[2]),
        Some(&e.approver),
        &json!({ "decision": "approve", "reason": "ok" }),
    );
    assert_error((s, v.clone()), 409, "GRANT_OUTSIDE_CEILING");
    assert!(v["error"]["message"].as_str().unwrap().contains("s3:GetObject"), "{v}");
    let g = e.get(&ids[2]);
    assert_eq!(g["status"], "denied", "{g}");
    assert!(str_of(&g, "denial_reason").contains("ceiling"), "{g}");
}

#[test]
fn long_poll_is_woken_by_the_decision() {
    let e = Env::start();
    let role = e.role(&unique("poll-role"));
    e.set_ceiling(ACCOUNT, &routed_ceiling(&role, 600));
    let id = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();

    // Bad wait values are refused; a short wait on a pending grant returns it pending.
    assert_error(
        e.api
            .get(&format!("/v1/aws/access/{id}?wait=soon"), Some(&e.t.agent_key)),
        400,
        "INVALID_REQUEST",
    );
    assert_error(
        e.api.get(&format!("/v1/aws/access/{id}?later=1"), Some(&e.t.agent_key)),
        400,
        "INVALID_REQUEST",
    );
    let (s, v) = e.api.get(&format!("/v1/aws/access/{id}?wait=1"), Some(&e.t.agent_key));
    assert_eq!((s, v["status"].as_str()), (200, Some("pending")), "{v}");

    let (api, key, pid) = (e.api.clone(), e.t.agent_key.clone(), id.clone());
    let poll = std::thread::spawn(move || api.get(&format!("/v1/aws/access/{pid}?wait=25"), Some(&key)));
    std::thread::sleep(Duration::from_millis(300));
    let (s, a) = e.api.post(
        &format!("/v1/approvals/{id}"),
        Some(&e.approver),
        &json!({ "decision": "approve", "reason": "go" }),
    );
    assert_eq!(s, 200, "{a}");
    let (s, polled) = poll.join().unwrap();
    assert_eq!(s, 200, "{polled}");
    assert_eq!(polled["status"], "active", "the poll returns the decision: {polled}");
    // A poll on a decided grant answers at once with it.
    assert_eq!(
        e.api
            .get(&format!("/v1/aws/access/{id}?wait=30"), Some(&e.t.agent_key))
            .1["status"],
        "active"
    );
}

#[test]
fn pending_requests_time_out() {
    let e = Env::start();
    let role = e.role(&unique("timeout-role"));
    e.set_ceiling(ACCOUNT, &routed_ceiling(&role, 1));
    let g = e.grant(&access("b", &["s3:GetObject"], 1800));
    let id = str_of(&g, "grant_id").to_string();
    assert_eq!(g["decide_by"].as_i64(), Some(g["created_at"].as_i64().unwrap() + 1));
    // A long poll ends at the timeout with the outcome.
    let (s, v) = e.api.get(&format!("/v1/aws/access/{id}?wait=20"), Some(&e.t.agent_key));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "timed_out", "{v}");
    assert!(str_of(&v, "denial_reason").contains("approver"), "{v}");
    wait_for("the sweeper's grant.timed_out leaf", Duration::from_secs(20), || {
        (!e.leaves("grant.timed_out").is_empty()).then_some(())
    });
    assert_error(
        e.api.post(
            &format!("/v1/approvals/{id}"),
            Some(&e.approver),
            &json!({ "decision": "approve", "reason": "late" }),
        ),
        409,
        "GRANT_NOT_PENDING",
    );
    assert_error(e.credentials(&id), 409, "GRANT_NOT_ACTIVE");
    let (_, q) = e.api.get("/v1/approvals", Some(&e.approver));
    assert_eq!(q["pending"], json!([]));
}

/// An HTTPS receiver (webhooks are https-only) answering with `script`, then 200; the
/// URL carries a token that must never reach the log.
fn receiver(script: Vec<u16>) -> (String, Arc<Mutex<Vec<Delivery>>>) {
    let (base, seen) = sealgate_tests::webhook_receiver::https_receiver(script);
    (format!("{base}/hooks/sealgate?token=abc123"), seen)
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

#[test]
fn webhooks_are_signed_retried_and_logged() {
    let e = Env::start();
    let role = e.role(&unique("hook-role"));
    e.set_ceiling(ACCOUNT, &routed_ceiling(&role, 600));
    let (url, seen) = receiver(vec![500]);
    let hook = format!("/v1/workspaces/{}/webhook", e.t.workspace);

    // Registration: admins only, URL checked, the secret shown once.
    assert_error(
        put(&e.api, &hook, Some(&e.t.agent_key), &json!({ "url": url })),
        403,
        "FORBIDDEN",
    );
    assert_error(
        put(&e.api, &hook, Some(&e.admin), &json!({ "url": "ftp://x/y" })),
        400,
        "GRANT_WEBHOOK_NOT_HTTPS",
    );
    assert_error(
        put(&e.api, &hook, Some(&e.admin), &json!({ "url": url, "secret": "short" })),
        400,
        "GRANT_INVALID_WEBHOOK",
    );
    let (s, reg) = put(&e.api, &hook, Some(&e.admin), &json!({ "url": url }));
    assert_eq!(s, 200, "{reg}");
    let secret = str_of(&reg, "secret").to_string();
    assert!(secret.len() >= 32, "{reg}");
    let (s, got) = e.api.get(&hook, Some(&e.admin));
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["url"], json!(url));
    assert!(got.get("secret").is_none(), "the secret is never shown again: {got}");

    // A routed request: approval.requested (first delivery fails with 500, then a retry).
    let id = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    wait_for(
        "the requested notification and its retry",
        Duration::from_secs(20),
        || (seen.lock().unwrap().len() >= 2).then_some(()),
    );
    // The resolution.
    let (s, _) = e.api.post(
        &format!("/v1/approvals/{id}"),
        Some(&e.approver),
        &json!({ "decision": "approve", "reason": "fine" }),
    );
    assert_eq!(s, 200);
    wait_for("the resolved notification", Duration::from_secs(20), || {
        (seen.lock().unwrap().len() >= 3).then_some(())
    });
    let got: Vec<Delivery> = seen.lock().unwrap().clone();
    for d in &got {
        let sig = d.headers.get("x-sealgate-signature").expect("signature header");
        assert_eq!(
            *sig,
            hmac_hex(&secret, &d.body),
            "HMAC-SHA256 over the body with the secret"
        );
        assert_ne!(*sig, hmac_hex("another-secret-entirely", &d.body));
        assert!(d
            .headers
            .get("x-sealgate-timestamp")
            .and_then(|t| t.parse::<u64>().ok())
            .is_some());
        assert_eq!(
            d.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
    }
    let bodies: Vec<Value> = got.iter().map(|d| serde_json::from_slice(&d.body).unwrap()).collect();
    assert_eq!(bodies[0]["event"], "approval.requested");
    assert_eq!(bodies[0]["grant"]["grant_id"], json!(id));
    assert_eq!(bodies[0]["grant"]["status"], "pending");
    // The retry is the same delivery, byte for byte.
    assert_eq!(got[0].body, got[1].body, "a retry resends the same body");
    assert_eq!(
        got[0].headers["x-sealgate-delivery"],
        got[1].headers["x-sealgate-delivery"]
    );
    assert_eq!(bodies[0]["delivery_id"], json!(got[0].headers["x-sealgate-delivery"]));
    assert_eq!(bodies[2]["event"], "approval.resolved");
    assert_eq!(bodies[2]["grant"]["status"], "active");
    assert_eq!(bodies[2]["grant"]["resolution"]["reason"], "fine");
    assert_ne!(
        got[2].headers["x-sealgate-delivery"],
        got[0].headers["x-sealgate-delivery"]
    );

    // Every attempt is a leaf; the secret and the full URL (with its token) are not.
    wait_for("three attempt leaves", Duration::from_secs(20), || {
        (e.leaves("grant.webhook.attempt").len() >= 3).then_some(())
    });
    let attempts = e.leaves("grant.webhook.attempt");
    assert_eq!(attempts[0].data["ok"], false);
    assert_eq!(attempts[0].data["http_status"], 500);
    assert_eq!(attempts[0].data["state"], "pending");
    assert_eq!(attempts[1].data["ok"], true);
    assert_eq!(attempts[1].data["attempt"], 2);
    assert_eq!(attempts[1].data["state"], "delivered");
    // The host only: no scheme, port, path or query (issue 9, hole 5).
    assert_eq!(attempts[0].data["target"], "127.0.0.1");
    assert_eq!(
        got[0].path, "/hooks/sealgate?token=abc123",
        "the path and query are sent"
    );
    let log = e.log_text();
    assert!(!log.contains(&secret), "the webhook secret is in the log");
    assert!(!log.contains("abc123"), "the webhook URL's token is in the log");
    assert_eq!(e.leaves("grant.webhook.set").len(), 1);

    // A timeout is a resolution too; a caller-chosen secret is not echoed.
    let (s, reg) = put(
        &e.api,
        &hook,
        Some(&e.admin),
        &json!({ "url": url, "secret": "a-chosen-secret-0123456789" }),
    );
    assert_eq!(s, 200);
    assert!(reg.get("secret").is_none(), "{reg}");
    e.set_ceiling(ACCOUNT, &routed_ceiling(&role, 1));
    let late = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    let timed_out = wait_for("the timed-out notification", Duration::from_secs(20), || {
        seen.lock().unwrap().iter().find_map(|d| {
            let v: Value = serde_json::from_slice(&d.body).unwrap();
            (v["event"] == "approval.resolved"
                && v["grant"]["grant_id"] == json!(late)
                && v["grant"]["status"] == "timed_out")
                .then(|| d.clone())
        })
    });
    assert_eq!(
        timed_out.headers["x-sealgate-signature"],
        hmac_hex("a-chosen-secret-0123456789", &timed_out.body)
    );

    // Removing the webhook stops deliveries.
    let (s, _) = e.api.delete(&hook, Some(&e.admin));
    assert_eq!(s, 200);
    assert_error(e.api.get(&hook, Some(&e.admin)), 404, "NOT_FOUND");
}

/// An approver key of the test's workspace: `(id, key)`.
fn approver_key(e: &Env) -> (String, String) {
    let (s, v) = e.api.post(
        &format!("/v1/workspaces/{}/keys", e.t.workspace),
        Some(&e.admin),
        &json!({ "role": "approver" }),
    );
    assert_eq!(s, 201, "{v}");
    (str_of(&v, "id").to_string(), str_of(&v, "key").to_string())
}

fn multi_ceiling(role: &str, n: u64) -> Value {
    ceiling(
        role,
        "assume_role",
        json!([{ "decision": "route_to_approver", "approvals_required": n, "reason": "two-person rule" }]),
    )
}

fn approve(e: &Env, id: &str, key: &str, reason: &str) -> (u16, Value) {
    let got = e.api.post(
        &format!("/v1/approvals/{id}"),
        Some(key),
        &json!({ "decision": "approve", "reason": reason }),
    );
    if got.0 == 500 {
        eprintln!("HOSTLOG {}", e.host_log());
    }
    got
}

/// Hole 8: with `approvals_required: 2`, one approval (even given twice by the same
/// key) keeps the grant pending; a second distinct approver activates it, and the grant
/// names who decided and who approved.
#[test]
fn hole8_same_approver_twice_counts_once() {
    let e = Env::start();
    let role = e.role(&unique("two-person"));
    e.set_ceiling(ACCOUNT, &multi_ceiling(&role, 2));
    let g = e.grant(&access("b", &["s3:GetObject"], 900));
    assert_eq!(g["status"], "pending", "{g}");
    assert_eq!(g["approvals_required"], 2, "{g}");
    let id = str_of(&g, "grant_id").to_string();
    let (first_id, first) = approver_key(&e);
    let (second_id, second) = approver_key(&e);

    let (s, v) = approve(&e, &id, &first, "looks fine");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "pending", "one approval of two: {v}");
    assert_eq!(v["approvals"][0]["key_id"], first_id.as_str(), "{v}");
    assert_eq!(e.credentials(&id).0, 409, "no credentials while pending");
    // The same key again: refused, and not counted.
    assert_error(approve(&e, &id, &first, "still fine"), 409, "GRANT_ALREADY_APPROVED");
    let now = e.get(&id);
    assert_eq!(now["status"], "pending", "{now}");
    assert_eq!(now["approvals"].as_array().map(Vec::len), Some(1), "{now}");
    assert_eq!(
        e.db_query_i64("SELECT COUNT(*) FROM grant_approvals WHERE grant_id = ?1", &[&id]),
        1
    );

    // A second, distinct approver decides.
    let (s, v) = approve(&e, &id, &second, "second pair of eyes");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "active", "{v}");
    assert_eq!(v["resolution"]["by"], second_id.as_str(), "the deciding key: {v}");
    let who: Vec<&str> = v["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(who, [first_id.as_str(), second_id.as_str()], "{v}");
    assert_eq!(e.get(&id)["resolution"]["by"], second_id.as_str());
    assert_eq!(
        e.db_query_i64(
            "SELECT COUNT(*) FROM grants WHERE id = ?1 AND resolved_by = ?2",
            &[&id, &second_id]
        ),
        1,
        "the row names the deciding key"
    );
    assert_eq!(e.credentials(&id).0, 200);
}

/// Hole 8: N-1 distinct approvals keep a grant pending; a deny by any approver decides.
#[test]
fn hole8_n_minus_one_approvals_keep_it_pending() {
    let e = Env::start();
    let role = e.role(&unique("three-person"));
    // Out of range is refused when the ceiling is stored.
    for bad in [0, 11] {
        let (s, v) = put(
            &e.api,
            &e.ceiling_path(ACCOUNT),
            Some(&e.admin),
            &multi_ceiling(&role, bad),
        );
        assert_eq!(s, 400, "approvals_required {bad}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("approvals_required"),
            "{v}"
        );
    }
    e.set_ceiling(ACCOUNT, &multi_ceiling(&role, 3));
    let id = str_of(&e.grant(&access("b", &["s3:GetObject"], 900)), "grant_id").to_string();
    let keys: Vec<(String, String)> = (0..3).map(|_| approver_key(&e)).collect();
    for (i, (_, k)) in keys.iter().take(2).enumerate() {
        let (s, v) = approve(&e, &id, k, "ok by me");
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["status"], "pending", "approval {} of 3: {v}", i + 1);
    }
    // Still in the queue, showing who approved so far.
    let (_, q) = e.api.get("/v1/approvals", Some(&keys[2].1));
    let queued = q["pending"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["grant_id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(queued["approvals"].as_array().map(Vec::len), Some(2), "{queued}");
    // The third denies: denied, whatever the two said.
    let (s, v) = e.api.post(
        &format!("/v1/approvals/{id}"),
        Some(&keys[2].1),
        &json!({ "decision": "deny", "reason": "not this week" }),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "denied", "{v}");
    assert_eq!(v["resolution"]["by"], keys[2].0.as_str());
}

/// Hole 8: the key that created a request cannot approve it (a typed 403).
#[test]
fn hole8_the_requesting_key_cannot_approve_its_request() {
    let e = Env::start();
    let role = e.role(&unique("self-approval"));
    e.set_ceiling(ACCOUNT, &multi_ceiling(&role, 1));
    let id = str_of(&e.grant(&access("b", &["s3:GetObject"], 900)), "grant_id").to_string();
    assert_error(
        approve(&e, &id, &e.t.agent_key, "I approve of myself"),
        403,
        "GRANT_SELF_APPROVAL",
    );
    assert_error(
        e.api.post(
            &format!("/v1/approvals/{id}"),
            Some(&e.t.agent_key),
            &json!({ "decision": "deny", "reason": "or deny" }),
        ),
        403,
        "GRANT_SELF_APPROVAL",
    );
    assert_eq!(e.get(&id)["status"], "pending");
    assert_eq!(
        e.db_query_i64(
            "SELECT COUNT(*) FROM grants WHERE id = ?1 AND requested_by = ?2",
            &[&id, &e.t.agent_key_id]
        ),
        1,
        "the row names the requesting key"
    );
}
