//! Our entry in the kubelet's `CredentialProviderConfig`, written here once: `kubelet-credential-provider
//! install` puts it into a node's file, and the examples in `manifests/kubelet/` are checked
//! against it (tests/kubelet_install.rs), so the two cannot drift apart.
//!
//! Pure: the command reads and writes the file; this module turns one document into the next.

use crate::kubelet::protocol::ApiVersion;
use crate::kubelet::yaml::Node;

/// The provider's name, which is also the file name the kubelet runs from its bin dir.
pub const PROVIDER_NAME: &str = "ecr-secret-refresher";
pub const KIND: &str = "CredentialProviderConfig";
/// The config file's versions a kubelet reads; a new file gets the first.
pub const CONFIG_VERSIONS: [&str; 3] = [
    "kubelet.config.k8s.io/v1",
    "kubelet.config.k8s.io/v1beta1",
    "kubelet.config.k8s.io/v1alpha1",
];
/// Used only if a response had no cacheDuration; ours always has one.
pub const DEFAULT_CACHE_DURATION: &str = "11h";
/// The audience the role's trust policy expects: the IRSA default.
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";
/// The first kubelet minor version with `tokenAttributes` (KEP-4412, alpha).
pub const FIRST_TOKEN_MINOR: u32 = 33;
/// The first kubelet minor version that knows `tokenAttributes.cacheType` (and requires it).
pub const FIRST_CACHE_TYPE_MINOR: u32 = 34;

/// Each dot-separated part of a pattern matches one part of the image's host, so every
/// partition and endpoint form needs its own pattern.
pub const MATCH_IMAGES: [&str; 12] = [
    "*.dkr.ecr.*.amazonaws.com",               // commercial regions, GovCloud
    "*.dkr.ecr-fips.*.amazonaws.com",          // FIPS endpoints
    "*.dkr.ecr.*.amazonaws.com.cn",            // China
    "*.dkr-ecr.*.on.aws",                      // dual-stack (IPv6)
    "*.dkr-ecr-fips.*.on.aws",                 // dual-stack FIPS
    "*.dkr-ecr.*.on.amazonwebservices.com.cn", // dual-stack, China
    "*.dkr.ecr.*.amazonaws.eu",                // European Sovereign Cloud
    "*.dkr.ecr.*.c2s.ic.gov",                  // ISO
    "*.dkr.ecr.*.sc2s.sgov.gov",               // ISO-B
    "*.dkr.ecr.*.cloud.adc-e.uk",              // ISO-E
    "*.dkr.ecr.*.csp.hci.ic.gov",              // ISO-F
    "public.ecr.aws",                          // ECR Public
];

/// Per-ServiceAccount roles (KEP-4412): the kubelet sends the pod's ServiceAccount token for
/// `audience` and the ServiceAccount's `annotation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountRoles {
    pub audience: String,
    pub annotation: String,
    /// Write `cacheType` (kubelet 1.34 and later, which require it; 1.33 refuses it).
    pub cache_type: bool,
}

/// What our entry holds besides the fixed parts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub service_account_roles: Option<ServiceAccountRoles>,
    /// The plugin's environment, in order (the config's `env`).
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigFileError {
    #[error(
        "it is not a kubelet CredentialProviderConfig (not a mapping of apiVersion, kind and providers)"
    )]
    NotAMapping,
    #[error("its kind is '{0}', not CredentialProviderConfig")]
    Kind(String),
    #[error(
        "its apiVersion is '{0}', not one a kubelet reads (kubelet.config.k8s.io/v1, v1beta1 or v1alpha1)"
    )]
    ApiVersion(String),
    #[error("its providers field is not a list of providers")]
    Providers,
    #[error(
        "its apiVersion is {0}, and per-ServiceAccount roles are written only into kubelet.config.k8s.io/v1 files (every kubelet with tokenAttributes reads v1): change the file's apiVersion to kubelet.config.k8s.io/v1"
    )]
    TokenAttributesNeedV1(String),
}

/// What merging did to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Replaced,
    Unchanged,
}

/// The provider API version to ask for in a config of `config_version`: the one of the same
/// stage, which every kubelet that reads that config version speaks (1.20-1.23 know only
/// v1alpha1, 1.24-1.25 v1beta1 too). `tokenAttributes` needs v1.
fn provider_version(config_version: &str) -> ApiVersion {
    match config_version.rsplit('/').next() {
        Some("v1beta1") => ApiVersion::V1beta1,
        Some("v1alpha1") => ApiVersion::V1alpha1,
        _ => ApiVersion::V1,
    }
}

/// Our provider entry for a config file of `config_version`.
pub fn entry(e: &Entry, config_version: &str) -> Node {
    let strs = |items: &[&str]| Node::Seq(items.iter().map(|s| Node::str(*s)).collect());
    let mut pairs = vec![
        ("name".to_string(), Node::str(PROVIDER_NAME)),
        ("args".to_string(), strs(&["kubelet-credential-provider"])),
        (
            "apiVersion".to_string(),
            Node::str(provider_version(config_version).as_str()),
        ),
        (
            "defaultCacheDuration".to_string(),
            Node::str(DEFAULT_CACHE_DURATION),
        ),
        ("matchImages".to_string(), strs(&MATCH_IMAGES)),
    ];
    if let Some(sa) = &e.service_account_roles {
        let mut attrs = vec![(
            "serviceAccountTokenAudience".to_string(),
            Node::str(&sa.audience),
        )];
        if sa.cache_type {
            // The credentials depend on the ServiceAccount's role, not on the pod.
            attrs.push(("cacheType".to_string(), Node::str("ServiceAccount")));
        }
        // Pods without a ServiceAccount (static pods) still get the node's identity.
        attrs.push(("requireServiceAccount".to_string(), Node::Bool(false)));
        attrs.push((
            "optionalServiceAccountAnnotationKeys".to_string(),
            strs(&[sa.annotation.as_str()]),
        ));
        pairs.push(("tokenAttributes".to_string(), Node::Map(attrs)));
    }
    if !e.env.is_empty() {
        let env = e
            .env
            .iter()
            .map(|(name, value)| {
                Node::map([("name", Node::str(name)), ("value", Node::str(value))])
            })
            .collect();
        pairs.push(("env".to_string(), Node::Seq(env)));
    }
    Node::Map(pairs)
}

/// A config file with no provider yet, for a node that has none.
pub fn empty_config() -> Node {
    Node::map([
        ("apiVersion", Node::str(CONFIG_VERSIONS[0])),
        ("kind", Node::str(KIND)),
        ("providers", Node::Seq(Vec::new())),
    ])
}

/// Puts our entry into `config`: replaces the provider named [`PROVIDER_NAME`] where it is
/// (dropping any duplicate, which the kubelet would refuse), or appends it. Every other
/// provider, their order, and every other field stay as they are.
pub fn merge(config: Node, e: &Entry) -> Result<(Node, Change), ConfigFileError> {
    let Node::Map(mut pairs) = config else {
        return Err(ConfigFileError::NotAMapping);
    };
    let field = |pairs: &[(String, Node)], key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| match v {
                Node::Str(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default()
    };
    let kind = field(&pairs, "kind");
    if kind != KIND {
        return Err(ConfigFileError::Kind(kind));
    }
    let version = field(&pairs, "apiVersion");
    if !CONFIG_VERSIONS.contains(&version.as_str()) {
        return Err(ConfigFileError::ApiVersion(version));
    }
    if e.service_account_roles.is_some() && version != CONFIG_VERSIONS[0] {
        return Err(ConfigFileError::TokenAttributesNeedV1(version));
    }
    let ours = entry(e, &version);
    let providers = match pairs.iter().position(|(k, _)| k == "providers") {
        Some(i) => &mut pairs[i].1,
        None => {
            pairs.push(("providers".to_string(), Node::Seq(Vec::new())));
            let last = pairs.len() - 1;
            &mut pairs[last].1
        }
    };
    if *providers == Node::Null {
        *providers = Node::Seq(Vec::new());
    }
    let Node::Seq(list) = providers else {
        return Err(ConfigFileError::Providers);
    };
    if list.iter().any(|p| !matches!(p, Node::Map(_))) {
        return Err(ConfigFileError::Providers);
    }
    let is_ours = |p: &Node| p.get("name").and_then(Node::as_str) == Some(PROVIDER_NAME);
    let change = match list.iter().position(is_ours) {
        None => {
            list.push(ours);
            Change::Added
        }
        Some(i) => {
            let duplicates = list.iter().filter(|p| is_ours(p)).count() > 1;
            let same = list[i].same_as(&ours);
            if !same {
                list[i] = ours;
            }
            let mut seen = 0;
            list.retain(|p| {
                seen += usize::from(is_ours(p));
                !is_ours(p) || seen == 1
            });
            if same && !duplicates {
                Change::Unchanged
            } else {
                Change::Replaced
            }
        }
    };
    Ok((Node::Map(pairs), change))
}

/// The minor version of a kubelet version string (`1.33`, `v1.34.2`, `1.33.4-eks-1234`).
pub fn kubelet_minor(version: &str) -> Option<u32> {
    let v = version.trim().trim_start_matches('v');
    let mut parts = v.split('.');
    if parts.next()? != "1" {
        return None;
    }
    let minor = parts.next()?;
    minor.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::yaml::{Format, parse, render};

    fn sa() -> Entry {
        Entry {
            service_account_roles: Some(ServiceAccountRoles {
                audience: DEFAULT_AUDIENCE.into(),
                annotation: "eks.amazonaws.com/ecr-role-arn".into(),
                cache_type: true,
            }),
            env: vec![("ECR_REFRESHER_REQUIRE_ROLE".into(), "false".into())],
        }
    }

    fn names(config: &Node) -> Vec<String> {
        match config.get("providers") {
            Some(Node::Seq(list)) => list
                .iter()
                .map(|p| {
                    p.get("name")
                        .and_then(Node::as_str)
                        .unwrap_or("?")
                        .to_string()
                })
                .collect(),
            _ => panic!("no providers"),
        }
    }

    #[test]
    fn adds_to_an_empty_config_then_changes_nothing() {
        let (config, change) = merge(empty_config(), &sa()).unwrap();
        assert_eq!(change, Change::Added);
        assert_eq!(names(&config), [PROVIDER_NAME]);
        let text = render(&config, Format::Yaml);
        let (again, change) = merge(parse(&text).unwrap(), &sa()).unwrap();
        assert_eq!(change, Change::Unchanged);
        assert_eq!(render(&again, Format::Yaml), text);
    }

    #[test]
    fn replaces_ours_in_place_and_keeps_the_others() {
        let text = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: CredentialProviderConfig\nproviders:\n  - name: first\n    zeta: 1\n    alpha: 2\n  - name: ecr-secret-refresher\n    args: [old]\n  - name: last\n  - name: ecr-secret-refresher\n";
        let (config, change) = merge(parse(text).unwrap(), &Entry::default()).unwrap();
        assert_eq!(change, Change::Replaced);
        assert_eq!(names(&config), ["first", PROVIDER_NAME, "last"]);
        assert_eq!(
            config.get("apiVersion").and_then(Node::as_str),
            Some("kubelet.config.k8s.io/v1beta1")
        );
        let Some(Node::Seq(list)) = config.get("providers") else {
            panic!()
        };
        // Another provider's fields keep their order.
        let Node::Map(first) = &list[0] else { panic!() };
        let keys: Vec<&str> = first.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["name", "zeta", "alpha"]);
        // A v1beta1 config asks for the v1beta1 protocol, which its kubelets speak.
        assert_eq!(
            list[1].get("apiVersion").and_then(Node::as_str),
            Some("credentialprovider.kubelet.k8s.io/v1beta1")
        );
    }

    #[test]
    fn refuses_what_is_not_a_credential_provider_config() {
        let cases = [
            ("- a\n", "not a kubelet CredentialProviderConfig"),
            ("apiVersion: v1\nkind: Pod\n", "kind is 'Pod'"),
            (
                "apiVersion: kubelet.config.k8s.io/v2\nkind: CredentialProviderConfig\n",
                "apiVersion is 'kubelet.config.k8s.io/v2'",
            ),
            (
                "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: x\n",
                "providers field",
            ),
            (
                "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: [x]\n",
                "providers field",
            ),
        ];
        for (text, want) in cases {
            let err = merge(parse(text).unwrap(), &Entry::default()).unwrap_err();
            assert!(err.to_string().contains(want), "{text}: {err}");
        }
        let v1alpha1 =
            "apiVersion: kubelet.config.k8s.io/v1alpha1\nkind: CredentialProviderConfig\n";
        let err = merge(parse(v1alpha1).unwrap(), &sa()).unwrap_err();
        assert!(
            err.to_string().contains("kubelet.config.k8s.io/v1 files"),
            "{err}"
        );
        // A missing or null providers field is an empty list.
        let (config, _) = merge(parse(v1alpha1).unwrap(), &Entry::default()).unwrap();
        assert_eq!(names(&config), [PROVIDER_NAME]);
    }

    #[test]
    fn cache_type_only_for_kubelets_that_know_it() {
        let mut e = sa();
        let with = entry(&e, CONFIG_VERSIONS[0]);
        assert!(
            with.get("tokenAttributes")
                .unwrap()
                .get("cacheType")
                .is_some()
        );
        if let Some(sa) = e.service_account_roles.as_mut() {
            sa.cache_type = false;
        }
        let without = entry(&e, CONFIG_VERSIONS[0]);
        assert!(
            without
                .get("tokenAttributes")
                .unwrap()
                .get("cacheType")
                .is_none()
        );
        assert_eq!(
            without.get("apiVersion").and_then(Node::as_str),
            Some("credentialprovider.kubelet.k8s.io/v1")
        );
    }

    #[test]
    fn kubelet_versions() {
        for (v, want) in [
            ("1.33", Some(33)),
            ("v1.34.2", Some(34)),
            ("1.33.4-eks-1234", Some(33)),
            ("v1.35.0+k3s1", Some(35)),
            ("2.1", None),
            ("1", None),
            ("1.x", None),
            ("", None),
        ] {
            assert_eq!(kubelet_minor(v), want, "{v}");
        }
    }
}
