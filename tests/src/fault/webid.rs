//! The web-identity token check STS performs and moto skips: the token must be an ES256
//! JWT from a trusted issuer, signed by a key in the issuer's JWKS, for the trusted
//! audience, and not expired. Verified with a real JWT library (`jsonwebtoken`).

use super::proxy::HttpClient;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::time::Duration;

/// Why a token was refused: `(STS error code, message)`. Messages never contain the
/// token.
pub(super) type Refusal = (&'static str, String);

const INVALID: &str = "InvalidIdentityToken";

fn invalid(msg: &str) -> Refusal {
    (INVALID, msg.to_string())
}

/// Checks `token` against the trusted `(issuer, audience)` pairs, with the clock
/// `clock_offset` seconds ahead.
pub(super) async fn check(
    client: &HttpClient,
    token: Option<&str>,
    trusted: &[(String, String)],
    clock_offset: i64,
) -> Result<(), Refusal> {
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("No web identity token was given."))?;
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| invalid("The web identity token is not a valid JWT."))?;
    if header.alg != Algorithm::ES256 {
        return Err(invalid("The web identity token's signing algorithm is not supported."));
    }
    let claims = unverified_claims(token).ok_or_else(|| invalid("The web identity token is not a valid JWT."))?;
    let iss = claims["iss"].as_str().unwrap_or("");
    let Some((issuer, audience)) = trusted.iter().find(|(i, _)| i == iss) else {
        return Err(invalid(
            "No OpenIDConnect provider found in your account for the token's issuer.",
        ));
    };

    let jwks = fetch_jwks(client, issuer).await.map_err(|e| {
        (
            "IDPCommunicationError",
            format!("Couldn't retrieve verification key from your identity provider: {e}"),
        )
    })?;
    let keys: Vec<DecodingKey> = jwks["keys"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&[])
        .iter()
        .filter(|k| k["kty"] == "EC" && k["crv"] == "P-256")
        .filter(|k| {
            header
                .kid
                .as_ref()
                .is_none_or(|kid| k["kid"].as_str() == Some(kid.as_str()))
        })
        .filter_map(|k| DecodingKey::from_ec_components(k["x"].as_str()?, k["y"].as_str()?).ok())
        .collect();
    // Signature only here; the claims are checked below against the offset clock.
    let mut v = Validation::new(Algorithm::ES256);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    if !keys.iter().any(|k| jsonwebtoken::decode::<Value>(token, k, &v).is_ok()) {
        return Err(invalid(
            "The signature of the web identity token could not be verified.",
        ));
    }

    let aud_ok = match &claims["aud"] {
        Value::String(a) => a == audience,
        Value::Array(list) => list.iter().any(|a| a.as_str() == Some(audience.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err(invalid("Incorrect token audience."));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
        .saturating_add(clock_offset);
    match claims["exp"].as_i64() {
        Some(exp) if exp > now => {}
        // Real STS answers `ExpiredTokenException` here; the layer keeps to one code for
        // every refused token (tests inject `ExpiredTokenException` with a rule).
        Some(_) => {
            return Err(invalid(
                "Token expired: current date/time must be before the expiration date/time.",
            ))
        }
        None => return Err(invalid("The web identity token has no expiry.")),
    }
    if claims["nbf"].as_i64().is_some_and(|nbf| nbf > now) {
        return Err(invalid("The web identity token is not valid yet."));
    }
    Ok(())
}

/// The payload of a compact JWS, not yet verified.
pub(super) fn unverified_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = B64URL.decode(payload).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        v @ Value::Object(_) => Some(v),
        _ => None,
    }
}

async fn fetch_jwks(client: &HttpClient, issuer: &str) -> Result<Value, String> {
    let url = format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/'));
    let uri: hyper::Uri = url.parse().map_err(|_| "bad issuer URL".to_string())?;
    let req = Request::get(uri)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let limit = Duration::from_secs(10);
    let resp = tokio::time::timeout(limit, client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("JWKS answered HTTP {}", resp.status()));
    }
    let body = tokio::time::timeout(limit, resp.into_body().collect())
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|_| "the JWKS is not JSON".to_string())
}
