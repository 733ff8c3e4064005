//! A small client of a sealgate host's REST API for the agent commands: `GET` with the
//! agent key as a bearer token, JSON back, the API's `{error: {code, message}}` as a
//! typed [`AgentError`]. TLS trusts the system's roots (http only for loopback hosts,
//! which the simulator serves).

use super::AgentError;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// The host and the agent key (`SEALGATE_URL`, `SEALGATE_TOKEN`). `Debug` hides the key.
#[derive(Clone)]
pub struct Sealgate {
    url: String,
    token: String,
    http: HyperClient<crate::https_client::Connector, Empty<Bytes>>,
}

impl std::fmt::Debug for Sealgate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealgate")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Sealgate {
    /// From the values of `SEALGATE_URL` and `SEALGATE_TOKEN`.
    pub fn new(url: Option<String>, token: Option<String>) -> Result<Self, AgentError> {
        let url = url.filter(|u| !u.trim().is_empty()).ok_or_else(|| {
            AgentError::Usage("set SEALGATE_URL to the sealgate host (e.g. https://broker.example.com)".into())
        })?;
        let token = token
            .filter(|t| t.starts_with("sg_"))
            .ok_or_else(|| AgentError::Usage("set SEALGATE_TOKEN to an agent key (sg_…)".into()))?;
        let parsed =
            url::Url::parse(url.trim()).map_err(|e| AgentError::Usage(format!("SEALGATE_URL {url:?}: {e}")))?;
        let loopback = matches!(parsed.host(), Some(url::Host::Ipv4(a)) if a.is_loopback())
            || matches!(parsed.host(), Some(url::Host::Ipv6(a)) if a.is_loopback())
            || parsed.host_str() == Some("localhost");
        if !(parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback)) {
            return Err(AgentError::Usage(format!(
                "SEALGATE_URL {url:?} must be https (http only on loopback): the agent key travels with every request"
            )));
        }
        let https = crate::https_client::connector().map_err(AgentError::Unreachable)?;
        Ok(Self {
            url: url.trim().trim_end_matches('/').to_string(),
            token,
            http: HyperClient::builder(TokioExecutor::new()).build(https),
        })
    }

    /// `GET path` → the JSON body of a 2xx answer, or the API's error.
    pub async fn get(&self, path: &str) -> Result<Value, AgentError> {
        tokio::time::timeout(TIMEOUT, self.exchange(path))
            .await
            .unwrap_or_else(|_| {
                Err(AgentError::Unreachable(format!(
                    "no answer within {} s",
                    TIMEOUT.as_secs()
                )))
            })
    }

    async fn exchange(&self, path: &str) -> Result<Value, AgentError> {
        let unreachable = |e: &dyn std::fmt::Display| AgentError::Unreachable(format!("{}: {e}", self.url));
        let req = hyper::Request::get(format!("{}{path}", self.url))
            .header("authorization", format!("Bearer {}", self.token))
            .header("user-agent", "sealgate-agent")
            .body(Empty::new())
            .map_err(|e| unreachable(&e))?;
        let resp = self.http.request(req).await.map_err(|e| unreachable(&e))?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(v);
        }
        let code = v["error"]["code"].as_str().unwrap_or("").to_string();
        let message = v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
        Err(match (status, code.as_str()) {
            (409, "GRANT_NOT_ACTIVE") => AgentError::NotActive(message),
            (s, _) if s >= 500 => AgentError::Unreachable(format!("HTTP {s} {code}: {message}")),
            _ => AgentError::Refused { status, code, message },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent key goes with every request: never in the clear to another machine.
    #[test]
    fn the_key_travels_only_over_tls_or_loopback() {
        let key = || Some("sg_k".to_string());
        for ok in [
            "https://broker.example.com",
            "http://127.0.0.1:8080",
            "http://[::1]:80",
            "http://localhost:8080/",
        ] {
            assert!(Sealgate::new(Some(ok.into()), key()).is_ok(), "{ok}");
        }
        for bad in [
            "http://broker.example.com",
            "http://10.0.0.1",
            "ftp://127.0.0.1",
            "not a url",
            "",
        ] {
            let e = Sealgate::new(Some(bad.into()), key()).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        let e = Sealgate::new(Some("https://broker.example.com".into()), Some("not-a-key".into())).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(Sealgate::new(None, key()).is_err());
    }
}
