//! One refresh run: credentials, tokens, then the Secrets, in that order.
//!
//! Everything that can fail without touching the cluster (configuration, credentials, tokens)
//! happens first; the cluster is only written once every token is in hand.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt;
use jiff::{Timestamp, Unit};
use kube::Client;
use serde_json::json;

use crate::config::{Config, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::dockerconfig::{RegistryAuth, docker_config_json, redacted_docker_config_json};
use crate::registry::{Registry, group_by_scope};
use crate::report::{NamespaceResult, RunStatus, Summary, log_result, log_summary};
use crate::secrets::{
    self, DOCKER_CONFIG_JSON, DOCKER_CONFIG_KEY, DesiredSecret, EXPIRES_AT_ANNOTATION,
    REFRESHED_AT_ANNOTATION, REGISTRIES_ANNOTATION,
};
use crate::{cluster, credentials, ecr};

/// Failures that stop the run before any namespace is written.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Aws(#[from] credentials::AwsSetupError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error(transparent)]
    Ecr(#[from] ecr::EcrError),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
}

/// Runs the whole pipeline and returns how it ended. Errors are logged here.
pub async fn run(config: &Config) -> RunStatus {
    let started = Instant::now();
    match run_inner(config, started).await {
        Ok(status) => status,
        Err(e) => {
            tracing::error!("{e}");
            tracing::error!("nothing was changed in the cluster");
            RunStatus::NothingDone
        }
    }
}

async fn run_inner(config: &Config, started: Instant) -> Result<RunStatus, SetupError> {
    let hint = config.registries.first().map(|r| r.region.as_str());
    let aws = credentials::load(&config.aws, hint).await?;
    tracing::info!(source = aws.source, "AWS credentials found");

    let registries = if config.registries.is_empty() {
        let account = credentials::caller_account(&aws.sdk).await?;
        let region = aws.sdk.region().map(|r| r.to_string()).unwrap_or_default();
        vec![Registry::for_account(&account, &region, config.aws.fips)?]
    } else {
        config.registries.clone()
    };
    let scopes = group_by_scope(&registries);
    let (auths, expires_at) = ecr::registry_auths(&aws.sdk, &scopes).await?;
    let hosts: Vec<&str> = auths.iter().map(|a| a.host.as_str()).collect();
    tracing::info!(registries = %hosts.join(","), token_calls = scopes.len(), "ECR tokens obtained");

    let annotations = annotations(&auths, expires_at);
    if config.dry_run {
        print_dry_run(config, &auths, &annotations);
        return Ok(RunStatus::Refreshed);
    }
    let desired = DesiredSecret::new(
        &config.secret_name,
        docker_config_json(&auths).expose().as_bytes(),
        annotations,
    );
    let client = cluster::client(&config.kube).await?;
    let results = write_all(client, config, &desired).await;
    let summary = Summary::of(&results);
    log_summary(&summary, expires_at, started.elapsed());
    Ok(summary.status())
}

fn annotations(auths: &[RegistryAuth], expires_at: Option<Timestamp>) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let now = Timestamp::now()
        .round(Unit::Second)
        .unwrap_or(Timestamp::now());
    a.insert(REFRESHED_AT_ANNOTATION.to_string(), now.to_string());
    if let Some(t) = expires_at {
        let t = t.round(Unit::Second).unwrap_or(t);
        a.insert(EXPIRES_AT_ANNOTATION.to_string(), t.to_string());
    }
    let hosts: Vec<&str> = auths.iter().map(|x| x.host.as_str()).collect();
    a.insert(REGISTRIES_ANNOTATION.to_string(), hosts.join(","));
    a
}

/// Writes every namespace, at most `concurrency` at a time; one namespace's failure never stops
/// the others. Results come back in the order the namespaces were given.
async fn write_all(
    client: Client,
    config: &Config,
    desired: &DesiredSecret,
) -> Vec<NamespaceResult> {
    let mut results: Vec<(usize, NamespaceResult)> =
        futures::stream::iter(config.namespaces.iter().enumerate())
            .map(|(i, ns)| {
                let client = client.clone();
                async move {
                    let started = Instant::now();
                    let result =
                        secrets::write(client, ns, desired, config.strategy, config.force).await;
                    let r = NamespaceResult {
                        namespace: ns.clone(),
                        result,
                        elapsed: started.elapsed(),
                    };
                    log_result(&r, desired.name());
                    (i, r)
                }
            })
            .buffer_unordered(config.concurrency)
            .collect()
            .await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Prints the Secrets that would be written, as a `v1 List`, with passwords redacted.
fn print_dry_run(config: &Config, auths: &[RegistryAuth], annotations: &BTreeMap<String, String>) {
    let redacted = redacted_docker_config_json(auths);
    let items: Vec<serde_json::Value> = config
        .namespaces
        .iter()
        .map(|ns| {
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": config.secret_name,
                    "namespace": ns,
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
                    "annotations": annotations,
                },
                "type": DOCKER_CONFIG_JSON,
                "stringData": {DOCKER_CONFIG_KEY: redacted},
            })
        })
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    println!(
        "{}",
        serde_json::to_string_pretty(&list).unwrap_or_default()
    );
    tracing::info!(
        namespaces = config.namespaces.len(),
        "dry run: nothing was written"
    );
}
