//! A stateful fake Kubernetes API server for ecr-secret-refresher's tests and benchmarks.
//!
//! It speaks enough of the core/v1 REST API for the refresher (namespaces, secrets,
//! serviceaccounts, events, configmaps, SelfSubjectAccessReviews), following the API
//! conventions a real API server enforces: `Status` objects with `reason` values,
//! `resourceVersion` and `metadata.uid`, 404 `NotFound`, 409 `AlreadyExists`/`Conflict`,
//! 422 `Invalid`, delete preconditions, immutable Secret `type`, JSON patch and merge patch.
//!
//! Tests drive it through [`FakeKube`]: seed objects, inject faults, read the request log.
//! Nothing here is a mock of the refresher's own calls: the refresher talks to it over HTTP
//! with its real kube client.

mod aws;
mod http;
mod metadata;
mod rbac;
mod server;
mod store;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};

pub use aws::{AwsCall, AwsFault, AwsFront, ECR_PUBLIC_TOKEN_LIFE, ecr_public_password};
pub use metadata::{IssuedCredentials, MetadataServer};
pub use rbac::Rule;
use store::Store;

/// One request the server answered, as the request log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Kubernetes verb: get, list, create, update, patch, delete (or the method for others).
    pub verb: String,
    /// API group, empty for the core group.
    pub group: String,
    /// Plural resource name, e.g. `secrets`.
    pub resource: String,
    /// Namespace from the path, empty for cluster-scoped requests.
    pub namespace: String,
    /// Object name from the path, empty for collections.
    pub name: String,
    /// HTTP status the server answered with; 0 for a request a hang fault never answers.
    pub status: u16,
    /// Content type of a PATCH, empty otherwise.
    pub patch_type: String,
    /// The query string, undecoded (e.g. `limit=500&continue=…`).
    pub query: String,
    /// The `Accept` header (e.g. `application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`).
    pub accept: String,
    /// The `kind` of the body the server answered with (e.g. `PartialObjectMetadataList`).
    pub answered_kind: String,
    /// When the server answered (when it arrived, for a hung request).
    pub at: std::time::Instant,
}

/// A fault to inject: requests that match answer `status` instead of being served.
#[derive(Debug, Clone)]
pub struct Fault {
    pub verb: Option<String>,
    pub resource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub status: u16,
    pub reason: String,
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
    /// How many matching requests fail; `None` fails them all.
    pub times: Option<usize>,
    /// Wait this long before answering (the request is still served unless `status` is 0).
    pub delay: Option<Duration>,
    /// Let this many matching requests through before the fault starts firing.
    pub skip: usize,
    /// Remove this namespace (and everything in it) when the fault fires, before serving.
    pub remove_namespace: Option<String>,
    /// Store this object `(resource, namespace, object)` when the fault fires, before serving:
    /// someone else's write landing just ahead of the request.
    pub put: Option<(String, String, Value)>,
    /// Read the request, log it (with status 0), and never answer: a hung API server.
    pub hang: bool,
}

impl Fault {
    /// A fault that answers every matching request with `status` and the conventional reason.
    pub fn status(status: u16) -> Self {
        Fault {
            verb: None,
            resource: None,
            namespace: None,
            name: None,
            status,
            reason: server::reason_for(status).to_string(),
            message: format!("injected fault {status}"),
            retry_after: None,
            times: None,
            skip: 0,
            delay: None,
            remove_namespace: None,
            put: None,
            hang: false,
        }
    }

    /// A fault that reads matching requests and never answers them. They are logged on arrival
    /// with status 0; the connection stays open until the client gives up.
    pub fn hang() -> Self {
        Fault {
            status: 0,
            hang: true,
            ..Fault::status(0)
        }
    }

    /// A fault that writes `obj` just before the matching request is served.
    pub fn put_before(resource: &str, namespace: &str, obj: Value) -> Self {
        Fault {
            status: 0,
            put: Some((resource.to_string(), namespace.to_string(), obj)),
            ..Fault::status(0)
        }
    }

    /// A fault that deletes a namespace just before the matching request is served.
    pub fn remove_namespace(namespace: &str) -> Self {
        Fault {
            status: 0,
            remove_namespace: Some(namespace.to_string()),
            ..Fault::status(0)
        }
    }
    /// A fault that only delays matching requests, then serves them normally.
    pub fn delay(delay: Duration) -> Self {
        Fault {
            status: 0,
            delay: Some(delay),
            ..Fault::status(0)
        }
    }
    pub fn verb(mut self, verb: &str) -> Self {
        self.verb = Some(verb.to_string());
        self
    }
    pub fn resource(mut self, resource: &str) -> Self {
        self.resource = Some(resource.to_string());
        self
    }
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_string());
        self
    }
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
    pub fn times(mut self, times: usize) -> Self {
        self.times = Some(times);
        self
    }
    /// Lets the first `n` matching requests through untouched.
    pub fn skip(mut self, n: usize) -> Self {
        self.skip = n;
        self
    }
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    fn matches(&self, req: &Request) -> bool {
        fn ok(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|w| w == have)
        }
        ok(&self.verb, &req.verb)
            && ok(&self.resource, &req.resource)
            && ok(&self.namespace, &req.namespace)
            && ok(&self.name, &req.name)
    }
}

/// Everything the server shares between connections.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) store: Store,
    pub(crate) log: Vec<Request>,
    pub(crate) faults: Vec<Fault>,
    /// When set, requests are authorized against these rules (like a Role bound to the caller).
    pub(crate) rules: Option<Vec<Rule>>,
    /// Serve requests without a bearer token (kubectl sends none over plain HTTP).
    pub(crate) anonymous: bool,
    /// Continue tokens issued at or before this revision have expired.
    pub(crate) compacted: u64,
}

/// A running fake API server. Dropping it stops accepting connections.
pub struct FakeKube {
    state: Arc<Mutex<State>>,
    addr: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeKube {
    /// Starts a server on a free loopback port, on the current tokio runtime.
    pub async fn start() -> std::io::Result<FakeKube> {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts a server on the given address, on the current tokio runtime.
    pub async fn start_on(addr: &str) -> std::io::Result<FakeKube> {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let (addr, tx) = http::serve(addr, move |req| server::handle(req, shared.clone())).await?;
        Ok(FakeKube {
            state,
            addr,
            shutdown: Some(tx),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock only happens in a failing test; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a kubeconfig pointing at this server into `dir` and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, kubeconfig(&self.url(), "default"))?;
        Ok(path)
    }

    /// Creates a namespace with the given labels, as the API server stores one that
    /// `kubectl create namespace` made: with the `kubernetes.io/metadata.name` label the server
    /// adds, the `kubernetes` finalizer, and managedFields.
    pub fn add_namespace(&self, name: &str, labels: &[(&str, &str)]) {
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
        let mut st = self.state();
        st.store
            .insert_raw("namespaces", "", obj)
            .expect("seeding a namespace");
        // The service account controller gives every namespace a `default` ServiceAccount.
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}});
        st.store
            .insert_raw("serviceaccounts", name, sa)
            .expect("seeding a ServiceAccount");
    }

    /// Removes one object, as if someone deleted it.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.state().store.remove(resource, namespace, name)
    }

    /// Marks a namespace as being deleted: it stays readable but refuses new objects.
    pub fn terminate_namespace(&self, name: &str) {
        self.state().store.terminate_namespace(name);
    }

    /// Removes a namespace and everything in it at once.
    pub fn remove_namespace(&self, name: &str) {
        self.state().store.remove_namespace(name);
    }

    /// Stores an object as-is (metadata.uid and resourceVersion are filled in).
    pub fn put(&self, resource: &str, namespace: &str, obj: Value) {
        self.state()
            .store
            .insert_raw(resource, namespace, obj)
            .expect("seeding an object");
    }

    /// Reads an object, if present.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.state().store.get(resource, namespace, name).cloned()
    }

    /// All objects of a resource in a namespace.
    pub fn list(&self, resource: &str, namespace: &str) -> Vec<Value> {
        self.state().store.list(resource, Some(namespace), &[])
    }

    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Authorizes every later request against `rules`, answering 403 otherwise.
    pub fn enforce_rules(&self, rules: Vec<Rule>) {
        self.state().rules = Some(rules);
    }

    /// Serves requests that carry no bearer token instead of answering 401.
    pub fn allow_anonymous(&self) {
        self.state().anonymous = true;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state().log.clone()
    }

    pub fn clear_requests(&self) {
        self.state().log.clear();
    }

    /// Compacts the store's history, as etcd does every few minutes: a list continue token
    /// issued before now then answers 410 Expired.
    pub fn compact(&self) {
        let mut st = self.state();
        st.compacted = st.store.revision().parse().unwrap_or(0);
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A TCP listener that accepts connections, reads whatever is sent, and never answers: an API
/// server (or anything behind a load balancer) that hangs. Dropping it stops accepting; the
/// connections already open stay silent.
pub struct SilentServer {
    addr: std::net::SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SilentServer {
    /// Starts listening on a free loopback port, on the current tokio runtime.
    pub async fn start() -> std::io::Result<SilentServer> {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let (tx, mut shutdown) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            loop {
                let mut stream = tokio::select! {
                    r = listener.accept() => match r {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    _ = &mut shutdown => return,
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        });
        Ok(SilentServer {
            addr,
            accepted,
            shutdown: Some(tx),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A kubeconfig for a plain-HTTP server with a static bearer token.
pub fn kubeconfig(url: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {url}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
    namespace: {namespace}
current-context: fake
users:
- name: fake
  user:
    token: fake-token
"
    )
}
