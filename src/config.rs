//! Command-line flags, their environment twins, and validation into a typed [`Config`].
//!
//! Every flag is documented here once and rendered by `--help`. Validation is pure: it reads
//! no files and calls no service, so a bad flag fails before anything else happens.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::aws::registry::{Registry, RegistryError, is_region};
use crate::aws::roles_anywhere::{self, Passphrase, RaError};
use crate::aws::settings::{AssumeRole, AwsSettings, CredentialsSource, is_role_arn};
use crate::cluster::labels::Selector;
use crate::cluster::namespaces::NamespaceSpec;
use crate::cluster::ownership::is_label_value;

// The ownership labels live with the code that writes them; re-exported for older callers.
pub use crate::cluster::ownership::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// How a Secret that already exists is brought up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Replace the data in place in one request: the Secret never goes missing. Falls back to
    /// delete-and-create only where Kubernetes forbids an update (different `type`, `immutable`).
    Update,
    /// Delete the Secret and create it again, as `kubectl delete` + `kubectl create` do.
    /// There is a short window in which pods that start cannot pull.
    Recreate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Refresh Amazon ECR image-pull secrets in Kubernetes namespaces.
///
/// One run gets an ECR token per region, then writes a kubernetes.io/dockerconfigjson Secret
/// into each namespace, and exits: 0 when every namespace was refreshed, 1 when some failed,
/// 2 when nothing could be done (configuration, credentials, tokens, cluster connection).
#[derive(Debug, Parser)]
#[command(
    name = "ecr-secret-refresher",
    version,
    about,
    long_about,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Namespaces to write the Secret into, comma-separated: exact names and glob patterns
    /// (`team-*`, `*`). Patterns and --namespace-selector list the cluster's namespaces.
    #[arg(
        global = true,
        long,
        env = "ECR_REFRESHER_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,

    /// Namespaces to leave out, comma-separated: exact names and glob patterns.
    #[arg(
        global = true,
        long,
        env = "ECR_REFRESHER_EXCLUDE_NAMESPACES",
        value_delimiter = ','
    )]
    pub exclude_namespaces: Vec<String>,

    /// Label selector for namespaces (e.g. `pulls-from=ecr,env!=dev`); combined with
    /// --namespaces when both are given. Alone, it selects every namespace it matches.
    #[arg(global = true, long, env = "ECR_REFRESHER_NAMESPACE_SELECTOR")]
    pub namespace_selector: Option<String>,

    /// Delete our Secret (our label and name only) from namespaces that are no longer selected.
    #[arg(global = true, long, env = "ECR_REFRESHER_PRUNE")]
    pub prune: bool,

    /// ServiceAccounts, comma-separated, whose imagePullSecrets get the Secret in every target
    /// namespace (e.g. `default`).
    #[arg(
        global = true,
        long,
        env = "ECR_REFRESHER_SERVICE_ACCOUNTS",
        value_delimiter = ','
    )]
    pub service_accounts: Vec<String>,

    /// Deadline for the run (e.g. `300`, `90s`, `10m`): getting credentials, tokens and the
    /// namespace list must finish by then, no namespace starts after it (those in flight
    /// finish), and pruning is skipped.
    #[arg(global = true, long, env = "ECR_REFRESHER_TIMEOUT", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,

    /// Name of the Secret to write in each namespace.
    #[arg(
        global = true,
        long,
        env = "ECR_REFRESHER_SECRET_NAME",
        default_value = "ecr"
    )]
    pub secret_name: String,

    /// ECR registry hostnames, comma-separated (e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com).
    /// Default: the caller's own account in --region.
    #[arg(
        global = true,
        long,
        env = "ECR_REFRESHER_REGISTRIES",
        value_delimiter = ','
    )]
    pub registries: Vec<String>,

    /// AWS region for STS and for the default registry. Default: AWS_REGION, the profile's
    /// region, or the region of the first registry.
    #[arg(global = true, long, env = "ECR_REFRESHER_REGION")]
    pub region: Option<String>,

    /// Use the FIPS endpoint and hostname for the default registry.
    #[arg(global = true, long, env = "ECR_REFRESHER_FIPS")]
    pub fips: bool,

    /// How an existing Secret is brought up to date.
    #[arg(global = true, long, env = "ECR_REFRESHER_STRATEGY", value_enum, default_value_t = Strategy::Update)]
    pub strategy: Strategy,

    /// Get the tokens and print the Secrets that would be written (passwords redacted), and
    /// change nothing. The cluster is contacted only to list namespaces when patterns or a
    /// selector need it; --prune and --service-accounts are not simulated.
    #[arg(global = true, long, env = "ECR_REFRESHER_DRY_RUN")]
    pub dry_run: bool,

    /// Take over a Secret of the same name that this tool did not create, or that another
    /// install (--instance) wrote.
    #[arg(global = true, long, env = "ECR_REFRESHER_FORCE")]
    pub force: bool,

    /// Name of this install, written in the `ecr-secret-refresher/instance` label of its
    /// Secrets: --prune deletes only Secrets with this instance, and a Secret of another
    /// instance is left alone unless --force. Default: in a pod, `NAMESPACE_SERVICEACCOUNT` it
    /// runs as; elsewhere, the kubeconfig context (hashed when it is not a valid label value).
    #[arg(global = true, long, env = "ECR_REFRESHER_INSTANCE")]
    pub instance: Option<String>,

    /// Log line format.
    #[arg(global = true, long, env = "ECR_REFRESHER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Path of the kubeconfig to use. Default: KUBECONFIG, ~/.kube/config, then the in-cluster
    /// service account.
    #[arg(global = true, long, env = "ECR_REFRESHER_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// kubeconfig context to use instead of the current one.
    #[arg(global = true, long, env = "ECR_REFRESHER_CONTEXT")]
    pub context: Option<String>,

    /// Where AWS credentials come from.
    #[arg(global = true, long, env = "ECR_REFRESHER_CREDENTIALS_SOURCE", value_enum, default_value_t = CredentialsSource::Auto)]
    pub credentials_source: CredentialsSource,

    /// IAM role to assume with STS before calling ECR (for a registry in another account).
    #[arg(global = true, long, env = "ECR_REFRESHER_ASSUME_ROLE_ARN")]
    pub assume_role_arn: Option<String>,

    /// External ID that the assumed role's trust policy requires.
    #[arg(
        global = true,
        long,
        env = "ECR_REFRESHER_EXTERNAL_ID",
        requires = "assume_role_arn"
    )]
    pub external_id: Option<String>,

    /// Session name for the assumed role (shows in CloudTrail).
    #[arg(
        global = true,
        long,
        env = "ECR_REFRESHER_ROLE_SESSION_NAME",
        default_value = "ecr-secret-refresher",
        requires = "assume_role_arn"
    )]
    pub role_session_name: String,

    /// How many namespaces are written at the same time.
    #[arg(
        global = true,
        long,
        env = "ECR_REFRESHER_CONCURRENCY",
        default_value_t = 16
    )]
    pub concurrency: usize,

    #[command(flatten)]
    pub roles_anywhere: RolesAnywhereArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Check, without changing anything, everything a refresh with these flags needs, and
    /// print one row per check with a fix for each failure. Exit 0 only when a refresh would work.
    Doctor,
    /// Print IAM Roles Anywhere credentials as `credential_process` JSON, like
    /// `aws_signing_helper credential-process`, for use in an AWS config profile.
    CredentialProcess,
}

/// Parses `300`, `90s`, `10m` or `1h`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let bad = || format!("'{s}' is not a duration such as 300, 90s, 10m or 1h (at most a year)");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    }
    .filter(|secs| *secs <= 366 * 24 * 3600)
    .ok_or_else(bad)?;
    if secs == 0 {
        return Err("the duration must be more than zero".into());
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// IAM Roles Anywhere: a certificate and its private key instead of AWS keys.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "IAM Roles Anywhere")]
pub struct RolesAnywhereArgs {
    /// PEM certificate, or a bundle whose first certificate is the leaf.
    #[arg(global = true, long, env = "ECR_REFRESHER_RA_CERTIFICATE")]
    pub ra_certificate: Option<PathBuf>,
    /// PEM private key of the certificate: RSA (PKCS#1/PKCS#8), EC P-256/P-384 (SEC1/PKCS#8),
    /// or encrypted PKCS#8.
    #[arg(global = true, long, env = "ECR_REFRESHER_RA_PRIVATE_KEY")]
    pub ra_private_key: Option<PathBuf>,
    /// PEM intermediate certificates, sent as the chain.
    #[arg(global = true, long, env = "ECR_REFRESHER_RA_INTERMEDIATES")]
    pub ra_intermediates: Option<PathBuf>,
    /// Trust anchor ARN; its region is where CreateSession is called.
    #[arg(global = true, long, env = "ECR_REFRESHER_RA_TRUST_ANCHOR_ARN")]
    pub ra_trust_anchor_arn: Option<String>,
    /// Profile ARN (same region as the trust anchor).
    #[arg(global = true, long, env = "ECR_REFRESHER_RA_PROFILE_ARN")]
    pub ra_profile_arn: Option<String>,
    /// IAM role to get credentials for.
    #[arg(global = true, long, env = "ECR_REFRESHER_RA_ROLE_ARN")]
    pub ra_role_arn: Option<String>,
    /// Session length in seconds, 900 to 43200.
    #[arg(
        global = true,
        long,
        env = "ECR_REFRESHER_RA_SESSION_DURATION",
        default_value_t = 3600
    )]
    pub ra_session_duration: u32,
    /// Role session name (the profile must allow it).
    #[arg(global = true, long, env = "ECR_REFRESHER_RA_ROLE_SESSION_NAME")]
    pub ra_role_session_name: Option<String>,
    /// Endpoint override, e.g. a VPC endpoint. Default: https://rolesanywhere.REGION.amazonaws.com.
    #[arg(global = true, long, env = "ECR_REFRESHER_RA_ENDPOINT")]
    pub ra_endpoint: Option<String>,
    /// Name of the environment variable that holds the encrypted key's passphrase.
    #[arg(
        global = true,
        long,
        env = "ECR_REFRESHER_RA_PRIVATE_KEY_PASSPHRASE_ENV",
        conflicts_with = "ra_private_key_passphrase_file"
    )]
    pub ra_private_key_passphrase_env: Option<String>,
    /// File that holds the encrypted key's passphrase.
    #[arg(
        global = true,
        long,
        env = "ECR_REFRESHER_RA_PRIVATE_KEY_PASSPHRASE_FILE"
    )]
    pub ra_private_key_passphrase_file: Option<PathBuf>,
}

impl RolesAnywhereArgs {
    /// The validated settings, `None` when no Roles Anywhere flag is set.
    pub fn into_settings(self) -> Result<Option<roles_anywhere::Settings>, ConfigError> {
        let any = self.ra_certificate.is_some()
            || self.ra_private_key.is_some()
            || self.ra_trust_anchor_arn.is_some()
            || self.ra_profile_arn.is_some()
            || self.ra_role_arn.is_some();
        if !any {
            return Ok(None);
        }
        let mut missing = Vec::new();
        for (flag, set) in [
            ("--ra-certificate", self.ra_certificate.is_some()),
            ("--ra-private-key", self.ra_private_key.is_some()),
            ("--ra-trust-anchor-arn", self.ra_trust_anchor_arn.is_some()),
            ("--ra-profile-arn", self.ra_profile_arn.is_some()),
            ("--ra-role-arn", self.ra_role_arn.is_some()),
        ] {
            if !set {
                missing.push(flag);
            }
        }
        let (
            Some(certificate),
            Some(private_key),
            Some(trust_anchor_arn),
            Some(profile_arn),
            Some(role_arn),
        ) = (
            self.ra_certificate,
            self.ra_private_key,
            self.ra_trust_anchor_arn,
            self.ra_profile_arn,
            self.ra_role_arn,
        )
        else {
            return Err(ConfigError::RolesAnywhereIncomplete(missing.join(", ")));
        };
        let passphrase = match (
            self.ra_private_key_passphrase_env,
            self.ra_private_key_passphrase_file,
        ) {
            (Some(name), _) => Some(Passphrase::Env(name)),
            (None, Some(path)) => Some(Passphrase::File(path)),
            (None, None) => None,
        };
        roles_anywhere::Settings::new(
            certificate,
            private_key,
            self.ra_intermediates,
            trust_anchor_arn,
            profile_arn,
            role_arn,
            self.ra_session_duration,
            self.ra_role_session_name,
            self.ra_endpoint,
            passphrase,
        )
        .map(Some)
        .map_err(ConfigError::RolesAnywhere)
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub namespaces: NamespaceSpec,
    pub prune: bool,
    pub service_accounts: Vec<String>,
    pub timeout: Option<std::time::Duration>,
    pub secret_name: String,
    pub registries: Vec<Registry>,
    pub strategy: Strategy,
    pub dry_run: bool,
    pub force: bool,
    /// `--instance`; `None` derives it from the cluster connection.
    pub instance: Option<String>,
    pub log_format: LogFormat,
    pub kube: KubeTarget,
    pub aws: AwsSettings,
    pub concurrency: usize,
}

/// Which cluster to talk to.
#[derive(Debug, Clone, Default)]
pub struct KubeTarget {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{flag}: '{value}' is not a namespace name or pattern (lower-case letters, digits, '-', and '*' or '?' in patterns)"
    )]
    Namespace { flag: &'static str, value: String },
    #[error(
        "no namespaces: name them with --namespaces (e.g. --namespaces default or 'team-*') or select them with --namespace-selector"
    )]
    NoNamespaces,
    #[error("--namespace-selector: {0}")]
    Selector(String),
    #[error("--service-accounts: '{0}' is not a valid ServiceAccount name")]
    ServiceAccount(String),
    #[error(
        "--secret-name: '{0}' is not a valid Secret name (lower-case letters, digits, '-' and '.', at most 253 characters)"
    )]
    SecretName(String),
    #[error("--registries: {0}")]
    Registry(#[from] RegistryError),
    #[error("--region: '{0}' is not an AWS region name such as us-east-1 or cn-north-1")]
    Region(String),
    #[error(
        "--assume-role-arn: '{0}' is not an IAM role ARN such as arn:aws:iam::123456789012:role/ecr-reader"
    )]
    RoleArn(String),
    #[error("--role-session-name: '{0}' must be 2 to 64 characters of letters, digits and =,.@-_")]
    SessionName(String),
    #[error(
        "--instance: '{0}' is not a valid label value (1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
    )]
    Instance(String),
    #[error("--concurrency must be between 1 and 256, got {0}")]
    Concurrency(usize),
    #[error("IAM Roles Anywhere needs {0} too")]
    RolesAnywhereIncomplete(String),
    #[error(transparent)]
    RolesAnywhere(RaError),
    #[error(
        "--credentials-source roles-anywhere needs --ra-certificate, --ra-private-key, --ra-trust-anchor-arn, --ra-profile-arn and --ra-role-arn"
    )]
    RolesAnywhereMissing,
}

/// Whether `s` is an RFC 1123 label, as namespace names must be.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is an RFC 1123 subdomain, as Secret names must be.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

impl Cli {
    /// Checks every flag and builds the typed configuration.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let names = |flag: &'static str, list: &[String]| -> Result<Vec<String>, ConfigError> {
            let mut out: Vec<String> = Vec::new();
            for ns in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
                let valid = if crate::cluster::labels::is_pattern(ns) {
                    ns.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-*?".contains(c))
                } else {
                    is_dns_label(ns)
                };
                if !valid {
                    return Err(ConfigError::Namespace {
                        flag,
                        value: ns.to_string(),
                    });
                }
                if !out.iter().any(|n| n == ns) {
                    out.push(ns.to_string());
                }
            }
            Ok(out)
        };
        let selector = match self.namespace_selector.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => Some(s.parse::<Selector>().map_err(ConfigError::Selector)?),
            _ => None,
        };
        let namespaces = NamespaceSpec {
            include: names("--namespaces", &self.namespaces)?,
            exclude: names("--exclude-namespaces", &self.exclude_namespaces)?,
            selector,
        };
        if namespaces.include.is_empty() && namespaces.selector.is_none() {
            return Err(ConfigError::NoNamespaces);
        }
        let service_accounts: Vec<String> = self
            .service_accounts
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(bad) = service_accounts.iter().find(|s| !is_dns_subdomain(s)) {
            return Err(ConfigError::ServiceAccount(bad.clone()));
        }
        if !is_dns_subdomain(&self.secret_name) {
            return Err(ConfigError::SecretName(self.secret_name));
        }
        let registries = self
            .registries
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Registry>, _>>()?;
        if let Some(region) = &self.region
            && !is_region(region)
        {
            return Err(ConfigError::Region(region.clone()));
        }
        let assume_role = match self.assume_role_arn {
            Some(arn) => {
                if !is_role_arn(&arn) {
                    return Err(ConfigError::RoleArn(arn));
                }
                let name = &self.role_session_name;
                if !(2..=64).contains(&name.len())
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "=,.@-_".contains(c))
                {
                    return Err(ConfigError::SessionName(name.clone()));
                }
                Some(AssumeRole {
                    role_arn: arn,
                    external_id: self.external_id,
                    session_name: self.role_session_name,
                })
            }
            None => None,
        };
        // Empty means unset, so that a ConfigMap may carry the variable without a value.
        let instance = self
            .instance
            .map(|i| i.trim().to_string())
            .filter(|i| !i.is_empty());
        if let Some(bad) = instance.as_ref().filter(|i| !is_label_value(i)) {
            return Err(ConfigError::Instance(bad.clone()));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(ConfigError::Concurrency(self.concurrency));
        }
        let roles_anywhere = self.roles_anywhere.into_settings()?;
        if self.credentials_source == CredentialsSource::RolesAnywhere && roles_anywhere.is_none() {
            return Err(ConfigError::RolesAnywhereMissing);
        }
        Ok(Config {
            namespaces,
            prune: self.prune,
            service_accounts,
            timeout: self.timeout,
            secret_name: self.secret_name,
            registries,
            strategy: self.strategy,
            dry_run: self.dry_run,
            force: self.force,
            instance,
            log_format: self.log_format,
            kube: KubeTarget {
                kubeconfig: self.kubeconfig,
                context: self.context,
            },
            aws: AwsSettings {
                source: self.credentials_source,
                region: self.region,
                fips: self.fips,
                assume_role,
                roles_anywhere,
            },
            concurrency: self.concurrency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["ecr-secret-refresher"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().into_config()
    }

    #[test]
    fn defaults() {
        let c = cli(&["--namespaces", "a,b, c,a"]).unwrap();
        assert_eq!(c.namespaces.include, ["a", "b", "c"]);
        assert!(c.namespaces.exclude.is_empty() && c.namespaces.selector.is_none());
        assert!(!c.prune && c.service_accounts.is_empty() && c.timeout.is_none());
        assert_eq!(c.secret_name, "ecr");
        assert_eq!(c.strategy, Strategy::Update);
        assert!(c.registries.is_empty());
        assert_eq!(c.aws.source, CredentialsSource::Auto);
        assert!(c.aws.assume_role.is_none());
        assert_eq!(c.concurrency, 16);
    }

    #[test]
    fn each_bad_flag_is_named() {
        let cases: &[(&[&str], &str)] = &[
            (&["--namespaces", "Team_A"], "--namespaces: 'Team_A'"),
            (&["--namespaces", ","], "no namespaces"),
            (
                &["--namespaces", "team-*", "--exclude-namespaces", "Kube_*"],
                "--exclude-namespaces: 'Kube_*'",
            ),
            (&["--namespace-selector", "a in b"], "--namespace-selector"),
            (
                &["--namespaces", "a", "--service-accounts", "Default"],
                "--service-accounts: 'Default'",
            ),
            (
                &["--namespaces", "a", "--secret-name", "Ecr"],
                "--secret-name: 'Ecr'",
            ),
            (
                &["--namespaces", "a", "--registries", "docker.io"],
                "--registries: 'docker.io'",
            ),
            (
                &["--namespaces", "a", "--region", "useast1"],
                "--region: 'useast1'",
            ),
            (
                &[
                    "--namespaces",
                    "a",
                    "--assume-role-arn",
                    "arn:aws:iam::1:role/x",
                ],
                "--assume-role-arn",
            ),
            (
                &["--namespaces", "a", "--concurrency", "0"],
                "--concurrency",
            ),
            (
                &["--namespaces", "a", "--instance", "team/a"],
                "--instance: 'team/a'",
            ),
            (&["--namespaces", "a", "--instance=a-"], "--instance: 'a-'"),
            (
                &[
                    "--namespaces",
                    "a",
                    "--assume-role-arn",
                    "arn:aws:iam::123456789012:role/r",
                    "--role-session-name",
                    "a b",
                ],
                "--role-session-name",
            ),
        ];
        for (args, want) in cases {
            let err = cli(args).unwrap_err().to_string();
            assert!(err.starts_with(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn patterns_selectors_and_durations() {
        let c = cli(&[
            "--namespaces",
            "team-*,web",
            "--exclude-namespaces",
            "team-old",
            "--namespace-selector",
            "pulls=ecr",
            "--timeout",
            "10m",
        ])
        .unwrap();
        assert_eq!(c.namespaces.include, ["team-*", "web"]);
        assert!(c.namespaces.needs_listing());
        assert_eq!(c.timeout, Some(std::time::Duration::from_secs(600)));
        let c = cli(&["--namespace-selector", "pulls=ecr"]).unwrap();
        assert!(c.namespaces.include.is_empty());
        assert_eq!(parse_duration("90"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(
            parse_duration("2h"),
            Ok(std::time::Duration::from_secs(7200))
        );
        assert!(
            parse_duration("0").is_err()
                && parse_duration("5d").is_err()
                && parse_duration("m").is_err()
        );
    }

    #[test]
    fn instance_is_a_label_value_and_empty_means_derived() {
        assert_eq!(
            cli(&["--namespaces", "a", "--instance", " team-a_1 "])
                .unwrap()
                .instance
                .as_deref(),
            Some("team-a_1")
        );
        assert!(
            cli(&["--namespaces", "a", "--instance="])
                .unwrap()
                .instance
                .is_none()
        );
        assert!(cli(&["--namespaces", "a"]).unwrap().instance.is_none());
    }

    #[test]
    fn role_arns_in_every_partition() {
        assert!(is_role_arn("arn:aws:iam::123456789012:role/ecr-reader"));
        assert!(is_role_arn("arn:aws-cn:iam::123456789012:role/path/ecr"));
        assert!(is_role_arn("arn:aws-us-gov:iam::123456789012:role/x"));
        assert!(!is_role_arn("arn:aws:iam::123456789012:user/x"));
        assert!(!is_role_arn("arn:aws:sts::123456789012:role/x"));
        assert!(!is_role_arn("role/x"));
    }

    #[test]
    fn external_id_needs_a_role() {
        let err =
            Cli::try_parse_from(["x", "--namespaces", "a", "--external-id", "e"]).unwrap_err();
        assert!(err.to_string().contains("--assume-role-arn"), "{err}");
    }

    #[test]
    fn registries_are_parsed_and_stripped() {
        let c = cli(&[
            "--namespaces",
            "a",
            "--registries",
            "https://123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/, 123456789012.dkr.ecr.us-east-1.amazonaws.com",
        ])
        .unwrap();
        let hosts: Vec<&str> = c.registries.iter().map(|r| r.host.as_str()).collect();
        assert_eq!(
            hosts,
            [
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com"
            ]
        );
    }
}
