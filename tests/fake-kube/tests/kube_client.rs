//! The fake's watch and Lease semantics as kube-rs, the client the refresher uses, sees them.

use std::time::Duration;

use fake_kube::FakeKube;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};

async fn client(kube: &FakeKube) -> kube::Client {
    let dir = std::env::temp_dir().join(format!("fake-kube-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = kube.write_kubeconfig(&dir).unwrap();
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn kube_rs_watch_metadata_sees_adds_relabels_and_bookmarks() {
    let kube = FakeKube::start().await.unwrap();
    kube.set_bookmark_interval(Duration::from_millis(200));
    kube.add_namespace("a", &[("team", "x")]);
    let api: Api<Namespace> = Api::all(client(&kube).await);
    let wp = WatchParams::default().labels("team=x").timeout(30);
    let mut stream = api.watch_metadata(&wp, "0").await.unwrap().boxed();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .expect("an event within 5 s")
            .expect("a well-formed event")
            .expect("the stream goes on")
    };
    match next().await {
        WatchEvent::Added(m) => assert_eq!(m.metadata.name.as_deref(), Some("a")),
        other => panic!("{other:?}"),
    }
    kube.set_namespace_labels("a", &[("team", "y")]);
    match next().await {
        WatchEvent::Deleted(m) => assert_eq!(m.metadata.name.as_deref(), Some("a")),
        other => panic!("{other:?}"),
    }
    match next().await {
        WatchEvent::Bookmark(b) => {
            assert_eq!(b.metadata.resource_version, kube.resource_version())
        }
        other => panic!("{other:?}"),
    }
    let requests = kube.requests();
    let watch = requests.iter().find(|r| r.verb == "watch").unwrap();
    assert_eq!(
        watch.accept,
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
    );

    // An expired resourceVersion reaches kube-rs as an ERROR event with the 410 Status.
    kube.compact();
    let old = WatchParams::default().timeout(5);
    let mut expired = api.watch_metadata(&old, "1").await.unwrap().boxed();
    match expired.next().await {
        Some(Ok(WatchEvent::Error(e))) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn kube_rs_replace_of_a_lease_with_a_stale_resource_version_conflicts() {
    let kube = FakeKube::start().await.unwrap();
    kube.add_namespace("kube-system", &[]);
    let leases: Api<Lease> = Api::namespaced(client(&kube).await, "kube-system");
    let mut lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "leader"},
        "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}
    }))
    .unwrap();
    lease = leases.create(&PostParams::default(), &lease).await.unwrap();
    kube.steal_lease("kube-system", "leader", "thief");
    match leases
        .replace("leader", &PostParams::default(), &lease)
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
        }
        other => panic!("{other:?}"),
    }
    let now = leases.get("leader").await.unwrap();
    assert_eq!(now.spec.unwrap().holder_identity.as_deref(), Some("thief"));
}
