//! The README is part of the interface: its "Try it" block runs as written against a
//! fresh simulator, and its command table names every flag the binaries take. The
//! laptop recipe for grants and BYO storage (`docs/local-aws.md`) runs as written
//! against moto.
//!
//! The block is meant to be pasted into a second terminal while `make run` runs in the
//! first, at the repository root. So the test builds a directory that looks like the
//! repository as `make run` leaves it (`state/` the simulator's state directory,
//! `target/release/sealgate-verify` the verifier) and runs the block's text, taken
//! verbatim from README.md, with `bash -euo pipefail` there; the only thing it sets
//! is `URL`, a variable the block itself defines with a default.

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use sealgate_tests::{bin, free_port, kill9, Api};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of a README section: from its `## ` heading to the next one.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no `## {heading}` section"));
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map(|i| i + 3).unwrap_or(rest.len());
    &rest[..end]
}

/// Every fenced ```sh block of `text`, exactly as written, in order.
fn sh_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + "```sh\n".len()..];
        let len = body.find("```\n").expect("the block is closed");
        blocks.push(body[..len].to_string());
        rest = &body[len..];
    }
    blocks
}

/// The first fenced ```sh block of the "Try it" section, exactly as written.
fn try_it_block(readme: &str) -> String {
    sh_blocks(section(readme, "Try it"))
        .into_iter()
        .next()
        .expect("a ```sh block in \"Try it\"")
}

/// Runs `script` with `bash -euo pipefail` in `dir`, in a process group of its own that
/// is killed afterwards, so background servers the script starts (and does not stop,
/// when it fails half-way) go with it.
fn run_bash(dir: &Path, script: &str, env: &[(&str, &str)], limit: Duration) -> Output {
    use std::os::unix::process::CommandExt;
    let child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .envs(env.iter().copied())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bash");
    let group = child.id().to_string();
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| output_within(child, limit)));
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
    out.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn command_exists(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name} >/dev/null")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A child process killed when the test ends, passed or failed.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill9(&mut self.0);
    }
}

/// `child`'s output, killing it if it has not finished by `limit` (a guard so a broken
/// block fails the test instead of hanging it, not a timing assertion).
fn output_within(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            kill9(&mut child);
            let out = child.wait_with_output().expect("output");
            panic!(
                "the block did not finish within {limit:?}; it printed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// `declare -p` lines (`declare -- NAME="value"`) as a map; our values need no unquoting
/// beyond the surrounding quotes (ids, keys and JWTs have no `"`, `\`, `$` or backtick).
fn declared(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("declare -- "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// What the README's "echo" after each step printed, by its label.
fn echoed<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("the block did not print `{label} …`:\n{stdout}"))
}

/// Checks the token the block minted the way a relying party would: ES256 under the
/// issuer's JWKS, with this issuer, audience and subject.
fn check_token(api: &Api, token: &str, issuer: &str, subject: &str) {
    let (s, jwks) = api.get("/.well-known/jwks.json", None);
    assert_eq!(s, 200, "{jwks}");
    let kid = decode_header(token).expect("a JWT header").kid.expect("a kid");
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .unwrap_or_else(|| panic!("no key {kid} in {jwks}"));
    let key = DecodingKey::from_ec_components(jwk["x"].as_str().expect("x"), jwk["y"].as_str().expect("y"))
        .expect("an EC key");
    let mut v = Validation::new(Algorithm::ES256);
    v.set_issuer(&[issuer]);
    v.set_audience(&["sts.amazonaws.com"]);
    let claims = decode::<Value>(token, &key, &v).expect("the token verifies").claims;
    assert_eq!(claims["sub"], subject, "{claims}");
}

#[test]
fn readme_try_it_block_runs_as_written() {
    // CI machines may have no curl (the block needs it, and README says so).
    for tool in ["curl", "python3"] {
        if !command_exists(tool) {
            eprintln!("SKIPPED readme_try_it_block_runs_as_written: `{tool}` is not installed, and the README's block needs it");
            return;
        }
    }
    let block = try_it_block(&readme());
    assert!(
        block.starts_with("URL=${URL:-http://127.0.0.1:8080}\n"),
        "the block must define URL with make run's default, so it can be pointed elsewhere:\n{block}"
    );

    // The repository as `make run` leaves it.
    let repo = tempfile::tempdir().expect("tempdir");
    let state = repo.path().join("state");
    let release = repo.path().join("target/release");
    std::fs::create_dir_all(&release).expect("target/release");
    std::os::unix::fs::symlink(bin("sealgate-verify"), release.join("sealgate-verify")).expect("symlink");

    // Started but not waited for: waiting is the block's job.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let log = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(repo.path().join("sim.log"))
            .map(Stdio::from)
            .expect("sim.log")
    };
    let _sim = KillOnDrop(
        Command::new(bin("sealgate"))
            .args(["sim", "--listen", &format!("127.0.0.1:{port}"), "--state"])
            .arg(&state)
            .stdin(Stdio::null())
            .stdout(log())
            .stderr(log())
            .spawn()
            .expect("spawn sealgate sim"),
    );

    let script = format!("{block}declare -p WS AG KEY TOKEN\n");
    let out = run_bash(repo.path(), &script, &[("URL", &url)], Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let sim_log = std::fs::read_to_string(repo.path().join("sim.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "the block failed ({}):\n{stdout}\n{stderr}\nsim:\n{sim_log}",
        out.status
    );

    let vars = declared(&stdout);
    let var = |name: &str| {
        vars.get(name)
            .unwrap_or_else(|| panic!("{name} is not set:\n{stdout}"))
            .as_str()
    };
    let (ws, ag, key, token) = (var("WS"), var("AG"), var("KEY"), var("TOKEN"));
    let is_id = |v: &str, prefix: &str| {
        v.strip_prefix(prefix)
            .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    assert!(is_id(ws, "ws_"), "a workspace id: {ws:?}");
    assert!(is_id(ag, "ag_"), "an agent id: {ag:?}");
    assert!(
        key.strip_prefix("sg_")
            .is_some_and(|k| k.len() == 43 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')),
        "an agent key: {key:?}"
    );
    // Each step printed what it got.
    assert_eq!(echoed(&stdout, "workspace"), ws);
    assert_eq!(echoed(&stdout, "agent"), ag);
    assert_eq!(echoed(&stdout, "agent key"), key);
    assert_eq!(echoed(&stdout, "token"), token);

    let api = Api::new(&url);
    check_token(&api, token, &url, &format!("ws:{ws}:agent:{ag}:task:t1"));

    // The last line is `sealgate-verify log`; bash -e exits with its status, 0 here.
    assert!(stdout.contains("\nok    root: "), "{stdout}");
    assert!(stdout.contains("\nVERIFIED\n"), "{stdout}");
}

/// Long flags a `--help` text defines (its option lines: `      --url <URL>` or
/// `  -h, --help`, indented at most six spaces, so a description that happens to start
/// with a flag is not one), without clap's own `--help` and `--version`.
fn flags(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|line| {
            let l = line.trim_start();
            if line.len() - l.len() > 6 {
                return None;
            }
            let rest = match l.strip_prefix("--") {
                Some(r) => r,
                None => {
                    let (short, r) = l.split_once(", --")?;
                    (short.len() == 2 && short.starts_with('-')).then_some(r)?
                }
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            (!name.is_empty()).then(|| format!("--{name}"))
        })
        .filter(|f| f != "--help" && f != "--version")
        .collect()
}

/// The subcommands a `--help` text lists under `Commands:`, without clap's `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

fn help(binary: &Path, args: &[&str]) -> String {
    let out = Command::new(binary)
        .args(args)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success(), "{} {args:?} --help failed", binary.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// True when `flag` occurs in `text` as a whole flag (not as the prefix of a longer one).
fn mentions(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(i, _)| {
        !text[i + flag.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

#[test]
fn readme_commands_table_names_every_flag() {
    let readme = readme();
    let table = section(&readme, "Commands");
    let mut missing = Vec::new();
    let mut checked = 0;
    for name in ["sealgate", "sealgate-enclave", "sealgate-verify"] {
        let binary: PathBuf = bin(name);
        let top = help(&binary, &[]);
        let subs = subcommands(&top);
        if name == "sealgate-verify" {
            // Each subcommand's flags are checked below; make sure none is missed.
            assert_eq!(subs, ["log", "attest", "all", "monitor"], "{top}");
        }
        let mut helps = vec![(name.to_string(), top)];
        for sub in &subs {
            helps.push((format!("{name} {sub}"), help(&binary, &[sub])));
        }
        for (command, text) in helps {
            for flag in flags(&text) {
                checked += 1;
                if !mentions(table, &flag) {
                    missing.push(format!("{command} {flag}"));
                }
            }
        }
    }
    // Guards the parser: the binaries have dozens of flags.
    assert!(checked > 40, "only {checked} flags found in the --help texts");
    assert!(
        missing.is_empty(),
        "README.md's Commands table does not name: {}",
        missing.join(", ")
    );
}

#[test]
fn flag_parser_reads_clap_help() {
    let help = "Options:\n      --url <URL>  Base URL\n      --json  JSON\n  -h, --help  Print help\n  -V, --version  v\n      --max-polls-per-key <N>  x\n          --seal kms in a long description\n          - sim: a possible value\n\nExit codes:\n  0  every check passed\n";
    assert_eq!(flags(help), ["--url", "--json", "--max-polls-per-key"]);
    assert!(mentions("`--max-polls-per-key`", "--max-polls-per-key"));
    assert!(!mentions("`--max-polls-per-key`", "--max-polls"));
    let top = "Commands:\n  log     Verify\n  attest  Verify\n  help    Print\n\nOptions:\n";
    assert_eq!(subcommands(top), ["log", "attest"]);
}

/// The workspace's `.venv` (where `make moto` installs the emulator).
fn venv() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv");
    assert!(
        venv.join("bin/moto_server").exists(),
        "{} has no moto_server: run `make moto` (make test does)",
        venv.display()
    );
    venv
}

#[test]
fn local_aws_recipe_runs_as_written() {
    if !command_exists("curl") {
        eprintln!("SKIPPED local_aws_recipe_runs_as_written: `curl` is not installed, and docs/local-aws.md needs it");
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/local-aws.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let blocks = sh_blocks(&doc);
    assert!(blocks.len() >= 6, "docs/local-aws.md has {} sh blocks", blocks.len());
    assert!(blocks[0].starts_with("MOTO_PORT=${MOTO_PORT:-5000}\n"), "{}", blocks[0]);
    assert!(
        blocks
            .iter()
            .any(|b| b.starts_with("LISTEN=${LISTEN:-127.0.0.1:8081}\n")),
        "the recipe defines LISTEN with a default"
    );

    // The repository as `make moto` and `make run` leave it.
    let repo = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(venv(), repo.path().join(".venv")).expect("symlink .venv");
    let release = repo.path().join("target/release");
    std::fs::create_dir_all(&release).expect("target/release");
    for name in ["sealgate", "sealgate-verify"] {
        std::os::unix::fs::symlink(bin(name), release.join(name)).expect("symlink");
    }

    let (moto_port, listen) = (free_port().to_string(), format!("127.0.0.1:{}", free_port()));
    let env = [
        ("MOTO_PORT", moto_port.as_str()),
        ("LISTEN", listen.as_str()),
        // Nothing of the developer's own AWS set-up takes part.
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let out = run_bash(repo.path(), &blocks.concat(), &env, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let logs = ["moto.log", "sim.log"]
        .map(|f| std::fs::read_to_string(repo.path().join("state/local-aws").join(f)).unwrap_or_default());
    assert!(
        out.status.success(),
        "the recipe failed ({}):\n{stdout}\n{}\nhost:\n{}\nmoto:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        logs[1],
        logs[0]
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let line = |want: &str| lines.contains(&want);
    for want in [
        "user sealgate-host, bucket acme-data",
        "roles sealgate-grant, sealgate-grant-revoker",
        // The grant's credentials read the object; the hard release ends it.
        "us,42",
        "after a hard release the grant is released",
        // BYO: failed before the role exists, active after, the artifact registered.
        "failed",
        "role sealgate-byo-reader",
        "after the check the BYO grant is active",
        "byo-s3://acme-data/reports/q1.csv",
    ] {
        assert!(line(want), "the recipe did not print the line {want:?}:\n{stdout}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("grant gr_") && l.ends_with(" is active")),
        "the grant is active at once:\n{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("sealgate-revoked: {") && l.contains("\"Effect\": \"Deny\"")),
        "the hard release put the deny policy on the role:\n{stdout}"
    );
}
