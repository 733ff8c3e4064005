//! Trust-policy evaluation for `AssumeRole` and `AssumeRoleWithWebIdentity`.
//!
//! Why this exists: moto accepts any role ARN and ignores trust policies, `ExternalId`
//! (except same-account with IAM auth on) and the token's `sub`/`aud`, so on moto alone
//! the two tenant holes of issue 9 cannot be shown closed: workspace A naming workspace
//! B's role (the confused deputy; stopped by `sts:ExternalId`) and an agent exchanging
//! its own `/v1/tokens` token for a grant role (stopped by a `sub` condition). Real STS
//! evaluates the role's trust policy; this module does the part of that evaluation the
//! tests depend on, against the trust policy stored in moto, so the tests exercise the
//! same documents a customer would apply:
//!
//! - the role is looked up with IAM `GetRole` in its own moto account
//!   (`x-moto-account-id` = the ARN's account); a role that does not exist is refused,
//!   as STS refuses it;
//! - an `Allow` statement must name the action (`sts:AssumeRole` /
//!   `sts:AssumeRoleWithWebIdentity`, or a wildcard) and a principal of the right kind
//!   (`AWS` for `AssumeRole`, `Federated` for web identity). The principal's *value* is
//!   not compared: every test request comes from the same dummy identity;
//! - its conditions must all hold. `StringEquals`, `StringLike` (`*`, `?`) and
//!   `StringNotEquals` are evaluated over `sts:ExternalId` (the request's `ExternalId`)
//!   and `<issuer-host>:sub` / `<issuer-host>:aud` (the token's claims, checked by
//!   [`super::webid`] first). A key with no value in the request fails its condition,
//!   as in IAM; an operator this module does not model fails the statement, so a test
//!   can never pass by a condition nobody evaluated;
//! - `Deny` statements are not evaluated (trust policies here have none).
//!
//! A refusal answers STS's real `AccessDenied` (403) and is not forwarded.

use super::classify::decode_component;
use super::proxy::HttpClient;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use serde_json::Value;
use std::time::Duration;

/// `(STS error code, message)` for a refused call.
pub(super) type Refusal = (&'static str, String);

/// What the request presents to the trust policy.
pub(super) struct Presented<'a> {
    /// `AssumeRole` or `AssumeRoleWithWebIdentity`.
    pub action: &'a str,
    pub role_arn: &'a str,
    pub external_id: Option<&'a str>,
    /// The verified token's claims (web identity only).
    pub claims: Option<&'a Value>,
}

fn denied(p: &Presented<'_>, why: &str) -> Refusal {
    let who = if p.action == "AssumeRole" {
        "User: arn:aws:iam::123456789012:user/moto"
    } else {
        "Not authorized"
    };
    (
        "AccessDenied",
        format!(
            "{who} is not authorized to perform: sts:{} on resource: {} ({why}; fault layer trust check)",
            p.action, p.role_arn
        ),
    )
}

/// Checks `p` against the role's trust policy in moto at `upstream`.
pub(super) async fn check(client: &HttpClient, upstream: &str, p: &Presented<'_>) -> Result<(), Refusal> {
    let parts: Vec<&str> = p.role_arn.splitn(6, ':').collect();
    let (account, name) = match parts.as_slice() {
        ["arn", _, "iam", "", account, resource] if resource.starts_with("role/") => {
            (*account, resource.rsplit('/').next().unwrap_or(""))
        }
        _ => return Err(denied(p, "not a role ARN")),
    };
    let doc = match get_trust_policy(client, upstream, account, name).await {
        Ok(Some(d)) => d,
        Ok(None) => return Err(denied(p, "the role does not exist")),
        Err(e) => return Err(("InternalFailure", format!("fault layer could not read the role: {e}"))),
    };
    if allows(&doc, p) {
        Ok(())
    } else {
        Err(denied(p, "no trust policy statement allows this request"))
    }
}

/// Whether some `Allow` statement of `doc` admits `p`.
pub(super) fn allows(doc: &Value, p: &Presented<'_>) -> bool {
    let statements: Vec<&Value> = match &doc["Statement"] {
        Value::Array(a) => a.iter().collect(),
        s @ Value::Object(_) => vec![s],
        _ => vec![],
    };
    statements.into_iter().any(|s| statement_allows(s, p))
}

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

fn statement_allows(s: &Value, p: &Presented<'_>) -> bool {
    if s["Effect"] != "Allow" {
        return false;
    }
    let wanted = format!("sts:{}", p.action);
    if !strings(&s["Action"])
        .iter()
        .any(|a| glob(&a.to_ascii_lowercase(), &wanted.to_ascii_lowercase()))
    {
        return false;
    }
    let kind = if p.action == "AssumeRole" { "AWS" } else { "Federated" };
    let principal_ok = match &s["Principal"] {
        Value::String(star) => star == "*" && kind == "AWS",
        Value::Object(m) => m.contains_key(kind),
        _ => false,
    };
    if !principal_ok {
        return false;
    }
    match &s["Condition"] {
        Value::Null => true,
        Value::Object(ops) => ops.iter().all(|(op, keys)| {
            let Value::Object(keys) = keys else { return false };
            keys.iter()
                .all(|(key, want)| condition_holds(op, key, &strings(want), p))
        }),
        _ => false,
    }
}

/// The request's value for a condition key, if it has one.
fn context_value(key: &str, p: &Presented<'_>) -> Option<String> {
    if key.eq_ignore_ascii_case("sts:ExternalId") {
        return p.external_id.map(str::to_string);
    }
    let claims = p.claims?;
    let iss = claims["iss"].as_str()?;
    let host = iss
        .strip_prefix("https://")
        .or_else(|| iss.strip_prefix("http://"))
        .unwrap_or(iss)
        .trim_end_matches('/');
    let claim = key.strip_prefix(host)?.strip_prefix(':')?;
    match claim {
        "sub" => claims["sub"].as_str().map(str::to_string),
        "aud" => match &claims["aud"] {
            Value::String(a) => Some(a.clone()),
            Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_string),
            _ => None,
        },
        _ => None,
    }
}

fn condition_holds(op: &str, key: &str, wanted: &[&str], p: &Presented<'_>) -> bool {
    let Some(have) = context_value(key, p) else {
        return false;
    };
    match op {
        "StringEquals" => wanted.iter().any(|w| *w == have),
        "StringNotEquals" => wanted.iter().all(|w| *w != have),
        "StringLike" => wanted.iter().any(|w| glob(w, &have)),
        _ => false,
    }
}

/// IAM's `StringLike`: `*` any run of characters, `?` one character.
pub(super) fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `GetRole` in moto account `account`: the decoded trust policy, or `None` when the
/// role does not exist.
async fn get_trust_policy(
    client: &HttpClient,
    upstream: &str,
    account: &str,
    name: &str,
) -> Result<Option<Value>, String> {
    let body = format!("Action=GetRole&Version=2010-05-08&RoleName={}", form_escape(name));
    let req = Request::post(format!("{upstream}/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-moto-account-id", account)
        // moto routes by the SigV4 scope and checks no signature while IAM auth is off.
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/iam/aws4_request, \
             SignedHeaders=host, Signature=00",
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let limit = Duration::from_secs(10);
    let resp = tokio::time::timeout(limit, client.request(req))
        .await
        .map_err(|_| "GetRole timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = tokio::time::timeout(limit, resp.into_body().collect())
        .await
        .map_err(|_| "GetRole body timed out".to_string())?
        .map_err(|e| e.to_string())?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    if status == 404 || text.contains("<Code>NoSuchEntity</Code>") {
        return Ok(None);
    }
    if status != 200 {
        return Err(format!("GetRole answered HTTP {status}"));
    }
    let doc = between(&text, "<AssumeRolePolicyDocument>", "</AssumeRolePolicyDocument>")
        .ok_or_else(|| "GetRole answer has no AssumeRolePolicyDocument".to_string())?;
    let json = xml_unescape(doc);
    let decoded = if json.trim_start().starts_with('{') {
        json
    } else {
        decode_component(json.as_bytes())
    };
    serde_json::from_str(&decoded)
        .map(Some)
        .map_err(|e| format!("trust policy is not JSON: {e}"))
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(&s[i..j])
}

fn xml_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn form_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn assume(external_id: Option<&str>) -> Presented<'_> {
        Presented {
            action: "AssumeRole",
            role_arn: "arn:aws:iam::111111111111:role/r",
            external_id,
            claims: None,
        }
    }

    #[test]
    fn external_id_conditions() {
        let enforcing = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {"sts:ExternalId": "sg-right"}}}]});
        assert!(allows(&enforcing, &assume(Some("sg-right"))));
        assert!(!allows(&enforcing, &assume(Some("sg-wrong"))));
        assert!(!allows(&enforcing, &assume(None)), "a missing key fails the condition");
        let lax = json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}});
        assert!(allows(&lax, &assume(Some("anything"))));
        let unknown_op = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:*",
            "Condition": {"ForAnyValue:StringEquals": {"sts:ExternalId": "x"}}}]});
        assert!(
            !allows(&unknown_op, &assume(Some("x"))),
            "unmodelled operators never pass"
        );
        let federated_only =
            json!({"Statement": [{"Effect": "Allow", "Principal": {"Federated": "p"}, "Action": "sts:*"}]});
        assert!(!allows(&federated_only, &assume(None)));
    }

    #[test]
    fn web_identity_sub_and_aud() {
        let doc = json!({"Statement": [{"Effect": "Allow",
            "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/127.0.0.1:9"},
            "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"],
            "Condition": {"StringEquals": {"127.0.0.1:9:aud": "sts.amazonaws.com"},
                          "StringLike": {"127.0.0.1:9:sub": "ws:w:grant:*"}}}]});
        let claims = |sub: &str| json!({"iss": "http://127.0.0.1:9", "sub": sub, "aud": "sts.amazonaws.com"});
        let ok = claims("ws:w:grant:gr_1");
        let agent = claims("ws:w:agent:a");
        let other_ws = claims("ws:v:grant:gr_1");
        let p = |c| Presented {
            action: "AssumeRoleWithWebIdentity",
            role_arn: "arn:aws:iam::1:role/r",
            external_id: None,
            claims: Some(c),
        };
        assert!(allows(&doc, &p(&ok)));
        assert!(!allows(&doc, &p(&agent)));
        assert!(!allows(&doc, &p(&other_ws)));
    }

    #[test]
    fn globs() {
        assert!(glob("ws:w:grant:*", "ws:w:grant:gr_1"));
        assert!(!glob("ws:w:grant:*", "ws:w:agent:a"));
        assert!(glob("a?c", "abc"));
        assert!(glob("*", ""));
        assert!(!glob("abc", "abcd"));
    }
}
