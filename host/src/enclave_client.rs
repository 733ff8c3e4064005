//! The host's side of the enclave protocol: a small pool of connections, each carrying
//! many requests at once (matched by request id), reconnecting when the enclave
//! restarts.

use sealgate_shared::addr::Addr;
use sealgate_shared::connection::{read_frame, write_frames};
use sealgate_shared::frame;
use sealgate_shared::protocol::{Op, Reply, Request, Response, WireError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

/// How long one request may take before the host gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the enclave at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("the enclave connection closed before it answered")]
    Disconnected,
    #[error("the enclave did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot encode request: {0}")]
    Encode(String),
    #[error("the enclave answered {got} to {op}")]
    UnexpectedReply { op: &'static str, got: String },
    #[error("enclave refused: {0}")]
    Enclave(WireError),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;

struct Live {
    tx: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    /// Set by the reader when the connection ends; the next call reconnects.
    dead: Arc<AtomicBool>,
}

impl Live {
    fn is_closed(&self) -> bool {
        self.dead.load(Ordering::SeqCst) || self.tx.is_closed()
    }
}

pub struct EnclaveClient {
    addr: Addr,
    conns: Vec<tokio::sync::Mutex<Option<Arc<Live>>>>,
    next_conn: AtomicUsize,
    next_id: AtomicU64,
}

impl EnclaveClient {
    pub fn new(addr: Addr, pool: usize) -> Self {
        Self {
            addr,
            conns: (0..pool.max(1)).map(|_| tokio::sync::Mutex::new(None)).collect(),
            next_conn: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        }
    }

    /// Sends one request and waits for its reply. An enclave-side error comes back as
    /// [`ClientError::Enclave`].
    pub async fn call(&self, op: Op) -> Result<Reply, ClientError> {
        let live = self.live().await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = frame::encode(&Request { id, op }).map_err(|e| ClientError::Encode(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        lock(&live.pending).insert(id, tx);
        // Checked after inserting: the reader sets `dead` before clearing `pending`, so
        // a request can never wait on a connection that has already ended.
        if live.is_closed() || live.tx.send(bytes).await.is_err() {
            lock(&live.pending).remove(&id);
            return Err(ClientError::Disconnected);
        }
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(Reply::Error(e))) => Err(ClientError::Enclave(e)),
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(ClientError::Disconnected),
            Err(_) => {
                lock(&live.pending).remove(&id);
                Err(ClientError::Timeout(CALL_TIMEOUT))
            }
        }
    }

    async fn live(&self) -> Result<Arc<Live>, ClientError> {
        let i = self.next_conn.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let mut slot = self.conns[i].lock().await;
        if let Some(live) = slot.as_ref() {
            if !live.is_closed() {
                return Ok(live.clone());
            }
        }
        let live = Arc::new(self.connect().await?);
        *slot = Some(live.clone());
        Ok(live)
    }

    async fn connect(&self) -> Result<Live, ClientError> {
        let err = |e: std::io::Error| ClientError::Connect {
            addr: self.addr.to_string(),
            reason: e.to_string(),
        };
        match &self.addr {
            Addr::Unix(path) => Ok(spawn_io(tokio::net::UnixStream::connect(path).await.map_err(err)?)),
            Addr::Vsock { cid, port } => {
                let s = tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(*cid, *port))
                    .await
                    .map_err(err)?;
                Ok(spawn_io(s))
            }
        }
    }
}

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Reply>>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the reader and writer tasks of one connection.
fn spawn_io<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S) -> Live {
    let (mut rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(4096);
    let pending: Pending = Arc::new(Mutex::new(HashMap::new()));

    tokio::spawn(write_frames(wr, rx));

    let reader_pending = pending.clone();
    let dead = Arc::new(AtomicBool::new(false));
    let reader_dead = dead.clone();
    tokio::spawn(async move {
        loop {
            let body = match read_frame(&mut rd).await {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("enclave connection: {e}");
                    break;
                }
            };
            match frame::decode::<Response>(&body) {
                Ok(resp) => {
                    if let Some(waiter) = lock(&reader_pending).remove(&resp.id) {
                        let _ = waiter.send(resp.reply);
                    }
                }
                Err(e) => {
                    tracing::warn!("enclave sent a malformed frame: {e}");
                    break;
                }
            }
        }
        // Mark the connection dead, then fail everyone still waiting.
        reader_dead.store(true, Ordering::SeqCst);
        lock(&reader_pending).clear();
    });
    Live { tx, pending, dead }
}

/// Unwraps a reply of the expected variant.
#[macro_export]
macro_rules! expect_reply {
    ($reply:expr, $variant:path, $op:literal) => {
        match $reply {
            $variant(v) => Ok(v),
            other => Err($crate::enclave_client::ClientError::UnexpectedReply {
                op: $op,
                got: format!("{:?}", std::mem::discriminant(&other)),
            }),
        }
    };
}
