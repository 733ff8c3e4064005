//! With moto's IAM enforcement on, the External ID is really checked: moto evaluates a
//! same-account role's trust policy, including `StringEquals sts:ExternalId`. The
//! documents sealgate hands out are applied verbatim and must make the probe pass; a
//! wrong or rotated External ID must make it fail with `BYO_ASSUME_ROLE_FAILED`.
//!
//! Its own test binary and its own moto server: the IAM-auth switch is global to a
//! moto process.

mod byo_support;

use aws_sdk_s3::config::Credentials;
use byo_support::*;
use sealgate_tests::aws::{self, Moto};
use serde_json::{json, Value};

const REGION: &str = "us-east-1";
const ROLE: &str = "customer-reader";

struct Keys {
    id: String,
    secret: String,
}

/// Before enforcement: an IAM user for the host, allowed everything (like an
/// administrator of sealgate's own account).
fn set_up_account(moto: &Moto) -> Keys {
    aws::block_on(async {
        let iam = aws::iam(&moto.url).await;
        iam.create_user().user_name("sealgate-host").send().await.expect("user");
        iam.put_user_policy()
            .user_name("sealgate-host")
            .policy_name("all")
            .policy_document(
                json!({ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow", "Action": "*", "Resource": "*" }] })
                    .to_string(),
            )
            .send()
            .await
            .expect("user policy");
        let k = iam
            .create_access_key()
            .user_name("sealgate-host")
            .send()
            .await
            .expect("key");
        let k = k.access_key().expect("access key");
        Keys {
            id: k.access_key_id().to_string(),
            secret: k.secret_access_key().to_string(),
        }
    })
}

/// IAM as the host's user (the only identity that works once enforcement is on).
fn iam_as(moto: &Moto, keys: &Keys) -> aws_sdk_iam::Client {
    let creds = Credentials::new(keys.id.clone(), keys.secret.clone(), None, None, "test-user");
    aws::block_on(async { aws_sdk_iam::Client::new(&aws::sdk_config_with(&moto.url, REGION, creds).await) })
}

/// The role policy sealgate hands out, plus the one action moto invents: moto
/// authorises HeadBucket as `s3:HeadBucket`, where AWS checks `s3:ListBucket`.
fn role_policy_for_moto(docs: &Value, bucket: &str) -> String {
    let mut p = docs["role_policy"].clone();
    p["Statement"].as_array_mut().expect("statements").push(json!({
        "Sid": "MotoOnlyHeadBucket",
        "Effect": "Allow",
        "Action": "s3:HeadBucket",
        "Resource": format!("arn:aws:s3:::{bucket}"),
    }));
    p.to_string()
}

#[test]
fn the_external_id_is_enforced() {
    let moto = Moto::start();
    let bucket = unique("iam");
    create_bucket(&moto.url, &bucket, REGION);
    put_object(&moto.url, &bucket, REGION, "model.bin", b"weights", true);
    let keys = set_up_account(&moto);
    moto.enable_iam_auth();

    // This test creates the customer's role itself, with its IAM user's keys.
    let mut byo = Byo::start_on(
        &moto.url,
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", keys.id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", keys.secret.as_str()),
        ],
    );
    byo.auto_roles = false;
    // moto checks same-account trust policies and External IDs itself while IAM auth is
    // on (and would refuse the fault layer's unsigned GetRole).
    byo.fault.stop_checking_trust_policies();
    let ws = byo.workspace();
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/{ROLE}");
    let (s, v) = byo.register(
        &ws,
        &json!({ "role_arn": role_arn, "bucket": bucket, "region": REGION }),
    );
    assert_eq!(s, 201, "{v}");
    // The role does not exist yet. (AWS refuses AssumeRole here; moto lets it pass and
    // fails the role's first S3 call with a 500, so only the outcome is asserted.)
    assert_eq!(v["grant"]["status"], "failed", "{v}");
    let ext = v["grant"]["external_id"].as_str().expect("external id").to_string();

    let (s, docs) = byo.api.get(&ws.path("/byo/grant/policies"), Some(&ws.key));
    assert_eq!(s, 200, "{docs}");
    assert_eq!(
        docs["sealgate_principal"],
        format!("arn:aws:iam::{ACCOUNT}:user/sealgate-host"),
        "the host's own identity, from GetCallerIdentity"
    );

    // The customer applies the trust policy, but with a different External ID.
    let mut wrong = docs["trust_policy"].clone();
    wrong["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"] = json!("not-the-external-id");
    let iam = iam_as(&moto, &keys);
    aws::block_on(async {
        iam.create_role()
            .role_name(ROLE)
            .assume_role_policy_document(wrong.to_string())
            .send()
            .await
            .expect("create role");
        iam.put_role_policy()
            .role_name(ROLE)
            .policy_name("sealgate-read")
            .policy_document(role_policy_for_moto(&docs, &bucket))
            .send()
            .await
            .expect("role policy");
    });
    let (s, c) = byo.check(&ws);
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["grant"]["status"], "failed", "{c}");
    assert_eq!(c["grant"]["last_verify_error"], "BYO_ASSUME_ROLE_FAILED");
    assert!(
        c["grant"]["last_verify_message"]
            .as_str()
            .unwrap_or_default()
            .contains("AccessDenied"),
        "{c}"
    );
    let fix = c["grant"]["checklist"][0]["fix"].as_str().unwrap_or_default();
    assert!(fix.contains(&ext) && fix.contains(&role_arn), "{fix}");

    // The trust policy exactly as handed out: the probe passes, and artifacts work.
    let apply_trust = |docs: &Value| {
        aws::block_on(async {
            iam.update_assume_role_policy()
                .role_name(ROLE)
                .policy_document(docs["trust_policy"].to_string())
                .send()
                .await
                .expect("update trust policy");
        })
    };
    apply_trust(&docs);
    let (s, c) = byo.check(&ws);
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["grant"]["status"], "active", "{c}\n{}", byo.d.host_log());
    let (s, a) = byo.artifact(&ws, &json!({ "s3_uri": format!("s3://{bucket}/model.bin") }));
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["size_bytes"], 7);

    // Rotation: the old trust policy no longer lets sealgate in; the new one does.
    let (s, r) = byo
        .api
        .post(&ws.path("/byo/grant/rotate-external-id"), Some(&ws.key), &json!({}));
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["grant"]["status"], "pending");
    let (_, c) = byo.check(&ws);
    assert_eq!(c["grant"]["last_verify_error"], "BYO_ASSUME_ROLE_FAILED", "{c}");
    let (_, docs2) = byo.api.get(&ws.path("/byo/grant/policies"), Some(&ws.key));
    assert_ne!(docs2["trust_policy"], docs["trust_policy"]);
    apply_trust(&docs2);
    let (_, c) = byo.check(&ws);
    assert_eq!(c["grant"]["status"], "active", "{c}");

    // Each refusal is in the audit with the error moto gave.
    let denied: Vec<Value> = byo
        .audit(&ws, None, 100)
        .into_iter()
        .filter(|e| e["event_type"] == "sts:AssumeRole" && e["outcome"] == "error")
        .collect();
    assert_eq!(denied.len(), 2, "the wrong and the rotated External ID: {denied:?}");
    assert!(
        denied
            .iter()
            .all(|e| e["aws_request_id"].as_str().is_some_and(|r| !r.is_empty())),
        "{denied:?}"
    );
}
