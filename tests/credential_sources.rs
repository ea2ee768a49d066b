//! Each credentials source of the default chain, end to end: the binary finds the credentials,
//! and the ECR call is signed with exactly those.

mod common;

use common::*;
use fake_kube::{IssuedCredentials, MetadataServer};

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
