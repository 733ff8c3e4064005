//! BYO storage and the confused deputy (issue 9, hole 1): the readiness probe also
//! assumes the role with a deliberately wrong External ID, and a role that accepts it
//! fails with `BYO_EXTERNAL_ID_NOT_ENFORCED`; another workspace's role, pinned to that
//! workspace's External ID, refuses ours. The fault layer evaluates the trust policies
//! (moto does not).

mod byo_support;
mod common;

use byo_support::*;
use common::assert_error;
use sealgate_tests::aws;
use serde_json::{json, Value};

fn create_role(byo: &Byo, name: &str, trust: &Value) -> String {
    let (url, name, trust) = (byo.moto_url.clone(), name.to_string(), trust.to_string());
    aws::block_on(async move {
        aws::iam(&url)
            .await
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust)
            .send()
            .await
            .expect("create role")
            .role()
            .expect("role")
            .arn()
            .to_string()
    })
}

fn set_trust(byo: &Byo, arn: &str, trust: &Value) {
    let (url, trust) = (byo.moto_url.clone(), trust.to_string());
    let name = arn.rsplit('/').next().unwrap_or(arn).to_string();
    aws::block_on(async move {
        aws::iam(&url)
            .await
            .update_assume_role_policy()
            .role_name(name)
            .policy_document(trust)
            .send()
            .await
            .expect("update trust policy");
    });
}

fn pinned(external_id: &str) -> Value {
    json!({ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow", "Principal": { "AWS": "*" },
        "Action": "sts:AssumeRole", "Condition": { "StringEquals": { "sts:ExternalId": external_id } } }] })
}

#[test]
fn byo_confused_deputy_role_without_external_id_condition_is_refused() {
    let mut byo = Byo::start(&[]);
    byo.auto_roles = false;
    let ws = byo.workspace();
    let bucket = unique("byo-lax");
    create_bucket(&byo.moto_url, &bucket, "us-east-1");
    let lax = json!({ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow", "Principal": { "AWS": "*" }, "Action": "sts:AssumeRole" }] });
    let role = create_role(&byo, &unique("lax-reader"), &lax);
    let (s, v) = byo.register(
        &ws,
        &json!({ "role_arn": role, "bucket": bucket, "region": "us-east-1" }),
    );
    assert_eq!(s, 201, "{v}");
    let ext = v["grant"]["external_id"].as_str().expect("external id").to_string();
    assert_eq!(v["grant"]["status"], "failed", "{v}");
    assert_eq!(v["probe"]["error"]["code"], "BYO_EXTERNAL_ID_NOT_ENFORCED", "{v}");
    let condition = json!({ "StringEquals": { "sts:ExternalId": ext } }).to_string();
    let msg = v["probe"]["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&condition), "the message gives the exact Condition: {msg}");
    assert_eq!(v["probe"]["checklist"][0]["code"], "BYO_EXTERNAL_ID_NOT_ENFORCED");
    assert!(v["probe"]["checklist"][0]["fix"].as_str().unwrap().contains(&condition));

    // Both AssumeRoles reached moto: the right ID, then a wrong one that was accepted.
    let sent = byo.fault.requests_for("sts", "AssumeRole");
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].params.get("ExternalId"), Some(&ext));
    assert_ne!(sent[1].params.get("ExternalId"), Some(&ext));
    assert!(sent.iter().all(|r| r.forwarded && r.status == 200));
    // No bucket call was made with a role that is not safe.
    assert!(byo.fault.requests_for("s3", "HeadBucket").is_empty());

    // Pinned to the External ID: the same probe passes, and the audit shows the refused
    // wrong-ID attempt.
    set_trust(&byo, &role, &pinned(&ext));
    let (s, c) = byo.check(&ws);
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["grant"]["status"], "active", "{c}");
    let entries = byo.audit(&ws, None, 100);
    let wrong: Vec<&Value> = entries
        .iter()
        .filter(|e| e["event_type"] == "sts:AssumeRole(wrong-external-id)")
        .collect();
    assert_eq!(wrong.len(), 2, "one per probe: {entries:?}");
    assert!(
        wrong
            .iter()
            .any(|e| e["outcome"] == "error" && e["error_code"] == "AccessDenied"),
        "{wrong:?}"
    );
}

#[test]
fn byo_confused_deputy_other_workspace_role_refuses_our_external_id() {
    let mut byo = Byo::start(&[]);
    byo.auto_roles = false;
    let (a, b) = (byo.workspace(), byo.workspace());
    let bucket = unique("byo-b");
    create_bucket(&byo.moto_url, &bucket, "us-east-1");
    let body = |role: &str| json!({ "role_arn": role, "bucket": bucket, "region": "us-east-1" });

    // B registers, then pins its role to B's External ID: active.
    let role_name = unique("b-reader");
    let role = format!("arn:aws:iam::{ACCOUNT}:role/{role_name}");
    let (_, v) = byo.register(&b, &body(&role));
    let b_ext = v["grant"]["external_id"].as_str().unwrap().to_string();
    create_role(&byo, &role_name, &pinned(&b_ext));
    let (s, c) = byo.check(&b);
    assert_eq!((s, c["grant"]["status"].as_str()), (200, Some("active")), "{c}");

    // A names B's role: refused with A's External ID, nothing read.
    byo.fault.clear_requests();
    let (s, v) = byo.register(&a, &body(&role));
    assert_eq!(s, 201, "{v}");
    let a_ext = v["grant"]["external_id"].as_str().unwrap().to_string();
    assert_ne!(a_ext, b_ext);
    assert_eq!(v["grant"]["status"], "failed", "{v}");
    assert_eq!(v["probe"]["error"]["code"], "BYO_ASSUME_ROLE_FAILED", "{v}");
    let sent = byo.fault.requests_for("sts", "AssumeRole");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].params.get("ExternalId"), Some(&a_ext));
    assert!(sent[0].faulted && !sent[0].forwarded && sent[0].status == 403);
    assert!(byo.fault.requests_for("s3", "HeadBucket").is_empty());
    assert_error(
        byo.api.post(
            &a.path("/artifacts/byo"),
            Some(&a.key),
            &json!({ "s3_uri": format!("s3://{bucket}/x") }),
        ),
        409,
        "BYO_GRANT_NOT_ACTIVE",
    );
}
