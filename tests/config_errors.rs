//! Runs that must stop before touching anything: bad flags, no credentials, no cluster.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn bad_flags_exit_2_and_name_the_flag() {
    let h = Harness::new(&["team-a"]).await;
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--namespaces",
                "team-a",
                "--registries",
                "docker.io/library/nginx",
            ],
            "--registries",
        ),
        (&["--namespaces", "Team_A"], "--namespaces: 'Team_A'"),
        (
            &["--namespaces", "team-a", "--region", "moon-1"],
            "--region",
        ),
        (
            &["--namespaces", "team-a", "--strategy", "yolo"],
            "--strategy",
        ),
        (&["--secret-name", "ecr"], "--namespaces"),
    ];
    for (args, flag) in cases {
        let run = h.run(args).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(flag),
            "{args:?} should name {flag}: {}",
            run.stderr
        );
    }
    assert!(h.kube.requests().is_empty());
    assert!(h.aws.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_have_environment_twins() {
    let h = Harness::new(&["team-a", "team-b"]).await;
    let mut env = h.base_env();
    env.push(("ECR_REFRESHER_NAMESPACES".into(), "team-a,team-b".into()));
    env.push(("ECR_REFRESHER_SECRET_NAME".into(), "pull".into()));
    env.push(("ECR_REFRESHER_REGISTRIES".into(), registry("eu-west-1")));
    let run = h.run_env(&[], env).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(h.secret("team-a", "pull").is_some());
    assert!(h.secret("team-b", "pull").is_some());
}

/// A listener that accepts connections and never answers, like a firewalled metadata address.
async fn silent_listener() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_credentials_fails_fast_and_lists_what_was_tried() {
    let h = Harness::new(&["team-a"]).await;
    let (_imds, imds_url) = silent_listener().await;
    let env: Vec<(String, String)> = h
        .env_without_keys()
        .into_iter()
        .filter(|(k, _)| k != "AWS_EC2_METADATA_DISABLED")
        .chain([("AWS_EC2_METADATA_SERVICE_ENDPOINT".to_string(), imds_url)])
        .collect();
    let started = Instant::now();
    let run = h.run_env(&["--namespaces", "team-a"], env).await;
    let took = started.elapsed();
    assert_eq!(run.code, 2, "{}", run.stderr);
    for source in [
        "environment",
        "profile",
        "web identity",
        "container",
        "EC2 instance metadata",
    ] {
        assert!(
            run.stderr.contains(source),
            "should list {source}: {}",
            run.stderr
        );
    }
    assert!(
        run.stderr.contains("--credentials-source"),
        "{}",
        run.stderr
    );
    // A hang guard, not a benchmark: the metadata probe gives up after one short attempt.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(h.kube.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn forced_source_without_its_settings_says_so() {
    let h = Harness::new(&["team-a"]).await;
    let run = h
        .run(&[
            "--namespaces",
            "team-a",
            "--credentials-source",
            "web-identity",
        ])
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("web identity"), "{}", run.stderr);
    assert!(h.aws.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn profile_with_credential_process() {
    let h = Harness::new(&["team-a"]).await;
    let dir = h.dir.path();
    let script = dir.join("creds.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho '{{\"Version\":1,\"AccessKeyId\":\"AKIDPROCESS\",\"SecretAccessKey\":\"{SECRET_KEY}\"}}'\n"),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let config = dir.join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[profile ci]\nregion = eu-west-1\ncredential_process = {}\n",
            script.display()
        ),
    )
    .unwrap();
    let env: Vec<(String, String)> = h
        .env_without_keys()
        .into_iter()
        .filter(|(k, _)| k != "AWS_REGION" && k != "AWS_CONFIG_FILE")
        .chain([
            ("AWS_CONFIG_FILE".to_string(), config.display().to_string()),
            ("AWS_PROFILE".to_string(), "ci".to_string()),
        ])
        .collect();
    let run = h
        .run_env(
            &["--namespaces", "team-a", "--credentials-source", "profile"],
            env,
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let calls = h.aws.calls();
    assert!(
        calls
            .iter()
            .all(|c| c.access_key == "AKIDPROCESS" && c.region == "eu-west-1"),
        "{calls:?}"
    );
    assert!(h.secret("team-a", "ecr").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_kubeconfig_exits_2_and_an_unreachable_cluster_exits_3() {
    let h = Harness::new(&["team-a"]).await;
    let bad = h.dir.path().join("bad-kubeconfig");
    std::fs::write(&bad, fake_kube::kubeconfig("http://127.0.0.1:1", "default")).unwrap();
    let missing = h.dir.path().join("missing");
    let run = h
        .run(&[
            "--namespaces",
            "team-a",
            "--kubeconfig",
            missing.to_str().unwrap(),
        ])
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--kubeconfig"), "{}", run.stderr);
    let run = h
        .run(&[
            "--namespaces",
            "team-a",
            "--kubeconfig",
            bad.to_str().unwrap(),
        ])
        .await;
    // The connection check fails once, before any namespace is tried (issue 9 §4). Nothing
    // was done, but nothing needs fixing either: exit 3, which the shipped Jobs retry.
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("may pass on a later run"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("cannot reach the Kubernetes API server at http://127.0.0.1:1"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("namespace=team-a"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn assume_role_defaults_from_the_environment_are_ignored_with_a_warning() {
    // A ConfigMap shared by several installs may carry these without a role to assume.
    let h = Harness::new(&["team-a"]).await;
    let mut env = h.base_env();
    env.push(("ECR_REFRESHER_EXTERNAL_ID".into(), "shared-default".into()));
    env.push((
        "ECR_REFRESHER_ROLE_SESSION_NAME".into(),
        "from-configmap".into(),
    ));
    let run = h
        .run_env(
            &[
                "--namespaces",
                "team-a",
                "--registries",
                &registry("us-east-1"),
            ],
            env,
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    for var in [
        "ECR_REFRESHER_EXTERNAL_ID",
        "ECR_REFRESHER_ROLE_SESSION_NAME",
    ] {
        assert!(
            run.stderr.contains(&format!("{var} is set but")),
            "the warning names {var}: {}",
            run.stderr
        );
    }
    assert!(h.secret("team-a", "ecr").is_some());
    let ops: Vec<String> = h.aws.calls().iter().map(|c| c.operation.clone()).collect();
    assert_eq!(ops, ["GetAuthorizationToken"], "no role was assumed");
}

#[tokio::test(flavor = "multi_thread")]
async fn assume_role_flags_without_a_role_are_an_error() {
    let h = Harness::new(&["team-a"]).await;
    for (flag, value) in [("--external-id", "e"), ("--role-session-name", "session")] {
        let run = h.run(&["--namespaces", "team-a", flag, value]).await;
        assert_eq!(run.code, 2, "{flag}: {}", run.stderr);
        assert!(
            run.stderr.contains(flag) && run.stderr.contains("--assume-role-arn"),
            "{flag}: {}",
            run.stderr
        );
    }
    assert!(h.aws.calls().is_empty());
    assert!(h.kube.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn registries_in_two_partitions_fail_before_any_call() {
    // The README's first usage example used to do exactly this.
    let h = Harness::new(&["team-a"]).await;
    let global = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    let china = "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn";
    for command in [None, Some("doctor")] {
        let mut args: Vec<&str> = command.into_iter().collect();
        let regs = format!("{global},{china}");
        args.extend(["--namespaces", "team-a", "--registries", &regs]);
        let run = h.run(&args).await;
        assert_eq!(run.code, 2, "{command:?}: {}", run.stderr);
        for want in [global, china, "aws-cn", "one refresher per partition"] {
            assert!(
                run.stderr.contains(want),
                "{command:?} should say {want}: {}",
                run.stderr
            );
        }
    }
    assert!(h.aws.calls().is_empty());
    assert!(h.kube.requests().is_empty());
}
