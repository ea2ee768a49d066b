//! Who owns a pull Secret: the labels an install writes, and how a Secret found in a namespace
//! is classified against them. Pure.
//!
//! Two labels: `app.kubernetes.io/managed-by` says the tool wrote it, `ecr-secret-refresher/
//! instance` says which install did. Two installs in one cluster (two teams, two Secret names)
//! then never prune or overwrite each other's Secrets. A Secret written by an earlier version
//! carries the first label only: its writer adopts it on the next write, and nobody prunes it.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::cluster::names::is_label_value;

/// The label that marks the Secrets this tool owns.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`] on the Secrets this tool owns.
pub const MANAGED_BY_VALUE: &str = "ecr-secret-refresher";
/// The label that names the install (instance) that wrote a Secret.
pub const INSTANCE_LABEL: &str = "ecr-secret-refresher/instance";

/// How a Secret found in a namespace relates to this install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// Written by this instance.
    Us,
    /// Written by an earlier version of the tool, before instances: adopted on our next write.
    Legacy,
    /// Written by another install of the tool.
    OtherInstance(&'a str),
    /// Not written by this tool; the value of its managed-by label, if any.
    Foreign(Option<&'a str>),
}

/// Classifies a Secret by its labels against `instance`.
pub fn owner<'a>(labels: Option<&'a BTreeMap<String, String>>, instance: &str) -> Owner<'a> {
    let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    match (get(MANAGED_BY_LABEL), get(INSTANCE_LABEL)) {
        (Some(MANAGED_BY_VALUE), None) => Owner::Legacy,
        (Some(MANAGED_BY_VALUE), Some(i)) if i == instance => Owner::Us,
        (Some(MANAGED_BY_VALUE), Some(i)) => Owner::OtherInstance(i),
        (other, _) => Owner::Foreign(other),
    }
}

/// The labels this instance writes on its Secrets.
pub fn labels(instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
        (INSTANCE_LABEL.to_string(), instance.to_string()),
    ])
}

/// An instance name derived from `raw` (a kubeconfig context, `namespace_serviceaccount`):
/// `raw` itself when it is a valid label value, else its valid characters, shortened, with a
/// hash of `raw` appended, so that two different sources never share a value.
pub fn instance_from(raw: &str) -> String {
    if !raw.is_empty() && is_label_value(raw) {
        return raw.to_string();
    }
    let hash = Sha256::digest(raw.as_bytes());
    let hash: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut prefix: String = cleaned
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take(63 - 1 - hash.len())
        .collect();
    while prefix.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        prefix.pop();
    }
    if prefix.is_empty() {
        hash
    } else {
        format!("{prefix}-{hash}")
    }
}

/// The instance of a pod: `namespace_serviceaccount` from the `sub` claim of its ServiceAccount
/// token (`system:serviceaccount:NS:NAME`). The token is only decoded, never verified or
/// logged: the API server is what trusts it, this only names the install.
pub fn instance_from_token(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let sub = claims["sub"].as_str()?;
    let rest = sub.strip_prefix("system:serviceaccount:")?;
    let (ns, sa) = rest.split_once(':')?;
    if ns.is_empty() || sa.is_empty() {
        return None;
    }
    // '_' appears in neither namespace nor ServiceAccount names, so the pair stays unambiguous.
    Some(instance_from(&format!("{ns}_{sa}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn classifies_secrets() {
        let ours = with(&[(MANAGED_BY_LABEL, MANAGED_BY_VALUE), (INSTANCE_LABEL, "a")]);
        assert_eq!(owner(Some(&ours), "a"), Owner::Us);
        assert_eq!(owner(Some(&ours), "b"), Owner::OtherInstance("a"));
        let legacy = with(&[(MANAGED_BY_LABEL, MANAGED_BY_VALUE)]);
        assert_eq!(owner(Some(&legacy), "a"), Owner::Legacy);
        let helm = with(&[(MANAGED_BY_LABEL, "Helm"), (INSTANCE_LABEL, "a")]);
        assert_eq!(owner(Some(&helm), "a"), Owner::Foreign(Some("Helm")));
        assert_eq!(owner(None, "a"), Owner::Foreign(None));
        assert_eq!(labels("a"), ours);
    }

    #[test]
    fn label_values() {
        for ok in ["a", "kind-kind", "ns_sa", "a.b-c_d", &"x".repeat(63)] {
            assert!(is_label_value(ok), "{ok}");
        }
        for bad in ["-a", "a-", "a/b", "a:b", "é", &"x".repeat(64)] {
            assert!(!is_label_value(bad), "{bad}");
        }
    }

    #[test]
    fn instances_are_valid_stable_and_distinct() {
        assert_eq!(instance_from("kind-dev"), "kind-dev");
        let eks = "arn:aws:eks:eu-west-1:123456789012:cluster/prod";
        let a = instance_from(eks);
        assert!(is_label_value(&a), "{a}");
        assert!(
            a.starts_with("arn-aws-eks-eu-west-1-123456789012-cluster-prod-"),
            "{a}"
        );
        assert_eq!(a, instance_from(eks), "stable");
        // Cleaning alone would make these two equal; the hash keeps them apart.
        assert_ne!(instance_from("a:b"), instance_from("a/b"));
        let long = "x".repeat(300);
        let l = instance_from(&long);
        assert!(is_label_value(&l) && l.len() == 63, "{l}");
        assert!(is_label_value(&instance_from("::")));
        assert!(is_label_value(&instance_from("")));
    }

    #[test]
    fn pod_instance_from_the_token_subject() {
        use base64::Engine;
        let enc = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let token = format!(
            "{}.{}.sig",
            enc(serde_json::json!({"alg": "RS256"})),
            enc(
                serde_json::json!({"sub": "system:serviceaccount:ecr-secret-refresher:refresher",
                "kubernetes.io": {"namespace": "ecr-secret-refresher"}})
            )
        );
        assert_eq!(
            instance_from_token(&token).as_deref(),
            Some("ecr-secret-refresher_refresher")
        );
        assert_eq!(instance_from_token("not-a-jwt"), None);
        let user = format!("x.{}.y", enc(serde_json::json!({"sub": "alice"})));
        assert_eq!(instance_from_token(&user), None);
    }
}
