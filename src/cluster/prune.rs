//! `--prune`: removing our Secret from namespaces that are no longer selected, so a narrower
//! selection leaves no stale credentials behind. Only a Secret with our name, our label and
//! this install's instance label is deleted, and only the very object that was read (uid
//! precondition): another install's Secrets, and those of an earlier version that no install
//! has adopted yet, are never pruned.
//!
//! It reads each unselected namespace's Secret by name rather than listing Secrets: listing
//! would need `list secrets` cluster-wide, which would let the refresher read every Secret.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::cluster::calls::{code_of, describe, exact_delete, retrying};
use crate::cluster::ownership::{self, Owner};

/// What pruning did in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pruned {
    Deleted,
    /// No Secret of that name, or not ours: nothing done.
    Nothing,
    Failed(String),
}

async fn prune_one(client: Client, namespace: &str, secret: &str, instance: &str) -> Pruned {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let existing = match retrying(|| api.get_opt(secret)).await {
        Ok(Some(s)) => s,
        Ok(None) => return Pruned::Nothing,
        Err(e) => return Pruned::Failed(describe(&e)),
    };
    if ownership::owner(existing.metadata.labels.as_ref(), instance) != Owner::Us {
        return Pruned::Nothing;
    }
    let params = exact_delete(&existing.metadata);
    match retrying(|| api.delete(secret, &params)).await {
        Ok(_) => Pruned::Deleted,
        Err(e) if code_of(&e) == Some(404) => Pruned::Nothing,
        Err(e) => Pruned::Failed(describe(&e)),
    }
}

/// Prunes `secret` written by `instance` from every namespace in `namespaces`, `concurrency` at a
/// time, and logs what was removed. Returns how many namespaces failed.
pub async fn prune(
    client: Client,
    namespaces: &[String],
    secret: &str,
    instance: &str,
    concurrency: usize,
) -> usize {
    let results: Vec<(String, Pruned)> = futures::stream::iter(namespaces)
        .map(|ns| {
            let client = client.clone();
            async move { (ns.clone(), prune_one(client, ns, secret, instance).await) }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut failed = 0;
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
        }
    }
    failed
}
