//! Which AWS service and operation a request is, from what is on the wire: the SigV4
//! credential scope (`…/<region>/<service>/aws4_request`), the query protocol's
//! `Action`, KMS's `X-Amz-Target`, and S3's method, path and query.

use super::Seen;
use hyper::http::request::Parts;
use std::collections::BTreeMap;

/// STS operations callers send unsigned.
const UNSIGNED_STS: &[&str] = &["AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"];

/// Builds the record of a request (status not yet known).
pub(super) fn classify(parts: &Parts, body: &[u8]) -> Seen {
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let query_params = parse_form(query.as_bytes());
    let mut headers = BTreeMap::new();
    for (k, v) in &parts.headers {
        headers.insert(
            k.as_str().to_string(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        );
    }
    let content_type = headers.get("content-type").map(String::as_str).unwrap_or("");
    let form = if content_type.starts_with("application/x-www-form-urlencoded") {
        parse_form(body)
    } else {
        BTreeMap::new()
    };
    let target = headers.get("x-amz-target").cloned();

    let scope = headers
        .get("authorization")
        .and_then(|a| scope_of(a, "Credential="))
        .or_else(|| query_params.get("X-Amz-Credential").and_then(|c| scope_parts(c)));
    let (region, service) = match scope {
        Some((region, service)) => (Some(region), service),
        None => (None, unsigned_service(&path, &form, &query_params, target.as_deref())),
    };

    let (action, params) = match service.as_str() {
        "kms" => (
            target
                .as_deref()
                .and_then(|t| t.rsplit('.').next())
                .unwrap_or("")
                .to_string(),
            json_fields(body),
        ),
        "s3" => (s3_action(&method, &path, &query_params, &headers), query_params),
        "moto-api" => (path.clone(), query_params),
        _ => {
            let mut params = query_params;
            params.extend(form);
            (params.get("Action").cloned().unwrap_or_default(), params)
        }
    };
    Seen {
        service,
        action,
        region,
        method,
        path,
        query,
        params,
        headers,
        ..Seen::default()
    }
}

/// `(region, service)` from a SigV4 `Authorization` header.
fn scope_of(auth: &str, marker: &str) -> Option<(String, String)> {
    let rest = auth.split_once(marker)?.1;
    let cred = rest.split([',', ' ']).next()?;
    scope_parts(cred)
}

/// `(region, service)` from `AKID/date/region/service/aws4_request`.
fn scope_parts(cred: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = cred.split('/').collect();
    let n = parts.len();
    if n < 5 || parts[n - 1] != "aws4_request" || parts[n - 3].is_empty() || parts[n - 2].is_empty() {
        return None;
    }
    Some((parts[n - 3].to_string(), parts[n - 2].to_ascii_lowercase()))
}

/// The service of an unsigned request. Anonymous REST calls are taken as S3, the only
/// REST-style service the tests use.
fn unsigned_service(
    path: &str,
    form: &BTreeMap<String, String>,
    query: &BTreeMap<String, String>,
    target: Option<&str>,
) -> String {
    if path.starts_with("/moto-api") {
        return "moto-api".into();
    }
    if target.is_some_and(|t| t.starts_with("TrentService.")) {
        return "kms".into();
    }
    let version = form.get("Version").or_else(|| query.get("Version"));
    match version.map(String::as_str) {
        Some("2011-06-15") => return "sts".into(),
        Some("2010-05-08") => return "iam".into(),
        _ => {}
    }
    let action = form.get("Action").or_else(|| query.get("Action"));
    match action {
        Some(a) if UNSIGNED_STS.contains(&a.as_str()) => "sts".into(),
        Some(_) => "unknown".into(),
        None if target.is_some() => "unknown".into(),
        None => "s3".into(),
    }
}

/// Query parameters that select or shape a plain bucket/object operation rather than
/// naming a sub-resource (`?tagging`, `?acl`, `?uploads`…).
fn is_plain_param(k: &str) -> bool {
    matches!(
        k,
        "x-id"
            | "versionId"
            | "partNumber"
            | "list-type"
            | "prefix"
            | "delimiter"
            | "continuation-token"
            | "max-keys"
            | "start-after"
            | "encoding-type"
            | "fetch-owner"
            | "marker"
    ) || k.starts_with("response-")
        || k.starts_with("X-Amz-")
}

/// The S3 operation of a path-style request.
fn s3_action(method: &str, path: &str, q: &BTreeMap<String, String>, headers: &BTreeMap<String, String>) -> String {
    let trimmed = path.trim_start_matches('/');
    let (bucket, key) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let plain = q.keys().all(|k| is_plain_param(k));
    let named = match (method, bucket.is_empty(), key.is_empty()) {
        ("GET", true, _) => Some("ListBuckets"),
        (_, false, true) if q.contains_key("location") && method == "GET" => Some("GetBucketLocation"),
        ("GET", false, true) if plain && q.get("list-type").map(String::as_str) == Some("2") => Some("ListObjectsV2"),
        ("GET", false, true) if plain => Some("ListObjects"),
        ("HEAD", false, true) if plain => Some("HeadBucket"),
        ("PUT", false, true) if plain => Some("CreateBucket"),
        ("DELETE", false, true) if plain => Some("DeleteBucket"),
        ("HEAD", false, false) if plain => Some("HeadObject"),
        ("GET", false, false) if plain => Some("GetObject"),
        ("PUT", false, false) if plain && headers.contains_key("x-amz-copy-source") => Some("CopyObject"),
        ("PUT", false, false) if plain => Some("PutObject"),
        ("DELETE", false, false) if plain => Some("DeleteObject"),
        _ => None,
    };
    match named {
        Some(n) => n.to_string(),
        // The SDK names its operation in `x-id` for many of the rest.
        None => q.get("x-id").cloned().unwrap_or_else(|| method.to_string()),
    }
}

/// Top-level fields of a JSON object body (strings as-is, other values as JSON).
fn json_fields(body: &[u8]) -> BTreeMap<String, String> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => m
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Decodes `application/x-www-form-urlencoded` (also used for query strings). Invalid
/// escapes are kept literally; a repeated name keeps its last value.
pub(super) fn parse_form(s: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pair in s.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        out.insert(decode_component(k), decode_component(v));
    }
    out
}

pub(super) fn decode_component(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex_val(s[i + 1]), hex_val(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let f = parse_form(b"Action=AssumeRole&Tags.member.1.Key=a%20b&P=x+y&bad=%zz&end=%4");
        assert_eq!(f["Action"], "AssumeRole");
        assert_eq!(f["Tags.member.1.Key"], "a b");
        assert_eq!(f["P"], "x y");
        assert_eq!(f["bad"], "%zz");
        assert_eq!(f["end"], "%4");
    }

    #[test]
    fn s3_operations() {
        let h = BTreeMap::new();
        let a = |m: &str, path: &str, q: &str| s3_action(m, path, &parse_form(q.as_bytes()), &h);
        assert_eq!(a("HEAD", "/b", ""), "HeadBucket");
        assert_eq!(a("GET", "/b", "location"), "GetBucketLocation");
        assert_eq!(a("GET", "/b", "list-type=2&prefix=x"), "ListObjectsV2");
        assert_eq!(a("PUT", "/b", ""), "CreateBucket");
        assert_eq!(a("PUT", "/b/k/deep", "x-id=PutObject"), "PutObject");
        assert_eq!(a("GET", "/b/k", "x-id=GetObject&versionId=1"), "GetObject");
        assert_eq!(a("HEAD", "/b/k", ""), "HeadObject");
        assert_eq!(a("GET", "/b/k", "tagging&x-id=GetObjectTagging"), "GetObjectTagging");
        assert_eq!(a("PUT", "/b", "policy"), "PUT");
        assert_eq!(a("GET", "/", ""), "ListBuckets");
        let mut copy = BTreeMap::new();
        copy.insert("x-amz-copy-source".to_string(), "/a/b".to_string());
        assert_eq!(s3_action("PUT", "/b/k", &BTreeMap::new(), &copy), "CopyObject");
    }

    #[test]
    fn scope() {
        let a = "AWS4-HMAC-SHA256 Credential=AKID/20240101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=x";
        assert_eq!(scope_of(a, "Credential="), Some(("eu-west-1".into(), "s3".into())));
        assert_eq!(scope_of("Bearer x", "Credential="), None);
        assert_eq!(scope_of("Credential=a/b", "Credential="), None);
    }
}
