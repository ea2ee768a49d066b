//! The `kubelet-credential-provider` subcommand: one request from the kubelet on stdin, one
//! response on stdout, then exit. The kubelet starts a new process for every registry and
//! cache period, so this does the least it can: no cluster, no caller lookup, one token call.
//!
//! The kubelet kills a plugin that has not answered after a minute, and then shows only
//! "context deadline exceeded": whatever the plugin meant to say is lost. So every call of one
//! request shares one [`DEADLINE`] well under that minute, each attempt is short, and when the
//! deadline passes the plugin names the endpoint that did not answer and what to check.

use std::io::Read;
use std::time::Duration;

use aws_smithy_types::timeout::TimeoutConfig;
use jiff::Timestamp;

use crate::aws::credentials::{self, AwsSetupError, ImdsPatience, Patience};
use crate::aws::ecr::{self, EcrError};
use crate::aws::ecr_public;
use crate::aws::image::{ImageError, ImageRef};
use crate::aws::in_flight;
use crate::aws::registry::{EcrHost, group_by_scope};
use crate::aws::settings::AwsSettings;
use crate::aws::web_identity::{self, StsTarget, WebIdentityError};
use crate::config::{Cli, ConfigError};
use crate::kubelet::cache::{cache_duration, go_duration};
use crate::kubelet::identity::{self, Identity, IdentityError};
use crate::kubelet::protocol::{self, Auth, Request, RequestError, Response};
use crate::sensitive::Sensitive;

/// Larger than any request a kubelet sends (an image name and a token); a bound so that a
/// runaway writer cannot make us buffer without end.
const MAX_REQUEST: u64 = 1024 * 1024;

/// The time one request may take, every call together (credentials, STS or Roles Anywhere,
/// then ECR): well under the kubelet's one minute, so that our error, not its "context
/// deadline exceeded", is what the kubelet's log shows (the pod's events show the registry's 401).
pub const DEADLINE: Duration = Duration::from_secs(45);
/// For tests only: a shorter deadline in whole seconds, so a test of an endpoint that never
/// answers need not wait [`DEADLINE`]. Not a setting: the kubelet's minute does not change.
pub const TEST_DEADLINE_ENV: &str = "ECR_REFRESHER_TEST_KUBELET_DEADLINE_SECS";

/// Short attempts, so a request that hangs is retried within the deadline; the SDK's own
/// operation timeout is the deadline, so that ours is the one that speaks.
fn timeouts(deadline: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(deadline)
        .build()
}

/// What this mode needs: the node identity's settings and the KEP-4412 options.
#[derive(Debug, Clone)]
pub struct Settings {
    pub aws: AwsSettings,
    pub role_annotation: String,
    pub require_role: bool,
    /// [`DEADLINE`], unless a test shortened it.
    pub deadline: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--role-annotation must name an annotation key, e.g. eks.amazonaws.com/ecr-role-arn")]
    RoleAnnotation,
    #[error("cannot read the request from stdin: {0}")]
    Stdin(String),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Image(ImageError),
    #[error(
        "'{0}' is not in a private ECR registry or ECR Public (public.ecr.aws), so this plugin has no credentials for it: leave it out of the provider's matchImages in the kubelet's CredentialProviderConfig"
    )]
    NotEcr(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Aws(#[from] AwsSetupError),
    #[error(transparent)]
    WebIdentity(#[from] WebIdentityError),
    #[error(transparent)]
    Ecr(#[from] EcrError),
    #[error(
        "no answer from {endpoint} within {secs} s, so the kubelet gets no credentials for {image}. Check that the node reaches it: its route (NAT gateway, internet gateway, firewall), the proxy (HTTPS_PROXY, and NO_PROXY for what must not go through it), or the VPC endpoint for the service and its private DNS"
    )]
    NoAnswer {
        endpoint: String,
        secs: u64,
        image: String,
    },
}

/// Checks the flags this mode uses, and only those: no namespace or cluster setting is needed.
pub fn settings(cli: &Cli) -> Result<Settings, KubeletError> {
    let role_annotation = cli.kubelet.role_annotation.trim().to_string();
    if role_annotation.is_empty() || role_annotation.contains(char::is_whitespace) {
        return Err(KubeletError::RoleAnnotation);
    }
    let deadline = std::env::var(TEST_DEADLINE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEADLINE, |secs| Duration::from_secs(secs).min(DEADLINE));
    Ok(Settings {
        aws: cli.aws_settings()?,
        role_annotation,
        require_role: cli.kubelet.require_role,
        deadline,
    })
}

/// Reads the request, bounded.
pub fn read_request(input: impl Read) -> Result<Vec<u8>, KubeletError> {
    let mut buf = Vec::new();
    input
        .take(MAX_REQUEST)
        .read_to_end(&mut buf)
        .map_err(|e| KubeletError::Stdin(e.to_string()))?;
    Ok(buf)
}

/// Answers one request within the deadline: the response JSON to print on stdout.
pub async fn run(settings: &Settings, input: &[u8]) -> Result<Sensitive, KubeletError> {
    let request = protocol::parse_request(input)?;
    let image = request.image.clone();
    let no_answer = |endpoint: String| KubeletError::NoAnswer {
        endpoint,
        secs: settings.deadline.as_secs(),
        image: image.clone(),
    };
    match tokio::time::timeout(settings.deadline, answer(settings, request)).await {
        Ok(Ok(json)) => Ok(json),
        // A call that gave up on an endpoint that never answered: say so, not what the
        // service's error would suggest. "No credentials" keeps its own message, which lists
        // every source tried (IMDS among them, which off EC2 never answers).
        Ok(Err(e)) => match (&e, in_flight::unanswered()) {
            (KubeletError::Aws(AwsSetupError::NoCredentials { .. }), _) => Err(e),
            (
                KubeletError::Aws(_) | KubeletError::Ecr(_) | KubeletError::WebIdentity(_),
                Some(host),
            ) => Err(no_answer(host)),
            _ => Err(e),
        },
        Err(_) => Err(no_answer(
            in_flight::unanswered().unwrap_or_else(|| "AWS".to_string()),
        )),
    }
}

async fn answer(settings: &Settings, request: Request) -> Result<Sensitive, KubeletError> {
    let image: ImageRef = request.image.parse().map_err(|e| match e {
        ImageError::NoHost { image } => KubeletError::NotEcr(image),
        e => KubeletError::Image(e),
    })?;
    let target =
        EcrHost::parse(&image.host).map_err(|_| KubeletError::NotEcr(request.image.clone()))?;
    let who = identity::choose(&request, &settings.role_annotation, settings.require_role)?;
    let region = target.token_region();
    identity::check_partition(&who, target.host(), region)?;
    let patience = Patience {
        timeouts: timeouts(settings.deadline),
        // On a node IMDS is the usual source: a slow answer at boot is not a "no".
        imds: ImdsPatience::Sdk,
    };
    let (sdk, identity_name) = match &who {
        Identity::Node => {
            let aws = credentials::load_with(&settings.aws, Some(region), &patience).await?;
            (aws.sdk, aws.source.to_string())
        }
        Identity::Role { arn, token } => {
            let sts = StsTarget {
                region: region.to_string(),
                fips: matches!(&target, EcrHost::Private(r) if r.fips),
                timeouts: patience.timeouts.clone(),
            };
            (
                web_identity::assume(&sts, arn, token).await?,
                format!("ServiceAccount role {arn}"),
            )
        }
    };
    let (auth, expires_at) = match &target {
        EcrHost::Private(registry) => {
            let scopes = group_by_scope(std::slice::from_ref(registry));
            let (mut auths, expires_at) = ecr::registry_auths(&sdk, &scopes).await?;
            let auth = auths.pop().ok_or(EcrError::Malformed {
                region: region.to_string(),
                what: "no credentials for the registry",
            })?;
            (auth, expires_at)
        }
        EcrHost::Public => ecr_public::registry_auth(&sdk).await?,
    };
    let cache = cache_duration(Timestamp::now(), expires_at);
    tracing::info!(
        image = %image,
        registry = target.host(),
        identity = %identity_name,
        expires_at = ?expires_at,
        cache_duration = %go_duration(cache),
        "credentials issued"
    );
    let response = Response {
        api_version: request.api_version,
        cache_duration: cache,
        auth: vec![Auth {
            key: auth.host,
            username: auth.username,
            password: auth.password,
        }],
    };
    Ok(protocol::render_response(&response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_well_under_the_kubelets_minute() {
        // The kubelet kills a credential provider after one minute (its exec plugin timeout).
        assert_eq!(DEADLINE, Duration::from_secs(45));
        let t = timeouts(DEADLINE);
        assert_eq!(t.operation_timeout(), Some(DEADLINE));
        let attempt = t.operation_attempt_timeout().unwrap();
        assert!(attempt * 4 <= DEADLINE, "four attempts fit: {attempt:?}");
        assert!(t.connect_timeout().unwrap() < attempt);
    }
}
