//! The cross-tenant matrix (issue 9): for every route the host serves, a key of another
//! workspace — each role — is refused on workspace A's resources (403 or 404, never
//! 2xx, never A's data), and a key of a second agent of A is refused on the first
//! agent's grants.
//!
//! The route list is not written by hand only: [`served_routes`] reads every `.route(…)`
//! of the three routers (`host/src/api/mod.rs`, `host/src/grants/mod.rs`,
//! `host/src/byo/mod.rs`) and the paths of the OpenAPI document the host serves, and the
//! test fails if any (method, path) of either has no row in [`MATRIX`], or a row names
//! one that no longer exists. A new route therefore needs a matrix row (and a decision:
//! public, operator-only, scoped to the caller, or scoped to a workspace or grant).

mod common;
mod grants_support;

use grants_support::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// How a route decides who may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// No key needed; no tenant data by design (health, keys, hashes, proofs).
    Public,
    /// The operator key only: every workspace key is refused.
    Operator,
    /// Acts on the caller's own workspace (no workspace in the path): another tenant's
    /// key reaches only its own data, so A's data must never appear in the answer.
    Caller,
    /// `{ws}` in the path: A's workspace is named, every key of B is refused.
    Workspace,
    /// `{grant_id}` in the path: A's grant is named, B's keys and A's other agent are refused.
    Grant,
}

use Scope::*;

/// Every route: (method, path as routed, scope).
const MATRIX: &[(&str, &str, Scope)] = &[
    ("GET", "/healthz", Public),
    ("GET", "/readyz", Public),
    ("GET", "/metrics", Public),
    ("GET", "/v1/openapi.json", Public),
    ("GET", "/.well-known/openid-configuration", Public),
    ("GET", "/.well-known/jwks.json", Public),
    ("GET", "/v1/attestation", Public),
    ("GET", "/v1/audit/checkpoint", Public),
    ("GET", "/v1/audit/key", Public),
    ("GET", "/v1/audit/hashes", Public),
    ("GET", "/v1/audit/entries", Caller),
    ("GET", "/v1/audit/proof/inclusion", Public),
    ("GET", "/v1/audit/proof/consistency", Public),
    ("GET", "/v1/audit/tokens/{jti}", Public),
    ("GET", "/checkpoint", Public),
    ("GET", "/tile/{level}/{*rest}", Public),
    ("POST", "/v1/tokens", Caller),
    ("POST", "/v1/admin/keys/rotate", Operator),
    ("POST", "/v1/admin/operator-key/rotate", Operator),
    ("POST", "/v1/workspaces", Operator),
    ("GET", "/v1/workspaces/{ws}/agents", Workspace),
    ("POST", "/v1/workspaces/{ws}/agents", Workspace),
    ("POST", "/v1/workspaces/{ws}/agents/{agent}/disable", Workspace),
    ("GET", "/v1/workspaces/{ws}/keys", Workspace),
    ("POST", "/v1/workspaces/{ws}/keys", Workspace),
    ("DELETE", "/v1/workspaces/{ws}/keys/{id}", Workspace),
    ("GET", "/v1/workspaces/{ws}/aws/accounts/{account_id}", Workspace),
    ("PUT", "/v1/workspaces/{ws}/aws/accounts/{account_id}", Workspace),
    ("DELETE", "/v1/workspaces/{ws}/aws/accounts/{account_id}", Workspace),
    ("GET", "/v1/workspaces/{ws}/aws/accounts/{account_id}/scope", Workspace),
    (
        "GET",
        "/v1/workspaces/{ws}/aws/accounts/{account_id}/policies",
        Workspace,
    ),
    ("POST", "/v1/workspaces/{ws}/aws/accounts/{account_id}/check", Workspace),
    ("GET", "/v1/workspaces/{ws}/webhook", Workspace),
    ("PUT", "/v1/workspaces/{ws}/webhook", Workspace),
    ("DELETE", "/v1/workspaces/{ws}/webhook", Workspace),
    ("POST", "/v1/aws/access/preview", Caller),
    ("POST", "/v1/aws/access", Caller),
    ("GET", "/v1/aws/access/{grant_id}", Grant),
    ("GET", "/v1/aws/access/{grant_id}/credentials", Grant),
    ("POST", "/v1/aws/access/{grant_id}/release", Grant),
    ("GET", "/v1/approvals", Caller),
    ("POST", "/v1/approvals/{grant_id}", Grant),
    ("GET", "/v1/workspaces/{ws}/features", Workspace),
    ("PUT", "/v1/workspaces/{ws}/features", Workspace),
    ("GET", "/v1/workspaces/{ws}/byo/grant", Workspace),
    ("POST", "/v1/workspaces/{ws}/byo/grant", Workspace),
    ("DELETE", "/v1/workspaces/{ws}/byo/grant", Workspace),
    ("POST", "/v1/workspaces/{ws}/byo/grant/check", Workspace),
    ("POST", "/v1/workspaces/{ws}/byo/grant/rotate-external-id", Workspace),
    ("GET", "/v1/workspaces/{ws}/byo/grant/policies", Workspace),
    ("GET", "/v1/workspaces/{ws}/byo/audit", Workspace),
    ("POST", "/v1/workspaces/{ws}/artifacts/byo", Workspace),
    ("GET", "/v1/workspaces/{ws}/artifacts", Workspace),
    ("GET", "/v1/workspaces/{ws}/artifacts/{id}", Workspace),
    ("DELETE", "/v1/workspaces/{ws}/artifacts/{id}", Workspace),
];

/// The routers' source files, relative to this crate.
const ROUTERS: &[&str] = &[
    "../host/src/api/mod.rs",
    "../host/src/grants/mod.rs",
    "../host/src/byo/mod.rs",
];

/// `(METHOD, path)` of every `.route(path, get(..).post(..)…)` in `src`.
fn routes_in(src: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for seg in src.split(".route(").skip(1) {
        // The segment ends where the next builder call on the router starts.
        let seg = seg.split(".merge(").next().unwrap_or(seg);
        let seg = seg.split(".fallback(").next().unwrap_or(seg);
        let Some(start) = seg.find('"') else { continue };
        let Some(len) = seg[start + 1..].find('"') else {
            continue;
        };
        let path = &seg[start + 1..start + 1 + len];
        let rest = &seg[start + 2 + len..];
        for method in ["get", "post", "put", "delete", "patch"] {
            let needle = format!("{method}(");
            let mut from = 0;
            while let Some(i) = rest[from..].find(&needle) {
                let at = from + i;
                let before = rest[..at].chars().next_back();
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    out.push((method.to_uppercase(), path.to_string()));
                }
                from = at + needle.len();
            }
        }
    }
    out
}

fn served_routes(openapi: &Value) -> BTreeSet<(String, String)> {
    let mut all = BTreeSet::new();
    for file in ROUTERS {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let found = routes_in(&src);
        assert!(!found.is_empty(), "no routes parsed from {file}");
        all.extend(found);
    }
    for (path, item) in openapi["paths"].as_object().expect("OpenAPI paths") {
        for method in item.as_object().expect("path item").keys() {
            all.insert((method.to_uppercase(), path.clone()));
        }
    }
    all
}

#[test]
fn route_parser_reads_chained_methods() {
    let src = r#"Router::new()
        .route("/a/{x}", get(m::get).put(m::put).delete(m::delete))
        .route("/b", post(access::preview))
        .merge(other())"#;
    let got = routes_in(src);
    assert_eq!(
        got,
        vec![
            ("GET".to_string(), "/a/{x}".to_string()),
            ("PUT".to_string(), "/a/{x}".to_string()),
            ("DELETE".to_string(), "/a/{x}".to_string()),
            ("POST".to_string(), "/b".to_string()),
        ]
    );
}

/// Any method and body, with or without a key.
fn call(api: &sealgate_tests::Api, method: &str, path: &str, key: Option<&str>, body: &Value) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut b = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", api.url));
    if let Some(k) = key {
        b = b.header("Authorization", format!("Bearer {k}"));
    }
    let sent = if matches!(method, "GET" | "DELETE") {
        agent.run(b.body(()).expect("request"))
    } else {
        let b = b.header("Content-Type", "application/json");
        agent.run(b.body(body.to_string()).expect("request"))
    };
    match sent {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
        Err(e) => (0, format!("transport error: {e}")),
    }
}

/// A body that would be valid for the route in workspace A (so a refusal is about who
/// asks, not about what was sent).
fn body_for(method: &str, path: &str, a: &World) -> Value {
    match (method, path) {
        ("POST", "/v1/workspaces") | ("POST", "/v1/workspaces/{ws}/agents") => json!({ "name": "intruder" }),
        ("POST", "/v1/workspaces/{ws}/keys") => json!({ "role": "admin" }),
        ("PUT", "/v1/workspaces/{ws}/aws/accounts/{account_id}") => open_ceiling(&a.role_arn, "assume_role"),
        ("PUT", "/v1/workspaces/{ws}/webhook") => json!({ "url": "https://hooks.example.com/x" }),
        ("PUT", "/v1/workspaces/{ws}/features") => json!({ "byo_storage": true }),
        ("POST", "/v1/workspaces/{ws}/byo/grant") => json!({
            "role_arn": format!("arn:aws:iam::{ACCOUNT}:role/byo"),
            "bucket": "matrix-bucket",
            "region": "us-east-1",
        }),
        ("POST", "/v1/workspaces/{ws}/artifacts/byo") => json!({
            "s3_uri": "s3://matrix-bucket/runs/x.txt", "kind": "log", "original_filename": "x.txt",
        }),
        ("POST", "/v1/aws/access/{grant_id}/release") => json!({}),
        ("POST", "/v1/approvals/{grant_id}") => json!({ "decision": "approve", "reason": "not mine to approve" }),
        ("POST", "/v1/aws/access/preview") => {
            let mut b = access(&a.bucket, &["s3:GetObject"], 900);
            if let Some(o) = b.as_object_mut() {
                o.remove("reason");
                o.remove("run_id");
            }
            b
        }
        ("POST", "/v1/aws/access") => access(&a.bucket, &["s3:GetObject"], 900),
        _ => json!({}),
    }
}

/// Workspace A's world.
struct World {
    ws: String,
    agent: String,
    role_arn: String,
    bucket: String,
    active: String,
    pending: String,
    /// Strings that are A's data and must never appear in an answer to another tenant.
    markers: Vec<String>,
}

fn fill(path: &str, a: &World, grant: &str) -> String {
    path.replace("{ws}", &a.ws)
        .replace("{agent}", &a.agent)
        .replace("{account_id}", ACCOUNT)
        .replace("{grant_id}", grant)
        .replace("{id}", "key_0000000000000000")
        .replace("{jti}", "0000")
}

#[test]
fn every_route_refuses_other_tenants_and_other_agents() {
    let e = Env::start();
    // Workspace A: a ceiling (auto-approving reads, routing writes), an active grant
    // with credentials out, a pending grant, a webhook.
    let marker = unique("a-private-reason");
    let role_arn = e.role(&unique("matrix-role"));
    let bucket = unique("matrix-bucket");
    e.bucket(&bucket);
    e.set_ceiling(
        ACCOUNT,
        &ceiling(
            &role_arn,
            "assume_role",
            json!([
                { "decision": "auto_approve", "actions": ["s3:Get*"], "reason": "reads" },
                { "decision": "route_to_approver", "reason": "writes need a human" }
            ]),
        ),
    );
    let mut body = access(&bucket, &["s3:GetObject"], 900);
    body["reason"] = json!(marker);
    let active = str_of(&e.grant(&body), "grant_id").to_string();
    assert_eq!(e.credentials(&active).0, 200, "A's agent fetches its credentials");
    let mut body = access(&bucket, &["s3:PutObject"], 900);
    body["reason"] = json!(marker);
    let pending_grant = e.grant(&body);
    assert_eq!(pending_grant["status"], "pending", "{pending_grant}");
    let pending = str_of(&pending_grant, "grant_id").to_string();
    let (s, v) = put(
        &e.api,
        &format!("/v1/workspaces/{}/webhook", e.t.workspace),
        Some(&e.admin),
        &json!({ "url": "https://hooks.a-tenant.example.com/approvals" }),
    );
    assert!(s == 200 || s == 201, "A's webhook: {s} {v}");
    let a = World {
        ws: e.t.workspace.clone(),
        agent: e.t.agent.clone(),
        role_arn: role_arn.clone(),
        bucket: bucket.clone(),
        active: active.clone(),
        pending: pending.clone(),
        markers: vec![
            marker.clone(),
            role_arn.clone(),
            bucket.clone(),
            "hooks.a-tenant.example.com".into(),
            e.t.agent_key_id.clone(),
        ],
    };

    // Workspace B, a key of each role.
    let (b, b_admin, b_approver) = e.other_tenant();
    let b_auditor = key(&e.api, &e.operator, &b.workspace, "auditor");
    let b_keys = [
        ("B admin", b_admin.as_str()),
        ("B agent", b.agent_key.as_str()),
        ("B approver", b_approver.as_str()),
        ("B auditor", b_auditor.as_str()),
    ];
    // A second agent of A.
    let (s, peer) = e.api.post(
        &format!("/v1/workspaces/{}/agents", a.ws),
        Some(&e.admin),
        &json!({ "name": "peer" }),
    );
    assert_eq!(s, 201, "{peer}");
    let (s, pk) = e.api.post(
        &format!("/v1/workspaces/{}/keys", a.ws),
        Some(&e.admin),
        &json!({ "role": "agent", "agent_id": peer["id"] }),
    );
    assert_eq!(s, 201, "{pk}");
    let peer_key = pk["key"].as_str().unwrap().to_string();

    // Every served route has a row, and every row is served.
    let (s, openapi) = e.api.get("/v1/openapi.json", None);
    assert_eq!(s, 200);
    let served = served_routes(&openapi);
    let listed: BTreeSet<(String, String)> = MATRIX.iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
    let missing: Vec<_> = served.difference(&listed).collect();
    assert!(missing.is_empty(), "routes without a matrix row (add one): {missing:?}");
    let stale: Vec<_> = listed.difference(&served).collect();
    assert!(stale.is_empty(), "matrix rows for routes nobody serves: {stale:?}");

    let leaks = |text: &str| a.markers.iter().find(|m| text.contains(m.as_str())).cloned();
    let mut failures = Vec::new();
    for &(method, path, scope) in MATRIX {
        let grants: Vec<&str> = if scope == Grant {
            vec![a.active.as_str(), a.pending.as_str()]
        } else {
            vec![a.active.as_str()]
        };
        for grant in grants {
            let mut url = fill(path, &a, grant);
            if path == "/v1/audit/entries" {
                // The whole log so far: another tenant's keys must see none of A's leaves.
                url.push_str("?start=0&end=1000");
            }
            let body = body_for(method, path, &a);
            let callers: Vec<(&str, &str)> = match scope {
                Public => continue,
                Grant => b_keys
                    .iter()
                    .copied()
                    .chain([("A's other agent", peer_key.as_str())])
                    .collect(),
                _ => b_keys.to_vec(),
            };
            for (who, k) in callers {
                let (status, text) = call(&e.api, method, &url, Some(k), &body);
                let refused = status == 403 || status == 404;
                let ok = match scope {
                    Caller => status != 0 && status < 500 && !text.contains(grant) && !text.contains(&a.pending),
                    _ => refused,
                };
                if !ok {
                    failures.push(format!("{who}: {method} {url} -> {status} {text}"));
                }
                if let Some(m) = leaks(&text) {
                    failures.push(format!(
                        "{who}: {method} {url} -> {status} shows A's data {m:?}: {text}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "cross-tenant refusals failed:\n{}",
        failures.join("\n")
    );

    // Nothing of A changed: the grants are as they were, the ceiling and webhook stand,
    // A's agent still works.
    assert_eq!(e.get(&a.active)["status"], "active");
    assert_eq!(e.get(&a.pending)["status"], "pending");
    let (s, c) = e.api.get(&e.ceiling_path(ACCOUNT), Some(&e.admin));
    assert_eq!(s, 200, "{c}");
    assert!(c.to_string().contains(&role_arn), "{c}");
    assert_eq!(e.credentials(&a.active).0, 200);
    let (s, ags) = e.api.get(&format!("/v1/workspaces/{}/agents", a.ws), Some(&e.admin));
    assert_eq!(s, 200, "{ags}");
    assert!(
        ags["agents"].as_array().unwrap().iter().all(|g| g["disabled"] == false),
        "no agent of A was disabled: {ags}"
    );
}
