//! Operating at scale and through faults: namespace selection, pruning, ServiceAccount
//! patching, retries, Events, deadlines, SIGTERM, and `doctor`. Each test names the fault it
//! injects into the fake API server and asserts what is in the cluster afterwards.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use fake_kube::{Fault, Rule};
use serde_json::json;

fn verbs(h: &Harness, resource: &str) -> Vec<String> {
    h.kube
        .requests()
        .iter()
        .filter(|r| r.resource == resource)
        .map(|r| format!("{} {}", r.verb, r.namespace))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn patterns_selector_and_excludes_combine_and_terminating_is_skipped() {
    let h = Harness::new(&[]).await;
    for (ns, labels) in [
        ("team-a", vec![("pulls", "ecr")]),
        ("team-b", vec![("pulls", "ecr")]),
        ("team-c", vec![]),
        ("team-old", vec![("pulls", "ecr")]),
        ("web", vec![("pulls", "ecr")]),
    ] {
        h.kube.add_namespace(ns, &labels);
    }
    h.kube.terminate_namespace("team-old");
    let run = h
        .run(&[
            "--namespaces",
            "team-*",
            "--exclude-namespaces",
            "team-b",
            "--namespace-selector",
            "pulls=ecr",
        ])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(h.secret("team-a", "ecr").is_some());
    for ns in ["team-b", "team-c", "team-old", "web"] {
        assert!(h.secret(ns, "ecr").is_none(), "{ns} was not selected");
    }
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("namespace=team-old"))
        .expect("a line for team-old");
    assert!(
        line.contains("skipped") && line.contains("terminating"),
        "{line}"
    );
    assert_eq!(verbs(&h, "namespaces"), ["list "], "one listing");

    // Exact names need no listing at all.
    h.kube.clear_requests();
    assert_eq!(h.run(&["--namespaces", "team-a,web"]).await.code, 0);
    assert!(verbs(&h, "namespaces").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_that_disappears_between_listing_and_writing_is_skipped() {
    let h = Harness::new(&["team-a", "team-b"]).await;
    h.kube.inject(
        Fault::remove_namespace("team-b")
            .verb("patch")
            .namespace("team-b"),
    );
    let run = h.run(&["--namespaces", "team-*"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(h.secret("team-a", "ecr").is_some());
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("namespace=team-b"))
        .unwrap();
    assert!(
        line.contains("namespace was deleted during the run"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_retried_after_the_servers_retry_after() {
    let h = Harness::new(&["team-a"]).await;
    h.kube
        .inject(Fault::status(429).verb("patch").times(1).retry_after(1));
    let run = h.run(&["--namespaces", "team-a"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let patches: Vec<_> = h
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.verb == "patch")
        .collect();
    assert_eq!(
        patches.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 404]
    );
    let waited = patches[1].at - patches[0].at;
    assert!(
        waited >= Duration::from_secs(1),
        "retried after {waited:?}, before Retry-After"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conflict_on_update_reads_again_and_retries() {
    let h = Harness::new(&["team-a"]).await;
    assert_eq!(h.run(&["--namespaces", "team-a"]).await.code, 0);
    // Ours, but without annotations: the patch's test fails and a full update follows.
    let mut s = h.secret("team-a", "ecr").unwrap();
    s["metadata"].as_object_mut().unwrap().remove("annotations");
    h.kube.put("secrets", "team-a", s);
    h.kube.clear_requests();
    h.kube.inject(Fault::status(409).verb("update").times(1));
    let run = h.run(&["--namespaces", "team-a"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let seq: Vec<String> = h
        .kube
        .requests()
        .iter()
        .filter(|r| !is_connection_check(r))
        .map(|r| format!("{} {}", r.verb, r.status))
        .collect();
    assert_eq!(
        seq,
        [
            "patch 422",
            "get 200",
            "update 409",
            "get 200",
            "update 200"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forbidden_namespace_fails_alone_and_gets_an_event() {
    let h = Harness::new(&["team-a", "team-b", "team-c"]).await;
    h.kube
        .inject(Fault::status(403).resource("secrets").namespace("team-b"));
    let run = h.run(&["--namespaces", "team-a,team-b,team-c"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(h.secret("team-a", "ecr").is_some() && h.secret("team-c", "ecr").is_some());
    let events = h.kube.list("events", "team-b");
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["reason"], "RefreshFailed");
    assert_eq!(e["type"], "Warning");
    // No Secret to hang it on: the namespace's default ServiceAccount carries it.
    assert_eq!(e["involvedObject"]["kind"], "ServiceAccount");
    assert_eq!(e["involvedObject"]["name"], "default");
    assert!(e["message"].as_str().unwrap().contains("Forbidden"));
    assert_no_secrets(&e.to_string());
    assert!(h.kube.list("events", "team-a").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_goes_on_the_secret_when_there_is_one() {
    let h = Harness::new(&["team-a"]).await;
    h.kube
        .put("secrets", "team-a", foreign_secret("team-a", "ecr"));
    let run = h.run(&["--namespaces", "team-a"]).await;
    assert_eq!(run.code, 1);
    let events = h.kube.list("events", "team-a");
    assert_eq!(events[0]["involvedObject"]["kind"], "Secret");
    assert_eq!(
        events[0]["involvedObject"]["uid"],
        h.secret("team-a", "ecr").unwrap()["metadata"]["uid"]
    );
}

/// Pruning runs within each namespace's budget, as writing does: an API server that never
/// answers the read of an unselected namespace's Secret ends that namespace after
/// `--namespace-timeout`, not after three 30 s read timeouts.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_prune_ends_with_the_namespace_budget() {
    let h = Harness::new(&["team-a", "team-c"]).await;
    h.kube.inject(
        Fault::hang()
            .verb("get")
            .resource("secrets")
            .namespace("team-c"),
    );
    let started = std::time::Instant::now();
    let run = h
        .run(&[
            "--namespaces",
            "team-a",
            "--prune",
            "--namespace-timeout",
            "2s",
        ])
        .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(h.secret("team-a", "ecr").is_some());
    let failure = run
        .stderr
        .lines()
        .find(|l| l.contains("outcome=prune-failed"))
        .unwrap_or_else(|| panic!("no prune failure reported:\n{}", run.stderr));
    assert!(failure.contains("team-c"), "{failure}");
    assert!(failure.contains("--namespace-timeout"), "{failure}");
    assert!(run.stderr.contains("prune_failed=1"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_removes_only_our_secret_from_unselected_namespaces() {
    let h = Harness::new(&["team-a", "team-b", "team-c", "team-d"]).await;
    assert_eq!(
        h.run(&["--namespaces", "team-a,team-b,team-c"]).await.code,
        0
    );
    assert_eq!(
        h.run(&["--namespaces", "team-c", "--secret-name", "other"])
            .await
            .code,
        0
    );
    h.kube
        .put("secrets", "team-d", foreign_secret("team-d", "ecr"));
    let foreign = h.secret("team-d", "ecr").unwrap();

    let run = h.run(&["--namespaces", "team-a,team-b", "--prune"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(h.secret("team-a", "ecr").is_some() && h.secret("team-b", "ecr").is_some());
    assert!(h.secret("team-c", "ecr").is_none(), "pruned");
    assert!(
        h.secret("team-c", "other").is_some(),
        "another name is not ours to prune"
    );
    assert_eq!(
        h.secret("team-d", "ecr").unwrap(),
        foreign,
        "a foreign Secret is never pruned"
    );
    assert!(run.stderr.contains("outcome=pruned"), "{}", run.stderr);
    assert!(
        !h.kube
            .requests()
            .iter()
            .any(|r| r.resource == "secrets" && r.verb == "list"),
        "pruning reads by name, it never lists Secrets"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_patching_is_idempotent_and_keeps_other_entries() {
    let h = Harness::new(&["team-a", "team-b"]).await;
    h.kube.put(
        "serviceaccounts",
        "team-a",
        json!({"metadata": {"name": "default"}, "imagePullSecrets": [{"name": "keep-me"}]}),
    );
    h.kube.put(
        "serviceaccounts",
        "team-a",
        json!({"metadata": {"name": "builder"}}),
    );
    let args = [
        "--namespaces",
        "team-a,team-b",
        "--service-accounts",
        "default,builder",
    ];
    let run = h.run(&args).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sa = h.kube.get("serviceaccounts", "team-a", "default").unwrap();
    assert_eq!(
        sa["imagePullSecrets"],
        json!([{"name": "keep-me"}, {"name": "ecr"}])
    );
    let sa = h.kube.get("serviceaccounts", "team-a", "builder").unwrap();
    assert_eq!(sa["imagePullSecrets"], json!([{"name": "ecr"}]));
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("namespace=team-b"))
        .unwrap();
    assert!(line.contains("ServiceAccount builder not found"), "{line}");

    h.kube.clear_requests();
    assert_eq!(h.run(&args).await.code, 0);
    let writes: Vec<String> = verbs(&h, "serviceaccounts")
        .into_iter()
        .filter(|v| !v.starts_with("get"))
        .collect();
    assert!(
        writes.is_empty(),
        "second run wrote ServiceAccounts: {writes:?}"
    );
    let sa = h.kube.get("serviceaccounts", "team-a", "default").unwrap();
    assert_eq!(
        sa["imagePullSecrets"],
        json!([{"name": "keep-me"}, {"name": "ecr"}]),
        "no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_concurrent_service_account_edit_is_not_lost() {
    let h = Harness::new(&["team-a"]).await;
    // Someone else's edit lands between our read and our patch: the patch's resourceVersion
    // test fails, we read again, and their entry survives next to ours.
    let mut theirs = h.kube.get("serviceaccounts", "team-a", "default").unwrap();
    theirs["imagePullSecrets"] = json!([{"name": "theirs"}]);
    h.kube.inject(
        Fault::put_before("serviceaccounts", "team-a", theirs)
            .verb("patch")
            .resource("serviceaccounts")
            .times(1),
    );
    let run = h
        .run(&["--namespaces", "team-a", "--service-accounts", "default"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sa = h.kube.get("serviceaccounts", "team-a", "default").unwrap();
    assert_eq!(
        sa["imagePullSecrets"],
        json!([{"name": "theirs"}, {"name": "ecr"}])
    );
    let seq: Vec<String> = h
        .kube
        .requests()
        .iter()
        .filter(|r| r.resource == "serviceaccounts")
        .map(|r| format!("{} {}", r.verb, r.status))
        .collect();
    assert_eq!(seq, ["get 200", "patch 422", "get 200", "patch 200"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_lines_carry_namespace_registries_outcome_and_duration() {
    let h = Harness::new(&["team-a"]).await;
    let run = h
        .run(&["--namespaces", "team-a", "--log-format", "json"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ns = lines.iter().find(|l| l["namespace"] == "team-a").unwrap();
    assert_eq!(ns["registries"], registry("us-east-1"));
    assert_eq!(ns["outcome"], "created");
    assert!(ns["duration_ms"].is_u64());
    let summary = lines.last().unwrap();
    assert_eq!(summary["expires_at"], "2015-01-01T00:00:00Z");
    assert_eq!(summary["refreshed"], 1);
}

/// Seeds `n` namespaces that all hold our Secret, for the stop tests.
async fn seeded(n: usize) -> (Harness, String) {
    let names: Vec<String> = (0..n).map(|i| format!("ns-{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let h = Harness::new(&refs).await;
    let list = names.join(",");
    let run = h.run(&["--namespaces", &list, "--concurrency", "32"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    h.kube.clear_requests();
    (h, list)
}

fn every_namespace_has_its_secret(h: &Harness, list: &str) {
    for ns in list.split(',') {
        assert!(h.secret(ns, "ecr").is_some(), "{ns} lost its Secret");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_run_finishes_in_flight_namespaces_and_prints_the_summary() {
    let (h, list) = seeded(200).await;
    // Slow every Secret request so that the run is still going when the signal comes.
    h.kube
        .inject(Fault::delay(Duration::from_millis(25)).resource("secrets"));
    let child = tokio::process::Command::new(BIN)
        .args([
            "--namespaces",
            &list,
            "--strategy",
            "recreate",
            "--concurrency",
            "4",
        ])
        .env_clear()
        .envs(h.base_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap().to_string();
    // Wait until some namespaces are being recreated, then ask it to stop.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while h
        .kube
        .requests()
        .iter()
        .filter(|r| r.verb == "create")
        .count()
        < 8
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not get going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_no_secrets(&stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("termination signal received"), "{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.contains("summary:"))
        .expect("the summary is printed");
    let not_started: usize = summary
        .split("not_started=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let refreshed: usize = summary
        .split("refreshed=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(not_started > 0 && refreshed > 0, "{summary}");
    assert_eq!(refreshed + not_started, 200, "{summary}");
    every_namespace_has_its_secret(&h, &list);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_run_deadline_stops_new_namespaces() {
    let (h, list) = seeded(60).await;
    h.kube
        .inject(Fault::delay(Duration::from_millis(50)).resource("secrets"));
    let run = h
        .run(&[
            "--namespaces",
            &list,
            "--concurrency",
            "2",
            "--timeout",
            "1s",
        ])
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("--timeout reached"), "{}", run.stderr);
    assert!(run.stderr.contains("outcome=not-started"), "{}", run.stderr);
    every_namespace_has_its_secret(&h, &list);
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_on_a_working_setup_and_writes_nothing() {
    let h = Harness::new(&["team-a", "team-b"]).await;
    assert_eq!(h.run(&["--namespaces", "team-a"]).await.code, 0);
    h.kube.clear_requests();
    let run = h
        .run(&[
            "doctor",
            "--namespaces",
            "team-*",
            "--service-accounts",
            "default",
        ])
        .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let row = |name: &str| -> String {
        run.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name}:\n{}", run.stdout))
            .to_string()
    };
    for name in [
        "AWS credentials",
        "AWS identity",
        "ECR token us-east-1",
        "Kubernetes API",
        "Namespaces",
        "RBAC in team-a",
        "RBAC in team-b",
        "Secret team-b/ecr",
    ] {
        assert!(row(name).contains(" ok "), "{}", row(name));
    }
    assert!(row("Secret team-b/ecr").contains("none yet"));
    // moto's tokens expired in 2015: a Secret holding one is worth a warning, not a failure.
    let ours = row("Secret team-a/ecr");
    assert!(
        ours.contains(" warn ") && ours.contains("ours, expires 2015-01-01T00:00:00Z (expired)"),
        "{ours}"
    );
    let writes: Vec<_> = h
        .kube
        .requests()
        .into_iter()
        .filter(|r| {
            !["get", "list"].contains(&r.verb.as_str()) && r.resource != "selfsubjectaccessreviews"
        })
        .collect();
    assert!(writes.is_empty(), "doctor wrote {writes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_missing_rbac_and_how_to_fix_it() {
    let h = Harness::new(&["team-a"]).await;
    h.kube.enforce_rules(vec![Rule {
        api_groups: vec!["".into()],
        resources: vec!["secrets".into()],
        verbs: vec!["get".into(), "create".into()],
        resource_names: vec![],
        namespace: None,
    }]);
    let run = h.run(&["doctor", "--namespaces", "team-a"]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("RBAC in team-a"))
        .unwrap();
    assert!(
        line.contains("FAIL") && line.contains("patch secrets") && line.contains("create events"),
        "{line}"
    );
    assert!(run.stdout.contains("fix: grant them"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_missing_credentials_and_an_unreachable_api() {
    let h = Harness::new(&["team-a"]).await;
    let bad = h.dir.path().join("bad-kubeconfig");
    std::fs::write(&bad, fake_kube::kubeconfig("http://127.0.0.1:1", "default")).unwrap();
    let env = h.env_without_keys();
    let run = h
        .run_env(
            &[
                "doctor",
                "--namespaces",
                "team-a",
                "--kubeconfig",
                bad.to_str().unwrap(),
            ],
            env,
        )
        .await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    let creds = run
        .stdout
        .lines()
        .find(|l| l.starts_with("AWS credentials"))
        .unwrap();
    assert!(
        creds.contains("FAIL") && creds.contains("no AWS credentials found"),
        "{creds}"
    );
    let api = run
        .stdout
        .lines()
        .find(|l| l.starts_with("Kubernetes API"))
        .unwrap();
    assert!(api.contains("FAIL"), "{api}");
    assert!(
        run.stdout
            .contains("fix: check that the API server is up and reachable from here"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_does_not_wait_on_an_api_server_that_never_answers() {
    let h = Harness::new(&["team-a"]).await;
    let silent = fake_kube::SilentServer::start()
        .await
        .expect("listener starts");
    let hung = h.dir.path().join("hung-kubeconfig");
    std::fs::write(&hung, fake_kube::kubeconfig(&silent.url(), "default")).unwrap();
    let started = std::time::Instant::now();
    let run = h
        .run(&[
            "doctor",
            "--namespaces",
            "team-a",
            "--kubeconfig",
            hung.to_str().unwrap(),
        ])
        .await;
    let took = started.elapsed();
    // The connection check gives up after 5 s; the client's read timeout is 30 s.
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(silent.connections() > 0, "the server was tried");
    assert_eq!(run.code, 1, "{}", run.stdout);
    let api = run
        .stdout
        .lines()
        .find(|l| l.starts_with("Kubernetes API"))
        .unwrap_or_else(|| panic!("a Kubernetes API row: {}", run.stdout));
    assert!(
        api.contains("FAIL") && api.contains("no answer within 5s"),
        "{api}"
    );
    assert!(
        run.stdout
            .contains("fix: check that the API server is up and reachable from here"),
        "{}",
        run.stdout
    );
    // The AWS half still ran.
    assert!(run.stdout.contains("AWS credentials"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deadline_also_bounds_getting_tokens() {
    let h = Harness::new(&["team-a"]).await;
    // An AWS endpoint that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut env = h.base_env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    env.push((
        "AWS_ENDPOINT_URL".into(),
        format!("http://{}", silent.local_addr().unwrap()),
    ));
    let started = std::time::Instant::now();
    let run = h
        .run_env(&["--namespaces", "team-a", "--timeout", "1s"], env)
        .await;
    // AWS did not answer in time: nothing done, worth retrying (exit 3).
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("--timeout was reached before getting credentials and tokens was done"),
        "{}",
        run.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a hang guard, not a benchmark"
    );
    assert!(h.kube.requests().is_empty());
}

fn instance_of(h: &Harness, ns: &str, name: &str) -> Option<String> {
    h.secret(ns, name).and_then(|s| {
        s["metadata"]["labels"]["ecr-secret-refresher/instance"]
            .as_str()
            .map(String::from)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn two_installs_with_prune_leave_each_others_secrets_alone() {
    let h = Harness::new(&["team-a", "team-b", "team-c", "team-d", "other"]).await;
    let a = [
        "--namespaces",
        "team-a,team-b",
        "--prune",
        "--instance",
        "install-a",
    ];
    let b = [
        "--namespaces",
        "team-c,team-d",
        "--prune",
        "--instance",
        "install-b",
    ];
    for round in 0..2 {
        for args in [&a, &b] {
            let run = h.run(args).await;
            assert_eq!(run.code, 0, "round {round} {args:?}: {}", run.stderr);
            assert!(!run.stderr.contains("outcome=pruned"), "{}", run.stderr);
        }
    }
    for (ns, owner) in [
        ("team-a", "install-a"),
        ("team-b", "install-a"),
        ("team-c", "install-b"),
        ("team-d", "install-b"),
    ] {
        assert_eq!(instance_of(&h, ns, "ecr").as_deref(), Some(owner), "{ns}");
    }
    assert!(h.secret("other", "ecr").is_none());

    // A writes into one of B's namespaces: reported, not overwritten, so two installs that
    // overlap do not take turns rewriting the same Secret.
    let before = h.secret("team-c", "ecr").unwrap();
    let run = h
        .run(&["--namespaces", "team-a,team-c", "--instance", "install-a"])
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(h.secret("team-c", "ecr").unwrap(), before);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("namespace=team-c"))
        .unwrap();
    assert!(
        line.contains("another install")
            && line.contains("instance=install-b")
            && line.contains("--force"),
        "{line}"
    );
    let doctor = h
        .run(&[
            "doctor",
            "--namespaces",
            "team-c",
            "--instance",
            "install-a",
        ])
        .await;
    assert_eq!(doctor.code, 1, "{}", doctor.stdout);
    let row = doctor
        .stdout
        .lines()
        .find(|l| l.starts_with("Secret team-c/ecr"))
        .unwrap_or_else(|| panic!("{}", doctor.stdout));
    assert!(
        row.contains("FAIL")
            && row.contains("written by another install")
            && row.contains("instance=install-b"),
        "{row}"
    );
    // --force takes it over, and then it is A's to prune.
    let run = h
        .run(&[
            "--namespaces",
            "team-c",
            "--instance",
            "install-a",
            "--force",
        ])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        instance_of(&h, "team-c", "ecr").as_deref(),
        Some("install-a")
    );
    let run = h.run(&a).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(h.secret("team-c", "ecr").is_none(), "pruned by its writer");
    assert!(h.secret("team-d", "ecr").is_some(), "B's Secret stays");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_from_an_earlier_version_is_adopted_not_pruned() {
    let h = Harness::new(&["team-a", "team-b", "legacy"]).await;
    // What versions before the instance label wrote.
    assert_eq!(h.run(&["--namespaces", "legacy"]).await.code, 0);
    let mut old = h.secret("legacy", "ecr").unwrap();
    old["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("ecr-secret-refresher/instance");
    h.kube.put("secrets", "legacy", old);

    // Not selected: nobody may prune it, whichever instance runs.
    for (ns, instance) in [("team-a", "install-a"), ("team-b", "install-b")] {
        let run = h
            .run(&["--namespaces", ns, "--prune", "--instance", instance])
            .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(h.secret("legacy", "ecr").is_some(), "pruned by {instance}");
    }
    // Selected: its writer adopts it (patch fails its test, then a full update adds the label)...
    h.kube.clear_requests();
    let run = h
        .run(&["--namespaces", "team-a,legacy", "--instance", "install-a"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let reqs: Vec<String> = h
        .kube_requests()
        .into_iter()
        .filter(|r| r.ends_with(" legacy"))
        .collect();
    assert_eq!(
        reqs,
        [
            "patch secrets legacy",
            "get secrets legacy",
            "update secrets legacy"
        ]
    );
    assert_eq!(
        instance_of(&h, "legacy", "ecr").as_deref(),
        Some("install-a")
    );
    // ...then the steady path is one request again, and only its writer prunes it.
    h.kube.clear_requests();
    let run = h
        .run(&["--namespaces", "team-a,legacy", "--instance", "install-a"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut reqs = h.kube_requests();
    reqs.sort();
    assert_eq!(reqs, ["patch secrets legacy", "patch secrets team-a"]);
    let run = h
        .run(&[
            "--namespaces",
            "team-a",
            "--prune",
            "--instance",
            "install-b",
        ])
        .await;
    assert_eq!(run.code, 1, "B meets A's Secret in team-a: {}", run.stderr);
    assert!(h.secret("legacy", "ecr").is_some(), "not B's to prune");
    let run = h
        .run(&[
            "--namespaces",
            "team-a",
            "--prune",
            "--instance",
            "install-a",
        ])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(h.secret("legacy", "ecr").is_none(), "pruned by its writer");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_instance_is_the_kubeconfig_context_and_prune_with_names_warns() {
    let h = Harness::new(&["team-a", "team-b", "web"]).await;
    let run = h.run(&["--namespaces", "team-a", "--prune"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The harness's kubeconfig context is called `fake`.
    assert_eq!(instance_of(&h, "team-a", "ecr").as_deref(), Some("fake"));
    assert!(
        run.stderr.contains("--prune with exact names only")
            && run.stderr.contains("give each its own --instance"),
        "{}",
        run.stderr
    );
    let run = h.run(&["--namespaces", "team-*", "--prune"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.stderr.contains("--prune with exact names only"),
        "{}",
        run.stderr
    );
    let env: Vec<(String, String)> = h
        .base_env()
        .into_iter()
        .chain([("ECR_REFRESHER_INSTANCE".to_string(), "from-env".to_string())])
        .collect();
    let run = h.run_env(&["--namespaces", "web"], env).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(instance_of(&h, "web", "ecr").as_deref(), Some("from-env"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_context_is_named_with_the_ones_that_exist() {
    let h = Harness::new(&["team-a"]).await;
    let refresh = h
        .run(&["--namespaces", "team-a", "--context", "nope"])
        .await;
    assert_eq!(refresh.code, 2, "{}", refresh.stderr);
    let doctor = h
        .run(&["doctor", "--namespaces", "team-a", "--context", "nope"])
        .await;
    assert_eq!(doctor.code, 1, "{}", doctor.stdout);
    for out in [refresh.stderr, doctor.stdout] {
        assert!(
            out.contains("context 'nope' does not exist in the kubeconfig")
                && out.contains("it has: fake"),
            "{out}"
        );
        assert!(
            !out.contains("Check the path given to --kubeconfig"),
            "{out}"
        );
    }
    assert!(h.kube.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_suggests_the_overlay_that_fits_the_selection() {
    let h = Harness::new(&["team-a"]).await;
    h.kube.add_namespace("labelled", &[("pulls", "ecr")]);
    h.kube.enforce_rules(vec![Rule {
        api_groups: vec!["".into()],
        resources: vec!["namespaces".into()],
        verbs: vec!["list".into()],
        resource_names: vec![],
        namespace: None,
    }]);
    let fix = |out: &str| -> String {
        out.lines()
            .skip_while(|l| !l.starts_with("RBAC in "))
            .nth(1)
            .unwrap_or_else(|| panic!("no fix under the RBAC row:\n{out}"))
            .to_string()
    };
    let exact = h.run(&["doctor", "--namespaces", "team-a"]).await;
    let line = fix(&exact.stdout);
    assert!(
        line.contains("overlays/namespaced") && !line.contains("overlays/cluster"),
        "{line}"
    );
    for listing in [
        &["doctor", "--namespaces", "team-*"][..],
        &["doctor", "--namespace-selector", "pulls=ecr"][..],
        &["doctor", "--namespaces", "team-a", "--prune"][..],
    ] {
        let run = h.run(listing).await;
        let line = fix(&run.stdout);
        assert!(line.contains("overlays/cluster"), "{listing:?}: {line}");
        let prune_row = run.stdout.lines().find(|l| l.starts_with("Prune"));
        if listing.contains(&"--prune") {
            let prune_row = prune_row.unwrap_or_else(|| panic!("{}", run.stdout));
            assert!(
                prune_row.contains("warn") && prune_row.contains("exact names only"),
                "{prune_row}"
            );
        } else {
            assert!(prune_row.is_none(), "{}", run.stdout);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_are_listed_as_metadata_in_pages() {
    let names: Vec<String> = (0..1200).map(|i| format!("ns-{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let h = Harness::new(&refs).await;
    let lists = |h: &Harness| -> Vec<fake_kube::Request> {
        h.kube
            .requests()
            .into_iter()
            .filter(|r| r.resource == "namespaces" && r.verb == "list")
            .collect()
    };
    let run = h
        .run(&["--namespaces", "ns-*", "--concurrency", "32"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let pages = lists(&h);
    assert_eq!(pages.len(), 3, "{pages:?}");
    for (i, page) in pages.iter().enumerate() {
        assert_eq!(page.status, 200);
        assert!(
            page.accept
                .contains("as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            "{page:?}"
        );
        assert_eq!(
            page.answered_kind, "PartialObjectMetadataList",
            "metadata only"
        );
        assert!(page.query.contains("limit=500"), "{page:?}");
        assert_eq!(page.query.contains("continue="), i > 0, "{page:?}");
    }
    for ns in &names {
        assert!(h.secret(ns, "ecr").is_some(), "{ns} has no Secret");
    }
    assert!(
        run.stderr.contains("summary: 1200 refreshed"),
        "{}",
        run.stderr
    );

    // The continue token expires between pages (an etcd compaction): the list starts over.
    h.kube.clear_requests();
    h.kube.inject(
        Fault::status(410)
            .verb("list")
            .resource("namespaces")
            .skip(1)
            .times(1),
    );
    let run = h
        .run(&["--namespaces", "ns-*", "--concurrency", "32"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let statuses: Vec<u16> = lists(&h).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 410, 200, 200, 200]);
    assert!(run.stderr.contains("listing again"), "{}", run.stderr);
    assert!(
        run.stderr.contains("summary: 1200 refreshed"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_selector_in_kubernetes_syntax_selects_what_kubectl_would() {
    let h = Harness::new(&[]).await;
    for (ns, labels) in [
        ("web", vec![("tier", "web")]),
        ("api", vec![("tier", "api")]),
        ("old-api", vec![("tier", "api"), ("legacy", "true")]),
        ("db", vec![("tier", "db")]),
    ] {
        h.kube.add_namespace(ns, &labels);
    }
    // No space before the parenthesis, as kubectl accepts it.
    let run = h
        .run(&["--namespace-selector", "tier in(web,api),!legacy"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    for (ns, want) in [
        ("web", true),
        ("api", true),
        ("old-api", false),
        ("db", false),
    ] {
        assert_eq!(h.secret(ns, "ecr").is_some(), want, "{ns}");
    }
    let run = h.run(&["--namespace-selector", "tier in (web"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("--namespace-selector: 'tier in (web' is not a label selector: found 'end of string', expected: ',' or ')'"),
        "{}",
        run.stderr
    );
}
