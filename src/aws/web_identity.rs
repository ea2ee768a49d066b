//! Per-ServiceAccount pull roles (KEP-4412): the kubelet hands us the pod's ServiceAccount token,
//! and STS AssumeRoleWithWebIdentity exchanges it for the credentials of the role the
//! ServiceAccount names. The call is unsigned, so it needs no node credentials at all.
//!
//! STS is the one of the registry's region, at its FIPS endpoint for a FIPS registry: a role is
//! only known in its own partition, and a FIPS registry's users expect every call to use FIPS.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;

use aws_smithy_types::timeout::TimeoutConfig;

use crate::aws::{http, transient};
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
    /// STS never answered: nothing about the role or its trust policy is known yet.
    #[error(
        "STS AssumeRoleWithWebIdentity for {role_arn} got no answer: {message}. Check that the node reaches STS in {region}: its route (NAT gateway, internet gateway), the proxy (HTTPS_PROXY, NO_PROXY), or a VPC endpoint for sts with private DNS."
    )]
    NoAnswer {
        role_arn: String,
        region: String,
        message: String,
    },
    #[error("STS AssumeRoleWithWebIdentity for {0} returned no credentials")]
    NoCredentials(String),
}

/// Where STS is called: the registry's region (a role is assumed in its own partition, which
/// the caller has checked is the registry's), at the FIPS endpoint for a FIPS registry.
#[derive(Debug, Clone)]
pub struct StsTarget {
    pub region: String,
    pub fips: bool,
    /// The timeouts of the call (the kubelet plugin's are short).
    pub timeouts: TimeoutConfig,
}

/// An SDK configuration for the target without credentials: the node identity's retries, and
/// the same HTTPS client.
async fn unsigned(target: &StsTarget) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http::client())
        .region(Region::new(target.region.clone()))
        .use_fips(target.fips)
        .no_credentials()
        .retry_config(http::retry_config())
        .timeout_config(target.timeouts.clone())
        .load()
        .await
}

/// Exchanges `token` for `role_arn`'s credentials with STS at `target`, and returns an SDK
/// configuration that signs with them.
pub async fn assume(
    target: &StsTarget,
    role_arn: &str,
    token: &Sensitive,
) -> Result<SdkConfig, WebIdentityError> {
    let sdk = unsigned(target).await;
    let sts = aws_sdk_sts::Client::new(&sdk);
    let out = sts
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name(SESSION_NAME)
        .web_identity_token(token.expose())
        .send()
        .await
        .map_err(|e| {
            let role_arn = role_arn.to_string();
            let message = errors::chain(&e);
            if transient::no_service_answer(&e) {
                WebIdentityError::NoAnswer {
                    role_arn,
                    region: target.region.clone(),
                    message,
                }
            } else {
                WebIdentityError::Call { role_arn, message }
            }
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
