//! Approval webhooks: a workspace registers a URL, and every request routed to an
//! approver (`approval.requested`) and every resolution (`approval.resolved`: approved,
//! denied, timed out) is POSTed to it as JSON.
//!
//! Each body is signed: `X-Sealgate-Signature: sha256=<hex HMAC-SHA256(secret, body)>`,
//! with `X-Sealgate-Timestamp` (unix seconds of this attempt), `X-Sealgate-Delivery`
//! (stable across retries, for de-duplication) and `X-Sealgate-Event`. The body itself
//! carries the delivery id and its creation time, so the signature covers them.
//!
//! Deliveries are queued in SQLite in the same transaction as the change they report,
//! so a host crash loses none; a background task sends them and retries failures with
//! exponential backoff (`SEALGATE_WEBHOOK_BACKOFF_MS`, default 1000 ms, doubling) up to
//! [`MAX_ATTEMPTS`]. Every attempt is a log leaf naming the target host and the outcome,
//! never the secret or the full URL (webhook URLs often embed tokens).
//!
//! A webhook URL is chosen by a tenant and fetched by the host, so it is an SSRF probe
//! unless fenced: only `https://`, no userinfo, and every delivery resolves the host
//! and connects only to a public address it checked ([`super::webhook_net`]). Sends
//! run concurrently, a few per workspace, with short timeouts, so one workspace's dead
//! receiver never delays another's deliveries.

use super::model::{self, Grant};
use super::webhook_net::{SendError, PER_WORKSPACE};
use crate::api::JsonBody;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::App;
use axum::extract::{Path, State};
use axum::Json;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

pub const EVENT_REQUESTED: &str = "approval.requested";
pub const EVENT_RESOLVED: &str = "approval.resolved";
pub const SIGNATURE_HEADER: &str = "x-sealgate-signature";
pub const TIMESTAMP_HEADER: &str = "x-sealgate-timestamp";
pub const DELIVERY_HEADER: &str = "x-sealgate-delivery";
pub const EVENT_HEADER: &str = "x-sealgate-event";
/// Attempts per delivery before it is given up (and recorded as failed).
pub const MAX_ATTEMPTS: i64 = 6;
const MAX_URL_LEN: usize = 2048;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn backoff_base_ms() -> i64 {
    std::env::var("SEALGATE_WEBHOOK_BACKOFF_MS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v > 0)
        .unwrap_or(1000)
}

/// `sha256=<hex>` over `body` with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A notification queued with the change it reports.
pub struct Outgoing {
    id: String,
    workspace_id: String,
    grant_id: String,
    event: &'static str,
    body: String,
}

impl Outgoing {
    pub fn new(event: &'static str, g: &Grant) -> Self {
        let mut b = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut b);
        let id = format!("wh_{}", hex::encode(b));
        let body = json!({
            "event": event,
            "delivery_id": id,
            "created_at": model::now(),
            "grant": g.view(),
        })
        .to_string();
        Self {
            id,
            workspace_id: g.workspace_id.clone(),
            grant_id: g.id.clone(),
            event,
            body,
        }
    }

    /// Queues the delivery if the workspace has a webhook (inside the caller's transaction).
    pub fn enqueue(&self, c: &Connection) -> rusqlite::Result<()> {
        c.execute(
            "INSERT INTO grant_webhook_deliveries (id, workspace_id, grant_id, event, body, attempts, \
             next_attempt_ms, state, created_at) \
             SELECT ?1, workspace_id, ?3, ?4, ?5, 0, ?6, 'pending', ?7 FROM grant_webhooks WHERE workspace_id = ?2",
            params![
                self.id,
                self.workspace_id,
                self.grant_id,
                self.event,
                self.body,
                now_ms(),
                model::now()
            ],
        )?;
        Ok(())
    }
}

/// The host only: what the log may say about a target (never userinfo, path or query,
/// which often carry tokens).
fn target(url: &str) -> String {
    Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "(unparseable)".into())
}

/// The rules for a webhook URL, checked at `PUT` and again before every delivery (a
/// URL stored before these rules is refused, not sent); the address a name resolves to
/// is checked at delivery, see [`super::webhook_net`].
pub(super) fn check_url(url: &str, allow_private: bool) -> Result<Url, ApiError> {
    let bad = |why: &str| ApiError::bad_code("GRANT_INVALID_WEBHOOK", format!("url: {why}"));
    if url.len() > MAX_URL_LEN {
        return Err(bad(&format!("at most {MAX_URL_LEN} characters")));
    }
    let u = Url::parse(url).map_err(|e| bad(&format!("not a URL ({e}); send https://HOST[:PORT]/PATH")))?;
    if u.scheme() != "https" {
        return Err(ApiError::bad_code(
            "GRANT_WEBHOOK_NOT_HTTPS",
            format!(
                "url: the scheme is {:?}; only https:// URLs are accepted (deliveries carry grant details)",
                u.scheme()
            ),
        ));
    }
    if !u.username().is_empty() || u.password().is_some() {
        // Never echo the URL: its userinfo is the secret we refuse to store.
        return Err(ApiError::bad_code(
            "GRANT_WEBHOOK_USERINFO",
            "url: user:password@ in the URL is not accepted (it would be stored and shown); \
             remove it and verify deliveries by their X-Sealgate-Signature instead",
        ));
    }
    let host = match u.host() {
        Some(h) => h,
        None => return Err(bad("must name a host")),
    };
    // An IP literal can be judged now; a name is judged at each delivery.
    if !allow_private {
        let ip = match host {
            url::Host::Ipv4(a) => Some(std::net::IpAddr::V4(a)),
            url::Host::Ipv6(a) => Some(std::net::IpAddr::V6(a)),
            url::Host::Domain(_) => None,
        };
        if let Some(why) = ip.and_then(super::webhook_net::refused) {
            return Err(ApiError::bad_code(
                "GRANT_WEBHOOK_PRIVATE_ADDRESS",
                format!(
                    "url: {} is {why}; webhooks must reach a public address (the operator can allow \
                     private targets with --allow-private-webhooks)",
                    u.host_str().unwrap_or_default()
                ),
            ));
        }
    }
    Ok(u)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    url: String,
    secret: Option<String>,
}

/// `PUT /v1/workspaces/{ws}/webhook {url, secret?}` (admin). Without a secret one is
/// generated and returned, this once.
pub async fn put(
    State(app): State<Arc<App>>,
    Path(ws): Path<String>,
    who: Principal,
    JsonBody(body): JsonBody<WebhookBody>,
) -> Result<Json<Value>, ApiError> {
    who.require_admin_of(&ws)?;
    let url = check_url(&body.url, app.webhooks.allow_private())?.to_string();
    let generated = body.secret.is_none();
    let secret = match body.secret {
        Some(s) if (16..=512).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) => s,
        Some(_) => {
            return Err(ApiError::bad_code(
                "GRANT_INVALID_WEBHOOK",
                "secret: must be 16-512 printable ASCII characters (or omit it to have one generated)",
            ))
        }
        None => {
            let mut b = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut b);
            format!("whsec_{}", hex::encode(b))
        }
    };
    crate::api::workspace_exists(&app, &ws).await?;
    let (rws, rurl, rsecret, now) = (ws.clone(), url.clone(), secret.clone(), model::now());
    let leaf = app
        .ledger
        .record(
            "grant.webhook.set",
            json!({ "workspace_id": ws, "target": target(&url), "secret_generated": generated, "by": who.key_id }),
            Some(Box::new(move |c| {
                c.execute(
                    "INSERT INTO grant_webhooks (workspace_id, url, secret, updated_at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (workspace_id) DO UPDATE SET url = excluded.url, secret = excluded.secret, \
                     updated_at = excluded.updated_at",
                    params![rws, rurl, rsecret, now],
                )?;
                Ok(())
            })),
        )
        .await?;
    let mut v = json!({ "workspace_id": ws, "url": url, "log_index": leaf.index });
    if generated {
        v["secret"] = json!(secret);
    }
    Ok(Json(v))
}

async fn load(app: &App, ws: &str) -> Result<Option<(String, String, i64)>, ApiError> {
    let w = ws.to_string();
    Ok(app
        .ledger
        .db
        .read(move |c| {
            c.query_row(
                "SELECT url, secret, updated_at FROM grant_webhooks WHERE workspace_id = ?1",
                params![w],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })
        .await?)
}

/// `GET /v1/workspaces/{ws}/webhook` (admin): the URL, never the secret.
pub async fn get(State(app): State<Arc<App>>, Path(ws): Path<String>, who: Principal) -> Result<Json<Value>, ApiError> {
    who.require_admin_of(&ws)?;
    let (url, _, updated_at) = load(&app, &ws)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("workspace {ws} has no webhook")))?;
    Ok(Json(
        json!({ "workspace_id": ws, "url": without_userinfo(&url), "updated_at": updated_at }),
    ))
}

/// `url` as it may be shown: a URL stored before userinfo was refused keeps its
/// password in the database, never in an answer.
fn without_userinfo(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// `DELETE /v1/workspaces/{ws}/webhook` (admin). Queued deliveries are dropped.
pub async fn delete(
    State(app): State<Arc<App>>,
    Path(ws): Path<String>,
    who: Principal,
) -> Result<Json<Value>, ApiError> {
    who.require_admin_of(&ws)?;
    let Some((url, _, _)) = load(&app, &ws).await? else {
        return Err(ApiError::NotFound(format!("workspace {ws} has no webhook")));
    };
    let rws = ws.clone();
    let leaf = app
        .ledger
        .record(
            "grant.webhook.deleted",
            json!({ "workspace_id": ws, "target": target(&url), "by": who.key_id }),
            Some(Box::new(move |c| {
                c.execute("DELETE FROM grant_webhooks WHERE workspace_id = ?1", params![rws])?;
                c.execute(
                    "UPDATE grant_webhook_deliveries SET state = 'failed', last_error = 'webhook removed' \
                     WHERE workspace_id = ?1 AND state = 'pending'",
                    params![rws],
                )?;
                Ok(())
            })),
        )
        .await?;
    Ok(Json(
        json!({ "workspace_id": ws, "deleted": true, "log_index": leaf.index }),
    ))
}

struct Due {
    id: String,
    workspace_id: String,
    grant_id: String,
    event: String,
    body: String,
    attempts: i64,
}

/// Starts every due delivery the concurrency bounds allow; returns when the next
/// not-yet-due one falls due (ms), if any. Deliveries skipped for a busy workspace are
/// picked up when one of its sends finishes (which wakes the sender).
async fn round(app: &Arc<App>) -> Result<Option<i64>, ApiError> {
    let now = now_ms();
    // At most a few per workspace, so one workspace's backlog cannot fill the batch.
    let due: Vec<Due> = app
        .ledger
        .db
        .read(move |c| {
            let mut st = c.prepare(
                "SELECT id, workspace_id, grant_id, event, body, attempts FROM ( \
                   SELECT *, ROW_NUMBER() OVER (PARTITION BY workspace_id ORDER BY next_attempt_ms) AS n \
                   FROM grant_webhook_deliveries WHERE state = 'pending' AND next_attempt_ms <= ?1) \
                 WHERE n <= ?2 ORDER BY next_attempt_ms LIMIT 200",
            )?;
            let rows = st.query_map(params![now, PER_WORKSPACE as i64 * 2], |r| {
                Ok(Due {
                    id: r.get(0)?,
                    workspace_id: r.get(1)?,
                    grant_id: r.get(2)?,
                    event: r.get(3)?,
                    body: r.get(4)?,
                    attempts: r.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await?;
    for d in due {
        let Some(ticket) = app.webhooks.start(&d.id, &d.workspace_id) else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let id = d.id.clone();
            if let Err(e) = deliver(&app, d).await {
                tracing::warn!(delivery = %id, "webhook delivery failed: {e}");
            }
            drop(ticket);
            super::coordination::webhook_wakeup().notify_one();
        });
    }
    let next: Option<i64> = app
        .ledger
        .db
        .read(move |c| {
            c.query_row(
                "SELECT MIN(next_attempt_ms) FROM grant_webhook_deliveries WHERE state = 'pending' \
                 AND next_attempt_ms > ?1",
                params![now],
                |r| r.get(0),
            )
        })
        .await?;
    Ok(next)
}

/// One attempt of one delivery, and its leaf.
async fn deliver(app: &App, d: Due) -> Result<(), ApiError> {
    let hook = load(app, &d.workspace_id).await?;
    let attempt = d.attempts + 1;
    let (outcome, url_target) = match &hook {
        None => (Err(SendError::Gone), String::new()),
        Some((url, secret, _)) => (
            app.webhooks.send(url, secret, &d.id, &d.event, &d.body).await,
            target(url),
        ),
    };
    let ok = matches!(outcome, Ok(s) if (200..300).contains(&s));
    // A refused address or a removed hook is not retried: neither gets better by waiting.
    let final_failure = matches!(outcome, Err(SendError::Refused(_)) | Err(SendError::Gone));
    let give_up = !ok && (final_failure || attempt >= MAX_ATTEMPTS);
    let state = if ok {
        "delivered"
    } else if give_up {
        "failed"
    } else {
        "pending"
    };
    let error = match &outcome {
        Ok(s) if !ok => Some(format!("HTTP {s}")),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };
    let next = now_ms() + backoff_base_ms().saturating_mul(1 << (attempt - 1).min(16));
    let event = json!({
        "delivery_id": d.id,
        "grant_id": d.grant_id,
        "workspace_id": d.workspace_id,
        "event": d.event,
        "attempt": attempt,
        "target": url_target,
        "http_status": outcome.as_ref().ok(),
        "ok": ok,
        "refused": matches!(outcome, Err(SendError::Refused(_))),
        "error": error,
        "state": state,
    });
    let (id, err) = (d.id.clone(), error.clone());
    app.ledger
        .record(
            "grant.webhook.attempt",
            event,
            Some(Box::new(move |c| {
                c.execute(
                    "UPDATE grant_webhook_deliveries SET attempts = ?2, state = ?3, next_attempt_ms = ?4, \
                     last_error = ?5 WHERE id = ?1",
                    params![id, attempt, state, next, err],
                )?;
                Ok(())
            })),
        )
        .await?;
    Ok(())
}

/// The delivery task: a round whenever something changes or a retry falls due.
pub fn spawn(app: Arc<App>) {
    tokio::spawn(async move {
        loop {
            let wake = super::coordination::webhook_wakeup().notified();
            let next = if app.ledger.is_ready() {
                match round(&app).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!("webhook delivery round failed: {e}");
                        None
                    }
                }
            } else {
                None
            };
            let wait_ms = next.map_or(2000, |t| (t - now_ms()).clamp(10, 2000));
            let _ = tokio::time::timeout(Duration::from_millis(wait_ms as u64), wake).await;
        }
    });
}
