//! Reading and writing frames on an async byte stream (Unix socket or vsock).
//!
//! Kept apart from [`crate::frame`] the way mini-redis splits `frame.rs` from
//! `connection.rs`: the format is pure and testable on byte slices; this file only
//! moves bytes.

use crate::frame::{self, FrameError, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

/// Writes one already-encoded frame (see [`frame::encode`]).
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> Result<(), FrameError> {
    w.write_all(frame).await?;
    Ok(())
}
