//! AWS grants, failure paths: every STS error the fault layer injects (in STS's real
//! wire shape) comes back as its typed `GRANT_STS_*` code with a message naming the
//! fix, is recorded as a `grant.sts.failed` leaf, and issues nothing; and the grant
//! checks made before STS is called (not active, not the owner, expiring, outside a
//! changed ceiling, another workspace).

mod common;
mod grants_support;

use common::*;
use grants_support::*;
use sealgate_tests::fault::{Fault, FaultLayer, Rule};
use serde_json::{json, Value};

struct Case {
    mode: &'static str,
    aws_status: u16,
    aws_code: &'static str,
    aws_message: &'static str,
    status: u16,
    code: &'static str,
    hint: &'static str,
    attempts: usize,
}

const CASES: &[Case] = &[
    Case {
        mode: "assume_role",
        aws_status: 403,
        aws_code: "AccessDenied",
        aws_message: "User: arn:aws:iam::123456789012:user/host is not authorized to perform: sts:AssumeRole",
        status: 403,
        code: "GRANT_STS_ACCESS_DENIED",
        hint: "trust policy must trust the host",
        attempts: 1,
    },
    Case {
        mode: "assume_role",
        aws_status: 400,
        aws_code: "ExpiredTokenException",
        aws_message: "The security token included in the request is expired",
        status: 403,
        code: "GRANT_STS_EXPIRED_TOKEN",
        hint: "refresh them",
        attempts: 1,
    },
    Case {
        mode: "assume_role",
        aws_status: 403,
        aws_code: "RegionDisabledException",
        aws_message: "STS is not activated in this region for account:123456789012.",
        status: 403,
        code: "GRANT_STS_REGION",
        hint: "sts_region",
        attempts: 1,
    },
    Case {
        mode: "assume_role",
        aws_status: 400,
        aws_code: "MalformedPolicyDocument",
        aws_message: "The policy is not in the valid JSON format.",
        status: 400,
        code: "GRANT_STS_POLICY",
        hint: "fewer or broader",
        attempts: 1,
    },
    Case {
        mode: "assume_role",
        aws_status: 400,
        aws_code: "ValidationError",
        aws_message: "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        status: 409,
        code: "GRANT_STS_VALIDATION",
        hint: "MaxSessionDuration",
        attempts: 1,
    },
    Case {
        mode: "assume_role",
        aws_status: 500,
        aws_code: "InternalFailure",
        aws_message: "injected",
        status: 502,
        code: "GRANT_STS_ERROR",
        hint: "STS failed",
        attempts: 4,
    },
    Case {
        mode: "web_identity",
        aws_status: 400,
        aws_code: "InvalidIdentityToken",
        aws_message: "No OpenIDConnect provider found in your account for the token's issuer.",
        status: 403,
        code: "GRANT_STS_INVALID_TOKEN",
        hint: "IAM OIDC provider",
        attempts: 1,
    },
    Case {
        mode: "web_identity",
        aws_status: 400,
        aws_code: "ExpiredTokenException",
        aws_message: "Token expired: current date/time 1 must be before the expiration date/time 0",
        status: 403,
        code: "GRANT_STS_EXPIRED_TOKEN",
        hint: "clock",
        attempts: 1,
    },
    Case {
        mode: "web_identity",
        aws_status: 403,
        aws_code: "AccessDenied",
        aws_message: "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        status: 403,
        code: "GRANT_STS_ACCESS_DENIED",
        // Issue 10, bug 7: every token carries session tags, so the trust policy needs
        // sts:TagSession, and the message says why.
        hint: "sts:TagSession (every sealgate token carries session tags in its https://aws.amazon.com/tags",
        attempts: 1,
    },
];

#[test]
fn each_sts_error_is_typed_logged_and_issues_nothing() {
    let e = Env::start();
    let role = e.role(&unique("err-role"));
    for (i, case) in CASES.iter().enumerate() {
        e.fault.clear();
        e.fault.clear_requests();
        e.set_ceiling(ACCOUNT, &open_ceiling(&role, case.mode));
        let action = if case.mode == "web_identity" {
            "AssumeRoleWithWebIdentity"
        } else {
            "AssumeRole"
        };
        e.fault.add(Rule::new("sts", Some(action)).fault(Fault::error(
            case.aws_status,
            case.aws_code,
            case.aws_message,
        )));
        let id = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
        let (s, v) = e.credentials(&id);
        assert_error((s, v.clone()), case.status, case.code);
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(case.hint),
            "{}: message {msg:?} lacks {:?}",
            case.aws_code,
            case.hint
        );
        assert!(msg.contains(case.aws_code), "the message quotes STS's code: {msg}");
        let calls = e.fault.requests_for("sts", action);
        assert_eq!(calls.len(), case.attempts, "{}: attempts {calls:?}", case.aws_code);

        let failed = e.leaves("grant.sts.failed");
        assert_eq!(failed.len(), i + 1, "one grant.sts.failed leaf per failure");
        let l = &failed[i].data;
        assert_eq!(l["grant_id"], id);
        assert_eq!(l["error_code"], case.aws_code);
        assert_eq!(l["operation"], action);
        assert!(l["aws_request_id"].as_str().is_some_and(|r| !r.is_empty()), "{l}");
    }
    assert!(e.leaves("grant.credentials.issued").is_empty(), "nothing was issued");
    let c = rusqlite::Connection::open_with_flags(e.d.db_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let issued: i64 = c
        .query_row("SELECT SUM(credentials_issued) FROM grants", [], |r| r.get(0))
        .unwrap();
    assert_eq!(issued, 0);
    // With the faults gone the same grant works: nothing was left half-done.
    e.fault.clear();
    e.set_ceiling(ACCOUNT, &open_ceiling(&role, "assume_role"));
    let id = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    assert_eq!(e.credentials(&id).0, 200);
}

#[test]
fn sts_region_comes_from_the_ceiling() {
    let e = Env::start();
    let role = e.role(&unique("region-role"));
    let mut c = open_ceiling(&role, "assume_role");
    c["sts_region"] = json!("eu-west-1");
    e.set_ceiling(ACCOUNT, &c);
    e.fault.add(
        Rule::new("sts", Some("AssumeRole"))
            .region("eu-west-1")
            .fault(Fault::error(
                403,
                "RegionDisabledException",
                "STS is not activated in this region",
            )),
    );
    let id = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    let (s, v) = e.credentials(&id);
    assert_error((s, v.clone()), 403, "GRANT_STS_REGION");
    assert!(v["error"]["message"].as_str().unwrap().contains("eu-west-1"), "{v}");
    let calls = e.fault.requests_for("sts", "AssumeRole");
    assert_eq!(calls[0].region.as_deref(), Some("eu-west-1"));
    // Moving the ceiling to a working region fixes it.
    c["sts_region"] = json!("us-east-1");
    e.set_ceiling(ACCOUNT, &c);
    assert_eq!(e.credentials(&id).0, 200);
}

/// Connections refused (issue 10, bug 5): the host cannot reach STS, which is the host's
/// configuration, not the grant's: 503 `AWS_UNREACHABLE`, whose message names the
/// endpoint setting and the local-emulator recipe, and carries no SDK dump.
#[test]
fn unreachable_sts_is_the_hosts_problem() {
    let mut e = Env::start();
    let role = e.role(&unique("down-role"));
    e.set_ceiling(ACCOUNT, &open_ceiling(&role, "assume_role"));
    let id = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    // Stop the only endpoint the host knows (connections to its port are refused).
    let old = std::mem::replace(&mut e.fault, FaultLayer::start(&e.moto.url));
    drop(old);
    let (s, v) = e.credentials(&id);
    assert_error((s, v.clone()), 503, "AWS_UNREACHABLE");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("AWS_ENDPOINT_URL") && msg.contains("docs/local-aws.md"),
        "{v}"
    );
    assert!(
        !msg.contains("DispatchFailure") && !msg.contains("ConnectorError"),
        "{v}"
    );
    let failed = e.leaves("grant.sts.failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].data["attempts"].as_array().map(Vec::len), Some(4));
    assert_eq!(failed[0].data["attempts"][0]["transport"], true);
}

#[test]
fn grant_checks_before_sts() {
    let e = Env::start();
    let role = e.role(&unique("checks-role"));
    let mut c = ceiling(
        &role,
        "assume_role",
        json!([
            { "decision": "route_to_approver", "actions": ["s3:PutObject"], "reason": "writes need a human" },
            { "decision": "auto_approve", "reason": "reads" }
        ]),
    );
    e.set_ceiling(ACCOUNT, &c);
    let write = str_of(&e.grant(&access("b", &["s3:PutObject"], 1800)), "grant_id").to_string();
    let (s, v) = e.credentials(&write);
    assert_error((s, v.clone()), 409, "GRANT_NOT_ACTIVE");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("pending"), "{v}");
    // The poll it suggests names this grant, not a literal `{id}` (issue 10, bug 6).
    assert!(
        msg.contains(&format!("/v1/aws/access/{write}?wait=30")) && !msg.contains("{id}"),
        "{msg}"
    );

    let active = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    // Another agent of the workspace can neither read the grant (404, as if it did not
    // exist: issue 9's matrix) nor use it.
    let (s, ag) = e.api.post(
        &format!("/v1/workspaces/{}/agents", e.t.workspace),
        Some(&e.operator),
        &json!({ "name": "peer" }),
    );
    assert_eq!(s, 201);
    let (_, k) = e.api.post(
        &format!("/v1/workspaces/{}/keys", e.t.workspace),
        Some(&e.operator),
        &json!({ "role": "agent", "agent_id": ag["id"] }),
    );
    let peer = k["key"].as_str().unwrap();
    assert_error(
        e.api.get(&format!("/v1/aws/access/{active}"), Some(peer)),
        404,
        "NOT_FOUND",
    );
    assert_error(
        e.api.get(&format!("/v1/aws/access/{active}/credentials"), Some(peer)),
        403,
        "GRANT_NOT_OWNER",
    );
    // Only the requesting agent fetches credentials: any other key that can see the
    // grant is told so (issue 10, bug 6: an admin or approver got FORBIDDEN, and "a
    // admin"); another workspace sees nothing.
    for (who, key) in [
        ("an admin", &e.admin),
        ("an approver", &e.approver),
        ("an operator", &e.operator),
    ] {
        let (s, v) = e.api.get(&format!("/v1/aws/access/{active}/credentials"), Some(key));
        assert_error((s, v.clone()), 403, "GRANT_NOT_OWNER");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(&format!("this is {who} key")), "{msg}");
    }
    let (s, v) = e.api.post("/v1/tokens", Some(&e.admin), &json!({}));
    assert_error((s, v.clone()), 403, "FORBIDDEN");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("not an admin key"),
        "{v}"
    );
    let (other, _, _) = e.other_tenant();
    assert_error(
        e.api
            .get(&format!("/v1/aws/access/{active}/credentials"), Some(&other.agent_key)),
        404,
        "NOT_FOUND",
    );
    assert_error(
        e.api.get(
            "/v1/aws/access/gr_000000000000000000000000/credentials",
            Some(&e.t.agent_key),
        ),
        404,
        "NOT_FOUND",
    );

    // A ceiling narrowed after the grant: the grant no longer gets credentials.
    c["actions"] = json!(["s3:List*"]);
    e.set_ceiling(ACCOUNT, &c);
    let (s, v) = e.credentials(&active);
    assert_error((s, v.clone()), 409, "GRANT_OUTSIDE_CEILING");
    assert!(v["error"]["message"].as_str().unwrap().contains("s3:GetObject"), "{v}");
    // A ceiling whose role changed, or one deleted: the same.
    let mut moved = open_ceiling(&e.role(&unique("elsewhere")), "assume_role");
    moved["actions"] = json!(["s3:*"]);
    e.set_ceiling(ACCOUNT, &moved);
    assert_error(e.credentials(&active), 409, "GRANT_OUTSIDE_CEILING");
    assert_eq!(e.api.delete(&e.ceiling_path(ACCOUNT), Some(&e.admin)).0, 200);
    assert_error(e.credentials(&active), 409, "GRANT_OUTSIDE_CEILING");
    e.set_ceiling(ACCOUNT, &open_ceiling(&role, "assume_role"));
    assert_eq!(e.credentials(&active).0, 200, "restored ceiling, usable again");

    // Less than STS's 900 s minimum left (time travel): STS is asked for its minimum
    // session, and the session policy's aws:CurrentTime bound ends it with the grant;
    // the reported expiration is the grant's end, not the session's.
    e.fault.clear_requests();
    e.db_exec(
        "UPDATE grants SET expires_at = CAST(strftime('%s','now') AS INTEGER) + 600 WHERE id = ?1",
        &[&active],
    );
    let grant_end: i64 = e.db_query_i64("SELECT expires_at FROM grants WHERE id = ?1", &[&active]);
    let (s, v) = e.credentials(&active);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["expires_at"].as_i64(), Some(grant_end), "{v}");
    let sent = e.fault.requests_for("sts", "AssumeRole");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].params.get("DurationSeconds").map(String::as_str), Some("900"));
    let policy: serde_json::Value = serde_json::from_str(&sent[0].params["Policy"]).unwrap();
    let bound = policy["Statement"][0]["Condition"]["DateLessThan"]["aws:CurrentTime"]
        .as_str()
        .unwrap()
        .to_string();
    let want = aws_sdk_sts::primitives::DateTime::from_secs(grant_end)
        .fmt(aws_sdk_sts::primitives::DateTimeFormat::DateTime)
        .unwrap();
    assert_eq!(bound, want, "the session policy ends with the grant");
}

/// Issue 10, bug 6: a malformed body on the access calls answers the documented
/// `GRANT_INVALID_REQUEST`, and on every endpoint a message in JSON's terms: never a
/// type of the implementation (`expected struct MintBody with 3 elements`) or a serde
/// internal. An array is not an object, even when it lists the fields in order.
#[test]
fn malformed_bodies_answer_documented_codes_in_json_terms() {
    let e = Env::start();
    let role = e.role(&unique("shape-role"));
    e.set_ceiling(ACCOUNT, &open_ceiling(&role, "web_identity"));
    let mut missing = access("b", &["s3:GetObject"], 1800);
    missing.as_object_mut().unwrap().remove("actions");
    for path in ["/v1/aws/access", "/v1/aws/access/preview"] {
        let (s, v) = e.api.post(path, Some(&e.t.agent_key), &missing);
        assert_error((s, v.clone()), 400, "GRANT_INVALID_REQUEST");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("missing field `actions`"),
            "{path}: {v}"
        );
    }
    let grant = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    let release = format!("/v1/aws/access/{grant}/release");
    let ceiling = e.ceiling_path(ACCOUNT);
    let mut bad_rules = open_ceiling(&role, "web_identity");
    bad_rules["rules"] = json!([{ "decision": 7, "reason": "r" }]);
    let mut bad_ttl = access("b", &["s3:GetObject"], 1800);
    bad_ttl["ttl_seconds"] = json!("1800");
    let agent = e.t.agent_key.as_str();
    let cases: Vec<(&str, &str, &str, Value, &str, &str)> = vec![
        (
            "POST",
            "/v1/tokens",
            agent,
            json!(["sts.amazonaws.com", 300, "t"]),
            "INVALID_REQUEST",
            "not an array",
        ),
        (
            "POST",
            "/v1/tokens",
            agent,
            json!({ "ttl_seconds": -5 }),
            "INVALID_REQUEST",
            "ttl_seconds: invalid value",
        ),
        (
            "POST",
            "/v1/aws/access",
            agent,
            json!([1, 2]),
            "GRANT_INVALID_REQUEST",
            "not an array",
        ),
        (
            "POST",
            "/v1/aws/access",
            agent,
            bad_ttl.clone(),
            "GRANT_INVALID_REQUEST",
            "ttl_seconds: invalid type",
        ),
        (
            "POST",
            "/v1/aws/access/preview",
            agent,
            bad_ttl,
            "GRANT_INVALID_REQUEST",
            "expected a non-negative integer",
        ),
        (
            "POST",
            &release,
            agent,
            json!({ "hard": "yes" }),
            "GRANT_INVALID_REQUEST",
            "hard: invalid type",
        ),
        (
            "POST",
            &release,
            agent,
            json!([true]),
            "GRANT_INVALID_REQUEST",
            "not an array",
        ),
        (
            "POST",
            "/v1/workspaces",
            &e.operator,
            json!(["name"]),
            "INVALID_REQUEST",
            "not an array",
        ),
        (
            "PUT",
            &ceiling,
            &e.admin,
            bad_rules,
            "GRANT_INVALID_CEILING",
            "rules[0].decision",
        ),
    ];
    for (method, path, key, body, code, hint) in cases {
        let (s, v) = match method {
            "PUT" => put(&e.api, path, Some(key), &body),
            _ => e.api.post(path, Some(key), &body),
        };
        assert_error((s, v.clone()), 400, code);
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(hint), "{path} {body}: {msg:?} lacks {hint:?}");
        for internal in [
            "Body",
            "struct",
            "Ceiling",
            "Rule",
            "enum",
            "u64",
            "i64",
            "sequence",
            "elements",
            "Failed to deserialize",
        ] {
            assert!(!msg.contains(internal), "{path} {body}: {msg:?} shows {internal:?}");
        }
    }
    // Nothing was released by the refused bodies.
    assert_eq!(e.get(&grant)["status"], "active");
}

/// Issue 10, bug 6, the operator rule (docs/API.md, "Agents"): grants are visible to
/// keys of their own workspace and to the operator key; a key of any other workspace
/// gets 404 as if the grant did not exist.
#[test]
fn the_operator_reads_every_grant_and_other_workspaces_read_none() {
    let e = Env::start();
    let role = e.role(&unique("op-role"));
    e.set_ceiling(ACCOUNT, &open_ceiling(&role, "web_identity"));
    let id = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    let (s, v) = e.api.get(&format!("/v1/aws/access/{id}"), Some(&e.operator));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["grant_id"], id.as_str());
    let (other, other_admin, other_approver) = e.other_tenant();
    for key in [&other_admin, &other_approver, &other.agent_key] {
        assert_error(e.api.get(&format!("/v1/aws/access/{id}"), Some(key)), 404, "NOT_FOUND");
    }
    // The same answer as for a grant that does not exist.
    let (_, unknown) = e
        .api
        .get("/v1/aws/access/gr_000000000000000000000000", Some(&other_admin));
    let (_, hidden) = e.api.get(&format!("/v1/aws/access/{id}"), Some(&other_admin));
    assert_eq!(
        unknown["error"]["message"]
            .as_str()
            .map(|m| m.replace("gr_000000000000000000000000", "X")),
        hidden["error"]["message"].as_str().map(|m| m.replace(&id, "X")),
    );
}

/// Issue 10, bug 6: a ceiling as `GET` returns it can be `PUT` back unchanged (200, the
/// same ceiling), and the read-only fields it carries are checked, not silently taken.
#[test]
fn a_ceiling_read_can_be_written_back() {
    let e = Env::start();
    let role = e.role(&unique("roundtrip-role"));
    let mut c = ceiling(
        &role,
        "assume_role",
        json!([{ "decision": "route_to_approver", "actions": ["s3:Put*"], "approvals_required": 2, "reason": "two" }]),
    );
    c["pending_timeout_seconds"] = json!(600);
    e.set_ceiling(ACCOUNT, &c);
    let path = e.ceiling_path(ACCOUNT);
    let (s, before) = e.api.get(&path, Some(&e.admin));
    assert_eq!(s, 200, "{before}");
    let (s, v) = put(&e.api, &path, Some(&e.admin), &before);
    assert_eq!(s, 200, "GET then PUT back: {v}");
    let (_, after) = e.api.get(&path, Some(&e.admin));
    let strip = |mut v: Value| {
        let o = v.as_object_mut().unwrap();
        o.remove("updated_at");
        o.remove("external_id_verified_at");
        v
    };
    assert_eq!(strip(after.clone()), strip(before.clone()));

    let mut wrong = before.clone();
    wrong["account_id"] = json!("210987654321");
    let (s, v) = put(&e.api, &path, Some(&e.admin), &wrong);
    assert_error((s, v.clone()), 400, "GRANT_INVALID_CEILING");
    assert!(
        v["error"]["message"].as_str().unwrap().starts_with("account_id:"),
        "{v}"
    );
    let mut wrong = before.clone();
    wrong["external_id"] = json!("sg-0000000000000000000000000000000000000000");
    let (s, v) = put(&e.api, &path, Some(&e.admin), &wrong);
    assert_error((s, v.clone()), 400, "GRANT_INVALID_CEILING");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(before["external_id"].as_str().unwrap()),
        "{v}"
    );
}
