//! The HTTP listener: `axum::serve` with two limits it does not have.
//!
//! - **Connection cap** (`--max-connections`): a semaphore around accepted
//!   connections. Over the cap a connection is answered `503 TOO_MANY_CONNECTIONS` and
//!   closed at once, rather than left in the kernel's backlog where the client cannot
//!   tell a full host from a slow one.
//! - **Header-read timeout** (`--header-read-timeout-secs`): hyper's HTTP/1 server closes
//!   a connection whose request headers have not all arrived in time, so a client that
//!   trickles half a request (slowloris) holds a slot for seconds, not forever.
//!
//! Each request carries the peer's address as `ConnectInfo<SocketAddr>` for the
//! per-address rate limits. On shutdown the listener stops accepting and open
//! connections finish their current request (up to [`DRAIN`]).

use super::Limits;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower_service::Service;

/// How long shutdown waits for open connections (a long poll lasts at most 30 s).
const DRAIN: Duration = Duration::from_secs(35);

const REFUSAL_BODY: &str = r#"{"error":{"code":"TOO_MANY_CONNECTIONS","message":"the host has its maximum of open connections (--max-connections); retry shortly, or reuse a keep-alive connection"}}"#;

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Arc<Limits>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = match limits.args.max_connections {
        0 => Semaphore::MAX_PERMITS,
        n => n as usize,
    };
    let slots = Arc::new(Semaphore::new(cap));
    let header_timeout = match limits.args.header_read_timeout_secs {
        0 => None,
        s => Some(Duration::from_secs(s)),
    };
    // Flipped once on shutdown; every connection then finishes its request and closes.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            limits.connections_refused.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().call(req)
        });
        let mut builder = http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
        let limits = limits.clone();
        let mut stop = stop_rx.clone();
        limits.connections_open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { drop(stop.wait_for(|s| *s).await) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                if e.is_timeout() {
                    limits.header_timeouts.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(%peer, "connection ended: {e}");
            }
            limits.connections_open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + DRAIN;
    while limits.connections_open.load(Ordering::Relaxed) > 0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("connections still open after {} s; closing them", DRAIN.as_secs());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Answers a connection over the cap and closes it.
async fn refuse(mut stream: TcpStream) {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{REFUSAL_BODY}",
        REFUSAL_BODY.len()
    );
    // Answer, close our side, then drain what the client sent until it closes too:
    // closing with unread data would reset the connection and lose the answer.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
