//! Tenant safety of AWS trust (issue 9, holes 1 and 2), end to end: the real host and
//! enclave (simulator mode) against moto, with the fault layer evaluating each role's
//! trust policy as STS would (moto does not; see `tests/src/fault/trust.rs`).
//!
//! - Confused deputy: every `assume_role` ceiling's role is assumed with the External
//!   ID sealgate minted for that workspace and account; a role that does not enforce it
//!   is refused (`GRANT_EXTERNAL_ID_NOT_ENFORCED`), and another workspace's role refuses
//!   our External ID.
//! - Web-identity bypass: grant-path tokens carry `ws:<ws>:grant:<grant>`; a grant
//!   role's trust policy matches only that, so an agent's own `/v1/tokens` token is
//!   refused at STS.

mod common;
mod grants_support;

use aws_sdk_sts::error::ProvideErrorMetadata;
use common::*;
use grants_support::*;
use sealgate_tests::aws;
use serde_json::{json, Value};

/// Another AWS account (the roles of "the customer" live in their own account).
const OTHER: &str = "222222222222";

/// Replaces a role's trust policy in moto account `account`.
fn set_trust(e: &Env, account: &str, arn: &str, trust: &Value) {
    let (url, account, trust) = (e.moto.url.clone(), account.to_string(), trust.to_string());
    let name = arn.rsplit('/').next().unwrap_or(arn).to_string();
    aws::block_on(async move {
        aws::iam_in_account(&url, &account)
            .await
            .update_assume_role_policy()
            .role_name(name)
            .policy_document(trust)
            .send()
            .await
            .expect("update the trust policy in moto");
    });
}

fn policies_of(e: &Env, ws: &str, admin: &str, account: &str) -> Value {
    let (s, v) = e.api.get(
        &format!("/v1/workspaces/{ws}/aws/accounts/{account}/policies"),
        Some(admin),
    );
    assert_eq!(s, 200, "GET policies: {v}");
    v
}

fn check(e: &Env, account: &str) -> (u16, Value) {
    e.api.post(
        &format!("{}/check", e.ceiling_path(account)),
        Some(&e.admin),
        &json!({}),
    )
}

/// A ceiling for `account` (the helpers' default is `ACCOUNT`).
fn ceiling_in(role: &str, mode: &str) -> Value {
    open_ceiling(role, mode)
}

fn access_in(account: &str, bucket: &str) -> Value {
    let mut a = access(bucket, &["s3:GetObject"], 1800);
    a["account_id"] = json!(account);
    a
}

#[test]
fn confused_deputy_workspace_a_cannot_use_workspace_b_role() {
    let e = Env::start();
    let (b, b_admin, _) = e.other_tenant();

    // Workspace B sets up its role in account OTHER exactly as sealgate tells it to.
    let bp = policies_of(&e, &b.workspace, &b_admin, OTHER);
    let b_xid = str_of(&bp, "external_id").to_string();
    assert!(b_xid.len() >= 32, "{b_xid}");
    let b_role = e.role_in(OTHER, &unique("b-role"), &bp["trust_policies"]["assume_role"]);
    assert!(b_role.contains(&format!("::{OTHER}:")), "{b_role}");
    let b_path = format!("/v1/workspaces/{}/aws/accounts/{OTHER}", b.workspace);
    let (s, v) = put(&e.api, &b_path, Some(&b_admin), &ceiling_in(&b_role, "assume_role"));
    assert_eq!(s, 201, "B stores its own ceiling: {v}\n{}", e.host_log());
    assert_eq!(v["external_id"], b_xid, "the ceiling shows its External ID");

    // A's External ID for the same account is its own.
    let ap = e.policies(OTHER);
    let a_xid = str_of(&ap, "external_id").to_string();
    assert_ne!(a_xid, b_xid, "External IDs are per workspace");

    // A's admin names B's role: refused, nothing stored.
    e.fault.clear_requests();
    let (s, v) = put(
        &e.api,
        &e.ceiling_path(OTHER),
        Some(&e.admin),
        &ceiling_in(&b_role, "assume_role"),
    );
    assert_error((s, v.clone()), 403, "GRANT_STS_ACCESS_DENIED");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&a_xid) && msg.contains("sts:ExternalId"), "{msg}");
    assert_eq!(
        e.api.get(&e.ceiling_path(OTHER), Some(&e.admin)).0,
        404,
        "nothing stored"
    );
    let sent = e.fault.requests_for("sts", "AssumeRole");
    assert_eq!(
        sent.len(),
        1,
        "the right-ID probe failed, so no wrong-ID probe: {sent:?}"
    );
    assert_eq!(sent[0].params.get("ExternalId"), Some(&a_xid), "A's ID was sent");
    assert!(
        sent[0].faulted && !sent[0].forwarded && sent[0].status == 403,
        "{:?}",
        sent[0]
    );
    let probes = e.leaves("grant.role.probed");
    assert!(
        probes
            .iter()
            .any(|l| l.data["workspace_id"] == e.t.workspace.as_str() && l.data["result"] == "AccessDenied"),
        "the refused probe is in the log"
    );

    // Even a ceiling that got past the probe (written into the database directly, as
    // if stored before probing existed) gets no credentials: the call carries A's ID.
    let a_role = e.role_in(OTHER, &unique("a-role"), &ap["trust_policies"]["assume_role"]);
    e.set_ceiling(OTHER, &ceiling_in(&a_role, "assume_role"));
    let changed = e.db_exec(
        "UPDATE grant_ceilings SET ceiling = json_set(ceiling, '$.role_arn', ?1) WHERE workspace_id = ?2",
        &[&b_role, &e.t.workspace],
    );
    assert_eq!(changed, 1);
    let id = str_of(&e.grant(&access_in(OTHER, "b-data")), "grant_id").to_string();
    e.fault.clear_requests();
    let (s, v) = e.credentials(&id);
    assert_error((s, v), 403, "GRANT_STS_ACCESS_DENIED");
    let sent = e.fault.requests_for("sts", "AssumeRole");
    assert_eq!(sent[0].params.get("RoleArn"), Some(&b_role));
    assert_eq!(sent[0].params.get("ExternalId"), Some(&a_xid));
    assert!(sent.iter().all(|r| !r.forwarded), "B's role never issued A anything");

    // B itself still gets credentials from its role.
    let b_agent = &b.agent_key;
    let (s, g) = e.api.post("/v1/aws/access", Some(b_agent), &access_in(OTHER, "b-data"));
    assert_eq!(s, 201, "{g}");
    let (s, c) = e.api.get(
        &format!("/v1/aws/access/{}/credentials", str_of(&g, "grant_id")),
        Some(b_agent),
    );
    assert_eq!(s, 200, "{c}");
}

#[test]
fn confused_deputy_role_without_external_id_condition_is_refused() {
    let e = Env::start();
    let role = e.lax_role(&unique("lax-role"));
    let xid = str_of(&e.policies(ACCOUNT), "external_id").to_string();
    e.fault.clear_requests();
    let (s, v) = put(
        &e.api,
        &e.ceiling_path(ACCOUNT),
        Some(&e.admin),
        &open_ceiling(&role, "assume_role"),
    );
    assert_error((s, v.clone()), 409, "GRANT_EXTERNAL_ID_NOT_ENFORCED");
    let msg = v["error"]["message"].as_str().unwrap();
    let condition = json!({ "StringEquals": { "sts:ExternalId": xid } }).to_string();
    assert!(
        msg.contains(&condition),
        "the message gives the exact Condition {condition}: {msg}"
    );
    assert_eq!(
        e.api.get(&e.ceiling_path(ACCOUNT), Some(&e.admin)).0,
        404,
        "nothing stored"
    );

    // Probed twice: the right ID, then a wrong one, which the lax role accepted.
    let sent = e.fault.requests_for("sts", "AssumeRole");
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].params.get("ExternalId"), Some(&xid));
    let wrong = sent[1].params.get("ExternalId").expect("a wrong External ID was sent");
    assert_ne!(wrong, &xid);
    assert!(sent.iter().all(|r| r.forwarded && r.status == 200), "{sent:?}");
    // Probe sessions can do nothing.
    let policy: Value = serde_json::from_str(&sent[0].params["Policy"]).unwrap();
    assert_eq!(policy["Statement"][0]["Effect"], "Deny");
    let probes = e.leaves("grant.role.probed");
    assert_eq!(probes.last().unwrap().data["result"], "external_id_not_enforced");

    // Once the role requires the ID (the same one: it is kept), the ceiling is stored.
    set_trust(&e, ACCOUNT, &role, &e.trust_for(ACCOUNT));
    let v = e.set_ceiling(ACCOUNT, &open_ceiling(&role, "assume_role"));
    assert_eq!(v["external_id"], xid);
    assert!(v["external_id_verified_at"].as_i64().is_some(), "{v}");
    assert_eq!(probes.len() + 1, e.leaves("grant.role.probed").len());
}

#[test]
fn confused_deputy_every_assume_role_carries_the_ceilings_external_id() {
    let e = Env::start();
    let role = e.role(&unique("xid-role"));
    let v = e.set_ceiling(ACCOUNT, &open_ceiling(&role, "assume_role"));
    let xid = str_of(&v, "external_id").to_string();
    let (_, got) = e.api.get(&e.ceiling_path(ACCOUNT), Some(&e.admin));
    assert_eq!(got["external_id"], xid, "shown in the ceiling view");

    let id = str_of(&e.grant(&access("xid-bucket", &["s3:GetObject"], 1800)), "grant_id").to_string();
    for _ in 0..2 {
        let (s, c) = e.credentials(&id);
        assert_eq!(s, 200, "{c}");
    }
    let sent = e.fault.requests_for("sts", "AssumeRole");
    assert_eq!(sent.len(), 2);
    for r in &sent {
        assert_eq!(r.params.get("RoleSessionName"), Some(&id));
        assert_eq!(r.params.get("ExternalId"), Some(&xid), "{r:?}");
        assert!(r.forwarded);
    }

    // Replacing the ceiling, even deleting and storing it again, keeps the ID.
    let mut narrower = open_ceiling(&role, "assume_role");
    narrower["actions"] = json!(["s3:GetObject"]);
    assert_eq!(e.set_ceiling(ACCOUNT, &narrower)["external_id"], xid);
    assert_eq!(e.api.delete(&e.ceiling_path(ACCOUNT), Some(&e.admin)).0, 200);
    assert_eq!(e.set_ceiling(ACCOUNT, &narrower)["external_id"], xid);

    // Only the workspace's admins see the policies or run the check.
    let path = format!("{}/policies", e.ceiling_path(ACCOUNT));
    assert_error(e.api.get(&path, Some(&e.t.agent_key)), 403, "FORBIDDEN");
    let (_, other_admin, _) = e.other_tenant();
    assert_error(e.api.get(&path, Some(&other_admin)), 403, "FORBIDDEN");
    let check_path = format!("{}/check", e.ceiling_path(ACCOUNT));
    assert_error(
        e.api.post(&check_path, Some(&e.t.agent_key), &json!({})),
        403,
        "FORBIDDEN",
    );
}

#[test]
fn confused_deputy_check_catches_a_trust_policy_loosened_later() {
    let e = Env::start();
    let role = e.role(&unique("later-role"));
    e.set_ceiling(ACCOUNT, &open_ceiling(&role, "assume_role"));
    let id = str_of(&e.grant(&access("later-bucket", &["s3:GetObject"], 1800)), "grant_id").to_string();
    let (s, v) = check(&e, ACCOUNT);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], true);

    // The customer drops the condition: the check says so, and credentials stop.
    let lax = json!({ "Version": "2012-10-17", "Statement": [
        { "Effect": "Allow", "Principal": { "AWS": "*" }, "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"] }
    ]});
    set_trust(&e, ACCOUNT, &role, &lax);
    assert_error(check(&e, ACCOUNT), 409, "GRANT_EXTERNAL_ID_NOT_ENFORCED");
    e.fault.clear_requests();
    assert_error(e.credentials(&id), 409, "GRANT_EXTERNAL_ID_UNVERIFIED");
    assert!(
        e.fault.requests_for("sts", "AssumeRole").is_empty(),
        "STS was not asked"
    );

    // Restored: checked again, credentials again.
    set_trust(&e, ACCOUNT, &role, &e.trust_for(ACCOUNT));
    assert_eq!(check(&e, ACCOUNT).0, 200);
    assert_eq!(e.credentials(&id).0, 200);
}

#[test]
fn web_identity_bypass_agent_token_refused_for_grant_role() {
    let e = Env::start();
    e.fault.trust_issuer(&e.d.url, STS_AUD);
    let role = e.role(&unique("wi-grant-role"));
    let p = e.policies(ACCOUNT);
    let host =
        e.d.url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
    let cond = &p["trust_policies"]["web_identity"]["Statement"][0]["Condition"];
    assert_eq!(
        cond["StringLike"][format!("{host}:sub")],
        format!("ws:{}:grant:*", e.t.workspace)
    );
    assert_eq!(cond["StringEquals"][format!("{host}:aud")], STS_AUD);
    e.set_ceiling(ACCOUNT, &open_ceiling(&role, "web_identity"));

    // The grant path is accepted.
    let id = str_of(&e.grant(&access("wi-bucket", &["s3:GetObject"], 1800)), "grant_id").to_string();
    let (s, c) = e.credentials(&id);
    assert_eq!(s, 200, "{c}\n{}", e.host_log());

    // The agent's own token (same issuer, same audience, genuine signature), sent
    // straight to STS with the AWS SDK as an agent would: refused by the trust policy.
    let own = mint_with(&e.api, &e.t.agent_key, &json!({ "audience": STS_AUD })).token;
    assert!(jwt_claims(&own)["sub"]
        .as_str()
        .unwrap()
        .starts_with(&format!("ws:{}:agent:", e.t.workspace)));
    let (url, role2) = (e.fault.url.clone(), role.clone());
    let got = aws::block_on(async move {
        aws::sts(&url, REGION)
            .await
            .assume_role_with_web_identity()
            .role_arn(role2)
            .role_session_name("agent-bypass")
            .web_identity_token(own)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.code().unwrap_or("no code").to_string())
    });
    assert_eq!(
        got,
        Err("AccessDenied".to_string()),
        "the agent's own token must not work"
    );
    let calls = e.fault.requests_for("sts", "AssumeRoleWithWebIdentity");
    let bypass = calls
        .iter()
        .find(|r| r.params.get("RoleSessionName").map(String::as_str) == Some("agent-bypass"))
        .expect("the bypass attempt reached the fault layer");
    assert!(
        bypass.faulted && !bypass.forwarded && bypass.status == 403,
        "{bypass:?}"
    );
}

/// Hole 3: without a revoker role in the grant role's account, a hard release says so
/// before anything changes.
#[test]
fn hard_revoke_wrong_role_without_revoker_is_unavailable_and_changes_nothing() {
    let e = Env::start();
    let role_name = unique("no-revoker-role");
    let role = e.role(&role_name);
    e.set_ceiling(ACCOUNT, &open_ceiling(&role, "assume_role"));
    let id = str_of(&e.grant(&access("nr-bucket", &["s3:GetObject"], 1800)), "grant_id").to_string();
    assert_eq!(e.credentials(&id).0, 200);
    let before = log_size(&e.api);
    e.fault.clear_requests();
    let (s, v) = e.release(&id, &json!({ "hard": true }));
    assert_error((s, v.clone()), 409, "GRANT_HARD_REVOKE_UNAVAILABLE");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("revoker_role_arn"),
        "{v}"
    );
    let g = e.get(&id);
    assert_eq!(
        (g["status"].as_str(), g["hard_revoked"].as_bool()),
        (Some("active"), Some(false))
    );
    assert_eq!(log_size(&e.api), before, "no leaf");
    assert!(
        e.fault.requests().iter().all(|r| r.service != "iam"),
        "IAM was not touched"
    );
    assert!(e.deny_policy(ACCOUNT, &role_name).is_none());
    assert_eq!(
        e.release(&id, &json!({})).1["status"],
        "released",
        "a soft release works"
    );
}

/// Hole 3: the deny policy lands on the grant role in its own account, written by the
/// revoker role there, and a same-named role in the host's account gets nothing.
#[test]
fn hard_revoke_wrong_role_revoker_acts_in_the_roles_own_account() {
    let e = Env::start();
    let p = e.policies(OTHER);
    let xid = str_of(&p, "external_id").to_string();
    let name = unique("same-name");
    let role = e.role_in(OTHER, &name, &p["trust_policies"]["assume_role"]);
    let decoy = e.role_in(ACCOUNT, &name, &p["trust_policies"]["assume_role"]);
    assert_ne!(role, decoy);
    let revoker = e.revoker_in(OTHER, &unique("revoker"));
    let mut c = open_ceiling(&role, "assume_role");
    c["revoker_role_arn"] = json!(revoker);
    let v = e.set_ceiling(OTHER, &c);
    assert_eq!(v["revoker_role_arn"], revoker);

    let a = str_of(&e.grant(&access_in(OTHER, "rv-bucket")), "grant_id").to_string();
    let b = str_of(&e.grant(&access_in(OTHER, "rv-bucket")), "grant_id").to_string();
    assert_eq!(e.credentials(&a).0, 200);
    e.fault.clear_requests();
    for id in [&a, &b] {
        let (s, r) = e.release(id, &json!({ "hard": true }));
        assert_eq!(
            (s, r["hard_revoked"].as_bool()),
            (200, Some(true)),
            "{r}\n{}",
            e.host_log()
        );
    }
    let doc = e
        .deny_policy(OTHER, &name)
        .expect("the deny policy is on the role in its account");
    assert!(
        denies_grant(&doc, &a) && denies_grant(&doc, &b),
        "one policy, both grants: {doc}"
    );
    assert_eq!(doc["Statement"].as_array().map(Vec::len), Some(2), "{doc}");
    assert!(
        e.deny_policy(ACCOUNT, &name).is_none(),
        "the host account's same-named role got nothing"
    );

    // The revoker was assumed with the account's External ID, then IAM was called.
    let assumed = e.fault.requests_for("sts", "AssumeRole");
    assert!(!assumed.is_empty());
    for r in &assumed {
        assert_eq!(r.params.get("RoleArn"), Some(&revoker));
        assert_eq!(r.params.get("ExternalId"), Some(&xid));
        assert!(r.forwarded && r.status == 200, "{r:?}");
    }
    assert_eq!(e.fault.requests_for("iam", "PutRolePolicy").len(), 2);

    // A revoker that does not trust this workspace's External ID: nothing changes.
    let c_id = str_of(&e.grant(&access_in(OTHER, "rv-bucket")), "grant_id").to_string();
    let lax_revoker = e.role_in(
        OTHER,
        &unique("foreign-revoker"),
        &json!({ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow", "Principal": { "AWS": "*" },
            "Action": "sts:AssumeRole", "Condition": { "StringEquals": { "sts:ExternalId": "sg-someone-else" } } }] }),
    );
    c["revoker_role_arn"] = json!(lax_revoker);
    e.set_ceiling(OTHER, &c);
    let before = log_size(&e.api);
    let (s, v) = e.release(&c_id, &json!({ "hard": true }));
    assert_error((s, v), 502, "GRANT_REVOKE_FAILED");
    assert_eq!(log_size(&e.api), before);
    assert_eq!(e.get(&c_id)["status"], "active");
}

/// A revoker in another account than the grant role is refused when the ceiling is
/// stored.
#[test]
fn hard_revoke_wrong_role_revoker_must_share_the_roles_account() {
    let e = Env::start();
    let role = e.role(&unique("acct-role"));
    let mut c = open_ceiling(&role, "assume_role");
    c["revoker_role_arn"] = json!(format!("arn:aws:iam::{OTHER}:role/revoker"));
    let (s, v) = put(&e.api, &e.ceiling_path(ACCOUNT), Some(&e.admin), &c);
    assert_error((s, v.clone()), 400, "GRANT_INVALID_CEILING");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("revoker_role_arn"),
        "{v}"
    );
}

/// STS refuses a wrong External ID with a 403 whose code need not be `AccessDenied`
/// (an emulator without our fault layer answers its own codes): the probe reads any
/// 403 on the wrong ID, after the right one worked with the same credentials, as the
/// role enforcing it, as the BYO probe does.
#[test]
fn confused_deputy_any_403_for_the_wrong_external_id_is_enforcement() {
    use sealgate_tests::fault::{Fault, Rule};
    let e = Env::start();
    let role = e.lax_role(&unique("403-role"));
    // The right ID passes through (a zero delay, then as if no rule matched); the wrong
    // one gets a 403 with another code.
    e.fault.add(
        Rule::new("sts", Some("AssumeRole"))
            .times(1)
            .fault(Fault::delay(std::time::Duration::ZERO)),
    );
    e.fault
        .add(Rule::new("sts", Some("AssumeRole")).times(1).fault(Fault::error(
            403,
            "UnrecognizedClientException",
            "not authorized to perform sts:AssumeRole",
        )));
    e.fault.clear_requests();
    let (s, v) = put(
        &e.api,
        &e.ceiling_path(ACCOUNT),
        Some(&e.admin),
        &open_ceiling(&role, "assume_role"),
    );
    assert_eq!(s, 201, "stored: {v}");
    assert!(v["external_id_verified_at"].as_i64().is_some(), "{v}");
    let sent = e.fault.requests_for("sts", "AssumeRole");
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent[0].forwarded && !sent[1].forwarded && sent[1].status == 403,
        "{sent:?}"
    );
}
