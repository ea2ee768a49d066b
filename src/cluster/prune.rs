//! `--prune`: removing our Secret from namespaces that are no longer selected, so a narrower
//! selection leaves no stale credentials behind. Only a Secret with our name, our label and
//! this install's instance label is deleted, and only the very object that was read (uid
//! precondition): another install's Secrets, and those of an earlier version that no install
//! has adopted yet, are never pruned.
//!
//! It reads each unselected namespace's Secret by name rather than listing Secrets: listing
//! would need `list secrets` cluster-wide, which would let the refresher read every Secret.
//!
//! Each namespace is pruned within its own [`Budget`] (`--namespace-timeout`), like a refresh;
//! none starts once `--timeout` is reached or a termination signal came.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::cluster::budget::{Budget, Cut, Step, cut_of};
use crate::cluster::calls::{code_of, describe, exact_delete};
use crate::cluster::ownership::{self, Owner};
use crate::shutdown::{Reason, Stop};

/// What pruning did in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pruned {
    Deleted,
    /// No Secret of that name, or not ours: nothing done.
    Nothing,
    Failed(String),
    /// Not started, or cut short, because the run is stopping: left for the next run.
    Stopped(Reason),
}

/// Why a request failed: a signal stops the namespace, anything else fails it.
fn failed(err: &kube::Error) -> Pruned {
    match cut_of(err) {
        Some(Cut::Stopped) => Pruned::Stopped(Reason::Signal),
        _ => Pruned::Failed(describe(err)),
    }
}

async fn prune_one(
    client: Client,
    namespace: &str,
    secret: &str,
    instance: &str,
    budget: &Budget,
) -> Pruned {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let existing = match budget.retrying(Step::Normal, || api.get_opt(secret)).await {
        Ok(Some(s)) => s,
        Ok(None) => return Pruned::Nothing,
        Err(e) => return failed(&e),
    };
    if ownership::owner(existing.metadata.labels.as_ref(), instance) != Owner::Us {
        return Pruned::Nothing;
    }
    let params = exact_delete(&existing.metadata);
    let deleted = budget
        .retrying(Step::Normal, || api.delete(secret, &params))
        .await;
    match deleted {
        Ok(_) => Pruned::Deleted,
        Err(e) if code_of(&e) == Some(404) => Pruned::Nothing,
        Err(e) => failed(&e),
    }
}

/// What [`prune`] needs besides the namespaces.
pub struct PruneOptions<'a> {
    pub secret: &'a str,
    pub instance: &'a str,
    pub concurrency: usize,
    /// Each namespace's budget (`--namespace-timeout`).
    pub namespace_timeout: Duration,
    pub stop: &'a Stop,
}

/// Prunes `secret` written by `instance` from every namespace in `namespaces`, `concurrency` at a
/// time, each within its own budget, and logs what was removed. Returns how many namespaces
/// failed; those not pruned because the run is stopping do not count.
pub async fn prune(client: Client, namespaces: &[String], options: &PruneOptions<'_>) -> usize {
    let PruneOptions {
        secret, instance, ..
    } = *options;
    let results: Vec<(String, Pruned)> = futures::stream::iter(namespaces)
        .map(|ns| {
            let client = client.clone();
            async move {
                let pruned = match options.stop.reason() {
                    Some(reason) => Pruned::Stopped(reason),
                    None => {
                        let budget = Budget::start(options.namespace_timeout, options.stop.clone());
                        prune_one(client, ns, secret, instance, &budget).await
                    }
                };
                (ns.clone(), pruned)
            }
        })
        .buffer_unordered(options.concurrency)
        .collect()
        .await;
    let mut failed = 0;
    let mut stopped = None;
    for (ns, result) in results {
        match result {
            Pruned::Deleted => {
                tracing::info!(namespace = %ns, secret = %secret, outcome = %"pruned", "pruned: namespace is no longer selected")
            }
            Pruned::Nothing => {}
            Pruned::Failed(e) => {
                failed += 1;
                tracing::error!(namespace = %ns, secret = %secret, outcome = %"prune-failed", error = %e, "prune failed")
            }
            Pruned::Stopped(reason) => {
                stopped.get_or_insert((reason, 0)).1 += 1;
            }
        }
    }
    if let Some((reason, count)) = stopped {
        tracing::warn!(
            "--prune stopped: {}; {count} namespace(s) left for the next run",
            reason.summary()
        );
    }
    failed
}
