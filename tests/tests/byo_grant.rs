//! The grant's life: entitlement (402), one grant per workspace (409, nothing
//! overwritten), rotation (new External ID, pending until the next probe passes),
//! disconnect with and without artifacts, re-registration, audit pagination, and
//! isolation between workspaces and roles.

mod byo_support;
mod common;

use byo_support::*;
use common::assert_error;
use rusqlite::params;
use serde_json::{json, Value};
use std::collections::HashSet;

const REGION: &str = "eu-west-1";

#[test]
fn entitlement_is_required_and_only_the_operator_grants_it() {
    let byo = Byo::start(&[]);
    let ws = byo.workspace_without_byo();
    let bucket = unique("ent");
    let k = Some(ws.key.as_str());
    let calls: Vec<(u16, Value)> = vec![
        byo.api.get(&ws.path("/byo/grant"), k),
        byo.register(&ws, &grant_body(&bucket, REGION)),
        byo.check(&ws),
        byo.api.post(&ws.path("/byo/grant/rotate-external-id"), k, &json!({})),
        byo.api.delete(&ws.path("/byo/grant"), k),
        byo.api.get(&ws.path("/byo/grant/policies"), k),
        byo.api.get(&ws.path("/byo/audit"), k),
        byo.artifact(&ws, &json!({ "s3_uri": format!("s3://{bucket}/k") })),
        byo.api.get(&ws.path("/artifacts"), k),
        byo.api.get(&ws.path("/artifacts/art_1"), k),
        byo.api.delete(&ws.path("/artifacts/art_1"), k),
    ];
    for got in calls {
        let body = got.1.clone();
        assert_error(got, 402, "BYO_NOT_ENABLED");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(&format!("PUT /v1/workspaces/{}/features", ws.id)),
            "says how: {msg}"
        );
        assert!(msg.contains("byo_storage") && msg.contains("operator"), "{msg}");
        assert_eq!(body["error"]["enable_with"]["body"], json!({ "byo_storage": true }));
    }
    // Invalid input on a workspace without BYO is still 402: the entitlement comes first.
    assert_error(
        byo.register(&ws, &json!({ "role_arn": "nope" })),
        402,
        "BYO_NOT_ENABLED",
    );
    assert_eq!(byo.fault.requests().len(), 0, "no AWS call without the entitlement");

    // Only the operator turns it on.
    assert_error(
        put(&byo.api, &ws.path("/features"), k, &json!({ "byo_storage": true })),
        403,
        "FORBIDDEN",
    );
    let (s, f) = byo.api.get(&ws.path("/features"), k);
    assert_eq!((s, f["byo_storage"].clone()), (200, json!(false)), "{f}");
    let (s, f) = put(
        &byo.api,
        &ws.path("/features"),
        Some(&byo.operator),
        &json!({ "byo_storage": true }),
    );
    assert_eq!(s, 200, "{f}");
    let (s, f) = byo.api.get(&ws.path("/features"), k);
    assert_eq!((s, f["byo_storage"].clone()), (200, json!(true)));
    assert_error(byo.api.get(&ws.path("/byo/grant"), k), 404, "BYO_GRANT_NOT_FOUND");

    // Bad feature bodies and unknown workspaces.
    for bad in [
        json!({}),
        json!({ "byo_storage": "yes" }),
        json!({ "byo_storage": true, "extra": 1 }),
    ] {
        assert_error(
            put(&byo.api, &ws.path("/features"), Some(&byo.operator), &bad),
            400,
            "INVALID_REQUEST",
        );
    }
    assert_error(
        put(
            &byo.api,
            "/v1/workspaces/ws_0000000000000000/features",
            Some(&byo.operator),
            &json!({ "byo_storage": true }),
        ),
        404,
        "NOT_FOUND",
    );
    assert_error(
        put(&byo.api, &ws.path("/features"), None, &json!({ "byo_storage": true })),
        401,
        "UNAUTHENTICATED",
    );

    // And off again: BYO calls are refused again.
    let (s, _) = put(
        &byo.api,
        &ws.path("/features"),
        Some(&byo.operator),
        &json!({ "byo_storage": false }),
    );
    assert_eq!(s, 200);
    assert_error(byo.api.get(&ws.path("/byo/grant"), k), 402, "BYO_NOT_ENABLED");
}

#[test]
fn one_grant_rotation_and_disconnect() {
    let byo = Byo::start(&[]);
    let ws = byo.workspace();
    let bucket = unique("life");
    create_bucket(&byo.moto_url, &bucket, REGION);
    put_object(&byo.moto_url, &bucket, REGION, "obj", b"bytes", true);
    let g = byo.register_active(&ws, &bucket, REGION);
    let gid = g["id"].as_str().expect("id").to_string();
    let ext1 = g["external_id"].as_str().expect("ext").to_string();

    // A second grant is refused and changes nothing.
    let other = unique("life-other");
    let (s, e) = byo.register(&ws, &grant_body(&other, REGION));
    assert_error((s, e.clone()), 409, "BYO_GRANT_EXISTS");
    assert_eq!(e["error"]["grant_id"], gid.as_str());
    let msg = e["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("GET /v1/workspaces/") && msg.contains("DELETE /v1/workspaces/"),
        "names both paths: {msg}"
    );
    assert_eq!(e["error"]["next_steps"].as_array().map(Vec::len), Some(2));
    let (s, now) = byo.api.get(&ws.path("/byo/grant"), Some(&ws.key));
    assert_eq!(s, 200);
    assert_eq!(now["grant"]["id"], gid.as_str());
    assert_eq!(now["grant"]["bucket"], bucket.as_str());
    assert_eq!(now["grant"]["external_id"], ext1.as_str());
    assert_eq!(now["grant"]["status"], "active");

    // Rotation: a new UUID, pending, and no artifacts until a probe passes.
    let (s, r) = byo
        .api
        .post(&ws.path("/byo/grant/rotate-external-id"), Some(&ws.key), &json!({}));
    assert_eq!(s, 200, "{r}");
    let ext2 = r["grant"]["external_id"].as_str().expect("ext").to_string();
    assert_ne!(ext1, ext2);
    assert_eq!(ext2.len(), 36);
    assert_eq!(r["grant"]["status"], "pending");
    assert_eq!(r["grant"]["id"], gid.as_str());
    assert!(r["next_step"].as_str().unwrap_or_default().contains(&ext2), "{r}");
    let (_, now) = byo.api.get(&ws.path("/byo/grant"), Some(&ws.key));
    assert_eq!(now["grant"]["status"], "pending");
    assert_eq!(now["grant"]["external_id"], ext2.as_str());
    let (s, e) = byo.artifact(&ws, &json!({ "s3_uri": format!("s3://{bucket}/obj") }));
    assert_error((s, e.clone()), 409, "BYO_GRANT_NOT_ACTIVE");
    assert_eq!(e["error"]["grant_status"], "pending");
    let (_, docs) = byo.api.get(&ws.path("/byo/grant/policies"), Some(&ws.key));
    assert_eq!(
        docs["trust_policy"]["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
        ext2.as_str()
    );
    let (s, c) = byo.check(&ws);
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["grant"]["status"], "active");
    // The last AssumeRole with the grant's ID (the probe's wrong-ID one follows it).
    let last = byo
        .fault
        .requests_for("sts", "AssumeRole")
        .into_iter()
        .rev()
        .find(|r| !r.params["RoleSessionName"].contains("wrong-id"))
        .expect("assume");
    assert_eq!(
        last.params.get("ExternalId"),
        Some(&ext2),
        "the probe uses the new External ID"
    );

    // Disconnect while an artifact references the grant: 409 listing it.
    let (s, a) = byo.artifact(&ws, &json!({ "s3_uri": format!("s3://{bucket}/obj") }));
    assert_eq!(s, 201, "{a}");
    let aid = a["id"].as_str().expect("id").to_string();
    let (s, e) = byo.api.delete(&ws.path("/byo/grant"), Some(&ws.key));
    assert_error((s, e.clone()), 409, "BYO_GRANT_IN_USE");
    assert_eq!(e["error"]["artifact_ids"], json!([aid]));
    assert_eq!(e["error"]["artifact_count"], 1);
    assert!(e["error"]["message"].as_str().unwrap_or_default().contains(&aid));
    let (_, now) = byo.api.get(&ws.path("/byo/grant"), Some(&ws.key));
    assert_eq!(now["grant"]["status"], "active", "a refused disconnect changes nothing");

    // Delete the artifact (the object stays), then disconnect.
    let (s, d) = byo.api.delete(&ws.path(&format!("/artifacts/{aid}")), Some(&ws.key));
    assert_eq!((s, d.clone()), (200, json!({ "id": aid, "deleted": true })), "{d}");
    assert_error(
        byo.api.get(&ws.path(&format!("/artifacts/{aid}")), Some(&ws.key)),
        404,
        "BYO_ARTIFACT_NOT_FOUND",
    );
    assert_eq!(
        byo.seen("s3", "DeleteObject"),
        0,
        "sealgate never deletes customer bytes"
    );
    let (s, d) = byo.api.delete(&ws.path("/byo/grant"), Some(&ws.key));
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["grant"]["status"], "revoked");
    assert!(d["grant"]["revoked_at"].as_i64().is_some());
    assert_error(
        byo.api.get(&ws.path("/byo/grant"), Some(&ws.key)),
        404,
        "BYO_GRANT_NOT_FOUND",
    );
    assert_error(
        byo.api.delete(&ws.path("/byo/grant"), Some(&ws.key)),
        404,
        "BYO_GRANT_NOT_FOUND",
    );
    assert_error(byo.check(&ws), 404, "BYO_GRANT_NOT_FOUND");
    let (s, e) = byo.artifact(&ws, &json!({ "s3_uri": format!("s3://{bucket}/obj") }));
    assert_error((s, e), 409, "BYO_GRANT_NOT_ACTIVE");

    // A new grant can be registered; the revoked row is kept.
    let g2 = byo.register_active(&ws, &bucket, REGION);
    assert_ne!(g2["id"], gid.as_str());
    assert_ne!(g2["external_id"], ext2.as_str());
    let conn = rusqlite::Connection::open(byo.d.db_path()).expect("open db");
    let rows: Vec<(String, String)> = conn
        .prepare("SELECT id, status FROM byo_grants WHERE workspace_id = ?1 ORDER BY created_at, rowid")
        .expect("prepare")
        .query_map(params![ws.id], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        rows,
        [
            (gid.clone(), "revoked".to_string()),
            (g2["id"].as_str().unwrap_or_default().to_string(), "active".to_string())
        ]
    );
    let deleted: Option<i64> = conn
        .query_row(
            "SELECT deleted_at FROM byo_artifacts WHERE id = ?1",
            params![aid],
            |r| r.get(0),
        )
        .expect("artifact row kept");
    assert!(deleted.is_some());

    // Every one of these changes is a leaf in the log.
    let kinds: Vec<String> = conn
        .prepare("SELECT bytes FROM leaves ORDER BY idx")
        .expect("prepare")
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .expect("query")
        .filter_map(|b| b.ok())
        .filter_map(|b| sealgate_shared::leaf::parse(&b).ok())
        .map(|l| l.kind)
        .filter(|k| k != "byo.call")
        .collect();
    for k in [
        "admin.features.updated",
        "byo.grant.registered",
        "byo.grant.rotated",
        "byo.grant.checked",
        "byo.artifact.registered",
        "byo.artifact.deleted",
        "byo.grant.revoked",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} leaf in {kinds:?}");
    }
}

#[test]
fn audit_pages_cover_every_row_once() {
    let byo = Byo::start(&[]);
    let ws = byo.workspace();
    let bucket = unique("pages");
    create_bucket(&byo.moto_url, &bucket, REGION);
    byo.register_active(&ws, &bucket, REGION);
    for i in 0..4 {
        let (s, c) = byo.api.post(
            &ws.path(&format!("/byo/grant/check?run_id=run-{}", i % 2)),
            Some(&ws.key),
            &json!({}),
        );
        assert_eq!(s, 200, "{c}");
    }
    // 5 probes × 4 calls (the External ID, a wrong one, HeadBucket, GetBucketLocation).
    let full = byo.audit(&ws, None, 500);
    assert_eq!(full.len(), 20);
    let (s, default) = byo.api.get(&ws.path("/byo/audit"), Some(&ws.key));
    assert_eq!(s, 200);
    assert_eq!(
        default["entries"].as_array().map(Vec::len),
        Some(20),
        "default limit 50"
    );
    assert_eq!(default["next_cursor"], Value::Null);

    for limit in [1, 4, 5, 7, 14, 15, 16] {
        let paged = byo.audit(&ws, None, limit);
        assert_eq!(paged, full, "limit {limit}: the chain covers every row once, in order");
    }
    // The exact page shapes for limit 4: five pages of 4, then null.
    let (_, p1) = byo.api.get(&ws.path("/byo/audit?limit=4"), Some(&ws.key));
    assert_eq!(p1["entries"].as_array().map(Vec::len), Some(4));
    let c1 = p1["next_cursor"].as_str().expect("cursor").to_string();
    let (_, p2) = byo
        .api
        .get(&ws.path(&format!("/byo/audit?limit=4&cursor={c1}")), Some(&ws.key));
    assert_eq!(p2["entries"][0], full[4]);
    assert_distinct_leaves(&full);

    let run0 = byo.audit(&ws, Some("run-0"), 2);
    let run1 = byo.audit(&ws, Some("run-1"), 2);
    assert_eq!((run0.len(), run1.len()), (8, 8));
    assert!(run0.iter().all(|e| e["run_id"] == "run-0"));
    let none = byo.audit(&ws, Some("run-unknown"), 10);
    assert!(none.is_empty());

    for bad in ["limit=0", "limit=501", "limit=abc", "limit=-3"] {
        let got = byo.api.get(&ws.path(&format!("/byo/audit?{bad}")), Some(&ws.key));
        assert_invalid(got, "BYO_INVALID_FIELD", "limit");
    }
    for bad in ["cursor=xyz", "cursor=YzE6LTE", "cursor=", "cursor=YzI6NQ"] {
        let got = byo.api.get(&ws.path(&format!("/byo/audit?{bad}")), Some(&ws.key));
        assert_invalid(got, "BYO_INVALID_CURSOR", "cursor");
    }
    assert_invalid(
        byo.api.get(&ws.path("/byo/audit?run_id=a%20b"), Some(&ws.key)),
        "BYO_INVALID_FIELD",
        "run_id",
    );
    assert_error(
        byo.api.get(&ws.path("/byo/audit?bogus=1"), Some(&ws.key)),
        400,
        "INVALID_REQUEST",
    );
    assert_invalid(
        byo.api.post(
            &ws.path("/byo/grant/check?run_id=has%20space"),
            Some(&ws.key),
            &json!({}),
        ),
        "BYO_INVALID_FIELD",
        "run_id",
    );
    let limit500 = byo.api.get(&ws.path("/byo/audit?limit=500"), Some(&ws.key));
    assert_eq!(limit500.0, 200);
}

#[test]
fn workspaces_and_roles_are_isolated() {
    let byo = Byo::start(&[]);
    let a = byo.workspace();
    let b = byo.workspace();
    let (bucket_a, bucket_b) = (unique("iso-a"), unique("iso-b"));
    create_bucket(&byo.moto_url, &bucket_a, REGION);
    create_bucket(&byo.moto_url, &bucket_b, REGION);
    put_object(&byo.moto_url, &bucket_a, REGION, "x", b"a's bytes", true);
    put_object(&byo.moto_url, &bucket_b, REGION, "x", b"b's bytes", true);
    byo.register_active(&a, &bucket_a, REGION);
    byo.register_active(&b, &bucket_b, REGION);
    let (s, art_a) = byo.artifact(
        &a,
        &json!({ "s3_uri": format!("s3://{bucket_a}/x"), "run_id": "shared-run" }),
    );
    assert_eq!(s, 201, "{art_a}");
    let aid = art_a["id"].as_str().expect("id").to_string();

    // B cannot reach A's bucket through its own grant, nor see A's artifact.
    assert_invalid(
        byo.artifact(&b, &json!({ "s3_uri": format!("s3://{bucket_a}/x") })),
        "BYO_BUCKET_MISMATCH",
        "s3_uri",
    );
    assert_error(
        byo.api.get(&b.path(&format!("/artifacts/{aid}")), Some(&b.key)),
        404,
        "BYO_ARTIFACT_NOT_FOUND",
    );
    assert_error(
        byo.api.delete(&b.path(&format!("/artifacts/{aid}")), Some(&b.key)),
        404,
        "BYO_ARTIFACT_NOT_FOUND",
    );
    let (_, list_b) = byo.api.get(&b.path("/artifacts"), Some(&b.key));
    assert_eq!(list_b["artifacts"], json!([]));
    let audit_b = byo.audit(&b, Some("shared-run"), 50);
    assert!(audit_b.is_empty(), "B sees none of A's calls: {audit_b:?}");
    assert!(byo.audit(&b, None, 50).iter().all(|e| e["bucket"] == bucket_b.as_str()));

    // B's admin key on A's paths: forbidden everywhere.
    let kb = Some(b.key.as_str());
    let forbidden = [
        byo.api.get(&a.path("/byo/grant"), kb),
        byo.register(
            &Ws {
                id: a.id.clone(),
                key: b.key.clone(),
            },
            &grant_body(&bucket_b, REGION),
        ),
        byo.api.post(&a.path("/byo/grant/check"), kb, &json!({})),
        byo.api.post(&a.path("/byo/grant/rotate-external-id"), kb, &json!({})),
        byo.api.delete(&a.path("/byo/grant"), kb),
        byo.api.get(&a.path("/byo/grant/policies"), kb),
        byo.api.get(&a.path("/byo/audit"), kb),
        byo.api.get(&a.path("/artifacts"), kb),
        byo.api.get(&a.path(&format!("/artifacts/{aid}")), kb),
        byo.api.delete(&a.path(&format!("/artifacts/{aid}")), kb),
        byo.api.post(
            &a.path("/artifacts/byo"),
            kb,
            &json!({ "s3_uri": format!("s3://{bucket_a}/x") }),
        ),
        byo.api.get(&a.path("/features"), kb),
    ];
    for got in forbidden {
        assert_error(got, 403, "FORBIDDEN");
    }

    // Roles inside A: agents and approvers may do nothing BYO; auditors may read the audit only.
    let agent = byo.key(&a, "agent");
    let approver = byo.key(&a, "approver");
    let auditor = byo.key(&a, "auditor");
    for k in [&agent, &approver] {
        assert_error(byo.api.get(&a.path("/byo/grant"), Some(k)), 403, "FORBIDDEN");
        assert_error(byo.api.get(&a.path("/byo/audit"), Some(k)), 403, "FORBIDDEN");
    }
    let (s, audit) = byo.api.get(&a.path("/byo/audit"), Some(&auditor));
    assert_eq!(s, 200, "{audit}");
    assert!(!audit["entries"].as_array().expect("entries").is_empty());
    assert_error(byo.api.get(&b.path("/byo/audit"), Some(&auditor)), 403, "FORBIDDEN");
    assert_error(byo.api.get(&a.path("/byo/grant"), Some(&auditor)), 403, "FORBIDDEN");
    assert_error(byo.api.delete(&a.path("/byo/grant"), Some(&auditor)), 403, "FORBIDDEN");
    assert_error(byo.api.get(&a.path("/byo/grant"), None), 401, "UNAUTHENTICATED");

    // The operator may act on any workspace.
    let (s, g) = byo.api.get(&a.path("/byo/grant"), Some(&byo.operator));
    assert_eq!(s, 200, "{g}");

    // Nothing of A changed.
    let (_, art) = byo.api.get(&a.path(&format!("/artifacts/{aid}")), Some(&a.key));
    assert_eq!(art, art_a);
    let ids: HashSet<String> = byo
        .audit(&a, None, 50)
        .iter()
        .filter_map(|e| e["artifact_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids, HashSet::from([aid]));
}
