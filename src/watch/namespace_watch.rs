//! A metadata-only watch of namespaces (names, labels, deletion), kept the way client-go's
//! reflector keeps one: list, then watch from the list's resourceVersion with bookmarks; when a
//! watch ends, resume from the last resourceVersion seen (a bookmark's included); when the
//! server says that version is too old (HTTP 410 Gone, or an ERROR event with code 410), list
//! again and report what changed in between. Failures back off, up to 30 s.
//!
//! It never lists or watches Secrets: RBAC cannot narrow either to a name or label.
//!
//! Hand-written over `Api::watch_metadata` rather than kube's `runtime::watcher`: the loop is
//! short, and the runtime feature costs binary size this tool has no room for (see the report).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{WatchEvent, WatchParams};
use kube::{Api, Client};
use tokio::sync::mpsc::UnboundedSender;

use crate::cluster::calls::{code_of, describe};
use crate::cluster::labels::Selector;
use crate::cluster::namespaces::{self, Listed};
use crate::watch::health::Health;
use crate::watch::metrics::{ErrorKind, Metrics};
use crate::watch::react::Standing;

/// `timeoutSeconds` of each watch request: the server ends it cleanly then, and it is resumed.
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(290);
/// How long a watch request may wait for the server's first answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One namespace changed what the selection makes of it: how it stood and how it stands
/// (`None`: did not exist, or is gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub name: String,
    pub before: Option<Standing>,
    pub after: Option<Standing>,
}

/// How the leader's selection classifies a namespace.
pub type Classify = Box<dyn Fn(&Listed) -> Standing + Send + Sync>;

/// What ended one watch request.
#[derive(Debug)]
enum End {
    /// `timeoutSeconds` passed, or the server closed the stream: resume.
    Closed,
    /// 410: the resourceVersion is too old; list again.
    Gone,
    Failed(String),
}

/// The changes that turn `old` into `new`, one per namespace that differs. Pure.
pub fn diff(old: &BTreeMap<String, Standing>, new: &BTreeMap<String, Standing>) -> Vec<Seen> {
    let mut out = Vec::new();
    for (name, after) in new {
        match old.get(name) {
            Some(before) if before == after => {}
            before => out.push(Seen {
                name: name.clone(),
                before: before.copied(),
                after: Some(*after),
            }),
        }
    }
    for (name, before) in old {
        if !new.contains_key(name) {
            out.push(Seen {
                name: name.clone(),
                before: Some(*before),
                after: None,
            });
        }
    }
    out
}

fn backoff(failures: u32) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(8))
        .min(MAX_BACKOFF);
    base + base.mul_f64(0.25 * crate::watch::schedule::jitter())
}

/// The watch and what it knows.
pub struct NamespaceWatch {
    api: Api<Namespace>,
    client: Client,
    /// Every namespace, as the selection stands it.
    cache: BTreeMap<String, Standing>,
    classify: Classify,
    /// --namespace-selector, applied as each namespace is read: no labels are kept.
    selector: Option<Selector>,
    version: Option<String>,
    health: Health,
    metrics: Metrics,
}

impl NamespaceWatch {
    /// `client` should allow reads of [`WATCH_TIMEOUT`] and more (see
    /// [`crate::cluster::client::Checked::for_watches`]).
    pub fn new(
        client: Client,
        classify: Classify,
        selector: Option<Selector>,
        health: Health,
        metrics: Metrics,
    ) -> NamespaceWatch {
        NamespaceWatch {
            api: Api::all(client.clone()),
            client,
            cache: BTreeMap::new(),
            classify,
            selector,
            version: None,
            health,
            metrics,
        }
    }

    /// Lists and watches for ever, sending every change to `out`. The first listing fills the
    /// cache without sending anything (the caller refreshes everything then); `synced` fires
    /// once it is done.
    pub async fn run(
        mut self,
        out: UnboundedSender<Seen>,
        synced: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut synced = Some(synced);
        let mut failures: u32 = 0;
        let mut watches: u64 = 0;
        loop {
            if self.version.is_none() {
                match namespaces::list_with_version(self.client.clone(), self.selector.as_ref())
                    .await
                {
                    Ok((listed, version)) => {
                        self.health.api_ok();
                        let new: BTreeMap<String, Standing> = listed
                            .into_iter()
                            .map(|l| {
                                let standing = (self.classify)(&l);
                                (l.name, standing)
                            })
                            .collect();
                        if synced.is_none() {
                            let changes = diff(&self.cache, &new);
                            tracing::info!(
                                namespaces = new.len(),
                                changed = changes.len(),
                                "listed the namespaces again"
                            );
                            for seen in changes {
                                let _ = out.send(seen);
                            }
                        }
                        self.cache = new;
                        self.version = Some(version);
                        if let Some(tx) = synced.take() {
                            let _ = tx.send(());
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        self.failed(
                            &format!("cannot list namespaces: {}", describe(&e)),
                            failures,
                        )
                        .await;
                        continue;
                    }
                }
            }
            let version = self.version.clone().unwrap_or_default();
            if watches > 0 && failures > 0 {
                self.metrics.watch_restarted();
            }
            watches += 1;
            match self.watch_once(&version, &out).await {
                End::Closed => failures = 0,
                End::Gone => {
                    tracing::info!(resource_version = %version, "the namespace watch's resourceVersion is too old (410 Gone): listing again");
                    self.version = None;
                    // A relist counts as a restart.
                    failures = failures.max(1);
                }
                End::Failed(why) => {
                    failures += 1;
                    self.failed(&why, failures).await;
                }
            }
        }
    }

    async fn failed(&self, why: &str, failures: u32) {
        self.health.api_failed();
        self.metrics.error(ErrorKind::ApiServer);
        let wait = backoff(failures);
        tracing::warn!(
            failures,
            "the namespace watch failed: {why}; trying again in {} ms",
            wait.as_millis()
        );
        tokio::time::sleep(wait).await;
    }

    /// One watch request from `version`, until it ends.
    async fn watch_once(&mut self, version: &str, out: &UnboundedSender<Seen>) -> End {
        let params = WatchParams {
            bookmarks: true,
            ..WatchParams::default()
        }
        .timeout(WATCH_TIMEOUT.as_secs() as u32);
        let started =
            tokio::time::timeout(START_TIMEOUT, self.api.watch_metadata(&params, version)).await;
        let stream = match started {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) if code_of(&e) == Some(410) => return End::Gone,
            Ok(Err(e)) => return End::Failed(format!("cannot watch namespaces: {}", describe(&e))),
            Err(_) => {
                return End::Failed(format!(
                    "no answer to the namespace watch within {}s",
                    START_TIMEOUT.as_secs()
                ));
            }
        };
        self.health.api_ok();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    return End::Failed(format!("the namespace watch broke: {}", describe(&e)));
                }
            };
            self.health.api_ok();
            match event {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    if let Some(v) = o.metadata.resource_version.clone() {
                        self.version = Some(v);
                    }
                    if let Some(listed) = Listed::from_meta(o.metadata, self.selector.as_ref()) {
                        let after = (self.classify)(&listed);
                        let before = self.cache.insert(listed.name.clone(), after);
                        if before != Some(after) {
                            let _ = out.send(Seen {
                                name: listed.name,
                                before,
                                after: Some(after),
                            });
                        }
                    }
                }
                WatchEvent::Deleted(o) => {
                    if let Some(v) = o.metadata.resource_version.clone() {
                        self.version = Some(v);
                    }
                    if let Some(name) = o.metadata.name
                        && let Some(before) = self.cache.remove(&name)
                    {
                        let _ = out.send(Seen {
                            name,
                            before: Some(before),
                            after: None,
                        });
                    }
                }
                WatchEvent::Bookmark(b) => self.version = Some(b.metadata.resource_version),
                WatchEvent::Error(status) if status.code == 410 => return End::Gone,
                WatchEvent::Error(status) => {
                    return End::Failed(format!(
                        "the namespace watch ended with an error: {} ({}, code {})",
                        status.message, status.reason, status.code
                    ));
                }
            }
        }
        End::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(target: bool) -> Standing {
        Standing {
            target,
            unselected: !target,
        }
    }

    fn map(items: &[(&str, bool)]) -> BTreeMap<String, Standing> {
        items.iter().map(|(n, t)| (n.to_string(), st(*t))).collect()
    }

    #[test]
    fn a_relist_reports_only_what_changed() {
        let old = map(&[("a", false), ("b", true), ("c", false)]);
        let new = map(&[("a", false), ("b", false), ("d", true)]);
        let changes = diff(&old, &new);
        let seen = |name: &str, before, after| Seen {
            name: name.into(),
            before,
            after,
        };
        assert_eq!(
            changes,
            [
                seen("b", Some(st(true)), Some(st(false))),
                seen("d", None, Some(st(true))),
                seen("c", Some(st(false)), None),
            ]
        );
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn backoff_grows_to_thirty_seconds() {
        assert!(backoff(1) >= FIRST_BACKOFF && backoff(1) < FIRST_BACKOFF * 2);
        assert!(backoff(3) >= FIRST_BACKOFF * 4);
        assert!(backoff(30) >= MAX_BACKOFF && backoff(30) <= MAX_BACKOFF.mul_f64(1.25));
    }
}
