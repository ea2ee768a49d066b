//! AWS credentials and region: choosing the source, probing it quickly, and chaining AssumeRole.
//!
//! The sources are aws-config's own providers, tried in the default chain's order. We walk the
//! chain ourselves instead of using `DefaultCredentialsChain` so that a run without credentials
//! can say what it tried and why each source had nothing, and so that IMDS, the last source,
//! gives up after one short attempt instead of stalling a laptop run. The kubelet plugin runs on
//! a node, where IMDS is the usual source and a slow first answer (many pods starting at boot)
//! is not a "no": it asks with the SDK's own retries and timeouts instead ([`Patience`]).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::ecs::EcsCredentialsProvider;
use aws_config::environment::{
    EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
};
use aws_config::imds;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::imds::region::ImdsRegionProvider;
use aws_config::meta::region::ProvideRegion;
use aws_config::profile::{ProfileFileCredentialsProvider, ProfileFileRegionProvider};
use aws_config::provider_config::ProviderConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::web_identity_token::WebIdentityTokenCredentialsProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_types::timeout::TimeoutConfig;

use crate::aws::http;
use crate::aws::profile::{Finding, ProfileFiles};
use crate::aws::roles_anywhere::{RaError, RolesAnywhere};
use crate::aws::settings::{AwsSettings, CredentialsSource};
use crate::aws::transient;
use crate::errors;

/// aws-config's whole message for a source that is not set up, with nothing about why.
const NOT_ENABLED: &str = "the credential provider was not enabled";

/// How long IMDS may take to answer before we decide we are not on EC2.
const IMDS_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum AwsSetupError {
    #[error(
        "no AWS region: pass --region (or set AWS_REGION), or name registries with --registries"
    )]
    NoRegion,
    #[error(
        "no AWS region: AWS_PROFILE={profile} names a profile that does not exist (looked for {looked}). Fix or unset AWS_PROFILE; pass --region or set AWS_REGION for the region"
    )]
    MissingProfile { profile: String, looked: String },
    #[error(
        "cannot read the AWS profile files: {0}. Fix that line, or point AWS_CONFIG_FILE or AWS_SHARED_CREDENTIALS_FILE at other files"
    )]
    ProfileFile(String),
    #[error(
        "no AWS credentials found. Tried:\n{tried}\nSet one of these up, or pick one with --credentials-source."
    )]
    NoCredentials { tried: String },
    #[error("AWS credentials from {source_name} failed: {message}")]
    SourceFailed {
        source_name: &'static str,
        message: String,
        /// The source did not answer: a later run may pass.
        transient: bool,
    },
    #[error(
        "cannot assume role {role_arn}: {message}. Check the role's trust policy allows the caller (and the external ID, if one is required)."
    )]
    AssumeRole {
        role_arn: String,
        message: String,
        transient: bool,
    },
    #[error(
        "STS GetCallerIdentity failed: {message}. Name the registries with --registries to skip this call."
    )]
    CallerIdentity {
        message: String,
        transient: bool,
        /// Why it failed: `doctor` words its rows by it.
        cause: crate::aws::failure::Cause,
    },
    #[error("IAM Roles Anywhere: {0}")]
    RolesAnywhere(#[from] RaError),
}

impl AwsSetupError {
    /// Whether the region, not the credentials, is what is missing.
    pub fn is_region(&self) -> bool {
        matches!(
            self,
            AwsSetupError::NoRegion | AwsSetupError::MissingProfile { .. }
        )
    }

    /// Why GetCallerIdentity failed, for that error.
    pub fn caller_identity_cause(&self) -> Option<crate::aws::failure::Cause> {
        match self {
            AwsSetupError::CallerIdentity { cause, .. } => Some(*cause),
            _ => None,
        }
    }

    /// Whether a later run may pass without anyone changing anything (see [`transient`]).
    pub fn may_pass_on_retry(&self) -> bool {
        match self {
            AwsSetupError::SourceFailed { transient, .. }
            | AwsSetupError::AssumeRole { transient, .. }
            | AwsSetupError::CallerIdentity { transient, .. } => *transient,
            AwsSetupError::RolesAnywhere(e) => e.may_pass_on_retry(),
            AwsSetupError::NoRegion
            | AwsSetupError::MissingProfile { .. }
            | AwsSetupError::ProfileFile(_)
            | AwsSetupError::NoCredentials { .. } => false,
        }
    }

    /// What to do about it, in one line (for `doctor`).
    pub fn fix(&self) -> &'static str {
        match self {
            AwsSetupError::NoRegion => {
                "set a region: pass --region or set AWS_REGION (or name the registries with --registries)"
            }
            AwsSetupError::MissingProfile { .. } => {
                "fix or unset AWS_PROFILE, and set a region with --region or AWS_REGION"
            }
            AwsSetupError::ProfileFile(_) => "fix the line of the profile file named above",
            AwsSetupError::NoCredentials { .. } => {
                "set up one of the listed sources, or pick one with --credentials-source"
            }
            AwsSetupError::SourceFailed { .. } => {
                "fix the source named above, or pick another with --credentials-source"
            }
            AwsSetupError::AssumeRole { .. } => {
                "check --assume-role-arn, the role's trust policy and --external-id"
            }
            AwsSetupError::CallerIdentity { .. } => {
                "check the credentials and the region, or name the registries with --registries"
            }
            AwsSetupError::RolesAnywhere(_) => "fix the Roles Anywhere setting or file named above",
        }
    }
}

/// How long to wait for AWS: the timeouts of every call, and how IMDS is asked.
#[derive(Debug, Clone)]
pub struct Patience {
    pub timeouts: TimeoutConfig,
    pub imds: ImdsPatience,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImdsPatience {
    /// One attempt with a 1 s timeout: off EC2 (a laptop) there is no IMDS, and a run must not
    /// wait for it.
    Probe,
    /// The SDK's own IMDS client settings (several attempts with backoff): on a node, where
    /// IMDS is the source and may answer slowly while many pods start at once.
    Sdk,
}

impl Patience {
    /// The refresh mode's and the doctors' settings.
    pub fn run() -> Patience {
        Patience {
            timeouts: http::timeout_config(),
            imds: ImdsPatience::Probe,
        }
    }
}

/// AWS configuration ready for service clients: region, HTTP client and resolved credentials.
pub struct Aws {
    pub sdk: SdkConfig,
    /// Which source the credentials came from, for the log.
    pub source: &'static str,
}

fn imds_client(conf: &ProviderConfig, patience: ImdsPatience) -> imds::Client {
    let builder = imds::Client::builder().configure(conf);
    match patience {
        ImdsPatience::Probe => builder
            .max_attempts(1)
            .connect_timeout(IMDS_TIMEOUT)
            .read_timeout(IMDS_TIMEOUT)
            .build(),
        ImdsPatience::Sdk => builder.build(),
    }
}

/// The region for STS and the default registry: `--region`, then AWS_REGION and the profile,
/// then the first registry's region, then IMDS.
async fn resolve_region(
    settings: &AwsSettings,
    hint: Option<&str>,
    conf: &ProviderConfig,
    imds: ImdsPatience,
) -> Option<Region> {
    if let Some(r) = &settings.region {
        return Some(Region::new(r.clone()));
    }
    if let Some(r) = EnvironmentVariableRegionProvider::new().region().await {
        return Some(r);
    }
    let profile = ProfileFileRegionProvider::builder().configure(conf).build();
    if let Some(r) = profile.region().await {
        return Some(r);
    }
    if let Some(h) = hint {
        return Some(Region::new(h.to_string()));
    }
    ImdsRegionProvider::builder()
        .imds_client(imds_client(conf, imds))
        .build()
        .region()
        .await
}

/// One credentials source, with a hint for the user when it has nothing.
struct Source {
    name: &'static str,
    provider: SharedCredentialsProvider,
    /// Whether this is the shared-profile source, whose errors [`ProfileFiles`] explains.
    is_profile: bool,
}

/// The sources to try, in order. Roles Anywhere settings, when given, are the only source
/// `auto` tries: the user asked for them.
fn sources(
    settings: &AwsSettings,
    conf: &ProviderConfig,
    http: &SharedHttpClient,
    imds: ImdsPatience,
) -> Result<Vec<Source>, AwsSetupError> {
    let choice = settings.source;
    if let Some(ra) = &settings.roles_anywhere
        && matches!(
            choice,
            CredentialsSource::Auto | CredentialsSource::RolesAnywhere
        )
    {
        let provider = RolesAnywhere::load(ra.clone(), http.clone())?;
        return Ok(vec![Source {
            name: "IAM Roles Anywhere",
            provider: SharedCredentialsProvider::new(provider),
            is_profile: false,
        }]);
    }
    Ok(chain_sources(choice, conf, imds))
}

fn chain_sources(
    choice: CredentialsSource,
    conf: &ProviderConfig,
    imds_patience: ImdsPatience,
) -> Vec<Source> {
    let s = |name, provider: SharedCredentialsProvider| Source {
        name,
        provider,
        is_profile: false,
    };
    let env = || {
        s(
            "environment (AWS_ACCESS_KEY_ID)",
            SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new()),
        )
    };
    let profile = || Source {
        is_profile: true,
        ..s(
            "profile (~/.aws/config, AWS_PROFILE)",
            SharedCredentialsProvider::new(
                ProfileFileCredentialsProvider::builder()
                    .configure(conf)
                    .build(),
            ),
        )
    };
    let web = || {
        s(
            "web identity / IRSA (AWS_WEB_IDENTITY_TOKEN_FILE)",
            SharedCredentialsProvider::new(
                WebIdentityTokenCredentialsProvider::builder()
                    .configure(conf)
                    .build(),
            ),
        )
    };
    let container = || {
        s(
            "container / EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI)",
            SharedCredentialsProvider::new(
                EcsCredentialsProvider::builder()
                    .configure(conf)
                    .connect_timeout(Duration::from_secs(2))
                    .read_timeout(Duration::from_secs(5))
                    .build(),
            ),
        )
    };
    let imds = || {
        s(
            "EC2 instance metadata (IMDSv2)",
            SharedCredentialsProvider::new(
                ImdsCredentialsProvider::builder()
                    .configure(conf)
                    .imds_client(imds_client(conf, imds_patience))
                    .build(),
            ),
        )
    };
    match choice {
        CredentialsSource::Auto => vec![env(), profile(), web(), container(), imds()],
        CredentialsSource::Env => vec![env()],
        CredentialsSource::Profile => vec![profile()],
        CredentialsSource::WebIdentity => vec![web()],
        CredentialsSource::Container => vec![container()],
        CredentialsSource::Imds => vec![imds()],
        // Without settings, config validation has already refused this choice.
        CredentialsSource::RolesAnywhere => Vec::new(),
    }
}

/// Walks the sources in order like the default chain: a source that is not configured passes
/// to the next; a source that is configured but fails stops the walk.
async fn first_credentials(sources: Vec<Source>) -> Result<(Source, Credentials), AwsSetupError> {
    let mut tried = Vec::new();
    for source in sources {
        match source.provider.provide_credentials().await {
            Ok(creds) => return Ok((source, creds)),
            Err(e @ CredentialsError::CredentialsNotLoaded(_)) => {
                let chain = errors::chain(&e);
                let why = match chain.strip_prefix(NOT_ENABLED) {
                    Some("") if source.is_profile => {
                        let files = ProfileFiles::from_env();
                        files.explain(&files.find().await).unwrap_or(chain.clone())
                    }
                    Some(rest) if !rest.is_empty() => rest.trim_start_matches(": ").to_string(),
                    _ => chain.clone(),
                };
                tried.push(format!("  - {}: {why}", source.name));
            }
            Err(e) => {
                // aws-config says only "could not parse profile file": name the file and line.
                let mut message = errors::chain(&e);
                if source.is_profile
                    && let Finding::Broken(why) = ProfileFiles::from_env().find().await
                {
                    message = why;
                }
                return Err(AwsSetupError::SourceFailed {
                    source_name: source.name,
                    message,
                    transient: transient::credentials_error(&e),
                });
            }
        }
    }
    Err(AwsSetupError::NoCredentials {
        tried: tried.join("\n"),
    })
}

/// Hands the SDK the credentials we already fetched, so that the source is not asked twice,
/// and asks the source again only once they are close to expiring.
#[derive(Debug)]
struct Primed {
    first: Mutex<Option<Credentials>>,
    inner: SharedCredentialsProvider,
}

impl Primed {
    fn provider(first: Credentials, inner: SharedCredentialsProvider) -> SharedCredentialsProvider {
        SharedCredentialsProvider::new(Primed {
            first: Mutex::new(Some(first)),
            inner,
        })
    }
}

impl ProvideCredentials for Primed {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let first = self.first.lock().ok().and_then(|mut f| f.take());
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|e| e > SystemTime::now() + Duration::from_secs(60))
        };
        match first {
            Some(c) if fresh(&c) => future::ProvideCredentials::ready(Ok(c)),
            _ => self.inner.provide_credentials(),
        }
    }
}

/// Resolves region and credentials (and the assumed role, if any), failing fast with an error
/// that says what to fix. `region_hint` is the region of the first registry, if registries were named.
pub async fn load(settings: &AwsSettings, region_hint: Option<&str>) -> Result<Aws, AwsSetupError> {
    load_with(settings, region_hint, &Patience::run()).await
}

/// [`load`] with other timeouts and IMDS settings.
pub async fn load_with(
    settings: &AwsSettings,
    region_hint: Option<&str>,
    patience: &Patience,
) -> Result<Aws, AwsSetupError> {
    let http = http::client();
    let base = ProviderConfig::default().with_http_client(http.clone());
    let Some(region) = resolve_region(settings, region_hint, &base, patience.imds).await else {
        // A misspelt AWS_PROFILE, or a broken file, is the likelier cause than a profile
        // without a region.
        let files = ProfileFiles::from_env();
        return Err(match files.find().await {
            Finding::Broken(why) => AwsSetupError::ProfileFile(why),
            Finding::NoFiles | Finding::MissingProfile if files.named => {
                AwsSetupError::MissingProfile {
                    looked: files.where_looked(),
                    profile: files.profile,
                }
            }
            _ => AwsSetupError::NoRegion,
        });
    };
    let conf = base.with_region(Some(region.clone()));
    let (source, creds) =
        first_credentials(sources(settings, &conf, &http, patience.imds)?).await?;
    tracing::debug!(source = source.name, "AWS credentials found");
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(region.clone())
        .credentials_provider(Primed::provider(creds, source.provider))
        .retry_config(http::retry_config())
        .timeout_config(patience.timeouts.clone())
        .load()
        .await;
    let Some(role) = &settings.assume_role else {
        return Ok(Aws {
            sdk,
            source: source.name,
        });
    };
    let mut builder = AssumeRoleProvider::builder(role.role_arn.clone())
        .session_name(role.session_name.clone())
        .region(region);
    if let Some(id) = &role.external_id {
        builder = builder.external_id(id.clone());
    }
    let assume = SharedCredentialsProvider::new(builder.configure(&sdk).build().await);
    let assumed = assume
        .provide_credentials()
        .await
        .map_err(|e| AwsSetupError::AssumeRole {
            role_arn: role.role_arn.clone(),
            message: errors::chain(&e),
            transient: transient::credentials_error(&e),
        })?;
    let sdk = sdk
        .into_builder()
        .credentials_provider(Primed::provider(assumed, assume))
        .build();
    Ok(Aws {
        sdk,
        source: source.name,
    })
}

/// The caller's account ID and ARN, from STS GetCallerIdentity.
pub async fn caller_identity(sdk: &SdkConfig) -> Result<(String, String), AwsSetupError> {
    let sts = aws_sdk_sts::Client::new(sdk);
    let out =
        sts.get_caller_identity()
            .send()
            .await
            .map_err(|e| AwsSetupError::CallerIdentity {
                message: errors::chain(&e),
                transient: transient::sdk_error(&e),
                cause: crate::aws::failure::of_sdk(&e),
            })?;
    match (out.account, out.arn) {
        (Some(account), arn) => Ok((account, arn.unwrap_or_default())),
        (None, _) => Err(AwsSetupError::CallerIdentity {
            message: "the response has no account ID".into(),
            transient: false,
            cause: crate::aws::failure::Cause::Other,
        }),
    }
}

/// The caller's account ID, from STS GetCallerIdentity.
pub async fn caller_account(sdk: &SdkConfig) -> Result<String, AwsSetupError> {
    caller_identity(sdk).await.map(|(account, _)| account)
}
