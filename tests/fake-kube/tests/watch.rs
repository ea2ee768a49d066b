//! Watches on the fake API server, over HTTP, as a client sees them.

mod client;

use std::time::Duration;

use client::Http;
use fake_kube::{ExpiredWatch, FakeKube, Fault, Rule};
use serde_json::Value;

const META: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

fn names(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn from_zero_lists_then_streams_every_change_as_metadata() {
    let kube = FakeKube::start().await.unwrap();
    kube.add_namespace("a", &[]);
    kube.add_namespace("b", &[("team", "x")]);
    let http = Http::new(&kube);
    let mut w = http
        .watch("/api/v1/namespaces?watch=1&resourceVersion=0", META)
        .await;
    assert_eq!(w.status, 200);
    assert_eq!(w.header("content-type"), "application/json");
    assert_eq!(w.header("transfer-encoding"), "chunked");
    let first = w.next_n(2).await;
    assert_eq!(names(&first), pairs(&[("ADDED", "a"), ("ADDED", "b")]));
    assert_eq!(first[0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(first[0]["object"]["apiVersion"], "meta.k8s.io/v1");
    assert!(first[0]["object"].get("spec").is_none(), "metadata only");
    assert_eq!(first[1]["object"]["metadata"]["labels"]["team"], "x");

    // Changes through the Rust API...
    kube.add_namespace("c", &[]);
    assert!(kube.set_namespace_labels("c", &[("team", "y")]));
    kube.terminate_namespace("c");
    kube.remove_namespace("c");
    // ...and through HTTP.
    let created = http
        .send(
            "POST",
            "/api/v1/namespaces",
            r#"{"metadata":{"name":"d"}}"#,
            "",
        )
        .await;
    assert_eq!(created.0, 201);
    assert_eq!(
        http.send("DELETE", "/api/v1/namespaces/d", "", "").await.0,
        200
    );
    let events = w.next_n(7).await;
    assert_eq!(
        names(&events),
        pairs(&[
            ("ADDED", "c"),
            ("MODIFIED", "c"),
            ("MODIFIED", "c"),
            ("DELETED", "c"),
            ("ADDED", "d"),
            ("MODIFIED", "d"),
            ("DELETED", "d"),
        ])
    );
    assert!(
        events[5]["object"]["metadata"]["deletionTimestamp"].is_string(),
        "an HTTP delete terminates first, as the namespace controller does"
    );
    assert_eq!(events[1]["object"]["metadata"]["labels"]["team"], "y");
    assert!(
        events[2]["object"]["metadata"]["deletionTimestamp"].is_string(),
        "terminating is a modification"
    );
    // Every event carries a newer resourceVersion than the one before.
    let rvs: Vec<u64> = events
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(rvs.windows(2).all(|p| p[0] < p[1]), "{rvs:?}");
    assert_eq!(
        rvs.last().unwrap().to_string(),
        kube.resource_version(),
        "a deletion carries the deletion's resourceVersion"
    );

    let logged: Vec<_> = kube
        .requests()
        .into_iter()
        .filter(|r| r.verb == "watch")
        .collect();
    assert_eq!(logged.len(), 1);
    assert_eq!(
        (logged[0].resource.as_str(), logged[0].status),
        ("namespaces", 200)
    );
    assert_eq!(logged[0].accept, META);
}

#[tokio::test]
async fn from_a_resource_version_replays_the_history_after_it() {
    let kube = FakeKube::start().await.unwrap();
    kube.add_namespace("old", &[]);
    let rv = kube.resource_version();
    kube.add_namespace("new", &[]);
    kube.remove_namespace("old");
    let http = Http::new(&kube);
    let mut w = http
        .watch(
            &format!("/api/v1/namespaces?watch=true&resourceVersion={rv}"),
            "application/json",
        )
        .await;
    assert_eq!(w.status, 200);
    let events = w.next_n(2).await;
    assert_eq!(
        names(&events),
        pairs(&[("ADDED", "new"), ("DELETED", "old")])
    );
    assert_eq!(events[0]["object"]["kind"], "Namespace", "full objects");
    assert_eq!(events[0]["object"]["spec"]["finalizers"][0], "kubernetes");
    // Nothing else was replayed: the next event is the next change.
    kube.add_namespace("later", &[]);
    assert_eq!(names(&w.next_n(1).await), pairs(&[("ADDED", "later")]));
}

#[tokio::test]
async fn a_compacted_resource_version_is_expired_as_an_error_event_or_a_410() {
    let kube = FakeKube::start().await.unwrap();
    kube.add_namespace("a", &[]);
    let rv = kube.resource_version();
    kube.add_namespace("b", &[]);
    kube.compact();
    let now = kube.resource_version();
    let http = Http::new(&kube);
    let path = format!("/api/v1/namespaces?watch=1&resourceVersion={rv}&allowWatchBookmarks=true");
    let mut w = http.watch(&path, META).await;
    assert_eq!(
        w.status, 200,
        "the watch cache answers 200 and an ERROR event"
    );
    let events = w.rest().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    let status = &events[0]["object"];
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
    assert_eq!(
        status["message"],
        format!("too old resource version: {rv} ({now})")
    );
    // The current resourceVersion is still good.
    let mut ok = http
        .watch(
            &format!("/api/v1/namespaces?watch=1&resourceVersion={now}"),
            META,
        )
        .await;
    kube.add_namespace("c", &[]);
    assert_eq!(names(&ok.next_n(1).await), pairs(&[("ADDED", "c")]));

    kube.set_expired_watch(ExpiredWatch::Gone);
    let (code, body) = http.send("GET", &path, "", META).await;
    assert_eq!(code, 410);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status["reason"].as_str(), status["code"].as_i64()),
        (Some("Expired"), Some(410))
    );
}

#[tokio::test]
async fn a_label_selector_sees_objects_leave_and_enter_as_deleted_and_added() {
    let kube = FakeKube::start().await.unwrap();
    kube.add_namespace("in", &[("team", "a")]);
    kube.add_namespace("out", &[("team", "b")]);
    let http = Http::new(&kube);
    let mut w = http
        .watch("/api/v1/namespaces?watch=1&labelSelector=team%3Da", META)
        .await;
    assert_eq!(names(&w.next_n(1).await), pairs(&[("ADDED", "in")]));
    kube.set_namespace_labels("in", &[("team", "a"), ("x", "1")]);
    kube.set_namespace_labels("in", &[("team", "b")]);
    kube.set_namespace_labels("out", &[("team", "b"), ("x", "1")]); // never matches: unseen
    kube.set_namespace_labels("out", &[("team", "a")]);
    kube.add_namespace("other", &[]); // unseen
    kube.set_namespace_labels("in", &[("team", "a")]);
    let events = w.next_n(4).await;
    assert_eq!(
        names(&events),
        pairs(&[
            ("MODIFIED", "in"),
            ("DELETED", "in"),
            ("ADDED", "out"),
            ("ADDED", "in"),
        ])
    );
    assert_eq!(
        events[1]["object"]["metadata"]["labels"]["team"], "b",
        "DELETED carries the object as it is now"
    );
    assert!(
        w.quiet_for(Duration::from_millis(300)).await,
        "no other event"
    );
}

#[tokio::test]
async fn bookmarks_come_at_the_interval_and_before_the_timeout_closes_the_stream() {
    let kube = FakeKube::start().await.unwrap();
    kube.set_bookmark_interval(Duration::from_millis(300));
    kube.add_namespace("a", &[]);
    let http = Http::new(&kube);
    let started = std::time::Instant::now();
    let mut w = http
        .watch(
            "/api/v1/namespaces?watch=1&allowWatchBookmarks=true&timeoutSeconds=2",
            META,
        )
        .await;
    let events = w.rest().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "closed after timeoutSeconds: {took:?}"
    );
    assert_eq!(names(&events[..1]), pairs(&[("ADDED", "a")]));
    let bookmarks: Vec<&Value> = events[1..].iter().collect();
    assert!(bookmarks.len() >= 4, "every 300 ms for 2 s: {events:?}");
    for b in &bookmarks {
        assert_eq!(b["type"], "BOOKMARK");
        let obj = b["object"].as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["apiVersion", "kind", "metadata"]);
        assert_eq!(obj["kind"], "PartialObjectMetadata");
        assert_eq!(
            obj["metadata"],
            serde_json::json!({"resourceVersion": kube.resource_version()})
        );
    }

    // Without allowWatchBookmarks: no bookmarks, and still closed at the timeout.
    let mut plain = http
        .watch("/api/v1/namespaces?watch=1&timeoutSeconds=1", META)
        .await;
    assert_eq!(names(&plain.rest().await), pairs(&[("ADDED", "a")]));
}

#[tokio::test]
async fn send_initial_events_ends_them_with_an_annotated_bookmark() {
    let kube = FakeKube::start().await.unwrap();
    kube.add_namespace("a", &[]);
    let http = Http::new(&kube);
    let mut w = http
        .watch(
            "/api/v1/namespaces?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=0",
            META,
        )
        .await;
    let events = w.next_n(2).await;
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[1]["type"], "BOOKMARK");
    assert_eq!(
        events[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(
        events[1]["object"]["metadata"]["resourceVersion"],
        kube.resource_version()
    );
}

#[tokio::test]
async fn rbac_treats_watch_as_its_own_verb() {
    let kube = FakeKube::start().await.unwrap();
    kube.add_namespace("a", &[]);
    let rule = |verbs: &[&str]| Rule {
        api_groups: vec![String::new()],
        resources: vec!["namespaces".into()],
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        resource_names: vec![],
        namespace: None,
    };
    kube.enforce_rules(vec![rule(&["list"])]);
    let http = Http::new(&kube);
    let (code, body) = http
        .send("GET", "/api/v1/namespaces?watch=1", "", META)
        .await;
    assert_eq!(code, 403);
    assert!(
        body.contains("cannot watch resource \\\"namespaces\\\""),
        "{body}"
    );
    assert_eq!(
        http.send("GET", "/api/v1/namespaces", "", META).await.0,
        200
    );
    kube.enforce_rules(vec![rule(&["watch"])]);
    let mut w = http.watch("/api/v1/namespaces?watch=1", META).await;
    assert_eq!(w.status, 200);
    assert_eq!(names(&w.next_n(1).await), pairs(&[("ADDED", "a")]));
}

#[tokio::test]
async fn faults_apply_to_watches() {
    let kube = FakeKube::start().await.unwrap();
    let http = Http::new(&kube);
    kube.inject(Fault::status(503).verb("watch").times(1));
    assert_eq!(
        http.send("GET", "/api/v1/namespaces?watch=1", "", META)
            .await
            .0,
        503
    );
    assert_eq!(
        http.watch("/api/v1/namespaces?watch=1", META).await.status,
        200
    );
    kube.inject(Fault::hang().verb("watch"));
    let hung = tokio::time::timeout(
        Duration::from_millis(500),
        http.send("GET", "/api/v1/namespaces?watch=1", "", META),
    )
    .await;
    assert!(hung.is_err(), "a hung watch never answers");
    kube.clear_faults();
    assert_eq!(
        http.watch("/api/v1/namespaces?watch=1", META).await.status,
        200
    );
}

#[tokio::test]
async fn stop_cuts_open_watches_and_refuses_connections_until_restart() {
    let kube = FakeKube::start().await.unwrap();
    kube.add_namespace("a", &[]);
    let http = Http::new(&kube);
    let mut w = http.watch("/api/v1/namespaces?watch=1", META).await;
    assert_eq!(names(&w.next_n(1).await), pairs(&[("ADDED", "a")]));
    let rv = kube.resource_version();
    kube.stop();
    let rest = tokio::time::timeout(Duration::from_secs(2), w.rest())
        .await
        .expect("the open watch ends when the server goes away");
    assert!(rest.is_empty(), "{rest:?}");
    let refused = tokio::net::TcpStream::connect(kube.url().trim_start_matches("http://")).await;
    assert_eq!(
        refused.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    // Changes while it is down are kept, and a watch resumes from where it was.
    kube.add_namespace("b", &[]);
    kube.restart().await.unwrap();
    let http = Http::new(&kube);
    let mut w = http
        .watch(
            &format!("/api/v1/namespaces?watch=1&resourceVersion={rv}"),
            META,
        )
        .await;
    assert_eq!(names(&w.next_n(1).await), pairs(&[("ADDED", "b")]));
}

#[tokio::test]
async fn watches_on_namespaced_resources_see_only_their_namespace() {
    let kube = FakeKube::start().await.unwrap();
    kube.add_namespace("a", &[]);
    kube.add_namespace("b", &[]);
    let http = Http::new(&kube);
    let mut w = http
        .watch(
            "/apis/coordination.k8s.io/v1/namespaces/a/leases?watch=1&fieldSelector=metadata.name%3Dleader",
            "application/json",
        )
        .await;
    assert_eq!(w.status, 200);
    kube.steal_lease("b", "leader", "someone");
    kube.steal_lease("a", "other", "someone");
    kube.steal_lease("a", "leader", "someone");
    let events = w.next_n(1).await;
    assert_eq!(names(&events), pairs(&[("ADDED", "leader")]));
    assert_eq!(events[0]["object"]["metadata"]["namespace"], "a");
    assert_eq!(events[0]["object"]["kind"], "Lease");
    assert!(w.quiet_for(Duration::from_millis(200)).await);
}
