//! BYO storage end to end against moto (through the fault layer, which here only
//! watches): register → probe → artifacts with size, ETag and verified SHA-256 → audit
//! rows carrying moto's request ids, matched against the transparency log; and the
//! artifact errors (bucket mismatch, missing object, size and SHA-256 mismatches, the
//! hashing limit).

mod byo_support;
mod common;

use byo_support::*;
use common::{assert_error, entries, sha256_hex};
use sealgate_shared::leaf;
use sealgate_tests::aws;
use serde_json::{json, Value};

const REGION: &str = "us-west-2";

#[test]
fn happy_path_end_to_end() {
    let byo = Byo::start(&[]);
    let ws = byo.workspace();
    let bucket = unique("happy");
    create_bucket(&byo.moto_url, &bucket, REGION);
    let report = b"id,value\n1,42\n2,43\n".to_vec();
    let plain: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    put_object(&byo.moto_url, &bucket, REGION, "runs/7/report.csv", &report, true);
    put_object(&byo.moto_url, &bucket, REGION, "runs/7/plain.bin", &plain, false);
    let (s3_sha, report_etag) = head_object(&byo.moto_url, &bucket, REGION, "runs/7/report.csv");
    assert_eq!(
        s3_sha.as_deref(),
        Some(sha256_hex(&report).as_str()),
        "moto stores the SHA-256 checksum"
    );
    let (no_sha, plain_etag) = head_object(&byo.moto_url, &bucket, REGION, "runs/7/plain.bin");
    assert_eq!(
        no_sha, None,
        "the streaming path needs an object without a SHA-256 checksum"
    );

    // Register: the probe runs at once and passes.
    let mut body = grant_body(&bucket, REGION);
    body["run_id"] = json!("setup-1");
    let (s, reg) = byo.register(&ws, &body);
    assert_eq!(s, 201, "{reg}\n{}", byo.d.host_log());
    let g = &reg["grant"];
    assert_eq!(g["status"], "active", "{reg}");
    assert_eq!(reg["probe"]["status"], "active");
    assert_eq!(reg["probe"]["error"], Value::Null);
    assert_eq!(g["last_verify_error"], Value::Null);
    assert!(g["last_verified_at"].as_i64().is_some_and(|t| t > 0), "{g}");
    assert!(
        reg["next_step"].as_str().unwrap_or_default().contains("/artifacts/byo"),
        "{reg}"
    );
    let ext = g["external_id"].as_str().expect("external_id").to_string();
    let groups: Vec<&str> = ext.split('-').collect();
    assert_eq!(
        groups.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12],
        "{ext}"
    );
    assert!(
        groups[2].starts_with('4') && "89ab".contains(&groups[3][..1]),
        "not a v4 UUID: {ext}"
    );

    // What sealgate really sent to STS (moto ignores ExternalId; the fault layer sees it).
    let assumes = byo.fault.requests_for("sts", "AssumeRole");
    assert_eq!(assumes.len(), 2, "the External ID, then a wrong one (issue 9)");
    let wrong = &assumes[1];
    assert_ne!(wrong.params.get("ExternalId"), Some(&ext));
    assert!(
        wrong.faulted && !wrong.forwarded && wrong.status == 403,
        "refused by the trust policy: {wrong:?}"
    );
    let a = &assumes[0];
    assert_eq!(a.params.get("ExternalId"), Some(&ext));
    assert_eq!(a.params.get("RoleArn").map(String::as_str), g["role_arn"].as_str());
    assert_eq!(a.params.get("DurationSeconds").map(String::as_str), Some("900"));
    assert!(
        a.params["RoleSessionName"].starts_with("sealgate-probe-"),
        "{:?}",
        a.params
    );
    assert_eq!(a.region.as_deref(), Some(REGION), "STS in the grant's region");
    assert_eq!(byo.seen("s3", "HeadBucket"), 1);
    assert_eq!(byo.seen("s3", "GetBucketLocation"), 1);
    let s3_calls = byo.fault.requests_for("s3", "HeadBucket");
    assert!(
        s3_calls[0]
            .headers
            .get("authorization")
            .is_some_and(|h| h.contains(&format!("/{REGION}/s3/"))),
        "S3 is signed for the grant's region"
    );

    // The IAM documents: moto's IAM accepts the trust policy and the role policy as written.
    let (s, docs) = byo.api.get(&ws.path("/byo/grant/policies"), Some(&ws.key));
    assert_eq!(s, 200, "{docs}");
    let trust = &docs["trust_policy"]["Statement"][0];
    assert_eq!(trust["Condition"]["StringEquals"]["sts:ExternalId"], ext.as_str());
    assert_eq!(trust["Action"], "sts:AssumeRole");
    assert_eq!(
        trust["Principal"]["AWS"],
        format!("arn:aws:iam::{ACCOUNT}:user/moto"),
        "the host's identity"
    );
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let statements = docs["bucket_policy"]["Statement"]
        .as_array()
        .expect("statements")
        .clone();
    let resources: Vec<&str> = statements.iter().filter_map(|s| s["Resource"].as_str()).collect();
    assert_eq!(resources, [bucket_arn.clone(), format!("{bucket_arn}/*")]);
    for st in &statements {
        assert_eq!(st["Principal"]["AWS"], g["role_arn"], "{st}");
        assert_eq!(st["Effect"], "Allow");
    }
    let actions: Vec<String> = statements
        .iter()
        .flat_map(|s| match &s["Action"] {
            Value::Array(a) => a.iter().map(|x| x.as_str().unwrap_or_default().to_string()).collect(),
            x => vec![x.as_str().unwrap_or_default().to_string()],
        })
        .collect();
    assert_eq!(actions, ["s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject"]);
    assert_eq!(docs["kms_key_policy_statement"], Value::Null, "no key, no statement");
    assert_eq!(docs["cloudformation"]["parameters"]["ExternalId"], ext.as_str());
    let role_name = g["role_arn"]
        .as_str()
        .expect("role")
        .rsplit('/')
        .next()
        .expect("name")
        .to_string();
    aws::block_on(async {
        let iam = aws::iam(&byo.moto_url).await;
        // The role exists (the harness created it for the registration); pin it to the
        // exact External ID as the customer would.
        iam.update_assume_role_policy()
            .role_name(&role_name)
            .policy_document(docs["trust_policy"].to_string())
            .send()
            .await
            .expect("IAM accepts the trust policy");
        iam.put_role_policy()
            .role_name(&role_name)
            .policy_name("sealgate-read")
            .policy_document(docs["role_policy"].to_string())
            .send()
            .await
            .expect("IAM accepts the role policy");
    });

    // An artifact whose SHA-256 S3 already has: no GetObject.
    let (s, art) = byo.artifact(
        &ws,
        &json!({
            "s3_uri": format!("s3://{bucket}/runs/7/report.csv"),
            "expected_sha256": sha256_hex(&report).to_uppercase(),
            "expected_size": report.len(),
            "kind": "dataset",
            "run_id": "run-42",
        }),
    );
    assert_eq!(s, 201, "{art}");
    assert_eq!(art["sha256"], sha256_hex(&report));
    assert_eq!(art["sha256_source"], "s3-checksum");
    assert_eq!(art["size_bytes"], report.len());
    assert_eq!(art["etag"], report_etag.as_str());
    assert_eq!(art["kind"], "dataset");
    assert_eq!(art["original_filename"], "report.csv");
    assert_eq!(art["storage_url"], format!("byo-s3://{bucket}/runs/7/report.csv"));
    assert!(art["created_at"].as_i64().is_some_and(|t| t > 0));
    let report_id = art["id"].as_str().expect("id").to_string();
    assert_eq!(byo.seen("s3", "GetObject"), 0, "the checksum path reads no bytes");
    let heads = byo.fault.requests_for("s3", "HeadObject");
    assert_eq!(heads.len(), 1);
    assert_eq!(
        heads[0].headers.get("x-amz-checksum-mode").map(String::as_str),
        Some("ENABLED")
    );
    let artifact_assume = byo.fault.requests_for("sts", "AssumeRole");
    assert_eq!(
        artifact_assume.len(),
        3,
        "a fresh session per operation (after the probe's two)"
    );
    assert!(artifact_assume[2].params["RoleSessionName"].starts_with("sealgate-artifact-"));

    // One without: sealgate streams it through SHA-256.
    let (s, art2) = byo.artifact(
        &ws,
        &json!({
            "s3_uri": format!("s3://{bucket}/runs/7/plain.bin"),
            "expected_sha256": sha256_hex(&plain),
            "original_filename": "weights (v2).bin",
            "run_id": "run-42",
        }),
    );
    assert_eq!(s, 201, "{art2}");
    assert_eq!(art2["sha256"], sha256_hex(&plain));
    assert_eq!(art2["sha256_source"], "streamed");
    assert_eq!(art2["size_bytes"], plain.len());
    assert_eq!(art2["etag"], plain_etag.as_str());
    assert_eq!(art2["original_filename"], "weights (v2).bin");
    assert_eq!(art2["kind"], "file", "default kind");
    let gets = byo.fault.requests_for("s3", "GetObject");
    assert_eq!(gets.len(), 1);
    assert_eq!(
        gets[0].headers.get("if-match").map(|e| e.trim_matches('"').to_string()),
        Some(plain_etag.clone()),
        "the bytes hashed are pinned to the object measured"
    );

    // Without expected_sha256 and without an S3 checksum, no hash is claimed.
    let (s, art3) = byo.artifact(&ws, &json!({ "s3_uri": format!("s3://{bucket}/runs/7/plain.bin") }));
    assert_eq!(s, 201, "{art3}");
    assert_eq!(art3["sha256"], Value::Null);
    assert_eq!(byo.seen("s3", "GetObject"), 1, "no read without a hash to check");

    // Read and list.
    let (s, got) = byo.api.get(&ws.path(&format!("/artifacts/{report_id}")), Some(&ws.key));
    assert_eq!(s, 200, "{got}");
    assert_eq!(got, art);
    let (s, list) = byo.api.get(&ws.path("/artifacts"), Some(&ws.key));
    assert_eq!(s, 200, "{list}");
    let ids: Vec<&str> = list["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            report_id.as_str(),
            art2["id"].as_str().unwrap_or_default(),
            art3["id"].as_str().unwrap_or_default()
        ]
    );
    assert_eq!(list["next_cursor"], Value::Null);

    // The audit: every call, with moto's request ids, and each row is a log leaf.
    let all = byo.audit(&ws, None, 500);
    assert_eq!(
        event_types(&all),
        [
            "sts:AssumeRole",
            "sts:AssumeRole(wrong-external-id)",
            "s3:HeadBucket",
            "s3:GetBucketLocation",
            "sts:AssumeRole",
            "s3:HeadObject",
            "sts:AssumeRole",
            "s3:HeadObject",
            "s3:GetObject",
            "sts:AssumeRole",
            "s3:HeadObject",
        ]
    );
    assert_distinct_leaves(&all);
    // The probe's wrong External ID was refused (by the fault layer's trust check).
    assert_eq!(all[1]["outcome"], "error", "{}", all[1]);
    assert_eq!(all[1]["error_code"], "AccessDenied", "{}", all[1]);
    assert!(is_fault_request_id(
        all[1]["aws_request_id"].as_str().unwrap_or_default()
    ));
    for e in all
        .iter()
        .filter(|e| e["event_type"] != "sts:AssumeRole(wrong-external-id)")
    {
        let rid = e["aws_request_id"].as_str().unwrap_or_default();
        assert!(is_moto_request_id(rid), "not a moto request id: {e}");
        assert_eq!(e["outcome"], "ok", "{e}");
        assert_eq!(e["error_code"], Value::Null);
        assert_eq!(e["role_arn"], g["role_arn"]);
        assert_eq!(e["bucket"], bucket.as_str());
        assert_eq!(e["grant_id"], g["id"]);
        assert!(e["worker_hostname"].as_str().is_some_and(|h| !h.is_empty()), "{e}");
        assert!(
            e["ts"].as_i64().is_some_and(|t| t > 1_600_000_000_000),
            "ts is Unix ms: {e}"
        );
    }
    let ids: std::collections::HashSet<&str> = all.iter().filter_map(|e| e["aws_request_id"].as_str()).collect();
    assert_eq!(ids.len(), all.len(), "one request id per call");
    assert!(all[..4]
        .iter()
        .all(|e| e["run_id"] == "setup-1" && e["artifact_id"].is_null()));
    assert_eq!(all[5]["s3_key"], "runs/7/report.csv");
    assert_eq!(all[5]["artifact_id"], report_id.as_str());
    assert_eq!(all[8]["bytes_read"], plain.len(), "{}", all[8]);
    assert_eq!(all[8]["artifact_id"], art2["id"]);

    let run = byo.audit(&ws, Some("run-42"), 2);
    assert_eq!(
        event_types(&run),
        [
            "sts:AssumeRole",
            "s3:HeadObject",
            "sts:AssumeRole",
            "s3:HeadObject",
            "s3:GetObject"
        ]
    );
    assert!(run.iter().all(|e| e["run_id"] == "run-42"));

    // Each audit row is the same record as its byo.call leaf in the transparency log.
    for e in &all {
        let i = e["log_index"].as_u64().expect("log_index");
        let bytes = entries(&byo.api, i, i + 1).pop().expect("leaf");
        let l = leaf::parse(&bytes).expect("leaf JSON");
        assert_eq!(l.kind, "byo.call");
        for field in [
            "event_type",
            "aws_request_id",
            "role_arn",
            "bucket",
            "s3_key",
            "bytes_read",
            "outcome",
            "artifact_id",
            "run_id",
            "ts",
            "worker_hostname",
        ] {
            assert_eq!(l.data[field], e[field], "{field} differs between row and leaf {i}");
        }
        assert_eq!(l.data["workspace_id"], ws.id.as_str());
    }
}

#[test]
fn artifact_errors_leave_nothing_behind() {
    let byo = Byo::start(&[]);
    let ws = byo.workspace();
    let bucket = unique("errs");
    create_bucket(&byo.moto_url, &bucket, REGION);
    let with_sum = b"checksummed bytes".to_vec();
    let without = b"plain bytes, hashed by streaming".to_vec();
    put_object(&byo.moto_url, &bucket, REGION, "a/with.txt", &with_sum, true);
    put_object(&byo.moto_url, &bucket, REGION, "a/without.txt", &without, false);
    byo.register_active(&ws, &bucket, REGION);
    let uri = |k: &str| format!("s3://{bucket}/{k}");

    // Refused before any AWS call.
    let other = unique("other");
    assert_invalid(
        byo.artifact(&ws, &json!({ "s3_uri": format!("s3://{other}/a/with.txt") })),
        "BYO_BUCKET_MISMATCH",
        "s3_uri",
    );
    assert_invalid(
        byo.artifact(&ws, &json!({ "s3_uri": format!("https://{bucket}/a") })),
        "BYO_INVALID_S3_URI",
        "s3_uri",
    );
    assert_eq!(byo.seen("s3", "HeadObject"), 0);

    // Refused after asking S3.
    assert_invalid(
        byo.artifact(&ws, &json!({ "s3_uri": uri("a/missing.txt") })),
        "BYO_OBJECT_NOT_FOUND",
        "s3_uri",
    );
    assert_invalid(
        byo.artifact(
            &ws,
            &json!({ "s3_uri": uri("a/with.txt"), "expected_size": with_sum.len() + 1 }),
        ),
        "BYO_SIZE_MISMATCH",
        "expected_size",
    );
    assert_invalid(
        byo.artifact(
            &ws,
            &json!({ "s3_uri": uri("a/with.txt"), "expected_sha256": sha256_hex(b"other") }),
        ),
        "BYO_SHA256_MISMATCH",
        "expected_sha256",
    );
    assert_eq!(byo.seen("s3", "GetObject"), 0, "the mismatch came from S3's checksum");
    let (s, e) = byo.artifact(
        &ws,
        &json!({ "s3_uri": uri("a/without.txt"), "expected_sha256": sha256_hex(b"other") }),
    );
    assert_invalid((s, e.clone()), "BYO_SHA256_MISMATCH", "expected_sha256");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&sha256_hex(&without)),
        "{e}"
    );
    assert_eq!(byo.seen("s3", "GetObject"), 1, "the mismatch came from streaming");

    // Nothing was registered; every call is still in the audit, with no artifact id.
    let (s, list) = byo.api.get(&ws.path("/artifacts"), Some(&ws.key));
    assert_eq!(s, 200);
    assert_eq!(list["artifacts"], json!([]), "{list}");
    let all = byo.audit(&ws, None, 50);
    // After the probe's four calls (one the deliberately wrong External ID).
    let artifact_calls = &all[4..];
    assert_eq!(
        event_types(artifact_calls),
        [
            "sts:AssumeRole",
            "s3:HeadObject",
            "sts:AssumeRole",
            "s3:HeadObject",
            "sts:AssumeRole",
            "s3:HeadObject",
            "sts:AssumeRole",
            "s3:HeadObject",
            "s3:GetObject"
        ]
    );
    assert!(
        artifact_calls.iter().all(|e| e["artifact_id"].is_null()),
        "failed registrations name no artifact"
    );
    let missing = &artifact_calls[1];
    assert_eq!(missing["outcome"], "error", "{missing}");
    assert_eq!(missing["s3_key"], "a/missing.txt");
    assert!(
        missing["error_code"]
            .as_str()
            .is_some_and(|c| c.contains("404") || c == "NotFound"),
        "{missing}"
    );
    assert!(
        is_moto_request_id(missing["aws_request_id"].as_str().unwrap_or_default()),
        "request id on errors too: {missing}"
    );
    assert_eq!(artifact_calls[8]["bytes_read"], without.len());

    // Unknown artifact ids.
    assert_error(
        byo.api.get(&ws.path("/artifacts/art_0000000000000000"), Some(&ws.key)),
        404,
        "BYO_ARTIFACT_NOT_FOUND",
    );
    assert_error(
        byo.api
            .delete(&ws.path("/artifacts/art_0000000000000000"), Some(&ws.key)),
        404,
        "BYO_ARTIFACT_NOT_FOUND",
    );
}

#[test]
fn streaming_is_bounded_by_the_hash_limit() {
    let byo = Byo::start(&[("SEALGATE_BYO_MAX_HASH_BYTES", "64")]);
    let ws = byo.workspace();
    let bucket = unique("limit");
    create_bucket(&byo.moto_url, &bucket, REGION);
    let big = vec![7u8; 100];
    let small = vec![9u8; 64];
    put_object(&byo.moto_url, &bucket, REGION, "big-plain", &big, false);
    put_object(&byo.moto_url, &bucket, REGION, "big-summed", &big, true);
    put_object(&byo.moto_url, &bucket, REGION, "small-plain", &small, false);
    byo.register_active(&ws, &bucket, REGION);

    let (s, e) = byo.artifact(
        &ws,
        &json!({ "s3_uri": format!("s3://{bucket}/big-plain"), "expected_sha256": sha256_hex(&big) }),
    );
    assert_invalid((s, e.clone()), "BYO_HASH_LIMIT_EXCEEDED", "expected_sha256");
    assert!(
        e["error"]["message"].as_str().unwrap_or_default().contains("SHA256"),
        "says how to avoid it: {e}"
    );
    assert_eq!(
        byo.seen("s3", "GetObject"),
        0,
        "refused from HeadObject's size, nothing read"
    );

    // Over the limit but S3 has the checksum: fine. At the limit: streamed.
    let (s, a) = byo.artifact(
        &ws,
        &json!({ "s3_uri": format!("s3://{bucket}/big-summed"), "expected_sha256": sha256_hex(&big) }),
    );
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["sha256_source"], "s3-checksum");
    let (s, a) = byo.artifact(
        &ws,
        &json!({ "s3_uri": format!("s3://{bucket}/small-plain"), "expected_sha256": sha256_hex(&small) }),
    );
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["sha256_source"], "streamed");
    assert_eq!(a["size_bytes"], 64);
}
