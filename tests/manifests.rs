//! What manifests/ ships, checked against the binary. The RBAC is enough and no more: the
//! binary runs against the fake API server while it enforces the rules rendered from the
//! overlays, through every path that writes a Secret, and the (verb, resource) pairs it used
//! must be exactly the ones the rules grant. The configuration names only flags that exist.

mod common;

use std::collections::BTreeSet;

use common::*;
use fake_kube::{Fault, Rule};
use serde_json::{Value, json};

const OVERLAYS: &[&str] = &[
    "cluster",
    "namespaced",
    "irsa",
    "static-keys",
    "roles-anywhere",
];

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The rules bound to the refresher's ServiceAccount, as the fake server's authorizer takes them.
fn rules_of(objects: &[Value]) -> Vec<Rule> {
    let mut rules = Vec::new();
    for role in objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
    {
        let namespace = role["metadata"]["namespace"].as_str().map(String::from);
        let bound = objects.iter().any(|b| {
            (b["kind"] == "ClusterRoleBinding" || b["kind"] == "RoleBinding")
                && b["roleRef"]["name"] == role["metadata"]["name"]
                && b["roleRef"]["kind"] == role["kind"]
                && b["metadata"]["namespace"].as_str() == namespace.as_deref()
                && b["subjects"].as_array().unwrap().iter().any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"] == "ecr-secret-refresher"
                        && s["namespace"] == "ecr-secret-refresher"
                })
        });
        assert!(
            bound,
            "{} {:?} is not bound to the refresher's ServiceAccount",
            role["kind"], namespace
        );
        for r in role["rules"].as_array().unwrap() {
            rules.push(Rule {
                api_groups: strings(&r["apiGroups"]),
                resources: strings(&r["resources"]),
                verbs: strings(&r["verbs"]),
                resource_names: strings(&r["resourceNames"]),
                namespace: namespace.clone(),
            });
        }
    }
    rules
}

fn granted(rules: &[Rule]) -> BTreeSet<(String, String)> {
    rules
        .iter()
        .flat_map(|r| {
            r.verbs
                .iter()
                .flat_map(move |v| r.resources.iter().map(move |res| (v.clone(), res.clone())))
        })
        .collect()
}

/// Drives every path that makes a request: create, in-place patch, replace of a Secret
/// missing our annotations, recreate of a Secret of another type, the recreate strategy, a
/// failure (which records an Event) and its --force fix, and, where `listing` is granted, a
/// namespace pattern.
async fn exercise(h: &Harness, namespaces: &str, listing: bool, extra: &[&str]) {
    let first_ns = namespaces.split(',').next().unwrap();
    let with = |args: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["--namespaces".into(), namespaces.into()];
        v.extend(args.iter().map(|s| s.to_string()));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    for (i, args) in [with(&[]), with(&[]), with(&["--strategy", "recreate"])]
        .iter()
        .enumerate()
    {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = h.run(&refs).await;
        assert_eq!(run.code, 0, "run {i}: {}", run.stderr);
    }
    let mut s = h.secret(first_ns, "ecr").unwrap();
    s["metadata"].as_object_mut().unwrap().remove("annotations");
    h.kube.put("secrets", first_ns, s);
    assert_eq!(h.run(&["--namespaces", first_ns]).await.code, 0);
    let mut s = h.secret(first_ns, "ecr").unwrap();
    s["type"] = json!("Opaque");
    h.kube.put("secrets", first_ns, s);
    let run = h.run(&["--namespaces", first_ns]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    h.kube
        .put("secrets", first_ns, foreign_secret(first_ns, "ecr"));
    let run = h.run(&["--namespaces", first_ns]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        h.kube
            .list("events", first_ns)
            .iter()
            .any(|e| e["reason"] == "RefreshFailed"),
        "an Event was recorded"
    );
    let run = h.run(&["--namespaces", first_ns, "--force"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    // A failure where there is no Secret: the Event goes on the default ServiceAccount.
    h.kube.delete("secrets", first_ns, "ecr");
    h.kube.inject(
        Fault::status(500)
            .verb("create")
            .resource("secrets")
            .namespace(first_ns),
    );
    let run = h.run(&["--namespaces", first_ns]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    h.kube.clear_faults();
    assert_eq!(h.run(&["--namespaces", first_ns]).await.code, 0);
    if listing {
        let run = h.run(&["--namespaces", "team-*"]).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
}

/// Nothing was refused, and the (verb, resource) pairs used are exactly those granted.
fn assert_used_is_granted(h: &Harness, rules: &[Rule]) {
    let denied: Vec<_> = h
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.status == 403)
        .collect();
    assert!(denied.is_empty(), "the shipped rules refused {denied:?}");
    assert_eq!(
        used(h),
        granted(rules),
        "used (left) and granted (right) differ"
    );
}

fn used(h: &Harness) -> BTreeSet<(String, String)> {
    // GET /version is a non-resource URL that every client may read (system:public-info-viewer).
    h.kube
        .requests()
        .iter()
        .filter(|r| !is_connection_check(r))
        .map(|r| (r.verb.clone(), r.resource.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_role_grants_exactly_what_the_refresher_uses() {
    let rules = rules_of(&render("cluster"));
    assert!(rules.iter().all(|r| r.namespace.is_none()));
    for r in &rules {
        assert!(
            !(r.resources.iter().any(|x| x == "secrets" || x == "*")
                && r.verbs
                    .iter()
                    .any(|v| v == "list" || v == "watch" || v == "*")),
            "no list or watch on Secrets anywhere: {r:?}"
        );
    }
    let h = Harness::new(&["team-a", "team-b"]).await;
    h.kube.enforce_rules(rules.clone());
    exercise(&h, "team-a,team-b", true, &[]).await;
    assert_used_is_granted(&h, &rules);
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_name_limits_the_rules() {
    let rules = rules_of(&render("cluster"));
    let h = Harness::new(&["team-a"]).await;
    h.kube.enforce_rules(rules);
    // Another Secret of the same namespace is out of reach for everything but create.
    h.kube
        .put("secrets", "team-a", foreign_secret("team-a", "other"));
    let run = h
        .run(&[
            "--namespaces",
            "team-a",
            "--secret-name",
            "other",
            "--force",
        ])
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("Forbidden"), "{}", run.stderr);
    assert_eq!(
        h.secret("team-a", "other").unwrap()["metadata"]["labels"]["owner"],
        "someone-else"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaced_roles_work_only_where_they_are_bound() {
    let objects = render("namespaced");
    let rules = rules_of(&objects);
    let namespaces: BTreeSet<String> = rules.iter().filter_map(|r| r.namespace.clone()).collect();
    assert_eq!(
        namespaces,
        BTreeSet::from(["team-a".to_string(), "team-b".to_string()])
    );
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "ClusterRole" || o["kind"] == "ClusterRoleBinding")
    );
    // The overlay configures the same namespaces it grants.
    let cm = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    assert_eq!(cm["data"]["ECR_REFRESHER_NAMESPACES"], "team-a,team-b");

    let h = Harness::new(&["team-a", "team-b", "team-c"]).await;
    h.kube.enforce_rules(rules.clone());
    exercise(&h, "team-a,team-b", false, &[]).await;
    assert_used_is_granted(&h, &rules);
    // A namespace without a Role is refused and reported; the others are still refreshed.
    let run = h.run(&["--namespaces", "team-a,team-c"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("namespace=team-c") && l.contains("outcome=failed"))
        .unwrap();
    assert!(line.contains("Forbidden"), "{line}");
    assert!(h.secret("team-c", "ecr").is_none());
}

#[test]
fn every_configured_variable_is_a_flag_of_the_binary() {
    let help = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    for overlay in OVERLAYS {
        let objects = render(overlay);
        let cm = objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap")
            .expect("a ConfigMap");
        for key in cm["data"].as_object().unwrap().keys() {
            // AWS SDK variables are the SDK's; ours must be documented flags.
            if key.starts_with("AWS_") {
                continue;
            }
            assert!(
                help.contains(&format!("[env: {key}=")),
                "{overlay}: {key} is not an environment twin of any flag"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn service_accounts_component_grants_what_patching_uses() {
    // The cluster overlay plus the component, as a user's own overlay would combine them.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("overlay-service-accounts");
    std::fs::create_dir_all(&dir).unwrap();
    let up = "../".repeat(
        dir.strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap()
            .components()
            .count(),
    );
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {up}manifests/overlays/cluster\ncomponents:\n  - {up}manifests/components/service-accounts\n"),
    )
    .unwrap();
    let objects = render_dir(&dir);
    let cm = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    let sas = cm["data"]["ECR_REFRESHER_SERVICE_ACCOUNTS"]
        .as_str()
        .unwrap()
        .to_string();
    let rules = rules_of(&objects);
    let h = Harness::new(&["team-a", "team-b"]).await;
    h.kube.enforce_rules(rules.clone());
    exercise(&h, "team-a,team-b", true, &["--service-accounts", &sas]).await;
    assert_used_is_granted(&h, &rules);
    let sa = h.kube.get("serviceaccounts", "team-b", "default").unwrap();
    assert_eq!(sa["imagePullSecrets"], json!([{"name": "ecr"}]));
}
