//! Kubernetes label selectors (`team=a,env!=prod,tier in (web,api),!legacy`), parsed with the
//! grammar of apimachinery's `labels.Parse` (so a selector means here what it means to kubectl),
//! and glob patterns for names (`team-*`): parsing and matching, pure.

use std::collections::BTreeMap;

use crate::cluster::names::{is_dns_subdomain, is_label_value};

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    /// Values sorted and without duplicates, as Kubernetes keeps them.
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
    /// `key>n`: the label is an integer greater than `n`.
    GreaterThan(String, i64),
    /// `key<n`: the label is an integer less than `n`.
    LessThan(String, i64),
}

/// A parsed label selector: every requirement must hold. Empty selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector(pub Vec<Requirement>);

/// The name part of a key, and a non-empty value: alphanumerics, `-`, `_`, `.`, starting and
/// ending with an alphanumeric, at most 63 characters.
fn is_name_part(s: &str) -> bool {
    !s.is_empty() && is_label_value(s)
}

/// A label key: `[prefix/]name`, the prefix a DNS subdomain.
fn key_error(k: &str) -> Option<String> {
    let ok = match k.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty() && is_dns_subdomain(prefix) && is_name_part(name)
        }
        None => is_name_part(k),
    };
    (!ok).then(|| {
        format!(
            "'{k}' is not a label key (an optional DNS subdomain and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
        )
    })
}

/// A label value: empty, or like a key's name part.
fn value_error(v: &str) -> Option<String> {
    (!v.is_empty() && !is_name_part(v)).then(|| {
        format!(
            "'{v}' is not a label value (at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, or empty)"
        )
    })
}

/// The tokens of the selector grammar, as Kubernetes' lexer (apimachinery `labels`) makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    End,
    Ident(String),
    In,
    NotIn,
    OpenPar,
    ClosePar,
    Comma,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
}

impl Token {
    fn literal(&self) -> &str {
        match self {
            Token::End => "end of string",
            Token::Ident(s) => s,
            Token::In => "in",
            Token::NotIn => "notin",
            Token::OpenPar => "(",
            Token::ClosePar => ")",
            Token::Comma => ",",
            Token::Not => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::Greater => ">",
            Token::Less => "<",
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits a selector into tokens: whitespace separates, the special symbols (`= ! ( ) , > <`,
/// longest match, so `!=` and `==`) stand alone, and every other run of bytes is an identifier,
/// `in` and `notin` being keywords. So `key in(a,b)` lexes the same as `key in (a, b)`.
fn lex(s: &str) -> Vec<Token> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if is_space(b[i]) {
            i += 1;
            continue;
        }
        if is_special(b[i]) {
            let two = b.get(i..i + 2);
            let (tok, len) = match (b[i], two) {
                (_, Some(b"!=")) => (Token::NotEquals, 2),
                (_, Some(b"==")) => (Token::DoubleEquals, 2),
                (b'=', _) => (Token::Equals, 1),
                (b'!', _) => (Token::Not, 1),
                (b'(', _) => (Token::OpenPar, 1),
                (b')', _) => (Token::ClosePar, 1),
                (b',', _) => (Token::Comma, 1),
                (b'>', _) => (Token::Greater, 1),
                _ => (Token::Less, 1),
            };
            out.push(tok);
            i += len;
            continue;
        }
        let start = i;
        while i < b.len() && !is_space(b[i]) && !is_special(b[i]) {
            i += 1;
        }
        // Runs break only at ASCII bytes, so each run is whole UTF-8.
        let word = String::from_utf8_lossy(&b[start..i]).into_owned();
        out.push(match word.as_str() {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Ident(word),
        });
    }
    out.push(Token::End);
    out
}

/// Where `in` and `notin` are keywords (after a key) and where they are plain values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

/// A recursive-descent parser over the tokens, following Kubernetes' grammar:
/// `requirement (',' requirement)*`, a requirement being `[!]key`, or `key op value`, or
/// `key (in|notin) '(' values ')'`.
struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self, ctx: Context) -> Token {
        let t = self.tokens.get(self.pos).cloned().unwrap_or(Token::End);
        match (ctx, t) {
            (Context::Values, Token::In) => Token::Ident("in".into()),
            (Context::Values, Token::NotIn) => Token::Ident("notin".into()),
            (_, t) => t,
        }
    }

    fn next(&mut self, ctx: Context) -> Token {
        let t = self.peek(ctx);
        self.pos = (self.pos + 1).min(self.tokens.len());
        t
    }

    fn selector(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        loop {
            match self.peek(Context::Values) {
                Token::Ident(_) | Token::Not => {
                    reqs.push(self.requirement()?);
                    match self.next(Context::Values) {
                        Token::End => return Ok(reqs),
                        Token::Comma => match self.peek(Context::Values) {
                            Token::Ident(_) | Token::Not => {}
                            t => {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                ));
                            }
                        },
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',' or end of string",
                                t.literal()
                            ));
                        }
                    }
                }
                Token::End => return Ok(reqs),
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or end of string",
                        t.literal()
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let mut tok = self.next(Context::Values);
        let not = tok == Token::Not;
        if not {
            tok = self.next(Context::Values);
        }
        let Token::Ident(key) = tok else {
            return Err(format!("found '{}', expected: identifier", tok.literal()));
        };
        if let Some(e) = key_error(&key) {
            return Err(e);
        }
        // `!key` takes no operator: whatever follows must be ',' or the end, which the caller checks.
        if not {
            return Ok(Requirement::NotExists(key));
        }
        if matches!(self.peek(Context::Values), Token::End | Token::Comma) {
            return Ok(Requirement::Exists(key));
        }
        let op = self.next(Context::KeyAndOperator);
        match op {
            Token::In | Token::NotIn => {
                let values = self.set()?;
                if let Some(e) = values.iter().find_map(|v| value_error(v)) {
                    return Err(e);
                }
                Ok(if op == Token::In {
                    Requirement::In(key, values)
                } else {
                    Requirement::NotIn(key, values)
                })
            }
            Token::Equals | Token::DoubleEquals | Token::NotEquals => {
                let value = self.exact_value()?;
                if let Some(e) = value_error(&value) {
                    return Err(e);
                }
                Ok(if op == Token::NotEquals {
                    Requirement::NotEquals(key, value)
                } else {
                    Requirement::Equals(key, value)
                })
            }
            Token::Greater | Token::Less => {
                let value = self.exact_value()?;
                let n: i64 = value.parse().map_err(|_| {
                    format!("'{value}': for '>' and '<' the value must be an integer")
                })?;
                Ok(if op == Token::Greater {
                    Requirement::GreaterThan(key, n)
                } else {
                    Requirement::LessThan(key, n)
                })
            }
            t => Err(format!(
                "found '{}', expected: in, notin, =, ==, !=, >, <",
                t.literal()
            )),
        }
    }

    /// `(a,b)`. As in Kubernetes, an empty element is the empty value: `()` is `("")`, and
    /// `(a,,b)` is `(a,"",b)`.
    fn set(&mut self) -> Result<Vec<String>, String> {
        let open = self.next(Context::Values);
        if open != Token::OpenPar {
            return Err(format!("found '{}', expected: '('", open.literal()));
        }
        let mut values = std::collections::BTreeSet::new();
        match self.peek(Context::Values) {
            Token::ClosePar => {
                self.next(Context::Values);
                values.insert(String::new());
                return Ok(values.into_iter().collect());
            }
            Token::Ident(_) | Token::Comma => {}
            t => {
                return Err(format!(
                    "found '{}', expected: ',', ')' or identifier",
                    t.literal()
                ));
            }
        }
        loop {
            match self.next(Context::Values) {
                Token::Ident(v) => {
                    values.insert(v);
                    match self.peek(Context::Values) {
                        Token::Comma => {}
                        Token::ClosePar => break,
                        t => {
                            return Err(format!("found '{}', expected: ',' or ')'", t.literal()));
                        }
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    match self.peek(Context::Values) {
                        Token::ClosePar => {
                            values.insert(String::new());
                            break;
                        }
                        Token::Comma => {
                            self.next(Context::Values);
                            values.insert(String::new());
                        }
                        _ => {}
                    }
                }
                t => {
                    return Err(format!(
                        "found '{}', expected: ',' or identifier",
                        t.literal()
                    ));
                }
            }
        }
        match self.next(Context::Values) {
            Token::ClosePar => Ok(values.into_iter().collect()),
            t => Err(format!("found '{}', expected: ')'", t.literal())),
        }
    }

    /// The value after `=`, `==`, `!=`, `>`, `<`: empty when the requirement ends there.
    fn exact_value(&mut self) -> Result<String, String> {
        if matches!(self.peek(Context::Values), Token::End | Token::Comma) {
            return Ok(String::new());
        }
        match self.next(Context::Values) {
            Token::Ident(v) => Ok(v),
            t => Err(format!("found '{}', expected: identifier", t.literal())),
        }
    }
}

impl std::str::FromStr for Selector {
    type Err = String;

    /// Parses a selector as the API server and kubectl do (k8s.io/apimachinery `labels.Parse`).
    fn from_str(s: &str) -> Result<Selector, String> {
        let mut parser = Parser {
            tokens: lex(s),
            pos: 0,
        };
        parser.selector().map(Selector).map_err(|e| {
            format!(
                "'{s}' is not a label selector: {e}. Requirements are comma-separated: key=value, key!=value, key in (a,b), key notin (a,b), key, !key, key>1, key<1"
            )
        })
    }
}

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|req| {
            let get = |k: &str| labels.get(k).map(String::as_str);
            let int = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
            match req {
                Requirement::Equals(k, v) => get(k) == Some(v),
                Requirement::NotEquals(k, v) => get(k) != Some(v),
                Requirement::In(k, vs) => get(k).is_some_and(|h| vs.iter().any(|v| v == h)),
                Requirement::NotIn(k, vs) => get(k).is_none_or(|h| vs.iter().all(|v| v != h)),
                Requirement::Exists(k) => get(k).is_some(),
                Requirement::NotExists(k) => get(k).is_none(),
                Requirement::GreaterThan(k, n) => int(k).is_some_and(|h| h > *n),
                Requirement::LessThan(k, n) => int(k).is_some_and(|h| h < *n),
            }
        })
    }
}

/// Whether `s` is a glob pattern rather than a plain name.
pub fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// Glob matching with `*` (any run, also empty) and `?` (one character).
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn globs() {
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("team-*", "team-a"));
        assert!(glob_matches("team-*", "team-"));
        assert!(!glob_matches("team-*", "teams"));
        assert!(glob_matches("*-prod", "payments-prod"));
        assert!(glob_matches("t?am-*-x", "team-a-b-x"));
        assert!(!glob_matches("t?am", "tam"));
        assert!(glob_matches("a*b*c", "a-b-b-c"));
        assert!(!glob_matches("a*b*c", "a-b-b-d"));
        assert!(is_pattern("team-*") && !is_pattern("team-a"));
    }

    #[test]
    fn selectors() {
        let s: Selector = "team=a, env!=prod, tier in (web, api), !legacy, owner"
            .parse()
            .unwrap();
        assert_eq!(s.0.len(), 5);
        let yes = labels(&[
            ("team", "a"),
            ("env", "dev"),
            ("tier", "web"),
            ("owner", "x"),
        ]);
        assert!(s.matches(&yes));
        let mut no = yes.clone();
        no.insert("legacy".into(), "true".into());
        assert!(!s.matches(&no));
        let s: Selector = "env notin (prod,staging)".parse().unwrap();
        assert!(s.matches(&labels(&[])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
    }

    fn parsed(s: &str) -> Vec<Requirement> {
        s.parse::<Selector>()
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .0
    }

    fn set(vs: &[&str]) -> Vec<String> {
        vs.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn set_operators_need_no_space_before_the_parenthesis() {
        let want = vec![Requirement::In("key".into(), set(&["a", "b"]))];
        for s in [
            "key in(a,b)",
            "key in (a,b)",
            "key  in ( a , b )",
            "key\tin\n(b,a,a)",
        ] {
            assert_eq!(parsed(s), want, "{s}");
        }
        assert_eq!(
            parsed("key notin(a)"),
            [Requirement::NotIn("key".into(), set(&["a"]))]
        );
        // Keywords are values (and keys) where a value is expected.
        assert_eq!(
            parsed("in in (in,notin)"),
            [Requirement::In("in".into(), set(&["in", "notin"]))]
        );
    }

    #[test]
    fn empty_set_elements_are_the_empty_value_as_in_kubernetes() {
        // labels.Parse turns `()` into the set {""} (its own doc gives `z notin ()` as valid
        // syntax); `(a,,b)`, `(,a)` and `(a,)` likewise hold "".
        assert_eq!(
            parsed("key in ()"),
            [Requirement::In("key".into(), set(&[""]))]
        );
        assert_eq!(
            parsed("key notin ()"),
            [Requirement::NotIn("key".into(), set(&[""]))]
        );
        assert_eq!(
            parsed("key in (a,,b)"),
            [Requirement::In("key".into(), set(&["", "a", "b"]))]
        );
        assert_eq!(
            parsed("k in (,a)"),
            [Requirement::In("k".into(), set(&["", "a"]))]
        );
        assert_eq!(
            parsed("k in (a,)"),
            [Requirement::In("k".into(), set(&["", "a"]))]
        );
        let s: Selector = "key in ()".parse().unwrap();
        assert!(s.matches(&labels(&[("key", "")])));
        assert!(!s.matches(&labels(&[("key", "x")])) && !s.matches(&labels(&[])));
    }

    #[test]
    fn equality_operators_and_empty_values() {
        for s in ["a=b", "a==b", " a = b ", "a ==b"] {
            assert_eq!(
                parsed(s),
                [Requirement::Equals("a".into(), "b".into())],
                "{s}"
            );
        }
        assert_eq!(
            parsed("a!=b"),
            [Requirement::NotEquals("a".into(), "b".into())]
        );
        assert_eq!(parsed("a="), [Requirement::Equals("a".into(), "".into())]);
        assert_eq!(
            parsed("a=,b!="),
            [
                Requirement::Equals("a".into(), "".into()),
                Requirement::NotEquals("b".into(), "".into())
            ]
        );
    }

    #[test]
    fn existence_and_integers() {
        assert_eq!(parsed("key"), [Requirement::Exists("key".into())]);
        assert_eq!(parsed("!key"), [Requirement::NotExists("key".into())]);
        assert_eq!(parsed("! key"), [Requirement::NotExists("key".into())]);
        assert_eq!(
            parsed("example.com/team,!x.io/old"),
            [
                Requirement::Exists("example.com/team".into()),
                Requirement::NotExists("x.io/old".into())
            ]
        );
        assert_eq!(
            parsed("rank>3"),
            [Requirement::GreaterThan("rank".into(), 3)]
        );
        assert_eq!(
            parsed("rank<-1"),
            [Requirement::LessThan("rank".into(), -1)]
        );
        let gt: Selector = "rank>3".parse().unwrap();
        assert!(gt.matches(&labels(&[("rank", "4")])));
        assert!(!gt.matches(&labels(&[("rank", "3")])) && !gt.matches(&labels(&[("rank", "x")])));
        // An empty selector selects everything, as in Kubernetes.
        assert_eq!(parsed(""), []);
        assert_eq!(parsed("  "), []);
    }

    #[test]
    fn invalid_selectors_say_what_was_found() {
        for (bad, why) in [
            ("a in b", "found 'b', expected: '('"),
            (
                "tier in (web",
                "found 'end of string', expected: ',' or ')'",
            ),
            ("a=b=c", "found '=', expected: ',' or end of string"),
            ("a b", "found 'b', expected: in, notin"),
            ("!", "found 'end of string', expected: identifier"),
            ("!a=b", "found '=', expected: ',' or end of string"),
            (
                "a,",
                "found 'end of string', expected: identifier after ','",
            ),
            (",a", "found ',', expected: !, identifier"),
            ("a=(b)", "found '(', expected: identifier"),
            ("a in (b c)", "found 'c', expected: ',' or ')'"),
            ("rank>x", "must be an integer"),
            ("-a=b", "'-a' is not a label key"),
            ("a/b/c", "'a/b/c' is not a label key"),
            ("Example.com/a", "is not a label key"),
            ("a=-b", "'-b' is not a label value"),
            ("a in (x,y_)", "'y_' is not a label value"),
        ] {
            let err = bad.parse::<Selector>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(
                err.starts_with(&format!("'{bad}' is not a label selector")),
                "{err}"
            );
        }
        let long = format!("a={}", "v".repeat(64));
        assert!(long.parse::<Selector>().is_err());
        assert!(format!("{}=v", "k".repeat(64)).parse::<Selector>().is_err());
        assert!(
            format!("{}/k=v", "p".repeat(63))
                .parse::<Selector>()
                .is_ok()
        );
    }
}
