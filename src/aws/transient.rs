//! Which AWS failures a later run may get past without anyone changing anything: no answer, a
//! timeout, throttling, a server error. Everything else (access denied, a bad key, a missing
//! role) needs a person, and retrying it only repeats the error.
//!
//! The refresh mode turns this into its exit code, so that a Job retries an outage but fails at
//! once on a configuration mistake.

use std::error::Error;

use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::roles_anywhere::RaError;

/// Error codes AWS services use for throttling (the SDK's own retry classifier knows the same).
pub(crate) const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Other error codes that say the service, not the request, failed: STS could not reach the
/// identity provider (the OIDC issuer) to check a web identity token.
const UNAVAILABLE_CODES: &[&str] = &["IDPCommunicationError"];

/// Whether a failed SDK call may pass later: no answer in time, no connection, an unreadable
/// answer, or throttling and server errors that outlasted the SDK's own retries.
pub fn sdk_error<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(ctx) => {
            http_status(ctx.raw().status().as_u16())
                || ctx.err().code().is_some_and(|c| {
                    THROTTLING_CODES.contains(&c) || UNAVAILABLE_CODES.contains(&c)
                })
        }
        other => no_service_answer(other),
    }
}

/// Whether a failed call that got no answer from the service may pass later: a timeout, a
/// connection that failed or broke, an unreadable answer. A request that could not be built
/// (a bad endpoint or header) or a connector failure of another kind needs a person.
pub fn no_service_answer<E, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(d) => {
            d.is_timeout()
                || d.is_io()
                || d.as_other() == Some(aws_smithy_types::retry::ErrorKind::TransientError)
        }
        // Building the request failed: nothing was sent, and nothing will change by itself.
        _ => false,
    }
}

/// Whether an HTTP status says "try again later": 429 or a server error.
pub fn http_status(status: u16) -> bool {
    status == 429 || status >= 500
}

/// Whether anything in `err`'s chain is a failure to reach the service at all (what a
/// credentials provider wraps when its endpoint does not answer).
pub fn no_answer(err: &(dyn Error + 'static)) -> bool {
    let mut next: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = next {
        if e.downcast_ref::<ConnectorError>().is_some() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            )
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// Whether a credentials provider's failure may pass later. Providers box their own errors
/// inside the `CredentialsError`, so the chain is searched for the ones we can judge.
pub fn credentials_error(err: &aws_credential_types::provider::error::CredentialsError) -> bool {
    use aws_credential_types::provider::error::CredentialsError;
    if matches!(err, CredentialsError::ProviderTimedOut(_)) {
        return true;
    }
    let mut next: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = next {
        // Roles Anywhere keeps its transport and service failures as text: ask it directly.
        if let Some(ra) = e.downcast_ref::<RaError>() {
            return ra.may_pass_on_retry();
        }
        // AssumeRole (--assume-role-arn, profiles) and AssumeRoleWithWebIdentity (IRSA) box the
        // STS call's own error; a timeout there has no ConnectorError to find.
        if let Some(sts) = e.downcast_ref::<SdkError<AssumeRoleError, HttpResponse>>() {
            return sdk_error(sts);
        }
        if let Some(sts) =
            e.downcast_ref::<SdkError<AssumeRoleWithWebIdentityError, HttpResponse>>()
        {
            return sdk_error(sts);
        }
        next = e.source();
    }
    no_answer(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_throttling_and_server_errors_are_worth_waiting_for() {
        assert!(http_status(429) && http_status(500) && http_status(503));
        assert!(!http_status(400) && !http_status(403) && !http_status(404));
    }

    #[test]
    fn a_connection_failure_anywhere_in_the_chain_counts() {
        #[derive(Debug, thiserror::Error)]
        #[error("provider failed")]
        struct Outer(#[source] std::io::Error);
        let refused = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(no_answer(&refused));
        let denied = Outer(std::io::Error::other("AccessDenied"));
        assert!(!no_answer(&denied));
    }

    #[test]
    fn only_connector_timeouts_and_io_failures_are_worth_waiting_for() {
        use aws_smithy_runtime_api::client::result::DispatchFailure;
        use aws_smithy_types::retry::ErrorKind;
        let dispatch = |e: ConnectorError| -> SdkError<(), ()> {
            SdkError::DispatchFailure(DispatchFailure::builder().source(e).build())
        };
        assert!(no_service_answer(&dispatch(ConnectorError::timeout(
            "slow".into()
        ))));
        assert!(no_service_answer(&dispatch(ConnectorError::io(
            "reset".into()
        ))));
        assert!(no_service_answer(&dispatch(ConnectorError::other(
            "incomplete message".into(),
            Some(ErrorKind::TransientError)
        ))));
        assert!(!no_service_answer(&dispatch(ConnectorError::other(
            "certificate rejected".into(),
            None
        ))));
        assert!(!no_service_answer(&dispatch(ConnectorError::user(
            "bad request".into()
        ))));
        assert!(!no_service_answer(
            &SdkError::<(), ()>::construction_failure("bad endpoint")
        ));
        assert!(no_service_answer(&SdkError::<(), ()>::timeout_error(
            "slow"
        )));
    }

    #[test]
    fn a_roles_anywhere_outage_inside_a_provider_error_counts() {
        use aws_credential_types::provider::error::CredentialsError;
        let busy = CredentialsError::provider_error(RaError::Service {
            status: 503,
            message: "busy".into(),
        });
        assert!(credentials_error(&busy));
        let gone = CredentialsError::provider_error(RaError::Transport {
            endpoint: "https://ra.example".into(),
            message: "connection refused".into(),
            transient: true,
        });
        assert!(credentials_error(&gone));
        let denied = CredentialsError::provider_error(RaError::Service {
            status: 403,
            message: "AccessDenied".into(),
        });
        assert!(!credentials_error(&denied));
    }
}
