//! The CreateSession call: sending the signed request and reading the credentials out of the
//! answer. It goes through the SDK's orchestrator with the HTTP client of every other AWS call
//! (see [`crate::aws::http`]), so it gets the same proxy rules, TLS stack and retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_smithy_runtime::client::orchestrator::operation::Operation;
use aws_smithy_runtime::client::retries::classifiers::TransientErrorClassifier;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, InterceptorContext,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use serde::Deserialize;

use super::RaError;
use super::signer::Signed;
use crate::aws::http;
use crate::sensitive::Sensitive;

/// Session credentials from Roles Anywhere.
#[derive(Debug, Clone)]
pub struct SessionCredentials {
    pub access_key_id: String,
    pub secret_access_key: Sensitive,
    pub session_token: Sensitive,
    pub expiration: jiff::Timestamp,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    credential_set: Vec<CredentialSetItem>,
}

#[derive(Deserialize)]
struct CredentialSetItem {
    credentials: Credentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

#[derive(Deserialize)]
struct ServiceError {
    #[serde(alias = "Message")]
    message: Option<String>,
}

/// Where and how a CreateSession answer is malformed. Never serde_json's own message: it quotes
/// the values it did not expect, and this body holds the secret key and the session token.
fn malformed(e: serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "unreadable",
        Category::Syntax => "not valid JSON",
        Category::Data => "not the expected credentialSet",
        Category::Eof => "cut short",
    };
    format!(
        "unexpected answer: {what} at line {}, column {}",
        e.line(),
        e.column()
    )
}

/// Parses a 2xx CreateSession body.
pub fn parse_response(body: &[u8]) -> Result<SessionCredentials, String> {
    let resp: Response = serde_json::from_slice(body).map_err(malformed)?;
    let c = resp
        .credential_set
        .into_iter()
        .next()
        .ok_or("the answer has an empty credentialSet")?
        .credentials;
    let expiration = c
        .expiration
        .parse::<jiff::Timestamp>()
        .map_err(|e| format!("unexpected expiration '{}': {e}", c.expiration))?;
    Ok(SessionCredentials {
        access_key_id: c.access_key_id,
        secret_access_key: Sensitive::new(c.secret_access_key),
        session_token: Sensitive::new(c.session_token),
        expiration,
    })
}

/// How many times CreateSession is tried, as the SDK's standard mode does for other calls.
pub const MAX_ATTEMPTS: u32 = 3;

/// A refusal from the service: the status and the message it gave.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}: {message}")]
pub struct Refusal {
    status: u16,
    message: String,
}

/// Retries what the SDK's standard mode retries for AWS services: throttling (429) and server
/// errors (5xx). Connection errors and timeouts are the SDK's own transient-error classifier's.
#[derive(Debug)]
struct RetryableStatus;

impl ClassifyRetry for RetryableStatus {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        match ctx.response().map(|r| r.status().as_u16()) {
            Some(429) => RetryAction::throttling_error(),
            Some(s) if (500..600).contains(&s) => RetryAction::server_error(),
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "Roles Anywhere throttling and server errors"
    }
}

/// Counts attempts, so that a failure can say how often it was tried.
#[derive(Debug, Default, Clone)]
struct Attempts(Arc<AtomicU32>);

impl Intercept for Attempts {
    fn name(&self) -> &'static str {
        "count attempts"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The HTTP request: the signed headers (the client derives `Host` from the endpoint, as
/// signed), a User-Agent, and the body.
fn http_request(signed: &Signed, body: Vec<u8>) -> Result<HttpRequest, BoxError> {
    let mut request = HttpRequest::new(SdkBody::from(body));
    request.set_method("POST")?;
    request.set_uri(signed.path_and_query.as_str())?;
    let headers = request.headers_mut();
    for (k, v) in &signed.headers {
        // A second Host header would make a different request from the signed one.
        if k != "host" {
            headers.try_insert(k.clone(), v.clone())?;
        }
    }
    headers.try_insert(
        "user-agent",
        concat!("ecr-secret-refresher/", env!("CARGO_PKG_VERSION")),
    )?;
    Ok(request)
}

fn parse_http_response(
    response: &HttpResponse,
) -> Result<SessionCredentials, OrchestratorError<Refusal>> {
    let status = response.status().as_u16();
    let bytes = response.body().bytes().unwrap_or_default();
    if response.status().is_success() {
        return parse_response(bytes)
            .map_err(|message| OrchestratorError::operation(Refusal { status, message }));
    }
    let message = serde_json::from_slice::<ServiceError>(bytes)
        .ok()
        .and_then(|e| e.message)
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).chars().take(300).collect());
    Err(OrchestratorError::operation(Refusal { status, message }))
}

/// POSTs the signed request to `endpoint` (scheme and authority) through `http`, the client of
/// every AWS call, and reads the answer. Throttling, server and connection errors are retried
/// with jittered exponential backoff, up to [`MAX_ATTEMPTS`] attempts in all; the same signed
/// request stays valid for minutes, longer than the retries take.
pub async fn create_session(
    http: &SharedHttpClient,
    endpoint: &str,
    signed: &Signed,
    body: Vec<u8>,
) -> Result<SessionCredentials, RaError> {
    let attempts = Attempts::default();
    let signed = signed.clone();
    let operation = Operation::builder()
        .service_name("rolesanywhere")
        .operation_name("CreateSession")
        .http_client(http.clone())
        .endpoint_url(endpoint)
        .no_auth()
        .standard_retry(&http::retry_config().with_max_attempts(MAX_ATTEMPTS))
        .retry_classifier(RetryableStatus)
        .retry_classifier(TransientErrorClassifier::<Refusal>::new())
        .timeout_config(http::timeout_config())
        .interceptor(attempts.clone())
        .serializer(move |body: Vec<u8>| http_request(&signed, body))
        .deserializer(parse_http_response)
        .build();
    let result = operation.invoke(body).await;
    let tried = match attempts.0.load(Ordering::Relaxed) {
        n if n > 1 => format!(" (after {n} attempts)"),
        _ => String::new(),
    };
    result.map_err(|e| match e {
        SdkError::ServiceError(ctx) => {
            let refusal = ctx.into_err();
            RaError::Service {
                status: refusal.status,
                message: format!("{}{tried}", refusal.message),
            }
        }
        // Nothing was sent: a retry would build the same request again.
        unbuilt @ SdkError::ConstructionFailure(_) => RaError::Request {
            endpoint: endpoint.to_string(),
            message: crate::errors::chain(&unbuilt),
        },
        other => RaError::Transport {
            endpoint: endpoint.to_string(),
            message: format!("{}{tried}", crate::errors::chain(&other)),
            transient: crate::aws::transient::no_service_answer(&other),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_credential_set() {
        let body = br#"{"credentialSet":[{"assumedRoleUser":{"arn":"arn:aws:sts::123456789012:assumed-role/r/s","assumedRoleId":"AROA:s"},
            "credentials":{"accessKeyId":"ASIAEXAMPLE","expiration":"2026-11-21T13:00:00Z","secretAccessKey":"sk","sessionToken":"st"},
            "packedPolicySize":0,"roleArn":"arn:aws:iam::123456789012:role/r","sourceIdentity":"CN=leaf"}],"subjectArn":"arn:aws:rolesanywhere:us-east-1:123456789012:subject/s"}"#;
        let c = parse_response(body).unwrap();
        assert_eq!(c.access_key_id, "ASIAEXAMPLE");
        assert_eq!(c.secret_access_key.expose(), "sk");
        assert_eq!(c.expiration.to_string(), "2026-11-21T13:00:00Z");
        assert!(parse_response(br#"{"credentialSet":[]}"#).is_err());
    }

    #[test]
    fn a_malformed_answer_is_described_without_its_values() {
        let body = br#"{"credentialSet":[{"credentials":{"accessKeyId":"A","secretAccessKey":["sk-123"],"sessionToken":"st-456","expiration":"x"}}]}"#;
        let err = parse_response(body).unwrap_err();
        assert!(
            err.contains("not the expected credentialSet at line 1"),
            "{err}"
        );
        assert!(!err.contains("sk-123") && !err.contains("st-456"), "{err}");
        let err = parse_response(br#"{"credentialSet":"st-456"#).unwrap_err();
        assert!(!err.contains("st-456"), "{err}");
    }

    #[tokio::test]
    async fn a_request_that_cannot_be_built_is_not_worth_retrying() {
        // A header value with a line break cannot go on the wire: nothing is sent.
        let signed = Signed {
            headers: vec![("x-amz-date".into(), "bad\nvalue".into())],
            path_and_query: "/sessions".into(),
        };
        let err = create_session(
            &crate::aws::http::client(),
            "http://127.0.0.1:9",
            &signed,
            Vec::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, RaError::Request { .. }), "{err:?}");
        assert!(!err.may_pass_on_retry(), "{err}");
    }
}
