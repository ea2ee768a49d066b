//! What manifests/ ships, checked against the binary. The RBAC is enough and no more: the
//! binary runs against the fake API server while it enforces the rules rendered from the
//! overlays, through every path that writes a Secret, and the (verb, resource) pairs it used
//! must be exactly the ones the rules grant. The configuration names only flags that exist.
//! The CronJob and the initial Job retry a failed run within the hour of slack the schedule
//! leaves. (The admission policy is tested in admission_policy.rs.)

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

/// The refresher's ConfigMap, not the copy that names the initial Job (labelled
/// `app.kubernetes.io/component: initial-run`); kustomize sorts the two by their hashed names.
fn refresher_config(objects: &[Value]) -> &Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap"
                && o["metadata"]["labels"]["app.kubernetes.io/component"] != "initial-run"
        })
        .expect("the refresher's ConfigMap")
}

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
    let cm = refresher_config(&objects);
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
        let cm = refresher_config(&objects);
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
    let cm = refresher_config(&objects);
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

/// What the Job controller does with a failed pod under `podFailurePolicy`: the first rule that
/// matches decides, and a failure no rule matches counts towards `backoffLimit`.
fn pod_failure_action(
    policy: &Value,
    container: &str,
    exit_code: i64,
    disrupted: bool,
) -> &'static str {
    for rule in policy["rules"].as_array().expect("podFailurePolicy rules") {
        let matches = if let Some(codes) = rule.get("onExitCodes") {
            let ours = codes["containerName"]
                .as_str()
                .is_none_or(|name| name == container);
            let listed = codes["values"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v.as_i64() == Some(exit_code));
            ours && match codes["operator"].as_str().unwrap() {
                "In" => listed,
                "NotIn" => !listed,
                other => panic!("unknown operator {other}"),
            }
        } else {
            rule["onPodConditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "DisruptionTarget" && c["status"] == "True" && disrupted)
        };
        if matches {
            return match rule["action"].as_str().unwrap() {
                "FailJob" => "FailJob",
                "Ignore" => "Ignore",
                "Count" => "Count",
                other => panic!("unexpected action {other}"),
            };
        }
    }
    "Count"
}

/// The longest gap between two runs of a `0 */N * * *` schedule, in seconds.
fn longest_gap(schedule: &str) -> i64 {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    assert_eq!(
        (fields[0], &fields[2..]),
        ("0", &["*", "*", "*"][..]),
        "{schedule}"
    );
    let every: i64 = fields[1].strip_prefix("*/").unwrap().parse().unwrap();
    let hours: Vec<i64> = (0..24).step_by(every as usize).collect();
    let gaps = hours
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain([24 - hours.last().unwrap() + hours[0]]);
    gaps.max().unwrap() * 3600
}

fn seconds(duration: &str) -> i64 {
    let (n, unit) = duration.split_at(duration.len() - 1);
    let n: i64 = n.parse().unwrap();
    match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("unexpected duration {duration}"),
    }
}

/// A failed run is retried within the hour before the Secrets of the last good run expire;
/// a configuration error (exit 2) fails at once; disruptions do not count; and the initial
/// Job behaves the same as the CronJob's.
#[test]
fn jobs_retry_within_the_slack_and_fail_fast_on_exit_2() {
    // ECR passwords live 12 hours.
    const PASSWORD_LIFETIME: i64 = 12 * 3600;
    // Kubernetes' back-off before a failed pod is replaced: 10 s, doubling, capped at 6 min.
    let backoff = |retry: u32| (10i64 << retry.min(6)).min(360);
    for overlay in OVERLAYS {
        let objects = render(overlay);
        let cron = objects.iter().find(|o| o["kind"] == "CronJob").unwrap();
        let job = objects.iter().find(|o| o["kind"] == "Job").unwrap();
        assert_eq!(cron["spec"]["schedule"], "0 */11 * * *", "{overlay}");
        let slack = PASSWORD_LIFETIME - longest_gap(cron["spec"]["schedule"].as_str().unwrap());
        assert_eq!(slack, 3600, "{overlay}");
        let cm = refresher_config(&objects);
        let run_timeout = seconds(cm["data"]["ECR_REFRESHER_TIMEOUT"].as_str().unwrap());

        let cron_spec = &cron["spec"]["jobTemplate"]["spec"];
        for (what, spec) in [("CronJob", cron_spec), ("Job", &job["spec"])] {
            let ctx = format!("{overlay} {what}");
            let pod = &spec["template"]["spec"];
            assert_eq!(
                pod["restartPolicy"], "Never",
                "{ctx}: podFailurePolicy needs it"
            );
            let container = pod["containers"][0]["name"].as_str().unwrap();
            let policy = &spec["podFailurePolicy"];
            assert_eq!(
                pod_failure_action(policy, container, 2, false),
                "FailJob",
                "{ctx}"
            );
            // Some namespaces failed (1), or nothing done during an outage (3): retried.
            for code in [1, 3] {
                assert_eq!(
                    pod_failure_action(policy, container, code, false),
                    "Count",
                    "{ctx}: exit {code}"
                );
            }
            // Killed at the pod's deadline: retried.
            assert_eq!(
                pod_failure_action(policy, container, 137, false),
                "Count",
                "{ctx}"
            );
            for code in [1, 2, 3, 137, 143] {
                assert_eq!(
                    pod_failure_action(policy, container, code, true),
                    "Ignore",
                    "{ctx}"
                );
            }

            let job_deadline = spec["activeDeadlineSeconds"].as_i64().unwrap();
            let pod_deadline = pod["activeDeadlineSeconds"].as_i64().unwrap();
            let retries = spec["backoffLimit"].as_i64().unwrap() as u32;
            assert!(
                job_deadline < slack,
                "{ctx}: retries end before the last good run's passwords expire"
            );
            assert!(
                run_timeout < pod_deadline,
                "{ctx}: the refresher stops itself before the pod is killed"
            );
            assert!(
                job_deadline >= 2 * pod_deadline,
                "{ctx}: a retry fits even after an attempt that ran to its deadline"
            );
            assert!(retries >= 3, "{ctx}: backoffLimit {retries}");
            let waited: i64 = (0..retries).map(backoff).sum();
            assert!(
                waited < job_deadline,
                "{ctx}: every retry of a fast failure starts before the deadline ({waited} s)"
            );
            assert!(
                waited > job_deadline / 2,
                "{ctx}: fast failures are retried over most of the deadline ({waited} s)"
            );
        }
        // The initial Job retries as the CronJob's runs do.
        for field in ["backoffLimit", "activeDeadlineSeconds", "podFailurePolicy"] {
            assert_eq!(cron_spec[field], job["spec"][field], "{overlay}: {field}");
        }
    }
}
