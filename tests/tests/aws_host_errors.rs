//! Issue 10, bug 5: a host that cannot talk to AWS at all — no credentials, or an
//! endpoint that refuses connections — answers one clear code on every path that calls
//! AWS (BYO register and policies, grant credentials, hard revoke, the ceiling's role
//! probe), 503 `AWS_CREDENTIALS_MISSING` / `AWS_UNREACHABLE`, whose message says what is
//! wrong on the host and points at the local-emulator recipe, with no SDK `Debug` dump
//! and no HTTP header text; and nothing is stored by the failed call.
//!
//! Everything is set up while AWS works (through the fault layer in front of moto);
//! then the same host is restarted on the same state, once without credentials
//! (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` blank, config and credential files
//! empty, IMDS off) and once with every endpoint on a closed port.

mod common;
mod grants_support;

use common::assert_error;
use grants_support::*;
use sealgate_tests::free_port;
use serde_json::{json, Value};

/// The host's environment with `overrides` replacing entries (the last value wins).
fn env_with(base: &[(String, String)], overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = base
        .iter()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
        .cloned()
        .collect();
    env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// The answer is the host's problem, said plainly.
#[track_caller]
fn assert_host_problem(what: &str, got: (u16, Value), code: &str) {
    let (s, v) = got;
    assert_error((s, v.clone()), 503, code);
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    for needed in ["docs/local-aws.md", "AWS_ENDPOINT_URL", "host"] {
        assert!(msg.contains(needed), "{what}: {msg:?} lacks {needed:?}");
    }
    // No SDK Debug output, no HTTP headers, no advice about the customer's side.
    for leaked in [
        "DispatchFailure",
        "ConnectorError",
        "CredentialsNotLoaded",
        "Some(",
        "source:",
        "HeaderMap",
        "headers",
        "content-type",
        "trust policy",
    ] {
        assert!(!msg.contains(leaked), "{what}: {msg:?} shows {leaked:?}");
    }
    assert!(
        msg.len() < 900,
        "{what}: a sentence, not a dump ({} bytes): {msg}",
        msg.len()
    );
}

#[test]
fn without_credentials_or_a_reachable_endpoint_every_aws_path_names_the_hosts_problem() {
    let mut e = Env::start();
    let base_env = e.d.options.host_env.clone();

    // While AWS works: an assume_role ceiling with a revoker, an active grant that has
    // fetched credentials, and a BYO grant in this workspace; a second BYO workspace.
    let role = e.role(&unique("host-role"));
    let revoker = e.revoker_in(ACCOUNT, &unique("host-revoker"));
    let mut c = open_ceiling(&role, "assume_role");
    c["revoker_role_arn"] = json!(revoker);
    e.set_ceiling(ACCOUNT, &c);
    let grant = str_of(&e.grant(&access("b", &["s3:GetObject"], 1800)), "grant_id").to_string();
    assert_eq!(e.credentials(&grant).0, 200, "{}", e.host_log());
    let (other, other_admin, _) = e.other_tenant();
    for ws in [&e.t.workspace, &other.workspace] {
        let (s, v) = put(
            &e.api,
            &format!("/v1/workspaces/{ws}/features"),
            Some(&e.operator),
            &json!({ "byo_storage": true }),
        );
        assert_eq!(s, 200, "{v}");
    }
    let bucket = unique("host-bucket");
    e.bucket(&bucket);
    let byo_body = |name: &str| json!({ "role_arn": format!("arn:aws:iam::{ACCOUNT}:role/{name}"), "bucket": bucket, "region": REGION });
    let (s, v) = e.api.post(
        &format!("/v1/workspaces/{}/byo/grant", e.t.workspace),
        Some(&e.admin),
        &byo_body(&unique("byo-reader")),
    );
    assert_eq!(s, 201, "{v}");
    let leaves_before = e.leaves("grant.role.probed").len();

    let closed = format!("http://127.0.0.1:{}", free_port());
    let phases: [(&str, Vec<(&str, &str)>); 2] = [
        (
            "AWS_CREDENTIALS_MISSING",
            vec![
                ("AWS_ACCESS_KEY_ID", ""),
                ("AWS_SECRET_ACCESS_KEY", ""),
                ("AWS_SESSION_TOKEN", ""),
                ("AWS_CONFIG_FILE", "/dev/null"),
                ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
        ),
        (
            "AWS_UNREACHABLE",
            vec![
                ("AWS_ENDPOINT_URL", closed.as_str()),
                ("AWS_ENDPOINT_URL_STS", closed.as_str()),
                ("AWS_ENDPOINT_URL_S3", closed.as_str()),
                ("AWS_ENDPOINT_URL_KMS", closed.as_str()),
                ("AWS_ENDPOINT_URL_IAM", closed.as_str()),
            ],
        ),
    ];
    for (code, overrides) in phases {
        e.d.stop_host();
        e.d.options.host_env = env_with(&base_env, &overrides);
        e.d.start_host();

        assert_host_problem(
            "BYO policies",
            e.api.get(
                &format!("/v1/workspaces/{}/byo/grant/policies", e.t.workspace),
                Some(&e.admin),
            ),
            code,
        );

        let other_byo = format!("/v1/workspaces/{}/byo/grant", other.workspace);
        assert_host_problem(
            "BYO register",
            e.api
                .post(&other_byo, Some(&other_admin), &byo_body(&unique("byo-other"))),
            code,
        );
        assert_error(e.api.get(&other_byo, Some(&other_admin)), 404, "BYO_GRANT_NOT_FOUND");

        assert_host_problem("grant credentials", e.credentials(&grant), code);

        assert_host_problem("hard revoke", e.release(&grant, &json!({ "hard": true })), code);
        let g = e.get(&grant);
        assert_eq!(g["status"], "active", "nothing changed: {g}");
        assert_eq!(g["hard_revoked"], false, "{g}");

        assert_host_problem(
            "ceiling probe",
            put(&e.api, &e.ceiling_path(ACCOUNT), Some(&e.admin), &c),
            code,
        );
        assert_eq!(
            e.leaves("grant.role.probed").len(),
            leaves_before,
            "a probe that never reached STS records nothing"
        );
        let (s, stored) = e.api.get(&e.ceiling_path(ACCOUNT), Some(&e.admin));
        assert_eq!(s, 200, "{stored}");
        assert!(
            stored["external_id_verified_at"].is_i64(),
            "the External ID stays verified: {stored}"
        );
    }

    // AWS back: everything works again, nothing was left half-done.
    e.d.stop_host();
    e.d.options.host_env = base_env;
    e.d.start_host();
    assert_eq!(e.credentials(&grant).0, 200);
}
