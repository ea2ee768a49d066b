//! What the AWS side needs to know: where credentials come from, for which region, and which
//! role to assume. Built by the command line (`config`), used by [`super::credentials`].

use clap::ValueEnum;

use super::roles_anywhere;

/// Where AWS credentials come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CredentialsSource {
    /// The first that works of: env, profile, web-identity, container, imds.
    Auto,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN.
    Env,
    /// The shared config and credentials files (AWS_PROFILE), including credential_process and SSO.
    Profile,
    /// IRSA: AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN.
    WebIdentity,
    /// EKS Pod Identity or ECS: AWS_CONTAINER_CREDENTIALS_FULL_URI / _RELATIVE_URI.
    Container,
    /// The EC2 instance metadata service (IMDSv2), i.e. the node's role.
    Imds,
    /// IAM Roles Anywhere with the --ra-* certificate and key (chosen by `auto` when they are set).
    RolesAnywhere,
}

/// How to obtain AWS credentials, and for which region.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub source: CredentialsSource,
    /// The region given on the command line, if any.
    pub region: Option<String>,
    /// Whether the default registry uses the FIPS endpoint.
    pub fips: bool,
    pub assume_role: Option<AssumeRole>,
    pub roles_anywhere: Option<roles_anywhere::Settings>,
}

#[derive(Debug, Clone)]
pub struct AssumeRole {
    pub role_arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
}

/// Whether `s` is an IAM role ARN, in any partition.
pub fn is_role_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    matches!(parts.as_slice(),
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && resource.strip_prefix("role/").is_some_and(|r| !r.is_empty()))
}
