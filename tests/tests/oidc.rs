//! The OIDC issuer seen from a relying party: discovery → JWKS → a real JWT library
//! (`jsonwebtoken`, ES256) validates the tokens `POST /v1/tokens` returns, and every
//! way of asking for a bad token is refused with the documented error.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use common::*;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use sealgate_shared::leaf::{self, TokenIssued};
use sealgate_tests::{Api, Deployment};
use serde_json::{json, Value};

const AUD: &str = "sts.amazonaws.com";

/// What a relying party does: discovery, then the JWKS it points at.
fn discover(d: &Deployment) -> (Value, Value) {
    let api = d.api();
    let (s, conf) = api.get("/.well-known/openid-configuration", None);
    assert_eq!(s, 200, "{conf}");
    assert_eq!(conf["issuer"], d.url, "issuer must be the deployment URL: {conf}");
    assert_eq!(
        conf["id_token_signing_alg_values_supported"],
        json!(["ES256"]),
        "{conf}"
    );
    let jwks_uri = conf["jwks_uri"].as_str().expect("jwks_uri").to_string();
    let path = jwks_uri
        .strip_prefix(&d.url)
        .unwrap_or_else(|| panic!("jwks_uri {jwks_uri} is not under the issuer {}", d.url));
    let (s, jwks) = api.get(path, None);
    assert_eq!(s, 200, "{jwks}");
    (conf, jwks)
}

fn key_for(jwks: &Value, kid: &str) -> DecodingKey {
    let k = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("no key {kid} in {jwks}"));
    assert_eq!(k["kty"], "EC");
    assert_eq!(k["crv"], "P-256");
    assert_eq!(k["alg"], "ES256");
    assert_eq!(k["use"], "sig");
    DecodingKey::from_ec_components(k["x"].as_str().expect("x"), k["y"].as_str().expect("y")).expect("EC key")
}

fn validation(issuer: &str, aud: &str) -> Validation {
    let mut v = Validation::new(Algorithm::ES256);
    v.set_issuer(&[issuer]);
    v.set_audience(&[aud]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = 0;
    v
}

/// Validates `token` the way AWS STS would; returns the claims.
fn validate(d: &Deployment, jwks: &Value, token: &str, aud: &str) -> Result<Value, jsonwebtoken::errors::Error> {
    let header = decode_header(token)?;
    assert_eq!(header.alg, Algorithm::ES256);
    let kid = header.kid.expect("token header has a kid");
    decode::<Value>(token, &key_for(jwks, &kid), &validation(&d.url, aud)).map(|t| t.claims)
}

#[test]
fn tokens_validate_with_a_real_jwt_library() {
    let d = Deployment::start();
    let t = d.new_tenant();
    let api = d.api();
    let (_, jwks) = discover(&d);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // Default request: default audience and TTL, agent subject.
    let m = mint(&api, &t.agent_key);
    let claims = validate(&d, &jwks, &m.token, AUD).expect("token validates");
    assert_eq!(claims["iss"], d.url);
    assert_eq!(claims["aud"], AUD);
    assert_eq!(claims["sub"], format!("ws:{}:agent:{}", t.workspace, t.agent));
    assert_eq!(claims["jti"], m.jti.as_str());
    let (iat, exp) = (claims["iat"].as_u64().unwrap(), claims["exp"].as_u64().unwrap());
    assert_eq!(exp - iat, 300, "default TTL");
    assert_eq!(m.expires_at, exp, "expires_at must be the token's exp");
    assert!(iat.abs_diff(now) <= 30, "iat {iat} is far from now {now}");

    // The same token must not validate for another audience or issuer.
    let key = key_for(&jwks, &decode_header(&m.token).unwrap().kid.unwrap());
    assert!(
        decode::<Value>(&m.token, &key, &validation(&d.url, "other.example.com")).is_err(),
        "wrong audience accepted"
    );
    assert!(
        decode::<Value>(&m.token, &key, &validation("https://evil.example.com", AUD)).is_err(),
        "wrong issuer accepted"
    );

    // A task-scoped token and the TTL bounds.
    for ttl in [60u64, 3600] {
        let m = mint_with(
            &api,
            &t.agent_key,
            &json!({ "ttl_seconds": ttl, "task_id": "build-42.x_y", "audience": AUD }),
        );
        let c = validate(&d, &jwks, &m.token, AUD).expect("token validates");
        assert_eq!(
            c["sub"],
            format!("ws:{}:agent:{}:task:build-42.x_y", t.workspace, t.agent)
        );
        assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), ttl);
    }
}

#[test]
fn token_is_logged_with_its_hash() {
    let d = Deployment::start();
    let t = d.new_tenant();
    let api = d.api();
    let m = mint_with(&api, &t.agent_key, &json!({ "task_id": "t1" }));
    let (index, bytes) = token_record(&api, &m.jti);
    assert_eq!(index, m.log_index, "lookup index differs from log_index");
    let l = leaf::parse(&bytes).expect("leaf parses");
    assert_eq!(l.index, index);
    assert_eq!(l.kind, "token.issued");
    assert_eq!(l.origin, leaf::Origin::Enclave);
    let data: TokenIssued = serde_json::from_value(l.data).expect("token.issued data");
    let claims = jwt_claims(&m.token);
    assert_eq!(data.jti, m.jti);
    assert_eq!(data.token_sha256, sha256_hex(m.token.as_bytes()));
    assert_eq!(data.sub, claims["sub"].as_str().unwrap());
    assert_eq!(data.aud, claims["aud"].as_str().unwrap());
    assert_eq!(data.iat, claims["iat"].as_u64().unwrap());
    assert_eq!(data.exp, claims["exp"].as_u64().unwrap());
    assert_eq!(data.caller, t.agent_key_id, "caller must be the agent key id");
    // The log entry at that index is the same leaf.
    assert_eq!(entries(&api, index, index + 1), vec![bytes]);
    // Distinct tokens get distinct jtis and indices.
    let m2 = mint(&api, &t.agent_key);
    assert_ne!(m2.jti, m.jti);
    assert!(m2.log_index > m.log_index);
    // Unknown jti → 404 JSON error; a malformed one → 400 (with the token, a key, or
    // none: input is checked first).
    assert_error(
        api.get("/v1/audit/tokens/doesnotexist0", Some(&m.token)),
        404,
        "NOT_FOUND",
    );
    assert_error(
        api.get("/v1/audit/tokens/doesnotexist0", Some(&d.admin_key())),
        404,
        "NOT_FOUND",
    );
    assert_error(api.get("/v1/audit/tokens/bad-jti!", None), 400, "INVALID_JTI");
}

#[test]
fn tampered_tokens_fail_validation() {
    let d = Deployment::start();
    let t = d.new_tenant();
    let api = d.api();
    let (_, jwks) = discover(&d);
    let m = mint(&api, &t.agent_key);
    validate(&d, &jwks, &m.token, AUD).expect("the untouched token validates");
    let parts: Vec<&str> = m.token.split('.').collect();
    assert_eq!(parts.len(), 3);

    // One flipped bit in the signature.
    let mut sig = B64URL.decode(parts[2]).unwrap();
    assert_eq!(sig.len(), 64, "ES256 JWS signatures are r||s, 64 bytes");
    sig[10] ^= 0x01;
    let bad_sig = format!("{}.{}.{}", parts[0], parts[1], B64URL.encode(&sig));
    assert!(
        validate(&d, &jwks, &bad_sig, AUD).is_err(),
        "flipped signature accepted"
    );

    // A payload change (another agent as subject), signature kept.
    let mut claims = jwt_claims(&m.token);
    claims["sub"] = json!(format!("ws:{}:agent:ag_0000000000000000", t.workspace));
    let bad_payload = format!(
        "{}.{}.{}",
        parts[0],
        B64URL.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    assert!(
        validate(&d, &jwks, &bad_payload, AUD).is_err(),
        "modified payload accepted"
    );

    // A longer lifetime, signature kept.
    let mut claims = jwt_claims(&m.token);
    claims["exp"] = json!(claims["exp"].as_u64().unwrap() + 86_400);
    let bad_exp = format!(
        "{}.{}.{}",
        parts[0],
        B64URL.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    assert!(validate(&d, &jwks, &bad_exp, AUD).is_err(), "extended exp accepted");

    // alg=none with the signature stripped.
    let none_header = B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let none = format!("{none_header}.{}.", parts[1]);
    let key = key_for(&jwks, &decode_header(&m.token).unwrap().kid.unwrap());
    assert!(
        decode::<Value>(&none, &key, &validation(&d.url, AUD)).is_err(),
        "alg=none accepted"
    );
}

#[test]
fn discovery_and_jwks() {
    let d = Deployment::start();
    let api = d.api();
    let (conf, jwks) = discover(&d);
    assert_eq!(conf["jwks_uri"], format!("{}/.well-known/jwks.json", d.url));
    let keys = jwks["keys"].as_array().expect("keys");
    assert!(!keys.is_empty(), "empty JWKS");
    for k in keys {
        assert!(k.get("d").is_none(), "private key material in the JWKS: {k}");
        let x = B64URL.decode(k["x"].as_str().unwrap()).unwrap();
        let y = B64URL.decode(k["y"].as_str().unwrap()).unwrap();
        assert_eq!((x.len(), y.len()), (32, 32), "P-256 coordinates are 32 bytes");
    }
    // Cache-Control, which needs the raw response.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let resp = agent
        .get(format!("{}/.well-known/jwks.json", d.url))
        .call()
        .expect("jwks");
    assert_eq!(resp.status().as_u16(), 200);
    let cc = resp
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(cc.as_deref(), Some("public, max-age=300"), "JWKS Cache-Control");
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(ct.starts_with("application/json"), "JWKS content type {ct:?}");
    // Discovery is stable across calls.
    assert_eq!(api.get("/.well-known/openid-configuration", None).1, conf);
}

#[test]
fn bad_mint_requests_are_refused() {
    let d = Deployment::start();
    let t = d.new_tenant();
    let api = d.api();
    let key = Some(t.agent_key.as_str());
    let before = log_size(&api);

    assert_error(
        api.post("/v1/tokens", key, &json!({ "ttl_seconds": 59 })),
        400,
        "INVALID_TTL",
    );
    assert_error(
        api.post("/v1/tokens", key, &json!({ "ttl_seconds": 3601 })),
        400,
        "INVALID_TTL",
    );
    assert_error(
        api.post("/v1/tokens", key, &json!({ "ttl_seconds": 0 })),
        400,
        "INVALID_TTL",
    );
    assert_error(
        api.post("/v1/tokens", key, &json!({ "audience": "evil.example.com" })),
        400,
        "INVALID_AUDIENCE",
    );
    assert_error(
        api.post("/v1/tokens", key, &json!({ "audience": "" })),
        400,
        "INVALID_AUDIENCE",
    );
    for bad in ["a:b", "", "-x", "x y", &"a".repeat(65), "ä"] {
        assert_error(
            api.post("/v1/tokens", key, &json!({ "task_id": bad })),
            400,
            "INVALID_TASK_ID",
        );
    }
    // Wrong types and unknown fields.
    assert_error(
        api.post("/v1/tokens", key, &json!({ "ttl_seconds": "300" })),
        400,
        "INVALID_REQUEST",
    );
    assert_error(
        api.post("/v1/tokens", key, &json!({ "ttl_seconds": -5 })),
        400,
        "INVALID_REQUEST",
    );
    assert_error(
        api.post("/v1/tokens", key, &json!({ "subject": "ws:x:agent:y" })),
        400,
        "INVALID_REQUEST",
    );
    assert_error(api.post("/v1/tokens", key, &json!([])), 400, "INVALID_REQUEST");
    // Malformed JSON, a wrong content type, and an over-limit body.
    assert_error(
        api.post_raw("/v1/tokens", key, "application/json", b"{\"ttl_seconds\": 300".to_vec()),
        400,
        "INVALID_REQUEST",
    );
    assert_error(
        api.post_raw("/v1/tokens", key, "text/plain", b"{}".to_vec()),
        400,
        "INVALID_REQUEST",
    );
    let big = format!("{{\"task_id\":\"{}\"}}", "a".repeat(64 * 1024 + 1));
    assert_error(
        api.post_raw("/v1/tokens", key, "application/json", big.into_bytes()),
        413,
        "BODY_TOO_LARGE",
    );

    // Nothing above reached the log, and a good request still works.
    assert_eq!(log_size(&api), before, "refused requests must not add log leaves");
    let m = mint_with(&api, &t.agent_key, &json!({ "ttl_seconds": 60 }));
    assert_eq!(m.log_index, before, "the next leaf follows directly");
}

#[test]
fn body_just_under_the_limit_is_not_too_large() {
    // 64 KiB exactly is within the limit: it is refused for its content (400), not 413.
    let d = Deployment::start();
    let t = d.new_tenant();
    let api = Api::new(&d.url);
    let prefix = "{\"task_id\":\"";
    let suffix = "\"}";
    let body = format!(
        "{prefix}{}{suffix}",
        "a".repeat(64 * 1024 - prefix.len() - suffix.len())
    );
    assert_eq!(body.len(), 64 * 1024);
    assert_error(
        api.post_raw("/v1/tokens", Some(&t.agent_key), "application/json", body.into_bytes()),
        400,
        "INVALID_TASK_ID",
    );
}

/// Issue 10, bug 7: every token `POST /v1/tokens` returns carries AWS session tags
/// (`https://aws.amazon.com/tags`), so a role trusting it needs `sts:TagSession`; the
/// API document says so where it describes the tokens.
#[test]
fn every_token_carries_session_tags_and_the_docs_say_so() {
    let d = Deployment::start();
    let t = d.new_tenant();
    let m = mint(&d.api(), &t.agent_key);
    let claims = jwt_claims(&m.token);
    let tags = &claims["https://aws.amazon.com/tags"];
    assert_eq!(
        tags["principal_tags"]["sealgate:workspace"],
        json!([t.workspace]),
        "{claims}"
    );
    assert_eq!(tags["principal_tags"]["sealgate:agent"], json!([t.agent]), "{claims}");
    assert!(
        tags["transitive_tag_keys"].as_array().is_some_and(|k| !k.is_empty()),
        "{claims}"
    );

    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/API.md")).expect("docs/API.md");
    let start = doc.find("## OIDC").expect("an OIDC section");
    let oidc = &doc[start..start + doc[start..].find("\n## Attestation").expect("the next section")];
    for needed in [
        "https://aws.amazon.com/tags",
        "sealgate:workspace",
        "sealgate:agent",
        "sts:TagSession",
    ] {
        assert!(
            oidc.contains(needed),
            "docs/API.md's OIDC section does not mention {needed}"
        );
    }
}
