//! The name grammars of Kubernetes (apimachinery's `validation` package), in one place: DNS-1123
//! labels (namespace names), DNS-1123 subdomains (Secret and ServiceAccount names, label key
//! prefixes) and label values. Pure.

/// Whether `s` is a DNS-1123 label, as namespace names must be: at most 63 characters of
/// lowercase alphanumerics and `-`, starting and ending with an alphanumeric.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && is_dns_label_chars(s)
}

/// The characters of a DNS-1123 label, whatever its length.
fn is_dns_label_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS-1123 subdomain, as Secret and ServiceAccount names and label key
/// prefixes must be: at most 253 characters, dot-separated parts with a label's characters.
/// Like `IsDNS1123Subdomain`, the parts have no length limit of their own.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label_chars)
}

/// Whether `s` is a valid label value: at most 63 characters of alphanumerics, `-`, `_` and
/// `.`, starting and ending with an alphanumeric, or empty.
pub fn is_label_value(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "team-a", "0x", &"a".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "Team", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn dns_subdomains() {
        let long_part = format!("{}.io", "a".repeat(64));
        for ok in ["ecr", "ecr.pull-secret", "example.com", long_part.as_str()] {
            assert!(is_dns_subdomain(ok), "{ok}");
        }
        let too_long = "a".repeat(254);
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "A.b",
            "a_b",
            "-a.b",
            too_long.as_str(),
        ] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn label_values() {
        for ok in ["", "a", "A_b.c-1", &"a".repeat(63)] {
            assert!(is_label_value(ok), "{ok}");
        }
        for bad in ["-a", "a-", "a/b", "a b", &"a".repeat(64)] {
            assert!(!is_label_value(bad), "{bad}");
        }
    }
}
