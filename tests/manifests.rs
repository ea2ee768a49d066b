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

// ---- The watch overlay: `ecr-secret-refresher watch` as a Deployment ----

/// The one object of `kind` (and `name`, when given) in a rendering.
fn one<'a>(objects: &'a [Value], kind: &str, name: Option<&str>) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind && name.is_none_or(|n| o["metadata"]["name"] == n))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} {name:?}, found {}",
        found.len()
    );
    found[0]
}

/// Whether `selector` (`matchLabels`) selects a pod labelled `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let wanted = selector["matchLabels"].as_object().expect("matchLabels");
    !wanted.is_empty() && wanted.iter().all(|(k, v)| &labels[k] == v)
}

/// The Deployment runs `watch` as the contract says, with the CronJob's hardening, image,
/// ServiceAccount and configuration, and without the CronJob or the initial Job.
#[test]
fn watch_overlay_runs_a_hardened_deployment_instead_of_the_jobs() {
    let objects = render("watch");
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "CronJob" || o["kind"] == "Job"),
        "the watch overlay ships neither the CronJob nor the initial Job"
    );
    let deployment = one(&objects, "Deployment", None);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let template = &deployment["spec"]["template"];
    assert!(selects(
        &deployment["spec"]["selector"],
        &template["metadata"]["labels"]
    ));
    let pod = &template["spec"];
    let c = &pod["containers"][0];
    assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
    assert_eq!(c["args"], json!(["watch"]));

    // The same pod as the CronJob's where the two should agree.
    let cluster = render("cluster");
    let cron = one(&cluster, "CronJob", None);
    let cron_pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let cron_c = &cron_pod["containers"][0];
    for field in [
        "securityContext",
        "serviceAccountName",
        "automountServiceAccountToken",
    ] {
        assert_eq!(pod[field], cron_pod[field], "pod {field}");
    }
    for field in [
        "name",
        "image",
        "imagePullPolicy",
        "securityContext",
        "resources",
    ] {
        assert_eq!(c[field], cron_c[field], "container {field}");
    }
    // The configuration: this overlay's ConfigMap (the base's plus the lease name).
    let cm = one(&objects, "ConfigMap", None);
    assert_eq!(
        c["envFrom"],
        json!([{"configMapRef": {"name": cm["metadata"]["name"]}}])
    );
    // And hardened on its own terms, whatever the CronJob says.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(pod["hostNetwork"].is_null() && pod["hostPID"].is_null());
    assert!(pod["volumes"].is_null(), "no volume beyond the token");

    // The leader's identity from the downward API; the Lease in the pod's own namespace (the
    // default when ECR_REFRESHER_LEASE_NAMESPACE is not set).
    let pod_name = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "POD_NAME")
        .expect("POD_NAME in the container's env");
    assert_eq!(
        pod_name["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert!(cm["data"]["ECR_REFRESHER_LEASE_NAMESPACE"].is_null());
    assert!(cm["data"]["ECR_REFRESHER_NO_LEADER_ELECTION"].is_null());

    // One port, `http` 8080, and the probes on it.
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "http", "{probe}");
    }
    // The refresher exits within 10 s of SIGTERM: room for that, not the 30 s default.
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    assert!(
        (11..=20).contains(&grace),
        "terminationGracePeriodSeconds {grace}"
    );

    // Replicas preferably on different nodes, never required (a one-node cluster runs both).
    let anti = &pod["affinity"]["podAntiAffinity"];
    assert!(anti["requiredDuringSchedulingIgnoredDuringExecution"].is_null());
    let term = &anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    assert!(selects(
        &term["labelSelector"],
        &template["metadata"]["labels"]
    ));

    let pdb = one(&objects, "PodDisruptionBudget", None);
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(selects(
        &pdb["spec"]["selector"],
        &template["metadata"]["labels"]
    ));

    // Only the http port may be reached.
    let policy = one(&objects, "NetworkPolicy", None);
    assert!(selects(
        &policy["spec"]["podSelector"],
        &template["metadata"]["labels"]
    ));
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{"ports": [{"port": "http", "protocol": "TCP"}]}])
    );

    // Everything namespaced lives in the ServiceAccount's namespace.
    let ns = one(&objects, "ServiceAccount", None)["metadata"]["namespace"].clone();
    for kind in [
        "Deployment",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
        "Role",
        "RoleBinding",
    ] {
        assert_eq!(
            one(&objects, kind, None)["metadata"]["namespace"],
            ns,
            "{kind}"
        );
    }
}

/// The admission policy of the watch overlay is the cluster overlay's, which
/// admission_policy.rs evaluates against the attack and against every write the binary makes.
#[test]
fn watch_overlay_installs_the_same_admission_policy() {
    let watch = render("watch");
    let cluster = render("cluster");
    for kind in [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert_eq!(one(&watch, kind, None), one(&cluster, kind, None), "{kind}");
    }
}

/// The watch overlay grants the cluster overlay's rules plus `watch` on namespaces and the one
/// Lease (get and update limited to ECR_REFRESHER_LEASE_NAME) in the install namespace, and
/// never list or watch on Secrets.
#[test]
fn watch_rbac_is_the_cluster_rbac_plus_namespace_watch_and_the_lease() {
    let objects = render("watch");
    let rules = rules_of(&objects);
    for r in &rules {
        assert!(
            !(r.resources.iter().any(|x| x == "secrets" || x == "*")
                && r.verbs
                    .iter()
                    .any(|v| v == "list" || v == "watch" || v == "*")),
            "no list or watch on Secrets anywhere: {r:?}"
        );
    }
    let mut expected = granted(&rules_of(&render("cluster")));
    for pair in [
        ("watch", "namespaces"),
        ("create", "leases"),
        ("get", "leases"),
        ("update", "leases"),
    ] {
        expected.insert((pair.0.to_string(), pair.1.to_string()));
    }
    assert_eq!(granted(&rules), expected);

    let cm = one(&objects, "ConfigMap", None);
    let lease = cm["data"]["ECR_REFRESHER_LEASE_NAME"]
        .as_str()
        .expect("the overlay names its Lease");
    let install_ns = one(&objects, "ServiceAccount", None)["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    for r in rules
        .iter()
        .filter(|r| r.resources.iter().any(|x| x == "leases"))
    {
        assert_eq!(r.api_groups, ["coordination.k8s.io"], "{r:?}");
        assert_eq!(r.namespace.as_deref(), Some(install_ns.as_str()), "{r:?}");
        if r.verbs.iter().any(|v| v == "create") {
            // create cannot be limited by name: it gets a rule of its own.
            assert_eq!(r.verbs, ["create"], "{r:?}");
        } else {
            assert_eq!(r.resource_names, [lease], "{r:?}");
        }
    }
}

/// A user's overlay on top of the watch overlay that moves it to another namespace, prefixes
/// the names and renames the Secret and the Lease: the wiring follows all of it.
#[test]
fn watch_wiring_follows_a_renamed_install() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("overlay-watch-renamed");
    std::fs::create_dir_all(&dir).unwrap();
    let up = "../".repeat(
        dir.strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap()
            .components()
            .count(),
    );
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources:\n  - {up}manifests/overlays/watch\nnamespace: infra\nnamePrefix: x-\n\
             configMapGenerator:\n  - name: ecr-secret-refresher\n    behavior: merge\n    literals:\n\
             \x20     - ECR_REFRESHER_LEASE_NAME=pull-refresher\n      - ECR_REFRESHER_SECRET_NAME=pull\n\
             transformers:\n  - {up}manifests/wiring/identity\n  - {up}manifests/wiring/lease\n"
        ),
    )
    .unwrap();
    let objects = render_dir(&dir);
    let role = one(&objects, "Role", None);
    assert_eq!(role["metadata"]["namespace"], "infra");
    assert_eq!(role["rules"][0]["resourceNames"], json!(["pull-refresher"]));
    let cluster_role = one(&objects, "ClusterRole", None);
    assert_eq!(cluster_role["rules"][0]["resourceNames"], json!(["pull"]));
    for binding in ["RoleBinding", "ClusterRoleBinding"] {
        assert_eq!(
            one(&objects, binding, None)["subjects"],
            json!([{"kind": "ServiceAccount", "name": "x-ecr-secret-refresher", "namespace": "infra"}]),
            "{binding}"
        );
    }
    let pod = &one(&objects, "Deployment", None)["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "x-ecr-secret-refresher");
}

/// Polls `done` every 50 ms for at most `limit`.
async fn wait_until(limit: std::time::Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The watch overlay's rules are enough and no more for everything the binary does under them:
/// the one-shot's paths, and a `watch` replica that takes the Lease, fills a namespace created
/// while it runs, and releases the Lease on SIGTERM. Nothing is refused, and every granted
/// (verb, resource) pair is used.
#[tokio::test(flavor = "multi_thread")]
async fn watch_overlay_grants_exactly_what_both_modes_use() {
    let objects = render("watch");
    let rules = rules_of(&objects);
    let lease = one(&objects, "ConfigMap", None)["data"]["ECR_REFRESHER_LEASE_NAME"]
        .as_str()
        .unwrap()
        .to_string();
    let install_ns = one(&objects, "ServiceAccount", None)["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    let h = Harness::new(&["team-a", "team-b", &install_ns]).await;
    h.kube.enforce_rules(rules.clone());
    exercise(&h, "team-a,team-b", true, &[]).await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = tokio::process::Command::new(BIN)
        .args(["watch", "--namespaces", "team-*", "--listen", &listen])
        .args(["--lease-name", &lease, "--lease-namespace", &install_ns])
        .env_clear()
        .envs(h.base_env())
        .env("POD_NAME", "refresher-0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let pid = child.id().unwrap().to_string();
    let limit = std::time::Duration::from_secs(30);
    wait_until(limit, "the replica holds the Lease", || {
        h.kube
            .lease(&install_ns, &lease)
            .is_some_and(|l| l["spec"]["holderIdentity"] == "refresher-0")
    })
    .await;
    h.kube.add_namespace("team-c", &[]);
    wait_until(limit, "the new namespace has its Secret", || {
        h.secret("team-c", "ecr").is_some()
    })
    .await;
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("watch exits within 10 s of SIGTERM")
        .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_secrets(&output);
    assert!(out.status.success(), "{output}");
    let released = h.kube.lease(&install_ns, &lease).unwrap();
    assert!(
        released["spec"]["holderIdentity"]
            .as_str()
            .is_none_or(str::is_empty),
        "the Lease is released on SIGTERM: {released}"
    );
    assert_used_is_granted(&h, &rules);
}

/// Every variable the watch overlay's ConfigMap sets is an environment twin of a flag of
/// `watch` (the refresh flags and its own).
#[test]
fn watch_overlay_configures_only_flags_of_watch() {
    let help = std::process::Command::new(BIN)
        .args(["watch", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success(), "watch --help");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let objects = render("watch");
    let cm = one(&objects, "ConfigMap", None);
    let keys: Vec<&String> = cm["data"].as_object().unwrap().keys().collect();
    assert!(keys.iter().any(|k| *k == "ECR_REFRESHER_LEASE_NAME"));
    for key in keys {
        assert!(
            help.contains(&format!("[env: {key}=")),
            "watch: {key} is not an environment twin of any flag of `watch`"
        );
    }
}
