//! A running `sealgate witness` (the real binary) for end-to-end tests: started on a
//! port of its own, stopped and started again on the same state, and killed when
//! dropped, even when an assertion fails.

use crate::{bin, free_port, terminate, wait_until};
use sealgate_shared::cosignature::CosignerKey;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct WitnessProcess {
    child: Option<Child>,
    pub url: String,
    pub state: PathBuf,
    pub port: u16,
    pub name: String,
    logs: Vec<String>,
}

impl WitnessProcess {
    /// Creates the witness's key in `state` (once) and returns its vkey, without
    /// starting it: a log's enclave is configured with the vkey before the log exists.
    pub fn print_vkey(state: &Path, name: &str) -> CosignerKey {
        let out = Command::new(bin("sealgate"))
            .args(["witness", "--print-vkey", "--name", name, "--state"])
            .arg(state)
            .output()
            .expect("run sealgate witness --print-vkey");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("--print-vkey prints a cosigner vkey")
    }

    /// Starts a witness named `witness.test/w1` on a free port.
    pub fn start(state: &Path, logs: &[String]) -> Self {
        Self::start_on(state, free_port(), "witness.test/w1", logs)
    }

    pub fn start_on(state: &Path, port: u16, name: &str, logs: &[String]) -> Self {
        let mut w = Self {
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            state: state.to_path_buf(),
            port,
            name: name.to_string(),
            logs: logs.to_vec(),
        };
        w.resume();
        w
    }

    /// Starts the stopped witness again, on the same state and port.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the witness is running");
        let out = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.state.with_extension("log"))
                .map(Stdio::from)
                .expect("witness log file")
        };
        let log_before = self.log().len();
        let mut cmd = Command::new(bin("sealgate"));
        cmd.args(["witness", "--listen", &format!("127.0.0.1:{}", self.port), "--name"])
            .arg(&self.name)
            .arg("--state")
            .arg(&self.state);
        for l in &self.logs {
            cmd.arg("--log").arg(l);
        }
        self.child = Some(
            cmd.stdin(Stdio::null())
                .stdout(out())
                .stderr(out())
                .spawn()
                .expect("spawn sealgate witness"),
        );
        // Its own "listening" line, not just an open port: another test's process may
        // have taken the port `free_port` offered, and would answer in its place.
        let said = format!("sealgate witness listening on http://127.0.0.1:{}", self.port);
        let before = log_before;
        wait_until("the witness to listen", Duration::from_secs(30), || {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("the witness exited ({status}):\n{}", self.log());
            }
            self.log().get(before..).is_some_and(|l| l.contains(&said))
        });
    }

    /// Stops the witness (SIGTERM); [`WitnessProcess::resume`] starts it again.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.resume();
    }

    pub fn vkey(&self) -> CosignerKey {
        let text = std::fs::read_to_string(self.state.join("witness.vkey")).expect("witness.vkey");
        text.trim().parse().expect("a cosigner vkey")
    }

    /// What the witness printed and logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
