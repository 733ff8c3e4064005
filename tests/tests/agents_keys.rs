//! Issue 9, hole 7: an admin lists its workspace's agents and keys (never a secret or a
//! hash) and disables an agent, which revokes every key of it, refuses its mints and
//! grant requests, and releases its grants (hard where credentials are out).

mod common;
mod grants_support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use common::*;
use grants_support::*;
use sealgate_tests::wait_for;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A second key for agent `agent` of workspace `ws`: `(id, key)`.
fn agent_key(e: &Env, agent: &str) -> (String, String) {
    let (s, k) = e.api.post(
        &format!("/v1/workspaces/{}/keys", e.t.workspace),
        Some(&e.admin),
        &json!({ "role": "agent", "agent_id": agent }),
    );
    assert_eq!(s, 201, "{k}");
    (str_of(&k, "id").to_string(), str_of(&k, "key").to_string())
}

fn disable(e: &Env, by: &str, agent: &str) -> (u16, Value) {
    e.api.post(
        &format!("/v1/workspaces/{}/agents/{agent}/disable", e.t.workspace),
        Some(by),
        &json!({}),
    )
}

#[test]
fn hole7_disabled_agent_keys_are_refused_its_mints_too_and_its_grants_released() {
    let e = Env::start();
    let role = e.role(&unique("disable-role"));
    let bucket = unique("disable-bucket");
    e.bucket(&bucket);
    let mut c = ceiling(
        &role,
        "assume_role",
        json!([
            { "decision": "auto_approve", "actions": ["s3:Get*"], "reason": "reads" },
            { "decision": "route_to_approver", "reason": "writes need a human" }
        ]),
    );
    // Hard revocation acts through a revoker role in the grant role's account.
    c["revoker_role_arn"] = json!(e.revoker_in(ACCOUNT, &unique("disable-revoker")));
    e.set_ceiling(ACCOUNT, &c);
    let (_, second_key) = agent_key(&e, &e.t.agent);
    // An active grant with credentials out, an active one without, a pending one.
    let used = str_of(&e.grant(&access(&bucket, &["s3:GetObject"], 900)), "grant_id").to_string();
    assert_eq!(e.credentials(&used).0, 200);
    let unused = str_of(&e.grant(&access(&bucket, &["s3:GetObject"], 900)), "grant_id").to_string();
    let pending = e.grant(&access(&bucket, &["s3:PutObject"], 900));
    assert_eq!(pending["status"], "pending", "{pending}");
    let pending = str_of(&pending, "grant_id").to_string();
    // Both keys work before.
    for k in [&e.t.agent_key, &second_key] {
        assert_eq!(e.api.post("/v1/tokens", Some(k), &json!({})).0, 200);
    }

    let (s, v) = disable(&e, &e.admin, &e.t.agent);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["disabled"], true);
    assert!(v["log_index"].as_u64().is_some(), "one leaf records the disable: {v}");
    let revoked: Vec<&str> = v["revoked_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(
        revoked.contains(&e.t.agent_key_id.as_str()) && revoked.len() == 2,
        "{v}"
    );
    let released = v["released_grants"].as_array().unwrap();
    let outcome = |id: &str| {
        released
            .iter()
            .find(|g| g["grant_id"] == id)
            .unwrap_or_else(|| panic!("grant {id} not released: {v}"))
            .clone()
    };
    assert_eq!(outcome(&used)["from"], "active");
    assert_eq!(
        outcome(&used)["hard_revoked"],
        true,
        "credentials were out: a deny on the role"
    );
    assert_eq!(
        outcome(&unused)["hard_revoked"],
        false,
        "no credentials out: a soft release"
    );
    assert_eq!(outcome(&pending)["from"], "pending");

    // Every key of the agent: 401 on mint, on grant requests, on its grants.
    for k in [&e.t.agent_key, &second_key] {
        assert_error(e.api.post("/v1/tokens", Some(k), &json!({})), 401, "UNAUTHENTICATED");
        assert_error(
            e.api
                .post("/v1/aws/access", Some(k), &access(&bucket, &["s3:GetObject"], 900)),
            401,
            "UNAUTHENTICATED",
        );
        assert_error(
            e.api.get(&format!("/v1/aws/access/{used}/credentials"), Some(k)),
            401,
            "UNAUTHENTICATED",
        );
    }
    // Its grants are released (the admin still reads them), the used one hard.
    for id in [&used, &unused, &pending] {
        let (s, g) = e.api.get(&format!("/v1/aws/access/{id}"), Some(&e.admin));
        assert_eq!(s, 200, "{g}");
        assert_eq!(g["status"], "released", "{g}");
    }
    let (_, g) = e.api.get(&format!("/v1/aws/access/{used}"), Some(&e.admin));
    assert_eq!(g["hard_revoked"], true, "{g}");
    assert_eq!(
        e.db_query_i64("SELECT COUNT(*) FROM grant_revocations WHERE grant_id = ?1", &[&used]),
        1
    );
    // It cannot be given a key again; the listing shows it disabled.
    assert_error(
        e.api.post(
            &format!("/v1/workspaces/{}/keys", e.t.workspace),
            Some(&e.admin),
            &json!({ "role": "agent", "agent_id": e.t.agent }),
        ),
        409,
        "AGENT_DISABLED",
    );
    let (s, agents) = e
        .api
        .get(&format!("/v1/workspaces/{}/agents", e.t.workspace), Some(&e.admin));
    assert_eq!(s, 200, "{agents}");
    let me = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == e.t.agent.as_str())
        .unwrap()
        .clone();
    assert_eq!(me["disabled"], true, "{agents}");
    // A key that escaped revocation (written back by hand) still does not resolve: the
    // lookup refuses keys of disabled agents by itself.
    e.db_exec(
        "UPDATE api_keys SET revoked_at = NULL WHERE id = ?1",
        &[&e.t.agent_key_id],
    );
    assert_error(
        e.api.post("/v1/tokens", Some(&e.t.agent_key), &json!({})),
        401,
        "UNAUTHENTICATED",
    );
    // Disabling again is harmless.
    let (s, again) = disable(&e, &e.admin, &e.t.agent);
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["released_grants"], json!([]), "{again}");
    // Unknown agents: 404.
    assert_error(disable(&e, &e.admin, "ag_0000000000000000"), 404, "NOT_FOUND");
}

#[test]
fn hole7_other_workspaces_admin_cannot_list_or_disable_agents() {
    let e = Env::start();
    let (b, b_admin, b_approver) = e.other_tenant();
    let ws = &e.t.workspace;
    for k in [&b_admin, &b_approver, &b.agent_key, &e.t.agent_key, &e.approver] {
        assert_error(
            e.api.get(&format!("/v1/workspaces/{ws}/agents"), Some(k)),
            403,
            "FORBIDDEN",
        );
        assert_error(
            e.api.get(&format!("/v1/workspaces/{ws}/keys"), Some(k)),
            403,
            "FORBIDDEN",
        );
        assert_error(disable(&e, k, &e.t.agent), 403, "FORBIDDEN");
    }
    // B's admin naming A's agent under B's own workspace: not found there.
    assert_error(
        e.api.post(
            &format!("/v1/workspaces/{}/agents/{}/disable", b.workspace, e.t.agent),
            Some(&b_admin),
            &json!({}),
        ),
        404,
        "NOT_FOUND",
    );
    // A's agent still works; the operator may list A.
    assert_eq!(e.api.post("/v1/tokens", Some(&e.t.agent_key), &json!({})).0, 200);
    let (s, v) = e.api.get(&format!("/v1/workspaces/{ws}/agents"), Some(&e.operator));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["agents"][0]["id"], e.t.agent.as_str());
    assert_eq!(v["agents"][0]["disabled"], false);
}

#[test]
fn hole7_key_listing_never_contains_a_secret_or_hash() {
    let e = Env::start();
    let ws = &e.t.workspace;
    let (s, v) = e.api.get(&format!("/v1/workspaces/{ws}/keys"), Some(&e.admin));
    assert_eq!(s, 200, "{v}");
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "agent, admin and approver keys: {v}");
    let text = v.to_string();
    for secret in [&e.t.agent_key, &e.admin, &e.approver] {
        let hash = Sha256::digest(secret.as_bytes());
        for form in [
            secret.to_string(),
            secret[3..].to_string(),
            hex::encode(hash),
            B64URL.encode(hash),
            base64::engine::general_purpose::STANDARD.encode(hash),
        ] {
            assert!(
                !text.contains(&form),
                "the listing contains a secret or its hash: {text}"
            );
        }
    }
    for k in keys {
        let mut fields: Vec<&str> = k.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "agent_id",
                "created_at",
                "id",
                "last_used_at",
                "revoked",
                "revoked_at",
                "role"
            ],
            "only ids, roles, agents and dates: {k}"
        );
    }
    let agent_row = keys.iter().find(|k| k["id"] == e.t.agent_key_id.as_str()).unwrap();
    assert_eq!(agent_row["role"], "agent");
    assert_eq!(agent_row["agent_id"], e.t.agent.as_str());
    // Use is recorded (off the request path, so poll for it).
    assert_eq!(e.api.post("/v1/tokens", Some(&e.t.agent_key), &json!({})).0, 200);
    let used = wait_for("last_used_at to be written", Duration::from_secs(10), || {
        let (_, v) = e.api.get(&format!("/v1/workspaces/{ws}/keys"), Some(&e.admin));
        v["keys"]
            .as_array()?
            .iter()
            .find(|k| k["id"] == e.t.agent_key_id.as_str())?["last_used_at"]
            .as_i64()
    });
    assert!(used > 1_700_000_000, "{used}");
    // A revoked key is listed as revoked.
    let (s, _) = e.api.delete(
        &format!("/v1/workspaces/{ws}/keys/{}", e.t.agent_key_id),
        Some(&e.admin),
    );
    assert_eq!(s, 200);
    let (_, v) = e.api.get(&format!("/v1/workspaces/{ws}/keys"), Some(&e.admin));
    let row = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == e.t.agent_key_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["revoked"], true, "{row}");
    assert!(row["revoked_at"].as_i64().is_some(), "{row}");
}
