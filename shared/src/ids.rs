//! Identifier rules shared by host and enclave. Subjects are `ws:<ws>:agent:<agent>`
//! `[:task:<task>]`, so an identifier must never contain `:`; AWS trust policies match
//! these strings with `StringLike`, so we also keep out `*` and `?`.

/// Longest identifier accepted for a workspace, agent or task.
pub const MAX_ID_LEN: usize = 64;

/// `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
pub fn valid_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_ID_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// The token subject for an agent, optionally narrowed to one task.
pub fn subject(workspace: &str, agent: &str, task: Option<&str>) -> String {
    match task {
        Some(t) => format!("ws:{workspace}:agent:{agent}:task:{t}"),
        None => format!("ws:{workspace}:agent:{agent}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("ws_01HX-a.b"));
        for bad in ["", "-a", "a:b", "a*", "a b", "ü", &"a".repeat(65)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        assert_eq!(subject("w", "a", Some("t")), "ws:w:agent:a:task:t");
    }
}
