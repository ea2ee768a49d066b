//! The long-running `watch` mode, run as a user runs it (a process, its HTTP port, its logs)
//! against the fake API server and the AWS front on moto: new and relabelled namespaces get the
//! Secret within seconds, --prune, the namespace watch's resume and relist (410 in both forms),
//! leader election between two processes (kill -9, SIGTERM, a stolen Lease), an API server that
//! goes away and comes back, AWS refusing, /metrics, and the quiet between refreshes.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use fake_kube::{AwsFault, ExpiredWatch, Fault};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

const LEASE: &str = "ecr-secret-refresher";
/// The private registry in moto's account: its tokens expired in 2015, so the refresher
/// refreshes at most every minute (schedule::MIN_INTERVAL), never during these tests' windows.
fn private() -> String {
    registry("us-east-1")
}

/// A running `watch` process: its pid, its HTTP port, and its stderr as it comes.
struct Watcher {
    child: tokio::process::Child,
    pid: u32,
    port: u16,
    log: Arc<Mutex<String>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(h: &Harness, args: &[&str], extra_env: &[(&str, &str)]) -> Watcher {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut argv = vec!["watch", "--listen", &listen];
    argv.extend_from_slice(args);
    let mut env = h.base_env();
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let mut child = tokio::process::Command::new(BIN)
        .args(&argv)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let pid = child.id().expect("running");
    let log = Arc::new(Mutex::new(String::new()));
    for pipe in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    Watcher {
        child,
        pid,
        port,
        log,
    }
}

impl Watcher {
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn signal(&self, which: &str) {
        let ok = std::process::Command::new("kill")
            .args([which, &self.pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {which}");
    }

    /// GET `path` on the process's port: status and body.
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
            .await
            .ok()?
            .ok()?;
        let status = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    }

    /// Waits for the process to exit: its code and how long it took.
    async fn exit(mut self, limit: Duration) -> (i32, String) {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("did not exit within {limit:?}:\n{}", self.log()))
            .unwrap();
        // Let the readers drain.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let log = self.log();
        assert_no_secrets(&log);
        (status.code().unwrap_or(-1), log)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        assert_no_secrets(&self.log());
    }
}

/// Polls `check` every 50 ms for at most `limit`; the time it took.
async fn until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

fn secret_writes(h: &Harness) -> Vec<fake_kube::Request> {
    h.kube
        .requests()
        .into_iter()
        .filter(|r| r.resource == "secrets" && !matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .collect()
}

fn writes(h: &Harness) -> Vec<String> {
    h.kube
        .requests()
        .into_iter()
        .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .map(|r| format!("{} {} {}/{}", r.verb, r.resource, r.namespace, r.name))
        .collect()
}

fn holder(h: &Harness) -> Option<String> {
    h.kube.lease("default", LEASE).and_then(|l| {
        l["spec"]["holderIdentity"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    })
}

fn token_calls(h: &Harness) -> usize {
    h.aws
        .calls()
        .iter()
        .filter(|c| c.operation == "GetAuthorizationToken")
        .count()
}

#[tokio::test]
async fn a_new_namespace_gets_the_secret_within_two_seconds_and_its_default_service_account_later()
{
    let h = Harness::new(&["team-a", "other"]).await;
    let reg = private();
    let _w = start(
        &h,
        &[
            "--namespaces",
            "team-*",
            "--registries",
            &reg,
            "--service-accounts",
            "default",
            "--no-leader-election",
        ],
        &[],
    );
    until(Duration::from_secs(20), "the first refresh", || {
        h.secret("team-a", "ecr").is_some()
    })
    .await;
    let calls = token_calls(&h);
    // The ServiceAccount controller adds `default` a moment after the namespace.
    h.kube.add_namespace("team-new", &[]);
    let created = Instant::now();
    h.kube.delete("serviceaccounts", "team-new", "default");
    let took = until(Duration::from_secs(2), "the new namespace's Secret", || {
        h.secret("team-new", "ecr").is_some()
    })
    .await;
    eprintln!("measured: new namespace to Secret in {took:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    h.kube.put(
        "serviceaccounts",
        "team-new",
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "team-new"}}),
    );
    until(
        Duration::from_secs(10),
        "the late default ServiceAccount lists the Secret",
        || {
            h.kube
                .get("serviceaccounts", "team-new", "default")
                .is_some_and(|sa| sa["imagePullSecrets"] == serde_json::json!([{"name": "ecr"}]))
        },
    )
    .await;
    eprintln!(
        "measured: ServiceAccount patched {:?} after the namespace",
        created.elapsed()
    );
    let s = h.secret("team-new", "ecr").unwrap();
    assert_eq!(
        docker_config(&s)["auths"][reg.as_str()]["password"],
        MOTO_PASSWORD
    );
    assert_eq!(token_calls(&h), calls, "the token already held was used");
    assert!(h.secret("other", "ecr").is_none());
    assert!(
        !h.kube
            .requests()
            .iter()
            .any(|r| r.resource == "secrets" && matches!(r.verb.as_str(), "list" | "watch")),
        "Secrets are never listed or watched"
    );
    let watches: Vec<_> = h
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.verb == "watch")
        .collect();
    assert!(watches.iter().all(|r| r.resource == "namespaces"
        && r.accept.contains("as=PartialObjectMetadata")
        && r.query.contains("allowWatchBookmarks=true")));
}

#[tokio::test]
async fn relabelled_to_match_gets_the_secret_and_stopping_to_match_prunes_only_with_prune() {
    for prune in [false, true] {
        let h = Harness::new(&[]).await;
        h.kube.add_namespace("a", &[("pulls", "ecr")]);
        h.kube.add_namespace("b", &[]);
        let reg = private();
        let mut args = vec![
            "--namespace-selector",
            "pulls=ecr",
            "--registries",
            &reg,
            "--no-leader-election",
        ];
        if prune {
            args.push("--prune");
        }
        let w = start(&h, &args, &[]);
        until(Duration::from_secs(20), "the first refresh", || {
            h.secret("a", "ecr").is_some()
        })
        .await;
        assert!(h.secret("b", "ecr").is_none());
        assert!(h.kube.set_namespace_labels("b", &[("pulls", "ecr")]));
        let took = until(
            Duration::from_secs(2),
            "relabelled namespace's Secret",
            || h.secret("b", "ecr").is_some(),
        )
        .await;
        eprintln!("measured: relabel to Secret in {took:?}");
        assert!(h.kube.set_namespace_labels("a", &[("pulls", "no")]));
        if prune {
            until(Duration::from_secs(2), "the Secret pruned", || {
                h.secret("a", "ecr").is_none()
            })
            .await;
            assert!(w.log().contains("pruning its Secret"), "{}", w.log());
        } else {
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert!(h.secret("a", "ecr").is_some(), "kept without --prune");
            assert!(!secret_writes(&h).iter().any(|r| r.verb == "delete"));
        }
    }
}

/// After an outage, the watch comes back from a resourceVersion that is too old: the server says
/// so with an ERROR event (the watch cache's way) or with HTTP 410 (other paths'). Either way the
/// refresher lists again and writes what changed meanwhile, and only that.
#[tokio::test]
async fn an_expired_resource_version_relists_in_both_forms() {
    for form in [ExpiredWatch::ErrorEvent, ExpiredWatch::Gone] {
        let h = Harness::new(&["team-a"]).await;
        h.kube.set_expired_watch(form);
        let reg = private();
        let w = start(
            &h,
            &[
                "--namespaces",
                "team-*",
                "--registries",
                &reg,
                "--no-leader-election",
            ],
            &[],
        );
        until(Duration::from_secs(20), "the first refresh", || {
            h.secret("team-a", "ecr").is_some()
        })
        .await;
        let lists = || {
            h.kube
                .requests()
                .iter()
                .filter(|r| r.verb == "list" && r.resource == "namespaces")
                .count()
        };
        let before = lists();
        h.kube.stop();
        h.kube.add_namespace("team-late", &[]);
        h.kube.compact();
        let writes_before = secret_writes(&h).len();
        h.kube.restart().await.unwrap();
        let writes_now = || {
            secret_writes(&h)
                .iter()
                .map(|r| format!("{} {}", r.verb, r.namespace))
                .collect::<Vec<_>>()
        };
        until(
            Duration::from_secs(15),
            "the namespace created during the outage",
            || h.secret("team-late", "ecr").is_some(),
        )
        .await;
        assert_eq!(lists(), before + 1, "{form:?}: one new listing");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let new: Vec<String> = writes_now()[writes_before..].to_vec();
        // A Secret that does not exist yet: the update's patch answers 404, then a create.
        assert_eq!(
            new,
            ["patch team-late", "create team-late"],
            "{form:?}: only the new namespace is written"
        );
        let (_, metrics) = w.get("/metrics").await.unwrap();
        let restarts = metric(&metrics, "ecr_refresher_watch_restarts_total");
        assert!(restarts >= 1.0, "{form:?}: {metrics}");
        assert!(w.log().contains("410 Gone"), "{}", w.log());
    }
}

/// A watch that ends (here the server drops it) resumes from the last resourceVersion it saw,
/// bookmarks included, without listing again.
#[tokio::test]
async fn a_watch_resumes_from_the_last_bookmark_without_listing_again() {
    let h = Harness::new(&["team-a"]).await;
    h.kube.set_bookmark_interval(Duration::from_millis(300));
    let reg = private();
    let _w = start(
        &h,
        &[
            "--namespaces",
            "team-*",
            "--registries",
            &reg,
            "--no-leader-election",
        ],
        &[],
    );
    until(Duration::from_secs(20), "the first refresh", || {
        h.secret("team-a", "ecr").is_some()
    })
    .await;
    let listed_at: u64 = h.kube.resource_version().parse().unwrap();
    // Writes elsewhere move the store's resourceVersion; only bookmarks tell the watch.
    h.kube.put("configmaps", "team-a", serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "team-a"}}));
    let moved: u64 = h.kube.resource_version().parse().unwrap();
    assert!(moved > listed_at);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lists = || {
        h.kube
            .requests()
            .iter()
            .filter(|r| r.verb == "list" && r.resource == "namespaces")
            .count()
    };
    let before = lists();
    h.kube.stop();
    h.kube.restart().await.unwrap();
    let resumed = || {
        h.kube
            .requests()
            .into_iter()
            .filter(|r| r.verb == "watch")
            .skip(1)
            .find_map(|r| {
                r.query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("resourceVersion=").map(str::to_string))
            })
    };
    until(Duration::from_secs(10), "the watch resumed", || {
        resumed().is_some()
    })
    .await;
    let from: u64 = resumed().unwrap().parse().unwrap();
    assert!(
        from >= moved,
        "resumed from {from}, the bookmark said {moved}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lists(), before, "no new listing");
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

fn labelled(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(line_start)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no {line_start} in:\n{text}"))
}

/// Two replicas: one leads and writes, the other stands by; kill -9 the leader and the other
/// takes over once the Lease expires, and refreshes.
#[tokio::test]
async fn two_replicas_one_writer_and_a_takeover_after_kill_9() {
    let h = Harness::new(&["default", "team-a", "team-b", "team-c"]).await;
    let reg = private();
    let args = ["--namespaces", "team-*", "--registries", &reg];
    let a = start(&h, &args, &[("POD_NAME", "replica-a")]);
    until(Duration::from_secs(20), "a leader", || holder(&h).is_some()).await;
    let b = start(&h, &args, &[("POD_NAME", "replica-b")]);
    assert_eq!(holder(&h).as_deref(), Some("replica-a"));
    until(Duration::from_secs(20), "the first refresh", || {
        ["team-a", "team-b", "team-c"]
            .iter()
            .all(|ns| h.secret(ns, "ecr").is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(b.log().contains("standing by"), "{}", b.log());
    // One full refresh, by one replica: in each namespace a patch (404: none yet) and a create.
    let mut each: Vec<String> = secret_writes(&h)
        .iter()
        .map(|r| format!("{} {}", r.namespace, r.verb))
        .collect();
    each.sort();
    assert_eq!(
        each,
        [
            "team-a create",
            "team-a patch",
            "team-b create",
            "team-b patch",
            "team-c create",
            "team-c patch"
        ],
        "{:?}",
        writes(&h)
    );
    let (_, standby) = b.get("/metrics").await.unwrap();
    assert_eq!(metric(&standby, "ecr_refresher_leader"), 0.0);
    let (status, _) = b.get("/readyz").await.unwrap();
    assert_eq!(status, 200, "a healthy standby is ready");
    let (_, leader) = a.get("/metrics").await.unwrap();
    assert_eq!(metric(&leader, "ecr_refresher_leader"), 1.0);

    let renewed_before = h.kube.lease("default", LEASE).unwrap()["spec"]["renewTime"].clone();
    a.signal("-KILL");
    let killed = Instant::now();
    let writes_before = secret_writes(&h).len();
    let took = until(Duration::from_secs(25), "replica-b takes the Lease", || {
        holder(&h).as_deref() == Some("replica-b")
    })
    .await;
    eprintln!(
        "measured: kill -9 of the leader to takeover: {took:?} (last renewal before the kill: {renewed_before})"
    );
    // A standby counts 15 s from when it saw the last renewal, polling every 2 s.
    assert!(took <= Duration::from_secs(15 + 2 + 2), "{took:?}");
    // The new leader's first refresh patches the three Secrets.
    until(Duration::from_secs(10), "the new leader refreshes", || {
        secret_writes(&h).len() >= writes_before + 3
    })
    .await;
    assert!(killed.elapsed() < Duration::from_secs(30));
    drop(a);
    let (_, leader) = b.get("/metrics").await.unwrap();
    assert_eq!(metric(&leader, "ecr_refresher_leader"), 1.0);
}

/// SIGTERM: the leader stops, releases the Lease, and exits well within 10 s; the standby takes
/// over at its next try instead of waiting for the Lease to expire.
#[tokio::test]
async fn sigterm_releases_the_lease_for_an_immediate_handover_and_exits_fast() {
    let h = Harness::new(&["default", "team-a"]).await;
    let reg = private();
    let args = ["--namespaces", "team-*", "--registries", &reg];
    let a = start(&h, &args, &[("POD_NAME", "replica-a")]);
    until(Duration::from_secs(20), "the first refresh", || {
        h.secret("team-a", "ecr").is_some()
    })
    .await;
    let b = start(&h, &args, &[("POD_NAME", "replica-b")]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.signal("-TERM");
    let signalled = Instant::now();
    let (code, log) = a.exit(Duration::from_secs(10)).await;
    let exited = signalled.elapsed();
    eprintln!("measured: SIGTERM to exit of the leader: {exited:?}");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("released the Lease"), "{log}");
    let took = until(
        Duration::from_secs(5),
        "replica-b takes the released Lease",
        || holder(&h).as_deref() == Some("replica-b"),
    )
    .await;
    eprintln!("measured: exit to takeover after a release: {took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    let _ = b.get("/healthz").await;
}

/// Replica "replica-a" refreshing `n` namespaces `team-NN` one at a time, each Secret create
/// taking 400 ms: a refresh long enough to lose the Lease in the middle of.
async fn slow_refresh(n: usize) -> (Harness, Watcher) {
    let names: Vec<String> = (0..n).map(|i| format!("team-{i:02}")).collect();
    let mut refs: Vec<&str> = names.iter().map(String::as_str).collect();
    refs.push("default");
    let h = Harness::new(&refs).await;
    h.kube.inject(
        Fault::delay(Duration::from_millis(400))
            .resource("secrets")
            .verb("create"),
    );
    let reg = private();
    let w = start(
        &h,
        &[
            "--namespaces",
            "team-*",
            "--registries",
            &reg,
            "--concurrency",
            "1",
        ],
        &[("POD_NAME", "replica-a")],
    );
    (h, w)
}

/// Someone takes the Lease while the leader is in the middle of a slow refresh: at its next
/// renewal the old leader finds it gone and stops writing at once, the rest of the refresh
/// included.
#[tokio::test]
async fn a_lease_stolen_mid_refresh_stops_the_old_leaders_writes() {
    // Each Secret write takes 400 ms: 40 namespaces one at a time take 16 s.
    let (h, w) = slow_refresh(40).await;
    let creates = || {
        secret_writes(&h)
            .iter()
            .filter(|r| r.verb == "create")
            .count()
    };
    until(Duration::from_secs(20), "the refresh under way", || {
        creates() >= 3
    })
    .await;
    h.kube.steal_lease("default", LEASE, "thief");
    let stolen = Instant::now();
    until(Duration::from_secs(12), "the old leader notices", || {
        w.log().contains("lost the Lease")
    })
    .await;
    let noticed = stolen.elapsed();
    let count = creates();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = creates();
    eprintln!(
        "measured: stolen Lease noticed after {noticed:?}; {count} of 40 Secrets written by then"
    );
    assert!(noticed <= Duration::from_secs(11), "{noticed:?}");
    assert!(count < 40, "the refresh was still under way");
    assert!(
        after <= count,
        "writes went on after the Lease was lost: {count} then {after}"
    );
    assert_eq!(holder(&h).as_deref(), Some("thief"));
    let (_, m) = w.get("/metrics").await.unwrap();
    assert_eq!(metric(&m, "ecr_refresher_leader"), 0.0);
}

/// The API server goes away: the watch backs off, /readyz turns false after its bound, nothing
/// crashes; when it comes back, the watch resumes and nothing is rewritten.
#[tokio::test]
async fn the_api_server_going_away_and_back() {
    let h = Harness::new(&["team-a"]).await;
    let w = start(
        &h,
        &[
            "--namespaces",
            "team-*",
            "--registries",
            "public.ecr.aws",
            "--no-leader-election",
        ],
        &[],
    );
    until(Duration::from_secs(20), "the first refresh", || {
        h.secret("team-a", "ecr").is_some()
    })
    .await;
    let mut ready = None;
    for _ in 0..100 {
        ready = w.get("/readyz").await.map(|(s, _)| s);
        if ready == Some(200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, Some(200), "{}", w.log());
    h.kube.stop();
    let down = Instant::now();
    let mut status = 200;
    while status == 200 {
        assert!(
            down.elapsed() < Duration::from_secs(45),
            "/readyz stayed 200"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        status = w.get("/readyz").await.unwrap().0;
    }
    eprintln!(
        "measured: /readyz false {:?} after the API server went away",
        down.elapsed()
    );
    assert_eq!(status, 503);
    assert_eq!(
        w.get("/healthz").await.unwrap().0,
        200,
        "alive, not crashed"
    );
    let writes_before = writes(&h);
    h.kube.restart().await.unwrap();
    let back = Instant::now();
    while w.get("/readyz").await.unwrap().0 != 200 {
        assert!(
            back.elapsed() < Duration::from_secs(35),
            "not ready again: {}",
            w.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "measured: ready again {:?} after the API server came back",
        back.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(writes(&h), writes_before, "no writes when it returns");
    let (_, m) = w.get("/metrics").await.unwrap();
    assert!(
        labelled(&m, "ecr_refresher_errors_total{kind=\"apiserver\"}") >= 1.0,
        "{m}"
    );
}

/// AWS refuses: the Secrets already written stay as they are, and the failure shows in the
/// metrics, an Event and the log.
#[tokio::test]
async fn aws_refusing_keeps_the_secrets_and_says_so() {
    let h = Harness::new(&["default", "team-a"]).await;
    let reg = private();
    let first = h
        .run(&["--namespaces", "team-a", "--registries", &reg])
        .await;
    assert_eq!(first.code, 0, "{}", first.output());
    let before = h.secret("team-a", "ecr").unwrap();
    h.aws.fail(AwsFault {
        operation: Some("GetAuthorizationToken".into()),
        service: None,
        status: 400,
        code: "AccessDeniedException".into(),
        message: "not allowed".into(),
    });
    let w = start(
        &h,
        &[
            "--namespaces",
            "team-*",
            "--registries",
            &reg,
            "--no-leader-election",
        ],
        &[],
    );
    until(Duration::from_secs(20), "the failure in the log", || {
        w.log().contains("cannot get ECR tokens")
    })
    .await;
    until(Duration::from_secs(10), "an Event", || {
        !h.kube.list("events", "default").is_empty()
    })
    .await;
    let e = &h.kube.list("events", "default")[0];
    assert_eq!(e["reason"], "TokenRefreshFailed");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("AccessDeniedException"),
        "{e}"
    );
    let (_, m) = w.get("/metrics").await.unwrap();
    assert!(
        labelled(&m, "ecr_refresher_errors_total{kind=\"aws\"}") >= 1.0,
        "{m}"
    );
    assert_eq!(w.get("/readyz").await.unwrap().0, 503, "no tokens held");
    assert_eq!(
        h.secret("team-a", "ecr").unwrap()["data"],
        before["data"],
        "kept as it was"
    );
    // Tried again with backoff (5 s, 10 s, ...), not in a loop.
    let tries_at = Instant::now();
    let tries = token_calls(&h);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let more = token_calls(&h) - tries;
    eprintln!(
        "measured: {more} token attempts in {:?} while AWS refuses",
        tries_at.elapsed()
    );
    assert!(more <= 2, "{more} attempts in 6 s");
    assert_eq!(
        secret_writes(&h).len(),
        2,
        "only the one-shot's patch and create: {:?}",
        writes(&h)
    );
}

/// /metrics after a refresh: the contract's names, the text format, no secret anywhere.
#[tokio::test]
async fn metrics_report_the_refresh_and_hold_no_secret() {
    let h = Harness::new(&["team-a", "team-b"]).await;
    let reg = private();
    let w = start(
        &h,
        &[
            "--namespaces",
            "team-*",
            "--registries",
            &format!("{reg},public.ecr.aws"),
            "--no-leader-election",
        ],
        &[],
    );
    until(Duration::from_secs(20), "the first refresh", || {
        h.secret("team-b", "ecr").is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, text) = w.get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert_no_secrets(&text);
    assert!(!text.contains(ACCESS_KEY), "{text}");
    assert_eq!(
        labelled(&text, "ecr_refresher_namespaces{outcome=\"refreshed\"}"),
        2.0,
        "{text}"
    );
    assert_eq!(
        labelled(&text, "ecr_refresher_namespaces{outcome=\"failed\"}"),
        0.0
    );
    let public = labelled(
        &text,
        "ecr_refresher_token_expiry_timestamp_seconds{registry=\"public.ecr.aws\"}",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (public - now - 12.0 * 3600.0).abs() < 120.0,
        "{public} vs {now}"
    );
    // moto's token expired in 2015, and says so.
    assert!(
        labelled(
            &text,
            &format!("ecr_refresher_token_expiry_timestamp_seconds{{registry=\"{reg}\"}}")
        ) < 1.5e9
    );
    let success = metric(&text, "ecr_refresher_last_success_timestamp_seconds");
    assert!((success - now).abs() < 60.0, "{success}");
    assert_eq!(
        metric(&text, "ecr_refresher_refresh_duration_seconds_count"),
        1.0
    );
    assert_eq!(metric(&text, "ecr_refresher_leader"), 1.0);
    for name in [
        "# TYPE ecr_refresher_errors_total counter",
        "# TYPE ecr_refresher_watch_restarts_total counter",
    ] {
        assert!(text.contains(name), "{name}: {text}");
    }
    let raw = {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", w.port))
            .await
            .unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    assert!(
        raw.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{raw}"
    );
    assert_eq!(w.get("/healthz").await.unwrap(), (200, "ok\n".to_string()));
    assert_eq!(w.get("/nope").await.unwrap().0, 404);
}

/// Between refreshes nothing calls AWS or writes; the next refresh comes `--refresh-before`
/// ahead of the token's expiry and makes one token call.
#[tokio::test]
async fn nothing_is_called_between_refreshes() {
    let h = Harness::new(&["team-a"]).await;
    // The front's ECR Public token lives 12 h: refreshing 11 h 59 min 40 s before its expiry
    // means about 20 s from now.
    let w = start(
        &h,
        &[
            "--namespaces",
            "team-*",
            "--registries",
            "public.ecr.aws",
            "--no-leader-election",
            "--refresh-before",
            "43180s",
        ],
        &[],
    );
    until(Duration::from_secs(20), "the first refresh", || {
        h.secret("team-a", "ecr").is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first_refresh = h.secret("team-a", "ecr").unwrap()["metadata"]["annotations"]
        ["ecr-secret-refresher/refreshed-at"]
        .clone();
    assert!(first_refresh.is_string());
    let calls = h.aws.calls().len();
    let requests = h.kube.requests().len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(h.aws.calls().len(), calls, "no AWS call between refreshes");
    let since: Vec<String> = h.kube.requests()[requests..]
        .iter()
        .map(|r| format!("{} {}", r.verb, r.resource))
        .collect();
    assert!(
        since.iter().all(|r| r == "watch namespaces"),
        "only the watch goes on: {since:?}"
    );
    let tokens = token_calls(&h);
    until(Duration::from_secs(20), "the second refresh", || {
        token_calls(&h) > tokens
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(token_calls(&h), tokens + 1);
    let refreshed_at =
        |s: Value| s["metadata"]["annotations"]["ecr-secret-refresher/refreshed-at"].clone();
    until(
        Duration::from_secs(5),
        "the second refresh rewrites the Secret",
        || h.secret("team-a", "ecr").map(refreshed_at) != Some(first_refresh.clone()),
    )
    .await;
    assert!(w.log().contains("next refresh in"), "{}", w.log());
}

#[tokio::test]
async fn bad_watch_flags_are_named() {
    let h = Harness::new(&[]).await;
    for (args, want) in [
        (
            &["watch", "--namespaces", "a", "--dry-run"][..],
            "--dry-run",
        ),
        (
            &["watch", "--namespaces", "a", "--refresh-before", "12h"][..],
            "--refresh-before",
        ),
        (
            &["watch", "--namespaces", "a", "--lease-name", "Bad_Name"][..],
            "--lease-name",
        ),
        (
            &["watch", "--namespaces", "a", "--lease-namespace", "a.b"][..],
            "--lease-namespace",
        ),
    ] {
        let run = h.run(args).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.output());
        assert!(run.stderr.contains(want), "{args:?}: {}", run.stderr);
    }
    assert!(h.kube.requests().is_empty());
}

/// The Lease cannot be renewed (its requests fail) while the leader is in the middle of a slow
/// refresh: the leader stops writing before the Lease could have expired for anyone else, 15 s
/// after its last renewal.
#[tokio::test]
async fn a_leader_that_cannot_renew_stops_writing_before_the_lease_expires() {
    let (h, w) = slow_refresh(60).await;
    let creates = || {
        h.kube
            .requests()
            .into_iter()
            .filter(|r| r.resource == "secrets" && r.verb == "create")
            .collect::<Vec<_>>()
    };
    until(Duration::from_secs(20), "the refresh under way", || {
        creates().len() >= 3
    })
    .await;
    h.kube.inject(Fault::status(503).resource("leases"));
    let broken = Instant::now();
    until(
        Duration::from_secs(15),
        "the leader gives up writing",
        || w.log().contains("could not renew the Lease in time"),
    )
    .await;
    eprintln!(
        "measured: renewals failing to writes stopped: {:?}",
        broken.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let last_renewal = h
        .kube
        .requests()
        .into_iter()
        .filter(|r| {
            r.resource == "leases"
                && matches!(r.verb.as_str(), "create" | "update")
                && r.status < 300
        })
        .map(|r| r.at)
        .max()
        .expect("renewed at least once");
    let written = creates();
    let last_write = written.iter().map(|r| r.at).max().unwrap();
    eprintln!(
        "measured: last Secret write {:?} after the last renewal; {} of 60 written",
        last_write.saturating_duration_since(last_renewal),
        written.len()
    );
    assert!(written.len() < 60, "the refresh was cut short");
    assert!(
        last_write < last_renewal + Duration::from_secs(15),
        "a write landed after the Lease could have expired for the others"
    );
    let (_, m) = w.get("/metrics").await.unwrap();
    assert_eq!(metric(&m, "ecr_refresher_leader"), 0.0);
}
