//! Commands an agent's runtime runs next to the agent: `sealgate credential-process`,
//! `sealgate exec` and `sealgate mcp` (the model's tools, [`mcp`]). They talk to a
//! sealgate host over its REST API with an agent key, exactly as any client would, and put an AWS grant's credentials where tools
//! look for them (the AWS CLI's `credential_process`, the SDKs' environment variables
//! and container-credentials endpoint) without them ever passing through the model:
//! the model names a grant (its id or `secret_ref`), the runtime resolves it here.
//!
//! Configuration: `SEALGATE_URL` (the host) and `SEALGATE_TOKEN` (an agent key), for
//! all three. Nothing here prints or logs a secret.
//!
//! Exit codes (the command's own with `exec`, or `128 + N` when a signal `N` ended it):
//!
//! | code | meaning |
//! |---|---|
//! | 2 | usage: a missing setting, a malformed grant id or `secret_ref` |
//! | 3 | the grant is not active: released, expired, denied, pending or timed out |
//! | 4 | the host refused: a wrong or revoked key, another agent's grant, no such grant |
//! | 5 | the host could not be reached, or failed |
//! | 127 | `exec` could not start the command (not found, not executable), as a shell says |

pub mod client;
pub mod container;
pub mod credentials;
pub mod exec;
pub mod mcp;

use std::process::ExitCode;

/// Why an agent command stopped, with its exit code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    #[error("{0}")]
    Usage(String),
    /// 409 `GRANT_NOT_ACTIVE`.
    #[error("the grant is not active: {0}")]
    NotActive(String),
    #[error("sealgate refused (HTTP {status} {code}): {message}")]
    Refused { status: u16, code: String, message: String },
    #[error("cannot reach sealgate: {0}")]
    Unreachable(String),
    /// `exec`'s command could not be started.
    #[error("{0}")]
    CannotStart(String),
}

impl AgentError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AgentError::Usage(_) => 2,
            AgentError::NotActive(_) => 3,
            AgentError::Refused { .. } => 4,
            AgentError::Unreachable(_) => 5,
            AgentError::CannotStart(_) => 127,
        }
    }

    pub fn exit(&self) -> ExitCode {
        eprintln!("sealgate: {self}");
        ExitCode::from(self.exit_code())
    }
}

/// `--grant ID` or `--secret-ref secret_ref://aws/runs/RUN/ID` (as `POST
/// /v1/aws/access` answers): the grant id either way.
pub fn grant_id(grant: Option<&str>, secret_ref: Option<&str>) -> Result<String, AgentError> {
    let id = match (grant, secret_ref) {
        (Some(g), None) => g.to_string(),
        (None, Some(r)) => {
            let rest = r.strip_prefix("secret_ref://aws/runs/").ok_or_else(|| {
                AgentError::Usage(format!("{r:?} is not a secret_ref://aws/runs/RUN/GRANT reference"))
            })?;
            match rest.split('/').collect::<Vec<_>>().as_slice() {
                [run, id] if !run.is_empty() && !id.is_empty() => id.to_string(),
                _ => {
                    return Err(AgentError::Usage(format!(
                        "{r:?} is not a secret_ref://aws/runs/RUN/GRANT reference"
                    )))
                }
            }
        }
        _ => return Err(AgentError::Usage("give exactly one of --grant and --secret-ref".into())),
    };
    if !is_id(&id) {
        return Err(AgentError::Usage(format!("{id:?} is not a grant id")));
    }
    Ok(id)
}

/// Whether `s` has the shape of the host's ids (grants, workspaces): 1–64 of ASCII
/// letters, digits, `_` and `-`, so it can go into a URL path as it is.
pub fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_named_by_id_or_secret_ref() {
        assert_eq!(grant_id(Some("gr_1a2b"), None).unwrap(), "gr_1a2b");
        assert_eq!(
            grant_id(None, Some("secret_ref://aws/runs/run_9/gr_1a2b")).unwrap(),
            "gr_1a2b"
        );
        for (g, r) in [
            (None, None),
            (Some("gr_1"), Some("secret_ref://aws/runs/r/gr_1")),
            (None, Some("secret_ref://aws/runs/gr_1")),
            (None, Some("secret_ref://aws/runs/r/gr_1/x")),
            (None, Some("https://example.com/gr_1")),
            (Some("../admin"), None),
            (Some(""), None),
        ] {
            let e = grant_id(g, r).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{g:?} {r:?}");
        }
    }
}
