//! Why an AWS call failed, for the person who has to fix it: a name that does not resolve, no
//! answer, a refused connection, throttling or an outage on AWS's side, credentials AWS does
//! not accept, or a refusal by policy. Each has its own fix; only the last is about IAM.
//!
//! [`crate::aws::transient`] answers the other question (may a later run pass?); this module
//! reuses it for throttling and server errors, so the two never disagree.

use std::error::Error;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::registry::dns_suffix;
use crate::aws::transient;

/// Error codes AWS answers for an access key it does not know, a session that expired, or a
/// signature made with the wrong secret key: the credentials, not a policy, are at fault.
pub const BAD_CREDENTIAL_CODES: &[&str] = &[
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "InvalidAccessKeyId",
    "AuthFailure",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The endpoint's name does not resolve.
    Dns,
    /// The endpoint took the connection (or the attempt) and did not answer in time.
    TimedOut,
    /// The connection was refused, reset or failed on the way.
    Refused,
    /// Throttling, or a failure on AWS's side: nothing to change here.
    Unavailable,
    /// AWS does not accept the credentials: invalid, expired, or a wrong secret key.
    BadCredentials,
    /// AWS answered with any other error (access denied, not found, a bad request).
    Refusal,
    /// Nothing was sent, or the failure is of no known kind.
    Other,
}

impl Cause {
    /// Whether the endpoint could not be talked to at all: its other calls would fail alike.
    pub fn is_network(self) -> bool {
        matches!(self, Cause::Dns | Cause::TimedOut | Cause::Refused)
    }

    /// A short name for a row's code column.
    pub fn label(self) -> &'static str {
        match self {
            Cause::Dns => "DNS",
            Cause::TimedOut => "timeout",
            Cause::Refused => "refused",
            Cause::Unavailable => "unavailable",
            Cause::BadCredentials => "credentials",
            Cause::Refusal | Cause::Other => "error",
        }
    }
}

/// The cause behind an AWS error code, for codes that name one.
pub fn of_code(code: &str) -> Option<Cause> {
    if BAD_CREDENTIAL_CODES.contains(&code) {
        Some(Cause::BadCredentials)
    } else if transient::THROTTLING_CODES.contains(&code) {
        Some(Cause::Unavailable)
    } else {
        None
    }
}

/// The cause of a failed SDK call.
pub fn of_sdk<E: ProvideErrorMetadata + Error + 'static>(err: &SdkError<E, HttpResponse>) -> Cause {
    match err {
        SdkError::ServiceError(ctx) => match ctx.err().code().and_then(of_code) {
            Some(cause) => cause,
            None if transient::sdk_error(err) => Cause::Unavailable,
            None => Cause::Refusal,
        },
        SdkError::TimeoutError(_) => Cause::TimedOut,
        SdkError::DispatchFailure(d) if d.is_timeout() => Cause::TimedOut,
        SdkError::DispatchFailure(_) if in_chain(err, is_dns) => Cause::Dns,
        SdkError::DispatchFailure(d) if d.is_io() => Cause::Refused,
        // An answer that broke off or could not be read: the service's side.
        SdkError::ResponseError(_) => Cause::Unavailable,
        _ if transient::no_service_answer(err) => Cause::Refused,
        _ => Cause::Other,
    }
}

/// Whether any error in the chain (wrapped I/O errors opened too) satisfies `test`.
fn in_chain(err: &(dyn Error + 'static), test: fn(&(dyn Error + 'static)) -> bool) -> bool {
    let mut pending: Vec<&(dyn Error + 'static)> = vec![err];
    while let Some(e) = pending.pop() {
        if test(e) {
            return true;
        }
        // `io::Error::source` skips the error it wraps: open it by hand.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            pending.push(inner);
        }
        if let Some(next) = e.source() {
            pending.push(next);
        }
    }
    false
}

/// hyper's connector says "dns error" around the resolver's failure, and the system resolver
/// says "failed to lookup address information"; neither has a type of its own to look for.
fn is_dns(e: &(dyn Error + 'static)) -> bool {
    let text = e.to_string();
    text == "dns error" || text.contains("failed to lookup address information")
}

/// The ECR API endpoint's host name for a region (`api.ecr.REGION.SUFFIX`, or the FIPS one).
pub fn ecr_api_host(region: &str, fips: bool) -> String {
    if fips {
        format!("ecr-fips.{region}.{}", dns_suffix(region))
    } else {
        format!("api.ecr.{region}.{}", dns_suffix(region))
    }
}

/// The STS endpoint's host name for a region.
pub fn sts_host(region: &str) -> String {
    format!("sts.{region}.{}", dns_suffix(region))
}

/// What to do about a network failure to `endpoint`, an AWS API endpoint whose VPC interface
/// endpoint is `com.amazonaws.REGION.{service}` (`ecr.api`, `sts`). `None` for other causes.
pub fn network_fix(cause: Cause, endpoint: &str, region: &str, service: &str) -> Option<String> {
    // China's service names carry a `cn.` prefix: cn.com.amazonaws.cn-north-1.ecr.api.
    let china = if region.starts_with("cn-") { "cn." } else { "" };
    let vpce = format!("{china}com.amazonaws.{region}.{service}");
    let path = format!(
        "check the route to it (a NAT gateway for private subnets, an internet gateway for public ones), that security groups and network ACLs allow outbound 443, HTTPS_PROXY if AWS is only reached through a proxy, or create the VPC interface endpoint {vpce} (private DNS on, its security group allowing 443 from here)"
    );
    match cause {
        Cause::Dns => Some(format!(
            "{endpoint} does not resolve here: check this machine's DNS resolver; in a VPC without internet access create the interface endpoint {vpce} with private DNS on (that makes the name resolve to it), or set HTTPS_PROXY to a proxy that reaches AWS"
        )),
        Cause::TimedOut => Some(format!("{endpoint} did not answer in time: {path}")),
        Cause::Refused => Some(format!("{endpoint} refused the connection: {path}")),
        _ => None,
    }
}

/// The reason, in words, for a row's detail: "does not resolve", "did not answer", ...
pub fn network_words(cause: Cause) -> &'static str {
    match cause {
        Cause::Dns => "does not resolve",
        Cause::TimedOut => "did not answer",
        Cause::Refused => "refused the connection",
        _ => "failed",
    }
}

/// How to renew credentials AWS does not accept, by where they came from (`source`, as
/// [`crate::aws::credentials::Aws::source`] names it) and the selected profile.
pub fn renew_credentials(source: &str, profile: &str) -> String {
    if source.starts_with("environment") {
        "the keys in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) are invalid or expired: create new access keys (IAM console, or aws iam create-access-key), or get a new session (aws sts get-session-token, aws configure export-credentials), and export them again; check that this machine's clock is right".into()
    } else if source.starts_with("profile") {
        format!(
            "renew the credentials of profile {profile}: if it signs in with IAM Identity Center (SSO), aws sso login --profile {profile}; if it holds keys, put new ones in its [{profile}] section of the credentials file; if it runs a credential_process, run that command and check what it prints; check that this machine's clock is right"
        )
    } else if source.starts_with("web identity") {
        "the session from the web identity token was refused: check that the projected token file is fresh (kubelet rotates it), that the IAM OIDC provider for the cluster exists, and this machine's clock".into()
    } else if source.starts_with("container") {
        "the container credentials endpoint handed out credentials AWS refuses: check the EKS Pod Identity agent or ECS agent, and restart the pod to get new ones".into()
    } else if source.starts_with("EC2") {
        "the instance profile's credentials were refused: check that the instance profile and its role still exist, and this machine's clock".into()
    } else if source.starts_with("IAM Roles Anywhere") {
        "the Roles Anywhere session was refused: check the certificate is valid and this machine's clock is right, then run again for a new session".into()
    } else {
        "renew the credentials (new keys, a new session, or aws sso login --profile NAME for an SSO profile) and check this machine's clock".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_and_throttling_codes_have_their_causes() {
        for code in [
            "InvalidClientTokenId",
            "ExpiredTokenException",
            "SignatureDoesNotMatch",
        ] {
            assert_eq!(of_code(code), Some(Cause::BadCredentials), "{code}");
        }
        assert_eq!(of_code("ThrottlingException"), Some(Cause::Unavailable));
        assert_eq!(of_code("AccessDeniedException"), None);
    }

    #[test]
    fn a_resolver_failure_is_found_inside_a_wrapped_io_error() {
        #[derive(Debug, thiserror::Error)]
        #[error("dns error")]
        struct Connect(#[source] std::io::Error);
        let wrapped = std::io::Error::other(Connect(std::io::Error::other("no such host")));
        assert!(in_chain(&wrapped, is_dns));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!in_chain(&refused, is_dns));
    }

    #[test]
    fn network_fixes_name_the_endpoint_and_its_vpc_endpoint() {
        let host = ecr_api_host("eu-west-1", false);
        assert_eq!(host, "api.ecr.eu-west-1.amazonaws.com");
        assert_eq!(
            ecr_api_host("us-gov-west-1", true),
            "ecr-fips.us-gov-west-1.amazonaws.com"
        );
        for cause in [Cause::Dns, Cause::TimedOut, Cause::Refused] {
            let fix = network_fix(cause, &host, "eu-west-1", "ecr.api").unwrap();
            assert!(
                fix.contains(&host) && fix.contains("com.amazonaws.eu-west-1.ecr.api"),
                "{fix}"
            );
            assert!(fix.contains("HTTPS_PROXY"), "{fix}");
        }
        assert!(network_fix(Cause::Refusal, &host, "eu-west-1", "ecr.api").is_none());
        let china = ecr_api_host("cn-north-1", false);
        let fix = network_fix(Cause::TimedOut, &china, "cn-north-1", "ecr.api").unwrap();
        assert!(
            fix.contains("cn.com.amazonaws.cn-north-1.ecr.api")
                && fix.contains(".amazonaws.com.cn"),
            "{fix}"
        );
    }
}
