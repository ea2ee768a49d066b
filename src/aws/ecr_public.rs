//! ECR Public authorization tokens. `public.ecr.aws` has its own token API (`ecr-public`), in
//! us-east-1 only, whatever region the caller is in; AWS also requires
//! `sts:GetServiceBearerToken` for it, though the client makes only the one call. Anonymous
//! pulls work too, but an authenticated pull gets far higher rate limits.
//!
//! The call is made here by hand (awsJson 1.1, SigV4) rather than with the `aws-sdk-ecrpublic`
//! crate, a whole generated SDK (endpoint rules, partitions, schemas) for this one operation
//! (docs/performance-size.md has the bytes). It still runs
//! through the SDK's orchestrator with what every SDK call gets: the shared HTTP client (proxy,
//! TLS), the SDK's SigV4 signer with the shared credentials cache, the standard retries with the
//! SDK's own classifiers (throttling codes, 5xx, connection errors), and the timeouts.

use std::fmt;

use aws_config::SdkConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_runtime::auth::sigv4::{SCHEME_ID, SigV4AuthScheme};
use aws_runtime::auth::{SigV4OperationSigningConfig, SigningOptions};
use aws_runtime::retries::classifiers::AwsErrorCodeClassifier;
use aws_smithy_runtime::client::identity::IdentityCache;
use aws_smithy_runtime::client::orchestrator::operation::Operation;
use aws_smithy_runtime::client::retries::classifiers::{
    HttpStatusCodeClassifier, TransientErrorClassifier,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::auth::AuthSchemeOptionResolverParams;
use aws_smithy_runtime_api::client::auth::static_resolver::StaticAuthSchemeOptionResolver;
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
use aws_smithy_runtime_api::client::runtime_plugin::StaticRuntimePlugin;
use aws_smithy_types::DateTime;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::Layer;
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_types::SigningName;
use aws_types::region::SigningRegion;
use aws_types::service_config::ServiceConfigKey;
use jiff::Timestamp;
use serde::Deserialize;

use crate::aws::ecr::{EcrError, RegistryAuth, Token, read_token};
use crate::aws::http;
use crate::aws::registry::{ECR_PUBLIC_HOST, ECR_PUBLIC_REGION};
use crate::errors;

/// The awsJson 1.1 target of the one operation.
const TARGET: &str = "SpencerFrontendService.GetAuthorizationToken";

/// The signing name (the credential scope's service), also the `aws-sdk-ecrpublic` one.
const SIGNING_NAME: &str = "ecr-public";

/// The endpoint the token call goes to: an explicit one (`AWS_ENDPOINT_URL_ECR_PUBLIC`, then
/// `AWS_ENDPOINT_URL` or the profile's), else the service's own in us-east-1, with the FIPS and
/// dual-stack variants of the SDK's endpoint rules.
pub fn endpoint(explicit: Option<&str>, fips: bool, dual_stack: bool) -> String {
    if let Some(url) = explicit {
        return url.to_string();
    }
    let r = ECR_PUBLIC_REGION;
    match (fips, dual_stack) {
        (false, false) => format!("https://api.ecr-public.{r}.amazonaws.com"),
        (false, true) => format!("https://ecr-public.{r}.api.aws"),
        (true, false) => format!("https://api.ecr-public-fips.{r}.amazonaws.com"),
        (true, true) => format!("https://api.ecr-public-fips.{r}.api.aws"),
    }
}

/// The explicit endpoint as `aws-sdk-ecrpublic` chose it: one set in code wins; otherwise the
/// service-specific setting (`AWS_ENDPOINT_URL_ECR_PUBLIC`, a profile's `ecr_public` section),
/// then the global one.
fn explicit_endpoint(sdk: &SdkConfig) -> Option<String> {
    if sdk.get_origin("endpoint_url").is_client_config() {
        return sdk.endpoint_url().map(str::to_string);
    }
    let key = ServiceConfigKey::builder()
        .service_id("ECR PUBLIC")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok();
    key.and_then(|key| sdk.service_config()?.load_config(key))
        .or_else(|| sdk.endpoint_url().map(str::to_string))
}

/// An error answer from ECR Public: the HTTP status, and the code and message it gave.
#[derive(Debug)]
pub struct ServiceError {
    status: u16,
    meta: ErrorMetadata,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.meta.code(), self.meta.message()) {
            (Some(code), Some(message)) => write!(f, "{code}: {message}"),
            (Some(code), None) => write!(f, "{code} (HTTP {})", self.status),
            (None, _) => write!(f, "HTTP {} without an AWS error code", self.status),
        }
    }
}

impl std::error::Error for ServiceError {}

impl ProvideErrorMetadata for ServiceError {
    fn meta(&self) -> &ErrorMetadata {
        &self.meta
    }
}

/// The code of an awsJson error: `x-amzn-errortype`, else the body's `__type` (or `code`),
/// without a namespace (`com.amazonaws.ecrpublic#`) or a trailing `:http://…`.
fn error_code(header: Option<&str>, body_type: Option<&str>) -> Option<String> {
    let raw = header.or(body_type)?;
    let raw = raw.split(':').next().unwrap_or(raw);
    let code = raw.rsplit('#').next().unwrap_or(raw).trim();
    (!code.is_empty()).then(|| code.to_string())
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(rename = "__type", alias = "code")]
    kind: Option<String>,
    #[serde(alias = "Message", alias = "errorMessage")]
    message: Option<String>,
}

/// Reads an error answer. Its message never holds the token: only a failed call has one.
fn service_error(status: u16, header: Option<&str>, body: &[u8]) -> ServiceError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let mut meta = ErrorMetadata::builder();
    if let Some(code) = error_code(header, parsed.kind.as_deref()) {
        meta = meta.code(code);
    }
    if let Some(message) = parsed.message {
        meta = meta.message(message);
    }
    ServiceError {
        status,
        meta: meta.build(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    authorization_data: Option<AuthorizationData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationData {
    authorization_token: Option<String>,
    /// Seconds since the epoch, as awsJson sends timestamps.
    expires_at: Option<f64>,
}

/// What [`read_token`] takes: the token and its expiry, when the answer has authorization data.
type TokenData = Option<(Option<String>, Option<DateTime>)>;

/// Reads a 2xx answer. The body holds the token: a parse failure says where, never what.
fn parse_answer(body: &[u8]) -> Result<TokenData, String> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        format!(
            "unreadable GetAuthorizationToken answer (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    Ok(answer.authorization_data.map(|d| {
        (
            d.authorization_token,
            d.expires_at.map(DateTime::from_secs_f64),
        )
    }))
}

fn parse_response(response: &HttpResponse) -> Result<TokenData, OrchestratorError<ServiceError>> {
    let status = response.status().as_u16();
    let body = response.body().bytes().unwrap_or_default();
    if response.status().is_success() {
        return parse_answer(body).map_err(|m| OrchestratorError::response(m.into()));
    }
    let header = response.headers().get("x-amzn-errortype");
    Err(OrchestratorError::operation(service_error(
        status, header, body,
    )))
}

/// The request: an empty JSON object to `/`, with the target header. Signed later, per attempt.
fn request() -> Result<HttpRequest, BoxError> {
    let mut request = HttpRequest::new(SdkBody::from("{}"));
    request.set_method("POST")?;
    request.set_uri("/")?;
    let headers = request.headers_mut();
    headers.try_insert("content-type", "application/x-amz-json-1.1")?;
    headers.try_insert("x-amz-target", TARGET)?;
    headers.try_insert(
        "user-agent",
        concat!("ecr-secret-refresher/", env!("CARGO_PKG_VERSION")),
    )?;
    Ok(request)
}

/// SigV4 as `aws-sdk-ecrpublic` configures it for this operation: the SDK's signer, scope
/// `us-east-1/ecr-public`, and the credentials behind the config's shared identity cache (so a
/// role assumed for the private registries is not assumed again).
fn sigv4(sdk: &SdkConfig, credentials: SharedCredentialsProvider) -> StaticRuntimePlugin {
    let mut layer = Layer::new("ecr-public sigv4");
    layer.store_put(AuthSchemeOptionResolverParams::new(()));
    layer.store_put(SigningName::from_static(SIGNING_NAME));
    layer.store_put(SigningRegion::from_static(ECR_PUBLIC_REGION));
    let mut options = SigningOptions::default();
    options.double_uri_encode = true;
    options.content_sha256_header = false;
    options.normalize_uri_path = true;
    layer.store_put(SigV4OperationSigningConfig {
        signing_options: options,
        ..Default::default()
    });
    let components = RuntimeComponentsBuilder::new("ecr-public sigv4")
        .with_auth_scheme_option_resolver(Some(StaticAuthSchemeOptionResolver::new(vec![
            SCHEME_ID,
        ])))
        .with_auth_scheme(SigV4AuthScheme::new())
        .with_identity_resolver(SCHEME_ID, credentials)
        .with_identity_cache(Some(
            sdk.identity_cache()
                .unwrap_or_else(|| IdentityCache::lazy().build()),
        ));
    StaticRuntimePlugin::new()
        .with_config(layer.freeze())
        .with_runtime_components(components)
}

/// Gets one ECR Public token with the credentials in `sdk`.
pub async fn token(sdk: &SdkConfig) -> Result<Token, EcrError> {
    let credentials = sdk
        .credentials_provider()
        .ok_or_else(|| EcrError::PublicCall {
            message: "no AWS credentials were found".into(),
            transient: false,
        })?;
    let http_client = sdk.http_client().unwrap_or_else(http::client);
    let url = endpoint(
        explicit_endpoint(sdk).as_deref(),
        sdk.use_fips().unwrap_or(false),
        sdk.use_dual_stack().unwrap_or(false),
    );
    let mut builder = Operation::builder()
        .service_name(SIGNING_NAME)
        .operation_name("GetAuthorizationToken")
        .http_client(http_client)
        .endpoint_url(&url)
        .standard_retry(
            &sdk.retry_config()
                .cloned()
                .unwrap_or_else(http::retry_config),
        )
        .retry_classifier(HttpStatusCodeClassifier::default())
        .retry_classifier(TransientErrorClassifier::<ServiceError>::new())
        .retry_classifier(AwsErrorCodeClassifier::<ServiceError>::new())
        .timeout_config(
            sdk.timeout_config()
                .cloned()
                .unwrap_or_else(http::timeout_config),
        )
        .with_connection_poisoning()
        .runtime_plugin(sigv4(sdk, credentials));
    if let Some(sleep) = sdk.sleep_impl() {
        builder = builder.sleep_impl(sleep);
    }
    if let Some(time) = sdk.time_source() {
        builder = builder.time_source(time);
    }
    if let Some(version) = sdk.behavior_version() {
        builder = builder.behavior_version(version);
    }
    let operation = builder
        .serializer(|()| request())
        .deserializer(parse_response)
        .build();
    let data = operation
        .invoke(())
        .await
        .map_err(|e| EcrError::PublicCall {
            message: errors::chain(&e),
            transient: crate::aws::transient::sdk_error(&e),
        })?;
    read_token(ECR_PUBLIC_REGION, data)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_sdk_rules_for_us_east_1() {
        assert_eq!(
            endpoint(None, false, false),
            "https://api.ecr-public.us-east-1.amazonaws.com"
        );
        assert_eq!(
            endpoint(None, false, true),
            "https://ecr-public.us-east-1.api.aws"
        );
        assert_eq!(
            endpoint(None, true, false),
            "https://api.ecr-public-fips.us-east-1.amazonaws.com"
        );
        assert_eq!(
            endpoint(None, true, true),
            "https://api.ecr-public-fips.us-east-1.api.aws"
        );
        assert_eq!(
            endpoint(Some("http://127.0.0.1:9"), true, true),
            "http://127.0.0.1:9"
        );
    }

    #[test]
    fn error_codes_lose_namespace_and_uri() {
        assert_eq!(
            error_code(
                Some("ThrottlingException:http://internal.amazon.com/coral/"),
                None
            )
            .as_deref(),
            Some("ThrottlingException")
        );
        assert_eq!(
            error_code(None, Some("com.amazonaws.ecrpublic#AccessDeniedException")).as_deref(),
            Some("AccessDeniedException")
        );
        assert_eq!(error_code(None, None), None);
        let e = service_error(
            400,
            None,
            br#"{"__type":"com.amazonaws.ecrpublic#AccessDeniedException","message":"User is not authorized"}"#,
        );
        assert_eq!(e.code(), Some("AccessDeniedException"));
        assert_eq!(
            e.to_string(),
            "AccessDeniedException: User is not authorized"
        );
        assert_eq!(
            service_error(503, None, b"<html>").to_string(),
            "HTTP 503 without an AWS error code"
        );
    }

    #[test]
    fn reads_the_answer_and_never_quotes_it() {
        let data = parse_answer(
            br#"{"authorizationData":{"authorizationToken":"QVdTOnB3","expiresAt":1.7649E9}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(data.0.as_deref(), Some("QVdTOnB3"));
        assert_eq!(data.1.map(|t| t.secs()), Some(1_764_900_000));
        let token = read_token(ECR_PUBLIC_REGION, Some(data)).unwrap();
        assert_eq!(token.password.expose(), "pw");
        assert!(parse_answer(b"{}").unwrap().is_none());
        let err = parse_answer(br#"{"authorizationData":{"authorizationToken":["secret-tok"#)
            .unwrap_err();
        assert!(!err.contains("secret-tok"), "{err}");
    }
}
