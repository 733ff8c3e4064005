//! Shared set-up for the AWS grant suites (`grants_*.rs`): a deployment whose AWS
//! clients go through a private fault layer in front of the process's moto server, a
//! tenant with admin, agent and approver keys, and helpers for ceilings, requests,
//! roles, the audit log and the host's database.
//!
//! moto is shared by every test of a file (one server per process) and never reset:
//! each test names its roles and buckets uniquely, and has its own fault layer so the
//! requests it inspects and the faults it injects are its own.
#![allow(dead_code)]

use sealgate_shared::leaf::{self, AnyLeaf};
use sealgate_tests::aws::{self, Moto};
use sealgate_tests::fault::FaultLayer;
use sealgate_tests::{Api, Deployment, Options, Tenant};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const ACCOUNT: &str = aws::ACCOUNT;
pub const REGION: &str = aws::REGION;
pub const STS_AUD: &str = "sts.amazonaws.com";

/// A name no other test in this process uses (roles, buckets).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// One test's world.
pub struct Env {
    pub moto: &'static Moto,
    pub fault: FaultLayer,
    pub d: Deployment,
    pub api: Api,
    pub operator: String,
    pub t: Tenant,
    pub admin: String,
    pub approver: String,
}

/// Extra host settings every grant suite uses: a fast sweeper and fast webhook retries.
pub fn fast_env() -> Vec<(String, String)> {
    vec![
        ("SEALGATE_GRANT_SWEEP_MS".into(), "200".into()),
        ("SEALGATE_WEBHOOK_BACKOFF_MS".into(), "100".into()),
    ]
}

impl Env {
    pub fn start() -> Env {
        let mut args = sealgate_tests::webhook_receiver::host_args();
        // These suites file grants back to back from one key and one address, faster
        // than the default per-key limit allows; tests/tests/limits.rs tests the limits.
        args.extend(["--rate-grant-per-key", "0", "--rate-grant-per-addr", "0"].map(String::from));
        Self::start_with_args(args)
    }

    /// The same, with these `sealgate serve` arguments instead of the default ones
    /// (which trust the test webhook CA and allow loopback webhook receivers).
    pub fn start_with_args(host_args: Vec<String>) -> Env {
        let moto = Moto::shared();
        let fault = FaultLayer::start(&moto.url);
        // STS's trust-policy evaluation, which moto skips (issue 9): every role the
        // host assumes must exist in moto and admit the call.
        fault.check_trust_policies();
        let mut host_env = Moto::host_env(&fault.url);
        host_env.extend(fast_env());
        // Webhook receivers in these suites are HTTPS on loopback (see webhook_receiver).
        let d = Deployment::start_with(Options {
            host_env,
            host_args,
            ..Default::default()
        });
        let api = d.api();
        let operator = d.admin_key();
        let t = d.new_tenant();
        let admin = key(&api, &operator, &t.workspace, "admin");
        let approver = key(&api, &operator, &t.workspace, "approver");
        Env {
            moto,
            fault,
            d,
            api,
            operator,
            t,
            admin,
            approver,
        }
    }

    /// A second tenant on the same deployment: `(tenant, admin key, approver key)`.
    pub fn other_tenant(&self) -> (Tenant, String, String) {
        let t = self.d.new_tenant();
        let admin = key(&self.api, &self.operator, &t.workspace, "admin");
        let approver = key(&self.api, &self.operator, &t.workspace, "approver");
        (t, admin, approver)
    }

    pub fn ceiling_path(&self, account: &str) -> String {
        format!("/v1/workspaces/{}/aws/accounts/{account}", self.t.workspace)
    }

    /// PUTs `body` as the ceiling for `account`, asserting success. Storing an
    /// `assume_role` ceiling probes its role (two `AssumeRole` calls, see
    /// `grants_trust.rs`); those requests are forgotten here so a test sees only what
    /// its grants send.
    #[track_caller]
    pub fn set_ceiling(&self, account: &str, body: &Value) -> Value {
        let (s, v) = put(&self.api, &self.ceiling_path(account), Some(&self.admin), body);
        assert!(s == 200 || s == 201, "PUT ceiling: {s} {v}\n{}", self.host_log());
        self.fault.clear_requests();
        v
    }

    pub fn preview(&self, body: &Value) -> (u16, Value) {
        self.api.post("/v1/aws/access/preview", Some(&self.t.agent_key), body)
    }

    pub fn request(&self, body: &Value) -> (u16, Value) {
        self.api.post("/v1/aws/access", Some(&self.t.agent_key), body)
    }

    /// Requests access, asserting 201; returns the grant.
    #[track_caller]
    pub fn grant(&self, body: &Value) -> Value {
        let (s, v) = self.request(body);
        assert_eq!(s, 201, "request: {v}");
        v
    }

    pub fn get(&self, id: &str) -> Value {
        let (s, v) = self.api.get(&format!("/v1/aws/access/{id}"), Some(&self.t.agent_key));
        assert_eq!(s, 200, "GET grant {id}: {v}");
        v
    }

    pub fn credentials(&self, id: &str) -> (u16, Value) {
        self.api
            .get(&format!("/v1/aws/access/{id}/credentials"), Some(&self.t.agent_key))
    }

    pub fn release(&self, id: &str, body: &Value) -> (u16, Value) {
        self.api
            .post(&format!("/v1/aws/access/{id}/release"), Some(&self.t.agent_key), body)
    }

    /// Every leaf of `kind` in the log so far.
    pub fn leaves(&self, kind: &str) -> Vec<AnyLeaf> {
        let size = crate::common::log_size(&self.api);
        crate::common::all_leaves(&self.api, size)
            .into_iter()
            .filter(|l| l.kind == kind)
            .collect()
    }

    /// The raw bytes of every leaf (for "no secret anywhere in the log" checks).
    pub fn log_text(&self) -> String {
        let size = crate::common::log_size(&self.api);
        crate::common::entries(&self.api, 0, size)
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs `sql` against the host's database. Used only to move a deadline into the
    /// past ("time travel"): grants live at least 900 s (STS's minimum), which a test
    /// cannot wait for; the sweeper then acts on the row exactly as it would later.
    pub fn db_exec(&self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> usize {
        let c = rusqlite::Connection::open(self.d.db_path()).expect("open the host's database");
        c.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
        c.execute(sql, params).expect("time-travel update")
    }

    /// Reads one integer from the host's database.
    pub fn db_query_i64(&self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> i64 {
        let c = rusqlite::Connection::open(self.d.db_path()).expect("open the host's database");
        c.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
        c.query_row(sql, params, |r| r.get(0)).expect("query")
    }

    /// `GET …/aws/accounts/{account}/policies` as this tenant's admin.
    #[track_caller]
    pub fn policies(&self, account: &str) -> Value {
        let (s, v) = self
            .api
            .get(&format!("{}/policies", self.ceiling_path(account)), Some(&self.admin));
        assert_eq!(s, 200, "GET policies: {v}");
        v
    }

    /// Creates a role in `ACCOUNT` whose trust policy is exactly what sealgate's
    /// policies endpoint tells this tenant to apply, for both credential modes (the
    /// External ID for `assume_role`, the grant subject namespace for `web_identity`).
    pub fn role(&self, name: &str) -> String {
        self.role_in(ACCOUNT, name, &self.trust_for(ACCOUNT))
    }

    /// Both of the tenant's trust statements for `account`, in one document.
    pub fn trust_for(&self, account: &str) -> Value {
        let p = self.policies(account);
        let mut statements = p["trust_policies"]["assume_role"]["Statement"]
            .as_array()
            .expect("assume_role trust statements")
            .clone();
        statements.extend(
            p["trust_policies"]["web_identity"]["Statement"]
                .as_array()
                .expect("web_identity trust statements")
                .iter()
                .cloned(),
        );
        json!({ "Version": "2012-10-17", "Statement": statements })
    }

    /// A role whose trust policy lacks the External ID condition (trusts any caller of
    /// the right kind): what a customer who forgot the condition has.
    pub fn lax_role(&self, name: &str) -> String {
        let trust = json!({
            "Version": "2012-10-17",
            "Statement": [
                { "Effect": "Allow", "Principal": { "AWS": "*" }, "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"] },
                { "Effect": "Allow", "Principal": { "Federated": "*" }, "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"] }
            ]
        });
        self.role_in(ACCOUNT, name, &trust)
    }

    /// Creates an IAM role with `trust` in moto account `account`; returns its ARN.
    pub fn role_in(&self, account: &str, name: &str, trust: &Value) -> String {
        let url = self.moto.url.clone();
        let (name, account, trust) = (name.to_string(), account.to_string(), trust.to_string());
        aws::block_on(async move {
            let iam = aws::iam_in_account(&url, &account).await;
            let out = iam
                .create_role()
                .role_name(&name)
                .assume_role_policy_document(trust)
                .send()
                .await
                .expect("create role in moto");
            out.role().expect("role").arn().to_string()
        })
    }

    /// A revoker role in `account` trusted exactly as the policies endpoint says (the
    /// host's principal with the account's External ID); returns its ARN.
    pub fn revoker_in(&self, account: &str, name: &str) -> String {
        let p = self.policies(account);
        self.role_in(account, name, &p["revoker"]["trust_policy"])
    }

    /// sealgate's deny policy on role `role_name` in moto account `account`, decoded.
    pub fn deny_policy(&self, account: &str, role_name: &str) -> Option<Value> {
        let (url, role, account) = (self.moto.url.clone(), role_name.to_string(), account.to_string());
        aws::block_on(async move {
            match aws::iam_in_account(&url, &account)
                .await
                .get_role_policy()
                .role_name(role)
                .policy_name("sealgate-revoked")
                .send()
                .await
            {
                Ok(out) => Some(serde_json::from_str(&url_decode(out.policy_document())).expect("deny policy JSON")),
                Err(e) => {
                    use aws_sdk_iam::error::ProvideErrorMetadata;
                    assert_eq!(e.code(), Some("NoSuchEntity"), "GetRolePolicy: {e:?}");
                    None
                }
            }
        })
    }

    /// Deletes a role (of `ACCOUNT`) from moto.
    pub fn delete_role(&self, arn: &str) {
        let url = self.moto.url.clone();
        let name = arn.rsplit('/').next().unwrap_or(arn).to_string();
        aws::block_on(async move {
            aws::iam(&url)
                .await
                .delete_role()
                .role_name(&name)
                .send()
                .await
                .expect("delete role in moto");
        });
    }

    /// Creates a bucket in moto.
    pub fn bucket(&self, name: &str) {
        let url = self.moto.url.clone();
        let name = name.to_string();
        aws::block_on(async move {
            aws::s3(&url, REGION)
                .await
                .create_bucket()
                .bucket(&name)
                .send()
                .await
                .expect("create bucket in moto");
        });
    }

    /// Puts the object `bucket/key` in moto.
    pub fn object(&self, bucket: &str, key: &str, body: &[u8]) {
        let (url, bucket, key, body) = (
            self.moto.url.clone(),
            bucket.to_string(),
            key.to_string(),
            body.to_vec(),
        );
        aws::block_on(async move {
            aws::s3(&url, REGION)
                .await
                .put_object()
                .bucket(&bucket)
                .key(&key)
                .body(body.into())
                .send()
                .await
                .expect("put an object in moto");
        });
    }

    pub fn host_log(&self) -> String {
        self.d.host_log()
    }
}

/// Creates a key of `role` in `ws`.
pub fn key(api: &Api, operator: &str, ws: &str, role: &str) -> String {
    let (s, v) = api.post(
        &format!("/v1/workspaces/{ws}/keys"),
        Some(operator),
        &json!({ "role": role }),
    );
    assert_eq!(s, 201, "create {role} key: {v}");
    v["key"].as_str().expect("key").to_string()
}

/// `PUT` with a JSON body (the harness's client has no PUT).
pub fn put(api: &Api, path: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut req = agent.put(format!("{}{path}", api.url));
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    match req.send_json(body) {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let text = r.body_mut().read_to_string().unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
        }
        Err(e) => (0, Value::String(format!("transport error: {e}"))),
    }
}

/// POST with extra headers.
pub fn post_with(api: &Api, path: &str, key: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut req = agent
        .post(format!("{}{path}", api.url))
        .header("Authorization", format!("Bearer {key}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    match req.send_json(body) {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let text = r.body_mut().read_to_string().unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
        }
        Err(e) => (0, Value::String(format!("transport error: {e}"))),
    }
}

/// A ceiling over bucket-style S3 access in `ACCOUNT` with `rules`.
pub fn ceiling(role_arn: &str, mode: &str, rules: Value) -> Value {
    json!({
        "role_arn": role_arn,
        "credential_mode": mode,
        "actions": ["s3:Get*", "s3:List*", "s3:PutObject"],
        "resources": ["arn:aws:s3:::*"],
        "regions": ["us-east-1", "eu-west-1"],
        "max_ttl_seconds": 3600,
        "sts_region": "us-east-1",
        "rules": rules,
    })
}

/// An auto-approving ceiling (every request inside it is approved).
pub fn open_ceiling(role_arn: &str, mode: &str) -> Value {
    ceiling(
        role_arn,
        mode,
        json!([{ "decision": "auto_approve", "reason": "tests: everything inside the ceiling" }]),
    )
}

/// A request body for `bucket` in `ACCOUNT`.
pub fn access(bucket: &str, actions: &[&str], ttl: u64) -> Value {
    json!({
        "account_id": ACCOUNT,
        "actions": actions,
        "resources": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
        "regions": ["us-east-1"],
        "ttl_seconds": ttl,
        "reason": "integration test",
        "run_id": "run-1",
    })
}

/// The data of a leaf as JSON.
pub fn data(l: &AnyLeaf) -> &Value {
    &l.data
}

/// Leaves parsed from raw bytes (for callers holding entries already).
pub fn parse(bytes: &[u8]) -> AnyLeaf {
    leaf::parse(bytes).expect("leaf parses")
}

pub fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_else(|| panic!("{field} missing in {v}"))
}

/// `%XX` decoding (IAM returns policy documents URL-encoded).
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8 policy")
}

/// Whether sealgate's deny policy `doc` denies the sessions of `grant`, by its session
/// tag and by its session name.
pub fn denies_grant(doc: &Value, grant: &str) -> bool {
    let statements = doc["Statement"].as_array().cloned().unwrap_or_default();
    let all_deny = statements.iter().all(|s| s["Effect"] == "Deny" && s["Action"] == "*");
    let has = |v: &Value, want: &str| v.as_array().is_some_and(|a| a.iter().any(|x| x == want));
    let by_tag = statements.iter().any(|s| {
        has(
            &s["Condition"]["StringEquals"]["aws:PrincipalTag/sealgate:grant"],
            grant,
        )
    });
    let by_session = statements
        .iter()
        .any(|s| has(&s["Condition"]["StringLike"]["aws:userid"], &format!("*:{grant}")));
    all_deny && by_tag && by_session
}
