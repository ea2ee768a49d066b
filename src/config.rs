//! Command-line flags, their environment twins, and validation into a typed [`Config`].
//!
//! Every flag is documented here once and rendered by `--help`. Validation is pure: it reads
//! no files and calls no service, so a bad flag fails before anything else happens.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::aws::registry::{
    ECR_PUBLIC_HOST, ECR_PUBLIC_REGION, Registry, RegistryError, is_ecr_public, is_region,
    mixed_partitions, partition,
};
use crate::aws::roles_anywhere::{self, Passphrase, RaError};
use crate::aws::settings::{AssumeRole, AwsSettings, CredentialsSource, is_role_arn};
use crate::cluster::labels::Selector;
use crate::cluster::names::{is_dns_label, is_dns_subdomain, is_label_value};
use crate::cluster::namespaces::NamespaceSpec;

/// The session name of an assumed role when --role-session-name is not given.
const DEFAULT_SESSION_NAME: &str = "ecr-secret-refresher";

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
/// 2 when nothing was done and something must be fixed (flags, credentials, permissions), 3 when
/// nothing was done because AWS or the API server did not answer or failed (a later run may pass).
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
    /// finish, within --namespace-timeout), and pruning is skipped.
    #[arg(global = true, long, env = "ECR_REFRESHER_TIMEOUT", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,

    /// Time budget of each namespace (e.g. `20s`): all its requests, retries and backoff
    /// together, the ServiceAccounts and the failure Event included. Each request waits at most
    /// half of it (10 s at most). A namespace over budget fails and the others go on. Never more
    /// than --timeout.
    #[arg(
        global = true,
        long,
        env = "ECR_REFRESHER_NAMESPACE_TIMEOUT",
        value_parser = parse_duration,
        default_value = "20s"
    )]
    pub namespace_timeout: std::time::Duration,

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

    /// Get the tokens, change nothing, and print a preview of the Secret and the namespaces it
    /// would go to (passwords redacted; not a manifest, `kubectl apply` refuses it). The cluster
    /// is contacted only to list namespaces when patterns or a selector need it; --prune and
    /// --service-accounts are not simulated.
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
    #[arg(global = true, long, env = "ECR_REFRESHER_EXTERNAL_ID")]
    pub external_id: Option<String>,

    /// Session name for the assumed role (shows in CloudTrail).
    #[arg(
        global = true,
        long,
        env = "ECR_REFRESHER_ROLE_SESSION_NAME",
        default_value = DEFAULT_SESSION_NAME
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

    /// The flags whose value came from their environment variable, not the command line; see
    /// [`Cli::parse_args`].
    #[arg(skip)]
    pub from_env: Vec<String>,

    #[command(flatten)]
    pub kubelet: KubeletArgs,
}

/// The annotation that names a ServiceAccount's pull role: the one AWS's own plugin reads, so
/// ServiceAccounts set up for it work unchanged.
pub const DEFAULT_ROLE_ANNOTATION: &str = "eks.amazonaws.com/ecr-role-arn";

/// The kubelet credential provider mode (`kubelet-credential-provider`).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Kubelet credential provider")]
pub struct KubeletArgs {
    /// ServiceAccount annotation that names the IAM role to pull with (KEP-4412 service account
    /// tokens). List it in the kubelet config's tokenAttributes annotation keys.
    #[arg(
        global = true,
        long,
        env = "ECR_REFRESHER_ROLE_ANNOTATION",
        default_value = DEFAULT_ROLE_ANNOTATION
    )]
    pub role_annotation: String,
    /// Refuse requests whose ServiceAccount names no role, instead of pulling with the node's
    /// own identity.
    #[arg(global = true, long, env = "ECR_REFRESHER_REQUIRE_ROLE")]
    pub require_role: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Check, without changing anything, everything a refresh with these flags needs, and
    /// print one row per check with a fix for each failure. Exit 0 only when a refresh would work.
    /// With --image: say why that image does or does not pull.
    Doctor(DoctorArgs),
    /// Print IAM Roles Anywhere credentials as `credential_process` JSON, like
    /// `aws_signing_helper credential-process`, for use in an AWS config profile.
    CredentialProcess,
    /// Answer one kubelet image credential provider request: a CredentialProviderRequest on
    /// stdin, a CredentialProviderResponse on stdout. Needs no cluster settings.
    KubeletCredentialProvider,
    /// Keep running: refresh at start and before the tokens expire, give a new or newly selected
    /// namespace its Secret within seconds (a watch of namespace names and labels), and serve
    /// /healthz, /readyz and /metrics. Replicas elect one leader (a Lease); only it writes.
    Watch(WatchArgs),
}

/// How long an ECR token lives: `--refresh-before` must be shorter.
pub const TOKEN_LIFE: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// `watch`: the long-running mode.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct WatchArgs {
    /// Refresh this long before the earliest token expires (e.g. `1h`, `90m`), less a little
    /// jitter. ECR tokens live 12 hours, so the default refreshes about every 11 hours.
    #[arg(
        long,
        env = "ECR_REFRESHER_REFRESH_BEFORE",
        value_parser = parse_duration,
        default_value = "1h"
    )]
    pub refresh_before: std::time::Duration,
    /// Address and port of the HTTP server for GET /healthz, /readyz and /metrics.
    #[arg(long, env = "ECR_REFRESHER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: std::net::SocketAddr,
    /// Name of the coordination.k8s.io Lease the replicas elect their leader with.
    #[arg(
        long,
        env = "ECR_REFRESHER_LEASE_NAME",
        default_value = "ecr-secret-refresher"
    )]
    pub lease_name: String,
    /// Namespace of the Lease. Default: the pod's own namespace, else the kubeconfig context's.
    #[arg(long, env = "ECR_REFRESHER_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Run without a Lease: for a single replica, or a laptop. Two replicas without it would
    /// both write.
    #[arg(long, env = "ECR_REFRESHER_NO_LEADER_ELECTION")]
    pub no_leader_election: bool,
}

impl WatchArgs {
    /// Checks the names and the margin; `dry_run` is the global --dry-run, which a watch refuses.
    pub fn validate(&self, dry_run: bool) -> Result<(), ConfigError> {
        let bad = |flag, message: String| Err(ConfigError::Watch { flag, message });
        if dry_run {
            return bad(
                "--dry-run",
                "a watch writes Secrets as namespaces appear, so it has no preview; run `ecr-secret-refresher --dry-run` (without `watch`) to see what a refresh would write".into(),
            );
        }
        if self.refresh_before >= TOKEN_LIFE {
            return bad(
                "--refresh-before",
                format!(
                    "{}s is not shorter than the 12 hours an ECR token lives; the default is 1h",
                    self.refresh_before.as_secs()
                ),
            );
        }
        if !is_dns_subdomain(&self.lease_name) {
            return bad(
                "--lease-name",
                format!(
                    "'{}' is not a valid object name (lower-case letters, digits, '-' and '.')",
                    self.lease_name
                ),
            );
        }
        if let Some(ns) = self.lease_namespace.as_ref().filter(|ns| !is_dns_label(ns)) {
            return bad(
                "--lease-namespace",
                format!("'{ns}' is not a namespace name"),
            );
        }
        Ok(())
    }
}

/// `doctor --image`: follow one image's pull path step by step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct DoctorArgs {
    /// Check why this image does or does not pull (e.g.
    /// 123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1): the reference, the token,
    /// the repository and tag, the pull permissions, the registry endpoint, and with
    /// --namespace the pull Secret and ServiceAccount. --namespaces is not needed.
    #[arg(long)]
    pub image: Option<String>,
    /// With --image: also check the pull Secret (--secret-name) in this namespace.
    #[arg(long, requires = "image")]
    pub namespace: Option<String>,
    /// With --namespace: the ServiceAccount whose imagePullSecrets must list the Secret.
    #[arg(long, requires = "namespace", default_value = "default")]
    pub service_account: String,
    /// With --image: connect to HOST:PORT for the registry endpoint check instead of the
    /// registry's own address, keeping its name for TLS (like curl --connect-to). For a VPC
    /// endpoint without private DNS, or tests.
    #[arg(long, env = "ECR_REFRESHER_REGISTRY_ADDRESS")]
    pub registry_address: Option<String>,
}

impl DoctorArgs {
    /// Checks the names; the image itself is checked by the doctor, as its first row.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(ns) = &self.namespace
            && !is_dns_label(ns)
        {
            return Err(ConfigError::Namespace {
                flag: "--namespace",
                value: ns.clone(),
            });
        }
        if !is_dns_subdomain(&self.service_account) {
            return Err(ConfigError::DoctorServiceAccount(
                self.service_account.clone(),
            ));
        }
        Ok(())
    }
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
    /// Each namespace's time budget, at most `timeout`.
    pub namespace_timeout: std::time::Duration,
    pub secret_name: String,
    pub registries: Vec<Registry>,
    /// `public.ecr.aws` was named in --registries: write its entry too (one ecr-public call).
    pub ecr_public: bool,
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
    #[error("--service-account: '{0}' is not a valid ServiceAccount name")]
    DoctorServiceAccount(String),
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
    #[error("{0} only applies to an assumed role: add --assume-role-arn, or drop {0}")]
    NeedsAssumeRole(&'static str),
    #[error(
        "--instance: '{0}' is not a valid label value (1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
    )]
    Instance(String),
    #[error("{flag}: {message}")]
    Watch { flag: &'static str, message: String },
    #[error("--concurrency must be between 1 and 256, got {0}")]
    Concurrency(usize),
    #[error(
        "{first} is in the AWS partition {first_partition} but {second} is in {second_partition}: one set of AWS credentials never works in two partitions. Run one refresher per partition (two CronJobs, or two runs with different --secret-name values), each with the registries of its partition"
    )]
    MixedPartitions {
        first: String,
        first_partition: &'static str,
        second: String,
        second_partition: &'static str,
    },
    #[error("IAM Roles Anywhere needs {0} too")]
    RolesAnywhereIncomplete(String),
    #[error(transparent)]
    RolesAnywhere(RaError),
    #[error(
        "--credentials-source roles-anywhere needs --ra-certificate, --ra-private-key, --ra-trust-anchor-arn, --ra-profile-arn and --ra-role-arn"
    )]
    RolesAnywhereMissing,
}

/// Flags that only make sense with --assume-role-arn, with their environment twins.
const ASSUME_ROLE_ONLY: [(&str, &str, &str); 2] = [
    ("external_id", "--external-id", "ECR_REFRESHER_EXTERNAL_ID"),
    (
        "role_session_name",
        "--role-session-name",
        "ECR_REFRESHER_ROLE_SESSION_NAME",
    ),
];

/// Fails when the registries, --region and the Roles Anywhere trust anchor are not all in one
/// partition: credentials from one partition are refused in every other, so such a run can
/// never succeed.
fn check_one_partition(
    registries: &[Registry],
    ecr_public: bool,
    region: Option<&str>,
    roles_anywhere: Option<&roles_anywhere::Settings>,
) -> Result<(), ConfigError> {
    let mut items: Vec<(String, String)> = Vec::new();
    if let Some(ra) = roles_anywhere {
        items.push((
            format!("the trust anchor of --ra-trust-anchor-arn ({})", ra.region),
            ra.region.clone(),
        ));
    }
    if let Some(r) = region {
        items.push((format!("--region {r}"), r.to_string()));
    }
    items.extend(
        registries
            .iter()
            .map(|r| (format!("the registry {}", r.host), r.region.clone())),
    );
    if ecr_public {
        items.push((
            format!("{ECR_PUBLIC_HOST} (ECR Public, {ECR_PUBLIC_REGION})"),
            ECR_PUBLIC_REGION.to_string(),
        ));
    }
    match mixed_partitions(&items, |(_, region)| region) {
        None => Ok(()),
        Some((first, second)) => Err(ConfigError::MixedPartitions {
            first: first.0.clone(),
            first_partition: partition(&first.1),
            second: second.0.clone(),
            second_partition: partition(&second.1),
        }),
    }
}

impl Cli {
    /// Parses the process's arguments and environment, and notes which flags came from the
    /// environment: a ConfigMap that carries defaults for every install must not break the ones
    /// that leave some feature off.
    pub fn parse_args() -> Cli {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Cli::command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        cli.from_env = ASSUME_ROLE_ONLY
            .iter()
            .filter(|(id, _, _)| {
                matches.value_source(id) == Some(clap::parser::ValueSource::EnvVariable)
            })
            .map(|(id, _, _)| id.to_string())
            .collect();
        cli
    }

    /// The assume-role-only flags set without --assume-role-arn: an error for a flag given on
    /// the command line, a warning (and the value ignored) for one that came from the environment.
    fn check_assume_role_only(&self) -> Result<(), ConfigError> {
        if self.assume_role_arn.is_some() {
            return Ok(());
        }
        let set = |id: &str| match id {
            "external_id" => self.external_id.is_some(),
            _ => self.role_session_name != DEFAULT_SESSION_NAME,
        };
        for (id, flag, env) in ASSUME_ROLE_ONLY {
            if !set(id) {
                continue;
            }
            if self.from_env.iter().any(|f| f == id) {
                tracing::warn!(
                    "{env} is set but ECR_REFRESHER_ASSUME_ROLE_ARN is not: ignoring {env}, no role is assumed"
                );
            } else {
                return Err(ConfigError::NeedsAssumeRole(flag));
            }
        }
        Ok(())
    }

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
        // `doctor --image` names its one namespace with --namespace, if any.
        let image_doctor = matches!(&self.command, Some(Command::Doctor(d)) if d.image.is_some());
        if let Some(Command::Doctor(d)) = &self.command {
            d.validate()?;
        }
        if let Some(Command::Watch(w)) = &self.command {
            w.validate(self.dry_run)?;
        }
        if namespaces.include.is_empty() && namespaces.selector.is_none() && !image_doctor {
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
        let named = self
            .registries
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty());
        let ecr_public = named.clone().any(is_ecr_public);
        let registries = named
            .filter(|s| !is_ecr_public(s))
            .map(str::parse)
            .collect::<Result<Vec<Registry>, _>>()?;
        if !(1..=256).contains(&self.concurrency) {
            return Err(ConfigError::Concurrency(self.concurrency));
        }
        // Empty means unset, so that a ConfigMap may carry the variable without a value.
        let instance = self
            .instance
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(str::to_string);
        if let Some(bad) = instance.as_ref().filter(|i| !is_label_value(i)) {
            return Err(ConfigError::Instance(bad.clone()));
        }
        let aws = self.aws_settings()?;
        check_one_partition(
            &registries,
            ecr_public,
            aws.region.as_deref(),
            aws.roles_anywhere.as_ref(),
        )?;
        Ok(Config {
            namespaces,
            prune: self.prune,
            service_accounts,
            timeout: self.timeout,
            namespace_timeout: self
                .timeout
                .map_or(self.namespace_timeout, |t| t.min(self.namespace_timeout)),
            secret_name: self.secret_name,
            registries,
            ecr_public,
            strategy: self.strategy,
            dry_run: self.dry_run,
            force: self.force,
            instance,
            log_format: self.log_format,
            kube: KubeTarget {
                kubeconfig: self.kubeconfig,
                context: self.context,
            },
            aws,
            concurrency: self.concurrency,
        })
    }

    /// Checks the AWS flags only (region, credentials source, role, Roles Anywhere) and builds
    /// their settings: what a command that never touches the cluster needs.
    pub fn aws_settings(&self) -> Result<AwsSettings, ConfigError> {
        if let Some(region) = &self.region
            && !is_region(region)
        {
            return Err(ConfigError::Region(region.clone()));
        }
        self.check_assume_role_only()?;
        let assume_role = match &self.assume_role_arn {
            Some(arn) => {
                if !is_role_arn(arn) {
                    return Err(ConfigError::RoleArn(arn.clone()));
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
                    role_arn: arn.clone(),
                    external_id: self.external_id.clone(),
                    session_name: self.role_session_name.clone(),
                })
            }
            None => None,
        };
        let roles_anywhere = self.roles_anywhere.clone().into_settings()?;
        if self.credentials_source == CredentialsSource::RolesAnywhere && roles_anywhere.is_none() {
            return Err(ConfigError::RolesAnywhereMissing);
        }
        Ok(AwsSettings {
            source: self.credentials_source,
            region: self.region.clone(),
            fips: self.fips,
            assume_role,
            roles_anywhere,
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
        assert_eq!(c.namespace_timeout, std::time::Duration::from_secs(20));
    }

    #[test]
    fn a_namespace_budget_never_exceeds_the_run_deadline() {
        let secs = std::time::Duration::from_secs;
        let c = cli(&["--namespaces", "a", "--namespace-timeout", "45s"]).unwrap();
        assert_eq!(c.namespace_timeout, secs(45));
        let c = cli(&["--namespaces", "a", "--timeout", "10s"]).unwrap();
        assert_eq!((c.timeout, c.namespace_timeout), (Some(secs(10)), secs(10)));
        let c = cli(&[
            "--namespaces",
            "a",
            "--timeout",
            "5m",
            "--namespace-timeout",
            "8",
        ])
        .unwrap();
        assert_eq!(c.namespace_timeout, secs(8));
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
    fn watch_flags_have_the_contract_defaults_and_are_checked() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["ecr-secret-refresher", "watch", "--namespaces", "a"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).unwrap()
        };
        let Some(Command::Watch(w)) = parse(&[]).command else {
            panic!("watch")
        };
        assert_eq!(w.refresh_before, std::time::Duration::from_secs(3600));
        assert_eq!(w.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(w.lease_name, "ecr-secret-refresher");
        assert!(w.lease_namespace.is_none() && !w.no_leader_election);
        assert!(parse(&[]).into_config().is_ok());
        let c = parse(&["--refresh-before", "90m", "--no-leader-election"]);
        let Some(Command::Watch(w)) = &c.command else {
            panic!("watch")
        };
        assert_eq!(w.refresh_before, std::time::Duration::from_secs(5400));
        assert!(w.no_leader_election);
        for (args, flag) in [
            (&["--dry-run"][..], "--dry-run"),
            (&["--refresh-before", "12h"][..], "--refresh-before"),
            (&["--lease-name", "A"][..], "--lease-name"),
            (&["--lease-namespace", "a_b"][..], "--lease-namespace"),
        ] {
            let err = parse(args).into_config().unwrap_err().to_string();
            assert!(err.starts_with(flag), "{args:?}: {err}");
        }
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
    fn assume_role_flags_need_a_role() {
        let err = cli(&["--namespaces", "a", "--external-id", "e"]).unwrap_err();
        assert!(err.to_string().starts_with("--external-id"), "{err}");
        assert!(err.to_string().contains("--assume-role-arn"), "{err}");
        let err = cli(&["--namespaces", "a", "--role-session-name", "s"]).unwrap_err();
        assert!(err.to_string().starts_with("--role-session-name"), "{err}");
        // From the environment (a shared ConfigMap), they are ignored with a warning.
        let mut parsed =
            Cli::try_parse_from(["x", "--namespaces", "a", "--external-id", "e"]).unwrap();
        parsed.from_env = vec!["external_id".into()];
        assert!(parsed.into_config().unwrap().aws.assume_role.is_none());
    }

    #[test]
    fn ecr_public_is_named_apart_from_the_private_registries() {
        let c = cli(&[
            "--namespaces",
            "a",
            "--registries",
            "https://public.ecr.aws/,123456789012.dkr.ecr.us-east-1.amazonaws.com",
        ])
        .unwrap();
        assert!(c.ecr_public);
        assert_eq!(c.registries.len(), 1);
        let c = cli(&["--namespaces", "a", "--registries", "public.ecr.aws"]).unwrap();
        assert!(c.ecr_public && c.registries.is_empty());
        assert!(!cli(&["--namespaces", "a"]).unwrap().ecr_public);
    }

    #[test]
    fn the_aws_settings_alone_need_no_namespaces() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["ecr-secret-refresher", "kubelet-credential-provider"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).unwrap()
        };
        let c = parse(&["--region", "cn-north-1"]);
        assert_eq!(c.command, Some(Command::KubeletCredentialProvider));
        let refresh = parse(&["--region", "cn-north-1"]).into_config();
        assert!(matches!(refresh, Err(ConfigError::NoNamespaces)));
        let aws = c.aws_settings().unwrap();
        assert_eq!(aws.region.as_deref(), Some("cn-north-1"));
        assert_eq!(c.kubelet.role_annotation, DEFAULT_ROLE_ANNOTATION);
        assert!(!c.kubelet.require_role);
        let err = parse(&["--region", "mars"]).aws_settings().unwrap_err();
        assert!(err.to_string().starts_with("--region: 'mars'"), "{err}");
        let err = parse(&["--assume-role-arn", "nope"])
            .aws_settings()
            .unwrap_err();
        assert!(err.to_string().starts_with("--assume-role-arn"), "{err}");
        let err = parse(&["--credentials-source", "roles-anywhere"])
            .aws_settings()
            .unwrap_err();
        assert!(err.to_string().contains("--ra-certificate"), "{err}");
    }

    #[test]
    fn registries_are_parsed_and_stripped() {
        let c = cli(&[
            "--namespaces",
            "a",
            "--registries",
            "https://123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/, 123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn",
        ])
        .unwrap();
        let hosts: Vec<&str> = c.registries.iter().map(|r| r.host.as_str()).collect();
        assert_eq!(
            hosts,
            [
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn"
            ]
        );
    }

    #[test]
    fn one_run_stays_in_one_partition() {
        let china = "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn";
        let global = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        let err = cli(&[
            "--namespaces",
            "a",
            "--registries",
            &format!("{global},{china}"),
        ])
        .unwrap_err()
        .to_string();
        for want in [
            global,
            china,
            "partition aws ",
            "aws-cn",
            "one refresher per partition",
        ] {
            assert!(err.contains(want), "{want}: {err}");
        }
        let err = cli(&[
            "--namespaces",
            "a",
            "--region",
            "cn-north-1",
            "--registries",
            global,
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--region cn-north-1") && err.contains(global),
            "{err}"
        );
        assert!(
            cli(&[
                "--namespaces",
                "a",
                "--region",
                "eu-west-1",
                "--registries",
                global
            ])
            .is_ok()
        );
    }
}
