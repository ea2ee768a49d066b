//! Watches, served the way the API server's watch cache serves them: a 200 whose chunked body
//! is one JSON watch event per line, `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":…}`.
//!
//! - From "now" (`resourceVersion` unset or `0`): a synthetic ADDED per matching object, then
//!   every change. From a specific resourceVersion: every change after it, out of the store's
//!   history; one older than the history is `Expired` (the caller answers it).
//! - A label selector sees an object that stops matching as DELETED and one that starts
//!   matching as ADDED.
//! - `allowWatchBookmarks`: a BOOKMARK (kind, apiVersion, metadata.resourceVersion only) every
//!   bookmark interval and just before `timeoutSeconds` closes the stream; with
//!   `sendInitialEvents=true`, one carrying the `k8s.io/initial-events-end` annotation after
//!   the initial ADDED events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use crate::State;
use crate::http::{ChannelBody, Response};
use crate::resources::Resource;
use crate::store::{Change, Event, Requirement, name_of};

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// The current state as ADDED events, then the changes.
    Now,
    /// The changes after this resourceVersion.
    After(u64),
}

/// A watch request, parsed.
#[derive(Debug, Clone)]
pub(crate) struct Watch {
    pub(crate) resource: &'static Resource,
    /// `None` watches every namespace (or a cluster-scoped resource).
    pub(crate) namespace: Option<String>,
    pub(crate) selector: Vec<Requirement>,
    /// `fieldSelector=metadata.name=…`.
    pub(crate) name: Option<String>,
    pub(crate) metadata_only: bool,
    pub(crate) start: Start,
    /// `sendInitialEvents=true`: end the initial events with an annotated bookmark.
    pub(crate) initial_events_end: bool,
    pub(crate) bookmarks: bool,
    pub(crate) timeout: Duration,
    pub(crate) bookmark_interval: Duration,
}

/// The requested resourceVersion is older than the history: `(requested, oldest kept)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expired(pub(crate) u64, pub(crate) u64);

impl Expired {
    /// The Status the API server answers, as an HTTP body or as an ERROR event's object.
    pub(crate) fn status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {} ({})", self.0, self.1),
            "reason": "Expired", "code": 410,
        })
    }
}

impl Watch {
    fn matches(&self, obj: &Value) -> bool {
        self.selector.iter().all(|r| r.matches(obj))
            && self.name.as_ref().is_none_or(|n| *n == name_of(obj))
    }

    fn in_scope(&self, resource: &str, namespace: &str) -> bool {
        resource == self.resource.plural && self.namespace.as_ref().is_none_or(|n| n == namespace)
    }

    /// The watch event type this change is for this watch, if it sees it at all.
    fn translate(&self, e: &Event) -> Option<&'static str> {
        if !self.in_scope(&e.resource, &e.namespace) {
            return None;
        }
        let now = self.matches(&e.object);
        match e.change {
            Change::Added => now.then_some("ADDED"),
            Change::Deleted => now.then_some("DELETED"),
            Change::Modified => {
                let before = e.prev.as_ref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }
    }

    fn object(&self, obj: &Value) -> Value {
        if self.metadata_only {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
        } else {
            obj.clone()
        }
    }

    fn bookmark(&self, revision: u64, initial_events_end: bool) -> Bytes {
        let (kind, api_version) = if self.metadata_only {
            (
                "PartialObjectMetadata".to_string(),
                "meta.k8s.io/v1".to_string(),
            )
        } else {
            (self.resource.kind.to_string(), self.resource.api_version())
        };
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            &json!({"kind": kind, "apiVersion": api_version, "metadata": metadata}),
        )
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// A 200 whose stream carries one ERROR event with the Expired Status, then ends: the API
/// server's answer to a watch from a compacted resourceVersion.
pub(crate) fn expired_stream(expired: Expired) -> Response {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(line("ERROR", &expired.status()));
    stream_response(rx)
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let mut resp = hyper::Response::new(http_body_util::BodyExt::boxed(ChannelBody(rx)));
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Opens a watch with the state locked (so nothing changes between the initial events and the
/// first change sent), and streams it from a task of its own.
pub(crate) fn open(
    st: &State,
    shared: Arc<Mutex<State>>,
    watch: Watch,
) -> Result<Response, Expired> {
    let changes = st.store.subscribe();
    let mut first = Vec::new();
    let cursor = match watch.start {
        Start::After(rv) => {
            let history = st
                .store
                .changes_after(rv)
                .map_err(|oldest| Expired(rv, oldest))?;
            for e in history {
                if let Some(kind) = watch.translate(e) {
                    first.push(line(kind, &watch.object(&e.object)));
                }
            }
            st.store.revision_number().max(rv)
        }
        Start::Now => {
            let scope = if watch.resource.namespaced {
                watch.namespace.as_deref()
            } else {
                Some("")
            };
            for obj in st.store.list(watch.resource.plural, scope, &watch.selector) {
                if watch.matches(&obj) {
                    first.push(line("ADDED", &watch.object(&obj)));
                }
            }
            let now = st.store.revision_number();
            if watch.initial_events_end && watch.bookmarks {
                first.push(watch.bookmark(now, true));
            }
            now
        }
    };
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(pump(shared, watch, cursor, changes, tx, first));
    Ok(stream_response(rx))
}

async fn pump(
    shared: Arc<Mutex<State>>,
    watch: Watch,
    mut cursor: u64,
    mut changes: tokio::sync::watch::Receiver<u64>,
    tx: mpsc::Sender<Bytes>,
    first: Vec<Bytes>,
) {
    let deadline = Instant::now() + watch.timeout;
    let mut next_bookmark = Instant::now() + watch.bookmark_interval;
    let mut pending = first;
    loop {
        for chunk in pending.drain(..) {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                let caught_up = {
                    let st = shared.lock().unwrap_or_else(|e| e.into_inner());
                    st.store.changes_after(cursor).map(|events| {
                        for e in events {
                            if let Some(kind) = watch.translate(e) {
                                pending.push(line(kind, &watch.object(&e.object)));
                            }
                        }
                        st.store.revision_number()
                    })
                };
                match caught_up {
                    Ok(now) => cursor = now,
                    Err(oldest) => {
                        // Compacted past this watch before it caught up: what etcd tells a
                        // watcher that fell behind.
                        let _ = tx.send(line("ERROR", &Expired(cursor, oldest).status())).await;
                        return;
                    }
                }
            }
            _ = sleep_until(next_bookmark), if watch.bookmarks => {
                pending.push(watch.bookmark(cursor, false));
                next_bookmark = Instant::now() + watch.bookmark_interval;
            }
            _ = sleep_until(deadline) => {
                if watch.bookmarks {
                    let _ = tx.send(watch.bookmark(cursor, false)).await;
                }
                return;
            }
            _ = tx.closed() => return,
        }
    }
}

/// How long a watch without `timeoutSeconds` stays open: the API server's
/// `--min-request-timeout` default.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// The default interval between bookmarks (the real API server's is about a minute; tests want
/// to see them sooner).
pub(crate) const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);
