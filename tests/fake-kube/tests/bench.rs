//! The benchmark control endpoints of the fake API server.

mod client;

use client::Http;
use fake_kube::FakeKube;
use serde_json::Value;

const META: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn namespaces_come_and_go_in_bulk_and_watches_see_each_one() {
    let kube = FakeKube::start().await.unwrap();
    kube.add_namespace("keep", &[]);
    let http = Http::new(&kube);
    let mut w = http
        .watch("/api/v1/namespaces?watch=1&labelSelector=bench%3Dyes", META)
        .await;
    let (code, body) = http
        .send(
            "POST",
            "/fake/namespaces?count=200&prefix=b-&labels=bench=yes,x=1",
            "",
            "",
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(parse(&body)["created"], 200);
    let added = w.next_n(200).await;
    assert!(added.iter().all(|e| e["type"] == "ADDED"));
    assert_eq!(added[199]["object"]["metadata"]["labels"]["x"], "1");
    assert!(kube.get("serviceaccounts", "b-7", "default").is_some());

    // Nobody wrote the Secret yet: all missing.
    let (_, body) = http
        .send("GET", "/fake/latency?prefix=b-&secret=s", "", "")
        .await;
    let lat = parse(&body);
    assert_eq!(
        (lat["namespaces"].as_u64(), lat["with_secret"].as_u64()),
        (Some(200), Some(0))
    );
    assert!(lat["ms"]["max"].is_null());
    let secret = |ns: &str| serde_json::json!({"metadata": {"name": "s", "namespace": ns}, "type": "Opaque", "data": {}});
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    kube.put("secrets", "b-3", secret("b-3"));
    let (_, body) = http
        .send("GET", "/fake/latency?prefix=b-&secret=s", "", "")
        .await;
    let lat = parse(&body);
    assert_eq!(lat["with_secret"], 1);
    assert!(lat["ms"]["max"].as_f64().unwrap() >= 50.0, "{lat}");
    assert_eq!(
        lat["missing"].as_array().unwrap().len(),
        10,
        "the first few"
    );

    let (code, body) = http
        .send("DELETE", "/fake/namespaces?prefix=b-", "", "")
        .await;
    assert_eq!(code, 200);
    assert_eq!(parse(&body)["deleted"], 200);
    let deleted = w.next_n(400).await;
    assert_eq!(
        deleted.iter().filter(|e| e["type"] == "DELETED").count(),
        200,
        "each one Terminating (MODIFIED), then DELETED"
    );
    assert!(kube.get("namespaces", "", "keep").is_some());
    assert!(kube.get("secrets", "b-3", "s").is_none());
    assert_eq!(
        http.send("POST", "/fake/namespaces?prefix=x", "", "")
            .await
            .0,
        400,
        "count is required"
    );
}
