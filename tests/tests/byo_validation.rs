//! Every BYO input field is checked before anything is stored or any AWS call is made,
//! and refused with 400, a typed code and the field named in `error.field`.

mod byo_support;
mod common;

use byo_support::*;
use common::assert_error;
use serde_json::{json, Value};

#[test]
fn grant_fields_are_validated() {
    let byo = Byo::start(&[]);
    let ws = byo.workspace();
    let good = json!({
        "role_arn": "arn:aws:iam::123456789012:role/sealgate-reader",
        "bucket": "good-bucket-name",
        "region": "us-east-1",
    });
    let with = |field: &str, v: Value| {
        let mut b = good.clone();
        if v.is_null() {
            b.as_object_mut().expect("object").remove(field);
        } else {
            b[field] = v;
        }
        b
    };
    let long_name = "r".repeat(65);
    let long_path = format!("arn:aws:iam::123456789012:role/{}/r", "p".repeat(511));
    let cases: Vec<(&str, Value, &str)> = vec![
        // role_arn
        ("role_arn", Value::Null, "BYO_INVALID_ROLE_ARN"),
        ("role_arn", json!(""), "BYO_INVALID_ROLE_ARN"),
        ("role_arn", json!("sealgate-reader"), "BYO_INVALID_ROLE_ARN"),
        (
            "role_arn",
            json!("arn:aws:iam::12345678901:role/r"),
            "BYO_INVALID_ROLE_ARN",
        ),
        (
            "role_arn",
            json!("arn:aws:iam::1234567890123:role/r"),
            "BYO_INVALID_ROLE_ARN",
        ),
        (
            "role_arn",
            json!("arn:aws:iam::12345678901x:role/r"),
            "BYO_INVALID_ROLE_ARN",
        ),
        (
            "role_arn",
            json!("arn:aws:iam::123456789012:user/r"),
            "BYO_INVALID_ROLE_ARN",
        ),
        (
            "role_arn",
            json!("arn:aws:iam:us-east-1:123456789012:role/r"),
            "BYO_INVALID_ROLE_ARN",
        ),
        (
            "role_arn",
            json!("arn:aws:s3::123456789012:role/r"),
            "BYO_INVALID_ROLE_ARN",
        ),
        (
            "role_arn",
            json!("arn:aws:iam::123456789012:role/"),
            "BYO_INVALID_ROLE_ARN",
        ),
        (
            "role_arn",
            json!("arn:aws:iam::123456789012:role/bad name"),
            "BYO_INVALID_ROLE_ARN",
        ),
        (
            "role_arn",
            json!("arn:aws:iam::123456789012:role/bad*name"),
            "BYO_INVALID_ROLE_ARN",
        ),
        (
            "role_arn",
            json!(format!("arn:aws:iam::123456789012:role/{long_name}")),
            "BYO_INVALID_ROLE_ARN",
        ),
        ("role_arn", json!(long_path), "BYO_INVALID_ROLE_ARN"),
        (
            "role_arn",
            json!("arn:aws-cn:iam::123456789012:role/r"),
            "BYO_INVALID_ROLE_ARN",
        ),
        ("role_arn", json!(42), "BYO_INVALID_FIELD"),
        // bucket
        ("bucket", Value::Null, "BYO_INVALID_BUCKET"),
        ("bucket", json!("ab"), "BYO_INVALID_BUCKET"),
        ("bucket", json!("a".repeat(64)), "BYO_INVALID_BUCKET"),
        ("bucket", json!("Upper-Case"), "BYO_INVALID_BUCKET"),
        ("bucket", json!("under_score"), "BYO_INVALID_BUCKET"),
        ("bucket", json!("-leading-hyphen"), "BYO_INVALID_BUCKET"),
        ("bucket", json!("trailing-hyphen-"), "BYO_INVALID_BUCKET"),
        ("bucket", json!(".leading-dot"), "BYO_INVALID_BUCKET"),
        ("bucket", json!("trailing-dot."), "BYO_INVALID_BUCKET"),
        ("bucket", json!("two..dots"), "BYO_INVALID_BUCKET"),
        ("bucket", json!("192.168.5.4"), "BYO_INVALID_BUCKET"),
        ("bucket", json!("xn--punycode"), "BYO_INVALID_BUCKET"),
        ("bucket", json!("sthree-reserved"), "BYO_INVALID_BUCKET"),
        ("bucket", json!("amzn-s3-demo-bucket"), "BYO_INVALID_BUCKET"),
        ("bucket", json!("access-point-s3alias"), "BYO_INVALID_BUCKET"),
        ("bucket", json!("object-lambda--ol-s3"), "BYO_INVALID_BUCKET"),
        ("bucket", json!("multi-region.mrap"), "BYO_INVALID_BUCKET"),
        ("bucket", json!("directory--x-s3"), "BYO_INVALID_BUCKET"),
        ("bucket", json!("tables--table-s3"), "BYO_INVALID_BUCKET"),
        ("bucket", json!("spaced bucket"), "BYO_INVALID_BUCKET"),
        // region
        ("region", Value::Null, "BYO_INVALID_REGION"),
        ("region", json!(""), "BYO_INVALID_REGION"),
        ("region", json!("us-east-9"), "BYO_INVALID_REGION"),
        ("region", json!("US-EAST-1"), "BYO_INVALID_REGION"),
        ("region", json!("mars-north-1"), "BYO_INVALID_REGION"),
        // kms_key_id
        ("kms_key_id", json!(""), "BYO_INVALID_KMS_KEY_ID"),
        ("kms_key_id", json!("k".repeat(2049)), "BYO_INVALID_KMS_KEY_ID"),
        ("kms_key_id", json!("not-a-key"), "BYO_INVALID_KMS_KEY_ID"),
        ("kms_key_id", json!("alias/"), "BYO_INVALID_KMS_KEY_ID"),
        (
            "kms_key_id",
            json!("1234abcd-12ab-34cd-56ef-1234567890a"),
            "BYO_INVALID_KMS_KEY_ID",
        ),
        (
            "kms_key_id",
            json!("arn:aws:kms:us-east-1:123456789012:key/nope"),
            "BYO_INVALID_KMS_KEY_ID",
        ),
        (
            "kms_key_id",
            json!("arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
            "BYO_INVALID_KMS_KEY_ID",
        ),
        // run_id
        ("run_id", json!("has space"), "BYO_INVALID_FIELD"),
        ("run_id", json!(""), "BYO_INVALID_FIELD"),
        ("run_id", json!("r".repeat(129)), "BYO_INVALID_FIELD"),
    ];
    for (field, value, code) in cases {
        let body = with(field, value.clone());
        let got = byo.register(&ws, &body);
        // A value of the wrong JSON type fails in the body's parser, which cannot name
        // a field for every shape of mistake: the code says what kind of error it is.
        if value == json!(42) {
            assert_error(got, 400, code);
        } else {
            assert_invalid(got, code, field);
        }
    }
    // Partition mismatch between the role and the region is the role's fault.
    let mut cn = good.clone();
    cn["region"] = json!("cn-north-1");
    assert_invalid(byo.register(&ws, &cn), "BYO_INVALID_ROLE_ARN", "role_arn");
    assert_error(byo.register(&ws, &with("surprise", json!(1))), 400, "BYO_INVALID_FIELD");
    assert_error(
        byo.api.post_raw(
            &ws.path("/byo/grant"),
            Some(&ws.key),
            "application/json",
            b"{not json".to_vec(),
        ),
        400,
        "BYO_INVALID_FIELD",
    );

    // Nothing was stored, no AWS call was made.
    assert_error(
        byo.api.get(&ws.path("/byo/grant"), Some(&ws.key)),
        404,
        "BYO_GRANT_NOT_FOUND",
    );
    assert_eq!(byo.fault.requests().len(), 0, "{:?}", byo.fault.requests());

    // Edge values that are valid pass validation (the probe then runs and fails: no such bucket).
    let edge = json!({
        "role_arn": format!("arn:aws:iam::123456789012:role/path/to/{}", "r".repeat(64)),
        "bucket": format!("a.{}-9", "b".repeat(58)),
        "region": "ap-southeast-2",
        "kms_key_id": "alias/team/data_key-1",
        "run_id": "r".repeat(128),
    });
    let (s, v) = byo.register(&ws, &edge);
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["grant"]["status"], "failed");
    assert_eq!(v["grant"]["last_verify_error"], "BYO_BUCKET_NOT_FOUND", "{v}");
}

#[test]
fn artifact_fields_are_validated() {
    let byo = Byo::start(&[]);
    let ws = byo.workspace();
    let bucket = unique("artval");
    create_bucket(&byo.moto_url, &bucket, "us-east-1");
    byo.register_active(&ws, &bucket, "us-east-1");
    let uri = format!("s3://{bucket}/key");
    let good = json!({ "s3_uri": uri });
    let with = |field: &str, v: Value| {
        let mut b = good.clone();
        if v.is_null() {
            b.as_object_mut().expect("object").remove(field);
        } else {
            b[field] = v;
        }
        b
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("s3_uri", Value::Null, "BYO_INVALID_S3_URI"),
        ("s3_uri", json!(""), "BYO_INVALID_S3_URI"),
        ("s3_uri", json!(format!("S3://{bucket}/key")), "BYO_INVALID_S3_URI"),
        (
            "s3_uri",
            json!(format!("https://{bucket}.s3.amazonaws.com/key")),
            "BYO_INVALID_S3_URI",
        ),
        ("s3_uri", json!(format!("s3://{bucket}")), "BYO_INVALID_S3_URI"),
        ("s3_uri", json!(format!("s3://{bucket}/")), "BYO_INVALID_S3_URI"),
        ("s3_uri", json!("s3://Bad_Bucket/key"), "BYO_INVALID_S3_URI"),
        (
            "s3_uri",
            json!(format!("s3://{bucket}/{}", "k".repeat(1025))),
            "BYO_INVALID_S3_URI",
        ),
        (
            "s3_uri",
            json!(format!("s3://{bucket}/line\nbreak")),
            "BYO_INVALID_S3_URI",
        ),
        ("expected_sha256", json!("abc"), "BYO_INVALID_FIELD"),
        ("expected_sha256", json!("z".repeat(64)), "BYO_INVALID_FIELD"),
        ("expected_size", json!(-1), "BYO_INVALID_FIELD"),
        ("expected_size", json!(1.5), "BYO_INVALID_FIELD"),
        ("expected_size", json!("10"), "BYO_INVALID_FIELD"),
        ("kind", json!(""), "BYO_INVALID_FIELD"),
        ("kind", json!("has space"), "BYO_INVALID_FIELD"),
        ("kind", json!("k".repeat(65)), "BYO_INVALID_FIELD"),
        ("original_filename", json!("dir/file"), "BYO_INVALID_FIELD"),
        ("original_filename", json!(""), "BYO_INVALID_FIELD"),
        ("original_filename", json!("f".repeat(256)), "BYO_INVALID_FIELD"),
        ("original_filename", json!("tab\there"), "BYO_INVALID_FIELD"),
        ("run_id", json!("semi;colon"), "BYO_INVALID_FIELD"),
    ];
    let before = byo.fault.requests().len();
    for (field, value, code) in cases {
        assert_invalid(byo.artifact(&ws, &with(field, value)), code, field);
    }
    assert_error(byo.artifact(&ws, &with("bucket", json!("x"))), 400, "BYO_INVALID_FIELD");
    assert_eq!(byo.fault.requests().len(), before, "validation makes no AWS call");
    for bad in ["limit=0", "limit=1000", "limit=x"] {
        assert_invalid(
            byo.api.get(&ws.path(&format!("/artifacts?{bad}")), Some(&ws.key)),
            "BYO_INVALID_FIELD",
            "limit",
        );
    }
    assert_invalid(
        byo.api.get(&ws.path("/artifacts?cursor=nope"), Some(&ws.key)),
        "BYO_INVALID_CURSOR",
        "cursor",
    );
}

#[test]
fn artifact_list_pages() {
    let byo = Byo::start(&[]);
    let ws = byo.workspace();
    let bucket = unique("artpages");
    create_bucket(&byo.moto_url, &bucket, "us-east-1");
    put_object(&byo.moto_url, &bucket, "us-east-1", "o", b"x", true);
    byo.register_active(&ws, &bucket, "us-east-1");
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (s, a) = byo.artifact(&ws, &json!({ "s3_uri": format!("s3://{bucket}/o") }));
        assert_eq!(s, 201, "{a}");
        ids.push(a["id"].as_str().expect("id").to_string());
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let q = if cursor.is_empty() {
            "?limit=2".to_string()
        } else {
            format!("?limit=2&cursor={cursor}")
        };
        let (s, page) = byo.api.get(&ws.path(&format!("/artifacts{q}")), Some(&ws.key));
        assert_eq!(s, 200, "{page}");
        let items = page["artifacts"].as_array().expect("artifacts");
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|a| a["id"].as_str().unwrap_or_default().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ids);
}
