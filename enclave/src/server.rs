//! Accepting host connections and moving frames. Each connection has a reader (this
//! task) and a writer task; each request is handled in its own task, so signatures run
//! on every core while one slow request never blocks the others. A malformed frame
//! closes its connection and nothing else.

use crate::enclave::Enclave;
use sealgate_shared::addr::Addr;
use sealgate_shared::connection::{read_frame, write_frames};
use sealgate_shared::frame;
use sealgate_shared::protocol::{ErrorCode, Reply, Request, Response, WireError};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

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
        loop {
            match &self {
                Listener::Unix(l) => {
                    let (s, _) = l.accept().await?;
                    tokio::spawn(connection(s, enclave.clone()));
                }
                Listener::Vsock(l) => {
                    let (s, _) = l.accept().await?;
                    tokio::spawn(connection(s, enclave.clone()));
                }
            }
        }
    }
}

/// Serves one connection until the peer closes it or sends something malformed.
pub async fn connection<S>(stream: S, enclave: Arc<Enclave>)
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
        let (tx, enclave) = (tx.clone(), enclave.clone());
        tokio::spawn(async move {
            let reply = enclave.serve(req.op).await;
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
