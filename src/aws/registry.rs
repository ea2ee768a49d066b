//! ECR registry hostnames: parsing them in every partition, and grouping them by token scope.
//!
//! An ECR authorization token is valid for every registry of one region that the caller may
//! read, so registries are grouped by (region, FIPS) and each group costs one token call.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;

/// The registry hostname pattern AWS's own credential helpers use, across partitions.
static HOST: LazyLock<Regex> = LazyLock::new(|| {
    // The pattern is a constant, so compiling it cannot fail at run time.
    #[allow(clippy::expect_used)]
    Regex::new(
        r"^(\d{12})\.dkr[\.\-]ecr(\-fips)?\.([a-zA-Z0-9][a-zA-Z0-9-_]*)\.(amazonaws\.(?:com(?:\.cn)?|eu)|on\.(?:aws|amazonwebservices\.com\.cn)|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)$",
    )
    .expect("constant registry pattern")
});

/// One private ECR registry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Registry {
    /// The bare hostname, the key of the docker config's `auths` map.
    pub host: String,
    pub account: String,
    pub region: String,
    pub fips: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "'{0}' is not an ECR registry hostname: expected ACCOUNT.dkr.ecr.REGION.amazonaws.com \
         (or .amazonaws.com.cn in China), e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    )]
    NotEcr(String),
    #[error(
        "'{0}' is not an AWS account ID: expected 12 digits (STS GetCallerIdentity returned it)"
    )]
    Account(String),
    #[error("'{0}' is not an AWS region name such as us-east-1 or cn-north-1")]
    Region(String),
}

impl FromStr for Registry {
    type Err = RegistryError;

    /// Accepts what users paste: a hostname, optionally with `https://` and a trailing path.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let host = bare_host(input);
        let caps = HOST
            .captures(&host)
            .ok_or_else(|| RegistryError::NotEcr(input.to_string()))?;
        Ok(Registry {
            account: caps[1].to_string(),
            fips: caps.get(2).is_some(),
            region: caps[3].to_string(),
            host,
        })
    }
}

/// The hostname in what users paste: without `https://`, a trailing path, or upper case.
fn bare_host(input: &str) -> String {
    let trimmed = input.trim();
    let without_scheme = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    without_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// ECR Public: one host for every public repository, with its own token API.
pub const ECR_PUBLIC_HOST: &str = "public.ecr.aws";
/// The only region that serves the ecr-public token API.
pub const ECR_PUBLIC_REGION: &str = "us-east-1";

/// Whether `input` (pasted as for [`Registry`]) names ECR Public.
pub fn is_ecr_public(input: &str) -> bool {
    bare_host(input) == ECR_PUBLIC_HOST
}

/// A registry whose token we know how to get: a private ECR registry, or ECR Public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EcrHost {
    Private(Registry),
    Public,
}

impl EcrHost {
    /// Parses a registry hostname; anything that is neither private ECR nor ECR Public is an error.
    pub fn parse(input: &str) -> Result<EcrHost, RegistryError> {
        if is_ecr_public(input) {
            Ok(EcrHost::Public)
        } else {
            input.parse().map(EcrHost::Private)
        }
    }

    /// The bare hostname, the key of an `auths` map.
    pub fn host(&self) -> &str {
        match self {
            EcrHost::Private(r) => &r.host,
            EcrHost::Public => ECR_PUBLIC_HOST,
        }
    }

    /// The region the token call goes to.
    pub fn token_region(&self) -> &str {
        match self {
            EcrHost::Private(r) => &r.region,
            EcrHost::Public => ECR_PUBLIC_REGION,
        }
    }
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)
    }
}

impl Registry {
    /// The registry of `account` in `region`, with the DNS suffix of the region's partition.
    pub fn for_account(account: &str, region: &str, fips: bool) -> Result<Registry, RegistryError> {
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RegistryError::Account(account.to_string()));
        }
        if !is_region(region) {
            return Err(RegistryError::Region(region.to_string()));
        }
        let fips_part = if fips { "-fips" } else { "" };
        let host = format!(
            "{account}.dkr.ecr{fips_part}.{region}.{}",
            dns_suffix(region)
        );
        host.parse()
    }
}

/// Whether `s` looks like an AWS region name (`us-east-1`, `cn-north-1`, `us-isob-east-1`).
pub fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// The partitions other than `aws`: region prefix, partition name, DNS suffix. Where one prefix
/// starts another (`us-iso-`, `us-isob-`), the longer comes first.
const PARTITIONS: &[(&str, &str, &str)] = &[
    ("cn-", "aws-cn", "amazonaws.com.cn"),
    ("us-gov-", "aws-us-gov", "amazonaws.com"),
    ("us-isob-", "aws-iso-b", "sc2s.sgov.gov"),
    ("us-isof-", "aws-iso-f", "csp.hci.ic.gov"),
    ("us-iso-", "aws-iso", "c2s.ic.gov"),
    ("eu-isoe-", "aws-iso-e", "cloud.adc-e.uk"),
    ("eusc-", "aws-eusc", "amazonaws.eu"),
];

/// `(partition, DNS suffix)` of the partition a region belongs to.
fn partition_of(region: &str) -> (&'static str, &'static str) {
    PARTITIONS
        .iter()
        .find(|(prefix, _, _)| region.starts_with(prefix))
        .map_or(("aws", "amazonaws.com"), |(_, name, suffix)| {
            (*name, *suffix)
        })
}

/// The DNS suffix of the partition a region belongs to.
pub fn dns_suffix(region: &str) -> &'static str {
    partition_of(region).1
}

/// The partition a region belongs to (`aws`, `aws-cn`, `aws-us-gov`, ...): credentials from one
/// partition are unknown in every other.
pub fn partition(region: &str) -> &'static str {
    partition_of(region).0
}

/// The first item and the first after it whose regions are in different partitions: things
/// one run cannot all have credentials for.
pub fn mixed_partitions<T>(items: &[T], region: impl Fn(&T) -> &str) -> Option<(&T, &T)> {
    let first = items.first()?;
    let other = items
        .iter()
        .find(|item| partition(region(item)) != partition(region(first)))?;
    Some((first, other))
}

/// Registries that one GetAuthorizationToken call serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenScope {
    pub region: String,
    pub fips: bool,
    pub registries: Vec<Registry>,
}

/// Groups registries by (region, FIPS), deduplicated, in a stable order.
pub fn group_by_scope(registries: &[Registry]) -> Vec<TokenScope> {
    let mut groups: BTreeMap<(String, bool), Vec<Registry>> = BTreeMap::new();
    for r in registries {
        let group = groups.entry((r.region.clone(), r.fips)).or_default();
        if !group.contains(r) {
            group.push(r.clone());
        }
    }
    groups
        .into_iter()
        .map(|((region, fips), registries)| TokenScope {
            region,
            fips,
            registries,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Registry {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_partition() {
        let cases = [
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                "us-east-1",
                false,
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "cn-north-1",
                false,
            ),
            (
                "123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn",
                "cn-northwest-1",
                false,
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                "us-gov-west-1",
                true,
            ),
            ("123456789012.dkr-ecr.us-east-1.on.aws", "us-east-1", false),
            (
                "123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn",
                "cn-north-1",
                false,
            ),
            (
                "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov",
                "us-iso-east-1",
                false,
            ),
            (
                "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov",
                "us-isob-east-1",
                false,
            ),
            (
                "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk",
                "eu-isoe-west-1",
                false,
            ),
            (
                "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov",
                "us-isof-south-1",
                false,
            ),
            (
                "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu",
                "eusc-de-east-1",
                false,
            ),
        ];
        for (host, region, fips) in cases {
            let r = parse(host);
            assert_eq!(r.host, host);
            assert_eq!(r.account, "123456789012");
            assert_eq!(r.region, region, "{host}");
            assert_eq!(r.fips, fips, "{host}");
        }
    }

    #[test]
    fn strips_scheme_path_and_case() {
        let r = parse(" https://123456789012.DKR.ECR.eu-west-1.amazonaws.com/team/app:latest ");
        assert_eq!(r.host, "123456789012.dkr.ecr.eu-west-1.amazonaws.com");
    }

    #[test]
    fn rejects_what_is_not_ecr() {
        for bad in [
            "",
            "docker.io",
            "public.ecr.aws",
            "12345678901.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
            "123456789012.dkr.ecr.us-east-1.example.com",
        ] {
            let err = bad.parse::<Registry>().unwrap_err();
            assert!(
                err.to_string().contains("is not an ECR registry"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn ecr_public_is_its_own_kind_of_registry() {
        for public in [
            "public.ecr.aws",
            "https://Public.ECR.aws/",
            " public.ecr.aws/docker ",
        ] {
            assert!(is_ecr_public(public), "{public}");
            assert_eq!(EcrHost::parse(public), Ok(EcrHost::Public));
        }
        assert_eq!(EcrHost::Public.host(), "public.ecr.aws");
        assert_eq!(EcrHost::Public.token_region(), "us-east-1");
        for other in ["ecr.aws", "public.ecr.aws.evil.example", "gallery.ecr.aws"] {
            assert!(!is_ecr_public(other), "{other}");
            assert!(EcrHost::parse(other).is_err(), "{other}");
        }
        let private =
            EcrHost::parse("123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn").unwrap();
        assert_eq!(private.token_region(), "cn-north-1");
        assert_eq!(
            private.host(),
            "123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn"
        );
    }

    #[test]
    fn default_registry_uses_the_partition_suffix() {
        let r = Registry::for_account("123456789012", "cn-north-1", false).unwrap();
        assert_eq!(r.host, "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn");
        let r = Registry::for_account("123456789012", "us-gov-west-1", true).unwrap();
        assert_eq!(
            r.host,
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com"
        );
        let r = Registry::for_account("123456789012", "us-isob-east-1", false).unwrap();
        assert_eq!(r.host, "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov");
        assert!(Registry::for_account("1234", "us-east-1", false).is_err());
        assert!(Registry::for_account("123456789012", "mars", false).is_err());
    }

    #[test]
    fn groups_by_region_and_fips_once_each() {
        let regs: Vec<Registry> = [
            "111111111111.dkr.ecr.us-east-1.amazonaws.com",
            "222222222222.dkr.ecr.us-east-1.amazonaws.com",
            "111111111111.dkr.ecr.eu-west-1.amazonaws.com",
            "111111111111.dkr.ecr-fips.us-east-1.amazonaws.com",
            "111111111111.dkr.ecr.us-east-1.amazonaws.com",
        ]
        .iter()
        .map(|s| parse(s))
        .collect();
        let groups = group_by_scope(&regs);
        let summary: Vec<(&str, bool, usize)> = groups
            .iter()
            .map(|g| (g.region.as_str(), g.fips, g.registries.len()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("eu-west-1", false, 1),
                ("us-east-1", false, 2),
                ("us-east-1", true, 1)
            ]
        );
    }

    #[test]
    fn partitions_of_regions() {
        for (region, want) in [
            ("us-east-1", "aws"),
            ("eu-west-1", "aws"),
            ("cn-north-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("us-isof-south-1", "aws-iso-f"),
            ("eu-isoe-west-1", "aws-iso-e"),
            ("eusc-de-east-1", "aws-eusc"),
        ] {
            assert_eq!(partition(region), want, "{region}");
        }
        let items = |rs: &[&str]| -> Vec<(String, String)> {
            rs.iter()
                .map(|r| (format!("x in {r}"), r.to_string()))
                .collect()
        };
        assert!(mixed_partitions(&items(&["us-east-1", "eu-west-1"]), |i| &i.1).is_none());
        assert!(mixed_partitions(&items(&[]), |i| &i.1).is_none());
        let mixed = items(&["eu-west-1", "us-east-1", "cn-north-1"]);
        let (a, b) = mixed_partitions(&mixed, |i| &i.1).unwrap();
        assert_eq!((a.1.as_str(), b.1.as_str()), ("eu-west-1", "cn-north-1"));
    }

    #[test]
    fn region_names() {
        for ok in [
            "us-east-1",
            "cn-north-1",
            "us-gov-west-1",
            "us-isob-east-1",
            "eusc-de-east-1",
        ] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in ["", "us", "us-east", "US-EAST-1", "us-east-1a", "us--1"] {
            assert!(!is_region(bad), "{bad}");
        }
    }
}
