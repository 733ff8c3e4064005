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

use super::model::{self, Grant};
use crate::api::JsonBody;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::App;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::Json;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

pub const EVENT_REQUESTED: &str = "approval.requested";
pub const EVENT_RESOLVED: &str = "approval.resolved";
pub const SIGNATURE_HEADER: &str = "x-sealgate-signature";
pub const TIMESTAMP_HEADER: &str = "x-sealgate-timestamp";
pub const DELIVERY_HEADER: &str = "x-sealgate-delivery";
pub const EVENT_HEADER: &str = "x-sealgate-event";
/// Attempts per delivery before it is given up (and recorded as failed).
pub const MAX_ATTEMPTS: i64 = 6;
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
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

/// Scheme and authority only: what the log may say about a target.
fn target(url: &str) -> String {
    url.parse::<Uri>()
        .ok()
        .and_then(|u| Some(format!("{}://{}", u.scheme_str()?, u.authority()?)))
        .unwrap_or_else(|| "(unparseable)".into())
}

fn check_url(url: &str) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::bad_code("GRANT_INVALID_WEBHOOK", format!("url: {why}"));
    if url.len() > MAX_URL_LEN {
        return Err(bad(&format!("at most {MAX_URL_LEN} characters")));
    }
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("https") | Some("http") => {}
        _ => return Err(bad("must be an http:// or https:// URL")),
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(bad("must name a host"));
    }
    Ok(())
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
    check_url(&body.url)?;
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
    let (rws, rurl, rsecret, now) = (ws.clone(), body.url.clone(), secret.clone(), model::now());
    let leaf = app
        .ledger
        .record(
            "grant.webhook.set",
            json!({ "workspace_id": ws, "target": target(&body.url), "secret_generated": generated, "by": who.key_id }),
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
    let mut v = json!({ "workspace_id": ws, "url": body.url, "log_index": leaf.index });
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
        json!({ "workspace_id": ws, "url": url, "updated_at": updated_at }),
    ))
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

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One client for all deliveries: TLS with the system's roots (rustls, aws-lc-rs).
static CLIENT: LazyLock<Option<HttpClient>> = LazyLock::new(|| {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_provider_and_native_roots(provider.clone()) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("no system TLS roots ({e}); https webhooks will fail, http ones work");
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .ok()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    let connector = builder.https_or_http().enable_http1().build();
    Some(Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
});

/// Sends one attempt: `Ok(status)` if any response came back.
async fn send(url: &str, secret: &str, delivery: &str, event: &str, body: &str) -> Result<u16, String> {
    let client = CLIENT.as_ref().ok_or("no HTTP client (TLS set-up failed)")?;
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("user-agent", "sealgate-webhook")
        .header(SIGNATURE_HEADER, sign(secret, body.as_bytes()))
        .header(TIMESTAMP_HEADER, model::now().to_string())
        .header(DELIVERY_HEADER, delivery)
        .header(EVENT_HEADER, event)
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| format!("building the request: {e}"))?;
    match tokio::time::timeout(SEND_TIMEOUT, client.request(req)).await {
        Err(_) => Err(format!("no response within {} s", SEND_TIMEOUT.as_secs())),
        Ok(Err(e)) => Err(format!("connection failed: {e}")),
        Ok(Ok(resp)) => Ok(resp.status().as_u16()),
    }
}

struct Due {
    id: String,
    workspace_id: String,
    grant_id: String,
    event: String,
    body: String,
    attempts: i64,
}

/// Sends every due delivery once; returns when the next one is due (ms), if any.
async fn round(app: &App) -> Result<Option<i64>, ApiError> {
    let now = now_ms();
    let due: Vec<Due> = app
        .ledger
        .db
        .read(move |c| {
            let mut st = c.prepare(
                "SELECT id, workspace_id, grant_id, event, body, attempts FROM grant_webhook_deliveries \
                 WHERE state = 'pending' AND next_attempt_ms <= ?1 ORDER BY next_attempt_ms LIMIT 20",
            )?;
            let rows = st.query_map(params![now], |r| {
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
        let hook = load(app, &d.workspace_id).await?;
        let attempt = d.attempts + 1;
        let (outcome, url_target) = match &hook {
            None => (Err("the workspace's webhook was removed".to_string()), String::new()),
            Some((url, secret, _)) => (send(url, secret, &d.id, &d.event, &d.body).await, target(url)),
        };
        let ok = matches!(outcome, Ok(s) if (200..300).contains(&s));
        let give_up = !ok && (hook.is_none() || attempt >= MAX_ATTEMPTS);
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
            Err(e) => Some(e.clone()),
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
            "error": error,
            "state": state,
        });
        let (id, err) = (d.id.clone(), error.clone());
        let recorded = app
            .ledger
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
            .await;
        if let Err(e) = recorded {
            tracing::warn!(delivery = %d.id, "recording a webhook attempt failed: {e}");
        }
    }
    let next: Option<i64> = app
        .ledger
        .db
        .read(|c| {
            c.query_row(
                "SELECT MIN(next_attempt_ms) FROM grant_webhook_deliveries WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
        })
        .await?;
    Ok(next)
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
