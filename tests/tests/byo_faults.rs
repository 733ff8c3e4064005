//! Each typed probe error, produced for real by moto where it can (a missing bucket, a
//! bucket in another region) and injected by the fault layer, in AWS's wire shapes,
//! where it cannot (KMS denial, S3 denial and redirects, throttling, slow answers) —
//! and revocation in the middle of use.

mod byo_support;
mod common;

use byo_support::*;
use common::assert_error;
use sealgate_tests::aws;
use sealgate_tests::fault::{Fault, Rule};
use sealgate_tests::wait_until;
use serde_json::{json, Value};
use std::time::Duration;

const REGION: &str = "us-east-1";

/// The probe's verdict from a register or check answer.
#[track_caller]
fn failed_with(v: &Value, code: &str) {
    assert_eq!(v["grant"]["status"], "failed", "{v}");
    assert_eq!(v["grant"]["last_verify_error"], code, "{v}");
    assert_eq!(v["probe"]["error"]["code"], code, "{v}");
    assert!(
        v["grant"]["last_verify_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    let checklist = v["grant"]["checklist"].as_array().expect("checklist");
    assert_eq!(checklist.len(), 1, "{v}");
    assert_eq!(checklist[0]["code"], code);
    assert!(checklist[0]["fix"].as_str().is_some_and(|f| f.len() > 40), "{v}");
    assert_eq!(v["probe"]["checklist"], v["grant"]["checklist"]);
    assert_eq!(
        v["next_step"], checklist[0]["fix"],
        "the next step is the checklist's fix"
    );
}

#[test]
fn missing_bucket_and_wrong_region_for_real() {
    let byo = Byo::start(&[]);
    let ws = byo.workspace();

    // No such bucket: moto's real 404.
    let missing = unique("missing");
    let (s, v) = byo.register(&ws, &grant_body(&missing, REGION));
    assert_eq!(s, 201, "{v}");
    failed_with(&v, "BYO_BUCKET_NOT_FOUND");
    assert!(v["grant"]["last_verified_at"].is_null(), "never verified");
    assert!(v["grant"]["last_checked_at"].as_i64().is_some());
    let (s, e) = byo.artifact(&ws, &json!({ "s3_uri": format!("s3://{missing}/k") }));
    assert_error((s, e.clone()), 409, "BYO_GRANT_NOT_ACTIVE");
    assert_eq!(e["error"]["grant_status"], "failed");

    // Creating the bucket fixes it on the next check.
    create_bucket(&byo.moto_url, &missing, REGION);
    let (s, c) = byo.check(&ws);
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["grant"]["status"], "active", "{c}");
    assert_eq!(c["grant"]["last_verify_error"], Value::Null);
    assert!(c["grant"]["last_verified_at"].as_i64().is_some());
    let (s, _) = byo.api.delete(&ws.path("/byo/grant"), Some(&ws.key));
    assert_eq!(s, 200);

    // A bucket in eu-west-1 registered as us-east-1: moto answers with x-amz-bucket-region.
    let elsewhere = unique("elsewhere");
    create_bucket(&byo.moto_url, &elsewhere, "eu-west-1");
    let (s, v) = byo.register(&ws, &grant_body(&elsewhere, REGION));
    assert_eq!(s, 201, "{v}");
    failed_with(&v, "BYO_REGION_MISMATCH");
    assert!(
        v["grant"]["last_verify_message"]
            .as_str()
            .unwrap_or_default()
            .contains("eu-west-1"),
        "{v}"
    );

    // The audit shows the calls, errors included, with moto's request ids.
    let all = byo.audit(&ws, None, 50);
    let head_404 = all
        .iter()
        .find(|e| e["event_type"] == "s3:HeadBucket" && e["outcome"] == "error")
        .expect("the failed HeadBucket");
    assert!(
        is_moto_request_id(head_404["aws_request_id"].as_str().unwrap_or_default()),
        "{head_404}"
    );
}

#[test]
fn injected_s3_and_kms_failures() {
    let byo = Byo::start(&[]);
    let ws = byo.workspace();
    let bucket = unique("inject");
    create_bucket(&byo.moto_url, &bucket, REGION);
    put_object(&byo.moto_url, &bucket, REGION, "obj", b"payload", true);
    let key_arn = aws::block_on(async {
        let kms = aws::kms(&byo.moto_url, REGION).await;
        let k = kms.create_key().send().await.expect("create key");
        k.key_metadata().expect("metadata").arn().expect("arn").to_string()
    });
    let mut body = grant_body(&bucket, REGION);
    body["kms_key_id"] = json!(key_arn);
    let (s, v) = byo.register(&ws, &body);
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["grant"]["status"], "active", "{v}");
    assert_eq!(byo.seen("kms", "DescribeKey"), 1, "the key is checked when set");
    let (_, docs) = byo.api.get(&ws.path("/byo/grant/policies"), Some(&ws.key));
    let kms_st = docs["kms_key_policy_statement"].as_array().expect("statement").clone();
    assert_eq!(kms_st[0]["Action"], "kms:Decrypt");
    assert_eq!(kms_st[0]["Principal"]["AWS"], v["grant"]["role_arn"]);
    assert_eq!(
        kms_st[0]["Condition"]["StringEquals"]["kms:ViaService"],
        "s3.us-east-1.amazonaws.com"
    );
    assert_eq!(docs["cloudformation"]["parameters"]["KmsKeyArn"], key_arn.as_str());

    let check_fails_with = |rule: Rule, code: &str| {
        byo.fault.clear();
        byo.fault.add(rule);
        let (s, c) = byo.check(&ws);
        assert_eq!(s, 200, "{c}");
        failed_with(&c, code);
        c
    };
    let c = check_fails_with(
        Rule::new("kms", Some("DescribeKey"))
            .fault(Fault::error(400, "AccessDeniedException", "not for you"))
            .times(1),
        "BYO_KMS_ACCESS_DENIED",
    );
    assert!(c["grant"]["last_verify_message"]
        .as_str()
        .unwrap_or_default()
        .contains("AccessDeniedException"));
    check_fails_with(
        Rule::new("s3", Some("HeadBucket"))
            .fault(Fault::error(403, "AccessDenied", "Access Denied"))
            .times(1),
        "BYO_ACCESS_DENIED",
    );
    check_fails_with(
        Rule::new("s3", Some("HeadBucket"))
            .fault(Fault::s3_wrong_region(301, "ap-south-1"))
            .times(1),
        "BYO_REGION_MISMATCH",
    );
    let c = check_fails_with(
        Rule::new("s3", Some("GetBucketLocation"))
            .fault(Fault::s3_wrong_region(400, "eu-central-1"))
            .times(1),
        "BYO_REGION_MISMATCH",
    );
    assert!(
        c["grant"]["last_verify_message"]
            .as_str()
            .unwrap_or_default()
            .contains("eu-central-1"),
        "{c}"
    );
    check_fails_with(
        Rule::new("sts", Some("AssumeRole"))
            .fault(Fault::error(403, "AccessDenied", "not authorized"))
            .times(1),
        "BYO_ASSUME_ROLE_FAILED",
    );
    check_fails_with(
        Rule::new("s3", Some("HeadBucket"))
            .fault(Fault::error(500, "InternalError", "oops"))
            .times(4),
        "BYO_AWS_ERROR",
    );

    // Injected errors carry the injected request ids into the audit.
    let all = byo.audit(&ws, None, 500);
    let kms_denied = all
        .iter()
        .find(|e| e["event_type"] == "kms:DescribeKey" && e["outcome"] == "error")
        .expect("the denied DescribeKey");
    assert_eq!(kms_denied["error_code"], "AccessDeniedException");
    assert!(
        is_fault_request_id(kms_denied["aws_request_id"].as_str().unwrap_or_default()),
        "{kms_denied}"
    );
    let sts_denied = all
        .iter()
        .find(|e| e["event_type"] == "sts:AssumeRole" && e["outcome"] == "error")
        .expect("the denied AssumeRole");
    assert_eq!(sts_denied["error_code"], "AccessDenied");
    assert!(is_fault_request_id(
        sts_denied["aws_request_id"].as_str().unwrap_or_default()
    ));

    // Recovered, then S3 refuses an object read: 424 with the typed code.
    byo.fault.clear();
    let (_, c) = byo.check(&ws);
    assert_eq!(c["grant"]["status"], "active", "{c}");
    byo.fault.add(
        Rule::new("s3", Some("HeadObject"))
            .times(1)
            .fault(Fault::error(403, "AccessDenied", "no")),
    );
    let (s, e) = byo.artifact(&ws, &json!({ "s3_uri": format!("s3://{bucket}/obj") }));
    assert_error((s, e.clone()), 424, "BYO_ACCESS_DENIED");
    assert!(
        e["error"]["next_step"]
            .as_str()
            .is_some_and(|n| n.contains("/byo/grant/check")),
        "{e}"
    );
}

#[test]
fn throttling_is_retried_then_reported() {
    let byo = Byo::start(&[("SEALGATE_BYO_MAX_ATTEMPTS", "3")]);
    let ws = byo.workspace();
    let bucket = unique("throttle");
    create_bucket(&byo.moto_url, &bucket, REGION);

    // Two throttles, then success: the probe passes and the audit has all three attempts.
    byo.fault
        .add(
            Rule::new("sts", Some("AssumeRole"))
                .times(2)
                .fault(Fault::error(400, "Throttling", "Rate exceeded")),
        );
    let (s, v) = byo.register(&ws, &grant_body(&bucket, REGION));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["grant"]["status"], "active", "{v}");
    // Three attempts, then the probe's deliberately wrong External ID (refused; it has
    // its own audit label, so the attempts below are the three).
    assert_eq!(byo.seen("sts", "AssumeRole"), 4);
    let all = byo.audit(&ws, None, 50);
    let assumes: Vec<&Value> = all.iter().filter(|e| e["event_type"] == "sts:AssumeRole").collect();
    assert_eq!(assumes.len(), 3);
    assert_eq!(
        assumes
            .iter()
            .map(|e| (e["outcome"].clone(), e["error_code"].clone()))
            .collect::<Vec<_>>(),
        [
            (json!("error"), json!("Throttling")),
            (json!("error"), json!("Throttling")),
            (json!("ok"), Value::Null)
        ]
    );
    assert!(is_fault_request_id(
        assumes[0]["aws_request_id"].as_str().unwrap_or_default()
    ));
    assert!(is_moto_request_id(
        assumes[2]["aws_request_id"].as_str().unwrap_or_default()
    ));

    // Throttling that does not stop: BYO_THROTTLED after exactly the configured attempts.
    byo.fault.clear();
    byo.fault.clear_requests();
    byo.fault.add(Rule::new("s3", Some("HeadBucket")).fault(Fault::error(
        503,
        "SlowDown",
        "Please reduce your request rate.",
    )));
    let (s, c) = byo.check(&ws);
    assert_eq!(s, 200, "{c}");
    failed_with(&c, "BYO_THROTTLED");
    assert_eq!(byo.seen("s3", "HeadBucket"), 3, "bounded retries");
    assert_eq!(
        byo.seen("s3", "GetBucketLocation"),
        0,
        "the probe stops at the first failure"
    );

    // Once AWS stops throttling, the next check passes.
    byo.fault.clear();
    let (s, c) = byo.check(&ws);
    assert_eq!(s, 200);
    assert_eq!(c["grant"]["status"], "active", "{c}");
}

#[test]
fn a_slow_account_times_out() {
    let byo = Byo::start(&[("SEALGATE_BYO_PROBE_TIMEOUT_MS", "2000")]);
    let ws = byo.workspace();
    let bucket = unique("slow");
    create_bucket(&byo.moto_url, &bucket, REGION);
    byo.fault.add(
        Rule::new("s3", Some("HeadBucket"))
            .times(1)
            .fault(Fault::delay(Duration::from_secs(8))),
    );
    let (s, v) = byo.register(&ws, &grant_body(&bucket, REGION));
    assert_eq!(s, 201, "{v}");
    failed_with(&v, "BYO_PROBE_TIMEOUT");
    assert!(
        v["grant"]["last_verify_message"]
            .as_str()
            .unwrap_or_default()
            .contains("2000 ms"),
        "{v}"
    );
    let all = byo.audit(&ws, None, 50);
    let head = all
        .iter()
        .find(|e| e["event_type"] == "s3:HeadBucket")
        .expect("HeadBucket row");
    assert_eq!(head["outcome"], "timeout", "{head}");
    assert_eq!(head["error_code"], "Timeout");
    assert_eq!(byo.seen("s3", "HeadBucket"), 1, "a timed-out call is not retried");

    // The rule is used up: the next check passes.
    let (s, c) = byo.check(&ws);
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["grant"]["status"], "active", "{c}");
}

#[test]
fn revocation_mid_use() {
    let byo = Byo::start(&[]);
    let ws = byo.workspace();
    let bucket = unique("revoke");
    create_bucket(&byo.moto_url, &bucket, REGION);
    for k in ["first", "second", "third"] {
        put_object(&byo.moto_url, &bucket, REGION, k, k.as_bytes(), true);
    }
    byo.register_active(&ws, &bucket, REGION);
    let (s, first) = byo.artifact(&ws, &json!({ "s3_uri": format!("s3://{bucket}/first") }));
    assert_eq!(s, 201, "{first}");

    // An operation already holding its session when the role is revoked finishes: hold
    // its HeadObject, revoke (every later AssumeRole is denied), then let it go.
    byo.fault.add(
        Rule::new("s3", Some("HeadObject"))
            .times(1)
            .fault(Fault::delay(Duration::from_secs(2))),
    );
    let heads_before = byo.seen("s3", "HeadObject");
    let in_flight = {
        let api = byo.api.clone();
        let (path, key, uri) = (
            ws.path("/artifacts/byo"),
            ws.key.clone(),
            format!("s3://{bucket}/second"),
        );
        std::thread::spawn(move || api.post(&path, Some(&key), &json!({ "s3_uri": uri, "run_id": "in-flight" })))
    };
    wait_until(
        "the in-flight registration to reach S3",
        Duration::from_secs(20),
        || byo.seen("s3", "HeadObject") > heads_before,
    );
    byo.fault.add(Rule::new("sts", Some("AssumeRole")).fault(Fault::error(
        403,
        "AccessDenied",
        "the role trusts nobody now",
    )));
    let (s, second) = in_flight.join().expect("in-flight thread");
    assert_eq!(s, 201, "the operation in flight finishes: {second}");

    // Later operations fail at AssumeRole.
    let (s, e) = byo.artifact(
        &ws,
        &json!({ "s3_uri": format!("s3://{bucket}/third"), "run_id": "after" }),
    );
    assert_error((s, e.clone()), 424, "BYO_ASSUME_ROLE_FAILED");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("AccessDenied"),
        "{e}"
    );
    let (s, c) = byo.check(&ws);
    assert_eq!(s, 200);
    failed_with(&c, "BYO_ASSUME_ROLE_FAILED");
    let (s, e) = byo.artifact(&ws, &json!({ "s3_uri": format!("s3://{bucket}/third") }));
    assert_error((s, e), 409, "BYO_GRANT_NOT_ACTIVE");

    // Nothing lost, nothing half-written: both earlier artifacts intact, no third.
    let (s, list) = byo.api.get(&ws.path("/artifacts"), Some(&ws.key));
    assert_eq!(s, 200);
    let ids: Vec<&str> = list["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            first["id"].as_str().unwrap_or_default(),
            second["id"].as_str().unwrap_or_default()
        ]
    );
    let (_, got) = byo.api.get(
        &ws.path(&format!("/artifacts/{}", first["id"].as_str().unwrap_or_default())),
        Some(&ws.key),
    );
    assert_eq!(got, first);
    let after = byo.audit(&ws, Some("after"), 50);
    assert_eq!(event_types(&after), ["sts:AssumeRole"]);
    assert_eq!(after[0]["outcome"], "error");
    assert_eq!(after[0]["artifact_id"], Value::Null);
    let flight = byo.audit(&ws, Some("in-flight"), 50);
    assert_eq!(event_types(&flight), ["sts:AssumeRole", "s3:HeadObject"]);
    assert!(flight
        .iter()
        .all(|e| e["artifact_id"] == second["id"] && e["outcome"] == "ok"));
    let conn = rusqlite::Connection::open(byo.d.db_path()).expect("db");
    let rows: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM byo_artifacts WHERE workspace_id = ?1",
            [&ws.id],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(rows, 2);
}
