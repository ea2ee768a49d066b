//! A stateful fake Kubernetes API server for ecr-secret-refresher's tests and benchmarks.
//!
//! It speaks enough of the REST API for the refresher (namespaces, secrets, serviceaccounts,
//! events, configmaps, SelfSubjectAccessReviews, coordination.k8s.io Leases), with watches on
//! every collection served from the store's history (see `watch`), following the API
//! conventions a real API server enforces: `Status` objects with `reason` values,
//! `resourceVersion` and `metadata.uid`, 404 `NotFound`, 409 `AlreadyExists`/`Conflict`,
//! 422 `Invalid`, delete preconditions, immutable Secret `type`, JSON patch and merge patch.
//!
//! Tests drive it through [`FakeKube`]: seed objects, inject faults, read the request log.
//! Nothing here is a mock of the refresher's own calls: the refresher talks to it over HTTP
//! with its real kube client.

mod aws;
mod bench;
mod http;
mod metadata;
mod patch;
mod rbac;
mod resources;
mod server;
mod store;
mod watch;

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

/// How a watch from a resourceVersion older than the history is answered. The API server's
/// watch cache answers `ErrorEvent`; other paths (and proxies) answer `Gone`. Clients must
/// handle both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpiredWatch {
    /// HTTP 200, then one ERROR event whose object is a Status with code 410, reason
    /// `Expired`, message `too old resource version: X (Y)`.
    #[default]
    ErrorEvent,
    /// HTTP 410 Gone with that Status as the body.
    Gone,
}

/// Everything the server shares between connections.
pub(crate) struct State {
    pub(crate) store: Store,
    pub(crate) log: Vec<Request>,
    pub(crate) faults: Vec<Fault>,
    /// When set, requests are authorized against these rules (like a Role bound to the caller).
    pub(crate) rules: Option<Vec<Rule>>,
    /// Serve requests without a bearer token (kubectl sends none over plain HTTP).
    pub(crate) anonymous: bool,
    /// How a watch from a compacted resourceVersion is answered.
    pub(crate) expired_watch: ExpiredWatch,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
    pub(crate) bookmark_interval: Duration,
}

impl Default for State {
    fn default() -> Self {
        State {
            store: Store::default(),
            log: Vec::new(),
            faults: Vec::new(),
            rules: None,
            anonymous: false,
            expired_watch: ExpiredWatch::default(),
            bookmark_interval: watch::DEFAULT_BOOKMARK_INTERVAL,
        }
    }
}

/// A running fake API server. Dropping it stops accepting connections.
pub struct FakeKube {
    state: Arc<Mutex<State>>,
    addr: std::net::SocketAddr,
    listener: Mutex<Option<Listener>>,
}

/// The switches of a running listener: stop accepting, and drop every open connection.
struct Listener {
    stop: tokio::sync::oneshot::Sender<()>,
    kill: tokio::sync::watch::Sender<bool>,
}

async fn listen(
    addr: &str,
    state: Arc<Mutex<State>>,
) -> std::io::Result<(std::net::SocketAddr, Listener)> {
    let (kill, killed) = tokio::sync::watch::channel(false);
    let (addr, stop) =
        http::serve_killable(addr, move |req| server::handle(req, state.clone()), killed).await?;
    Ok((addr, Listener { stop, kill }))
}

impl FakeKube {
    /// Starts a server on a free loopback port, on the current tokio runtime.
    pub async fn start() -> std::io::Result<FakeKube> {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts a server on the given address, on the current tokio runtime.
    pub async fn start_on(addr: &str) -> std::io::Result<FakeKube> {
        let state = Arc::new(Mutex::new(State::default()));
        let (addr, listener) = listen(addr, state.clone()).await?;
        Ok(FakeKube {
            state,
            addr,
            listener: Mutex::new(Some(listener)),
        })
    }

    /// The API server goes away: it stops listening (new connections are refused) and drops
    /// every open connection, watches included, mid-stream. The state is kept for
    /// [`FakeKube::restart`]. To make it answer 503 or hang instead, inject
    /// `Fault::status(503)` or `Fault::hang()` (these apply to watches when they are opened).
    pub fn stop(&self) {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(l) = listener {
            l.kill.send_replace(true);
            let _ = l.stop.send(());
        }
    }

    /// Listens again on the same address, with the same objects and history.
    pub async fn restart(&self) -> std::io::Result<()> {
        self.stop();
        // The old accept loop drops its socket as soon as it sees the stop; retry briefly.
        let mut tries = 0;
        let listener = loop {
            match listen(&self.addr.to_string(), self.state.clone()).await {
                Ok((_, l)) => break l,
                Err(e) if tries < 50 && e.kind() == std::io::ErrorKind::AddrInUse => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        };
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(listener);
        Ok(())
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
        self.state().store.add_namespace(name, labels);
    }

    /// Replaces a namespace's labels (keeping the `kubernetes.io/metadata.name` label the
    /// server maintains), as `kubectl label` would: a MODIFIED event for watches. Returns false
    /// when there is no such namespace.
    pub fn set_namespace_labels(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        let mut st = self.state();
        let Some(mut ns) = st.store.get("namespaces", "", name).cloned() else {
            return false;
        };
        let mut map: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        map.insert("kubernetes.io/metadata.name".into(), json!(name));
        ns["metadata"]["labels"] = Value::Object(map);
        st.store.replace("namespaces", "", ns);
        true
    }

    /// How a watch from a compacted resourceVersion is answered (default: an ERROR event, as
    /// the API server's watch cache does).
    pub fn set_expired_watch(&self, answer: ExpiredWatch) {
        self.state().expired_watch = answer;
    }

    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK (default 5 s; the
    /// real API server's is about a minute). Applies to watches opened afterwards.
    pub fn set_bookmark_interval(&self, interval: Duration) {
        self.state().bookmark_interval = interval;
    }

    /// The store's current resourceVersion (the one a list would answer).
    pub fn resource_version(&self) -> String {
        self.state().store.revision()
    }

    /// Someone else takes (or renews) a Lease: `holderIdentity` becomes `holder`, `renewTime`
    /// now, `acquireTime` and `leaseTransitions` move when the holder changes, and the
    /// resourceVersion moves, so a candidate's next update with the old one gets 409 Conflict.
    /// Creates the Lease (15 s) if missing. Returns the stored Lease.
    pub fn steal_lease(&self, namespace: &str, name: &str, holder: &str) -> Value {
        let mut st = self.state();
        let now = micro_time(std::time::SystemTime::now());
        let mut lease = st
            .store
            .get("leases", namespace, name)
            .cloned()
            .unwrap_or_else(|| {
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": name, "namespace": namespace},
                       "spec": {"leaseDurationSeconds": 15, "leaseTransitions": 0}})
            });
        let spec = &mut lease["spec"];
        if spec["holderIdentity"].as_str() != Some(holder) {
            let transitions = spec["leaseTransitions"].as_i64().unwrap_or(0);
            spec["leaseTransitions"] = json!(transitions + 1);
            spec["acquireTime"] = json!(now);
        }
        spec["holderIdentity"] = json!(holder);
        spec["renewTime"] = json!(now);
        st.store.replace("leases", namespace, lease)
    }

    /// Reads a Lease, if present.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        self.get("leases", namespace, name)
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
    /// Watches from a resourceVersion before now are answered as expired (see
    /// [`FakeKube::set_expired_watch`]); watches already open go on.
    pub fn compact(&self) {
        self.state().store.compact();
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        let listener = self
            .listener
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(l) = listener {
            let _ = l.stop.send(());
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

/// A Kubernetes MicroTime (`2026-01-01T00:00:00.000000Z`), as Lease times are written.
pub fn micro_time(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}
