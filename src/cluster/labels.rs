//! Kubernetes label selectors (`team=a,env!=prod,tier in (web,api),!legacy`) and glob patterns
//! for names (`team-*`): parsing and matching, pure.

use std::collections::BTreeMap;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector(pub Vec<Requirement>);

fn is_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 317
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

fn is_value(s: &str) -> bool {
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Splits on commas outside parentheses.
fn terms(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

impl std::str::FromStr for Selector {
    type Err = String;

    fn from_str(s: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for term in terms(s) {
            let bad = || {
                format!(
                    "'{term}' is not a label requirement (key=value, key!=value, key in (a,b), key notin (a,b), key, !key)"
                )
            };
            let set = |rest: &str| -> Result<Vec<String>, String> {
                let inner = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(bad)?;
                let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
                if values.iter().all(|v| is_value(v)) {
                    Ok(values)
                } else {
                    Err(bad())
                }
            };
            let pair = |k: &str, v: &str| -> Result<(String, String), String> {
                let (k, v) = (k.trim(), v.trim());
                if is_key(k) && is_value(v) {
                    Ok((k.into(), v.into()))
                } else {
                    Err(bad())
                }
            };
            let req = if let Some(k) = term.strip_prefix('!') {
                if !is_key(k.trim()) {
                    return Err(bad());
                }
                Requirement::NotExists(k.trim().into())
            } else if let Some((k, v)) = term.split_once("!=") {
                let (k, v) = pair(k, v)?;
                Requirement::NotEquals(k, v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                let (k, v) = pair(k, v)?;
                Requirement::Equals(k, v)
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                if !is_key(k.trim()) {
                    return Err(bad());
                }
                Requirement::NotIn(k.trim().into(), set(rest)?)
            } else if let Some((k, rest)) = term.split_once(" in ") {
                if !is_key(k.trim()) {
                    return Err(bad());
                }
                Requirement::In(k.trim().into(), set(rest)?)
            } else if is_key(term) {
                Requirement::Exists(term.into())
            } else {
                return Err(bad());
            };
            reqs.push(req);
        }
        if reqs.is_empty() {
            return Err("the selector is empty".into());
        }
        Ok(Selector(reqs))
    }
}

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|req| {
            let get = |k: &str| labels.get(k).map(String::as_str);
            match req {
                Requirement::Equals(k, v) => get(k) == Some(v),
                Requirement::NotEquals(k, v) => get(k) != Some(v),
                Requirement::In(k, vs) => get(k).is_some_and(|h| vs.iter().any(|v| v == h)),
                Requirement::NotIn(k, vs) => get(k).is_none_or(|h| vs.iter().all(|v| v != h)),
                Requirement::Exists(k) => get(k).is_some(),
                Requirement::NotExists(k) => get(k).is_none(),
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
        assert_eq!(
            "a==b".parse::<Selector>().unwrap(),
            Selector(vec![Requirement::Equals("a".into(), "b".into())])
        );
        for bad in ["", "a in b", "a=b=c d", "!", "tier in (web"] {
            assert!(bad.parse::<Selector>().is_err(), "{bad}");
        }
    }
}
