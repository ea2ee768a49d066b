//! Each credentials source of the default chain, end to end: the binary finds the credentials,
//! and the ECR call is signed with exactly those.

mod common;

use common::*;
use fake_kube::{AwsFault, IssuedCredentials, MetadataServer};

const ISSUED_SECRET: &str = "wJalrXUtnFEMI-test-secret-key-do-not-log";

fn issued(key: &str) -> IssuedCredentials {
    IssuedCredentials {
        access_key_id: key.into(),
        secret_access_key: ISSUED_SECRET.into(),
        session_token: "session-token-value".into(),
    }
}

/// No static keys, and instance metadata allowed: each test adds the one source it tests.
fn env_without_keys(h: &Harness) -> Vec<(String, String)> {
    h.env_without_keys()
        .into_iter()
        .filter(|(k, _)| k != "AWS_EC2_METADATA_DISABLED")
        .collect()
}

fn assert_signed_by(h: &Harness, key: &str) {
    let calls = h.aws.calls();
    let ecr: Vec<_> = calls
        .iter()
        .filter(|c| c.operation == "GetAuthorizationToken")
        .collect();
    assert_eq!(ecr.len(), 1, "{calls:?}");
    assert_eq!(ecr[0].access_key, key, "{calls:?}");
    assert!(h.secret("team-a", "ecr").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn imds_v2_node_role() {
    let h = Harness::new(&["team-a"]).await;
    let imds = MetadataServer::start(issued("ASIAIMDS"), "unused")
        .await
        .unwrap();
    let mut env = env_without_keys(&h);
    env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), imds.url()));
    for source in ["auto", "imds"] {
        let run = h
            .run_env(
                &[
                    "--namespaces",
                    "team-a",
                    "--registries",
                    &registry("us-east-1"),
                    "--credentials-source",
                    source,
                ],
                env.clone(),
            )
            .await;
        assert_eq!(run.code, 0, "{source}: {}", run.stderr);
    }
    assert!(
        imds.hits().iter().any(|hit| hit == "PUT /latest/api/token"),
        "IMDSv2 session was used"
    );
    let calls = h.aws.calls();
    assert!(
        calls.iter().all(|c| c.access_key == "ASIAIMDS"),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn eks_pod_identity_container_endpoint() {
    let h = Harness::new(&["team-a"]).await;
    let server = MetadataServer::start(issued("ASIAPODIDENTITY"), "pod-identity-token")
        .await
        .unwrap();
    let token_file = h.dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, "pod-identity-token").unwrap();
    let mut env = env_without_keys(&h);
    env.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    env.push((
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
        format!("{}/pod-identity", server.url()),
    ));
    env.push((
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
        token_file.display().to_string(),
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
    assert!(
        run.stderr.contains("container"),
        "the log names the source: {}",
        run.stderr
    );
    assert_signed_by(&h, "ASIAPODIDENTITY");
}

#[tokio::test(flavor = "multi_thread")]
async fn irsa_web_identity() {
    let h = Harness::new(&["team-a"]).await;
    let token_file = h.dir.path().join("token");
    std::fs::write(
        &token_file,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.sig",
    )
    .unwrap();
    let mut env = env_without_keys(&h);
    env.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    env.push((
        "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
        token_file.display().to_string(),
    ));
    env.push((
        "AWS_ROLE_ARN".into(),
        "arn:aws:iam::123456789012:role/irsa-ecr".into(),
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
    let ops: Vec<String> = h.aws.calls().iter().map(|c| c.operation.clone()).collect();
    assert_eq!(ops, ["AssumeRoleWithWebIdentity", "GetAuthorizationToken"]);
    assert!(h.secret("team-a", "ecr").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sts_outage_while_assuming_a_role_exits_3_and_a_refusal_exits_2() {
    let h = Harness::new(&["team-a"]).await;
    let registry = registry("us-east-1");
    let args = [
        "--namespaces",
        "team-a",
        "--registries",
        &registry,
        "--assume-role-arn",
        "arn:aws:iam::123456789012:role/ecr-reader",
    ];
    for (status, code, exit) in [
        (400, "Throttling", 3),
        (503, "ServiceUnavailable", 3),
        (403, "AccessDenied", 2),
    ] {
        h.aws.fail(AwsFault {
            operation: Some("AssumeRole".into()),
            service: None,
            status,
            code: code.into(),
            message: "injected".into(),
        });
        let run = h.run(&args).await;
        assert_eq!(run.code, exit, "{code}: {}", run.stderr);
        assert!(
            run.stderr.contains("cannot assume role") && run.stderr.contains(code),
            "{code}: {}",
            run.stderr
        );
        assert_no_secrets(&run.output());
    }
    assert!(
        h.aws
            .calls()
            .iter()
            .all(|c| c.operation != "GetAuthorizationToken")
    );
    assert!(h.secret("team-a", "ecr").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn irsa_exits_3_when_sts_cannot_reach_the_identity_provider() {
    let h = Harness::new(&["team-a"]).await;
    let token_file = h.dir.path().join("token");
    std::fs::write(
        &token_file,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.sig",
    )
    .unwrap();
    let mut env = env_without_keys(&h);
    env.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    env.push((
        "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
        token_file.display().to_string(),
    ));
    env.push((
        "AWS_ROLE_ARN".into(),
        "arn:aws:iam::123456789012:role/irsa-ecr".into(),
    ));
    let registry = registry("us-east-1");
    let args = ["--namespaces", "team-a", "--registries", &registry];
    for (code, exit) in [("IDPCommunicationError", 3), ("InvalidIdentityToken", 2)] {
        h.aws.fail(AwsFault {
            operation: Some("AssumeRoleWithWebIdentity".into()),
            service: None,
            status: 400,
            code: code.into(),
            message: "injected".into(),
        });
        let run = h.run_env(&args, env.clone()).await;
        assert_eq!(run.code, exit, "{code}: {}", run.stderr);
        assert!(run.stderr.contains(code), "{code}: {}", run.stderr);
        assert_no_secrets(&run.output());
    }
    assert!(h.secret("team-a", "ecr").is_none());
}

/// An egress proxy whose URL carries a password, and nothing listening behind it (port 1), so
/// that every call through it fails and the failure is reported.
const PROXY_PASSWORD: &str = "pr0xy-pa55word-do-not-log";

fn env_with_proxy(h: &Harness) -> Vec<(String, String)> {
    let proxy = format!("http://proxy-user:{PROXY_PASSWORD}@127.0.0.1:1");
    let mut env = h.base_env();
    for var in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        env.push((var.into(), proxy.clone()));
    }
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_password_never_reaches_the_output() {
    let h = Harness::new(&["team-a"]).await;
    let registry = registry("us-east-1");
    let run = h
        .run_env(
            &["--namespaces", "team-a", "--registries", &registry],
            env_with_proxy(&h),
        )
        .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        h.aws.calls().is_empty(),
        "the proxy was bypassed: {}",
        run.stderr
    );
    let out = run.output();
    assert!(
        !out.contains(PROXY_PASSWORD),
        "the proxy password leaks:\n{out}"
    );
    assert_no_secrets(&out);
    // doctor's AWS rows, which go through the same client.
    let doctor = h
        .run_env(&["doctor", "--namespaces", "team-a"], env_with_proxy(&h))
        .await;
    let aws_rows: Vec<&str> = doctor
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("AWS"))
        .take_while(|l| l.starts_with("AWS") || l.starts_with(' '))
        .collect();
    assert!(
        aws_rows
            .iter()
            .any(|l| l.starts_with("AWS identity") && l.contains("FAIL")),
        "{}",
        doctor.stdout
    );
    let aws_rows = aws_rows.join("\n");
    assert!(
        !aws_rows.contains(PROXY_PASSWORD),
        "the proxy password leaks:\n{aws_rows}"
    );
    assert_no_secrets(&doctor.output());
}

/// doctor's Kubernetes rows too: the kube client goes through the proxy (no NO_PROXY here) and
/// its errors quote the proxy URL, which must lose its user and password on the way out.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_never_shows_a_proxy_password() {
    let h = Harness::new(&["team-a"]).await;
    let doctor = h
        .run_env(&["doctor", "--namespaces", "team-a"], env_with_proxy(&h))
        .await;
    let out = doctor.output();
    assert!(
        !out.contains(PROXY_PASSWORD),
        "the proxy password leaks:\n{out}"
    );
}

/// No keys and no region anywhere: what a newcomer's laptop looks like.
fn env_without_region(h: &Harness) -> Vec<(String, String)> {
    h.env_without_keys()
        .into_iter()
        .filter(|(k, _)| k != "AWS_REGION")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_region_is_one_concise_error_without_sdk_dumps() {
    let h = Harness::new(&["team-a"]).await;
    // Instance metadata allowed, and answering nothing useful, as off EC2.
    let imds = MetadataServer::start(issued("ASIAUNUSED"), "unused")
        .await
        .unwrap();
    let mut env: Vec<(String, String)> = env_without_region(&h)
        .into_iter()
        .filter(|(k, _)| k != "AWS_EC2_METADATA_DISABLED")
        .collect();
    env.push((
        "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
        format!("{}/nothing-here", imds.url()),
    ));
    let run = h.run_env(&["--namespaces", "team-a"], env).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no AWS region"), "{}", run.stderr);
    assert!(run.stderr.contains("--region"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("WARN") && !run.stderr.contains("{ "),
        "no SDK warnings or Debug output: {}",
        run.stderr
    );
    assert!(
        run.stderr.len() < 300,
        "{} bytes: {}",
        run.stderr.len(),
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_profile_source_says_what_is_missing() {
    let h = Harness::new(&["team-a"]).await;
    let dir = h.dir.path();
    let config = dir.join("aws-config");
    let credentials = dir.join("aws-credentials");
    let with_files = |profile: Option<&str>| -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = h
            .env_without_keys()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("AWS_CONFIG_FILE") && !k.starts_with("AWS_SHARED"))
            .collect();
        env.push(("AWS_CONFIG_FILE".into(), config.display().to_string()));
        env.push((
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            credentials.display().to_string(),
        ));
        if let Some(p) = profile {
            env.push(("AWS_PROFILE".into(), p.into()));
        }
        env
    };
    let args = ["--namespaces", "team-a", "--credentials-source", "profile"];
    // No files at all.
    let run = h.run_env(&args, with_files(None)).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("neither") && run.stderr.contains(&config.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("was not enabled"), "{}", run.stderr);
    // A profile with a region and no credentials.
    std::fs::write(&config, "[profile dev]\nregion = eu-west-1\n").unwrap();
    let run = h.run_env(&args, with_files(Some("dev"))).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("AWS_PROFILE=dev has no credentials")
            && run.stderr.contains("credential_process"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("was not enabled"), "{}", run.stderr);
    assert!(h.aws.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_aws_profile_is_named_as_the_cause() {
    let h = Harness::new(&["team-a"]).await;
    let config = h.dir.path().join("aws-config");
    std::fs::write(&config, "[profile dev]\nregion = eu-west-1\n").unwrap();
    let mut env: Vec<(String, String)> = env_without_region(&h)
        .into_iter()
        .filter(|(k, _)| k != "AWS_CONFIG_FILE")
        .collect();
    env.push(("AWS_CONFIG_FILE".into(), config.display().to_string()));
    // A profile that is not there (dev is): the real cause, not "no AWS region" alone.
    env.push(("AWS_PROFILE".into(), "prod".into()));
    let run = h.run_env(&["--namespaces", "team-a"], env).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("AWS_PROFILE=prod names a profile that does not exist")
            && run
                .stderr
                .contains(&format!("[profile prod] in {}", config.display())),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_without_a_region_says_to_set_one() {
    let h = Harness::new(&["team-a"]).await;
    let run = h
        .run_env(
            &["doctor", "--namespaces", "team-a"],
            env_without_region(&h),
        )
        .await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with("AWS region"))
        .unwrap_or_else(|| panic!("an AWS region row: {}", run.stdout));
    assert!(
        row.contains("FAIL") && row.contains("no AWS region"),
        "{row}"
    );
    assert!(
        run.stdout
            .contains("fix: set a region: pass --region or set AWS_REGION"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("set up one of the listed sources"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_for_ecr_public_alone_needs_no_region_like_the_refresh() {
    // Static keys and no region: ECR Public's token API has one region, which the refresh
    // uses; doctor must check the same thing rather than fail on the region.
    let h = Harness::new(&["team-a"]).await;
    let env: Vec<(String, String)> = h
        .base_env()
        .into_iter()
        .filter(|(k, _)| k != "AWS_REGION")
        .collect();
    let run = h
        .run_env(
            &[
                "doctor",
                "--namespaces",
                "team-a",
                "--registries",
                "public.ecr.aws",
            ],
            env,
        )
        .await;
    assert!(
        !run.stdout.contains("AWS region") && !run.stdout.contains("no AWS region"),
        "{}",
        run.stdout
    );
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with("AWS credentials"))
        .unwrap_or_else(|| panic!("an AWS credentials row: {}", run.stdout));
    assert!(row.contains(" ok "), "{row}");
    assert!(run.stdout.contains("ECR Public token"), "{}", run.stdout);
    assert_no_secrets(&run.stdout);
    assert_no_secrets(&run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_profile_file_is_reported_by_file_and_line_only() {
    // The secret sits on the broken line itself; the error must point at it, not print it.
    let h = Harness::new(&["team-a"]).await;
    let dir = h.dir.path();
    let cases = [
        (
            "AWS_CONFIG_FILE",
            "aws-config",
            format!("[profile dev]\nregion = eu-west-1\naws_secret_access_key {SECRET_KEY}\n"),
            "line 3",
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "aws-credentials",
            format!("[dev]\naws_access_key_id = AKIDBROKEN\n  {SECRET_KEY}\n[dev\n"),
            "line 4",
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "aws-credentials-2",
            format!("  aws_secret_access_key = {SECRET_KEY}\n[dev]\n"),
            "line 1",
        ),
    ];
    for (var, name, text, line) in cases {
        let path = dir.join(name);
        std::fs::write(&path, &text).unwrap();
        let mut env: Vec<(String, String)> = h
            .env_without_keys()
            .into_iter()
            .filter(|(k, _)| k != var)
            .collect();
        env.push((var.into(), path.display().to_string()));
        env.push(("AWS_PROFILE".into(), "dev".into()));
        for source in ["profile", "auto"] {
            let run = h
                .run_env(
                    &["--namespaces", "team-a", "--credentials-source", source],
                    env.clone(),
                )
                .await;
            assert_eq!(run.code, 2, "{name} {source}: {}", run.stderr);
            assert!(
                run.stderr.contains(&path.display().to_string()) && run.stderr.contains(line),
                "{name} {source}: the error names the file and the line: {}",
                run.stderr
            );
            // run_env already checked assert_no_secrets; the secret in any part is absent too.
            assert!(!run.stderr.contains("FMI-test-secret"), "{}", run.stderr);
        }
    }
    assert!(h.aws.calls().is_empty());
}

/// The API server is reached as kubectl reaches it: through HTTPS_PROXY, unless NO_PROXY names
/// its host. The proxy here is dead and named `localhost`, NO_PROXY names the fake API server's
/// address: kube itself checks NO_PROXY against the proxy's address (no match), so the run works
/// only if the refresher checks it against the cluster's host, as kubectl does.
#[tokio::test(flavor = "multi_thread")]
async fn no_proxy_lets_the_cluster_be_reached_directly_behind_a_proxy() {
    let h = Harness::new(&["team-a"]).await;
    let registry = registry("us-east-1");
    let proxy = format!("http://proxy-user:{PROXY_PASSWORD}@localhost:1");
    let mut env = h.base_env();
    for var in ["HTTPS_PROXY", "https_proxy"] {
        env.push((var.into(), proxy.clone()));
    }
    let with_no_proxy = {
        let mut e = env.clone();
        e.push(("NO_PROXY".into(), "127.0.0.1".into()));
        e
    };
    let args = ["--namespaces", "team-a", "--registries", &registry];
    let run = h.run_env(&args, with_no_proxy).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(h.secret("team-a", "ecr").is_some());
    assert_no_secrets(&run.output());
    // Without NO_PROXY the cluster is behind the dead proxy: nothing done, worth a retry, and
    // the proxy's password is not in the error.
    let run = h.run_env(&args, env).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("Kubernetes API server"),
        "{}",
        run.stderr
    );
    assert!(!run.output().contains(PROXY_PASSWORD), "{}", run.output());
}
