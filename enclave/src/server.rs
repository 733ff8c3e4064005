//! Accepting host connections and moving frames. Each connection has a reader (this
//! task) and a writer task; each request is handled in its own task, so signatures run
//! on every core while one slow request never blocks the others. A malformed frame
//! closes its connection and nothing else.
//!
//! Most operations are short CPU work (an ES256 signature, a few hashes) and run on the
//! executor's threads. The few that block a thread for long ([`blocks`]: the NSM call of
//! an attestation) run on tokio's blocking pool instead, at most
//! [`MAX_BLOCKING_IN_FLIGHT`] at once, so a burst of attestation requests neither stalls
//! the executor (and every mint behind it) nor grows the blocking pool without bound.

use crate::enclave::Enclave;
use sealgate_shared::addr::Addr;
use sealgate_shared::connection::{read_frame, write_frames};
use sealgate_shared::frame;
use sealgate_shared::protocol::{ErrorCode, Op, Reply, Request, Response, WireError};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Semaphore};

/// Blocking operations run at once; more wait their turn (the host caps how many it
/// sends, see its `--max-attestations-in-flight`). The NSM is one device that answers
/// one request at a time, so more threads would only queue at the device; four keep
/// the enclave's two to four vCPUs busy with the simulator's signatures or RSA.
pub const MAX_BLOCKING_IN_FLIGHT: usize = 4;

/// The operations that block their thread for long: `Attest` and `RecipientAttest`
/// (an ioctl on `/dev/nsm`, or the simulator's ES384 COSE signature and certificate
/// chain). `UnsealKms` waits on KMS and is answered by the async [`Enclave::serve`];
/// it runs once per boot (a second is refused), and the old `Unseal` is refused unread.
pub fn blocks(op: &Op) -> bool {
    matches!(op, Op::Attest { .. } | Op::RecipientAttest { .. })
}

/// The enclave's listening socket: Unix (simulator, tests) or vsock (Nitro).
pub enum Listener {
    Unix(tokio::net::UnixListener),
    Vsock(tokio_vsock::VsockListener),
}

impl Listener {
    pub fn bind(addr: &Addr) -> std::io::Result<Self> {
        match addr {
            Addr::Unix(path) => {
                // A socket file left by a previous run would make bind fail.
                if path.exists() {
                    std::fs::remove_file(path)?;
                }
                Ok(Listener::Unix(tokio::net::UnixListener::bind(path)?))
            }
            Addr::Vsock { cid, port } => Ok(Listener::Vsock(tokio_vsock::VsockListener::bind(
                tokio_vsock::VsockAddr::new(*cid, *port),
            )?)),
        }
    }

    /// Accepts connections forever, serving each in its own task.
    pub async fn serve(self, enclave: Arc<Enclave>) -> std::io::Result<()> {
        // Shared by every connection: the bound is the enclave's, not one connection's.
        let blocking = Arc::new(Semaphore::new(MAX_BLOCKING_IN_FLIGHT));
        loop {
            match &self {
                Listener::Unix(l) => {
                    let (s, _) = l.accept().await?;
                    tokio::spawn(connection(s, enclave.clone(), blocking.clone()));
                }
                Listener::Vsock(l) => {
                    let (s, _) = l.accept().await?;
                    tokio::spawn(connection(s, enclave.clone(), blocking.clone()));
                }
            }
        }
    }
}

/// Serves one connection until the peer closes it or sends something malformed.
/// `blocking` bounds the [`blocks`] operations in flight across all connections.
pub async fn connection<S>(stream: S, enclave: Arc<Enclave>, blocking: Arc<Semaphore>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(4096);
    let writer = tokio::spawn(write_frames(wr, rx));
    loop {
        let body = match read_frame(&mut rd).await {
            Ok(Some(body)) => body,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("closing connection: {e}");
                break;
            }
        };
        let req: Request = match frame::decode(&body) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("closing connection: {e}");
                break;
            }
        };
        let (tx, enclave, blocking) = (tx.clone(), enclave.clone(), blocking.clone());
        tokio::spawn(async move {
            let reply = if blocks(&req.op) {
                handle_blocking(enclave, &blocking, req.op).await
            } else {
                enclave.serve(req.op).await
            };
            let out = frame::encode(&Response { id: req.id, reply }).or_else(|e| {
                let reply = Reply::Error(WireError::new(ErrorCode::Internal, e.to_string()));
                frame::encode(&Response { id: req.id, reply })
            });
            if let Ok(f) = out {
                let _ = tx.send(f).await;
            }
        });
    }
    drop(tx);
    // Responses already being computed still go out unless the peer is gone.
    let _ = writer.await;
}

/// Handles `op` on the blocking pool once one of the `blocking` permits is free.
async fn handle_blocking(enclave: Arc<Enclave>, blocking: &Semaphore, op: Op) -> Reply {
    let internal = |m: String| Reply::Error(WireError::new(ErrorCode::Internal, m));
    // The semaphore is never closed; an error here would be a bug, answered as one.
    let Ok(_permit) = blocking.acquire().await else {
        return internal("the enclave's blocking-work limiter is closed".into());
    };
    match tokio::task::spawn_blocking(move || enclave.handle(op)).await {
        Ok(reply) => reply,
        Err(e) => internal(format!("the operation's worker thread failed: {e}")),
    }
}
