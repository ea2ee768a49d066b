//! A small ordered document model for the kubelet's CredentialProviderConfig file: read from
//! YAML or JSON, written back as either, with every mapping's keys in the order they came.
//!
//! `serde_json::Value` sorts keys, so a rewritten file would reorder every other provider's
//! fields; and the YAML reader in the tree (serde-saphyr) is used for reading only, to keep its
//! serializer out of the binary. The writer here covers what a CredentialProviderConfig holds:
//! mappings, sequences and scalars, in block style, quoting any string YAML could read as
//! something else. Comments are not kept.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// One node of a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    /// Only above `i64::MAX`.
    Uint(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in document order.
    Map(Vec<(String, Node)>),
}

impl Node {
    pub fn str(s: impl Into<String>) -> Node {
        Node::Str(s.into())
    }

    /// A mapping from `(key, value)` pairs, in that order.
    pub fn map<const N: usize>(pairs: [(&str, Node); N]) -> Node {
        Node::Map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Equal as the kubelet reads it: the order of a mapping's keys does not matter.
    pub fn same_as(&self, other: &Node) -> bool {
        match (self, other) {
            (Node::Map(a), Node::Map(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| other.get(k).is_some_and(|w| v.same_as(w)))
            }
            (Node::Seq(a), Node::Seq(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y))
            }
            (a, b) => a == b,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// How a file is written: the form it was read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

/// Why a document could not be read. Never quotes the input: a kubelet config may carry
/// credentials in a provider's `env`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at line {line} column {column}")]
pub struct ParseError {
    pub what: &'static str,
    pub line: u64,
    pub column: u64,
}

/// The form of `text`: JSON when it starts with `{`, YAML otherwise.
pub fn format_of(text: &str) -> Format {
    if text.trim_start().starts_with('{') {
        Format::Json
    } else {
        Format::Yaml
    }
}

/// Reads one document in the form [`format_of`] tells.
pub fn parse(text: &str) -> Result<Node, ParseError> {
    match format_of(text) {
        Format::Json => serde_json::from_str(text).map_err(|e| ParseError {
            what: "invalid JSON",
            line: e.line() as u64,
            column: e.column() as u64,
        }),
        Format::Yaml => serde_saphyr::from_str(text).map_err(|e| {
            let at = e.location();
            ParseError {
                what: "invalid YAML",
                line: at.as_ref().map_or(0, |l| l.line()),
                column: at.as_ref().map_or(0, |l| l.column()),
            }
        }),
    }
}

/// Writes `node` in `format`, ending with a newline.
pub fn render(node: &Node, format: Format) -> String {
    match format {
        Format::Json => {
            // Serializing a tree of plain values into a String cannot fail.
            let mut s = serde_json::to_string_pretty(node).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Yaml => {
            let mut out = String::new();
            match node {
                Node::Map(pairs) if !pairs.is_empty() => write_map(pairs, 0, &mut out),
                Node::Seq(items) if !items.is_empty() => write_seq(items, 0, &mut out),
                scalar => {
                    out.push_str(&inline(scalar));
                    out.push('\n');
                }
            }
            out
        }
    }
}

/// A node that fits on its key's line: a scalar, or an empty collection.
fn inline(node: &Node) -> String {
    match node {
        Node::Null => "null".into(),
        Node::Bool(b) => b.to_string(),
        Node::Int(n) => n.to_string(),
        Node::Uint(n) => n.to_string(),
        Node::Float(f) if f.is_finite() => {
            let s = f.to_string();
            // Keep it a float when read back: `1` would be an integer.
            if s.contains(['.', 'e', 'E']) {
                s
            } else {
                format!("{s}.0")
            }
        }
        Node::Float(f) if f.is_nan() => ".nan".into(),
        Node::Float(f) if *f > 0.0 => ".inf".into(),
        Node::Float(_) => "-.inf".into(),
        Node::Str(s) => scalar(s),
        Node::Seq(_) => "[]".into(),
        Node::Map(_) => "{}".into(),
    }
}

fn is_block(node: &Node) -> bool {
    matches!(node, Node::Map(p) if !p.is_empty()) || matches!(node, Node::Seq(i) if !i.is_empty())
}

fn write_map(pairs: &[(String, Node)], indent: usize, out: &mut String) {
    for (i, (key, value)) in pairs.iter().enumerate() {
        // The first key of a mapping in a sequence item sits on the `- ` line.
        if !(i == 0 && out.ends_with("- ")) {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&scalar(key));
        out.push(':');
        match value {
            Node::Map(p) if is_block(value) => {
                out.push('\n');
                write_map(p, indent + 2, out);
            }
            Node::Seq(items) if is_block(value) => {
                out.push('\n');
                write_seq(items, indent + 2, out);
            }
            v => {
                out.push(' ');
                out.push_str(&inline(v));
                out.push('\n');
            }
        }
    }
}

fn write_seq(items: &[Node], indent: usize, out: &mut String) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        match item {
            Node::Map(p) if is_block(item) => write_map(p, indent + 2, out),
            Node::Seq(inner) if is_block(item) => {
                out.push('\n');
                write_seq(inner, indent + 2, out);
            }
            v => {
                out.push_str(&inline(v));
                out.push('\n');
            }
        }
    }
}

/// A string as a YAML scalar: plain when YAML (1.1 or 1.2) reads it back as the same string,
/// otherwise double-quoted (JSON's escapes are valid in YAML double quotes).
fn scalar(s: &str) -> String {
    if is_plain(s) {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

fn is_plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let safe_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_./:@=+-".contains(c));
    let reserved = ["true", "false", "yes", "no", "on", "off", "y", "n", "null"]
        .iter()
        .any(|w| s.eq_ignore_ascii_case(w));
    // A digit followed by anything a number, date or time could hold (1.5, 0x1f, 1:30, 1e3,
    // 2026-01-01) is quoted; `12h` is not a number and stays plain.
    let numeric = first.is_ascii_digit()
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() || "xXoO._:+-".contains(c));
    (first.is_ascii_alphanumeric() || first == '_' || first == '/')
        && safe_chars
        && !reserved
        && !numeric
        && !s.ends_with(':')
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => serializer.serialize_unit(),
            Node::Bool(b) => serializer.serialize_bool(*b),
            Node::Int(n) => serializer.serialize_i64(*n),
            Node::Uint(n) => serializer.serialize_u64(*n),
            Node::Float(f) => serializer.serialize_f64(*f),
            Node::Str(s) => serializer.serialize_str(s),
            Node::Seq(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Map(pairs) => {
                let mut map = serializer.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        // Readers differ on which of the two a small positive number is: one form only.
        Ok(i64::try_from(v).map_or(Node::Uint(v), Node::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut pairs: Vec<(String, Node)> = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Node>()? {
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(de::Error::custom("duplicate key"));
            }
            pairs.push((k, v));
        }
        Ok(Node::Map(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_and_reads_back_what_it_writes() {
        let text = "kind: CredentialProviderConfig\napiVersion: kubelet.config.k8s.io/v1\nproviders:\n  - name: b\n    matchImages:\n      - \"*.example.com\"\n    defaultCacheDuration: 12h\n    args: []\n    env:\n      - name: X\n        value: \"false\"\n  - name: a\n";
        let node = parse(text).unwrap();
        let Node::Map(pairs) = &node else {
            panic!("a mapping")
        };
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["kind", "apiVersion", "providers"]);
        let yaml = render(&node, Format::Yaml);
        assert_eq!(yaml, text, "the block style round-trips byte for byte");
        assert_eq!(parse(&yaml).unwrap(), node);
        let json = render(&node, Format::Json);
        assert!(json.starts_with("{\n  \"kind\": "), "{json}");
        assert_eq!(parse(&json).unwrap(), node);
    }

    #[test]
    fn quotes_every_string_yaml_would_read_as_something_else() {
        let strings = [
            "",
            "true",
            "False",
            "yes",
            "No",
            "on",
            "OFF",
            "y",
            "n",
            "null",
            "~",
            "0",
            "12",
            "1.5",
            "1e3",
            "0x1f",
            "0o17",
            "1:30",
            "+1",
            "-1",
            ".5",
            ".inf",
            "-.inf",
            ".nan",
            "- x",
            "a: b",
            "a #b",
            "#x",
            "*.dkr.ecr.*.amazonaws.com",
            "&a",
            "!t",
            "|",
            ">",
            "'q'",
            "\"q\"",
            "%x",
            "@x",
            "`x",
            "{a}",
            "[a]",
            "a,b",
            "x:",
            " lead",
            "trail ",
            "tab\t",
            "line\nbreak",
            "https://rolesanywhere.example/x",
            "naïve",
            "?x",
            "11h",
            "v1",
            "arn:aws:iam::123456789012:role/r",
            "/etc/kubernetes/x.crt",
            "sts.amazonaws.com",
            "ECR_REFRESHER_RA_CERTIFICATE",
            "eks.amazonaws.com/ecr-role-arn",
            "1h0m0s",
        ];
        for s in strings {
            let node = Node::map([("k", Node::str(s)), ("seq", Node::Seq(vec![Node::str(s)]))]);
            let yaml = render(&node, Format::Yaml);
            assert_eq!(parse(&yaml).unwrap(), node, "{s:?} as\n{yaml}");
        }
        for plain in [
            "11h",
            "v1",
            "sts.amazonaws.com",
            "/etc/x.crt",
            "arn:aws:iam::1:role/r",
        ] {
            assert_eq!(scalar(plain), plain);
        }
        assert_eq!(scalar("false"), "\"false\"");
    }

    #[test]
    fn other_scalars_and_empty_collections_round_trip() {
        let node = Node::map([
            ("b", Node::Bool(true)),
            ("i", Node::Int(-3)),
            ("u", Node::Uint(u64::MAX)),
            ("f", Node::Float(2.0)),
            ("n", Node::Null),
            ("m", Node::Map(vec![])),
            ("s", Node::Seq(vec![])),
            (
                "nested",
                Node::Seq(vec![
                    Node::Seq(vec![Node::str("x")]),
                    Node::map([("a", Node::Int(1))]),
                ]),
            ),
        ]);
        for format in [Format::Yaml, Format::Json] {
            let text = render(&node, format);
            assert_eq!(parse(&text).unwrap(), node, "{text}");
        }
    }

    #[test]
    fn sameness_ignores_key_order_but_not_list_order() {
        let a = parse("x: 1\ny: [a, b]\n").unwrap();
        assert!(a.same_as(&parse("{\"y\": [\"a\", \"b\"], \"x\": 1}").unwrap()));
        assert!(!a.same_as(&parse("x: 1\ny: [b, a]\n").unwrap()));
        assert!(!a.same_as(&parse("x: 1\ny: [a, b]\nz: 0\n").unwrap()));
        assert!(!a.same_as(&parse("x: \"1\"\ny: [a, b]\n").unwrap()));
    }

    #[test]
    fn parse_errors_give_the_place_and_never_the_text() {
        let err = parse("providers:\n  - name: x\n   env: [secret-value\n").unwrap_err();
        assert!(err.line > 0, "{err}");
        assert!(!err.to_string().contains("secret-value"), "{err}");
        let err = parse("{\"env\": \"secret-value\"").unwrap_err();
        assert_eq!(err.what, "invalid JSON");
        assert!(!err.to_string().contains("secret-value"), "{err}");
        assert!(parse("a: 1\na: 2\n").is_err(), "duplicate keys are refused");
    }
}
