//! AWS grants, the policy half: ceilings (admin CRUD, validation, audit), the agents'
//! scope, decision tables through preview and request (IAM wildcards, case rules,
//! resources, regions, TTL, rule order), preview writing nothing, idempotent requests,
//! and refused input.

mod common;
mod grants_support;

use common::*;
use grants_support::*;
use serde_json::{json, Value};

fn table_ceiling(role: &str) -> Value {
    json!({
        "role_arn": role,
        "credential_mode": "assume_role",
        "actions": ["s3:Get*", "s3:List*", "s3:PutObjec?"],
        "resources": ["arn:aws:s3:::data-bucket", "arn:aws:s3:::data-bucket/*", "arn:aws:s3:::logs-??"],
        "regions": ["us-east-1", "eu-west-1"],
        "max_ttl_seconds": 3600,
        "rules": [
            { "decision": "hard_deny", "resources": ["arn:aws:s3:::data-bucket/secret/*"], "reason": "secrets are off limits" },
            { "decision": "auto_approve", "actions": ["s3:Get*", "s3:List*"], "max_ttl_seconds": 1800, "reason": "short reads" },
            { "decision": "route_to_approver", "actions": ["s3:PutObjec?"], "regions": ["us-east-1"], "reason": "writes need a human" },
            { "decision": "auto_approve", "regions": ["eu-west-1"], "reason": "eu sandbox" }
        ]
    })
}

fn body(actions: &[&str], resources: &[&str], regions: &[&str], ttl: u64) -> Value {
    json!({
        "account_id": ACCOUNT,
        "actions": actions,
        "resources": resources,
        "regions": regions,
        "ttl_seconds": ttl,
        "reason": "decision table",
        "run_id": "table",
    })
}

#[test]
fn decision_table_through_preview_and_request() {
    let e = Env::start();
    let role = e.role(&unique("table"));
    e.set_ceiling(ACCOUNT, &table_ceiling(&role));
    let obj = ["arn:aws:s3:::data-bucket/x"];
    let us = ["us-east-1"];
    // (request, decision, deciding rule, a piece of the reason)
    let table: Vec<(Value, &str, Option<u64>, &str)> = vec![
        (
            body(&["s3:GetObject"], &obj, &us, 900),
            "auto_approve",
            Some(1),
            "short reads",
        ),
        // A request pattern inside a ceiling pattern.
        (
            body(&["s3:Get*"], &obj, &us, 900),
            "auto_approve",
            Some(1),
            "short reads",
        ),
        // Action names compare case-insensitively.
        (
            body(&["s3:gEtObJeCt"], &obj, &us, 900),
            "auto_approve",
            Some(1),
            "short reads",
        ),
        // Broader than the ceiling's s3:Get*: outside.
        (body(&["s3:G*"], &obj, &us, 900), "hard_deny", None, "action s3:G*"),
        (body(&["s3:*"], &obj, &us, 900), "hard_deny", None, "action s3:*"),
        (
            body(&["s3:DeleteObject"], &obj, &us, 900),
            "hard_deny",
            None,
            "action s3:DeleteObject",
        ),
        // `?` is exactly one character.
        (
            body(&["s3:PutObject"], &obj, &us, 900),
            "route_to_approver",
            Some(2),
            "writes need a human",
        ),
        (
            body(&["s3:PutObjectAcl"], &obj, &us, 900),
            "hard_deny",
            None,
            "action s3:PutObjectAcl",
        ),
        // Rule 2 holds only in us-east-1; rule 3 catches eu-west-1.
        (
            body(&["s3:PutObject"], &obj, &["eu-west-1"], 900),
            "auto_approve",
            Some(3),
            "eu sandbox",
        ),
        // Rule order: the deny on secrets comes before the read rule.
        (
            body(&["s3:GetObject"], &["arn:aws:s3:::data-bucket/secret/k"], &us, 900),
            "hard_deny",
            Some(0),
            "secrets are off limits",
        ),
        (
            body(&["s3:GetObject"], &["arn:aws:s3:::other-bucket/x"], &us, 900),
            "hard_deny",
            None,
            "resource arn:aws:s3:::other-bucket/x",
        ),
        (
            body(&["s3:GetObject"], &["arn:aws:s3:::logs-01"], &us, 900),
            "auto_approve",
            Some(1),
            "short reads",
        ),
        (
            body(&["s3:GetObject"], &["arn:aws:s3:::logs-001"], &us, 900),
            "hard_deny",
            None,
            "resource arn:aws:s3:::logs-001",
        ),
        // Resource patterns in the request, and case-sensitive ARNs.
        // A request that merely overlaps a deny rule is denied: data-bucket/* includes
        // the secrets (escalating rules hold on overlap, auto-approving ones on cover).
        (
            body(&["s3:GetObject"], &["arn:aws:s3:::data-bucket/*"], &us, 900),
            "hard_deny",
            Some(0),
            "secrets are off limits",
        ),
        (
            body(&["s3:GetObject"], &["arn:aws:s3:::data-bucket/pub/*"], &us, 900),
            "auto_approve",
            Some(1),
            "short reads",
        ),
        (
            body(&["s3:GetObject"], &["arn:aws:s3:::data-*"], &us, 900),
            "hard_deny",
            None,
            "resource arn:aws:s3:::data-*",
        ),
        (
            body(&["s3:GetObject"], &["arn:aws:s3:::DATA-BUCKET/x"], &us, 900),
            "hard_deny",
            None,
            "resource",
        ),
        (
            body(&["s3:GetObject"], &obj, &["ap-south-1"], 900),
            "hard_deny",
            None,
            "region ap-south-1",
        ),
        (
            body(&["s3:GetObject"], &obj, &["us-east-1", "ap-south-1"], 900),
            "hard_deny",
            None,
            "region ap-south-1",
        ),
        // Past the read rule's TTL: no rule matches, an approver decides.
        (
            body(&["s3:GetObject"], &obj, &us, 2400),
            "route_to_approver",
            None,
            "no rule matched",
        ),
        (
            body(&["s3:GetObject"], &obj, &us, 7200),
            "hard_deny",
            None,
            "ttl_seconds 7200",
        ),
        // Bundling a write with a read does not launder it: the write rule holds on overlap.
        (
            body(&["s3:GetObject", "s3:PutObject"], &obj, &us, 900),
            "route_to_approver",
            Some(2),
            "writes need a human",
        ),
    ];
    for (req, decision, rule, reason) in &table {
        let (s, p) = e.preview(req);
        assert_eq!(s, 200, "preview {req}: {p}");
        assert_eq!(p["decision"], *decision, "preview {req}: {p}");
        assert_eq!(p["rule"], json!(rule), "preview {req}: {p}");
        let got = p["reason"].as_str().unwrap_or_default();
        assert!(got.contains(reason), "preview {req}: reason {got:?} lacks {reason:?}");

        // The request is decided the same way.
        let g = e.grant(req);
        let status = match *decision {
            "auto_approve" => "active",
            "route_to_approver" => "pending",
            _ => "denied",
        };
        assert_eq!(g["status"], status, "request {req}: {g}");
        assert_eq!(g["decision"]["decision"], *decision, "{g}");
        assert_eq!(g["decision"]["rule"], json!(rule), "{g}");
        if status == "denied" {
            assert!(str_of(&g, "denial_reason").contains(reason), "{g}");
            assert!(g["expires_at"].is_null(), "{g}");
        } else {
            assert!(g.get("denial_reason").is_none(), "{g}");
        }
        if status == "active" {
            let ttl = req["ttl_seconds"].as_i64().unwrap();
            let created = g["created_at"].as_i64().unwrap();
            assert_eq!(g["expires_at"].as_i64(), Some(created + ttl), "{g}");
        }
        let id = str_of(&g, "grant_id");
        assert_eq!(g["secret_ref"], format!("secret_ref://aws/runs/table/{id}"), "{g}");
        for secret in ["secret_access_key", "session_token", "access_key_id"] {
            assert!(g.get(secret).is_none(), "a grant response must not carry {secret}: {g}");
        }
    }

    // Every request is a leaf naming its decision.
    let requested = e.leaves("grant.requested");
    assert_eq!(requested.len(), table.len(), "one grant.requested leaf per request");
    for l in &requested {
        assert_eq!(l.origin, sealgate_shared::leaf::Origin::Host);
        assert!(l.data["decision"]["decision"].is_string(), "{:?}", l.data);
        assert_eq!(l.data["workspace_id"], e.t.workspace);
    }
}

#[test]
fn rule_order_decides() {
    let e = Env::start();
    let role = e.role(&unique("order"));
    let req = body(&["s3:GetObject"], &["arn:aws:s3:::b/k"], &["us-east-1"], 900);
    let first = json!({ "decision": "auto_approve", "reason": "allow first" });
    let second = json!({ "decision": "hard_deny", "reason": "deny first" });
    e.set_ceiling(ACCOUNT, &ceiling(&role, "assume_role", json!([first, second])));
    let (_, p) = e.preview(&req);
    assert_eq!(
        (p["decision"].clone(), p["rule"].clone()),
        (json!("auto_approve"), json!(0)),
        "{p}"
    );
    e.set_ceiling(ACCOUNT, &ceiling(&role, "assume_role", json!([second, first])));
    let (_, p) = e.preview(&req);
    assert_eq!(
        (p["decision"].clone(), p["rule"].clone()),
        (json!("hard_deny"), json!(0)),
        "{p}"
    );
    assert_eq!(p["reason"], "deny first");
    // No rules at all: an approver decides.
    e.set_ceiling(ACCOUNT, &ceiling(&role, "assume_role", json!([])));
    let (_, p) = e.preview(&req);
    assert_eq!(p["decision"], "route_to_approver", "{p}");
    assert!(p["rule"].is_null(), "{p}");
}

#[test]
fn preview_writes_nothing() {
    let e = Env::start();
    let role = e.role(&unique("preview"));
    e.set_ceiling(ACCOUNT, &open_ceiling(&role, "assume_role"));
    let before = log_size(&e.api);
    for req in [
        access("b", &["s3:GetObject"], 900),
        access("b", &["s3:DeleteObject"], 900),
        access("b", &["s3:GetObject"], 99_999),
    ] {
        let (s, p) = e.preview(&req);
        assert!(s == 200 || s == 400, "{p}");
    }
    assert_eq!(log_size(&e.api), before, "preview must not append to the log");
    let c = rusqlite::Connection::open_with_flags(e.d.db_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let n: i64 = c.query_row("SELECT COUNT(*) FROM grants", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 0, "preview must not create grants");
    // While a real request does both.
    e.grant(&access("b", &["s3:GetObject"], 900));
    assert!(log_size(&e.api) > before);
}

#[test]
fn ceilings_crud_validation_and_audit() {
    let e = Env::start();
    let role = format!("arn:aws:iam::{ACCOUNT}:role/crud");
    let path = e.ceiling_path(ACCOUNT);
    let good = open_ceiling(&role, "web_identity");

    // Who may write.
    assert_error(put(&e.api, &path, Some(&e.t.agent_key), &good), 403, "FORBIDDEN");
    assert_error(put(&e.api, &path, Some(&e.approver), &good), 403, "FORBIDDEN");
    let (other, other_admin, _) = e.other_tenant();
    assert_error(put(&e.api, &path, Some(&other_admin), &good), 403, "FORBIDDEN");
    assert_error(put(&e.api, &path, None, &good), 401, "UNAUTHENTICATED");

    // What is refused, naming the field.
    let bad_account = format!("/v1/workspaces/{}/aws/accounts/12345", e.t.workspace);
    assert_error(
        put(&e.api, &bad_account, Some(&e.admin), &good),
        400,
        "GRANT_INVALID_ACCOUNT",
    );
    let mut wrong_acct = good.clone();
    wrong_acct["role_arn"] = json!("arn:aws:iam::210987654321:role/crud");
    let (s, v) = put(&e.api, &path, Some(&e.admin), &wrong_acct);
    assert_error((s, v.clone()), 400, "GRANT_INVALID_CEILING");
    assert!(v["error"]["message"].as_str().unwrap().contains("role_arn"), "{v}");
    for (field, value, named) in [
        ("max_ttl_seconds", json!(60), "max_ttl_seconds"),
        ("actions", json!(["s3 GetObject"]), "actions"),
        ("actions", json!([]), "actions"),
        ("resources", json!(["bucket/*"]), "resources"),
        ("regions", json!(["mars-1"]), "regions"),
        ("sts_region", json!("nowhere"), "sts_region"),
        ("credential_mode", json!("telepathy"), "telepathy"),
        ("surprise", json!(1), "surprise"),
        ("pending_timeout_seconds", json!(0), "pending_timeout_seconds"),
        (
            "rules",
            json!([{ "decision": "auto_approve", "reason": "" }]),
            "rules[0].reason",
        ),
        ("rules", json!([{ "decision": "maybe", "reason": "x" }]), "maybe"),
    ] {
        let mut b = good.clone();
        b[field] = value;
        let (s, v) = put(&e.api, &path, Some(&e.admin), &b);
        assert_error((s, v.clone()), 400, "GRANT_INVALID_CEILING");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(named), "{field}: message {msg:?} does not name {named:?}");
    }
    assert_eq!(
        e.leaves("grant.ceiling.put").len(),
        0,
        "refused ceilings leave no trace"
    );

    // Create (201), replace (200); sts_region defaults; each change is a leaf.
    let mut no_region = good.clone();
    no_region.as_object_mut().unwrap().remove("sts_region");
    let (s, v) = put(&e.api, &path, Some(&e.admin), &no_region);
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["sts_region"], "us-east-1", "{v}");
    assert_eq!(v["pending_timeout_seconds"], 900, "default pending timeout: {v}");
    let mut replaced = good.clone();
    replaced["max_ttl_seconds"] = json!(1800);
    replaced["pending_timeout_seconds"] = json!(60);
    let (s, v) = put(&e.api, &path, Some(&e.operator), &replaced);
    assert_eq!(s, 200, "{v}");
    let (s, got) = e.api.get(&path, Some(&e.admin));
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["max_ttl_seconds"], 1800);
    assert_eq!(got["pending_timeout_seconds"], 60);
    assert_eq!(got["role_arn"], role);
    assert_eq!(got["credential_mode"], "web_identity");
    let puts = e.leaves("grant.ceiling.put");
    assert_eq!(puts.len(), 2, "one leaf per change");
    assert_eq!(puts[1].data["ceiling"]["max_ttl_seconds"], 1800, "{:?}", puts[1].data);
    assert_eq!(puts[1].data["account_id"], ACCOUNT);
    assert_eq!(puts[1].data["ceiling_sha256"].as_str().map(str::len), Some(64));

    // Reads: admins of the workspace only; agents use the scope.
    assert_error(e.api.get(&path, Some(&e.t.agent_key)), 403, "FORBIDDEN");
    assert_error(e.api.get(&path, Some(&other_admin)), 403, "FORBIDDEN");
    let (s, scope) = e.api.get(&format!("{path}/scope"), Some(&e.t.agent_key));
    assert_eq!(s, 200, "{scope}");
    assert_eq!(scope["actions"], good["actions"]);
    assert_eq!(scope["max_ttl_seconds"], 1800);
    assert_eq!(scope["sts_region"], "us-east-1");
    assert_error(
        e.api.get(&format!("{path}/scope"), Some(&other.agent_key)),
        404,
        "NOT_FOUND",
    );
    assert_error(
        e.api.get(
            &format!("/v1/workspaces/{}/aws/accounts/111111111111/scope", e.t.workspace),
            Some(&e.t.agent_key),
        ),
        404,
        "GRANT_UNKNOWN_ACCOUNT",
    );

    // Delete: a leaf, then gone; requests against it are refused.
    assert_error(e.api.delete(&path, Some(&e.t.agent_key)), 403, "FORBIDDEN");
    let (s, v) = e.api.delete(&path, Some(&e.admin));
    assert_eq!(s, 200, "{v}");
    assert_eq!(e.leaves("grant.ceiling.deleted").len(), 1);
    assert_error(e.api.get(&path, Some(&e.admin)), 404, "NOT_FOUND");
    assert_error(e.api.delete(&path, Some(&e.admin)), 404, "NOT_FOUND");
    assert_error(
        e.preview(&access("b", &["s3:GetObject"], 900)),
        404,
        "GRANT_UNKNOWN_ACCOUNT",
    );
    assert_error(
        e.request(&access("b", &["s3:GetObject"], 900)),
        404,
        "GRANT_UNKNOWN_ACCOUNT",
    );
}

#[test]
fn requests_are_validated() {
    let e = Env::start();
    let role = e.role(&unique("validate"));
    e.set_ceiling(ACCOUNT, &open_ceiling(&role, "assume_role"));
    let good = access("b", &["s3:GetObject"], 900);
    let before = log_size(&e.api);
    for (field, value, code) in [
        ("ttl_seconds", json!(100), "GRANT_INVALID_REQUEST"),
        ("ttl_seconds", json!(50_000), "GRANT_INVALID_REQUEST"),
        ("actions", json!([]), "GRANT_INVALID_REQUEST"),
        ("actions", json!(["GetObject"]), "GRANT_INVALID_REQUEST"),
        ("resources", json!(["not-an-arn"]), "GRANT_INVALID_REQUEST"),
        ("regions", json!(["us-*"]), "GRANT_INVALID_REQUEST"),
        ("run_id", json!("a/b"), "GRANT_INVALID_REQUEST"),
        ("reason", json!("  "), "GRANT_INVALID_REQUEST"),
        ("account_id", json!("abc"), "GRANT_INVALID_ACCOUNT"),
        // Malformed, not merely out of bounds: the documented code too (issue 10).
        ("ttl_seconds", json!("soon"), "GRANT_INVALID_REQUEST"),
        ("extra", json!(true), "GRANT_INVALID_REQUEST"),
    ] {
        let mut b = good.clone();
        b[field] = value.clone();
        let (s, v) = e.request(&b);
        assert_error((s, v.clone()), 400, code);
        if code == "GRANT_INVALID_REQUEST" {
            assert!(
                v["error"]["message"].as_str().unwrap().contains(field),
                "{field}={value}: {v}"
            );
        }
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("run_id");
    assert_error(e.request(&missing), 400, "GRANT_INVALID_REQUEST");
    // A session policy STS would refuse (over 2048 characters) is refused up front.
    let many: Vec<String> = (0..60).map(|i| format!("arn:aws:s3:::bucket-{i}/prefix/*")).collect();
    let mut big = good.clone();
    big["resources"] = json!(many);
    let (s, v) = e.request(&big);
    assert_error((s, v.clone()), 400, "GRANT_INVALID_REQUEST");
    assert!(v["error"]["message"].as_str().unwrap().contains("2048"), "{v}");
    // Only agents ask.
    assert_error(e.api.post("/v1/aws/access", Some(&e.approver), &good), 403, "FORBIDDEN");
    assert_error(e.api.post("/v1/aws/access", Some(&e.admin), &good), 403, "FORBIDDEN");
    assert_error(
        e.api.post("/v1/aws/access/preview", Some(&e.admin), &good),
        403,
        "FORBIDDEN",
    );
    assert_eq!(log_size(&e.api), before, "refused requests leave no trace");
}

#[test]
fn idempotent_requests() {
    let e = Env::start();
    let role = e.role(&unique("idem"));
    e.set_ceiling(ACCOUNT, &open_ceiling(&role, "assume_role"));
    let req = access("b", &["s3:GetObject"], 900);
    let key = e.t.agent_key.clone();
    let hdr = [("Idempotency-Key", "order-42")];

    let (s, first) = post_with(&e.api, "/v1/aws/access", &key, &hdr, &req);
    assert_eq!(s, 201, "{first}");
    let id = str_of(&first, "grant_id").to_string();
    let (s, again) = post_with(&e.api, "/v1/aws/access", &key, &hdr, &req);
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["grant_id"], id, "same key and body: same grant");
    assert_eq!(again["replayed"], true);
    // The key may come in the body instead.
    let mut in_body = req.clone();
    in_body["idempotency_key"] = json!("order-42");
    let (s, v) = e.request(&in_body);
    assert_eq!((s, v["grant_id"].as_str()), (200, Some(id.as_str())), "{v}");
    // Same key, different request: refused.
    let mut different = req.clone();
    different["ttl_seconds"] = json!(1200);
    let (s, v) = post_with(&e.api, "/v1/aws/access", &key, &hdr, &different);
    assert_error((s, v.clone()), 409, "GRANT_IDEMPOTENCY_CONFLICT");
    assert!(v["error"]["message"].as_str().unwrap().contains(&id), "{v}");
    // Header and field disagreeing is a client bug.
    let (s, v) = post_with(
        &e.api,
        "/v1/aws/access",
        &key,
        &[("Idempotency-Key", "other")],
        &in_body,
    );
    assert_error((s, v), 400, "GRANT_INVALID_REQUEST");
    // Without a key every request is a new grant.
    let a = e.grant(&req);
    let b = e.grant(&req);
    assert_ne!(a["grant_id"], b["grant_id"]);
    // Keys are per agent: another agent's same key is its own grant.
    let (s, ag) = e.api.post(
        &format!("/v1/workspaces/{}/agents", e.t.workspace),
        Some(&e.operator),
        &json!({ "name": "second" }),
    );
    assert_eq!(s, 201, "{ag}");
    let (s, k2) = e.api.post(
        &format!("/v1/workspaces/{}/keys", e.t.workspace),
        Some(&e.operator),
        &json!({ "role": "agent", "agent_id": ag["id"] }),
    );
    assert_eq!(s, 201, "{k2}");
    let (s, theirs) = post_with(&e.api, "/v1/aws/access", k2["key"].as_str().unwrap(), &hdr, &req);
    assert_eq!(s, 201, "{theirs}");
    assert_ne!(theirs["grant_id"], id);

    // Concurrent retries with one key create one grant.
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (api, key, req) = (e.api.clone(), key.clone(), req.clone());
            std::thread::spawn(move || post_with(&api, "/v1/aws/access", &key, &[("Idempotency-Key", "burst")], &req))
        })
        .collect();
    let ids: std::collections::BTreeSet<String> = threads
        .into_iter()
        .map(|t| {
            let (s, v) = t.join().unwrap();
            assert!(s == 200 || s == 201, "{v}");
            v["grant_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one key, one grant: {ids:?}");
    let leaves = e.leaves("grant.requested");
    let for_id = |g: &str| leaves.iter().filter(|l| l.data["grant_id"] == g).count();
    assert_eq!(for_id(&id), 1, "a replay writes no new leaf");
    assert_eq!(for_id(ids.iter().next().unwrap()), 1);
}
