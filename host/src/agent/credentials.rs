//! A grant's AWS credentials as the agent commands hold them, and the AWS CLI's
//! `credential_process` output.

use super::client::Sealgate;
use super::AgentError;
use serde_json::{json, Value};

/// One STS session for a grant. `Debug` does not print the secrets.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// RFC 3339, as the host answers it: when these stop working.
    pub expiration: String,
    /// The same as Unix seconds.
    pub expires_at: u64,
    /// The grant's first region.
    pub region: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

fn field(v: &Value, name: &str) -> Result<String, AgentError> {
    v[name]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| AgentError::Unreachable(format!("the credentials answer lacks {name}")))
}

/// `GET /v1/aws/access/{grant}/credentials`: a fresh STS session (each fetch is logged).
pub async fn fetch(api: &Sealgate, grant: &str) -> Result<Credentials, AgentError> {
    let v = api.get(&format!("/v1/aws/access/{grant}/credentials")).await?;
    Ok(Credentials {
        access_key_id: field(&v, "access_key_id")?,
        secret_access_key: field(&v, "secret_access_key")?,
        session_token: field(&v, "session_token")?,
        expiration: field(&v, "expiration")?,
        expires_at: v["expires_at"]
            .as_u64()
            .ok_or_else(|| AgentError::Unreachable("the credentials answer lacks expires_at".into()))?,
        region: v["region"].as_str().map(str::to_string),
    })
}

/// What `GET /v1/aws/access/{grant}` says of a grant that matters here.
pub struct GrantState {
    /// `active`, `released`, `expired`, …
    pub status: String,
    /// When the grant itself ends (Unix seconds), once it is active.
    pub expires_at: Option<u64>,
}

pub async fn grant_state(api: &Sealgate, grant: &str) -> Result<GrantState, AgentError> {
    let v = api.get(&format!("/v1/aws/access/{grant}")).await?;
    Ok(GrantState {
        status: v["status"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| AgentError::Unreachable("the grant answer lacks status".into()))?,
        expires_at: v["expires_at"].as_u64(),
    })
}

/// The AWS CLI's `credential_process` answer (version 1, with `Expiration`, so the CLI
/// runs the process again when they lapse).
pub fn process_json(c: &Credentials) -> Value {
    json!({
        "Version": 1,
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key,
        "SessionToken": c.session_token,
        "Expiration": c.expiration,
    })
}

/// What the SDKs' container-credentials provider reads.
pub fn container_json(c: &Credentials) -> Value {
    json!({
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key,
        "Token": c.session_token,
        "Expiration": c.expiration,
    })
}
