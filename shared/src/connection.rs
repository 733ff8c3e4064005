//! Reading and writing frames on an async byte stream (Unix socket or vsock).
//!
//! Kept apart from [`crate::frame`] the way mini-redis splits `frame.rs` from
//! `connection.rs`: the format is pure and testable on byte slices; this file only
//! moves bytes.

use crate::frame::{self, FrameError, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

/// Reads one frame body. `Ok(None)` is a clean end of stream between frames; an end of
/// stream inside a frame, an oversize header or an I/O error is `Err`.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut header[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Decode("stream ended inside a frame header".into()))
            };
        }
        got += n;
    }
    let len = frame::body_len(header)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Writes already-encoded frames from `rx` until it closes or the peer goes away,
/// coalescing whatever is queued into one flush: under load many responses (or
/// requests) share one syscall. Both ends of the enclave protocol run one per
/// connection.
pub async fn write_frames<W: AsyncWrite + Unpin>(wr: W, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    while let Some(frame) = rx.recv().await {
        if wr.write_all(&frame).await.is_err() {
            return;
        }
        while let Ok(frame) = rx.try_recv() {
            if wr.write_all(&frame).await.is_err() {
                return;
            }
        }
        if wr.flush().await.is_err() {
            return;
        }
    }
}
