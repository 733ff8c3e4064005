//! The proxy itself: a hyper HTTP/1.1 server on its own runtime thread, forwarding to
//! moto with a hyper-util client.
//!
//! Requests pass through unchanged (method, path, query, headers including `Host` and
//! `Authorization`, body), so SigV4 signatures still hold when moto checks them. Only
//! hop-by-hop headers are dropped in both directions: moto closes every connection
//! (`Connection: close`), and passing that on would make the SDK reconnect for every
//! call instead of keeping its pooled connection to the proxy.

use super::classify::classify;
use super::shapes::{self, full, plain, Body, BoxError};
use super::{lock, trust, webid, Fault, Seen, Shared};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderName, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub(super) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The proxy thread's body: serves until `stopped` fires (or its sender is dropped).
pub(super) fn run(listener: std::net::TcpListener, shared: Arc<Shared>, stopped: tokio::sync::oneshot::Receiver<()>) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return;
    };
    rt.block_on(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        // moto closes every connection anyway; never hold idle ones to it.
        let client: HttpClient = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else {
                        // Out of descriptors or similar: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let (shared, client) = (shared.clone(), client.clone());
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| handle(shared.clone(), client.clone(), req));
                        let _ = http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
        }
    });
    rt.shutdown_background();
}

/// Headers that belong to one connection, not to the message.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    )
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (k, v) in from {
        if !hop_by_hop(k) {
            to.append(k.clone(), v.clone());
        }
    }
}

async fn handle(shared: Arc<Shared>, client: HttpClient, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(plain(400, "unreadable request body")),
    };
    let seen = classify(&parts, &body);
    // Recorded before answering: a request whose client gives up stays with status 0.
    let id = shared.next_request_id.fetch_add(1, Ordering::Relaxed);
    lock(&shared.seen).push((id, seen.clone()));

    let (resp, faulted, forwarded) = answer(&shared, &client, &seen, parts, body).await;
    if let Some(entry) = lock(&shared.seen).iter_mut().rev().find(|(i, _)| *i == id) {
        entry.1.status = resp.status().as_u16();
        entry.1.faulted = faulted;
        entry.1.forwarded = forwarded;
    }
    Ok(resp)
}

/// The response, whether a rule or the token check acted, and whether moto was asked.
async fn answer(
    shared: &Shared,
    client: &HttpClient,
    seen: &Seen,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> (Response<Body>, bool, bool) {
    let request_id = shared.request_id();
    let mut faulted = false;
    if let Some(fault) = shared.take_fault(seen) {
        faulted = true;
        match fault {
            Fault::Error { status, code, message } => {
                let r = shapes::error_for(&seen.service, &seen.method, status, &code, &message, &request_id);
                return (r, true, false);
            }
            Fault::S3WrongRegion { status, region } => {
                let r = shapes::s3_wrong_region(
                    &seen.method,
                    status,
                    &region,
                    seen.region.as_deref(),
                    &seen.path,
                    &request_id,
                );
                return (r, true, false);
            }
            Fault::Delay(d) => tokio::time::sleep(d).await,
        }
    }

    if seen.service == "sts" && seen.action == "AssumeRoleWithWebIdentity" {
        let trusted = lock(&shared.trusted).clone();
        if !trusted.is_empty() {
            let offset = shared.clock_offset.load(Ordering::Relaxed);
            let token = seen.params.get("WebIdentityToken").map(String::as_str);
            if let Err((code, message)) = webid::check(client, token, &trusted, offset).await {
                return (
                    shapes::query_error("sts", 400, code, &message, &request_id),
                    true,
                    false,
                );
            }
        }
    }

    if seen.service == "s3" {
        if let Some(key) = access_key_of(&parts) {
            let expired = lock(&shared.sessions).get(&key).is_some_and(|end| unix_now() >= *end);
            if expired {
                let r = shapes::error_for(
                    "s3",
                    &seen.method,
                    400,
                    "ExpiredToken",
                    "The provided token has expired.",
                    &request_id,
                );
                return (r, true, false);
            }
        }
    }

    let assume = seen.action == "AssumeRole" || seen.action == "AssumeRoleWithWebIdentity";
    if seen.service == "sts" && assume && shared.check_trust.load(Ordering::Relaxed) {
        // Claims of a token the check above verified (or of any token, when no issuer is
        // trusted: then only the trust policy stands between it and moto).
        let claims = seen
            .params
            .get("WebIdentityToken")
            .and_then(|t| webid::unverified_claims(t));
        let presented = trust::Presented {
            action: &seen.action,
            role_arn: seen.params.get("RoleArn").map_or("", String::as_str),
            external_id: seen.params.get("ExternalId").map(String::as_str),
            claims: claims.as_ref(),
        };
        if let Err((code, message)) = trust::check(client, &shared.upstream, &presented).await {
            let status = if code == "AccessDenied" { 403 } else { 500 };
            return (
                shapes::query_error("sts", status, code, &message, &request_id),
                true,
                false,
            );
        }
    }

    (
        forward(shared, client, seen, parts, body, &request_id).await,
        faulted,
        true,
    )
}

async fn forward(
    shared: &Shared,
    client: &HttpClient,
    seen: &Seen,
    parts: hyper::http::request::Parts,
    body: Bytes,
    request_id: &str,
) -> Response<Body> {
    let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let Ok(uri) = format!("{}{pq}", shared.upstream).parse::<Uri>() else {
        return plain(400, "request target the proxy cannot forward");
    };
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    copy_headers(&parts.headers, req.headers_mut());

    let resp = match client.request(req).await {
        Ok(r) => r,
        Err(e) => return plain(502, &format!("fault layer: upstream unreachable: {e}")),
    };
    let (rparts, rbody) = resp.into_parts();
    let mut out = Response::new(full(Bytes::new()));
    *out.status_mut() = rparts.status;
    copy_headers(&rparts.headers, out.headers_mut());

    let status = rparts.status.as_u16();
    let query_service = seen.service == "sts" || seen.service == "iam";
    let assume = seen.action == "AssumeRole" || seen.action == "AssumeRoleWithWebIdentity";
    let lifetime = shared.session_secs.load(Ordering::Relaxed);
    if seen.service == "sts" && assume && status == 200 && lifetime > 0 {
        let Ok(bytes) = rbody.collect().await.map(|b| b.to_bytes()) else {
            return plain(502, "fault layer: upstream body unreadable");
        };
        let end = unix_now() + lifetime;
        let xml = shorten_session(&String::from_utf8_lossy(&bytes), end);
        if let Some(key) = between(&xml, "<AccessKeyId>", "</AccessKeyId>") {
            lock(&shared.sessions).insert(key.to_string(), end);
        }
        out.headers_mut().remove(CONTENT_LENGTH);
        *out.body_mut() = full(Bytes::from(xml));
    } else if query_service && (400..500).contains(&status) {
        let Ok(bytes) = rbody.collect().await.map(|b| b.to_bytes()) else {
            return plain(502, "fault layer: upstream body unreadable");
        };
        match shapes::rewrite_ec2_error(&seen.service, status, &bytes, request_id) {
            Some(xml) => {
                out.headers_mut().remove(CONTENT_LENGTH);
                out.headers_mut()
                    .insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/xml"));
                *out.body_mut() = full(xml);
            }
            None => *out.body_mut() = full(bytes),
        }
    } else {
        *out.body_mut() = rbody.map_err(|e| Box::new(e) as BoxError).boxed();
    }
    out
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The text between the first `open` and the `close` after it.
fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let len = s[start..].find(close)?;
    Some(&s[start..start + len])
}

/// STS's answer with its `<Expiration>` replaced by `end` (Unix seconds).
fn shorten_session(xml: &str, end: i64) -> String {
    let when = aws_sdk_sts::primitives::DateTime::from_secs(end)
        .fmt(aws_sdk_sts::primitives::DateTimeFormat::DateTime)
        .unwrap_or_default();
    match between(xml, "<Expiration>", "</Expiration>") {
        Some(old) => xml.replacen(
            &format!("<Expiration>{old}</Expiration>"),
            &format!("<Expiration>{when}</Expiration>"),
            1,
        ),
        None => xml.to_string(),
    }
}

/// The access key id a SigV4 request is signed with (`Authorization: … Credential=KEY/…`
/// or a presigned URL's `X-Amz-Credential=KEY%2F…`).
fn access_key_of(parts: &hyper::http::request::Parts) -> Option<String> {
    if let Some(auth) = parts.headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let cred = auth.split("Credential=").nth(1)?;
        return cred.split('/').next().map(str::to_string);
    }
    let q = parts.uri.query()?;
    let cred = q.split('&').find_map(|kv| kv.strip_prefix("X-Amz-Credential="))?;
    cred.split("%2F").next().map(str::to_string)
}
