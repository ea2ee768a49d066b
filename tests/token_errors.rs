//! A failed GetAuthorizationToken is worded by its cause, in the refresh and in `doctor`: a
//! name that does not resolve, a connection refused, throttling and bad credentials each get
//! their own fix, and none of them is sent to the IAM policy.
//!
//! The causes are real: an endpoint under `.invalid` (which never resolves), a closed loopback
//! port, and AWS errors that the recording front answers instead of moto.

mod common;

use common::*;
use fake_kube::AwsFault;

/// The environment with every AWS call sent to `endpoint`.
fn env_with_endpoint(h: &Harness, endpoint: &str) -> Vec<(String, String)> {
    let mut env = h.base_env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL".into(), endpoint.into()));
    env
}

/// A loopback port where nothing listens: connections are refused.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn ecr_fault(code: &str, status: u16) -> AwsFault {
    AwsFault {
        operation: Some("GetAuthorizationToken".into()),
        service: Some("ecr".into()),
        status,
        code: code.into(),
        message: format!("injected {code}"),
    }
}

const PERMISSION_HINT: &str = "allow ecr:GetAuthorizationToken";

#[tokio::test(flavor = "multi_thread")]
async fn a_name_that_does_not_resolve_is_a_dns_problem_not_a_permission() {
    let h = Harness::new(&["team-a"]).await;
    let env = env_with_endpoint(&h, "http://ecr-endpoint.example.invalid");
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
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("does not resolve"), "{}", run.stderr);
    assert!(
        run.stderr.contains("com.amazonaws.us-east-1.ecr.api") && run.stderr.contains("proxy"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(PERMISSION_HINT), "{}", run.stderr);
    assert!(!run.stderr.contains("credentials allow"), "{}", run.stderr);
    assert!(h.kube_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_gets_the_network_fix() {
    let h = Harness::new(&["team-a"]).await;
    let env = env_with_endpoint(&h, &format!("http://127.0.0.1:{}", closed_port()));
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
    // No answer from AWS: a later run may pass (exit 3).
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("refused"), "{}", run.stderr);
    assert!(
        run.stderr.contains("NAT")
            && run.stderr.contains("HTTPS_PROXY")
            && run.stderr.contains("com.amazonaws.us-east-1.ecr.api"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("credentials allow"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_not_worded_as_a_permission_problem() {
    let h = Harness::new(&["team-a"]).await;
    h.aws.fail(ecr_fault("ThrottlingException", 400));
    let run = h
        .run(&[
            "--namespaces",
            "team-a",
            "--registries",
            &registry("us-east-1"),
        ])
        .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("throttl"), "{}", run.stderr);
    assert!(!run.stderr.contains("credentials allow"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_aws_does_not_accept_are_called_invalid_or_expired() {
    let h = Harness::new(&["team-a"]).await;
    h.aws.fail(ecr_fault("UnrecognizedClientException", 400));
    let run = h
        .run(&[
            "--namespaces",
            "team-a",
            "--registries",
            &registry("us-east-1"),
        ])
        .await;
    assert_eq!(run.code, 2, "needs a person: {}", run.stderr);
    assert!(run.stderr.contains("invalid or expired"), "{}", run.stderr);
    assert!(run.stderr.contains("AWS_ACCESS_KEY_ID"), "{}", run.stderr);
    assert!(!run.stderr.contains("credentials allow"), "{}", run.stderr);
}

/// The row of `doctor`'s table whose name starts with `name`, and the fix under it.
fn doctor_row(stdout: &str, name: &str) -> (String, String) {
    let lines: Vec<&str> = stdout.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no row {name}:\n{stdout}"));
    let fix = lines
        .get(i + 1)
        .filter(|l| l.trim_start().starts_with("fix:"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    (lines[i].to_string(), fix)
}

#[tokio::test(flavor = "multi_thread")]
async fn doctors_token_row_names_dns_and_throttling() {
    let h = Harness::new(&["team-a"]).await;
    let args = [
        "doctor",
        "--namespaces",
        "team-a",
        "--registries",
        &registry("us-east-1"),
    ];
    let env = env_with_endpoint(&h, "http://ecr-endpoint.example.invalid");
    let run = h.run_env(&args, env).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    let (line, fix) = doctor_row(&run.stdout, "ECR token us-east-1");
    assert!(
        line.contains("FAIL") && line.contains("does not resolve"),
        "{line}"
    );
    assert!(
        fix.contains("com.amazonaws.us-east-1.ecr.api") && !fix.contains(PERMISSION_HINT),
        "{fix}"
    );

    h.aws.fail(ecr_fault("ThrottlingException", 400));
    let run = h.run(&args).await;
    let (line, fix) = doctor_row(&run.stdout, "ECR token us-east-1");
    assert!(
        line.contains("FAIL") && line.contains("ThrottlingException"),
        "{line}"
    );
    assert!(fix.contains("not a permission problem"), "{fix}");
    assert!(!fix.contains(PERMISSION_HINT), "{fix}");
}
