//! Identifier rules shared by host and enclave. Subjects are `ws:<ws>:agent:<agent>`
//! `[:task:<task>]` for tokens agents mint with `/v1/tokens`, and `ws:<ws>:grant:<grant>`
//! for the tokens the grant path mints for `AssumeRoleWithWebIdentity`. The two
//! namespaces never overlap (the third segment is `agent` or `grant`), which is what
//! lets a grant role's trust policy (`StringLike sub = ws:<ws>:grant:*`) refuse an
//! agent's own token: otherwise an agent could call STS directly and step around the
//! ceiling. An identifier must never contain `:`; AWS trust policies match these
//! strings with `StringLike`, so we also keep out `*` and `?`.

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

/// The token subject for the grant path: only the enclave builds it, and only when the
/// host's mint request names a grant (which `/v1/tokens` never does).
pub fn grant_subject(workspace: &str, grant: &str) -> String {
    format!("ws:{workspace}:grant:{grant}")
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
        assert_eq!(grant_subject("w", "gr_1"), "ws:w:grant:gr_1");
        // No agent or task subject can fall inside the grant namespace.
        for s in [subject("w", "grant", None), subject("w", "a", Some("grant"))] {
            assert!(!s.starts_with("ws:w:grant:"), "{s}");
        }
    }
}
