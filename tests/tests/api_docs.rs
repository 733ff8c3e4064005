//! Docs tests over the host's sources (issue 10, bugs 5 and 6): no binaries, no network.
//!
//! - Every error code the host can answer is listed in `docs/API.md`'s "Error codes"
//!   table, and every code listed there still exists in the sources.
//! - No message carries a placeholder that was never filled in: a `{id}` in a string
//!   literal that is not a format string, or a `{{id}}` escape in one that is, reaches
//!   the client as the literal text `{id}`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `host/src/**/*.rs`, each with its path.
fn host_sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read_dir").flatten().collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).expect("read source");
                out.push((p, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("host/src"), &mut out);
    assert!(out.len() > 20, "found the host's sources");
    out
}

/// A string literal of the source, with what decides how to read it.
struct Literal {
    line: usize,
    text: String,
    /// The innermost open delimiter is a macro's `(` with this name (`format`, `warn`, …).
    macro_name: Option<String>,
    /// Inside `#[…]` (e.g. thiserror's `#[error("{0}")]`).
    in_attribute: bool,
}

/// The string literals of `src` up to its `#[cfg(test)]` module (unit tests are not
/// messages), skipping comments and char literals; raw strings included.
fn literals(src: &str) -> Vec<Literal> {
    let src = match src.find("#[cfg(test)]") {
        Some(i) => &src[..i],
        None => src,
    };
    let b = src.as_bytes();
    let mut out = Vec::new();
    // (delimiter, macro name if `name!(`, attribute)
    let mut stack: Vec<(u8, Option<String>, bool)> = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => line += 1,
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    line += usize::from(b[i] == b'\n');
                    i += 1;
                }
                i += 2;
                continue;
            }
            b'\'' => {
                // A char literal ('x', '\n', '{'), or a lifetime ('a, 'static).
                if b.get(i + 1) == Some(&b'\\') {
                    // Past the backslash and the escaped character, to the closing quote.
                    i += 3;
                    while i < b.len() && b[i] != b'\'' {
                        i += 1;
                    }
                } else if b.get(i + 2) == Some(&b'\'') {
                    i += 2;
                }
            }
            b'#' if b.get(i + 1) == Some(&b'[') => {
                stack.push((b'[', None, true));
                i += 2;
                continue;
            }
            b'(' | b'[' | b'{' => {
                let name = (c == b'(' && i > 0 && b[i - 1] == b'!').then(|| {
                    let end = i - 1;
                    let mut start = end;
                    while start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_') {
                        start -= 1;
                    }
                    src[start..end].to_string()
                });
                let attr = stack.last().is_some_and(|s| s.2);
                stack.push((c, name, attr));
            }
            b')' | b']' | b'}' => {
                stack.pop();
            }
            b'"' | b'r' => {
                let raw = c == b'r'
                    && matches!(b.get(i + 1), Some(b'"' | b'#'))
                    && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'));
                if c == b'r' && !raw {
                    i += 1;
                    continue;
                }
                let start_line = line;
                let mut text = String::new();
                if raw {
                    let mut j = i + 1;
                    let mut hashes = 0;
                    while b[j] == b'#' {
                        hashes += 1;
                        j += 1;
                    }
                    let close: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
                    let body_start = j + 1;
                    let end = body_start + src[body_start..].find(&close).expect("raw string ends");
                    text.push_str(&src[body_start..end]);
                    line += text.matches('\n').count();
                    i = end + close.len();
                } else {
                    let mut j = i + 1;
                    while j < b.len() && b[j] != b'"' {
                        if b[j] == b'\\' {
                            // `\` + newline continues the literal without the newline.
                            if b.get(j + 1) == Some(&b'\n') {
                                line += 1;
                                j += 2;
                                while j < b.len() && b[j].is_ascii_whitespace() {
                                    line += usize::from(b[j] == b'\n');
                                    j += 1;
                                }
                                continue;
                            }
                            text.push(b[j + 1] as char);
                            j += 2;
                            continue;
                        }
                        line += usize::from(b[j] == b'\n');
                        let ch = src[j..].chars().next().expect("char");
                        text.push(ch);
                        j += ch.len_utf8();
                    }
                    i = j + 1;
                }
                let top = stack.last();
                out.push(Literal {
                    line: start_line,
                    text,
                    macro_name: top.and_then(|t| t.1.clone()),
                    in_attribute: top.is_some_and(|t| t.2),
                });
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// `{name}` placeholders (not `{}`, `{0}`, `{:?}` or JSON like `{"a": 1}`) in `s`; with
/// `escaped`, the `{{name}}` form.
fn placeholders(s: &str, escaped: bool) -> Vec<String> {
    let (open, close) = if escaped { ("{{", "}}") } else { ("{", "}") };
    let mut found = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(open) {
        let after = &rest[i + open.len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if !name.is_empty()
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && after[name.len()..].starts_with(close)
            && (escaped || !rest[..i].ends_with('{'))
        {
            found.push(format!("{open}{name}{close}"));
        }
        rest = &rest[i + open.len()..];
    }
    found
}

/// Macros whose first string literal is a format string.
const FORMAT_MACROS: &[&str] = &[
    "format",
    "format_args",
    "write",
    "writeln",
    "print",
    "println",
    "eprint",
    "eprintln",
    "panic",
    "unreachable",
    "assert",
    "assert_eq",
    "assert_ne",
    "debug_assert",
    "trace",
    "debug",
    "info",
    "warn",
    "error",
];

#[test]
fn no_message_carries_an_unfilled_placeholder() {
    let mut bad = Vec::new();
    for (path, src) in host_sources() {
        let rel = path.strip_prefix(root()).unwrap_or(&path).display().to_string();
        // SQL (its comments name routes); a database error never reaches a client.
        if rel.starts_with("host/src/db/") {
            continue;
        }
        for lit in literals(&src) {
            let is_format = lit.macro_name.as_deref().is_some_and(|m| FORMAT_MACROS.contains(&m));
            // A route pattern (`/v1/workspaces/{ws}/keys/{id}`) is axum's, not a message,
            // and an MCP resource template (`sealgate://grants/{grant_id}`) is RFC 6570's.
            let is_route =
                lit.text.starts_with('/') || (lit.text.starts_with("sealgate://") && !lit.text.contains(' '));
            let found = if is_format {
                placeholders(&lit.text, true)
            } else if lit.in_attribute || is_route {
                Vec::new()
            } else {
                placeholders(&lit.text, false)
            };
            for p in found {
                let shown: String = lit.text.chars().take(200).collect();
                bad.push(format!("{rel}:{}: {p} in {shown:?}", lit.line));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "string literals that would show a placeholder to clients (fill it in with format!, or name the thing \
         in words):\n{}",
        bad.join("\n")
    );
}

/// Names in SCREAMING_SNAKE_CASE that are not error codes: the host's environment
/// settings are recognised by how they are read (below); these are values of other
/// systems.
const NOT_CODES: &[&str] = &[
    // A KMS key usage, compared with DescribeKey's answer.
    "ENCRYPT_DECRYPT",
];

/// Every error code the host's sources can answer: each `"CODE"` literal in
/// SCREAMING_SNAKE_CASE with an underscore (`GRANT_NOT_OWNER`), and the one-word codes
/// of the central mapping (`(StatusCode::FORBIDDEN, "FORBIDDEN")` in `error.rs`), minus
/// environment variable names (`SEALGATE_*`, and any literal read with `env::var`).
/// `host/src/agent/` is left out: those are client commands (`sealgate exec`, …) that
/// answer no API request, and their literals are the AWS variables they set.
fn codes_in_sources() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    let mut env_names = BTreeSet::new();
    let api_side = |p: &PathBuf| !p.components().any(|c| c.as_os_str() == "agent");
    for (path, src) in host_sources().into_iter().filter(|(p, _)| api_side(p)) {
        for line in src.lines() {
            if line.contains("env::var") {
                for lit in literals(line) {
                    env_names.insert(lit.text);
                }
            }
        }
        for lit in literals(&src) {
            // The literal itself, and anything quoted inside it (a canned JSON body such
            // as `{"error":{"code":"TOO_MANY_CONNECTIONS",…}}`).
            let quoted = lit.text.split('"').skip(1).step_by(2);
            for t in std::iter::once(lit.text.as_str()).chain(quoted) {
                let screaming = t.len() >= 3
                    && t.starts_with(|c: char| c.is_ascii_uppercase())
                    && t.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if screaming && t.contains('_') {
                    codes.insert(t.to_string());
                }
            }
        }
        if path.ends_with("error.rs") {
            let mut rest = src.as_str();
            while let Some(i) = rest.find("(StatusCode::") {
                rest = &rest[i + 1..];
                let end = rest.find(')').unwrap_or(rest.len());
                if let Some(code) = rest[..end].split('"').nth(1) {
                    if !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                        codes.insert(code.to_string());
                    }
                }
            }
        }
    }
    codes.retain(|c| !c.starts_with("SEALGATE_") && !env_names.contains(c) && !NOT_CODES.contains(&c.as_str()));
    codes
}

/// The first column of `docs/API.md`'s "Error codes" table.
fn codes_in_docs() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(root().join("docs/API.md")).expect("docs/API.md");
    let start = doc
        .find("\n## Error codes\n")
        .expect("docs/API.md has an \"## Error codes\" section");
    let section = &doc[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut codes = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split('|').nth(1).unwrap_or_default();
        for code in cell.split('`').skip(1).step_by(2) {
            codes.insert(code.to_string());
        }
    }
    assert!(codes.len() > 20, "the table lists codes: {codes:?}");
    codes
}

#[test]
fn every_error_code_is_documented_and_every_documented_code_exists() {
    let sources = codes_in_sources();
    for known in [
        "FORBIDDEN",
        "INTERNAL",
        "GRANT_NOT_OWNER",
        "BYO_PRINCIPAL_UNKNOWN",
        "AWS_CREDENTIALS_MISSING",
    ] {
        assert!(sources.contains(known), "the scan finds {known}: {sources:?}");
    }
    let docs = codes_in_docs();
    let undocumented: Vec<_> = sources.difference(&docs).collect();
    let stale: Vec<_> = docs.difference(&sources).collect();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "docs/API.md's \"Error codes\" table is out of date.\nanswered by the host but not listed: \
         {undocumented:?}\nlisted but answered nowhere: {stale:?}"
    );
}

#[test]
fn the_scanner_reads_literals_as_rust_does() {
    let src = r####"
        // "{in_comment}"
        let a = format!("grant {id} and {{ws}}");
        let b = "poll /v1/aws/access/{id}";
        let c = '{'; let q = '\''; let d: &'static str = "x";
        #[error("{message}")]
        let e = r#"raw {raw} "quoted""#;
        let f = "line \
                 continued {cont}";
        tracing::warn!(code, "{detail}");
    "####;
    let lits = literals(src);
    let texts: Vec<&str> = lits.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "grant {id} and {{ws}}",
            "poll /v1/aws/access/{id}",
            "x",
            "{message}",
            "raw {raw} \"quoted\"",
            "line continued {cont}",
            "{detail}"
        ]
    );
    assert_eq!(lits[0].macro_name.as_deref(), Some("format"));
    assert_eq!(lits[1].macro_name, None);
    assert!(lits[3].in_attribute);
    assert_eq!(lits[6].macro_name.as_deref(), Some("warn"));
    assert_eq!(placeholders(texts[0], true), ["{{ws}}"]);
    assert_eq!(placeholders(texts[1], false), ["{id}"]);
    assert!(placeholders(r#"{"hard": false} or {} or {0} or {:?}"#, false).is_empty());
}
