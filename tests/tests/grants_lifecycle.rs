//! AWS grants over time: release (idempotent, soft and hard), hard revocation as a
//! real IAM role policy in moto and its pruning, expiry by the sweeper, and isolation
//! between workspaces.

mod common;
mod grants_support;

use common::*;
use grants_support::*;
use serde_json::{json, Value};
use std::time::Duration;

/// Whether sealgate's deny policy on `role_name` (in `ACCOUNT`) lists `grant`.
fn revoke_policy(e: &Env, role_name: &str, grant: &str) -> Option<Value> {
    e.deny_policy(ACCOUNT, role_name).filter(|d| denies_grant(d, grant))
}

#[test]
fn release_is_idempotent_and_ends_the_grant() {
    let e = Env::start();
    let role = e.role(&unique("rel-role"));
    e.set_ceiling(
        ACCOUNT,
        &ceiling(
            &role,
            "assume_role",
            json!([
                { "decision": "route_to_approver", "actions": ["s3:PutObject"], "reason": "writes need a human" },
                { "decision": "hard_deny", "actions": ["s3:GetObjectAcl"], "reason": "no ACLs" },
                { "decision": "auto_approve", "reason": "reads" }
            ]),
        ),
    );
    let g = e.grant(&access("b", &["s3:GetObject"], 1800));
    let id = str_of(&g, "grant_id").to_string();
    assert_eq!(e.credentials(&id).0, 200);

    // Bad bodies are refused (with the grants' own code, issue 10); an empty body means
    // a soft release.
    assert_error(e.release(&id, &json!({ "hard": "yes" })), 400, "GRANT_INVALID_REQUEST");
    assert_error(e.release(&id, &json!({ "soft": true })), 400, "GRANT_INVALID_REQUEST");
    // Not the agent's to release: approvers; other workspaces do not see it.
    assert_error(
        e.api
            .post(&format!("/v1/aws/access/{id}/release"), Some(&e.approver), &json!({})),
        403,
        "GRANT_NOT_OWNER",
    );
    let (other, other_admin, _) = e.other_tenant();
    for k in [&other.agent_key, &other_admin] {
        assert_error(
            e.api.post(&format!("/v1/aws/access/{id}/release"), Some(k), &json!({})),
            404,
            "NOT_FOUND",
        );
    }

    let (s, r) = e.api.post_raw(
        &format!("/v1/aws/access/{id}/release"),
        Some(&e.t.agent_key),
        "application/json",
        vec![],
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], "released");
    assert_eq!(r["hard_revoked"], false);
    assert!(r["released_at"].is_i64(), "{r}");
    let index = r["log_index"].as_u64().expect("a leaf for the release");
    for _ in 0..2 {
        let (s, again) = e.release(&id, &json!({}));
        assert_eq!(s, 200, "{again}");
        assert_eq!(again["status"], "released");
        assert!(
            again.get("log_index").is_none(),
            "a repeated release writes nothing: {again}"
        );
    }
    let released = e.leaves("grant.released");
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].index, index);
    assert_eq!(released[0].data["from"], "active");
    assert_eq!(released[0].data["to"], "released");
    let (s, v) = e.credentials(&id);
    assert_error((s, v.clone()), 409, "GRANT_NOT_ACTIVE");
    assert!(v["error"]["message"].as_str().unwrap().contains("released"), "{v}");

    // A pending request can be withdrawn; the approver then cannot decide it.
    let p = str_of(&e.grant(&access("b", &["s3:PutObject"], 1800)), "grant_id").to_string();
    assert_eq!(e.release(&p, &json!({})).1["status"], "released");
    assert_error(
        e.api.post(
            &format!("/v1/approvals/{p}"),
            Some(&e.approver),
            &json!({ "decision": "approve", "reason": "late" }),
        ),
        409,
        "GRANT_NOT_PENDING",
    );
    // A denied grant stays denied.
    let d = e.grant(&access("b", &["s3:GetObjectAcl"], 1800));
    assert_eq!(d["status"], "denied");
    let (s, v) = e.release(str_of(&d, "grant_id"), &json!({ "hard": true }));
    assert_eq!((s, v["status"].as_str()), (200, Some("denied")), "{v}");
    // An admin of the workspace may release any of its grants.
    let a = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    let (s, v) = e
        .api
        .post(&format!("/v1/aws/access/{a}/release"), Some(&e.admin), &json!({}));
    assert_eq!((s, v["status"].as_str()), (200, Some("released")), "{v}");
}

#[test]
fn hard_revoke_puts_a_deny_on_the_role_and_the_sweeper_prunes_it() {
    let e = Env::start();
    let role_name = unique("revoke-role");
    let role = e.role(&role_name);
    let mut c = open_ceiling(&role, "assume_role");
    c["revoker_role_arn"] = json!(e.revoker_in(ACCOUNT, &unique("revoker")));
    e.set_ceiling(ACCOUNT, &c);

    let id = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    assert_eq!(e.credentials(&id).0, 200);
    assert!(revoke_policy(&e, &role_name, &id).is_none());
    let (s, r) = e.release(&id, &json!({ "hard": true }));
    assert_eq!(s, 200, "{r}\n{}", e.host_log());
    assert_eq!(
        (r["status"].as_str(), r["hard_revoked"].as_bool()),
        (Some("released"), Some(true))
    );

    let doc = revoke_policy(&e, &role_name, &id).expect("the deny policy lists the grant");
    assert!(denies_grant(&doc, &id), "by session tag and by session name: {doc}");
    let l = &e.leaves("grant.released")[0].data;
    assert_eq!(l["hard"], true);
    assert_eq!(l["policy_name"], "sealgate-revoked");
    assert_eq!(l["role_arn"], role);
    // Idempotent: nothing more to do.
    let (s, again) = e.release(&id, &json!({ "hard": true }));
    assert_eq!(s, 200);
    assert!(again.get("log_index").is_none(), "{again}");

    // A soft release can be hardened later, while the grant's sessions may live.
    let soft = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    assert_eq!(e.credentials(&soft).0, 200);
    assert_eq!(e.release(&soft, &json!({})).1["hard_revoked"], false);
    assert!(revoke_policy(&e, &role_name, &soft).is_none());
    let (s, r) = e.release(&soft, &json!({ "hard": true }));
    assert_eq!((s, r["hard_revoked"].as_bool()), (200, Some(true)), "{r}");
    assert!(revoke_policy(&e, &role_name, &soft).is_some());
    assert!(
        revoke_policy(&e, &role_name, &id).is_some(),
        "one policy lists both grants"
    );
    assert_eq!(e.leaves("grant.revoked").len(), 1);

    // Pruned once no session can be alive: time travel past the grants' maximum life.
    assert!(e.leaves("grant.revoke.pruned").is_empty());
    assert_eq!(e.db_exec("UPDATE grant_revocations SET prune_after = 0", &[]), 2);
    wait_for(
        "the sweeper to prune both grants (and so the policy)",
        Duration::from_secs(20),
        || e.deny_policy(ACCOUNT, &role_name).is_none().then_some(()),
    );
    wait_for("the prune leaves", Duration::from_secs(20), || {
        (e.leaves("grant.revoke.pruned").len() == 2).then_some(())
    });
}

#[test]
fn a_revocation_iam_refuses_changes_nothing() {
    let e = Env::start();
    // The role is deleted from IAM after the ceiling was stored (storing probes it), so
    // PutRolePolicy fails (NoSuchEntity).
    let ghost = e.role(&unique("ghost"));
    let mut c = open_ceiling(&ghost, "assume_role");
    c["revoker_role_arn"] = json!(e.revoker_in(ACCOUNT, &unique("revoker")));
    e.set_ceiling(ACCOUNT, &c);
    e.delete_role(&ghost);
    let id = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    let before = log_size(&e.api);
    let (s, v) = e.release(&id, &json!({ "hard": true }));
    assert_error((s, v.clone()), 502, "GRANT_REVOKE_FAILED");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("does not exist"),
        "{v}"
    );
    assert_eq!(e.get(&id)["status"], "active", "the grant is unchanged");
    assert_eq!(log_size(&e.api), before, "nothing recorded");
    assert_eq!(
        e.release(&id, &json!({})).1["status"],
        "released",
        "a soft release still works"
    );
}

#[test]
fn the_sweeper_expires_grants() {
    let e = Env::start();
    let role = e.role(&unique("expiry-role"));
    e.set_ceiling(ACCOUNT, &open_ceiling(&role, "assume_role"));
    let id = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    let keep = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    // Time travel: this grant's life is over.
    e.db_exec(
        "UPDATE grants SET expires_at = CAST(strftime('%s','now') AS INTEGER) - 1 WHERE id = ?1",
        &[&id],
    );
    // Read as expired at once, whether or not the sweeper has run.
    assert_eq!(e.get(&id)["status"], "expired");
    assert_error(e.credentials(&id), 409, "GRANT_NOT_ACTIVE");
    wait_for("the sweeper's grant.expired leaf", Duration::from_secs(20), || {
        e.leaves("grant.expired")
            .iter()
            .any(|l| l.data["grant_id"] == json!(id))
            .then_some(())
    });
    let c = rusqlite::Connection::open_with_flags(e.d.db_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let status: String = c
        .query_row("SELECT status FROM grants WHERE id = ?1", [&id], |r| r.get(0))
        .unwrap();
    assert_eq!(status, "expired");
    assert_eq!(e.leaves("grant.expired").len(), 1, "only the overdue grant");
    assert_eq!(e.get(&keep)["status"], "active");
    let (s, v) = e.release(&id, &json!({ "hard": true }));
    assert_eq!((s, v["status"].as_str()), (200, Some("expired")), "{v}");
}

#[test]
fn workspaces_are_isolated() {
    let e = Env::start();
    let role = e.role(&unique("iso-role"));
    e.set_ceiling(
        ACCOUNT,
        &ceiling(
            &role,
            "assume_role",
            json!([
                { "decision": "route_to_approver", "actions": ["s3:PutObject"], "reason": "writes need a human" },
                { "decision": "auto_approve", "reason": "reads" }
            ]),
        ),
    );
    let active = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    let pending = str_of(&e.grant(&access("b", &["s3:PutObject"], 1800)), "grant_id").to_string();

    let (other, other_admin, other_approver) = e.other_tenant();
    let other_auditor = key(&e.api, &e.operator, &other.workspace, "auditor");
    for k in [&other.agent_key, &other_admin, &other_approver, &other_auditor] {
        for id in [&active, &pending] {
            assert_error(e.api.get(&format!("/v1/aws/access/{id}"), Some(k)), 404, "NOT_FOUND");
            assert_error(
                e.api.post(&format!("/v1/aws/access/{id}/release"), Some(k), &json!({})),
                404,
                "NOT_FOUND",
            );
        }
    }
    assert_error(
        e.api
            .get(&format!("/v1/aws/access/{active}/credentials"), Some(&other.agent_key)),
        404,
        "NOT_FOUND",
    );
    assert_error(
        e.api.post(
            &format!("/v1/approvals/{pending}"),
            Some(&other_approver),
            &json!({ "decision": "approve", "reason": "not mine" }),
        ),
        404,
        "NOT_FOUND",
    );
    let (s, list) = e.api.get("/v1/approvals", Some(&other_approver));
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["pending"], json!([]), "another workspace's queue is empty");
    let (_, mine) = e.api.get("/v1/approvals", Some(&e.approver));
    assert_eq!(mine["pending"][0]["grant_id"], json!(pending));
    // Ceilings and scope of this workspace are not theirs either.
    assert_error(
        put(
            &e.api,
            &e.ceiling_path(ACCOUNT),
            Some(&other_admin),
            &open_ceiling(&role, "assume_role"),
        ),
        403,
        "FORBIDDEN",
    );
    assert_error(
        e.api.get(&e.ceiling_path(ACCOUNT), Some(&other_admin)),
        403,
        "FORBIDDEN",
    );
    assert_error(
        e.api
            .get(&format!("{}/scope", e.ceiling_path(ACCOUNT)), Some(&other.agent_key)),
        404,
        "NOT_FOUND",
    );
    assert_error(
        put(
            &e.api,
            &format!("/v1/workspaces/{}/webhook", e.t.workspace),
            Some(&other_admin),
            &json!({ "url": "http://127.0.0.1:9/x" }),
        ),
        403,
        "FORBIDDEN",
    );
    // Their agent asking for the same account finds no ceiling of its own.
    assert_error(
        e.api.post(
            "/v1/aws/access",
            Some(&other.agent_key),
            &access("b", &["s3:GetObject"], 1800),
        ),
        404,
        "GRANT_UNKNOWN_ACCOUNT",
    );
    // And the owner still sees everything.
    assert_eq!(e.get(&active)["status"], "active");
    assert_eq!(e.get(&pending)["status"], "pending");
}
