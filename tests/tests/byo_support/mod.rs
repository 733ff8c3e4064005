//! Helpers shared by the BYO storage suites (`byo_*.rs`): a deployment whose AWS calls
//! go through a fault layer in front of moto, workspaces with BYO enabled, buckets and
//! objects created directly in moto, and the BYO audit followed page by page.
#![allow(dead_code)]

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, ChecksumAlgorithm, CreateBucketConfiguration};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sealgate_tests::aws::{self, Moto};
use sealgate_tests::fault::FaultLayer;
use sealgate_tests::{Api, Deployment, Options};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};

/// The account moto acts in by default (roles and buckets of "the customer").
pub const ACCOUNT: &str = aws::ACCOUNT;

/// A deployment talking to AWS through its own fault layer.
pub struct Byo {
    pub moto_url: String,
    pub fault: FaultLayer,
    pub d: Deployment,
    pub api: Api,
    pub operator: String,
    /// Create the role a registration names, if missing (see [`Byo::register`]).
    pub auto_roles: bool,
}

/// A workspace and its admin key.
#[derive(Debug, Clone)]
pub struct Ws {
    pub id: String,
    pub key: String,
}

impl Ws {
    /// `/v1/workspaces/<id><rest>`.
    pub fn path(&self, rest: &str) -> String {
        format!("/v1/workspaces/{}{rest}", self.id)
    }
}

impl Byo {
    /// On the process's shared moto, with `extra` host environment.
    pub fn start(extra: &[(&str, &str)]) -> Byo {
        Byo::start_on(&Moto::shared().url, extra, &[])
    }

    /// On `moto_url`; `overrides` replace entries of the standard host environment
    /// (e.g. an IAM user's access key), `extra` adds to it.
    pub fn start_on(moto_url: &str, extra: &[(&str, &str)], overrides: &[(&str, &str)]) -> Byo {
        let fault = FaultLayer::start(moto_url);
        // STS's trust-policy evaluation, which moto skips: every role assumed must exist
        // and its trust policy must admit the External ID (issue 9).
        fault.check_trust_policies();
        let mut env = Moto::host_env(&fault.url);
        for (k, v) in overrides {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        // Short back-off keeps the throttling tests quick; the rule itself is unchanged.
        env.push(("SEALGATE_BYO_BACKOFF_MS".into(), "10".into()));
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        let d = Deployment::start_with(Options {
            host_env: env,
            ..Default::default()
        });
        let api = d.api();
        let operator = d.admin_key();
        Byo {
            moto_url: moto_url.to_string(),
            fault,
            d,
            api,
            operator,
            auto_roles: true,
        }
    }

    /// A workspace with an admin key, BYO storage not enabled.
    pub fn workspace_without_byo(&self) -> Ws {
        let (s, w) = self.api.post(
            "/v1/workspaces",
            Some(&self.operator),
            &json!({ "name": "byo-customer" }),
        );
        assert_eq!(s, 201, "{w}");
        let id = w["id"].as_str().expect("workspace id").to_string();
        let (s, k) = self.api.post(
            &format!("/v1/workspaces/{id}/keys"),
            Some(&self.operator),
            &json!({ "role": "admin" }),
        );
        assert_eq!(s, 201, "{k}");
        Ws {
            id,
            key: k["key"].as_str().expect("key").to_string(),
        }
    }

    /// A workspace with BYO storage enabled by the operator.
    pub fn workspace(&self) -> Ws {
        let ws = self.workspace_without_byo();
        let (s, v) = put(
            &self.api,
            &ws.path("/features"),
            Some(&self.operator),
            &json!({ "byo_storage": true }),
        );
        assert_eq!(s, 200, "{v}");
        ws
    }

    /// A key of another role in `ws`.
    pub fn key(&self, ws: &Ws, role: &str) -> String {
        let body = if role == "agent" {
            let (s, a) = self
                .api
                .post(&ws.path("/agents"), Some(&ws.key), &json!({ "name": "bot" }));
            assert_eq!(s, 201, "{a}");
            json!({ "role": "agent", "agent_id": a["id"] })
        } else {
            json!({ "role": role })
        };
        let (s, k) = self.api.post(&ws.path("/keys"), Some(&ws.key), &body);
        assert_eq!(s, 201, "{k}");
        k["key"].as_str().expect("key").to_string()
    }

    /// Registers a grant; returns the status and body. With `auto_roles` the role it
    /// names is first created in moto if missing (see [`ensure_role`]).
    pub fn register(&self, ws: &Ws, body: &Value) -> (u16, Value) {
        if self.auto_roles {
            if let Some(arn) = body["role_arn"].as_str() {
                ensure_role(&self.moto_url, arn);
            }
        }
        self.api.post(&ws.path("/byo/grant"), Some(&ws.key), body)
    }

    /// Registers a grant for `bucket` in `region` and asserts it came up active.
    pub fn register_active(&self, ws: &Ws, bucket: &str, region: &str) -> Value {
        let (s, v) = self.register(ws, &grant_body(bucket, region));
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["grant"]["status"], "active", "{v}\n{}", self.d.host_log());
        v["grant"].clone()
    }

    pub fn check(&self, ws: &Ws) -> (u16, Value) {
        self.api.post(&ws.path("/byo/grant/check"), Some(&ws.key), &json!({}))
    }

    pub fn artifact(&self, ws: &Ws, body: &Value) -> (u16, Value) {
        self.api.post(&ws.path("/artifacts/byo"), Some(&ws.key), body)
    }

    /// Every BYO audit entry of `ws` (optionally of one run), following the cursors
    /// with pages of `limit`; asserts the chain ends with `next_cursor: null`.
    pub fn audit(&self, ws: &Ws, run_id: Option<&str>, limit: u32) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let mut q = format!("?limit={limit}");
            if let Some(r) = run_id {
                q.push_str(&format!("&run_id={r}"));
            }
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let (s, page) = self.api.get(&ws.path(&format!("/byo/audit{q}")), Some(&ws.key));
            assert_eq!(s, 200, "{page}");
            let entries = page["entries"].as_array().expect("entries").clone();
            assert!(entries.len() <= limit as usize, "page larger than limit: {page}");
            out.extend(entries);
            match &page["next_cursor"] {
                Value::Null => return out,
                Value::String(c) => cursor = Some(c.clone()),
                other => panic!("next_cursor must be a string or null: {other}"),
            }
        }
        panic!("the audit cursor chain never ended");
    }

    /// Requests the fault layer saw for one action.
    pub fn seen(&self, service: &str, action: &str) -> usize {
        self.fault.requests_for(service, action).len()
    }
}

/// PUT with a JSON body (the harness client has no PUT).
pub fn put(api: &Api, path: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let mut req = agent.put(format!("{}{path}", api.url));
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    match req.send_json(body) {
        Ok(mut r) => {
            let text = r.body_mut().read_to_string().unwrap_or_default();
            (
                r.status().as_u16(),
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }
        Err(e) => (0, Value::String(format!("transport error: {e}"))),
    }
}

/// The trust policy of the roles [`Byo::register`] creates: sealgate's principal with
/// any *UUID-shaped* External ID. The ID is minted at registration, after the role must
/// exist, so suites that are not about External IDs cannot pin the exact value; this
/// pattern still refuses the probe's deliberately wrong ID (not UUID-shaped), so the
/// probe passes for the right reason. `byo_trust.rs` tests exact pinning and a role
/// without any condition.
pub fn uuid_shaped_trust() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "AWS": "*" },
            "Action": "sts:AssumeRole",
            "Condition": { "StringLike": { "sts:ExternalId": "????????-????-4???-????-????????????" } }
        }]
    })
}

/// Creates the role `arn` names in its moto account with [`uuid_shaped_trust`], unless
/// it exists (or `arn` is not a role ARN: validation tests send such).
pub fn ensure_role(moto_url: &str, arn: &str) {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let (account, name) = match parts.as_slice() {
        ["arn", _, "iam", "", account, resource] if resource.starts_with("role/") && account.len() == 12 => (
            account.to_string(),
            resource.rsplit('/').next().unwrap_or("").to_string(),
        ),
        _ => return,
    };
    if name.is_empty() || name.len() > 64 {
        return;
    }
    let trust = uuid_shaped_trust().to_string();
    aws::block_on(async move {
        let iam = aws::iam_in_account(moto_url, &account).await;
        if iam.get_role().role_name(&name).send().await.is_ok() {
            return;
        }
        // Best effort: a name IAM refuses belongs to a registration that validation
        // refuses, or whose probe then finds no role (as in AWS).
        let _ = iam
            .create_role()
            .role_name(&name)
            .assume_role_policy_document(trust)
            .send()
            .await;
    });
}

/// `{role_arn, bucket, region}` for a role named after the bucket.
pub fn grant_body(bucket: &str, region: &str) -> Value {
    json!({ "role_arn": role_arn(&format!("reader-{bucket}")), "bucket": bucket, "region": region })
}

pub fn role_arn(name: &str) -> String {
    let name: String = name.chars().take(64).collect();
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

/// A bucket name no other test uses (the shared moto is shared by parallel tests).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// Creates `bucket` in `region`, directly in moto.
pub fn create_bucket(moto_url: &str, bucket: &str, region: &str) {
    aws::block_on(async {
        let s3 = aws::s3(moto_url, region).await;
        let mut req = s3.create_bucket().bucket(bucket);
        if region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        req.send().await.expect("create bucket");
    });
}

/// Puts an object directly in moto; with `sha256_checksum`, S3 stores its SHA-256.
pub fn put_object(moto_url: &str, bucket: &str, region: &str, key: &str, body: &[u8], sha256_checksum: bool) {
    let body = body.to_vec();
    aws::block_on(async {
        let s3 = aws::s3(moto_url, region).await;
        let mut req = s3.put_object().bucket(bucket).key(key).body(ByteStream::from(body));
        if sha256_checksum {
            req = req.checksum_algorithm(ChecksumAlgorithm::Sha256);
        }
        req.send().await.expect("put object");
    });
}

/// What S3 has for the object: (SHA-256 checksum as hex if any, ETag without quotes).
pub fn head_object(moto_url: &str, bucket: &str, region: &str, key: &str) -> (Option<String>, String) {
    aws::block_on(async {
        let s3 = aws::s3(moto_url, region).await;
        let h = s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .expect("head object");
        let sha = h
            .checksum_sha256()
            .map(|c| hex::encode(B64.decode(c).expect("base64 checksum")));
        (sha, h.e_tag().unwrap_or_default().trim_matches('"').to_string())
    })
}

/// Asserts a validation error: 400, `code`, and `error.field == field`.
#[track_caller]
pub fn assert_invalid(got: (u16, Value), code: &str, field: &str) {
    let (s, body) = got;
    assert_eq!(s, 400, "expected 400 {code} for {field}, got {s}: {body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["field"], field, "{body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message: {body}"
    );
}

/// moto's request ids: 52 letters and digits.
pub fn is_moto_request_id(id: &str) -> bool {
    id.len() == 52 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The fault layer's request ids (`5e41a7e0-…`), proving ids are read from errors too.
pub fn is_fault_request_id(id: &str) -> bool {
    id.starts_with("5e41a7e0-")
}

/// Event types of audit entries, in order.
pub fn event_types(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Asserts the entries' log indexes are all distinct.
#[track_caller]
pub fn assert_distinct_leaves(entries: &[Value]) {
    let mut seen = HashSet::new();
    for e in entries {
        let i = e["log_index"].as_u64().unwrap_or_else(|| panic!("no log_index: {e}"));
        assert!(seen.insert(i), "log index {i} appears twice");
    }
}
