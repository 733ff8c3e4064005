//! The fourteen tools: their input schemas (derived with schemars from the argument
//! types below, whose doc comments become the fields' descriptions), and what each
//! does on the REST API.
//!
//! Arguments are parsed here rather than by rmcp's `Parameters` extractor, because
//! rmcp turns a deserialisation failure into a tool error, and a call whose arguments do
//! not fit the schema made no request at all: it is the client's protocol mistake, so it
//! answers JSON-RPC invalid params (-32602), as does an unknown tool.

use super::super::client::{Answer, Bearer, Sealgate};
use super::outcome::{self, done, failed};
use super::resources::{self, Grants};
use super::tokens::Tokens;
use super::{proof, McpOptions};
use crate::agent::AgentError;
use rmcp::handler::server::tool::schema_for_input;
use rmcp::model::{CallToolResult, JsonObject, Tool, ToolAnnotations};
use rmcp::ErrorData;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a grant GET may be held (the host's own cap).
const MAX_WAIT_SECS: u64 = 30;

/// A grant, named by its id or its secret_ref.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GrantArgs {
    /// The grant: its id (gr_…) or its secret_ref (secret_ref://aws/runs/RUN/GRANT), as aws_request_access
    /// answered.
    grant_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PollArgs {
    /// The grant: its id (gr_…) or its secret_ref, as aws_request_access answered.
    grant_id: String,
    /// Seconds to wait for a pending grant to be decided before answering (0–30, default 0); the answer
    /// comes as soon as it is decided.
    #[serde(default)]
    wait_seconds: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReleaseArgs {
    /// The grant: its id (gr_…) or its secret_ref, as aws_request_access answered.
    grant_id: String,
    /// Also make credentials already handed out stop working (needs a revoker role on the account); default
    /// false.
    #[serde(default)]
    hard: Option<bool>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ScopeArgs {
    /// The AWS account id (12 digits) whose ceiling to describe.
    account_id: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AccessArgs {
    /// The AWS account id (12 digits) the access is for.
    account_id: String,
    /// The IAM actions the task needs, as few as will do (e.g. ["s3:GetObject", "s3:ListBucket"]).
    actions: Vec<String>,
    /// The resource ARNs the actions apply to (e.g. ["arn:aws:s3:::reports", "arn:aws:s3:::reports/*"]).
    resources: Vec<String>,
    /// Concrete AWS regions (e.g. ["us-east-1"]).
    regions: Vec<String>,
    /// How long the access should last, in seconds (900–43200, and within the account's maximum).
    ttl_seconds: u64,
    /// Why the task needs this access; approvers read it.
    reason: String,
    /// The run (task) the access is for; it is part of the grant's secret_ref.
    run_id: String,
    /// Optional: sending the same key with the same request again returns the same grant, not a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<String>,
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PreviewArgs {
    /// The AWS account id (12 digits) the access would be for.
    account_id: String,
    /// The IAM actions (e.g. ["s3:GetObject"]).
    actions: Vec<String>,
    /// The resource ARNs the actions would apply to.
    resources: Vec<String>,
    /// Concrete AWS regions (e.g. ["us-east-1"]).
    regions: Vec<String>,
    /// How long the access would last, in seconds (900–43200).
    ttl_seconds: u64,
    /// Optional: why the task would need it (some rules look at nothing else, but approvers will).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Optional: the run (task) it would be for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MintArgs {
    /// Optional: the token's audience, one the host allows (default: its first, sts.amazonaws.com).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audience: Option<String>,
    /// Optional: the token's lifetime in seconds (default 300, within the host's bounds, 60–3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl_seconds: Option<u64>,
    /// Optional: a task id for the subject (ws:…:agent:…:task:ID); letters, digits, '.', '_', '-'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    task_id: Option<String>,
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ByoRegisterArgs {
    /// The customer's IAM role sealgate assumes to read the bucket (arn:aws:iam::ACCOUNT:role/NAME).
    role_arn: String,
    /// The customer's S3 bucket name.
    bucket: String,
    /// The bucket's region (e.g. us-east-1).
    region: String,
    /// Optional: the KMS key the bucket's objects are encrypted with (key id, key ARN or alias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kms_key_id: Option<String>,
    /// Optional: the run (task) to file the probe's audit records under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ByoCheckArgs {
    /// Optional: the run (task) to file the probe's audit records under.
    #[serde(default)]
    run_id: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ByoArtifactArgs {
    /// The object, as s3://BUCKET/KEY, in the connected bucket.
    s3_uri: String,
    /// Optional: the SHA-256 (hex) the object must have; checked against S3's checksum or by reading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expected_sha256: Option<String>,
    /// Optional: the size in bytes the object must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expected_size: Option<u64>,
    /// Optional: what kind of artifact this is (free text, e.g. "dataset").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    /// Optional: the file's original name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    original_filename: Option<String>,
    /// Optional: the run (task) the artifact belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ByoAuditArgs {
    /// Optional: only the records of this run (task).
    #[serde(default)]
    run_id: Option<String>,
    /// Optional: where to continue, the next_cursor of the previous page.
    #[serde(default)]
    cursor: Option<String>,
    /// Optional: records per page (1–500, default 50).
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ProveArgs {
    /// The jti of a token oidc_mint_token minted in this session (the server still holds it).
    #[serde(default)]
    jti: Option<String>,
    /// Or a token (compact JWT) you hold from elsewhere; its jti is read from it.
    #[serde(default)]
    token: Option<String>,
    /// Optional: the log's signed-note verifier key to check the checkpoint with (the attested key that
    /// `sealgate-verify attest` reports); by default the key the host serves.
    #[serde(default)]
    verifier_key: Option<String>,
}

fn tool<T: JsonSchema + 'static>(name: &'static str, description: &'static str, read_only: bool) -> Tool {
    let schema = schema_for_input::<T>().unwrap_or_else(|e| panic!("the input schema of {name}: {e}"));
    Tool::new(name, description, schema).with_annotations(ToolAnnotations::new().read_only(read_only))
}

/// Every tool this server offers.
pub fn list() -> Vec<Tool> {
    vec![
        tool::<ScopeArgs>(
            "aws_describe_scope",
            "Shows what may be asked for in an AWS account: the ceiling's actions, resources, regions, maximum \
             TTL and approval rules. Read this before aws_request_access.",
            true,
        ),
        tool::<PreviewArgs>(
            "aws_preview_request",
            "Says how a request for AWS access would be decided (auto-approved, routed to an approver, or denied, \
             and which rule decides) without filing it.",
            true,
        ),
        tool::<AccessArgs>(
            "aws_request_access",
            "Requests short-lived AWS access for a task. Answers the grant's id, status, expiry and secret_ref, \
             never credentials: run commands with them through `sealgate exec --secret-ref REF -- CMD` or a \
             credential_process profile. A grant routed to an approver is an error result saying how to wait.",
            false,
        ),
        tool::<PollArgs>(
            "aws_poll_grant",
            "Reports a grant's status, optionally waiting up to 30 s for a pending one to be decided. Subscribing \
             to the grant's resource (sealgate://grants/ and its id) is the alternative that needs no polling.",
            true,
        ),
        tool::<GrantArgs>(
            "aws_get_credentials",
            "Returns an active grant's AWS credentials inline, only if this server was started with \
             --allow-inline-credentials; otherwise it answers how to let the runtime use the grant without the \
             credentials entering the conversation.",
            false,
        ),
        tool::<ReleaseArgs>(
            "aws_release_access",
            "Ends a grant before its expiry once the task is done (hard: true also stops credentials already \
             handed out).",
            false,
        ),
        tool::<MintArgs>(
            "oidc_mint_token",
            "Mints a short-lived OIDC token for this agent, logged in sealgate's transparency log. The token is \
             written to a private file whose path is answered (give the path, e.g. as AWS_WEB_IDENTITY_TOKEN_FILE, \
             not the token).",
            false,
        ),
        tool::<ByoRegisterArgs>(
            "byo_register_bucket",
            "Connects the customer's own S3 bucket through a role in their account (needs a workspace admin key): \
             sealgate mints an External ID for the role's trust policy and probes the access at once.",
            false,
        ),
        tool::<ByoCheckArgs>(
            "byo_check_bucket",
            "Runs the readiness probe of the connected bucket again and shows its grant, status and what to fix.",
            true,
        ),
        tool::<NoArgs>(
            "byo_rotate_external_id",
            "Gives the connected bucket's role a new External ID; the grant is pending until the trust policy has \
             it and byo_check_bucket passes.",
            false,
        ),
        tool::<NoArgs>(
            "byo_disconnect_bucket",
            "Disconnects the customer's bucket (refused while artifacts reference it). The record is kept as \
             revoked for audit.",
            false,
        ),
        tool::<ByoArtifactArgs>(
            "byo_register_artifact",
            "Registers an object of the connected bucket by pointer (s3://bucket/key): sealgate checks it exists \
             and, if asked, its size and SHA-256. Nothing is copied.",
            false,
        ),
        tool::<ByoAuditArgs>(
            "byo_get_audit",
            "Lists every call sealgate made into the customer's account (STS, S3, KMS), oldest first, a page at a \
             time.",
            true,
        ),
        tool::<ProveArgs>(
            "audit_prove_token",
            "Proves a token is in sealgate's transparency log, and checks the proof here: the leaf is this \
             token's, the checkpoint's signature verifies, and the inclusion proof leads to its root.",
            true,
        ),
    ]
}

fn parse<T: DeserializeOwned>(tool: &str, args: JsonObject) -> Result<T, ErrorData> {
    serde_json::from_value(Value::Object(args))
        .map_err(|e| ErrorData::invalid_params(format!("{tool}: the arguments do not fit its input schema: {e}"), None))
}

fn grant_arg(tool: &str, g: &str) -> Result<String, ErrorData> {
    let id = if g.starts_with("secret_ref://") {
        crate::agent::grant_id(None, Some(g))
    } else {
        crate::agent::grant_id(Some(g), None)
    };
    id.map_err(|e| ErrorData::invalid_params(format!("{tool}: grant_id: {e}"), None))
}

/// `k=v&…` for the values that are set.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    let q = q.finish();
    if q.is_empty() {
        q
    } else {
        format!("?{q}")
    }
}

/// A tool's arguments as the JSON body of its REST call (they are the same fields).
fn json_body<T: Serialize>(args: &T) -> Result<Value, ErrorData> {
    serde_json::to_value(args).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

/// What an agent is told about a grant: the facts that matter, never a secret (the
/// host's grant carries none; this keeps to a list anyway).
fn grant_summary(g: &Value) -> Value {
    let id = g["grant_id"].as_str().unwrap_or_default();
    json!({
        "grant_id": id,
        "status": g["status"],
        "expires_at": g["expires_at"],
        "secret_ref": g["secret_ref"],
        "resource": resources::uri(id),
        "account_id": g["account_id"],
        "actions": g["actions"],
        "resources": g["resources"],
        "regions": g["regions"],
        "ttl_seconds": g["ttl_seconds"],
        "run_id": g["run_id"],
        "decision": g["decision"],
        "denial_reason": g["denial_reason"],
        "decide_by": g["decide_by"],
        "approvals_required": g["approvals_required"],
        "approvals_given": g["approvals"].as_array().map(Vec::len).unwrap_or(0),
    })
}

/// How the runtime uses an active grant without the model holding its credentials.
fn usage(g: &Value) -> String {
    let r = g["secret_ref"].as_str().unwrap_or("secret_ref://…");
    format!(
        "Use it without handling the credentials: `sealgate exec --secret-ref {r} -- aws s3 ls` runs one command \
         with them (refreshed for as long as the grant lasts), or an ~/.aws/config profile with \
         `credential_process = sealgate credential-process --secret-ref {r}` serves every AWS CLI and SDK call."
    )
}

/// A grant as a tool result: success when it is usable, else a tool error saying what next.
fn grant_result(g: &Value) -> CallToolResult {
    let s = grant_summary(g);
    let id = s["grant_id"].as_str().unwrap_or_default().to_string();
    let uri = resources::uri(&id);
    match g["status"].as_str().unwrap_or_default() {
        "active" => done(
            format!(
                "Grant {id} is active until {} (Unix time). {}",
                g["expires_at"],
                usage(g)
            ),
            s,
        ),
        "pending" => failed(
            format!(
                "Grant {id} is pending: it waits for {} approver decision(s) (until {}, Unix time) and gives no \
                 access yet. To be told when it is decided, subscribe to the resource {uri} (the server sends \
                 notifications/resources/updated when it is approved, denied or times out), or call \
                 aws_poll_grant with grant_id {id} and wait_seconds 30, again until it is no longer pending. \
                 Do not request it again.",
                g["approvals_required"].as_u64().unwrap_or(1),
                g["decide_by"]
            ),
            s,
        ),
        "denied" => failed(
            format!(
                "Grant {id} was denied: {}. Do not send the same request again: narrow it to what \
                 aws_describe_scope allows (actions, resources, regions, TTL), or ask a human to change the \
                 account's ceiling or approve.",
                g["denial_reason"].as_str().unwrap_or("no reason given")
            ),
            s,
        ),
        "timed_out" => failed(
            format!(
                "Grant {id} timed out: no approver decided in time. Request it again only if the task still needs \
                 it, and tell a human that an approval is waiting."
            ),
            s,
        ),
        status => failed(
            format!("Grant {id} is {status}: it gives no access any more. Request a new grant if the task needs one."),
            s,
        ),
    }
}

pub struct Tools {
    api: Sealgate,
    admin: Sealgate,
    workspace: Option<String>,
    allow_inline: bool,
    grants: Arc<Grants>,
    tokens: Tokens,
}

impl Tools {
    pub fn new(opts: McpOptions, grants: Arc<Grants>) -> Result<Self, AgentError> {
        if let Some(ws) = opts.workspace.as_deref().filter(|ws| !crate::agent::is_id(ws)) {
            return Err(AgentError::Usage(format!("{ws:?} is not a workspace id")));
        }
        Ok(Self {
            api: opts.api,
            admin: opts.admin,
            workspace: opts.workspace,
            allow_inline: opts.allow_inline_credentials,
            grants,
            tokens: Tokens::default(),
        })
    }

    pub fn forget_tokens(&self) {
        self.tokens.forget();
    }

    /// Runs tool `name`: `Err` only for a protocol error (unknown tool, malformed arguments).
    pub async fn call(&self, name: &str, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        match name {
            "aws_describe_scope" => self.describe_scope(parse(name, args)?).await,
            "aws_preview_request" => self.preview(parse(name, args)?).await,
            "aws_request_access" => self.request(parse(name, args)?).await,
            "aws_poll_grant" => self.poll(parse(name, args)?).await,
            "aws_get_credentials" => self.credentials(parse(name, args)?).await,
            "aws_release_access" => self.release(parse(name, args)?).await,
            "oidc_mint_token" => self.mint(parse(name, args)?).await,
            "byo_register_bucket" => self.byo_register(parse(name, args)?).await,
            "byo_check_bucket" => self.byo_check(parse(name, args)?).await,
            "byo_rotate_external_id" => {
                parse::<NoArgs>(name, args)?;
                self.byo_rotate().await
            }
            "byo_disconnect_bucket" => {
                parse::<NoArgs>(name, args)?;
                self.byo_disconnect().await
            }
            "byo_register_artifact" => self.byo_artifact(parse(name, args)?).await,
            "byo_get_audit" => self.byo_audit(parse(name, args)?).await,
            "audit_prove_token" => self.prove(parse(name, args)?).await,
            _ => Err(ErrorData::invalid_params(format!("there is no tool {name:?}"), None)),
        }
    }

    /// One REST call: `Ok` with a 2xx answer; otherwise the tool error that says what to
    /// do next (the host refused, or could not be reached).
    async fn rest(
        &self,
        tool: &str,
        client: &Sealgate,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Answer, CallToolResult> {
        match client.call(method, path, body, Bearer::Key, timeout).await {
            Ok(r) if r.ok() => Ok(r),
            Ok(r) => Err(outcome::refused(tool, &r)),
            Err(e) => Err(outcome::unreachable(tool, &e)),
        }
    }

    fn workspace(&self, tool: &str) -> Result<&str, CallToolResult> {
        self.workspace.as_deref().ok_or_else(|| {
            failed(
                format!(
                    "{tool} needs the workspace id, and this server was started without it: set \
                     SEALGATE_WORKSPACE (or --workspace) for `sealgate mcp` to the agent's workspace (ws_…)."
                ),
                json!({ "error": { "code": "WORKSPACE_NOT_CONFIGURED" } }),
            )
        })
    }

    async fn describe_scope(&self, a: ScopeArgs) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "aws_describe_scope";
        if a.account_id.len() != 12 || !a.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ErrorData::invalid_params(
                format!("{TOOL}: account_id must be 12 digits, not {:?}", a.account_id),
                None,
            ));
        }
        let ws = match self.workspace(TOOL) {
            Ok(ws) => ws,
            Err(r) => return Ok(r),
        };
        let path = format!("/v1/workspaces/{ws}/aws/accounts/{}/scope", a.account_id);
        Ok(match self.rest(TOOL, &self.api, "GET", &path, None, TIMEOUT).await {
            Ok(r) => done(
                format!(
                    "What may be requested in account {}: ask for no more than the task needs, inside these \
                     actions, resources, regions and TTL; the rules say what is approved at once and what waits \
                     for an approver.",
                    a.account_id
                ),
                r.body,
            ),
            Err(r) => r,
        })
    }

    async fn preview(&self, a: PreviewArgs) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "aws_preview_request";
        let body = json_body(&a)?;
        Ok(
            match self
                .rest(TOOL, &self.api, "POST", "/v1/aws/access/preview", Some(&body), TIMEOUT)
                .await
            {
                Ok(r) => {
                    let decision = r.body["decision"].as_str().unwrap_or("unknown");
                    let what = match decision {
                        "auto_approve" => "would be approved at once",
                        "route_to_approver" => "would wait for an approver",
                        "hard_deny" => "would be denied: change it before requesting",
                        _ => "would be decided as shown",
                    };
                    done(
                        format!(
                            "This request {what} ({}). Nothing was filed.",
                            r.body["reason"].as_str().unwrap_or("")
                        ),
                        r.body,
                    )
                }
                Err(r) => r,
            },
        )
    }

    async fn request(&self, a: AccessArgs) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "aws_request_access";
        let body = json_body(&a)?;
        Ok(
            match self
                .rest(TOOL, &self.api, "POST", "/v1/aws/access", Some(&body), TIMEOUT)
                .await
            {
                Ok(r) => {
                    if let Some(id) = r.body["grant_id"].as_str() {
                        self.grants.remember(id);
                    }
                    grant_result(&r.body)
                }
                Err(r) => r,
            },
        )
    }

    async fn poll(&self, a: PollArgs) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "aws_poll_grant";
        let id = grant_arg(TOOL, &a.grant_id)?;
        let wait = a.wait_seconds.unwrap_or(0).min(MAX_WAIT_SECS);
        let path = format!("/v1/aws/access/{id}?wait={wait}");
        Ok(
            match self
                .rest(TOOL, &self.api, "GET", &path, None, Duration::from_secs(wait + 15))
                .await
            {
                Ok(r) => {
                    self.grants.remember(&id);
                    grant_result(&r.body)
                }
                Err(r) => r,
            },
        )
    }

    async fn credentials(&self, a: GrantArgs) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "aws_get_credentials";
        let id = grant_arg(TOOL, &a.grant_id)?;
        if !self.allow_inline {
            return Ok(failed(
                format!(
                    "Inline credentials are off on this server, so they stay out of this conversation. Let the \
                     runtime use grant {id} instead: `sealgate exec --grant {id} -- CMD ARGS…` runs a command with \
                     the credentials (e.g. `sealgate exec --grant {id} -- aws s3 ls`), or an ~/.aws/config profile \
                     with `credential_process = sealgate credential-process --grant {id}` serves the AWS CLI and \
                     SDKs. (The operator can start `sealgate mcp --allow-inline-credentials` to allow this tool.)"
                ),
                json!({
                    "error": { "code": "INLINE_CREDENTIALS_DISABLED" },
                    "grant_id": id,
                    "exec": format!("sealgate exec --grant {id} -- CMD ARGS…"),
                    "credential_process": format!("sealgate credential-process --grant {id}"),
                }),
            ));
        }
        let path = format!("/v1/aws/access/{id}/credentials");
        Ok(match self.rest(TOOL, &self.api, "GET", &path, None, TIMEOUT).await {
            Ok(r) => {
                let b = &r.body;
                done(
                    format!(
                        "AWS credentials for grant {id}, valid until {}. They are secrets: use them, do not repeat \
                         them.",
                        b["expiration"]
                    ),
                    json!({
                        "grant_id": id,
                        "access_key_id": b["access_key_id"],
                        "secret_access_key": b["secret_access_key"],
                        "session_token": b["session_token"],
                        "expiration": b["expiration"],
                        "expires_at": b["expires_at"],
                        "region": b["region"],
                    }),
                )
            }
            Err(r) => r,
        })
    }

    async fn release(&self, a: ReleaseArgs) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "aws_release_access";
        let id = grant_arg(TOOL, &a.grant_id)?;
        let body = match a.hard {
            Some(h) => json!({ "hard": h }),
            None => json!({}),
        };
        let path = format!("/v1/aws/access/{id}/release");
        Ok(
            match self.rest(TOOL, &self.api, "POST", &path, Some(&body), TIMEOUT).await {
                Ok(r) => done(
                    format!(
                        "Grant {id} is {}: it gives no more access{}.",
                        r.body["status"].as_str().unwrap_or("released"),
                        if r.body["hard_revoked"] == true {
                            ", and credentials already issued stop working"
                        } else {
                            " (credentials already issued last until their expiry; hard: true stops them)"
                        }
                    ),
                    grant_summary(&r.body),
                ),
                Err(r) => r,
            },
        )
    }

    async fn mint(&self, a: MintArgs) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "oidc_mint_token";
        let body = json_body(&a)?;
        let r = match self
            .rest(TOOL, &self.api, "POST", "/v1/tokens", Some(&body), TIMEOUT)
            .await
        {
            Ok(r) => r,
            Err(r) => return Ok(r),
        };
        let (Some(token), Some(jti)) = (r.body["token"].as_str(), r.body["jti"].as_str()) else {
            return Ok(failed(
                "sealgate's answer lacked the token or its jti; try again.",
                json!({ "error": { "code": "UNEXPECTED_ANSWER" } }),
            ));
        };
        let file = match self.tokens.keep(jti, token) {
            Ok(p) => p,
            Err(e) => {
                return Ok(failed(
                    format!("The token was minted (jti {jti}) but could not be stored: {e}."),
                    json!({ "error": { "code": "TOKEN_FILE_FAILED" }, "jti": jti }),
                ))
            }
        };
        let mut data = json!({
            "jti": jti,
            "expires_at": r.body["expires_at"],
            "log_index": r.body["log_index"],
            "token_file": file.display().to_string(),
        });
        if self.allow_inline {
            data["token"] = json!(token);
        }
        Ok(done(
            format!(
                "Minted token {jti}, in the file {} (readable by this user only) until {} (Unix time). Pass the \
                 file's path to what needs the token (e.g. AWS_WEB_IDENTITY_TOKEN_FILE) rather than its contents. \
                 audit_prove_token with this jti proves it is in the transparency log.",
                file.display(),
                r.body["expires_at"]
            ),
            data,
        ))
    }

    async fn byo_register(&self, a: ByoRegisterArgs) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "byo_register_bucket";
        let ws = match self.workspace(TOOL) {
            Ok(ws) => ws.to_string(),
            Err(r) => return Ok(r),
        };
        let body = json_body(&a)?;
        let path = format!("/v1/workspaces/{ws}/byo/grant");
        Ok(
            match self
                .rest(TOOL, &self.admin, "POST", &path, Some(&body), Duration::from_secs(120))
                .await
            {
                Ok(r) => byo_grant_result(&r.body),
                Err(r) => r,
            },
        )
    }

    async fn byo_check(&self, a: ByoCheckArgs) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "byo_check_bucket";
        let ws = match self.workspace(TOOL) {
            Ok(ws) => ws.to_string(),
            Err(r) => return Ok(r),
        };
        let path = format!("/v1/workspaces/{ws}/byo/grant/check{}", query(&[("run_id", a.run_id)]));
        Ok(
            match self
                .rest(
                    TOOL,
                    &self.admin,
                    "POST",
                    &path,
                    Some(&json!({})),
                    Duration::from_secs(120),
                )
                .await
            {
                Ok(r) => byo_grant_result(&r.body),
                Err(r) => r,
            },
        )
    }

    async fn byo_rotate(&self) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "byo_rotate_external_id";
        let ws = match self.workspace(TOOL) {
            Ok(ws) => ws.to_string(),
            Err(r) => return Ok(r),
        };
        let path = format!("/v1/workspaces/{ws}/byo/grant/rotate-external-id");
        Ok(
            match self
                .rest(TOOL, &self.admin, "POST", &path, Some(&json!({})), TIMEOUT)
                .await
            {
                Ok(r) => {
                    let ext = r.body["grant"]["external_id"].as_str().unwrap_or("");
                    done(
                        format!(
                            "The External ID is now \"{ext}\"; the bucket's grant is pending until the role's trust \
                             policy requires it (StringEquals sts:ExternalId) and byo_check_bucket passes."
                        ),
                        r.body,
                    )
                }
                Err(r) => r,
            },
        )
    }

    async fn byo_disconnect(&self) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "byo_disconnect_bucket";
        let ws = match self.workspace(TOOL) {
            Ok(ws) => ws.to_string(),
            Err(r) => return Ok(r),
        };
        let path = format!("/v1/workspaces/{ws}/byo/grant");
        Ok(
            match self.rest(TOOL, &self.admin, "DELETE", &path, None, TIMEOUT).await {
                Ok(r) => done(
                    "The bucket is disconnected (its grant is kept as revoked, for audit); sealgate no longer assumes \
                 the role. byo_register_bucket connects one again.",
                    r.body,
                ),
                Err(r) => r,
            },
        )
    }

    async fn byo_artifact(&self, a: ByoArtifactArgs) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "byo_register_artifact";
        let ws = match self.workspace(TOOL) {
            Ok(ws) => ws.to_string(),
            Err(r) => return Ok(r),
        };
        let body = json_body(&a)?;
        let path = format!("/v1/workspaces/{ws}/artifacts/byo");
        Ok(
            match self
                .rest(TOOL, &self.admin, "POST", &path, Some(&body), Duration::from_secs(300))
                .await
            {
                Ok(r) => done(
                    format!(
                        "Registered {} as artifact {} (sha256 {}, {} bytes); the object stays in the customer's \
                         bucket.",
                        r.body["s3_uri"].as_str().unwrap_or(""),
                        r.body["id"].as_str().unwrap_or(""),
                        r.body["sha256"].as_str().unwrap_or("unknown"),
                        r.body["size_bytes"]
                    ),
                    r.body,
                ),
                Err(r) => r,
            },
        )
    }

    async fn byo_audit(&self, a: ByoAuditArgs) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "byo_get_audit";
        let ws = match self.workspace(TOOL) {
            Ok(ws) => ws.to_string(),
            Err(r) => return Ok(r),
        };
        let path = format!(
            "/v1/workspaces/{ws}/byo/audit{}",
            query(&[
                ("run_id", a.run_id),
                ("cursor", a.cursor),
                ("limit", a.limit.map(|l| l.to_string())),
            ])
        );
        Ok(match self.rest(TOOL, &self.admin, "GET", &path, None, TIMEOUT).await {
            Ok(r) => {
                let n = r.body["entries"].as_array().map(Vec::len).unwrap_or(0);
                let more = match r.body["next_cursor"].as_str() {
                    Some(c) => format!(" More: call again with cursor {c:?}."),
                    None => " That is the last page.".into(),
                };
                done(
                    format!("{n} call(s) into the customer's account, oldest first.{more}"),
                    r.body,
                )
            }
            Err(r) => r,
        })
    }

    async fn prove(&self, a: ProveArgs) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "audit_prove_token";
        let pinned = match &a.verifier_key {
            Some(k) => Some(
                k.trim()
                    .parse::<sealgate_shared::note::VerifierKey>()
                    .map_err(|e| ErrorData::invalid_params(format!("{TOOL}: verifier_key: {e}"), None))?,
            ),
            None => None,
        };
        let (jti, token) = match (a.jti, a.token) {
            (Some(j), None) => match self.tokens.get(&j) {
                Some(t) => (j, t),
                None => {
                    return Ok(failed(
                        format!(
                            "This server did not mint a token with jti {j:?} in this session, so it cannot present \
                             it; pass the token itself as token."
                        ),
                        json!({ "error": { "code": "TOKEN_UNKNOWN" } }),
                    ))
                }
            },
            (j, Some(t)) => match (j, proof::jti_of(&t)) {
                (Some(j), Some(claimed)) if j != claimed => {
                    return Err(ErrorData::invalid_params(
                        format!("{TOOL}: the token's jti is {claimed:?}, not {j:?}"),
                        None,
                    ))
                }
                (_, Some(claimed)) => (claimed, t),
                (_, None) => {
                    return Err(ErrorData::invalid_params(
                        format!("{TOOL}: token is not a JWT with a jti claim"),
                        None,
                    ))
                }
            },
            (None, None) => {
                return Err(ErrorData::invalid_params(
                    format!("{TOOL}: give jti (a token minted here) or token"),
                    None,
                ))
            }
        };
        if jti.is_empty() || jti.len() > 64 || !jti.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ErrorData::invalid_params(format!("{TOOL}: {jti:?} is not a jti"), None));
        }
        Ok(match proof::prove(&self.api, &jti, &token, pinned.as_ref()).await {
            Ok(facts) => done(
                format!(
                    "Verified: token {jti} is leaf {} of sealgate's log, included in the signed checkpoint of size \
                     {} (checked here: leaf, signature, inclusion proof; the key was {}).",
                    facts["index"], facts["checkpoint"]["size"], facts["verifier_key_source"]
                ),
                facts,
            ),
            Err(n) => failed(
                format!(
                    "NOT verified: {}.{}",
                    n.reason,
                    if n.retry {
                        " This may pass shortly (the next checkpoint comes within seconds): try again."
                    } else {
                        " Do not trust this token's log entry; tell a human."
                    }
                ),
                json!({ "verified": false, "jti": jti, "reason": n.reason, "retry": n.retry }),
            ),
        })
    }
}

/// A BYO grant answer (`{grant, probe?, next_step}`): an error result unless active.
fn byo_grant_result(body: &Value) -> CallToolResult {
    let g = &body["grant"];
    let status = g["status"].as_str().unwrap_or_default();
    let code = body["probe"]["error"]["code"]
        .as_str()
        .or(g["last_verify_error"].as_str())
        .unwrap_or("");
    let host_step = body["next_step"].as_str().unwrap_or_default();
    match status {
        "active" => done(
            format!(
                "The bucket {} is connected and its probe passed: register objects with byo_register_artifact \
                 (s3://{}/KEY).",
                g["bucket"].as_str().unwrap_or(""),
                g["bucket"].as_str().unwrap_or("")
            ),
            body.clone(),
        ),
        _ if code == "BYO_ASSUME_ROLE_FAILED" => failed(
            format!(
                "The bucket's grant is {status} (BYO_ASSUME_ROLE_FAILED). {}",
                outcome::byo_trust_step(g)
            ),
            body.clone(),
        ),
        "pending" => failed(
            format!(
                "The bucket's grant is pending. Put the External ID \"{}\" in the role's trust policy \
                 (StringEquals sts:ExternalId), then call byo_check_bucket. ({host_step})",
                g["external_id"].as_str().unwrap_or("")
            ),
            body.clone(),
        ),
        _ => failed(
            format!(
                "The bucket's grant is {status}{}. Fix: {host_step} Then call byo_check_bucket.",
                if code.is_empty() {
                    String::new()
                } else {
                    format!(" ({code})")
                }
            ),
            body.clone(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_description_and_described_fields() {
        let tools = list();
        assert_eq!(tools.len(), 14);
        for t in &tools {
            assert!(t.description.as_deref().is_some_and(|d| d.len() > 20), "{}", t.name);
            let props = t.input_schema.get("properties").and_then(Value::as_object);
            for (field, schema) in props.into_iter().flatten() {
                assert!(
                    schema["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{}.{field} has no description: {schema}",
                    t.name
                );
            }
        }
    }

    #[test]
    fn malformed_arguments_are_protocol_errors() {
        let args = |v: Value| v.as_object().cloned().unwrap_or_default();
        let e = parse::<PollArgs>("aws_poll_grant", args(json!({ "grant_id": 7 })))
            .err()
            .unwrap();
        assert_eq!(e.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        assert!(parse::<PollArgs>("aws_poll_grant", args(json!({ "grant_id": "gr_1", "x": 1 }))).is_err());
        assert!(grant_arg("t", "../admin").is_err());
        assert_eq!(grant_arg("t", "secret_ref://aws/runs/r/gr_1").unwrap(), "gr_1");
    }

    #[test]
    fn a_grant_summary_carries_no_secret_field() {
        let g = json!({ "grant_id": "gr_1", "status": "active", "secret_access_key": "S", "session_token": "T" });
        let s = grant_summary(&g).to_string();
        assert!(!s.contains("\"S\"") && !s.contains("\"T\""), "{s}");
    }
}
