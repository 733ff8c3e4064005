//! Grants as MCP resources, `sealgate://grants/{id}`: read (the grant as the host
//! answers it, which never carries a secret) and subscribe.
//!
//! A subscription is one background task that long-polls the grant
//! (`GET /v1/aws/access/{id}?wait=25`, which the host answers as soon as a pending grant
//! is decided or times out) and sends `notifications/resources/updated` whenever the
//! grant's status differs from the one it last saw. A pending grant is watched through
//! the long poll; an active one is looked at again when it is due to expire (and every
//! minute before that, so a release is noticed too). The task ends when the grant is
//! over (denied, timed out, expired, released), when the client unsubscribes or goes
//! away, or when the grant cannot be read any more.
//!
//! Bounded: at most [`MAX_SUBSCRIPTIONS`] at once, well inside the host's cap of long
//! polls held open per key (`--max-polls-per-key`, 16 by default), and never more than
//! one request in flight per subscription, at least a second apart.

use super::super::client::{Bearer, Sealgate};
use rmcp::model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate, ResourceUpdatedNotificationParam};
use rmcp::service::Peer;
use rmcp::{ErrorData, RoleServer};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::task::AbortHandle;

pub const URI_PREFIX: &str = "sealgate://grants/";
pub const MAX_SUBSCRIPTIONS: usize = 8;
/// Grants `resources/list` shows at most (the most recently seen are kept).
const MAX_LISTED: usize = 1000;
/// Seconds a long poll is held (the host allows up to 30).
const WAIT_SECS: u64 = 25;
/// An active grant is looked at again at least this often.
const ACTIVE_RECHECK_SECS: u64 = 60;

pub fn uri(grant_id: &str) -> String {
    format!("{URI_PREFIX}{grant_id}")
}

/// The grant id a `sealgate://grants/{id}` URI names.
pub fn grant_of(uri: &str) -> Result<String, ErrorData> {
    let id = uri.strip_prefix(URI_PREFIX).ok_or_else(|| {
        ErrorData::invalid_params(
            format!("{uri:?} is not a grant's URI (sealgate://grants/ and the grant's id)"),
            None,
        )
    })?;
    super::super::grant_id(Some(id), None).map_err(|e| ErrorData::invalid_params(e.to_string(), None))
}

pub fn templates() -> Vec<ResourceTemplate> {
    vec![ResourceTemplate::new("sealgate://grants/{grant_id}", "grant")
        .with_title("An AWS access grant")
        .with_description(
            "One AWS access grant as sealgate reports it (status, expiry, secret_ref, decision; never \
             credentials). Subscribe to be sent notifications/resources/updated when a pending grant is \
             approved, denied or times out, and when an active one ends.",
        )
        .with_mime_type("application/json")]
}

pub struct Grants {
    api: Sealgate,
    /// Grants this server requested or was asked about, for `resources/list`.
    known: Mutex<VecDeque<String>>,
    watching: Mutex<HashMap<String, AbortHandle>>,
}

impl Grants {
    pub fn new(api: Sealgate) -> Self {
        Self {
            api,
            known: Mutex::default(),
            watching: Mutex::default(),
        }
    }

    pub fn remember(&self, grant_id: &str) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if !known.iter().any(|k| k == grant_id) {
            known.push_back(grant_id.to_string());
        }
        while known.len() > MAX_LISTED {
            known.pop_front();
        }
    }

    pub fn list(&self) -> Vec<Resource> {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|id| {
                Resource::new(uri(id), format!("grant {id}"))
                    .with_mime_type("application/json")
                    .with_description("An AWS access grant requested through this server")
            })
            .collect()
    }

    pub async fn read(&self, uri: &str) -> Result<ReadResourceResult, ErrorData> {
        let id = grant_of(uri)?;
        let a = self
            .api
            .call(
                "GET",
                &format!("/v1/aws/access/{id}"),
                None,
                Bearer::Key,
                Duration::from_secs(30),
            )
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        if a.status == 404 {
            return Err(ErrorData::resource_not_found(
                format!("no grant {id} for this key"),
                None,
            ));
        }
        if !a.ok() {
            return Err(ErrorData::internal_error(
                format!("sealgate answered HTTP {} {}: {}", a.status, a.code(), a.message()),
                None,
            ));
        }
        self.remember(&id);
        let text = serde_json::to_string_pretty(&a.body).unwrap_or_else(|_| a.body.to_string());
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(text, uri).with_mime_type("application/json")
        ]))
    }

    /// Starts watching; the grant is read first, so the status a later change is
    /// measured against is the one it had when the subscription was acknowledged (an
    /// approval right after `resources/subscribe` returns is still a change).
    pub async fn subscribe(&self, uri: &str, peer: Peer<RoleServer>) -> Result<(), ErrorData> {
        let id = grant_of(uri)?;
        let now = self.read(uri).await?;
        let status = now
            .contents
            .first()
            .and_then(|c| match c {
                ResourceContents::TextResourceContents { text, .. } => {
                    serde_json::from_str::<serde_json::Value>(text).ok()
                }
                _ => None,
            })
            .and_then(|v| v["status"].as_str().map(str::to_string));
        let mut watching = self.watching.lock().unwrap_or_else(|p| p.into_inner());
        watching.retain(|_, task| !task.is_finished());
        if watching.contains_key(uri) {
            return Ok(());
        }
        if watching.len() >= MAX_SUBSCRIPTIONS {
            return Err(ErrorData::invalid_params(
                format!(
                    "at most {MAX_SUBSCRIPTIONS} grants can be watched at once; unsubscribe from one first, or use \
                     aws_poll_grant"
                ),
                None,
            ));
        }
        let task = tokio::spawn(watch(self.api.clone(), id.clone(), uri.to_string(), status, peer));
        watching.insert(uri.to_string(), task.abort_handle());
        drop(watching);
        self.remember(&id);
        Ok(())
    }

    pub fn unsubscribe(&self, uri: &str) {
        if let Some(task) = self.watching.lock().unwrap_or_else(|p| p.into_inner()).remove(uri) {
            task.abort();
        }
    }

    pub fn stop_all(&self) {
        for (_, task) in self.watching.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            task.abort();
        }
    }
}

/// Whether a grant in this status can still change.
fn is_over(status: &str) -> bool {
    matches!(status, "denied" | "timed_out" | "expired" | "released")
}

/// Follows one grant until it is over, notifying the client of each change of status.
async fn watch(api: Sealgate, id: String, uri: String, first: Option<String>, peer: Peer<RoleServer>) {
    if first.as_deref().is_some_and(is_over) {
        return;
    }
    let mut wait = if first.as_deref() == Some("pending") {
        WAIT_SECS
    } else {
        0
    };
    let mut last = first;
    loop {
        let started = tokio::time::Instant::now();
        let path = format!("/v1/aws/access/{id}?wait={wait}");
        let answer = api
            .call("GET", &path, None, Bearer::Key, Duration::from_secs(wait + 15))
            .await;
        let mut pause = Duration::from_secs(1);
        match answer {
            Ok(a) if a.ok() => {
                let status = a.body["status"].as_str().unwrap_or("").to_string();
                if last.as_ref().is_some_and(|l| *l != status) {
                    tracing::debug!(grant = %id, %status, "grant changed; notifying the client");
                    let sent = peer
                        .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri.clone()))
                        .await;
                    if sent.is_err() {
                        return;
                    }
                }
                if is_over(&status) {
                    return;
                }
                wait = if status == "pending" { WAIT_SECS } else { 0 };
                if status == "active" {
                    let left = a.body["expires_at"]
                        .as_u64()
                        .unwrap_or(0)
                        .saturating_sub(crate::now_secs());
                    pause = Duration::from_secs((left + 1).clamp(1, ACTIVE_RECHECK_SECS));
                }
                last = Some(status);
            }
            // Gone, or no longer ours to read: nothing more will come.
            Ok(a) if matches!(a.status, 401 | 403 | 404) => {
                tracing::warn!(grant = %id, status = a.status, "stopped watching the grant: {}", a.code());
                return;
            }
            Ok(a) => {
                tracing::warn!(grant = %id, status = a.status, "reading the grant failed: {}", a.code());
                pause = Duration::from_secs(5);
            }
            Err(e) => {
                tracing::warn!(grant = %id, "reading the grant failed: {e}");
                pause = Duration::from_secs(5);
            }
        }
        // At least `pause` (a second or more) from one request's start to the next's,
        // whatever the host answered.
        tokio::time::sleep_until(started + pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_uris_name_one_grant() {
        assert_eq!(grant_of("sealgate://grants/gr_1a").unwrap(), "gr_1a");
        for bad in [
            "sealgate://grants/",
            "sealgate://grants/../x",
            "sealgate://grants/a/b",
            "file:///etc/passwd",
        ] {
            assert!(grant_of(bad).is_err(), "{bad}");
        }
    }
}
