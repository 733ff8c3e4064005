//! IAM wildcard patterns, and whether one pattern stays inside another.
//!
//! IAM matches `Action` and `Resource` values with two wildcards: `*` (any run of
//! characters) and `?` (one character). Actions compare case-insensitively; resource
//! ARNs case-sensitively. In an ARN a wildcard stays inside its colon-separated segment,
//! except that a `*` that ends a segment (followed by `:` or the end of the pattern) may
//! run across colons, and the sixth segment (the resource part) may itself contain
//! colons (IAM User Guide, "Using wildcards in resource ARNs").
//!
//! A grant request may itself contain wildcards (`s3:Get*`), so the ceiling check is not
//! "does this string match" but "is every string the request pattern matches also
//! matched by the ceiling pattern" ([`Pattern::covers`]). That check is conservative: it
//! never says yes when the answer is no, but it can say no for a request written in a
//! stranger shape than the ceiling (`??*` against `?*?`), which then surfaces as a denial
//! naming the pattern — the safe direction for a security boundary.

/// What a `*` or `?` may stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Any character.
    Any,
    /// Any character but `:` (a wildcard inside an ARN segment).
    NoColon,
}

impl Class {
    fn admits(self, c: char) -> bool {
        self == Class::Any || c != ':'
    }

    /// Every character `inner` admits, `self` admits too.
    fn includes(self, inner: Class) -> bool {
        self == Class::Any || inner == Class::NoColon
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(char),
    One(Class),
    Many(Class),
}

/// A compiled IAM pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
}

/// How a pattern's text is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `service:Action`: case-insensitive, wildcards match anything.
    Action,
    /// An ARN (or `*`): case-sensitive, wildcards respect segments.
    Resource,
    /// A plain name such as a region: case-sensitive, wildcards match anything.
    Plain,
}

impl Pattern {
    pub fn new(text: &str, kind: Kind) -> Self {
        let chars: Vec<char> = match kind {
            Kind::Action => text.chars().flat_map(char::to_lowercase).collect(),
            _ => text.chars().collect(),
        };
        let mut tokens = Vec::with_capacity(chars.len());
        let mut colons = 0;
        for (i, &c) in chars.iter().enumerate() {
            // Past the fifth colon we are in the resource part, where colons are data.
            let in_resource_part = colons >= 5;
            let class = if kind != Kind::Resource || in_resource_part {
                Class::Any
            } else {
                Class::NoColon
            };
            match c {
                '*' => {
                    let ends_segment = chars.get(i + 1).is_none_or(|&n| n == ':');
                    let class = if ends_segment { Class::Any } else { class };
                    // `**` is the same as `*`; keep the wider class.
                    if let Some(Token::Many(prev)) = tokens.last_mut() {
                        if class == Class::Any {
                            *prev = Class::Any;
                        }
                    } else {
                        tokens.push(Token::Many(class));
                    }
                }
                '?' => tokens.push(Token::One(class)),
                ':' => {
                    colons += 1;
                    tokens.push(Token::Lit(c));
                }
                _ => tokens.push(Token::Lit(c)),
            }
        }
        Self { tokens }
    }

    /// Whether the concrete value `text` (no wildcards) matches.
    pub fn matches(&self, text: &str, kind: Kind) -> bool {
        let value = match kind {
            Kind::Action => text.to_lowercase(),
            _ => text.to_string(),
        };
        let lits: Vec<Token> = value.chars().map(Token::Lit).collect();
        covers_tokens(&self.tokens, &lits)
    }

    /// Whether every value `inner` matches is also matched by `self` (conservative; see
    /// the module documentation).
    pub fn covers(&self, inner: &Pattern) -> bool {
        covers_tokens(&self.tokens, &inner.tokens)
    }

    /// Whether some value is matched by both patterns (exact).
    pub fn overlaps(&self, other: &Pattern) -> bool {
        overlaps_tokens(&self.tokens, &other.tokens)
    }
}

/// Whether one wildcard-free character fits both tokens' character sets. Every class
/// admits `a`, so two wildcards always share a character.
fn one_fits(x: &Token, y: &Token) -> bool {
    match (x, y) {
        (Token::Lit(a), Token::Lit(b)) => a == b,
        (Token::Lit(a), Token::One(c) | Token::Many(c)) | (Token::One(c) | Token::Many(c), Token::Lit(a)) => {
            c.admits(*a)
        }
        _ => true,
    }
}

/// Emptiness of the intersection of two patterns: `ok[i][j]` says the suffixes from
/// `i` and `j` share a value. A `*` on either side may stand for nothing, or for one
/// character that also fits the other side's token (then stays).
fn overlaps_tokens(p: &[Token], q: &[Token]) -> bool {
    let (n, m) = (p.len(), q.len());
    let mut ok = vec![vec![false; m + 1]; n + 1];
    ok[n][m] = true;
    for i in (0..=n).rev() {
        for j in (0..=m).rev() {
            if i == n && j == m {
                continue;
            }
            let (x, y) = (p.get(i), q.get(j));
            let mut v = false;
            if let Some(Token::Many(_)) = x {
                v |= ok[i + 1][j];
            }
            if let Some(Token::Many(_)) = y {
                v |= ok[i][j + 1];
            }
            if let (Some(x), Some(y)) = (x, y) {
                if one_fits(x, y) {
                    let i2 = if matches!(x, Token::Many(_)) { i } else { i + 1 };
                    let j2 = if matches!(y, Token::Many(_)) { j } else { j + 1 };
                    if (i2, j2) != (i, j) {
                        v |= ok[i2][j2];
                    }
                }
            }
            ok[i][j] = v;
        }
    }
    ok[0][0]
}

/// Dynamic programme over (outer position, inner position): `ok[i][j]` says the outer
/// suffix from `i` covers the inner suffix from `j`. O(n·m) time and O(m) space.
fn covers_tokens(outer: &[Token], inner: &[Token]) -> bool {
    let m = inner.len();
    // `next` is row i + 1, `row` is row i; the last row (outer exhausted) covers only an
    // exhausted inner pattern.
    let mut next = vec![false; m + 1];
    next[m] = true;
    let mut row = vec![false; m + 1];
    for o in outer.iter().rev() {
        for j in (0..=m).rev() {
            let here = inner.get(j);
            row[j] = match o {
                Token::Lit(a) => matches!(here, Some(Token::Lit(b)) if a == b) && next[j + 1],
                Token::One(c) => {
                    let fits = match here {
                        Some(Token::Lit(b)) => c.admits(*b),
                        Some(Token::One(ic)) => c.includes(*ic),
                        _ => false,
                    };
                    fits && next[j + 1]
                }
                Token::Many(c) => {
                    // Stand for nothing, or swallow one more inner token of a class
                    // this `*` admits (an inner `*` included) and stay.
                    let swallow = match here {
                        Some(Token::Lit(b)) => c.admits(*b),
                        Some(Token::One(ic)) | Some(Token::Many(ic)) => c.includes(*ic),
                        None => false,
                    };
                    next[j] || (swallow && row[j + 1])
                }
            };
        }
        std::mem::swap(&mut row, &mut next);
    }
    next[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(p: &str) -> Pattern {
        Pattern::new(p, Kind::Action)
    }
    fn r(p: &str) -> Pattern {
        Pattern::new(p, Kind::Resource)
    }

    #[test]
    fn action_matching_is_case_insensitive_with_both_wildcards() {
        assert!(a("s3:Get*").matches("s3:GetObject", Kind::Action));
        assert!(a("S3:GETOBJECT").matches("s3:getobject", Kind::Action));
        assert!(a("s3:Get?bject").matches("s3:GetObject", Kind::Action));
        assert!(!a("s3:Get?bject").matches("s3:GetObbject", Kind::Action));
        assert!(a("*").matches("iam:PassRole", Kind::Action));
        assert!(!a("s3:Get*").matches("s3:PutObject", Kind::Action));
        assert!(!a("s3:Get*").matches("ec2:GetConsoleOutput", Kind::Action));
        assert!(a("s3:*Object").matches("s3:PutObject", Kind::Action));
    }

    #[test]
    fn resource_wildcards_stay_in_their_segment_unless_they_end_it() {
        // `*` in the middle of the region segment does not cross into the account.
        assert!(!r("arn:aws:s3:us-*1:123").matches("arn:aws:s3:us-east:1:123", Kind::Resource));
        assert!(r("arn:aws:ec2:us-*-1:123456789012:instance/i-1")
            .matches("arn:aws:ec2:us-east-1:123456789012:instance/i-1", Kind::Resource));
        // A `*` that ends a segment runs across colons.
        assert!(r("arn:aws:s3:*").matches("arn:aws:s3:::bucket/key", Kind::Resource));
        assert!(
            r("arn:aws:ec2:*:*:instance/*").matches("arn:aws:ec2:eu-west-1:123456789012:instance/i-9", Kind::Resource)
        );
        // In the resource part colons are data and `*` crosses them and slashes.
        assert!(r("arn:aws:logs:us-east-1:123456789012:log-group:app*").matches(
            "arn:aws:logs:us-east-1:123456789012:log-group:app:log-stream:x",
            Kind::Resource
        ));
        assert!(r("arn:aws:s3:::bucket/*").matches("arn:aws:s3:::bucket/a/b/c", Kind::Resource));
        assert!(!r("arn:aws:s3:::bucket/*").matches("arn:aws:s3:::bucket2/a", Kind::Resource));
        // Case-sensitive.
        assert!(!r("arn:aws:s3:::Bucket/*").matches("arn:aws:s3:::bucket/a", Kind::Resource));
        assert!(r("*").matches("arn:aws:s3:::anything", Kind::Resource));
    }

    #[test]
    fn coverage_of_patterns_by_patterns() {
        assert!(a("s3:Get*").covers(&a("s3:GetObject*")));
        assert!(a("s3:*").covers(&a("s3:Get*")));
        assert!(a("*").covers(&a("s3:Get*")));
        assert!(!a("s3:GetObject").covers(&a("s3:Get*")));
        assert!(!a("s3:Get*").covers(&a("s3:*")));
        assert!(a("s3:Get?bject").covers(&a("s3:Get?bject")));
        assert!(a("s3:Get*").covers(&a("s3:Get?bject")));
        assert!(!a("s3:GetObject").covers(&a("s3:Get?bject")));
        assert!(r("arn:aws:s3:::bucket/*").covers(&r("arn:aws:s3:::bucket/reports/*")));
        assert!(!r("arn:aws:s3:::bucket/reports/*").covers(&r("arn:aws:s3:::bucket/*")));
        // A segment-bound `*` does not cover one that may cross colons.
        assert!(!r("arn:aws:s3:us-*x:1").covers(&r("arn:aws:s3:us-*")));
        assert!(r("arn:aws:s3:*").covers(&r("arn:aws:s3:us-*x:1")));
    }

    /// Brute-force definition of `matches` for a pattern over a small alphabet.
    fn naive(p: &[char], s: &[char], resource: bool) -> bool {
        // Build the same tokens, then a plain recursive matcher over concrete strings.
        let pat = Pattern::new(
            &p.iter().collect::<String>(),
            if resource { Kind::Resource } else { Kind::Plain },
        );
        fn go(t: &[Token], s: &[char]) -> bool {
            match t.first() {
                None => s.is_empty(),
                Some(Token::Lit(c)) => s.first() == Some(c) && go(&t[1..], &s[1..]),
                Some(Token::One(cl)) => s.first().is_some_and(|c| cl.admits(*c)) && go(&t[1..], &s[1..]),
                Some(Token::Many(cl)) => (0..=s.len())
                    .take_while(|&k| k == 0 || cl.admits(s[k - 1]))
                    .any(|k| go(&t[1..], &s[k..])),
            }
        }
        go(&pat.tokens, s)
    }

    proptest! {
        #[test]
        fn matches_agrees_with_backtracking(p in "[ab:*?]{0,8}", s in "[ab:]{0,8}", resource: bool) {
            let kind = if resource { Kind::Resource } else { Kind::Plain };
            let pv: Vec<char> = p.chars().collect();
            let sv: Vec<char> = s.chars().collect();
            prop_assert_eq!(Pattern::new(&p, kind).matches(&s, kind), naive(&pv, &sv, resource));
        }

        /// Soundness: when `covers` says yes, every concrete string the inner pattern
        /// matches (enumerated over a small alphabet) is matched by the outer one.
        #[test]
        fn covers_is_sound(outer in "[ab:*?]{0,5}", inner in "[ab:*?]{0,5}", resource: bool) {
            let kind = if resource { Kind::Resource } else { Kind::Plain };
            let (o, i) = (Pattern::new(&outer, kind), Pattern::new(&inner, kind));
            if o.covers(&i) {
                let alphabet = ['a', 'b', ':'];
                let mut strings = vec![String::new()];
                for len in 1..=6 {
                    let mut more = Vec::new();
                    for s in strings.iter().filter(|s| s.chars().count() == len - 1) {
                        for c in alphabet {
                            more.push(format!("{s}{c}"));
                        }
                    }
                    strings.extend(more);
                }
                for s in strings {
                    if i.matches(&s, kind) {
                        prop_assert!(o.matches(&s, kind), "{outer} covers {inner} but not {s}");
                    }
                }
            }
        }

        /// `overlaps` is exact: it agrees with a search over concrete strings (short
        /// patterns over a small alphabet always share a short witness if any).
        #[test]
        fn overlaps_agrees_with_enumeration(p in "[ab:*?]{0,4}", q in "[ab:*?]{0,4}", resource: bool) {
            let kind = if resource { Kind::Resource } else { Kind::Plain };
            let (x, y) = (Pattern::new(&p, kind), Pattern::new(&q, kind));
            let mut strings = vec![String::new()];
            let mut frontier = vec![String::new()];
            for _ in 0..8 {
                frontier = frontier.iter().flat_map(|s| ['a', 'b', ':'].map(|c| format!("{s}{c}"))).collect();
                strings.extend(frontier.iter().cloned());
            }
            let witness = strings.iter().any(|s| x.matches(s, kind) && y.matches(s, kind));
            prop_assert_eq!(x.overlaps(&y), witness, "{} vs {}", p, q);
        }

        /// Every pattern covers itself and a concrete string it matches.
        #[test]
        fn covers_is_reflexive(p in "[ab:*?]{0,8}", resource: bool) {
            let kind = if resource { Kind::Resource } else { Kind::Plain };
            let pat = Pattern::new(&p, kind);
            prop_assert!(pat.covers(&pat));
        }
    }
}
