//! The one HTTP client for every AWS call: STS, ECR, the credential sources, and IAM Roles
//! Anywhere CreateSession, with the retry and timeout settings they share.
//!
//! rustls with ring, like the kube client, and the proxy rules of the environment
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY` and their lower-case twins), read the
//! way the SDK's own default client reads them. Clusters outside AWS, where Roles Anywhere is
//! used, usually reach AWS only through an egress proxy.

use std::time::Duration;

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{Connector, tls};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

/// The SDK's standard retries (jittered exponential backoff on throttling, server and
/// connection errors), with four attempts in all.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(4)
}

/// Short enough that an unreachable endpoint fails a run within a minute, long enough for a
/// slow proxy.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(20))
        .operation_timeout(Duration::from_secs(60))
        .build()
}

/// The client. Connectors are built per timeout setting (the SDK asks with its own settings)
/// and reused, so connections are pooled across calls.
pub fn client() -> SharedHttpClient {
    // `build_with_connector_fn` is how the SDK builds its own default client with a proxy
    // configuration; `Builder::build_https` has no way to set one.
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut builder = Connector::builder()
            .proxy_config(ProxyConfig::from_env())
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ));
        builder.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            builder.set_sleep_impl(components.sleep_impl());
        }
        builder.build()
    })
}
