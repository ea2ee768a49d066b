//! Kubernetes requests: retrying passing failures with backoff, and reading API errors.
//!
//! Every module that calls the API server goes through [`retrying`] or, for the requests of one
//! namespace, [`Budget::retrying`](crate::cluster::budget::Budget::retrying), so retries,
//! `Retry-After` and jitter behave the same for Secrets, ServiceAccounts, Events and namespaces.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Preconditions};

use crate::cluster::budget::{Cut, cut_of};
use crate::errors;

/// How many times a request that failed for a passing reason (429, 5xx, connection) is tried.
pub(crate) const ATTEMPTS: u32 = 3;

pub(crate) fn status_of(err: &kube::Error) -> Option<&kube::core::Status> {
    match err {
        kube::Error::Api(s) => Some(s),
        _ => None,
    }
}

pub(crate) fn code_of(err: &kube::Error) -> Option<u16> {
    status_of(err).map(|s| s.code)
}

pub(crate) fn describe(err: &kube::Error) -> String {
    if let Some(cut) = cut_of(err) {
        return cut.to_string();
    }
    match status_of(err) {
        Some(s) if !s.reason.is_empty() => format!("{} ({}, HTTP {})", s.message, s.reason, s.code),
        Some(s) => format!("{} (HTTP {})", s.message, s.code),
        // kube runs an exec credential plugin again when its token expires; its message would
        // quote what the plugin printed.
        None => match crate::cluster::client::exec_failure(err) {
            Some(why) => format!(
                "the kubeconfig's exec credential plugin failed: {why} (its output is not shown, because it may hold a token)"
            ),
            None => errors::chain(err),
        },
    }
}

/// Passing failures: throttling, server errors, and failures to reach the server at all.
pub(crate) fn is_transient(err: &kube::Error) -> bool {
    match code_of(err) {
        Some(code) => code == 429 || code >= 500,
        // A request that got no answer in time is worth another try while the budget lasts;
        // one cut short by the budget or by a signal is not.
        None => match cut_of(err) {
            Some(cut) => matches!(cut, Cut::TimedOut(_)),
            None => matches!(err, kube::Error::HyperError(_) | kube::Error::Service(_)),
        },
    }
}

/// How long to wait before attempt `attempt + 1`: the server's `Retry-After` when it gave one
/// (429 carries it in the Status details), else exponential backoff; plus up to 25% jitter so
/// that many namespaces throttled together do not come back together.
pub(crate) fn backoff(err: &kube::Error, attempt: u32) -> Duration {
    let asked = status_of(err)
        .and_then(|s| s.details.as_ref())
        .map(|d| d.retry_after_seconds)
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(u64::from(s).min(30)));
    let base = asked.unwrap_or_else(|| Duration::from_millis(100 * 2u64.pow(attempt)));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// Runs a request, trying it again while it fails for a passing reason (429, 5xx, no connection).
pub(crate) async fn retrying<T, F, Fut>(mut call: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                tokio::time::sleep(backoff(&e, attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Delete options that delete only the very object that was read: same uid, same version.
pub(crate) fn exact_delete(meta: &ObjectMeta) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
        }),
        ..DeleteParams::default()
    }
}
