//! The witness's HTTP surface: `POST /add-checkpoint` (C2SP `tlog-witness`), and
//! `GET /<hex SHA-256 of origin>/checkpoint`, the spec's monitor retrieval, serving
//! the latest cosigned checkpoint with the log's signature and ours.

use super::add_checkpoint::{check_against, parse_request, verify_submission, Logs, Refusal};
use super::state::{Recorded, State, Swap, Update};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State as AxState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sealgate_shared::cosignature::Cosigner;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Room for a checkpoint with the 16 signatures the signed-note spec says verifiers
/// must accept, even post-quantum ones (≈ 5 kB each), plus a 63-line proof.
pub const MAX_BODY_BYTES: usize = 128 * 1024;

/// The content type of a 409's body, which is the recorded size (spec).
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// A running witness: its key, the logs it accepts, and what it recorded.
pub struct Witness {
    pub cosigner: Cosigner,
    pub logs: Logs,
    pub state: State,
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    Refusal::Internal(e.to_string())
}

impl Witness {
    /// The whole `add-checkpoint` decision; on success the response body (our
    /// cosignature line). Blocking: it reads and writes SQLite.
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Result<String, Refusal> {
        let req = parse_request(body)?;
        let v = verify_submission(&self.logs, &req)?;
        let origin = v.checkpoint.origin.as_str();
        let recorded = self.state.get(origin).map_err(internal)?;
        if let Err(refusal) = check_against(recorded.as_ref(), &req, &v) {
            if let Refusal::Unprocessable(why) = &refusal {
                // The log signed this, so it may be evidence of misbehaviour (spec: MAY log).
                tracing::warn!(
                    origin,
                    why,
                    old_size = req.old_size,
                    note = req.note,
                    "refused an inconsistent checkpoint"
                );
            }
            return Err(refusal);
        }
        let line = self.cosigner.cosign(&v.body, now).map_err(internal)?;
        let served = format!("{}{line}\n", v.log_signed);
        let update = Update {
            origin,
            recorded: Recorded {
                size: v.checkpoint.size,
                root: v.checkpoint.root,
            },
            log_vkeys: &v.log_vkeys,
            checkpoint: &served,
            now,
        };
        match self.state.swap(recorded.as_ref(), &update).map_err(internal)? {
            Swap::Done => Ok(format!("{line}\n")),
            // Another submission was recorded since we read the state: the client
            // retries from the size recorded now.
            Swap::Conflict(now) => Err(Refusal::Conflict(now.map_or(0, |r| r.size))),
        }
    }

    /// The latest cosigned checkpoint of the origin whose SHA-256 is `origin_hash`.
    pub fn checkpoint(&self, origin_hash: &str) -> Result<Option<String>, Refusal> {
        let Some(origin) = self
            .logs
            .origins()
            .find(|o| hex::encode(Sha256::digest(o.as_bytes())) == origin_hash)
        else {
            return Ok(None);
        };
        self.state.checkpoint(origin).map_err(internal)
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn refusal_response(r: Refusal) -> Response {
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match r {
        Refusal::Conflict(size) => text(status, SIZE_CONTENT_TYPE, format!("{size}\n")),
        Refusal::Internal(m) => {
            tracing::error!("add-checkpoint failed: {m}");
            text(status, "text/plain; charset=utf-8", "internal error\n".into())
        }
        other => text(status, "text/plain; charset=utf-8", format!("{other}\n")),
    }
}

async fn add_checkpoint(AxState(w): AxState<Arc<Witness>>, body: Bytes) -> Response {
    let now = crate::now_secs();
    match tokio::task::spawn_blocking(move || w.add_checkpoint(&body, now)).await {
        Ok(Ok(lines)) => text(StatusCode::OK, "text/plain; charset=utf-8", lines),
        Ok(Err(refusal)) => refusal_response(refusal),
        Err(e) => refusal_response(internal(e)),
    }
}

async fn checkpoint(AxState(w): AxState<Arc<Witness>>, Path(origin_hash): Path<String>) -> Response {
    match tokio::task::spawn_blocking(move || w.checkpoint(&origin_hash)).await {
        Ok(Ok(Some(cp))) => text(StatusCode::OK, "text/plain; charset=utf-8", cp),
        Ok(Ok(None)) => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "no checkpoint cosigned for this log\n".into(),
        ),
        Ok(Err(r)) => refusal_response(r),
        Err(e) => refusal_response(internal(e)),
    }
}

pub fn router(w: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/{origin_hash}/checkpoint", get(checkpoint))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(w)
}
