//! `sealgate exec (--grant ID | --secret-ref REF) [--region R] -- CMD ARGS…`: runs a
//! command with a grant's AWS credentials, fetched just in time.
//!
//! When the session lasts as long as the grant, the command gets them as
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`. When the grant
//! outlives one session (or with `--refresh`), it gets a loopback container-credentials
//! endpoint instead ([`super::container`]), so the SDKs refresh them until the grant
//! ends. Either way `AWS_REGION` (and `AWS_DEFAULT_REGION`, for the v1 CLI) is `--region`
//! or the grant's first region, and inherited AWS credential settings are removed, so
//! the command uses the grant and nothing else.
//!
//! The command's exit code is passed through, and `SIGINT`, `SIGTERM`, `SIGHUP` and
//! `SIGQUIT` are forwarded to it; killed by a signal, `exec` exits `128 + N`.

use super::client::Sealgate;
use super::credentials::{fetch, grant_state};
use super::{container, AgentError};
use std::process::ExitCode;

/// Inherited settings that would make the command use other credentials than the grant's.
const CLEARED: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
];

/// A session ending this long before the grant counts as outliving one session.
const SLACK_SECS: u64 = 60;

pub struct ExecOptions {
    pub grant: String,
    pub region: Option<String>,
    /// Always serve the container endpoint, even when one session covers the grant.
    pub refresh: bool,
    pub command: Vec<String>,
}

/// Runs the command; the exit code is the command's (or an [`AgentError`]'s).
pub async fn run(api: Sealgate, opts: ExecOptions) -> Result<ExitCode, AgentError> {
    let (program, args) = opts
        .command
        .split_first()
        .ok_or_else(|| AgentError::Usage("name the command to run after --".into()))?;
    let creds = fetch(&api, &opts.grant).await?;
    let region = opts.region.clone().or_else(|| creds.region.clone());
    let outlives = grant_state(&api, &opts.grant)
        .await?
        .expires_at
        .is_some_and(|end| end > creds.expires_at + SLACK_SECS);
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    for var in CLEARED {
        cmd.env_remove(var);
    }
    if let Some(r) = &region {
        cmd.env("AWS_REGION", r).env("AWS_DEFAULT_REGION", r);
    }
    if outlives || opts.refresh {
        let endpoint = container::serve(api.clone(), opts.grant.clone(), creds).await?;
        cmd.env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &endpoint.uri)
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", &endpoint.token);
    } else {
        cmd.env("AWS_ACCESS_KEY_ID", &creds.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &creds.secret_access_key)
            .env("AWS_SESSION_TOKEN", &creds.session_token);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| AgentError::CannotStart(format!("cannot run {program:?}: {e}")))?;
    let status = wait_forwarding_signals(&mut child).await?;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code.clamp(0, 255) as u8),
        (None, Some(sig)) => ExitCode::from((128 + sig).clamp(0, 255) as u8),
        (None, None) => ExitCode::FAILURE,
    })
}

/// Waits for the child, passing on the signals a terminal or a supervisor sends.
async fn wait_forwarding_signals(child: &mut tokio::process::Child) -> Result<std::process::ExitStatus, AgentError> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |k: SignalKind| signal(k).map_err(|e| AgentError::Unreachable(format!("cannot handle signals: {e}")));
    let mut int = listen(SignalKind::interrupt())?;
    let mut term = listen(SignalKind::terminate())?;
    let mut hup = listen(SignalKind::hangup())?;
    let mut quit = listen(SignalKind::quit())?;
    loop {
        let sig = tokio::select! {
            status = child.wait() => {
                return status.map_err(|e| AgentError::Unreachable(format!("waiting for the command: {e}")));
            }
            _ = int.recv() => "INT",
            _ = term.recv() => "TERM",
            _ = hup.recv() => "HUP",
            _ = quit.recv() => "QUIT",
        };
        if let Some(pid) = child.id() {
            // `kill(1)`: the host crate forbids unsafe code, so no libc::kill here.
            let _ = tokio::process::Command::new("kill")
                .args([&format!("-{sig}"), &pid.to_string()])
                .status()
                .await;
        }
    }
}
