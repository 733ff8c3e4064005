//! `--post URL`: each finding, as its JSON line, POSTed to a receiver (a webhook, an
//! alerting bridge). Best effort by design: the monitor's verdict must not depend on
//! whether a receiver is up, so a failed POST is said on stderr and the monitor goes on.

use serde_json::Value;
use std::time::Duration;

/// A receiver may be slow; it must not stall the monitor for long.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Poster {
    url: String,
    agent: ureq::Agent,
}

impl Poster {
    pub fn new(url: &str) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(POST_TIMEOUT))
            .user_agent(concat!("sealgate-verify/", env!("CARGO_PKG_VERSION")))
            .build();
        Poster {
            url: url.to_string(),
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// POSTs `finding` as `application/json`; `Err` says why it was not accepted.
    pub fn post(&self, finding: &Value) -> Result<(), String> {
        let body = finding.to_string();
        let resp = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .map_err(|e| format!("POST {}: {e}", self.url))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("POST {}: HTTP {status}", self.url))
        }
    }
}
