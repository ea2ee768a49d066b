//! End-to-end refresh runs: the compiled binary against moto (through a recording front) and the
//! fake Kubernetes API server, asserting what is in the cluster afterwards.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use fake_kube::{AwsFault, Fault};
use serde_json::json;

const NS: &[&str] = &["team-a", "team-b", "team-c"];

fn assert_refreshed(h: &Harness, ns: &str, host: &str) {
    let s = h
        .secret(ns, "ecr")
        .unwrap_or_else(|| panic!("no Secret in {ns}"));
    assert_eq!(s["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(
        s["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "ecr-secret-refresher"
    );
    let ann = &s["metadata"]["annotations"];
    assert!(
        ann["ecr-secret-refresher/refreshed-at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    // moto's tokens expire in 2015; we annotate what ECR said, whatever it is.
    assert_eq!(
        ann["ecr-secret-refresher/expires-at"],
        "2015-01-01T00:00:00Z"
    );
    let cfg = docker_config(&s);
    let auths = cfg["auths"].as_object().unwrap();
    assert_eq!(
        auths.keys().collect::<Vec<_>>(),
        vec![host],
        "auths keys are bare hostnames"
    );
    assert_eq!(cfg["auths"][host]["username"], "AWS");
    assert_eq!(cfg["auths"][host]["password"], MOTO_PASSWORD);
    assert_eq!(
        cfg["auths"][host]["auth"],
        STANDARD.encode(format!("AWS:{MOTO_PASSWORD}"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refreshes_several_namespaces_with_the_callers_registry() {
    let h = Harness::new(NS).await;
    let run = h.run(&["--namespaces", "team-a,team-b,team-c"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    for ns in NS {
        assert_refreshed(&h, ns, &registry("us-east-1"));
    }
    // One STS call to learn the account, one token call for the one region.
    let ops: Vec<String> = h.aws.calls().iter().map(|c| c.operation.clone()).collect();
    assert_eq!(ops, ["GetCallerIdentity", "GetAuthorizationToken"]);
    // First run: the patch finds nothing, then the create.
    let mut reqs = h.kube_requests();
    reqs.sort();
    assert_eq!(
        reqs,
        [
            "create secrets team-a",
            "create secrets team-b",
            "create secrets team-c",
            "patch secrets team-a",
            "patch secrets team-b",
            "patch secrets team-c",
        ]
    );
    assert!(
        run.stderr.contains("summary: 3 refreshed"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn second_run_updates_in_place_with_one_request_per_namespace() {
    let h = Harness::new(NS).await;
    assert_eq!(
        h.run(&["--namespaces", "team-a,team-b,team-c"]).await.code,
        0
    );
    let before: Vec<_> = NS.iter().map(|ns| h.secret(ns, "ecr").unwrap()).collect();
    h.kube.clear_requests();

    let run = h.run(&["--namespaces", "team-a,team-b,team-c"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut reqs = h.kube_requests();
    reqs.sort();
    assert_eq!(
        reqs,
        [
            "patch secrets team-a",
            "patch secrets team-b",
            "patch secrets team-c"
        ]
    );
    for (ns, old) in NS.iter().zip(before) {
        let new = h.secret(ns, "ecr").unwrap();
        assert_eq!(
            new["metadata"]["uid"], old["metadata"]["uid"],
            "same object, never deleted"
        );
        assert_ne!(
            new["metadata"]["resourceVersion"],
            old["metadata"]["resourceVersion"]
        );
        assert_refreshed(&h, ns, &registry("us-east-1"));
    }
    assert!(run.stderr.contains("outcome=updated"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn recreate_strategy_deletes_and_creates() {
    let h = Harness::new(NS).await;
    assert_eq!(h.run(&["--namespaces", "team-a,team-b"]).await.code, 0);
    let old_uid = h.secret("team-a", "ecr").unwrap()["metadata"]["uid"].clone();
    h.kube.clear_requests();

    let run = h
        .run(&["--namespaces", "team-a,team-b", "--strategy", "recreate"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let reqs: Vec<String> = h
        .kube_requests()
        .into_iter()
        .filter(|r| r.ends_with("team-a"))
        .collect();
    assert_eq!(
        reqs,
        [
            "get secrets team-a",
            "delete secrets team-a",
            "create secrets team-a"
        ]
    );
    assert_ne!(
        h.secret("team-a", "ecr").unwrap()["metadata"]["uid"],
        old_uid
    );
    assert_refreshed(&h, "team-a", &registry("us-east-1"));
    assert!(run.stderr.contains("outcome=recreated"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_never_removes_the_secret() {
    let h = Harness::new(&["team-a"]).await;
    assert_eq!(h.run(&["--namespaces", "team-a"]).await.code, 0);
    // Our Secret, but written by an older version without annotations, and with a stale type:
    // the update falls back, and only a type change may delete.
    for round in 0..3 {
        h.kube.clear_requests();
        let run = h.run(&["--namespaces", "team-a"]).await;
        assert_eq!(run.code, 0, "round {round}: {}", run.stderr);
        let verbs = h.kube_verbs();
        assert_eq!(verbs, ["patch"], "round {round}");
    }
    // A Secret of ours that lacks our annotations is replaced in place, not deleted.
    let mut s = h.secret("team-a", "ecr").unwrap();
    s["metadata"].as_object_mut().unwrap().remove("annotations");
    s["metadata"]["labels"]["keep"] = json!("me");
    h.kube.put("secrets", "team-a", s);
    h.kube.clear_requests();
    let run = h.run(&["--namespaces", "team-a"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let verbs = h.kube_verbs();
    assert_eq!(verbs, ["patch", "get", "update"]);
    let s = h.secret("team-a", "ecr").unwrap();
    assert_eq!(
        s["metadata"]["labels"]["keep"], "me",
        "other labels survive"
    );
    assert_refreshed(&h, "team-a", &registry("us-east-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_of_another_type_is_recreated_not_patched() {
    let h = Harness::new(&["team-a"]).await;
    h.kube.put(
        "secrets",
        "team-a",
        json!({"metadata": {"name": "ecr", "labels": {"app.kubernetes.io/managed-by": "ecr-secret-refresher"}},
               "type": "Opaque", "data": {"x": "eA=="}}),
    );
    let run = h.run(&["--namespaces", "team-a"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let verbs = h.kube_verbs();
    assert_eq!(verbs, ["patch", "get", "delete", "create"]);
    assert_refreshed(&h, "team-a", &registry("us-east-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_secret_is_left_alone_unless_forced() {
    for strategy in ["update", "recreate"] {
        let h = Harness::new(&["team-a", "team-b"]).await;
        let foreign = foreign_secret("team-a", "ecr");
        h.kube.put("secrets", "team-a", foreign);
        let before = h.secret("team-a", "ecr").unwrap();

        let run = h
            .run(&["--namespaces", "team-a,team-b", "--strategy", strategy])
            .await;
        assert_eq!(run.code, 1, "{strategy}: {}", run.stderr);
        assert_eq!(
            h.secret("team-a", "ecr").unwrap(),
            before,
            "{strategy}: byte-for-byte unchanged"
        );
        assert!(
            run.stderr.contains("not managed by ecr-secret-refresher"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("--force"),
            "the error says what to do: {}",
            run.stderr
        );
        assert_refreshed(&h, "team-b", &registry("us-east-1"));

        let run = h
            .run(&["--namespaces", "team-a", "--strategy", strategy, "--force"])
            .await;
        assert_eq!(run.code, 0, "{strategy}: {}", run.stderr);
        assert_refreshed(&h, "team-a", &registry("us-east-1"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn token_failure_changes_nothing_in_the_cluster() {
    let h = Harness::new(NS).await;
    assert_eq!(
        h.run(&["--namespaces", "team-a,team-b,team-c"]).await.code,
        0
    );
    let before: Vec<_> = NS.iter().map(|ns| h.secret(ns, "ecr").unwrap()).collect();
    h.kube.clear_requests();
    h.aws.fail(AwsFault {
        operation: Some("GetAuthorizationToken".into()),
        service: None,
        status: 400,
        code: "AccessDeniedException".into(),
        message: "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:GetAuthorizationToken".into(),
    });

    for strategy in ["update", "recreate"] {
        let run = h
            .run(&[
                "--namespaces",
                "team-a,team-b,team-c",
                "--strategy",
                strategy,
            ])
            .await;
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr
                .contains("not authorized to perform: ecr:GetAuthorizationToken"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
    }
    assert!(
        h.kube.requests().is_empty(),
        "the cluster was not even contacted: {:?}",
        h.kube_requests()
    );
    for (ns, old) in NS.iter().zip(before) {
        assert_eq!(h.secret(ns, "ecr").unwrap(), old);
    }
}

/// An outage is not a configuration mistake: the run still changes nothing, but exits 3, which
/// the shipped Jobs retry, where an AccessDenied (above) exits 2, which they do not.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_call_that_stays_throttled_or_failing_exits_3() {
    let h = Harness::new(NS).await;
    for (status, code) in [
        (400, "ThrottlingException"),
        (503, "ServiceUnavailableException"),
    ] {
        h.aws.fail(AwsFault {
            operation: Some("GetAuthorizationToken".into()),
            service: None,
            status,
            code: code.into(),
            message: "injected".into(),
        });
        let run = h.run(&["--namespaces", "team-a"]).await;
        assert_eq!(run.code, 3, "{code}: {}", run.stderr);
        assert!(
            run.stderr.contains(code) && run.stderr.contains("may pass on a later run"),
            "{code}: {}",
            run.stderr
        );
        assert_no_secrets(&run.output());
    }
    let token_calls = h
        .aws
        .calls()
        .iter()
        .filter(|c| c.operation == "GetAuthorizationToken")
        .count();
    // The SDK's own retries come first: 4 attempts per run.
    assert_eq!(token_calls, 8);
    assert!(h.kube.requests().is_empty(), "{:?}", h.kube_requests());
    assert!(h.secret("team-a", "ecr").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_namespace_is_reported_and_the_others_succeed() {
    let h = Harness::new(&["team-a", "team-c"]).await;
    let run = h.run(&["--namespaces", "team-a,ghost,team-c"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_refreshed(&h, "team-a", &registry("us-east-1"));
    assert_refreshed(&h, "team-c", &registry("us-east-1"));
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("namespace=ghost") && l.contains("outcome=failed"))
        .expect("a line for ghost");
    assert!(line.contains("namespace does not exist"), "{line}");
    assert!(
        run.stderr.contains("summary: 2 refreshed, 1 failed"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_on_one_namespace_do_not_stop_the_others() {
    let h = Harness::new(NS).await;
    h.kube.inject(Fault::status(500).namespace("team-b"));
    let run = h.run(&["--namespaces", "team-a,team-b,team-c"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_refreshed(&h, "team-a", &registry("us-east-1"));
    assert_refreshed(&h, "team-c", &registry("us-east-1"));
    assert!(h.secret("team-b", "ecr").is_none());
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("namespace=team-b") && l.contains("outcome=failed"))
        .unwrap();
    assert!(
        line.contains("InternalError") && line.contains("500"),
        "{line}"
    );
    // The 500 was retried, three attempts in all, then given up.
    let attempts = h
        .kube
        .requests()
        .iter()
        .filter(|r| r.namespace == "team-b" && r.verb == "patch")
        .count();
    assert_eq!(attempts, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passing_server_error_is_retried() {
    let h = Harness::new(&["team-a"]).await;
    h.kube.inject(Fault::status(503).verb("create").times(1));
    let run = h.run(&["--namespaces", "team-a"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_refreshed(&h, "team-a", &registry("us-east-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_create_after_delete_puts_the_old_secret_back() {
    let h = Harness::new(&["team-a"]).await;
    assert_eq!(h.run(&["--namespaces", "team-a"]).await.code, 0);
    let before = h.secret("team-a", "ecr").unwrap();
    // The new Secret is refused three times (every retry); the restore is the fourth create.
    h.kube.inject(Fault::status(500).verb("create").times(3));
    let run = h
        .run(&["--namespaces", "team-a", "--strategy", "recreate"])
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("the old Secret was put back"),
        "{}",
        run.stderr
    );
    let after = h
        .secret("team-a", "ecr")
        .expect("the namespace still has its Secret");
    assert_eq!(after["data"], before["data"]);
    assert_eq!(
        after["metadata"]["annotations"],
        before["metadata"]["annotations"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_left_without_its_secret_is_the_loudest_error() {
    let h = Harness::new(&["team-a"]).await;
    assert_eq!(h.run(&["--namespaces", "team-a"]).await.code, 0);
    h.kube.inject(Fault::status(500).verb("create"));
    let run = h
        .run(&["--namespaces", "team-a", "--strategy", "recreate"])
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(h.secret("team-a", "ecr").is_none());
    assert!(
        run.stderr.contains("NAMESPACE LEFT WITHOUT ITS SECRET"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("namespace(s) are now WITHOUT their pull secret"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_a_redacted_preview_and_touches_nothing() {
    let h = Harness::new(&["team-a"]).await;
    let run = h.run(&["--namespaces", "team-a,team-b", "--dry-run"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(h.kube.requests().is_empty());
    let preview: serde_json::Value =
        serde_json::from_str(&run.stdout).expect("stdout is one JSON document");
    assert!(
        preview["preview"]
            .as_str()
            .is_some_and(|p| p.starts_with("PREVIEW") && p.contains("cannot be applied")),
        "{}",
        run.stdout
    );
    assert_eq!(preview["namespaces"], json!(["team-a", "team-b"]));
    let secret = &preview["secret"];
    assert_eq!(secret["name"], "ecr");
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(
        secret["labels"],
        json!({"app.kubernetes.io/managed-by": "ecr-secret-refresher", "ecr-secret-refresher/instance": "fake"})
    );
    assert_eq!(secret["registries"], json!([registry("us-east-1")]));
    assert!(secret["annotations"]["ecr-secret-refresher/expires-at"].is_string());
    let auth = &secret[".dockerconfigjson"]["auths"][registry("us-east-1")];
    assert_eq!(auth["username"], "AWS");
    assert_eq!(auth["password"], "<redacted>");
    assert_eq!(auth["auth"], "<redacted>");
    // Nothing kubectl could take for an object: no apiVersion or kind at any depth.
    for key in ["\"apiVersion\"", "\"kind\"", "stringData", "\"data\""] {
        assert!(!run.stdout.contains(key), "{key} in {}", run.stdout);
    }
}

/// The dry-run preview fed to kubectl, as a user might by mistake: kubectl must refuse it,
/// while it accepts a real Secret (so the refusal is about the preview, not the setup).
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_refuses_the_dry_run_preview() {
    let h = Harness::new(&["team-a"]).await;
    let run = h.run(&["--namespaces", "team-a", "--dry-run"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    // kubectl sends no bearer token over plain HTTP.
    h.kube.allow_anonymous();
    let kubectl = |input: String, extra: &'static [&'static str]| {
        let kubeconfig = h.kubeconfig.clone();
        let dir = h.dir.path().to_path_buf();
        async move {
            let mut child = tokio::process::Command::new("kubectl")
                .args(["--kubeconfig", kubeconfig.to_str().unwrap(), "--cache-dir"])
                .arg(dir.join("kubectl-cache"))
                .args(extra)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("kubectl is needed for this test (see README: Install)");
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.as_bytes()).await.unwrap();
            drop(stdin);
            let out =
                tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                    .await
                    .unwrap()
                    .unwrap();
            (
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        }
    };
    const CREATE: &[&str] = &[
        "create",
        "--dry-run=client",
        "--validate=false",
        "-o",
        "name",
        "-f",
        "-",
    ];
    const APPLY: &[&str] = &["apply", "--dry-run=client", "--validate=false", "-f", "-"];
    let real = json!({"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "ecr", "namespace": "team-a"}, "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": "{\"auths\":{}}"}}]});
    for args in [CREATE, APPLY] {
        let (ok, out) = kubectl(real.to_string(), args).await;
        assert!(
            ok,
            "kubectl {args:?} accepts a real List of Secrets here: {out}"
        );
        assert!(out.contains("secret/ecr"), "{out}");
    }
    for args in [CREATE, APPLY] {
        let (ok, out) = kubectl(run.stdout.clone(), args).await;
        assert!(!ok, "kubectl {args:?} accepted the preview: {out}");
        assert!(
            out.contains("Kind' is missing") || out.contains("kind not set"),
            "refused because it is no object: {out}"
        );
        assert_no_secrets(&out);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn registries_in_several_regions_cost_one_call_per_region() {
    // One partition: credentials from one never work in another (see config_errors.rs).
    let h = Harness::new(&["team-a"]).await;
    let regs = [
        "111111111111.dkr.ecr.eu-west-1.amazonaws.com".to_string(),
        "https://222222222222.dkr.ecr.eu-west-1.amazonaws.com/team/app".to_string(),
        registry("us-east-1"),
    ];
    let run = h
        .run(&["--namespaces", "team-a", "--registries", &regs.join(",")])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut calls: Vec<(String, String)> = h
        .aws
        .calls()
        .iter()
        .map(|c| (c.operation.clone(), c.region.clone()))
        .collect();
    calls.sort();
    assert_eq!(
        calls,
        [
            ("GetAuthorizationToken".to_string(), "eu-west-1".to_string()),
            ("GetAuthorizationToken".to_string(), "us-east-1".to_string()),
        ],
        "no STS call when registries are named, one token call per region"
    );
    let cfg = docker_config(&h.secret("team-a", "ecr").unwrap());
    let mut keys: Vec<&String> = cfg["auths"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "111111111111.dkr.ecr.eu-west-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "222222222222.dkr.ecr.eu-west-1.amazonaws.com",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn default_registry_in_china_gets_the_china_suffix() {
    let h = Harness::new(&["team-a"]).await;
    let run = h
        .run(&["--namespaces", "team-a", "--region", "cn-north-1"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_refreshed(&h, "team-a", &registry("cn-north-1"));
    assert!(h.aws.calls().iter().all(|c| c.region == "cn-north-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn assume_role_credentials_are_used_for_ecr() {
    let h = Harness::new(&["team-a"]).await;
    let run = h
        .run(&[
            "--namespaces",
            "team-a",
            "--registries",
            &registry("us-east-1"),
            "--assume-role-arn",
            "arn:aws:iam::123456789012:role/ecr-reader",
            "--external-id",
            "ext-123",
        ])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let calls = h.aws.calls();
    let ops: Vec<&str> = calls.iter().map(|c| c.operation.as_str()).collect();
    assert_eq!(ops, ["AssumeRole", "GetAuthorizationToken"]);
    assert_eq!(
        calls[0].access_key, ACCESS_KEY,
        "AssumeRole is signed with the base credentials"
    );
    assert_ne!(
        calls[1].access_key, ACCESS_KEY,
        "ECR is called with the assumed role's credentials"
    );
    assert_refreshed(&h, "team-a", &registry("us-east-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_rust_log_setting_lets_other_crates_print_secrets() {
    // The SDK prints whole responses, token included, at trace level; RUST_LOG must not be
    // able to turn that on, however specific its target.
    let h = Harness::new(&["team-a"]).await;
    for rust_log in [
        "trace",
        "aws_smithy_runtime::client::orchestrator=trace,aws_smithy_runtime::client::orchestrator::http=trace,kube=trace,hyper=trace",
    ] {
        let mut env = h.base_env();
        env.push(("RUST_LOG".into(), rust_log.into()));
        let run = h.run_env(&["--namespaces", "team-a"], env).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
}

/// Defence in depth: whatever it read, the refresher only ever creates dockerconfigjson
/// Secrets. An old Secret of another type that it deleted (a --force takeover, a managed
/// Secret of another type) is therefore not put back when the new one cannot be created:
/// reported as the loudest error instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_of_another_type_is_never_created_again_by_the_restore() {
    let cases = [
        (foreign_secret("team-a", "ecr"), "recreate", "Opaque"),
        (
            json!({"metadata": {"name": "ecr", "labels": {"app.kubernetes.io/managed-by": "ecr-secret-refresher"},
                   "annotations": {"kubernetes.io/service-account.name": "clusterrole-aggregation-controller"}},
                   "type": "kubernetes.io/service-account-token", "data": {}}),
            "update",
            "kubernetes.io/service-account-token",
        ),
    ];
    for (old, strategy, ty) in cases {
        let h = Harness::new(&["team-a"]).await;
        h.kube.put("secrets", "team-a", old);
        // Every attempt at the new Secret fails (three tries).
        h.kube.inject(Fault::status(500).verb("create").times(3));
        let run = h
            .run(&["--namespaces", "team-a", "--strategy", strategy, "--force"])
            .await;
        assert_eq!(run.code, 1, "{strategy}: {}", run.stderr);
        let creates = h
            .kube
            .requests()
            .iter()
            .filter(|r| r.verb == "create" && r.resource == "secrets")
            .count();
        assert_eq!(
            creates, 3,
            "{strategy}: no create beyond the new Secret's three tries"
        );
        assert!(h.secret("team-a", "ecr").is_none(), "{strategy}");
        assert!(
            run.stderr.contains("NAMESPACE LEFT WITHOUT ITS SECRET"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("it was of type '{ty}'"))
                && run
                    .stderr
                    .contains("only ever creates kubernetes.io/dockerconfigjson"),
            "{}",
            run.stderr
        );
        // The next run, with the API server healthy, gives the namespace its pull Secret.
        let run = h
            .run(&["--namespaces", "team-a", "--strategy", strategy])
            .await;
        assert_eq!(run.code, 0, "{strategy}: {}", run.stderr);
        assert_refreshed(&h, "team-a", &registry("us-east-1"));
    }
}

/// A kubeconfig whose `token:` line has an unclosed quote: the parser's own message quotes the
/// lines around the fault, token included. Only the file, line and column may come out.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_kubeconfig_is_located_without_quoting_it() {
    const TOKEN: &str = "kc-token-must-not-leak-9f8e7d";
    let h = Harness::new(&["team-a"]).await;
    let text = fake_kube::kubeconfig(&h.kube.url(), "default")
        .replace("token: fake-token", &format!("token: \"{TOKEN}"));
    let line = text.lines().position(|l| l.contains(TOKEN)).unwrap() + 1;
    let bad = h.dir.path().join("broken-kubeconfig");
    std::fs::write(&bad, &text).unwrap();
    let path = bad.to_str().unwrap();
    let refresh = h
        .run(&["--namespaces", "team-a", "--kubeconfig", path])
        .await;
    assert_eq!(refresh.code, 2, "{}", refresh.stderr);
    let doctor = h
        .run(&["doctor", "--namespaces", "team-a", "--kubeconfig", path])
        .await;
    assert_eq!(doctor.code, 1, "{}", doctor.stdout);
    for out in [refresh.output(), doctor.output()] {
        assert!(!out.contains(TOKEN), "the token leaked:\n{out}");
        assert!(!out.contains("kind: Config"), "the file was quoted:\n{out}");
        assert!(
            out.contains(&format!("kubeconfig {path} is not valid YAML at line")),
            "{out}"
        );
        assert_no_secrets(&out);
    }
    // The line reported is where the quote opens or where the parser ran out of file: at or
    // after the token's line, never before it.
    let reported: usize = refresh
        .stderr
        .split("at line ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .expect("a line number");
    assert!(reported >= line, "line {reported}, token on {line}");
    assert!(h.kube.requests().is_empty());
}

/// A kubeconfig whose user gets its token from an exec credential plugin that fails: kube's own
/// message for that quotes the plugin's stdout and stderr, where a token may be. Only the
/// plugin's command and its exit status may come out; likewise for output kube cannot parse.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_exec_plugin_is_named_without_its_output() {
    use std::os::unix::fs::PermissionsExt;
    const TOKEN: &str = "exec-plugin-token-must-not-leak-4c3b2a";
    let h = Harness::new(&["team-a"]).await;
    let scripts = [
        // Fails, printing the token on both streams.
        (
            "failing-plugin",
            format!("#!/bin/sh\necho \"token {TOKEN}\"\necho \"stderr {TOKEN}\" >&2\nexit 1\n"),
            "ended with exit status: 1",
        ),
        // Succeeds with output that is not an ExecCredential, quoting the token.
        (
            "garbled-plugin",
            format!("#!/bin/sh\necho \"not a credential {TOKEN}\"\n"),
            "its output is not an ExecCredential",
        ),
    ];
    for (name, script, why) in scripts {
        let plugin = h.dir.path().join(name);
        std::fs::write(&plugin, script).unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plugin = plugin.to_str().unwrap();
        let exec = format!(
            "exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {plugin}\n      interactiveMode: Never"
        );
        let text =
            fake_kube::kubeconfig(&h.kube.url(), "default").replace("token: fake-token", &exec);
        let kc = h.dir.path().join(format!("{name}-kubeconfig"));
        std::fs::write(&kc, &text).unwrap();
        let kc = kc.to_str().unwrap();
        let refresh = h.run(&["--namespaces", "team-a", "--kubeconfig", kc]).await;
        assert_eq!(refresh.code, 2, "{}", refresh.stderr);
        let doctor = h
            .run(&["doctor", "--namespaces", "team-a", "--kubeconfig", kc])
            .await;
        assert_eq!(doctor.code, 1, "{}", doctor.stdout);
        for out in [refresh.output(), doctor.output()] {
            assert_no_secrets(&out);
            assert!(!out.contains(TOKEN), "the plugin's output leaked:\n{out}");
            assert!(
                out.contains(&format!("exec plugin '{plugin}'")),
                "the plugin is not named:\n{out}"
            );
            assert!(out.contains(why), "{out}");
        }
        assert!(h.secret("team-a", "ecr").is_none());
    }
}

/// Another writer (a second run of this install) creates the Secret between our patch (404) and
/// our create: the create gets 409 AlreadyExists, and the update is tried again, in place.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_created_by_another_run_meanwhile_is_patched() {
    let h = Harness::new(&["team-a"]).await;
    let theirs = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "ecr", "namespace": "team-a", "labels": {
            "app.kubernetes.io/managed-by": "ecr-secret-refresher",
            "ecr-secret-refresher/instance": "fake"},
            "annotations": {"ecr-secret-refresher/refreshed-at": "2026-01-01T00:00:00Z"}},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": STANDARD.encode(r#"{"auths":{}}"#)}
    });
    h.kube.inject(
        Fault::put_before("secrets", "team-a", theirs)
            .verb("create")
            .resource("secrets")
            .namespace("team-a")
            .times(1),
    );
    let run = h.run(&["--namespaces", "team-a"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_refreshed(&h, "team-a", &registry("us-east-1"));
    assert_eq!(
        h.kube_verbs(),
        ["patch", "create", "get", "patch"],
        "patch (404), create (409), get (ours, other data), patch again"
    );
}

/// `--help` says what `--dry-run` prints: a preview, not the Secrets themselves.
#[tokio::test(flavor = "multi_thread")]
async fn the_dry_run_help_promises_a_preview_not_a_manifest() {
    let h = Harness::new(&[]).await;
    let help = h.run(&["--help"]).await;
    assert_eq!(help.code, 0, "{}", help.stderr);
    let text = help.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    let dry_run = text
        .split("--dry-run")
        .nth(1)
        .unwrap_or_else(|| panic!("no --dry-run in the help:\n{}", help.stdout));
    let dry_run = dry_run.split(" --").next().unwrap_or(dry_run);
    assert!(dry_run.contains("preview"), "{dry_run}");
    assert!(dry_run.contains("not a manifest"), "{dry_run}");
    assert!(!dry_run.contains("print the Secrets"), "{dry_run}");
}
