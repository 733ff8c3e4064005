//! Token key rotation end to end: operator only, old tokens keep verifying through the
//! JWKS, new tokens carry the new kid, attestation commits to both keys, the rotation
//! is in the log, and the key set survives an enclave restart.

use base64::Engine;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use sealgate_tests::{verify, wait_until, Deployment};
use serde_json::{json, Value};
use std::time::Duration;

fn mint(d: &Deployment, key: &str) -> String {
    let (s, v) = d.api().post("/v1/tokens", Some(key), &json!({}));
    assert_eq!(s, 200, "{v}");
    v["token"].as_str().unwrap().to_string()
}

/// Validates `token` against the JWKS the deployment serves now.
fn validates(d: &Deployment, token: &str) -> bool {
    let (_, jwks) = d.api().get("/.well-known/jwks.json", None);
    let kid = decode_header(token).unwrap().kid.unwrap();
    let Some(k) = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
    else {
        return false;
    };
    let key = DecodingKey::from_ec_components(k["x"].as_str().unwrap(), k["y"].as_str().unwrap()).unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&["sts.amazonaws.com"]);
    v.set_issuer(&[d.url.as_str()]);
    decode::<Value>(token, &key, &v).is_ok()
}

fn kids(d: &Deployment) -> Vec<String> {
    let (_, jwks) = d.api().get("/.well-known/jwks.json", None);
    let mut k: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    k.sort();
    k
}

#[test]
fn rotation_end_to_end() {
    let mut d = Deployment::start();
    let t = d.new_tenant();
    let api = d.api();
    let admin = d.admin_key();
    let old_token = mint(&d, &t.agent_key);
    let old_kid = decode_header(&old_token).unwrap().kid.unwrap();
    assert_eq!(kids(&d), vec![old_kid.clone()]);

    // Only the operator may rotate.
    let (s, ws_admin) = api.post(
        &format!("/v1/workspaces/{}/keys", t.workspace),
        Some(&admin),
        &json!({ "role": "admin" }),
    );
    assert_eq!(s, 201);
    for key in [t.agent_key.as_str(), ws_admin["key"].as_str().unwrap()] {
        let (s, v) = api.post("/v1/admin/keys/rotate", Some(key), &json!({}));
        assert_eq!((s, v["error"]["code"].as_str()), (403, Some("FORBIDDEN")), "{v}");
    }
    assert_eq!(api.post("/v1/admin/keys/rotate", None, &json!({})).0, 401);
    assert_eq!(kids(&d), vec![old_kid.clone()], "refused rotations changed nothing");

    let (s, r) = api.post("/v1/admin/keys/rotate", Some(&admin), &json!({}));
    assert_eq!(s, 200, "{r}");
    let new_kid = r["kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, old_kid);
    let mut both = vec![old_kid.clone(), new_kid.clone()];
    both.sort();
    assert_eq!(kids(&d), both, "the JWKS serves old and new");

    // The old token still verifies; new ones carry the new kid and verify too.
    assert!(validates(&d, &old_token));
    let new_token = mint(&d, &t.agent_key);
    assert_eq!(
        decode_header(&new_token).unwrap().kid.as_deref(),
        Some(new_kid.as_str())
    );
    assert!(validates(&d, &new_token));

    // Attestation commits to both keys.
    let (_, att) = api.get("/v1/attestation", None);
    let mut thumbs: Vec<String> = att["commitment"]["jwk_thumbprints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    thumbs.sort();
    assert_eq!(thumbs, both);

    // The rotation is an enclave-written leaf naming the operator's key.
    let index = r["log_index"].as_u64().unwrap();
    // An operator-level leaf: its contents are the operator's to read.
    let (_, e) = api.get(
        &format!("/v1/audit/entries?start={index}&end={}", index + 1),
        Some(&admin),
    );
    let leaf: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(e["entries"][0]["leaf"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(leaf["kind"], "key.rotated");
    assert_eq!(leaf["origin"], "enclave");
    assert_eq!(leaf["data"]["new_kid"], new_kid.as_str());

    // The key set survives an enclave restart.
    d.kill9_enclave();
    d.start_enclave();
    wait_until("ready after the enclave restart", Duration::from_secs(30), || {
        api.get("/readyz", None).0 == 200
    });
    assert_eq!(kids(&d), both);
    let after = mint(&d, &t.agent_key);
    assert_eq!(decode_header(&after).unwrap().kid.as_deref(), Some(new_kid.as_str()));
    let (code, out) = verify(&["log", "--url", &d.url, "--token", &old_token, "--token", &new_token]);
    assert_eq!(code, 0, "{out}");
}
