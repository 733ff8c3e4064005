//! A small client of a sealgate host's REST API for the agent commands: JSON requests
//! with the agent key as a bearer token, JSON back, the API's `{error: {code, message}}`
//! as a typed [`AgentError`]. TLS trusts the system's roots (http only for loopback
//! hosts, which the simulator serves).
//!
//! [`Sealgate::get`] is what `exec` and `credential-process` need: a 2xx body or an
//! error. [`Sealgate::call`] is the general form `sealgate mcp` uses: any method, a JSON
//! body, another bearer (a token holder proving its own leaf) or none (the public audit
//! endpoints), and every HTTP answer handed back whole, since a tool's error text is
//! built from the error body's extra fields (`next_steps`, `checklist`, …).

use super::AgentError;
use http_body_util::{BodyExt, Full, Limited};
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
    http: HyperClient<crate::https_client::Connector, Full<Bytes>>,
}

/// Whose credentials a [`Sealgate::call`] presents.
#[derive(Clone, Copy)]
pub enum Bearer<'a> {
    /// The configured key (`SEALGATE_TOKEN`).
    Key,
    /// Another bearer: a JWT its holder presents to read its own audit leaf.
    Other(&'a str),
    /// None: the public audit endpoints.
    Anonymous,
}

/// An HTTP answer: its status and JSON body (`Value::String` of the text when the body
/// is not JSON, as the audit checkpoint and key are not).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `error.code` of an error answer, or "".
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// `error.message` of an error answer, or the start of the body.
    pub fn message(&self) -> String {
        self.body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| match &self.body {
                Value::String(text) => text.chars().take(300).collect(),
                other => other.to_string().chars().take(300).collect(),
            })
    }
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
        let a = self.call("GET", path, None, Bearer::Key, TIMEOUT).await?;
        if a.ok() {
            return Ok(a.body);
        }
        let (status, code, message) = (a.status, a.code().to_string(), a.message());
        Err(match (status, code.as_str()) {
            (409, "GRANT_NOT_ACTIVE") => AgentError::NotActive(message),
            (s, _) if s >= 500 => AgentError::Unreachable(format!("HTTP {s} {code}: {message}")),
            _ => AgentError::Refused { status, code, message },
        })
    }

    /// `method path` with an optional JSON body, within `timeout` (a long poll needs
    /// more than the default): every HTTP answer is `Ok`, only a failed exchange is
    /// [`AgentError::Unreachable`].
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        bearer: Bearer<'_>,
        timeout: Duration,
    ) -> Result<Answer, AgentError> {
        tokio::time::timeout(timeout, self.exchange(method, path, body, bearer))
            .await
            .unwrap_or_else(|_| {
                Err(AgentError::Unreachable(format!(
                    "no answer within {} s",
                    timeout.as_secs()
                )))
            })
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        bearer: Bearer<'_>,
    ) -> Result<Answer, AgentError> {
        let unreachable = |e: &dyn std::fmt::Display| AgentError::Unreachable(format!("{}: {e}", self.url));
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header("user-agent", "sealgate-agent");
        match bearer {
            Bearer::Key => req = req.header("authorization", format!("Bearer {}", self.token)),
            Bearer::Other(t) => req = req.header("authorization", format!("Bearer {t}")),
            Bearer::Anonymous => {}
        }
        let payload = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(payload)).map_err(|e| unreachable(&e))?;
        let resp = self.http.request(req).await.map_err(|e| unreachable(&e))?;
        let status = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Answer { status, body })
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
