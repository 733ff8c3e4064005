//! Framing: a 4-byte big-endian length, then exactly one CBOR-encoded message.
//!
//! The length is checked before anything is allocated, so a hostile peer can make us
//! allocate at most [`MAX_FRAME`] bytes per connection. CBOR decoding is ciborium's,
//! with its recursion limit, so nested input cannot exhaust the stack. A frame that
//! fails to decode is an error for that connection only; the caller closes it.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Frames larger than this are refused (ARCHITECTURE §4).
pub const MAX_FRAME: usize = 1 << 20;

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("empty frame")]
    Empty,
    #[error("malformed CBOR message: {0}")]
    Decode(String),
    #[error("cannot encode message: {0}")]
    Encode(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Validates a frame header and returns the body length that follows it.
pub fn body_len(header: [u8; HEADER_LEN]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Encodes `msg` as a complete frame (header and body).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; HEADER_LEN];
    ciborium::into_writer(msg, &mut out).map_err(|e| FrameError::Encode(e.to_string()))?;
    let body = out.len() - HEADER_LEN;
    if body > MAX_FRAME {
        return Err(FrameError::TooLarge(body));
    }
    out[..HEADER_LEN].copy_from_slice(&(body as u32).to_be_bytes());
    Ok(out)
}

/// Decodes one frame body. Trailing bytes after the message are an error: a frame
/// holds exactly one message, so anything else means the peer is confused or hostile.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let mut cursor = std::io::Cursor::new(body);
    let msg = ciborium::from_reader(&mut cursor).map_err(|e| FrameError::Decode(e.to_string()))?;
    if cursor.position() as usize != body.len() {
        return Err(FrameError::Decode("trailing bytes after message".into()));
    }
    Ok(msg)
}

/// Splits a complete frame held in memory into its body (used by tests and fuzzing).
pub fn split(frame: &[u8]) -> Result<&[u8], FrameError> {
    let header: [u8; HEADER_LEN] = frame
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Empty)?;
    let len = body_len(header)?;
    frame
        .get(HEADER_LEN..HEADER_LEN + len)
        .ok_or_else(|| FrameError::Decode(format!("truncated frame: want {len} body bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Op, Request};
    use proptest::prelude::*;

    #[test]
    fn roundtrip() {
        let req = Request {
            id: 7,
            op: Op::Ack { size: 42 },
        };
        let frame = encode(&req).unwrap();
        let back: Request = decode(split(&frame).unwrap()).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn oversize_header_refused_before_allocation() {
        assert!(matches!(
            body_len((MAX_FRAME as u32 + 1).to_be_bytes()),
            Err(FrameError::TooLarge(_))
        ));
        assert!(matches!(body_len([0, 0, 0, 0]), Err(FrameError::Empty)));
        assert_eq!(body_len((MAX_FRAME as u32).to_be_bytes()).unwrap(), MAX_FRAME);
    }

    #[test]
    fn trailing_bytes_refused() {
        let mut frame = encode(&Request {
            id: 1,
            op: Op::Checkpoint,
        })
        .unwrap();
        frame.push(0);
        assert!(decode::<Request>(&frame[HEADER_LEN..]).is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        // 100k nested CBOR arrays: without a recursion limit this overflows the stack.
        let body = vec![0x81u8; 100_000];
        assert!(decode::<Request>(&body).is_err());
        assert!(decode::<ciborium::Value>(&body).is_err());
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        // A byte string claiming 2^63 bytes inside a tiny frame.
        let body = [0x82, 0x01, 0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(decode::<Request>(&body).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = split(&bytes);
            let _ = decode::<Request>(&bytes);
        }

        #[test]
        fn mutated_valid_frames_never_panic(idx in 0usize..64, byte in any::<u8>(), id in any::<u64>()) {
            let req = Request { id, op: Op::Unacked { from: id / 3 } };
            let mut frame = encode(&req).unwrap();
            let i = idx % frame.len();
            frame[i] = byte;
            if let Ok(body) = split(&frame) {
                let _ = decode::<Request>(body);
            }
        }
    }
}
