//! Which AWS endpoint left us waiting: the host of the last request that got no answer (timed
//! out, or was abandoned by a deadline) and has not been answered since.
//!
//! A wrapper around the one HTTP client ([`crate::aws::http::client`]), so it sees every call
//! (STS, ECR, IMDS, the container endpoint, Roles Anywhere) without each of them being asked.
//! The kubelet plugin uses it to say which endpoint to check when its deadline passes, instead
//! of a service's own error, which blames a policy or says nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::config_bag::ConfigBag;

/// The process's record: one process answers one kubelet request, so one record is enough.
static UNANSWERED: Mutex<Option<String>> = Mutex::new(None);

/// The endpoint (`host[:port]`) that last gave no answer, if it has not answered since.
pub fn unanswered() -> Option<String> {
    UNANSWERED.lock().ok().and_then(|g| g.clone())
}

fn set(host: Option<&str>) {
    if let Ok(mut g) = UNANSWERED.lock() {
        *g = host.map(str::to_string);
    }
}

/// `client`, recording endpoints that do not answer.
pub fn track(client: SharedHttpClient) -> SharedHttpClient {
    SharedHttpClient::new(Tracked(client))
}

#[derive(Debug)]
struct Tracked(SharedHttpClient);

impl HttpClient for Tracked {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(TrackedConnector(
            self.0.http_connector(settings, components),
        ))
    }

    fn validate_base_client_config(
        &self,
        components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.0.validate_base_client_config(components, cfg)
    }

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.0.validate_final_config(components, cfg)
    }
}

#[derive(Debug)]
struct TrackedConnector(SharedHttpConnector);

impl HttpConnector for TrackedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let host = authority(request.uri()).to_string();
        let inner = self.0.call(request);
        HttpConnectorFuture::new(Watch {
            inner,
            host,
            done: false,
        })
    }
}

/// `host[:port]` of a URI.
fn authority(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

/// One request: an answer (or a refusal) clears the record; a timeout, or being dropped
/// unanswered (an attempt timeout, the plugin's deadline), sets it.
struct Watch {
    inner: HttpConnectorFuture,
    host: String,
    done: bool,
}

impl Future for Watch {
    type Output = Result<HttpResponse, ConnectorError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let out = Pin::new(&mut self.inner).poll(cx);
        if let Poll::Ready(result) = &out {
            self.done = true;
            match result {
                Err(e) if e.is_timeout() => set(Some(&self.host)),
                _ => {
                    if unanswered().as_deref() == Some(self.host.as_str()) {
                        set(None);
                    }
                }
            }
        }
        out
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.done {
            set(Some(&self.host));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authority_of_a_uri() {
        assert_eq!(
            authority("https://api.ecr.us-east-1.amazonaws.com/"),
            "api.ecr.us-east-1.amazonaws.com"
        );
        assert_eq!(authority("http://127.0.0.1:8080?x=1"), "127.0.0.1:8080");
        assert_eq!(
            authority("http://169.254.169.254/latest/api/token"),
            "169.254.169.254"
        );
    }
}
