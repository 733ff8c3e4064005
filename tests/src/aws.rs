//! The local AWS emulator: moto in server mode (what it checks:
//! `docs/TESTING.md` §4), and SDK clients for test code that creates or inspects
//! resources in it directly.
//!
//! moto is installed into `<workspace>/.venv` by `make moto` (which `make test` runs).
//! Each test process starts at most one shared server, on a free loopback port, plus
//! private ones for tests that flip moto's process-global IAM-auth switch.
//!
//! Statics are never dropped, so the server cannot be stopped from a destructor at exit.
//! Instead it runs under a small Python wrapper whose stdin is a pipe this process
//! holds: when the test process ends for any reason (even `kill -9`), the kernel closes
//! the pipe, the wrapper reads EOF and terminates moto.
//!
//! Every client here is configured explicitly (endpoint, region, dummy credentials) with
//! an empty environment, so a developer's own `AWS_*` settings and `~/.aws` files can
//! neither redirect a test to a real account nor change its behaviour.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_s3::config::{ConfigBag, Credentials, Intercept, RuntimeComponents};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The account moto puts everything in unless told otherwise.
pub const ACCOUNT: &str = "123456789012";
/// Dummy credentials (the AWS documentation's example pair); moto accepts any key while
/// IAM auth is off.
pub const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// The region `host_env` gives the host.
pub const REGION: &str = "us-east-1";

/// Runs moto_server (argv[1:]) until stdin reaches EOF, then stops it. It also exits
/// when moto exits on its own, with moto's status, so a failed start is visible.
const WRAPPER: &str = r#"
import os, signal, subprocess, sys, threading, time
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
def stop(*_):
    try:
        os.kill(p.pid, signal.SIGTERM)
    except OSError:
        pass
def watch():
    try:
        sys.stdin.buffer.read()
    finally:
        stop()
        time.sleep(5)
        try:
            os.kill(p.pid, signal.SIGKILL)
        except OSError:
            pass
threading.Thread(target=watch, daemon=True).start()
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
sys.exit(p.wait())
"#;

/// A running moto server.
pub struct Moto {
    pub url: String,
    pub port: u16,
    /// The wrapper process; its stdin pipe is what keeps moto alive.
    child: Mutex<Option<Child>>,
    /// moto's stdout and stderr (an unlinked temporary file).
    log: Mutex<File>,
}

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn moto_paths() -> (PathBuf, PathBuf) {
    let venv = workspace_root().join(".venv").join("bin");
    let server = venv.join("moto_server");
    let python = venv.join("python");
    assert!(
        server.exists() && python.exists(),
        "{} is missing: run `make moto` (make test does) to install the AWS emulator",
        server.display()
    );
    (python, server)
}

impl Moto {
    /// One server per test process, started on first use on a free loopback port.
    pub fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(Moto::start)
    }

    /// A private server (for tests that flip moto's global IAM-auth counter). It stops
    /// when dropped.
    pub fn start() -> Moto {
        let (python, server) = moto_paths();
        let mut last_log = String::new();
        // A free port can be taken between choosing and binding it: try a few.
        for _ in 0..3 {
            let port = crate::free_port();
            let log = tempfile::tempfile().expect("temporary file for moto's log");
            let out = log.try_clone().expect("clone log handle");
            let err = log.try_clone().expect("clone log handle");
            let child = Command::new(&python)
                .arg("-c")
                .arg(WRAPPER)
                .arg(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
            let moto = Moto {
                url: format!("http://127.0.0.1:{port}"),
                port,
                child: Mutex::new(Some(child)),
                log: Mutex::new(log),
            };
            match moto.wait_ready(Duration::from_secs(20)) {
                Ok(()) => return moto,
                Err(why) => {
                    last_log = format!("{why}\n--- moto log (tail) ---\n{}", moto.log_tail(4000));
                    moto.stop();
                }
            }
        }
        panic!("moto_server did not start: {last_log}");
    }

    /// Polls until moto answers its own API, the wrapper exits, or `timeout` passes.
    fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = agent.get(format!("{}/moto-api/data.json", self.url)).call() {
                if r.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            if let Some(child) = self.child.lock().expect("moto child lock").as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("moto exited early ({status})"));
                }
            }
            if Instant::now() > deadline {
                return Err(format!("moto did not answer on {} within {timeout:?}", self.url));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Closes the wrapper's stdin (which stops moto) and reaps it.
    fn stop(&self) {
        let child = self.child.lock().map(|mut c| c.take()).unwrap_or(None);
        if let Some(mut child) = child {
            drop(child.stdin.take());
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last `max` bytes of moto's output (for failure messages).
    pub fn log_tail(&self, max: usize) -> String {
        let Ok(mut f) = self.log.lock() else {
            return String::new();
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(0)).is_err() || f.read_to_end(&mut buf).is_err() {
            return String::new();
        }
        let start = buf.len().saturating_sub(max);
        String::from_utf8_lossy(&buf[start..]).into_owned()
    }

    fn post(&self, path: &str, content_type: &str, body: &str) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let resp = agent
            .post(format!("{}{path}", self.url))
            .header("Content-Type", content_type)
            .send(body.as_bytes());
        match resp {
            Ok(mut r) if r.status().is_success() => {
                let _ = r.body_mut().read_to_string();
            }
            Ok(mut r) => panic!(
                "moto {path}: HTTP {}: {}",
                r.status(),
                r.body_mut().read_to_string().unwrap_or_default()
            ),
            Err(e) => panic!("moto {path}: {e}\n--- moto log (tail) ---\n{}", self.log_tail(4000)),
        }
    }

    /// Clears every resource in every account (`POST /moto-api/reset`).
    pub fn reset(&self) {
        self.post("/moto-api/reset", "application/json", "");
    }

    /// Turns IAM authentication and authorisation on from the next request on. The
    /// switch is global to the server: use it only on a private [`Moto::start`] server.
    /// With it on, only access keys of IAM users (or of roles assumed with them) work.
    pub fn enable_iam_auth(&self) {
        self.post("/moto-api/reset-auth", "text/plain", "0");
    }

    /// Environment for `sealgate serve` so every AWS client goes to `endpoint` (moto or
    /// a fault layer in front of it) with dummy credentials, and nothing of the
    /// developer's own AWS setup (profiles, config files, per-service endpoints,
    /// web-identity files, IMDS) takes part. Entries appended later override these
    /// (`Command::envs` keeps the last value), e.g. a per-service endpoint for a double.
    pub fn host_env(endpoint: &str) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_ENDPOINT_URL_STS", endpoint),
            ("AWS_ENDPOINT_URL_S3", endpoint),
            ("AWS_ENDPOINT_URL_KMS", endpoint),
            ("AWS_ENDPOINT_URL_IAM", endpoint),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "false"),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            // Blank counts as unset for the SDK's environment credentials.
            ("AWS_SESSION_TOKEN", ""),
            ("AWS_PROFILE", "default"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", ""),
            ("AWS_ROLE_ARN", ""),
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", ""),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", ""),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_USE_FIPS_ENDPOINT", "false"),
            ("AWS_USE_DUALSTACK_ENDPOINT", "false"),
            ("AWS_RETRY_MODE", "standard"),
            ("AWS_MAX_ATTEMPTS", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.sort();
        env
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The runtime [`block_on`] uses. One for the whole process: SDK clients pool
/// connections whose tasks live on the runtime that opened them, so a client built in
/// one `block_on` must find the same runtime in the next.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("aws-test-rt")
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Runs async code from a plain `#[test]`.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// SDK configuration for test code: `endpoint`, `region`, the dummy credentials, and no
/// environment or profile files at all.
pub async fn sdk_config(endpoint: &str, region: &str) -> SdkConfig {
    sdk_config_with(
        endpoint,
        region,
        Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, None, "moto"),
    )
    .await
}

/// The same with other credentials (for example an IAM user's key while IAM auth is on,
/// or an assumed role's session).
pub async fn sdk_config_with(endpoint: &str, region: &str, creds: Credentials) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .empty_test_environment()
        .endpoint_url(endpoint)
        .region(Region::new(region.to_string()))
        .credentials_provider(creds)
        .load()
        .await
}

/// Adds `x-moto-account-id` to every request, so moto acts in that account.
#[derive(Debug)]
struct MotoAccount(String);

impl Intercept for MotoAccount {
    fn name(&self) -> &'static str {
        "MotoAccount"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        context
            .request_mut()
            .headers_mut()
            .insert("x-moto-account-id", self.0.clone());
        Ok(())
    }
}

fn s3_builder(conf: &SdkConfig) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::from(conf).force_path_style(true)
}

/// S3 (path-style, as emulators need).
pub async fn s3(endpoint: &str, region: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(s3_builder(&sdk_config(endpoint, region).await).build())
}

/// IAM (global; signed for us-east-1).
pub async fn iam(endpoint: &str) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&sdk_config(endpoint, REGION).await)
}

pub async fn kms(endpoint: &str, region: &str) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(&sdk_config(endpoint, region).await)
}

pub async fn sts(endpoint: &str, region: &str) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::new(&sdk_config(endpoint, region).await)
}

/// S3 acting in moto account `account` (to create another account's buckets).
pub async fn s3_in_account(endpoint: &str, region: &str, account: &str) -> aws_sdk_s3::Client {
    let conf = s3_builder(&sdk_config(endpoint, region).await)
        .interceptor(MotoAccount(account.to_string()))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// IAM acting in moto account `account` (to create another account's roles).
pub async fn iam_in_account(endpoint: &str, account: &str) -> aws_sdk_iam::Client {
    let conf = aws_sdk_iam::config::Builder::from(&sdk_config(endpoint, REGION).await)
        .interceptor(MotoAccount(account.to_string()))
        .build();
    aws_sdk_iam::Client::from_conf(conf)
}

/// KMS acting in moto account `account`.
pub async fn kms_in_account(endpoint: &str, region: &str, account: &str) -> aws_sdk_kms::Client {
    let conf = aws_sdk_kms::config::Builder::from(&sdk_config(endpoint, region).await)
        .interceptor(MotoAccount(account.to_string()))
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}
