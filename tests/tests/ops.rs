//! Operations endpoints, the OpenAPI document against docs/API.md, routing errors, and
//! the attestation endpoint's commitment.

mod common;

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use common::*;
use sealgate_shared::commitment::{p256_thumbprint, Commitment};
use sealgate_tests::Deployment;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"));
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad sample line {line:?}"))
}

fn metrics(api: &sealgate_tests::Api) -> String {
    let (s, text) = api.get_text("/metrics", None);
    assert_eq!(s, 200, "{text}");
    text
}

#[test]
fn health_readiness_and_metrics() {
    let d = Deployment::start();
    let api = d.api();
    let (s, v) = api.get("/healthz", None);
    assert_eq!((s, v), (200, json!({ "status": "ok" })));
    let (s, v) = api.get("/readyz", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["mode"], "sim");
    assert_eq!(v["status"], "ready");

    let t = d.new_tenant();
    let before = metrics(&api);
    // Every sample line is `name[{labels}] value`, and every metric family has TYPE.
    for line in before.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let kind = rest.split_whitespace().nth(1).unwrap_or("");
            assert!(["counter", "gauge"].contains(&kind), "TYPE line {line:?}");
        } else if !line.starts_with("# HELP ") {
            let mut parts = line.split_whitespace();
            let name = parts.next().unwrap();
            assert!(name.starts_with("sealgate_"), "sample {line:?}");
            assert!(
                parts.next().and_then(|v| v.parse::<f64>().ok()).is_some(),
                "sample {line:?}"
            );
            assert!(parts.next().is_none(), "sample {line:?}");
        }
    }
    assert!(
        before.contains("# TYPE sealgate_tokens_issued_total counter"),
        "{before}"
    );
    assert!(before.contains("# TYPE sealgate_log_size gauge"), "{before}");
    let (issued0, size0) = (
        metric(&before, "sealgate_tokens_issued_total"),
        metric(&before, "sealgate_log_size"),
    );
    assert_eq!(
        size0,
        log_size(&api),
        "sealgate_log_size must equal the committed log size"
    );

    mint(&api, &t.agent_key);
    mint(&api, &t.agent_key);
    let after = metrics(&api);
    assert_eq!(
        metric(&after, "sealgate_tokens_issued_total"),
        issued0 + 2,
        "tokens counter"
    );
    assert_eq!(metric(&after, "sealgate_log_size"), size0 + 2, "log size gauge");
    assert_eq!(metric(&after, "sealgate_enclave_ready"), 1);
    assert_eq!(metric(&after, "sealgate_log_integrity_ok"), 1);

    // A refused mint does not count as issued.
    assert_error(
        api.post("/v1/tokens", Some(&t.agent_key), &json!({ "ttl_seconds": 1 })),
        400,
        "INVALID_TTL",
    );
    assert_eq!(metric(&metrics(&api), "sealgate_tokens_issued_total"), issued0 + 2);

    // Content type.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let resp = agent.get(format!("{}/metrics", d.url)).call().unwrap();
    let ct = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(ct.starts_with("text/plain"), "metrics content type {ct:?}");
}

/// `(METHOD, path)` for every route docs/API.md lists, query strings dropped.
fn documented_routes() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/API.md")).expect("docs/API.md");
    let mut out = Vec::new();
    for line in doc.lines() {
        for method in ["GET", "POST", "DELETE", "PUT", "PATCH"] {
            let pat = format!("`{method} /");
            let mut rest = line;
            while let Some(at) = rest.find(&pat) {
                let after = &rest[at + pat.len() - 1..];
                let end = after.find(['`', ' ', '?']).unwrap_or(after.len());
                out.push((method.to_string(), after[..end].to_string()));
                rest = &after[end..];
            }
        }
    }
    out
}

#[test]
fn openapi_covers_every_documented_route() {
    let d = Deployment::start();
    let api = d.api();
    let (s, text) = api.get_text("/v1/openapi.json", None);
    assert_eq!(s, 200);
    let spec: Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(spec["info"]["title"].is_string(), "info.title");
    let paths = spec["paths"].as_object().expect("paths");

    let routes = documented_routes();
    assert!(
        routes.len() >= 18,
        "parsed only {} routes from docs/API.md: {routes:?}",
        routes.len()
    );
    let mut missing = Vec::new();
    for (method, path) in &routes {
        let ok = paths.get(path).and_then(|p| p.get(method.to_lowercase())).is_some();
        if !ok {
            missing.push(format!("{method} {path}"));
        }
        // Every documented route is actually served (not the 404 fallback).
        let concrete = path
            .replace("{ws}", "ws_x")
            .replace("{id}", "key_x")
            .replace("{jti}", "abc");
        let (s, v) = match method.as_str() {
            "GET" => api.get(&concrete, None),
            "POST" => api.post(&concrete, None, &json!({})),
            "DELETE" => api.delete(&concrete, None),
            "PUT" => {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let mut r = agent
                    .put(format!("{}{concrete}", d.url))
                    .send_json(json!({}))
                    .expect("PUT");
                let text = r.body_mut().read_to_string().unwrap_or_default();
                (r.status().as_u16(), serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            _ => unreachable!(),
        };
        let not_routed = s == 404
            && v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("no such endpoint"));
        assert!(!not_routed, "{method} {path} is documented but not routed");
    }
    assert!(
        missing.is_empty(),
        "documented routes missing from openapi.json: {missing:?}"
    );
    // And nothing in the spec is undocumented.
    for (path, ops) in paths {
        for method in ops
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| ["get", "post", "delete", "put", "patch"].contains(&m.as_str()))
        {
            assert!(
                routes.iter().any(|(m, p)| p == path && m.eq_ignore_ascii_case(method)),
                "openapi.json has {method} {path}, which docs/API.md does not list"
            );
        }
    }
}

#[test]
fn routing_errors_are_json() {
    let d = Deployment::start();
    let api = d.api();
    assert_error(api.get("/nope", None), 404, "NOT_FOUND");
    assert_error(api.get("/v1/tokens/extra", None), 404, "NOT_FOUND");
    assert_error(api.post("/v2/tokens", None, &json!({})), 404, "NOT_FOUND");
    // Wrong method on a real route: a JSON 4xx error (not a plain-text axum rejection).
    for (s, v) in [
        api.get("/v1/tokens", None),
        api.delete("/healthz", None),
        api.post("/v1/audit/checkpoint", None, &json!({})),
        api.get("/v1/workspaces", None),
    ] {
        assert!((400..500).contains(&s) && s != 404, "wrong method gave {s}: {v}");
        assert_error_shape(&v);
    }
    // Malformed query parameters, on the public hashes and (with a key) the entries.
    let admin = d.admin_key();
    for (path, key) in [("/v1/audit/hashes", None), ("/v1/audit/entries", Some(admin.as_str()))] {
        let (s, v) = api.get(&format!("{path}?start=x&end=1"), key);
        assert_eq!(s, 400, "{path}: {v}");
        assert_error_shape(&v);
        assert_error(api.get(&format!("{path}?start=5&end=5"), key), 400, "INVALID_RANGE");
        assert_error(api.get(&format!("{path}?start=0&end=1001"), key), 400, "INVALID_RANGE");
    }
    // Proof sizes beyond the log are refused.
    let n = log_size(&api);
    assert_error(
        api.get(&format!("/v1/audit/proof/inclusion?index=0&size={}", n + 1), None),
        400,
        "INVALID_RANGE",
    );
    assert_error(
        api.get(&format!("/v1/audit/proof/inclusion?index={n}&size={n}"), None),
        400,
        "INVALID_RANGE",
    );
    assert_error(
        api.get(&format!("/v1/audit/proof/consistency?from=1&to={}", n + 1), None),
        400,
        "INVALID_RANGE",
    );
    assert_error(
        api.get("/v1/audit/proof/consistency?from=0&to=1", None),
        400,
        "INVALID_RANGE",
    );
}

#[test]
fn attestation_commits_to_what_is_served() {
    let d = Deployment::start();
    let api = d.api();
    let nonce: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
    let (s, v) = api.get(&format!("/v1/attestation?nonce={}", hex::encode(&nonce)), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["mode"], "sim");
    let doc = B64
        .decode(v["document"].as_str().expect("document"))
        .expect("document is base64");
    assert!(
        matches!(doc.first(), Some(0x84) | Some(0xd2)),
        "document is not a COSE_Sign1 (first byte {:02x?})",
        doc.first()
    );

    let commitment: Commitment = serde_json::from_value(v["commitment"].clone()).expect("commitment");
    // The field order the digest is defined over, checked against the JSON served.
    let served_keys: Vec<&str> = v["commitment"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = vec![
        "version",
        "mode",
        "issuer",
        "audiences",
        "ttl_min_seconds",
        "ttl_max_seconds",
        "log_origin",
        "jwk_thumbprints",
        "checkpoint_key",
        "witnesses",
        "witness_quorum",
    ];
    want.sort();
    let mut got = served_keys.clone();
    got.sort();
    assert_eq!(got, want, "commitment fields");
    let digest = commitment.digest();
    assert_eq!(
        v["user_data"],
        hex::encode(digest),
        "user_data must be SHA-256 of the commitment JSON"
    );
    let compact = format!(
        r#"{{"version":{},"mode":{},"issuer":{},"audiences":{},"ttl_min_seconds":{},"ttl_max_seconds":{},"log_origin":{},"jwk_thumbprints":{},"checkpoint_key":{},"witnesses":[],"witness_quorum":0}}"#,
        json!(commitment.version),
        json!(commitment.mode),
        json!(commitment.issuer),
        json!(commitment.audiences),
        commitment.ttl_min_seconds,
        commitment.ttl_max_seconds,
        json!(commitment.log_origin),
        json!(commitment.jwk_thumbprints),
        json!(commitment.checkpoint_key)
    );
    assert_eq!(
        hex::encode(Sha256::digest(compact.as_bytes())),
        hex::encode(digest),
        "digest over the documented field order"
    );
    // The signed document carries both the digest and our nonce.
    let has = |needle: &[u8]| doc.windows(needle.len()).any(|w| w == needle);
    assert!(has(&digest), "the document does not contain user_data");
    assert!(has(&nonce), "the document does not contain the nonce");

    // Each commitment field against what the host serves right now.
    assert_eq!(commitment.mode, "sim");
    assert_eq!(commitment.issuer, d.url);
    assert_eq!(commitment.audiences, vec!["sts.amazonaws.com".to_string()]);
    assert_eq!((commitment.ttl_min_seconds, commitment.ttl_max_seconds), (60, 3600));
    // This deployment names no witnesses, and the commitment says so.
    assert_eq!((commitment.witnesses.len(), commitment.witness_quorum), (0, 0));
    let (_, key_text) = api.get_text("/v1/audit/key", None);
    assert_eq!(
        commitment.checkpoint_key,
        key_text.trim(),
        "checkpoint_key vs /v1/audit/key"
    );
    let vk = verifier_key(&api);
    assert_eq!(commitment.log_origin, vk.name, "log_origin is the checkpoint key name");
    let (_, cp) = checkpoint(&api, &vk);
    assert_eq!(commitment.log_origin, cp.origin);
    let (_, jwks) = api.get("/.well-known/jwks.json", None);
    let mut thumbs = Vec::new();
    for k in jwks["keys"].as_array().unwrap() {
        let kid = k["kid"].as_str().unwrap();
        assert!(
            commitment.jwk_thumbprints.iter().any(|t| t == kid),
            "JWKS kid {kid} not in {:?}",
            commitment.jwk_thumbprints
        );
        let x = B64URL.decode(k["x"].as_str().unwrap()).unwrap();
        let y = B64URL.decode(k["y"].as_str().unwrap()).unwrap();
        thumbs.push(p256_thumbprint(&x, &y));
    }
    thumbs.sort();
    assert_eq!(
        commitment.jwk_thumbprints, thumbs,
        "jwk_thumbprints are the RFC 7638 thumbprints of the JWKS, sorted"
    );

    // Without a nonce it still works; two calls with different nonces differ.
    let (s, v2) = api.get("/v1/attestation", None);
    assert_eq!(s, 200, "{v2}");
    assert_eq!(v2["user_data"], v["user_data"], "the commitment is stable");
    assert_ne!(v2["document"], v["document"]);
    let max = "ab".repeat(64);
    let (s, v3) = api.get(&format!("/v1/attestation?nonce={max}"), None);
    assert_eq!(s, 200, "a 64-byte nonce is allowed: {v3}");
}

#[test]
fn bad_nonces_are_refused() {
    let d = Deployment::start();
    let api = d.api();
    for bad in ["zz", "abc", "0g", &"ab".repeat(65)] {
        assert_error(
            api.get(&format!("/v1/attestation?nonce={bad}"), None),
            400,
            "INVALID_NONCE",
        );
    }
}
