//! The `sealgate` binary's command line, as an operator first meets it.
//!
//! Also why this file exists at all: cargo builds a package's plain binary for `cargo
//! test` only when the package has integration tests, and the end-to-end suites in
//! `tests/` start `target/debug/sealgate`. With this file, `make build`'s one
//! `cargo test --all-targets --no-run` builds it with the same features as everything
//! else (a separate `cargo build --bins` resolves features without dev-dependencies and
//! compiled the whole AWS SDK a second time).

use std::process::Command;

fn sealgate(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(args)
        .output()
        .expect("run sealgate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn help_lists_the_two_ways_to_run_the_host() {
    let (code, text) = sealgate(&["--help"]);
    assert_eq!(code, 0, "{text}");
    for cmd in ["serve", "sim"] {
        assert!(text.contains(cmd), "`sealgate --help` must list {cmd}:\n{text}");
    }
}

#[test]
fn the_limits_and_webhook_flags_the_readme_documents_exist_on_both_commands() {
    for cmd in ["serve", "sim"] {
        let (code, text) = sealgate(&[cmd, "--help"]);
        assert_eq!(code, 0, "{text}");
        for flag in [
            "--rate-mint-per-key",
            "--rate-grant-per-addr",
            "--max-connections",
            "--header-read-timeout-secs",
            "--trusted-proxy",
            "--allow-private-webhooks",
            "--webhook-ca-file",
        ] {
            assert!(text.contains(flag), "`sealgate {cmd} --help` lacks {flag}:\n{text}");
        }
    }
}

#[test]
fn a_mistyped_command_is_a_usage_error_not_a_start() {
    let (code, text) = sealgate(&["srve"]);
    assert_eq!(code, 2, "clap's usage-error status: {text}");
    assert!(text.contains("serve"), "the error suggests the real command: {text}");
}

#[test]
fn version_prints_the_workspace_version() {
    let (code, text) = sealgate(&["--version"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(text.trim(), format!("sealgate {}", env!("CARGO_PKG_VERSION")));
}
