//! Per-ServiceAccount pull roles (KEP-4412): the kubelet hands us the pod's ServiceAccount token,
//! and STS AssumeRoleWithWebIdentity exchanges it for the credentials of the role the
//! ServiceAccount names. The call is unsigned, so it needs no node credentials at all.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::aws::http;
use crate::errors;
use crate::sensitive::Sensitive;

/// Shows in CloudTrail as the assumed role's session name.
pub const SESSION_NAME: &str = "ecr-secret-refresher-kubelet";

#[derive(Debug, thiserror::Error)]
pub enum WebIdentityError {
    #[error(
        "STS AssumeRoleWithWebIdentity for {role_arn} failed: {message}. Check that the role's trust policy trusts the cluster's OIDC issuer with the audience set in tokenAttributes.serviceAccountTokenAudience, and this ServiceAccount as subject."
    )]
    Call { role_arn: String, message: String },
    #[error("STS AssumeRoleWithWebIdentity for {0} returned no credentials")]
    NoCredentials(String),
}

/// An SDK configuration for `region` without credentials: retries and timeouts as for the node
/// identity, and the same HTTPS client.
async fn unsigned(region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http::client())
        .region(Region::new(region.to_string()))
        .no_credentials()
        .retry_config(http::retry_config())
        .timeout_config(http::timeout_config())
        .load()
        .await
}

/// Exchanges `token` for `role_arn`'s credentials with STS in `region` (the registry's region,
/// so that a role in the China or GovCloud partitions is assumed in its own partition), and
/// returns an SDK configuration that signs with them.
pub async fn assume(
    region: &str,
    role_arn: &str,
    token: &Sensitive,
) -> Result<SdkConfig, WebIdentityError> {
    let sdk = unsigned(region).await;
    let sts = aws_sdk_sts::Client::new(&sdk);
    let out = sts
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name(SESSION_NAME)
        .web_identity_token(token.expose())
        .send()
        .await
        .map_err(|e| WebIdentityError::Call {
            role_arn: role_arn.to_string(),
            message: errors::chain(&e),
        })?;
    let c = out
        .credentials
        .ok_or_else(|| WebIdentityError::NoCredentials(role_arn.to_string()))?;
    let expiry = std::time::SystemTime::try_from(c.expiration).ok();
    let creds = Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        expiry,
        "sts-web-identity",
    );
    Ok(sdk
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(creds))
        .build())
}
