//! The object store: objects by (resource, namespace, name), with uids and resource versions,
//! and the history of changes that watches are served from (as etcd keeps it until compacted).

use std::collections::BTreeMap;

use serde_json::{Value, json};

type Key = (String, String, String);

/// What happened to an object, as a watch event's `type` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Added,
    Modified,
    Deleted,
}

/// One change in the history. `object` is the object after the change (for a deletion, its
/// last state stamped with the deletion's resourceVersion, as the API server sends it);
/// `prev` the object before a modification, so that a watch with a label selector can tell an
/// object that stopped or started matching.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) revision: u64,
    pub(crate) change: Change,
    pub(crate) resource: String,
    pub(crate) namespace: String,
    pub(crate) object: Value,
    pub(crate) prev: Option<Value>,
}

pub(crate) struct Store {
    objects: BTreeMap<Key, Value>,
    revision: u64,
    uids: u64,
    /// Changes after `compacted`, oldest first.
    history: Vec<Event>,
    /// Revision up to which the history was dropped.
    compacted: u64,
    /// Tells open watches that the revision moved.
    changes: tokio::sync::watch::Sender<u64>,
    /// When each object present was first stored (benchmarks time namespace-to-Secret).
    born: BTreeMap<Key, std::time::Instant>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            objects: BTreeMap::new(),
            revision: 0,
            uids: 0,
            history: Vec::new(),
            compacted: 0,
            changes: tokio::sync::watch::channel(0).0,
            born: BTreeMap::new(),
        }
    }
}

impl Store {
    fn record(&mut self, change: Change, key: &Key, object: Value, prev: Option<Value>) {
        match change {
            Change::Added => {
                self.born.insert(key.clone(), std::time::Instant::now());
            }
            Change::Deleted => {
                self.born.remove(key);
            }
            Change::Modified => {}
        }
        self.history.push(Event {
            revision: self.revision,
            change,
            resource: key.0.clone(),
            namespace: key.1.clone(),
            object,
            prev,
        });
        self.changes.send_replace(self.revision);
    }

    /// A receiver that wakes when the revision moves.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The changes after revision `after`, or `Err(oldest)` when the history no longer reaches
    /// back that far.
    pub(crate) fn changes_after(&self, after: u64) -> Result<&[Event], u64> {
        if after < self.compacted {
            return Err(self.compacted);
        }
        let start = self.history.partition_point(|e| e.revision <= after);
        Ok(&self.history[start..])
    }

    /// Drops the history up to now, as etcd's compaction does.
    pub(crate) fn compact(&mut self) {
        self.compacted = self.revision;
        self.history.clear();
    }

    /// When an object present now was first stored.
    pub(crate) fn born(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Option<std::time::Instant> {
        self.born
            .get(&(
                resource.to_string(),
                namespace.to_string(),
                name.to_string(),
            ))
            .copied()
    }

    /// Names of the objects of a cluster-scoped resource (or in one namespace).
    pub(crate) fn names(&self, resource: &str, namespace: &str) -> Vec<String> {
        self.objects
            .keys()
            .filter(|(r, ns, _)| r == resource && ns == namespace)
            .map(|(_, _, n)| n.clone())
            .collect()
    }

    /// The revision the history was last compacted at.
    pub(crate) fn compacted(&self) -> u64 {
        self.compacted
    }

    pub(crate) fn revision_number(&self) -> u64 {
        self.revision
    }

    fn next_revision(&mut self) -> String {
        self.revision += 1;
        self.revision.to_string()
    }

    fn next_uid(&mut self) -> String {
        self.uids += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uids)
    }

    pub(crate) fn revision(&self) -> String {
        self.revision.to_string()
    }

    pub(crate) fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(
            resource.to_string(),
            namespace.to_string(),
            name.to_string(),
        ))
    }

    /// Objects of a resource, in one namespace or all, filtered by label requirements.
    pub(crate) fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
        selector: &[Requirement],
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((r, ns, _), _)| r == resource && namespace.is_none_or(|want| want == ns))
            .filter(|(_, obj)| selector.iter().all(|req| req.matches(obj)))
            .map(|(_, obj)| obj.clone())
            .collect()
    }

    /// Stores a new object, assigning uid, resourceVersion and creationTimestamp.
    /// Returns the stored object, or `None` when the name is taken.
    pub(crate) fn create(
        &mut self,
        resource: &str,
        namespace: &str,
        mut obj: Value,
    ) -> Option<Value> {
        let name = name_of(&obj);
        let key = (resource.to_string(), namespace.to_string(), name);
        if self.objects.contains_key(&key) {
            return None;
        }
        let uid = self.next_uid();
        let rv = self.next_revision();
        let meta = metadata_mut(&mut obj);
        meta.insert("uid".into(), json!(uid));
        meta.insert("resourceVersion".into(), json!(rv));
        meta.insert("creationTimestamp".into(), json!("2026-01-01T00:00:00Z"));
        if !namespace.is_empty() {
            meta.insert("namespace".into(), json!(namespace));
        }
        self.objects.insert(key.clone(), obj.clone());
        self.record(Change::Added, &key, obj.clone(), None);
        Some(obj)
    }

    /// Replaces an existing object, keeping its uid and creationTimestamp.
    pub(crate) fn replace(&mut self, resource: &str, namespace: &str, mut obj: Value) -> Value {
        let name = name_of(&obj);
        let key = (resource.to_string(), namespace.to_string(), name);
        let prev = self.objects.get(&key).cloned();
        let (uid, created) = match &prev {
            Some(old) => (
                old["metadata"]["uid"].clone(),
                old["metadata"]["creationTimestamp"].clone(),
            ),
            None => (json!(self.next_uid()), json!("2026-01-01T00:00:00Z")),
        };
        let rv = self.next_revision();
        let meta = metadata_mut(&mut obj);
        meta.insert("uid".into(), uid);
        meta.insert("creationTimestamp".into(), created);
        meta.insert("resourceVersion".into(), json!(rv));
        if !namespace.is_empty() {
            meta.insert("namespace".into(), json!(namespace));
        }
        self.objects.insert(key.clone(), obj.clone());
        let change = if prev.is_some() {
            Change::Modified
        } else {
            Change::Added
        };
        self.record(change, &key, obj.clone(), prev);
        obj
    }

    pub(crate) fn remove(&mut self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = (
            resource.to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        let removed = self.objects.remove(&key)?;
        let rv = self.next_revision();
        let mut last = removed.clone();
        metadata_mut(&mut last).insert("resourceVersion".into(), json!(rv));
        self.record(Change::Deleted, &key, last, None);
        Some(removed)
    }

    /// Seeds an object directly (tests), creating or replacing it.
    pub(crate) fn insert_raw(
        &mut self,
        resource: &str,
        namespace: &str,
        obj: Value,
    ) -> Option<Value> {
        obj["metadata"]["name"].as_str()?;
        Some(self.replace(resource, namespace, obj))
    }

    /// Creates a namespace with the given labels, as the API server stores one that
    /// `kubectl create namespace` made: with the `kubernetes.io/metadata.name` label the server
    /// adds, the `kubernetes` finalizer, managedFields, and the `default` ServiceAccount the
    /// service account controller adds.
    pub(crate) fn add_namespace(&mut self, name: &str, labels: &[(&str, &str)]) {
        let mut labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        let obj = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels, "managedFields": [{
                "manager": "kubectl-create", "operation": "Update", "apiVersion": "v1",
                "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:kubernetes.io/metadata.name": {}}}}
            }]},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        });
        self.replace("namespaces", "", obj);
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}});
        self.replace("serviceaccounts", name, sa);
    }

    pub(crate) fn namespace_phase(&self, name: &str) -> Option<String> {
        self.get("namespaces", "", name).map(|ns| {
            ns["status"]["phase"]
                .as_str()
                .unwrap_or("Active")
                .to_string()
        })
    }

    /// Starts deleting a namespace: a modification (phase Terminating, a deletionTimestamp),
    /// as the API server stores it while the namespace controller empties it.
    pub(crate) fn terminate_namespace(&mut self, name: &str) {
        if let Some(mut ns) = self.get("namespaces", "", name).cloned() {
            ns["status"]["phase"] = json!("Terminating");
            ns["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            self.replace("namespaces", "", ns);
        }
    }

    /// Removes a namespace and everything in it: one deletion per object, then the namespace.
    pub(crate) fn remove_namespace(&mut self, name: &str) {
        let inside: Vec<Key> = self
            .objects
            .keys()
            .filter(|(_, ns, _)| ns == name)
            .cloned()
            .collect();
        for (r, ns, n) in inside {
            self.remove(&r, &ns, &n);
        }
        self.remove("namespaces", "", name);
    }
}

pub(crate) fn name_of(obj: &Value) -> String {
    obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn metadata_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    match obj["metadata"].as_object_mut() {
        Some(m) => m,
        None => unreachable!("metadata was just made an object"),
    }
}

/// One term of an equality-based or set-based label selector.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Requirement {
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        match self {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|have| vs.iter().any(|v| v == have)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|have| vs.iter().all(|v| v != have)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        }
    }
}

/// Parses a label selector such as `team=a,env!=prod,tier in (web,api),!legacy`.
pub(crate) fn parse_selector(s: &str) -> Result<Vec<Requirement>, String> {
    let mut terms = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    let mut out = Vec::new();
    for term in terms.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
        let set = |rest: &str| -> Result<Vec<String>, String> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("unable to parse requirement: {term}"))?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        let req = if let Some(k) = term.strip_prefix('!') {
            Requirement::NotExists(k.trim().to_string())
        } else if let Some((k, v)) = term.split_once("!=") {
            Requirement::NotEquals(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = term.split_once("==") {
            Requirement::Equals(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = term.split_once('=') {
            Requirement::Equals(k.trim().into(), v.trim().into())
        } else if let Some((k, rest)) = term.split_once(" notin ") {
            Requirement::NotIn(k.trim().into(), set(rest)?)
        } else if let Some((k, rest)) = term.split_once(" in ") {
            Requirement::In(k.trim().into(), set(rest)?)
        } else if term
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            Requirement::Exists(term.to_string())
        } else {
            return Err(format!("unable to parse requirement: {term}"));
        };
        out.push(req);
    }
    Ok(out)
}
