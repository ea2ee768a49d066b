//! coordination.k8s.io/v1 Leases on the fake API server: the REST semantics leader election
//! relies on, discovery, and RBAC for the group.

mod client;

use client::Http;
use fake_kube::{FakeKube, Rule};
use serde_json::{Value, json};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn lease(holder: &str, rv: Option<&str>) -> String {
    let mut l = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "leader"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "renewTime": "2026-01-01T00:00:00.000000Z"}
    });
    if let Some(rv) = rv {
        l["metadata"]["resourceVersion"] = json!(rv);
    }
    l.to_string()
}

#[tokio::test]
async fn leases_follow_create_get_update_patch_delete_with_optimistic_concurrency() {
    let kube = FakeKube::start().await.unwrap();
    kube.add_namespace("kube-system", &[]);
    let http = Http::new(&kube);
    let named = format!("{LEASES}/leader");

    let (code, body) = http.send("GET", &named, "", "").await;
    assert_eq!(code, 404);
    assert_eq!(
        parse(&body)["message"],
        "leases.coordination.k8s.io \"leader\" not found"
    );

    let (code, body) = http.send("POST", LEASES, &lease("a", None), "").await;
    assert_eq!(code, 201, "{body}");
    let created = parse(&body);
    assert_eq!(created["apiVersion"], "coordination.k8s.io/v1");
    assert_eq!(created["metadata"]["namespace"], "kube-system");
    let rv1 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    let (code, body) = http.send("POST", LEASES, &lease("b", None), "").await;
    assert_eq!(code, 409);
    let status = parse(&body);
    assert_eq!(status["reason"], "AlreadyExists");
    assert_eq!(
        status["message"],
        "leases.coordination.k8s.io \"leader\" already exists"
    );

    let (code, body) = http.send("GET", LEASES, "", "").await;
    assert_eq!(code, 200);
    let list = parse(&body);
    assert_eq!(list["kind"], "LeaseList");
    assert_eq!(list["apiVersion"], "coordination.k8s.io/v1");
    assert_eq!(list["items"][0]["spec"]["holderIdentity"], "a");

    // Renewal with the current resourceVersion wins and moves it.
    let (code, body) = http.send("PUT", &named, &lease("a", Some(&rv1)), "").await;
    assert_eq!(code, 200, "{body}");
    let rv2 = parse(&body)["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(rv1, rv2);
    // A second candidate still holding rv1 loses.
    let (code, body) = http.send("PUT", &named, &lease("b", Some(&rv1)), "").await;
    assert_eq!(code, 409);
    let status = parse(&body);
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        "Operation cannot be fulfilled on leases.coordination.k8s.io \"leader\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // Leases refuse unconditional updates.
    let (code, body) = http.send("PUT", &named, &lease("b", None), "").await;
    assert_eq!(code, 422);
    assert!(
        parse(&body)["message"].as_str().unwrap().starts_with(
            "Lease.coordination.k8s.io \"leader\" is invalid: metadata.resourceVersion"
        ),
        "{body}"
    );
    assert_eq!(
        kube.lease("kube-system", "leader").unwrap()["spec"]["holderIdentity"],
        "a"
    );

    // Merge patch, and JSON patch with a resourceVersion test (the usual release).
    let (code, body) = http
        .send_as(
            "PATCH",
            &named,
            r#"{"spec":{"leaseDurationSeconds":30}}"#,
            "",
            "application/merge-patch+json",
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let rv3 = parse(&body)["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(parse(&body)["spec"]["leaseDurationSeconds"], 30);
    let release = |rv: &str| {
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "replace", "path": "/spec/holderIdentity", "value": null}
        ])
        .to_string()
    };
    let (code, _) = http
        .send_as(
            "PATCH",
            &named,
            &release(&rv2),
            "",
            "application/json-patch+json",
        )
        .await;
    assert_eq!(code, 422, "a failed test op refuses the patch");
    let (code, body) = http
        .send_as(
            "PATCH",
            &named,
            &release(&rv3),
            "",
            "application/json-patch+json",
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(parse(&body)["spec"]["holderIdentity"].is_null());

    // A bad duration is invalid.
    let bad = json!({"metadata": {"name": "bad"}, "spec": {"leaseDurationSeconds": 0}});
    let (code, body) = http.send("POST", LEASES, &bad.to_string(), "").await;
    assert_eq!(code, 422, "{body}");

    let (code, _) = http.send("DELETE", &named, "", "").await;
    assert_eq!(code, 200);
    assert!(kube.lease("kube-system", "leader").is_none());
    assert_eq!(http.send("DELETE", &named, "", "").await.0, 404);
}

#[tokio::test]
async fn a_stolen_lease_makes_the_old_holders_renewal_conflict() {
    let kube = FakeKube::start().await.unwrap();
    kube.add_namespace("kube-system", &[]);
    let http = Http::new(&kube);
    let (_, body) = http.send("POST", LEASES, &lease("me", None), "").await;
    let mine = parse(&body);
    let my_rv = mine["metadata"]["resourceVersion"].as_str().unwrap();

    let stolen = kube.steal_lease("kube-system", "leader", "thief");
    assert_eq!(stolen["spec"]["holderIdentity"], "thief");
    assert_eq!(stolen["spec"]["leaseTransitions"], 1);
    assert_ne!(
        stolen["metadata"]["resourceVersion"],
        mine["metadata"]["resourceVersion"]
    );
    let renew = stolen["spec"]["renewTime"].as_str().unwrap();
    assert!(
        renew.len() == 27 && renew.ends_with('Z') && renew.as_bytes()[19] == b'.',
        "MicroTime: {renew}"
    );
    assert_eq!(kube.lease("kube-system", "leader").unwrap(), stolen);

    let (code, _) = http
        .send(
            "PUT",
            &format!("{LEASES}/leader"),
            &lease("me", Some(my_rv)),
            "",
        )
        .await;
    assert_eq!(code, 409);
    // Renewing one's own lease keeps the transition count.
    let again = kube.steal_lease("kube-system", "leader", "thief");
    assert_eq!(again["spec"]["leaseTransitions"], 1);
    // Stealing a lease nobody created creates it.
    let fresh = kube.steal_lease("kube-system", "new", "x");
    assert_eq!(fresh["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(fresh["metadata"]["uid"].as_str().map(str::len), Some(36));
}

#[tokio::test]
async fn discovery_lists_the_coordination_group() {
    let kube = FakeKube::start().await.unwrap();
    let http = Http::new(&kube);
    let (code, body) = http.send("GET", "/apis", "", "").await;
    assert_eq!(code, 200);
    let groups = parse(&body);
    assert_eq!(groups["kind"], "APIGroupList");
    let coordination = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "coordination.k8s.io")
        .expect("the group is listed");
    assert_eq!(
        coordination["preferredVersion"]["groupVersion"],
        "coordination.k8s.io/v1"
    );
    let (code, body) = http
        .send("GET", "/apis/coordination.k8s.io/v1", "", "")
        .await;
    assert_eq!(code, 200);
    let list = parse(&body);
    assert_eq!(list["groupVersion"], "coordination.k8s.io/v1");
    assert_eq!(list["resources"][0]["name"], "leases");
    assert_eq!(list["resources"][0]["namespaced"], true);
    assert!(
        list["resources"][0]["verbs"]
            .as_array()
            .unwrap()
            .contains(&json!("watch"))
    );
    let (_, core) = http.send("GET", "/api/v1", "", "").await;
    assert!(
        !core.contains("\"leases\""),
        "leases are not in the core group"
    );
    assert_eq!(
        http.send("GET", "/apis/nope.example.com/v1", "", "")
            .await
            .0,
        404
    );
    assert_eq!(
        http.send("GET", "/api/v1/namespaces/x/leases", "", "")
            .await
            .0,
        404,
        "leases are not served from the core group"
    );
}

#[tokio::test]
async fn rbac_rules_for_the_coordination_group_apply() {
    let kube = FakeKube::start().await.unwrap();
    kube.add_namespace("kube-system", &[]);
    kube.steal_lease("kube-system", "leader", "x");
    let rule = |group: &str, names: &[&str]| Rule {
        api_groups: vec![group.into()],
        resources: vec!["leases".into()],
        verbs: vec!["get".into(), "update".into()],
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        namespace: Some("kube-system".into()),
    };
    let http = Http::new(&kube);
    let named = format!("{LEASES}/leader");
    kube.enforce_rules(vec![rule("", &[])]);
    let (code, body) = http.send("GET", &named, "", "").await;
    assert_eq!(code, 403, "a core-group rule does not grant leases");
    assert!(
        body.contains("in API group \\\"coordination.k8s.io\\\""),
        "{body}"
    );
    kube.enforce_rules(vec![rule("coordination.k8s.io", &["leader"])]);
    assert_eq!(http.send("GET", &named, "", "").await.0, 200);
    assert_eq!(
        http.send("GET", &format!("{LEASES}/other"), "", "").await.0,
        403
    );
    assert_eq!(
        http.send("POST", LEASES, &lease("a", None), "").await.0,
        403,
        "create is not granted"
    );
    // Discovery stays readable for everyone, as system:discovery grants it.
    assert_eq!(http.send("GET", "/apis", "", "").await.0, 200);
}
