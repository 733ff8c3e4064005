//! What the agent-command tests share (`agent_commands.rs`, `agent_awscli.rs`): a
//! command environment that holds only the host and the agent key, an active grant on a
//! fresh bucket, and a command run under `sealgate exec` across its grant's release.

use super::grants_support::*;
use sealgate_tests::bin;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A command with the host and agent key, and no AWS settings of the test's own: no
/// `AWS_*` variable, no instance metadata, no shared credentials file.
pub fn agent_cmd(e: &Env, program: &Path) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c.env("SEALGATE_URL", &e.d.url)
        .env("SEALGATE_TOKEN", &e.t.agent_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .stdin(Stdio::null());
    c
}

/// `sealgate ARGS…` as the agent, to completion.
pub fn sealgate(e: &Env, args: &[&str]) -> Output {
    agent_cmd(e, &bin("sealgate"))
        .args(args)
        .output()
        .expect("run sealgate")
}

/// A deployment, a bucket named after `prefix`, and an active 30-minute grant of
/// `actions` on it: `(env, bucket, grant id)`.
pub fn with_grant(prefix: &str, actions: &[&str]) -> (Env, String, String) {
    let e = Env::start();
    let bucket = unique(prefix);
    e.bucket(&bucket);
    let role = e.role(&unique(&format!("{prefix}-role")));
    e.set_ceiling(ACCOUNT, &open_ceiling(&role, "assume_role"));
    let g = e.grant(&access(&bucket, actions, 1800));
    assert_eq!(g["status"], "active", "{g}");
    let id = str_of(&g, "grant_id").to_string();
    (e, bucket, id)
}

/// Runs `sealgate exec --grant ID --refresh -- COMMAND…`, releases the grant `after`
/// the start, then creates `flag`, which the command waits for before its step after
/// the release; returns the command's output.
pub fn exec_across_release(e: &Env, id: &str, command: &[&str], after: Duration, flag: &Path) -> Output {
    let running = agent_cmd(e, &bin("sealgate"))
        .args(["exec", "--grant", id, "--refresh", "--"])
        .args(command)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sealgate exec");
    std::thread::sleep(after);
    let (s, v) = e.release(id, &json!({}));
    assert_eq!(s, 200, "{v}");
    std::fs::write(flag, "").expect("write the release flag");
    running.wait_with_output().expect("wait for sealgate exec")
}
