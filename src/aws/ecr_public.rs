//! ECR Public authorization tokens. `public.ecr.aws` has its own token API (`ecr-public`), in
//! us-east-1 only, whatever region the caller is in; AWS also requires
//! `sts:GetServiceBearerToken` for it, though the client makes only the one call. Anonymous
//! pulls work too, but an authenticated pull gets far higher rate limits.

use aws_config::{Region, SdkConfig};
use jiff::Timestamp;

use crate::aws::ecr::{EcrError, RegistryAuth, Token, read_token};
use crate::aws::registry::{ECR_PUBLIC_HOST, ECR_PUBLIC_REGION};
use crate::errors;

/// Gets one ECR Public token with the credentials in `sdk`.
pub async fn token(sdk: &SdkConfig) -> Result<Token, EcrError> {
    let conf = aws_sdk_ecrpublic::config::Builder::from(sdk)
        .region(Region::new(ECR_PUBLIC_REGION))
        .build();
    let client = aws_sdk_ecrpublic::Client::from_conf(conf);
    let out = client
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| EcrError::PublicCall {
            message: errors::chain(&e),
            transient: crate::aws::transient::sdk_error(&e),
        })?;
    read_token(
        ECR_PUBLIC_REGION,
        out.authorization_data
            .map(|d| (d.authorization_token, d.expires_at)),
    )
}

/// The `public.ecr.aws` entry and its expiry.
pub async fn registry_auth(sdk: &SdkConfig) -> Result<(RegistryAuth, Option<Timestamp>), EcrError> {
    let t = token(sdk).await?;
    tracing::debug!(expires_at = ?t.expires_at, "ECR Public token obtained");
    Ok((
        RegistryAuth {
            host: ECR_PUBLIC_HOST.to_string(),
            username: t.username,
            password: t.password,
        },
        t.expires_at,
    ))
}
