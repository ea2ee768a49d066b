//! The `kubelet-credential-provider` subcommand: one request from the kubelet on stdin, one
//! response on stdout, then exit. The kubelet starts a new process for every registry and
//! cache period, so this does the least it can: no cluster, no caller lookup, one token call.

use std::io::Read;

use jiff::Timestamp;

use crate::aws::credentials::{self, AwsSetupError};
use crate::aws::ecr::{self, EcrError};
use crate::aws::ecr_public;
use crate::aws::image::{ImageError, ImageRef};
use crate::aws::registry::{EcrHost, group_by_scope};
use crate::aws::settings::AwsSettings;
use crate::aws::web_identity::{self, WebIdentityError};
use crate::config::{Cli, ConfigError};
use crate::kubelet::cache::{cache_duration, go_duration};
use crate::kubelet::identity::{self, Identity, IdentityError};
use crate::kubelet::protocol::{self, Auth, RequestError, Response};
use crate::sensitive::Sensitive;

/// Larger than any request a kubelet sends (an image name and a token); a bound so that a
/// runaway writer cannot make us buffer without end.
const MAX_REQUEST: u64 = 1024 * 1024;

/// What this mode needs: the node identity's settings and the KEP-4412 options.
#[derive(Debug, Clone)]
pub struct Settings {
    pub aws: AwsSettings,
    pub role_annotation: String,
    pub require_role: bool,
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
}

/// Checks the flags this mode uses, and only those: no namespace or cluster setting is needed.
pub fn settings(cli: &Cli) -> Result<Settings, KubeletError> {
    let role_annotation = cli.kubelet.role_annotation.trim().to_string();
    if role_annotation.is_empty() || role_annotation.contains(char::is_whitespace) {
        return Err(KubeletError::RoleAnnotation);
    }
    Ok(Settings {
        aws: cli.aws_settings()?,
        role_annotation,
        require_role: cli.kubelet.require_role,
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

/// Answers one request: the response JSON to print on stdout.
pub async fn run(settings: &Settings, input: &[u8]) -> Result<Sensitive, KubeletError> {
    let request = protocol::parse_request(input)?;
    let image: ImageRef = request.image.parse().map_err(|e| match e {
        ImageError::NoHost { image } => KubeletError::NotEcr(image),
        e => KubeletError::Image(e),
    })?;
    let target =
        EcrHost::parse(&image.host).map_err(|_| KubeletError::NotEcr(request.image.clone()))?;
    let who = identity::choose(&request, &settings.role_annotation, settings.require_role)?;
    let region = target.token_region();
    let (sdk, identity_name) = match &who {
        Identity::Node => {
            let aws = credentials::load(&settings.aws, Some(region)).await?;
            (aws.sdk, aws.source.to_string())
        }
        Identity::Role { arn, token } => (
            web_identity::assume(region, arn, token).await?,
            format!("ServiceAccount role {arn}"),
        ),
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
