//! The log as C2SP `tlog-tiles` serves it, so existing transparency-log clients can
//! read it: `GET /tile/<L>/<N>[.p/<W>]` (hash tiles, public like `/v1/audit/hashes`)
//! and `GET /checkpoint`. Entry bundles (`/tile/entries/…`) are not served: one bundle
//! mixes the leaves of every workspace, and a leaf's contents are readable only by its
//! own workspace (`/v1/audit/entries` applies that rule per leaf).

use crate::error::ApiError;
use crate::App;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
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
fn parse(level: &str, rest: &str) -> Option<TilePath> {
    let level = decimal(level).filter(|l| *l <= 63)? as u8;
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
    Some(TilePath { level, index, width })
}

pub async fn tile(
    State(app): State<Arc<App>>,
    Path((level, rest)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    if level == "entries" {
        return Err(ApiError::coded(
            StatusCode::NOT_FOUND,
            "TILE_ENTRIES_PRIVATE",
            "entry bundles are not served: a bundle would mix every workspace's leaves; read leaf contents \
             with /v1/audit/entries, which shows each caller the leaves of its own workspace",
        ));
    }
    let p = parse(&level, &rest).ok_or_else(|| {
        ApiError::bad_code(
            "INVALID_TILE_PATH",
            "expected /tile/<L>/<N>[.p/<W>] as C2SP tlog-tiles writes it: L 0-63, N in zero-padded 3-digit \
             elements with x before all but the last (1234067 is x001/x234/067), W 1-255",
        )
    })?;
    let hashes = app
        .ledger
        .tree()
        .tile(p.level, p.index, p.width)
        .map_err(|e| ApiError::Internal(format!("reading tile {level}/{rest}: {e}")))?
        .ok_or_else(|| {
            ApiError::coded(
                StatusCode::NOT_FOUND,
                "TILE_NOT_FOUND",
                format!("the log has no tile {level}/{rest} yet"),
            )
        })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            // A tile's bytes never change once it exists (a partial one is named by its width).
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        hashes.concat(),
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
