//! The log as C2SP `tlog-tiles` serves it, so existing transparency-log clients can
//! read it: `GET /tile/<L>/<N>[.p/<W>]` (hash tiles, public like `/v1/audit/hashes`),
//! `GET /tile/entries/<N>[.p/<W>]` (entry bundles) and `GET /checkpoint`.
//!
//! An entry bundle is leaf *contents*, so it follows `/v1/audit/entries`' read rule
//! ([`audit::Readable`]), applied to the bundle as a whole: it is served only to a key
//! that may read every leaf in it. A bundle cannot be served with some entries left
//! out (its bytes are what a client hashes against the level-0 tile), so the operator
//! key reads every bundle, a workspace's `auditor` or `admin` key reads the bundles
//! that hold only its own workspace's leaves, and everyone else reads the hashes.
//! Bundles are not stored a second time: the `leaves` table holds each entry's bytes
//! in index order, which is exactly a bundle's content.

use super::audit::{self, Caller, Readable};
use crate::error::ApiError;
use crate::App;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use sealgate_shared::merkle::tiles::WIDTH;
use std::sync::Arc;

/// A tile path's parts: level, index, width (`None`: full).
#[derive(Debug, PartialEq, Eq)]
struct TilePath {
    level: u8,
    index: u64,
    width: Option<u16>,
}

/// A decimal with no leading zero (the spec's `<L>` and `<W>`).
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `<N>[.p/<W>]`: zero-padded 3-digit elements, all but the last prefixed with `x`.
fn parse_index(rest: &str) -> Option<(u64, Option<u16>)> {
    let mut parts: Vec<&str> = rest.split('/').collect();
    let mut width = None;
    if parts.len() >= 2 && parts[parts.len() - 2].ends_with(".p") {
        let w = decimal(parts.pop()?).filter(|w| (1..=255).contains(w))?;
        width = Some(w as u16);
        let last = parts.pop()?;
        parts.push(last.strip_suffix(".p")?);
    }
    // u64::MAX has 20 digits: at most 7 elements.
    if parts.is_empty() || parts.len() > 7 {
        return None;
    }
    let mut index: u64 = 0;
    for (i, p) in parts.iter().enumerate() {
        let digits = if i + 1 < parts.len() { p.strip_prefix('x')? } else { p };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        index = index.checked_mul(1000)?.checked_add(digits.parse::<u64>().ok()?)?;
    }
    // Canonical: no leading all-zero element (index 5 is "005", not "x000/005").
    if parts.len() > 1 && parts[0] == "x000" {
        return None;
    }
    Some((index, width))
}

/// `<L>/<N>[.p/<W>]` of a hash tile.
fn parse(level: &str, rest: &str) -> Option<TilePath> {
    let level = decimal(level).filter(|l| *l <= 63)? as u8;
    let (index, width) = parse_index(rest)?;
    Some(TilePath { level, index, width })
}

const PATH_RULE: &str = "expected /tile/<L>/<N>[.p/<W>] or /tile/entries/<N>[.p/<W>] as C2SP tlog-tiles writes \
     them: L 0-63, N in zero-padded 3-digit elements with x before all but the last (1234067 is x001/x234/067), \
     W 1-255";

fn bad_path() -> ApiError {
    ApiError::bad_code("INVALID_TILE_PATH", PATH_RULE)
}

fn not_found(what: &str) -> ApiError {
    ApiError::coded(
        StatusCode::NOT_FOUND,
        "TILE_NOT_FOUND",
        format!("the log has no {what} yet"),
    )
}

/// `GET /tile/{level}/{*rest}`. `caller` matters only for entry bundles; a hash tile
/// is public, so a malformed `Authorization` does not stop one being served.
pub async fn tile(
    State(app): State<Arc<App>>,
    caller: Result<Caller, ApiError>,
    Path((level, rest)): Path<(String, String)>,
) -> Result<axum::response::Response, ApiError> {
    if level == "entries" {
        return entries(&app, caller?, &rest).await.map(IntoResponse::into_response);
    }
    let p = parse(&level, &rest).ok_or_else(bad_path)?;
    let hashes = app
        .ledger
        .tree()
        .tile(p.level, p.index, p.width)
        .map_err(|e| ApiError::Internal(format!("reading tile {level}/{rest}: {e}")))?
        .ok_or_else(|| not_found(&format!("tile {level}/{rest}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            // A tile's bytes never change once it exists (a partial one is named by its width).
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        hashes.concat(),
    )
        .into_response())
}

/// Entry bundle `rest`: each leaf's bytes as a big-endian `u16` length and the bytes,
/// in index order, for the leaves `[N·256, N·256 + W)` of the committed tree.
async fn entries(app: &App, caller: Caller, rest: &str) -> Result<impl IntoResponse, ApiError> {
    let readable = match caller {
        Caller::Key(p) => Readable::of(&p)?,
        Caller::Anonymous | Caller::Token(_) => {
            return Err(ApiError::Unauthenticated(format!(
                "entry bundles are leaf contents; {}",
                audit::CONTENTS_NEED_KEY
            )))
        }
    };
    let (index, width) = parse_index(rest).ok_or_else(bad_path)?;
    let width = u64::from(width.unwrap_or(WIDTH as u16));
    let first = index
        .checked_mul(WIDTH as u64)
        .ok_or_else(|| not_found(&format!("entry bundle {rest}")))?;
    // The tree is what the hash tiles are cut from, so a bundle exists exactly when the
    // level-0 tile of the same name does.
    let size = app.ledger.tree().len();
    if first.checked_add(width).is_none_or(|end| end > size) {
        return Err(not_found(&format!("entry bundle {rest}")));
    }
    let rows = audit::stored_leaves(app, first, first + width).await?;
    // Decided on the rows alone, before anything is served. The refusal names the first
    // leaf the key may not read, which is no more than `/v1/audit/entries` shows (a
    // placeholder with only its hash); it never names whose leaf it is.
    if let Some((idx, _, _)) = rows.iter().find(|(_, _, ws)| !readable.allows(ws.as_deref())) {
        return Err(ApiError::coded(
            StatusCode::FORBIDDEN,
            "TILE_ENTRIES_PRIVATE",
            format!(
                "entry bundle {rest} holds leaves this key may not read (leaf {idx} is not its workspace's): a \
                 bundle is served only to a key that may read every leaf in it; read the rest with \
                 /v1/audit/entries, which shows each caller the leaves it may read, and the hashes with /tile/0/{rest}"
            ),
        ));
    }
    let contiguous = rows.len() as u64 == width && rows.iter().zip(first..).all(|((idx, _, _), want)| *idx == want);
    if !contiguous {
        return Err(ApiError::Internal(format!(
            "the database holds {} of the {width} leaves of entry bundle {rest}",
            rows.len()
        )));
    }
    let mut body = Vec::with_capacity(rows.iter().map(|(_, b, _)| 2 + b.len()).sum());
    for (idx, bytes, _) in &rows {
        // Leaves are bounded far below this (`leaf::MAX_HOST_EVENT_BYTES` plus the envelope).
        let len = u16::try_from(bytes.len()).map_err(|_| {
            ApiError::Internal(format!(
                "leaf {idx} is {} bytes, too long for an entry bundle",
                bytes.len()
            ))
        })?;
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(bytes);
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            // Immutable like a hash tile, but for this key's eyes only.
            (header::CACHE_CONTROL, "private, max-age=31536000, immutable"),
            (header::VARY, "Authorization"),
        ],
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(level: u8, index: u64, width: Option<u16>) -> Option<TilePath> {
        Some(TilePath { level, index, width })
    }

    #[test]
    fn reads_tile_paths_as_the_spec_writes_them() {
        assert_eq!(parse("0", "000"), tp(0, 0, None));
        assert_eq!(parse("2", "x001/x234/067"), tp(2, 1_234_067, None));
        assert_eq!(parse("0", "x001/x234/067.p/8"), tp(0, 1_234_067, Some(8)));
        assert_eq!(parse("63", "005.p/255"), tp(63, 5, Some(255)));
        for (l, rest) in [
            ("00", "000"),
            ("64", "000"),
            ("0", "5"),
            ("0", "0005"),
            ("0", "001/234"),
            ("0", "x000/005"),
            ("0", "000.p/0"),
            ("0", "000.p/256"),
            ("0", "000.p/08"),
            ("0", "000.p"),
            ("0", ""),
            ("0", "x1a2/003"),
            ("0", "x018/x446/x744/x073/x709/x551/616"),
            ("-1", "000"),
        ] {
            assert_eq!(parse(l, rest), None, "{l}/{rest}");
        }
    }
}
