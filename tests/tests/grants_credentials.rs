//! AWS grants, the credential half: both credential modes end to end with the returned
//! credentials used by a real S3 client against moto; what the host sends to STS (moto
//! ignores session policies, tags and source identity, so the fault layer's record of
//! each request is what the tests check); and the federation path verified for real by
//! the fault layer (signature against our JWKS, iss, aud, exp).

mod common;
mod grants_support;

use aws_sdk_sts::error::ProvideErrorMetadata;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use common::*;
use grants_support::*;
use sealgate_tests::aws;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// An S3 client acting with credentials a grant returned.
fn s3_with(endpoint: &str, c: &Value) -> aws_sdk_s3::Client {
    let creds = aws_sdk_s3::config::Credentials::new(
        str_of(c, "access_key_id"),
        str_of(c, "secret_access_key"),
        Some(str_of(c, "session_token").to_string()),
        None,
        "sealgate-grant",
    );
    let conf = aws::block_on(aws::sdk_config_with(endpoint, str_of(c, "region"), creds));
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&conf).force_path_style(true).build())
}

/// Puts, lists and reads back an object with the grant's credentials.
fn use_on_s3(endpoint: &str, c: &Value, bucket: &str) {
    let s3 = s3_with(endpoint, c);
    let bucket = bucket.to_string();
    aws::block_on(async move {
        s3.put_object()
            .bucket(&bucket)
            .key("granted.txt")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"hello from a grant"))
            .send()
            .await
            .expect("PutObject with the grant's credentials");
        let listed = s3
            .list_objects_v2()
            .bucket(&bucket)
            .send()
            .await
            .expect("ListObjectsV2 with the grant's credentials");
        let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
        assert!(keys.contains(&"granted.txt"), "{keys:?}");
        let got = s3
            .get_object()
            .bucket(&bucket)
            .key("granted.txt")
            .send()
            .await
            .expect("GetObject with the grant's credentials");
        let body = got.body.collect().await.expect("object body").into_bytes();
        assert_eq!(&body[..], b"hello from a grant");
    });
}

/// `Tags.member.N.Key/Value` → map.
fn tags(params: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for n in 1..=50 {
        match (
            params.get(&format!("Tags.member.{n}.Key")),
            params.get(&format!("Tags.member.{n}.Value")),
        ) {
            (Some(k), Some(v)) => {
                out.insert(k.clone(), v.clone());
            }
            _ => break,
        }
    }
    out
}

/// Checks the session policy sent to STS is exactly the grant's request.
fn assert_policy(params: &BTreeMap<String, String>, g: &Value) {
    let policy: Value = serde_json::from_str(params.get("Policy").expect("a session Policy was sent")).unwrap();
    let st = &policy["Statement"][0];
    assert_eq!(st["Effect"], "Allow", "{policy}");
    assert_eq!(st["Action"], g["actions"], "{policy}");
    assert_eq!(st["Resource"], g["resources"], "{policy}");
    assert_eq!(
        st["Condition"]["StringEquals"]["aws:RequestedRegion"], g["regions"],
        "{policy}"
    );
    assert_eq!(policy["Statement"].as_array().map(Vec::len), Some(1), "{policy}");
}

fn secrets_absent(e: &Env, c: &Value) {
    let log = e.log_text();
    for field in ["secret_access_key", "session_token"] {
        let secret = str_of(c, field);
        assert!(!log.contains(secret), "the audit log contains the {field}");
        assert!(!e.host_log().contains(secret), "the host's log contains the {field}");
    }
}

#[test]
fn assume_role_end_to_end() {
    let e = Env::start();
    let bucket = unique("grants-ar");
    e.bucket(&bucket);
    let role = e.role(&unique("ar-role"));
    e.set_ceiling(ACCOUNT, &open_ceiling(&role, "assume_role"));
    let g = e.grant(&access(
        &bucket,
        &["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
        1800,
    ));
    assert_eq!(g["status"], "active", "{g}");
    let id = str_of(&g, "grant_id").to_string();

    let (s, c) = e.credentials(&id);
    assert_eq!(s, 200, "{c}\n{}", e.host_log());
    for f in ["access_key_id", "secret_access_key", "session_token", "expiration"] {
        assert!(!str_of(&c, f).is_empty(), "{f}");
    }
    assert_eq!(c["region"], "us-east-1");
    use_on_s3(&e.fault.url, &c, &bucket);

    // What the host sent to STS.
    let calls = e.fault.requests_for("sts", "AssumeRole");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let p = &calls[0].params;
    assert_eq!(p.get("RoleArn"), Some(&role));
    assert_eq!(p.get("RoleSessionName"), Some(&id), "RoleSessionName = grant id");
    assert_eq!(p.get("SourceIdentity"), Some(&e.t.agent), "SourceIdentity = agent");
    let duration: u64 = p.get("DurationSeconds").expect("DurationSeconds").parse().unwrap();
    assert!(
        (1790..=1800).contains(&duration),
        "DurationSeconds {duration} should be the grant's remaining life (1800 s)"
    );
    assert_eq!(
        calls[0].region.as_deref(),
        Some("us-east-1"),
        "STS client in the ceiling's sts_region"
    );
    assert_policy(p, &g);
    let t = tags(p);
    assert_eq!(t.get("sealgate:workspace"), Some(&e.t.workspace), "{t:?}");
    assert_eq!(t.get("sealgate:agent"), Some(&e.t.agent), "{t:?}");
    assert_eq!(t.get("sealgate:grant"), Some(&id), "{t:?}");

    // Logged: request id and key id, never the secret.
    let issued = e.leaves("grant.credentials.issued");
    assert_eq!(issued.len(), 1);
    let l = &issued[0].data;
    assert_eq!(l["grant_id"], id);
    assert_eq!(l["operation"], "AssumeRole");
    assert_eq!(l["access_key_id"], c["access_key_id"]);
    assert!(
        c["aws_request_id"].as_str().is_some_and(|r| !r.is_empty()),
        "STS's request id is returned and logged: {c}"
    );
    assert_eq!(l["aws_request_id"], c["aws_request_id"]);
    assert_eq!(issued[0].index, c["log_index"].as_u64().unwrap());
    assert_eq!(l["duration_seconds"].as_u64(), Some(duration));
    secrets_absent(&e, &c);

    // Each fetch is a fresh STS call and a fresh leaf.
    let (s, c2) = e.credentials(&id);
    assert_eq!(s, 200, "{c2}");
    assert_ne!(c2["access_key_id"], c["access_key_id"]);
    assert_eq!(e.fault.requests_for("sts", "AssumeRole").len(), 2);
    assert_eq!(e.leaves("grant.credentials.issued").len(), 2);

    // The ceiling's maximum bounds the session even for a longer grant.
    let mut short = open_ceiling(&role, "assume_role");
    short["max_ttl_seconds"] = json!(3600);
    e.set_ceiling(ACCOUNT, &short);
    let long = e.grant(&access(&bucket, &["s3:GetObject"], 3600));
    let lid = str_of(&long, "grant_id");
    e.fault.clear_requests();
    assert_eq!(e.credentials(lid).0, 200);
    let d: u64 = e.fault.requests_for("sts", "AssumeRole")[0].params["DurationSeconds"]
        .parse()
        .unwrap();
    assert!((3590..=3600).contains(&d), "{d}");
}

#[test]
fn web_identity_end_to_end_verified_by_the_fault_layer() {
    let e = Env::start();
    e.fault.trust_issuer(&e.d.url, STS_AUD);
    let bucket = unique("grants-wi");
    e.bucket(&bucket);
    let role = e.role(&unique("wi-role"));
    e.set_ceiling(ACCOUNT, &open_ceiling(&role, "web_identity"));
    let g = e.grant(&access(
        &bucket,
        &["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
        1200,
    ));
    let id = str_of(&g, "grant_id").to_string();
    let (s, c) = e.credentials(&id);
    assert_eq!(s, 200, "{c}\n{}", e.host_log());
    use_on_s3(&e.fault.url, &c, &bucket);

    let calls = e.fault.requests_for("sts", "AssumeRoleWithWebIdentity");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert!(call.forwarded && !call.faulted, "the token passed the check: {call:?}");
    assert_eq!(
        e.fault.requests_for("sts", "AssumeRole").len(),
        0,
        "no long-lived key used"
    );
    let p = &call.params;
    assert_eq!(p.get("RoleArn"), Some(&role));
    assert_eq!(p.get("RoleSessionName"), Some(&id));
    let duration: u64 = p["DurationSeconds"].parse().unwrap();
    assert!((1190..=1200).contains(&duration), "{duration}");
    assert_policy(p, &g);
    // AssumeRoleWithWebIdentity takes source identity and tags from the token's
    // claims, not parameters (documented); the host sends none.
    assert!(p.get("SourceIdentity").is_none() && tags(p).is_empty(), "{p:?}");
    let token = p.get("WebIdentityToken").expect("a token was sent");
    let claims = jwt_claims(token);
    assert_eq!(claims["iss"], e.d.url);
    assert_eq!(claims["aud"], STS_AUD);
    // The grant path's own subject namespace, and the grant as a session tag (issue 9,
    // hole 2): the role's trust policy matches only `ws:<ws>:grant:*`.
    assert_eq!(claims["sub"], format!("ws:{}:grant:{id}", e.t.workspace));
    let claim_tags = &claims["https://aws.amazon.com/tags"];
    assert_eq!(claim_tags["principal_tags"]["sealgate:grant"], json!([id]));
    assert_eq!(claim_tags["principal_tags"]["sealgate:agent"], json!([e.t.agent]));
    assert_eq!(
        claim_tags["principal_tags"]["sealgate:workspace"],
        json!([e.t.workspace])
    );

    // The token is in the log (an enclave leaf), linked from the issue leaf.
    let issued = e.leaves("grant.credentials.issued");
    assert_eq!(issued.len(), 1);
    let jti = issued[0].data["token"]["jti"].as_str().expect("token jti in the leaf");
    assert_eq!(claims["jti"], jti);
    let (_, token_leaf) = token_record(&e.api, jti);
    let tl = sealgate_shared::leaf::parse(&token_leaf).unwrap();
    assert_eq!(tl.data["token_sha256"], sha256_hex(token.as_bytes()));
    assert_eq!(issued[0].data["operation"], "AssumeRoleWithWebIdentity");
    assert_eq!(issued[0].data["access_key_id"], c["access_key_id"]);
    secrets_absent(&e, &c);
    assert!(
        !e.log_text().contains(token.as_str()),
        "the token itself is never logged"
    );

    // A host whose issuer AWS does not trust (only another one is): refused, typed.
    let e2 = Env::start();
    e2.fault.trust_issuer("https://issuer.other.example", STS_AUD);
    e2.set_ceiling(ACCOUNT, &open_ceiling(&role, "web_identity"));
    let g2 = e2.grant(&access(&bucket, &["s3:GetObject"], 1800));
    let (s, v) = e2.credentials(str_of(&g2, "grant_id"));
    assert_error((s, v.clone()), 403, "GRANT_STS_INVALID_TOKEN");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("OIDC provider") && msg.contains(&e2.d.url), "{msg}");
    let refused = e2.fault.requests_for("sts", "AssumeRoleWithWebIdentity");
    assert_eq!(refused.len(), 1, "an invalid token is not retried: {refused:?}");
    assert!(refused[0].faulted && !refused[0].forwarded, "{:?}", refused[0]);
    let failed = e2.leaves("grant.sts.failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].data["error_code"], "InvalidIdentityToken");
}

/// A token signed by another key, naming our issuer and our key id, is refused by the
/// federation check; a genuine token of ours is accepted (the control).
#[test]
fn federation_check_refuses_a_token_from_another_key() {
    let e = Env::start();
    e.fault.trust_issuer(&e.d.url, STS_AUD);
    // This test is about signatures, so the role trusts any subject of the provider
    // (the agent's own token would be refused by a grant role's trust policy).
    let role = e.lax_role(&unique("fed-role"));
    let (_, jwks) = e.api.get("/.well-known/jwks.json", None);
    let kid = jwks["keys"][0]["kid"].as_str().expect("kid").to_string();

    let genuine = mint_with(&e.api, &e.t.agent_key, &json!({ "audience": STS_AUD })).token;
    let header: Value = serde_json::from_slice(&B64URL.decode(genuine.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["kid"], kid);

    // Same claims, same kid, a different P-256 key.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .expect("generate a P-256 key");
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some(kid);
    let forged = jsonwebtoken::encode(
        &h,
        &jwt_claims(&genuine),
        &jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
    )
    .expect("sign the forged token");

    let url = e.fault.url.clone();
    // `Ok(got credentials)` or `Err(STS error code)`.
    let call = |token: String| -> Result<bool, String> {
        let (url, role) = (url.clone(), role.clone());
        aws::block_on(async move {
            aws::sts(&url, REGION)
                .await
                .assume_role_with_web_identity()
                .role_arn(role)
                .role_session_name("federation-check")
                .web_identity_token(token)
                .send()
                .await
                .map(|out| out.credentials().is_some())
                .map_err(|e| e.code().unwrap_or("no code").to_string())
        })
    };
    let err = call(forged).expect_err("a token from another key must be refused");
    assert_eq!(err, "InvalidIdentityToken");
    assert_eq!(call(genuine), Ok(true), "our own token is accepted");
}

#[test]
fn throttling_is_retried_then_succeeds() {
    use sealgate_tests::fault::{Fault, Rule};
    let e = Env::start();
    let role = e.role(&unique("throttle-role"));
    e.set_ceiling(ACCOUNT, &open_ceiling(&role, "assume_role"));
    let id = str_of(&e.grant(&access("any-bucket", &["s3:GetObject"], 1800)), "grant_id").to_string();
    e.fault.add(
        Rule::new("sts", Some("AssumeRole"))
            .times(2)
            .fault(Fault::error(400, "Throttling", "Rate exceeded")),
    );
    let (s, c) = e.credentials(&id);
    assert_eq!(s, 200, "{c}");
    let calls = e.fault.requests_for("sts", "AssumeRole");
    let faulted: Vec<bool> = calls.iter().map(|c| c.faulted).collect();
    assert_eq!(faulted, vec![true, true, false], "two throttled, then through");
    let l = &e.leaves("grant.credentials.issued")[0].data;
    let attempts = l["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{l}");
    assert_eq!(attempts[0]["error_code"], "Throttling");
    assert_eq!(attempts[2]["ok"], true);
    // Each failed attempt's request id (the fault layer's) is recorded.
    assert!(
        attempts[0]["aws_request_id"].as_str().is_some_and(|r| !r.is_empty()),
        "{l}"
    );

    // Throttling that does not stop: bounded attempts, then a typed 503.
    e.fault.clear_requests();
    e.fault
        .add(Rule::new("sts", Some("AssumeRole")).fault(Fault::error(400, "ThrottlingException", "Rate exceeded")));
    let (s, v) = e.credentials(&id);
    assert_error((s, v), 503, "GRANT_STS_THROTTLED");
    assert_eq!(
        e.fault.requests_for("sts", "AssumeRole").len(),
        4,
        "4 attempts, then give up"
    );
    let failed = e.leaves("grant.sts.failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].data["attempts"].as_array().map(Vec::len), Some(4));
}
