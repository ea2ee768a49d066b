//! The `credential-process` subcommand: Roles Anywhere credentials as the JSON that an AWS
//! config profile's `credential_process` expects, so this binary can stand in for
//! `aws_signing_helper credential-process`.

use serde_json::json;

use crate::aws::roles_anywhere::{RaError, RolesAnywhere};
use crate::config::{ConfigError, RolesAnywhereArgs};

#[derive(Debug, thiserror::Error)]
pub enum CredentialProcessError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "credential-process needs --ra-certificate, --ra-private-key, --ra-trust-anchor-arn, --ra-profile-arn and --ra-role-arn"
    )]
    Missing,
    #[error("IAM Roles Anywhere: {0}")]
    RolesAnywhere(#[from] RaError),
}

/// Gets one session and returns the JSON document to print.
pub async fn run(args: RolesAnywhereArgs) -> Result<String, CredentialProcessError> {
    let settings = args
        .into_settings()?
        .ok_or(CredentialProcessError::Missing)?;
    let ra = RolesAnywhere::load(settings, crate::aws::http::client())?;
    let c = ra.create_session().await?;
    let doc = json!({
        "Version": 1,
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key.expose(),
        "SessionToken": c.session_token.expose(),
        "Expiration": c.expiration.to_string(),
    });
    Ok(doc.to_string())
}
