//! `doctor --image`: each step of the pull path, passing and failing, against moto (repositories,
//! images, repository policies) behind the recording AWS front (injected AccessDenied and
//! not-found errors), a TLS registry stand-in on loopback for `GET /v2/`
//! (tests/doctor_image/registry.py, its certificate from a throwaway CA), a listener that never
//! answers, and the fake API server for the Secret and ServiceAccount.

mod common;

use std::path::Path;
use std::process::Stdio;

use aws_sdk_ecr::types::ImageIdentifier;
use common::stand_in::{Registry, moto_ecr, seed_image_in};
use common::*;
use fake_kube::{AwsFault, Fault, Rule};
use serde_json::{Value, json};

const OTHER_ACCOUNT: &str = "111111111111";

fn host(account: &str) -> String {
    format!("{account}.dkr.ecr.us-east-1.amazonaws.com")
}

/// The TLS `/v2/` stand-in (tests/common/stand_in.rs), serving both test accounts' registries.
fn registry(dir: &Path, password: &str) -> Registry {
    Registry::start(dir, password, &[&host(ACCOUNT), &host(OTHER_ACCOUNT)])
}

fn digest(seed: &str) -> String {
    format!(
        "sha256:{}",
        seed.repeat(64).chars().take(64).collect::<String>()
    )
}

/// A repository (in `account`) holding one image tagged `tag`, with an optional policy.
/// Returns the image's digest as ECR computed it.
async fn seed(account: &str, repo: &str, tag: &str, policy: Option<Value>) -> String {
    let image_digest = seed_image_in(account, repo, tag).await;
    let ecr = moto_ecr();
    if let Some(p) = policy {
        ecr.set_repository_policy()
            .registry_id(account)
            .repository_name(repo)
            .policy_text(p.to_string())
            .send()
            .await
            .expect("moto stores the policy");
    }
    // Sanity: the image is there as a pull by tag finds it.
    let found = ecr
        .batch_get_image()
        .registry_id(account)
        .repository_name(repo)
        .image_ids(ImageIdentifier::builder().image_tag(tag).build())
        .send()
        .await
        .unwrap();
    assert_eq!(found.images().len(), 1);
    image_digest
}

fn access_denied(operation: &str, action: &str, repo: &str, account: &str) -> AwsFault {
    AwsFault {
        operation: Some(operation.into()),
        service: None,
        status: 400,
        code: "AccessDeniedException".into(),
        message: format!(
            "User: arn:aws:sts::{ACCOUNT}:user/moto is not authorized to perform: {action} on resource: arn:aws:ecr:us-east-1:{account}:repository/{repo} because no identity-based policy allows the {action} action"
        ),
    }
}

/// The environment of a user whose machine trusts the stand-in's CA.
fn env_trusting(h: &Harness, registry: &Registry) -> Vec<(String, String)> {
    let mut env = h.base_env();
    env.push(("SSL_CERT_FILE".into(), registry.ca()));
    env
}

async fn doctor(
    h: &Harness,
    env: Vec<(String, String)>,
    image: &str,
    address: &str,
    extra: &[&str],
) -> Run {
    let mut args = vec!["doctor", "--image", image, "--registry-address", address];
    args.extend_from_slice(extra);
    let run = h.run_env(&args, env).await;
    // Shown when a test fails, and with --nocapture (how the README samples were captured).
    println!("$ ecr-secret-refresher {}\n{}", args.join(" "), run.stdout);
    run
}

/// `doctor --image` as most tests run it: the test CA trusted, the stand-in as the endpoint.
async fn doctor_via(h: &Harness, registry: &Registry, image: &str, extra: &[&str]) -> Run {
    doctor(
        h,
        env_trusting(h, registry),
        image,
        &registry.address(),
        extra,
    )
    .await
}

/// The row whose name starts with `name`, and its fix line (empty when there is none).
fn row(run: &Run, name: &str) -> (String, String) {
    let lines: Vec<&str> = run.stdout.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no row {name}:\n{}\n{}", run.stdout, run.stderr));
    let fix = lines
        .get(i + 1)
        .filter(|l| l.trim_start().starts_with("fix:"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    (lines[i].to_string(), fix)
}

/// The RESULT column of a row, located by the header.
fn result_of<'a>(run: &Run, line: &'a str) -> &'a str {
    let at = run
        .stdout
        .lines()
        .next()
        .and_then(|h| h.find("RESULT"))
        .expect("a header");
    line.get(at..)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("?")
}

fn assert_row(run: &Run, name: &str, want: &str) -> (String, String) {
    let (line, fix) = row(run, name);
    assert_eq!(
        result_of(run, &line),
        want,
        "{line}\n{fix}\n--- full output:\n{}",
        run.stdout
    );
    (line, fix)
}

/// A Secret as the refresher writes it, for `host`, expiring at `expires`, with moto's password.
fn our_secret(ns: &str, hosts: &[&str], expires: &str) -> Value {
    our_secret_with(ns, hosts, expires, MOTO_PASSWORD)
}

fn our_secret_with(ns: &str, hosts: &[&str], expires: &str, password: &str) -> Value {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let auths: serde_json::Map<String, Value> = hosts
        .iter()
        .map(|h| {
            (
                h.to_string(),
                json!({"username": "AWS", "password": password, "auth": b64(&format!("AWS:{password}"))}),
            )
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "ecr", "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "ecr-secret-refresher"},
            "annotations": {"ecr-secret-refresher/expires-at": expires}},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(&json!({"auths": auths}).to_string())}
    })
}

fn in_a_day() -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24))
        .round(jiff::Unit::Second)
        .unwrap()
        .to_string()
}

fn list_ecr_in_sa(h: &Harness, ns: &str) {
    h.kube.put(
        "serviceaccounts",
        ns,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns},
               "imagePullSecrets": [{"name": "ecr"}]}),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_step_passes_for_a_pullable_image_and_nothing_is_written() {
    let h = Harness::new(&["team-a"]).await;
    let image_digest = seed(ACCOUNT, "doctor/pass", "v1", None).await;
    h.kube.put(
        "secrets",
        "team-a",
        our_secret("team-a", &[&host(ACCOUNT)], &in_a_day()),
    );
    list_ecr_in_sa(&h, "team-a");
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    h.kube.clear_requests();
    let image = format!("{}/doctor/pass:v1", host(ACCOUNT));
    let run = doctor_via(&h, &registry, &image, &["--namespace", "team-a"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for name in [
        "Image ",
        "AWS credentials",
        "AWS identity",
        "ECR token us-east-1",
        "Image exists",
        "Pull permission",
        "Registry endpoint",
        "Secret team-a/ecr",
        "ServiceAccount team-a/default",
    ] {
        assert_row(&run, name, "ok");
    }
    let (image_row, _) = row(&run, "Image ");
    assert!(
        image_row.contains("account 123456789012, partition aws, region us-east-1")
            && image_row.contains("repository doctor/pass, tag v1"),
        "{image_row}"
    );
    let (exists, _) = row(&run, "Image exists");
    assert!(
        exists.contains(&format!("doctor/pass:v1 in 123456789012 is {image_digest}")),
        "{exists}"
    );
    assert!(row(&run, "Registry endpoint").0.contains("answered 200"));
    // The stand-in saw the right Host header and the token as Basic auth.
    let seen = registry.requests();
    assert!(
        seen.contains(&format!("GET /v2/ host={} authorized=True", host(ACCOUNT))),
        "{seen}"
    );
    // Read-only: no write to the cluster, and only reading calls to AWS.
    let writes: Vec<_> = h
        .kube
        .requests()
        .into_iter()
        // GET /version (the connection check) is recorded as a list: a read too.
        .filter(|r| !matches!(r.verb.as_str(), "get" | "list"))
        .collect();
    assert!(writes.is_empty(), "doctor wrote {writes:?}");
    assert!(
        h.kube.requests().iter().any(|r| r.resource == "version"),
        "the connection is checked as a refresh checks it"
    );
    let ops: Vec<String> = h.aws.calls().into_iter().map(|c| c.operation).collect();
    for op in &ops {
        assert!(
            [
                "GetCallerIdentity",
                "GetAuthorizationToken",
                "DescribeImages",
                "BatchGetImage",
                "GetDownloadUrlForLayer"
            ]
            .contains(&op.as_str()),
            "unexpected AWS call {op}: {ops:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_come_as_json_lines_with_codes_and_fixes() {
    let h = Harness::new(&[]).await;
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    let image = format!("{}/doctor/json-missing:v1", host(ACCOUNT));
    let run = doctor_via(&h, &registry, &image, &["--log-format", "json"]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let rows: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let exists = rows.iter().find(|r| r["check"] == "Image exists").unwrap();
    assert_eq!(exists["result"], "fail");
    assert_eq!(exists["code"], "RepositoryNotFoundException");
    assert!(
        exists["fix"]
            .as_str()
            .unwrap()
            .contains("doctor/json-missing")
    );
    let endpoint = rows
        .iter()
        .find(|r| r["check"] == "Registry endpoint")
        .unwrap();
    assert_eq!(endpoint["result"], "ok");
    assert_eq!(endpoint["fix"], Value::Null);
    let skipped = rows
        .iter()
        .find(|r| r["check"] == "Pull permission")
        .unwrap();
    assert_eq!(skipped["result"], "skip");
    assert_eq!(skipped["fix"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reference_that_is_not_private_ecr_says_what_to_do() {
    let h = Harness::new(&[]).await;
    let run = h.run(&["doctor", "--image", "nginx:1.25"]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    let (line, fix) = assert_row(&run, "Image ", "FAIL");
    assert!(line.contains("Docker Hub"), "{line}");
    assert!(
        fix.contains("ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG"),
        "{fix}"
    );
    assert_row(&run, "ECR token", "skip");
    assert!(h.aws.calls().is_empty(), "no AWS call for a bad reference");

    let run = h
        .run(&[
            "doctor",
            "--image",
            "public.ecr.aws/docker/library/busybox:1.36",
        ])
        .await;
    assert_eq!(run.code, 1);
    let (_, fix) = assert_row(&run, "Image ", "FAIL");
    // The refresher writes public.ecr.aws entries on request: the fix must not say to drop them.
    assert!(
        fix.contains("ECR Public pulls need no ECR token")
            && fix.contains("--registries public.ecr.aws")
            && !fix.contains("remove this Secret"),
        "{fix}"
    );

    let run = h
        .run(&[
            "doctor",
            "--image",
            "ghcr.io/org/app:v1",
            "--namespace",
            "team-a",
        ])
        .await;
    let (line, fix) = assert_row(&run, "Image ", "FAIL");
    assert!(
        line.contains("ghcr.io is not an ECR registry host") && fix.contains("ghcr.io"),
        "{line}\n{fix}"
    );
    // Our Secret is no answer for another registry: it is not looked at.
    assert_row(&run, "Secret team-a/ecr", "skip");
    assert!(h.kube.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_refused_names_get_authorization_token() {
    let h = Harness::new(&[]).await;
    h.aws.fail(access_denied(
        "GetAuthorizationToken",
        "ecr:GetAuthorizationToken",
        "*",
        ACCOUNT,
    ));
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    seed(ACCOUNT, "doctor/token", "v1", None).await;
    let image = format!("{}/doctor/token:v1", host(ACCOUNT));
    let run = doctor_via(&h, &registry, &image, &[]).await;
    assert_eq!(run.code, 1);
    let (line, fix) = assert_row(&run, "ECR token us-east-1", "FAIL");
    assert!(line.contains("AccessDeniedException"), "{line}");
    assert!(fix.contains("allow ecr:GetAuthorizationToken"), "{fix}");
    assert_row(&run, "Registry endpoint", "skip");
    // The repository checks do not need the token and still run.
    assert_row(&run, "Image exists", "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_repository_or_tag_is_told_apart_from_a_denial() {
    let h = Harness::new(&[]).await;
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    seed(ACCOUNT, "doctor/tags", "v1", None).await;
    let env = env_trusting(&h, &registry);

    let run = doctor(
        &h,
        env.clone(),
        &format!("{}/doctor/nope:v1", host(ACCOUNT)),
        &registry.address(),
        &[],
    )
    .await;
    assert_eq!(run.code, 1);
    let (line, fix) = assert_row(&run, "Image exists", "FAIL");
    assert!(line.contains("RepositoryNotFoundException"), "{line}");
    assert!(
        fix.contains("no repository 'doctor/nope' in account 123456789012 region us-east-1")
            && fix.contains("describe-repositories"),
        "{fix}"
    );
    assert_row(&run, "Pull permission", "skip");

    let run = doctor(
        &h,
        env.clone(),
        &format!("{}/doctor/tags:v2", host(ACCOUNT)),
        &registry.address(),
        &[],
    )
    .await;
    assert_eq!(run.code, 1);
    let (line, fix) = assert_row(&run, "Image exists", "FAIL");
    assert!(line.contains("ImageNotFoundException"), "{line}");
    assert!(fix.contains("has no v2") && fix.contains("list-images --registry-id 123456789012 --region us-east-1 --repository-name doctor/tags"), "{fix}");

    // Injected by the front: a pull by digest the repository does not hold.
    h.aws.fail(AwsFault {
        operation: Some("DescribeImages".into()),
        service: None,
        status: 400,
        code: "ImageNotFoundException".into(),
        message: "The image with imageId {imageDigest:sha256:bbbb} does not exist within the repository with name doctor/tags".into(),
    });
    let run = doctor(
        &h,
        env,
        &format!("{}/doctor/tags@{}", host(ACCOUNT), digest("b")),
        &registry.address(),
        &[],
    )
    .await;
    let (line, fix) = assert_row(&run, "Image exists", "FAIL");
    assert!(line.contains("ImageNotFoundException"), "{line}");
    assert!(fix.contains(&format!("has no {}", digest("b"))), "{fix}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_describe_images_the_check_asks_like_a_pull() {
    let h = Harness::new(&[]).await;
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    seed(ACCOUNT, "doctor/pull-only", "v1", None).await;
    h.aws.fail(access_denied(
        "DescribeImages",
        "ecr:DescribeImages",
        "doctor/pull-only",
        ACCOUNT,
    ));
    let image = format!("{}/doctor/pull-only:v1", host(ACCOUNT));
    let run = doctor_via(&h, &registry, &image, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    let (line, _) = assert_row(&run, "Image exists", "ok");
    assert!(line.contains("seen with BatchGetImage"), "{line}");

    // A repository injected as missing behind the denial is still "does not exist".
    h.aws.fail_also(AwsFault {
        operation: Some("BatchGetImage".into()),
        service: None,
        status: 400,
        code: "RepositoryNotFoundException".into(),
        message: "The repository with name doctor/pull-only does not exist in the registry with id 123456789012".into(),
    });
    let run = doctor_via(&h, &registry, &image, &[]).await;
    let (line, _) = assert_row(&run, "Image exists", "FAIL");
    assert!(line.contains("RepositoryNotFoundException"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_pull_action_is_named_with_the_repository() {
    let h = Harness::new(&[]).await;
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    seed(ACCOUNT, "doctor/denied", "v1", None).await;
    h.aws.fail(access_denied(
        "GetDownloadUrlForLayer",
        "ecr:GetDownloadUrlForLayer",
        "doctor/denied",
        ACCOUNT,
    ));
    let image = format!("{}/doctor/denied:v1", host(ACCOUNT));
    let run = doctor_via(&h, &registry, &image, &[]).await;
    assert_eq!(run.code, 1);
    let (line, fix) = assert_row(&run, "Pull permission", "FAIL");
    assert!(
        line.contains("AccessDeniedException: ecr:GetDownloadUrlForLayer refused"),
        "{line}"
    );
    assert!(
        fix.contains("ecr:GetDownloadUrlForLayer")
            && fix.contains("arn:aws:ecr:us-east-1:123456789012:repository/doctor/denied")
            && fix.contains("AmazonEC2ContainerRegistryReadOnly"),
        "{fix}"
    );
    assert_row(&run, "Image exists", "ok");

    // Denied on everything: existence cannot be told, the permission row names BatchGetImage.
    h.aws.fail(access_denied(
        "DescribeImages",
        "ecr:DescribeImages",
        "doctor/denied",
        ACCOUNT,
    ));
    h.aws.fail_also(access_denied(
        "BatchGetImage",
        "ecr:BatchGetImage",
        "doctor/denied",
        ACCOUNT,
    ));
    let run = doctor_via(&h, &registry, &image, &[]).await;
    assert_eq!(run.code, 1);
    let (line, _) = assert_row(&run, "Image exists", "unknown");
    assert!(line.contains("could not check"), "{line}");
    let (line, fix) = assert_row(&run, "Pull permission", "FAIL");
    assert!(
        line.contains("ecr:BatchGetImage refused") && fix.contains("allow ecr:BatchGetImage"),
        "{line}\n{fix}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_accounts_repository_policy_gets_the_statement_to_add() {
    let h = Harness::new(&[]).await;
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    let someone_else = json!({"Version": "2012-10-17", "Statement": [{"Sid": "Ci", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::999999999999:root"}, "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}]});
    seed(OTHER_ACCOUNT, "doctor/xacct", "v1", Some(someone_else)).await;
    h.aws.fail(access_denied(
        "BatchGetImage",
        "ecr:BatchGetImage",
        "doctor/xacct",
        OTHER_ACCOUNT,
    ));
    let image = format!("{}/doctor/xacct:v1", host(OTHER_ACCOUNT));
    let run = doctor_via(&h, &registry, &image, &[]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        row(&run, "AWS identity")
            .0
            .contains("the repository is in another account, 111111111111")
    );
    let (line, fix) = assert_row(&run, "Pull permission", "FAIL");
    assert!(line.contains("does not grant ecr:BatchGetImage, ecr:GetDownloadUrlForLayer, ecr:BatchCheckLayerAvailability"), "{line}");
    // The statement names the caller (from STS) as principal and the pull actions.
    let caller = row(&run, "AWS identity")
        .0
        .split_whitespace()
        .nth(3)
        .unwrap()
        .to_string();
    assert!(caller.starts_with("arn:aws:"), "{caller}");
    assert!(
        fix.contains("repository policy of 'doctor/xacct' in account 111111111111")
            && fix.contains(&format!(r#""Principal":{{"AWS":"{caller}"}}"#))
            && fix.contains(r#""Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer","ecr:BatchCheckLayerAvailability"]"#)
            && fix.contains("in account 123456789012, allow"),
        "{fix}"
    );

    // A policy that already grants the caller's account: the missing half is the caller's IAM.
    let granted = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "ecr:*"}]});
    moto_ecr()
        .set_repository_policy()
        .registry_id(OTHER_ACCOUNT)
        .repository_name("doctor/xacct")
        .policy_text(granted.to_string())
        .send()
        .await
        .unwrap();
    let run = doctor_via(&h, &registry, &image, &[]).await;
    let (line, fix) = assert_row(&run, "Pull permission", "FAIL");
    assert!(line.contains("grants the pull actions to"), "{line}");
    assert!(
        fix.starts_with("fix: the caller's own account must allow it too: allow ecr:BatchGetImage"),
        "{fix}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_accounts_repository_without_a_policy_or_hidden_from_us() {
    let h = Harness::new(&[]).await;
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    seed(OTHER_ACCOUNT, "doctor/nopolicy", "v1", None).await;
    h.aws.fail(access_denied(
        "BatchGetImage",
        "ecr:BatchGetImage",
        "doctor/nopolicy",
        OTHER_ACCOUNT,
    ));
    let image = format!("{}/doctor/nopolicy:v1", host(OTHER_ACCOUNT));
    let run = doctor_via(&h, &registry, &image, &[]).await;
    let (line, fix) = assert_row(&run, "Pull permission", "FAIL");
    assert!(
        line.contains("has no repository policy, so no other account may pull"),
        "{line}"
    );
    assert!(
        fix.contains("add this statement") && fix.contains("ecr:BatchGetImage"),
        "{fix}"
    );

    h.aws.fail_also(access_denied(
        "GetRepositoryPolicy",
        "ecr:GetRepositoryPolicy",
        "doctor/nopolicy",
        OTHER_ACCOUNT,
    ));
    let run = doctor_via(&h, &registry, &image, &[]).await;
    let (line, fix) = assert_row(&run, "Pull permission", "FAIL");
    assert!(
        line.contains("could not be read (AccessDeniedException on GetRepositoryPolicy)"),
        "{line}"
    );
    assert!(
        fix.contains("ask the owner of account 111111111111 to add this statement"),
        "{fix}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_refusing_the_token_is_not_a_network_problem() {
    let h = Harness::new(&[]).await;
    seed(ACCOUNT, "doctor/v2-401", "v1", None).await;
    // The stand-in expects another password: ours answers 401, as a stale or foreign token would.
    let registry = registry(h.dir.path(), "a-different-password");
    let image = format!("{}/doctor/v2-401:v1", host(ACCOUNT));
    let run = doctor_via(&h, &registry, &image, &[]).await;
    assert_eq!(run.code, 1);
    let (line, fix) = assert_row(&run, "Registry endpoint", "FAIL");
    assert!(
        line.contains("answered 401: the registry did not accept the token"),
        "{line}"
    );
    assert!(
        fix.contains("Authorization header") && fix.contains("us-east-1"),
        "{fix}"
    );
    assert!(registry.requests().contains("authorized=False"));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_answer_unknown_name_or_wrong_certificate_get_their_own_hints() {
    let h = Harness::new(&[]).await;
    seed(ACCOUNT, "doctor/net", "v1", None).await;
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    let image = format!("{}/doctor/net:v1", host(ACCOUNT));

    // A listener that accepts TCP and never says a word: a black hole on the path.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = std::time::Instant::now();
    let run = doctor(
        &h,
        env_trusting(&h, &registry),
        &image,
        &silent.local_addr().unwrap().to_string(),
        &[],
    )
    .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the probe is bounded"
    );
    assert_eq!(run.code, 1);
    let (line, fix) = assert_row(&run, "Registry endpoint", "FAIL");
    assert!(
        line.contains("no answer from") && line.contains("within 4 s"),
        "{line}"
    );
    assert!(
        fix.contains("NAT gateway")
            && fix.contains("security groups")
            && fix.contains("com.amazonaws.us-east-1.ecr.api")
            && fix.contains("com.amazonaws.us-east-1.ecr.dkr")
            && fix.contains("com.amazonaws.us-east-1.s3"),
        "{fix}"
    );

    let run = doctor(
        &h,
        env_trusting(&h, &registry),
        &image,
        "no-such-registry.invalid:443",
        &[],
    )
    .await;
    let (line, fix) = assert_row(&run, "Registry endpoint", "FAIL");
    assert!(
        line.contains("cannot resolve no-such-registry.invalid:443"),
        "{line}"
    );
    assert!(
        fix.contains("DNS resolver")
            && fix.contains("com.amazonaws.us-east-1.ecr.dkr")
            && fix.contains("com.amazonaws.us-east-1.s3"),
        "{fix}"
    );

    // Without the test CA the certificate is not trusted: verification is real.
    let run = doctor(&h, h.base_env(), &image, &registry.address(), &[]).await;
    let (line, fix) = assert_row(&run, "Registry endpoint", "FAIL");
    assert!(
        line.contains("TLS with 123456789012.dkr.ecr.us-east-1.amazonaws.com failed"),
        "{line}"
    );
    assert!(fix.contains("SSL_CERT_FILE"), "{fix}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pull_secret_must_exist_hold_the_registry_and_be_fresh() {
    let h = Harness::new(&["team-a"]).await;
    seed(ACCOUNT, "doctor/secret", "v1", None).await;
    list_ecr_in_sa(&h, "team-a");
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    let image = format!("{}/doctor/secret:v1", host(ACCOUNT));
    let address = registry.address();
    let run_it = || {
        doctor(
            &h,
            env_trusting(&h, &registry),
            &image,
            &address,
            &["--namespace", "team-a"],
        )
    };

    let typo = doctor(
        &h,
        env_trusting(&h, &registry),
        &image,
        &address,
        &["--namespace", "team-aa"],
    )
    .await;
    let (line, fix) = assert_row(&typo, "Secret team-aa/ecr", "FAIL");
    assert!(line.contains("there is no namespace team-aa"), "{line}");
    assert!(fix.contains("check --namespace"), "{fix}");

    let run = run_it().await;
    assert_eq!(run.code, 1);
    let (line, fix) = assert_row(&run, "Secret team-a/ecr", "FAIL");
    assert!(line.contains("no Secret 'ecr' in team-a"), "{line}");
    assert!(
        fix.contains("add team-a to the refresher's --namespaces"),
        "{fix}"
    );
    // In kubelet-plugin mode there is no Secret by design: the row says so.
    assert!(
        fix.contains("kubelet credential provider") && fix.contains("needs no Secret"),
        "{fix}"
    );

    // Written by a real refresh with moto's token, which expired in 2015.
    assert_eq!(
        h.run(&["--namespaces", "team-a", "--registries", &host(ACCOUNT)])
            .await
            .code,
        0
    );
    let run = run_it().await;
    let (line, fix) = assert_row(&run, "Secret team-a/ecr", "FAIL");
    assert!(line.contains("expired at 2015-01-01T00:00:00Z"), "{line}");
    assert!(
        fix.contains("create job --from=cronjob/ecr-secret-refresher"),
        "{fix}"
    );

    h.kube.put(
        "secrets",
        "team-a",
        our_secret("team-a", &[&host(OTHER_ACCOUNT)], &in_a_day()),
    );
    let run = run_it().await;
    let (line, fix) = assert_row(&run, "Secret team-a/ecr", "FAIL");
    assert!(
        line.contains(&format!(
            "holds {}, not {}",
            host(OTHER_ACCOUNT),
            host(ACCOUNT)
        )),
        "{line}"
    );
    assert!(
        fix.contains(&format!(
            "add {} to the refresher's --registries",
            host(ACCOUNT)
        )),
        "{fix}"
    );

    h.kube
        .put("secrets", "team-a", foreign_secret("team-a", "ecr"));
    let run = run_it().await;
    let (line, fix) = assert_row(&run, "Secret team-a/ecr", "FAIL");
    assert!(
        line.contains("not written by ecr-secret-refresher"),
        "{line}"
    );
    assert!(
        fix.contains("--force") && fix.contains("--secret-name"),
        "{fix}"
    );

    // Fresh by its annotation, but holding a password the registry refuses.
    h.kube.put(
        "secrets",
        "team-a",
        our_secret_with("team-a", &[&host(ACCOUNT)], &in_a_day(), "stale-password"),
    );
    let run = run_it().await;
    let (line, fix) = assert_row(&run, "Secret team-a/ecr", "FAIL");
    assert!(
        line.contains("but the registry refuses its password (HTTP 401)"),
        "{line}"
    );
    assert!(fix.contains("run a refresh now"), "{fix}");

    h.kube.put(
        "secrets",
        "team-a",
        our_secret("team-a", &[&host(ACCOUNT)], &in_a_day()),
    );
    let run = run_it().await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    let (line, _) = assert_row(&run, "Secret team-a/ecr", "ok");
    assert!(line.contains("the registry accepts its password"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_account_must_list_the_secret() {
    let h = Harness::new(&["team-a"]).await;
    seed(ACCOUNT, "doctor/sa", "v1", None).await;
    h.kube.put(
        "secrets",
        "team-a",
        our_secret("team-a", &[&host(ACCOUNT)], &in_a_day()),
    );
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    let image = format!("{}/doctor/sa:v1", host(ACCOUNT));
    let env = env_trusting(&h, &registry);

    let run = doctor(
        &h,
        env.clone(),
        &image,
        &registry.address(),
        &["--namespace", "team-a"],
    )
    .await;
    // Pods may name the Secret themselves: a warning, not a failure.
    assert_eq!(run.code, 0, "{}", run.stdout);
    let (line, fix) = assert_row(&run, "ServiceAccount team-a/default", "warn");
    assert!(
        line.contains("imagePullSecrets is empty, not ecr"),
        "{line}"
    );
    assert!(
        fix.contains("--service-accounts default") && fix.contains("patch serviceaccount default"),
        "{fix}"
    );

    let run = doctor(
        &h,
        env.clone(),
        &image,
        &registry.address(),
        &["--namespace", "team-a", "--service-account", "builder"],
    )
    .await;
    let (line, fix) = assert_row(&run, "ServiceAccount team-a/builder", "FAIL");
    assert!(
        line.contains("no ServiceAccount 'builder' in team-a"),
        "{line}"
    );
    assert!(fix.contains("create serviceaccount builder"), "{fix}");

    list_ecr_in_sa(&h, "team-a");
    let run = doctor(
        &h,
        env,
        &image,
        &registry.address(),
        &["--namespace", "team-a"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_row(&run, "ServiceAccount team-a/default", "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_rbac_to_look_the_cluster_rows_are_unknown_not_failed() {
    let h = Harness::new(&["team-a"]).await;
    seed(ACCOUNT, "doctor/rbac", "v1", None).await;
    // Allowed to read ServiceAccounts, not Secrets.
    h.kube.enforce_rules(vec![Rule {
        api_groups: vec!["".into()],
        resources: vec!["serviceaccounts".into()],
        verbs: vec!["get".into()],
        resource_names: vec![],
        namespace: None,
    }]);
    list_ecr_in_sa(&h, "team-a");
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    let image = format!("{}/doctor/rbac:v1", host(ACCOUNT));
    let run = doctor_via(&h, &registry, &image, &["--namespace", "team-a"]).await;
    assert_eq!(
        run.code, 0,
        "could not check is not a failure:\n{}",
        run.stdout
    );
    let (line, fix) = assert_row(&run, "Secret team-a/ecr", "unknown");
    assert!(
        line.contains("could not check") && line.contains("Forbidden"),
        "{line}"
    );
    assert!(fix.contains("allow get secrets/ecr in team-a"), "{fix}");
    assert_row(&run, "ServiceAccount team-a/default", "ok");

    h.kube.enforce_rules(vec![]);
    let run = doctor_via(&h, &registry, &image, &["--namespace", "team-a"]).await;
    let (_, fix) = assert_row(&run, "ServiceAccount team-a/default", "unknown");
    assert!(
        fix.contains("allow get serviceaccounts/default in team-a"),
        "{fix}"
    );
    // A real failure to reach the API server is a failure, not "unknown".
    h.kube
        .inject(Fault::status(500).resource("secrets").times(10));
    let run = doctor_via(&h, &registry, &image, &["--namespace", "team-a"]).await;
    assert_eq!(run.code, 1);
    assert_row(&run, "Secret team-a/ecr", "FAIL");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credentials_failure_gets_the_fix_for_its_cause() {
    // A broken profile file is not a missing source: the fix must say to fix it, as `doctor` does.
    let h = Harness::new(&[]).await;
    let config = h.dir.path().join("aws-config");
    std::fs::write(
        &config,
        "[profile dev]\nregion = eu-west-1\n  stray line\n[dev\n",
    )
    .unwrap();
    let mut env: Vec<(String, String)> = h
        .env_without_keys()
        .into_iter()
        .filter(|(k, _)| k != "AWS_CONFIG_FILE")
        .collect();
    env.push(("AWS_CONFIG_FILE".into(), config.display().to_string()));
    env.push(("AWS_PROFILE".into(), "dev".into()));
    let image = format!("{}/doctor/creds:v1", host(ACCOUNT));
    let run = h.run_env(&["doctor", "--image", &image], env).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let (line, fix) = assert_row(&run, "AWS credentials", "FAIL");
    assert!(line.contains(&config.display().to_string()), "{line}");
    assert!(
        fix.starts_with("fix: fix the source named above") && !fix.contains("set up one of"),
        "{line}\n{fix}"
    );
    assert_row(&run, "ECR token", "skip");
    assert!(h.aws.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_config_failure_gets_the_fix_for_its_cause() {
    let h = Harness::new(&["team-a"]).await;
    seed(ACCOUNT, "doctor/ctx", "v1", None).await;
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    let image = format!("{}/doctor/ctx:v1", host(ACCOUNT));
    let run = doctor_via(
        &h,
        &registry,
        &image,
        &["--namespace", "team-a", "--context", "no-such-context"],
    )
    .await;
    assert_eq!(run.code, 1);
    let (line, fix) = assert_row(&run, "Kubernetes config", "FAIL");
    assert!(
        line.contains("context 'no-such-context' does not exist"),
        "{line}"
    );
    assert_eq!(
        fix, "fix: pick one of the listed contexts with --context",
        "{line}"
    );
    assert_row(&run, "Secret team-a/ecr", "skip");
    assert!(h.kube.requests().is_empty());

    // An API server that never answers is given up on after the connection check's 5 s.
    let silent = fake_kube::SilentServer::start()
        .await
        .expect("listener starts");
    let hung = h.dir.path().join("hung-kubeconfig");
    std::fs::write(&hung, fake_kube::kubeconfig(&silent.url(), "default")).unwrap();
    let started = std::time::Instant::now();
    let run = doctor(
        &h,
        env_trusting(&h, &registry),
        &image,
        &registry.address(),
        &[
            "--namespace",
            "team-a",
            "--kubeconfig",
            hung.to_str().unwrap(),
        ],
    )
    .await;
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(15), "{took:?}");
    let (line, fix) = assert_row(&run, "Kubernetes API", "FAIL");
    assert!(line.contains("no answer within 5s"), "{line}");
    assert!(
        fix.starts_with("fix: check that the API server is up and reachable from here"),
        "{fix}"
    );
    assert_row(&run, "Secret team-a/ecr", "skip");
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_proxy_the_endpoint_is_not_checked_directly_and_not_failed() {
    let h = Harness::new(&[]).await;
    seed(ACCOUNT, "doctor/proxy", "v1", None).await;
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    let image = format!("{}/doctor/proxy:v1", host(ACCOUNT));
    let mut env = env_trusting(&h, &registry);
    // HTTPS only: the AWS calls go to moto over plain HTTP, which this does not divert.
    env.push((
        "HTTPS_PROXY".into(),
        "http://proxyuser:proxy-s3cret@proxy.invalid:3128".into(),
    ));
    env.push(("NO_PROXY".into(), "localhost,127.0.0.1".into()));
    let run = h.run_env(&["doctor", "--image", &image], env.clone()).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let (line, fix) = assert_row(&run, "Registry endpoint", "unknown");
    assert!(
        line.contains("goes through the proxy at proxy.invalid:3128; not checked"),
        "{line}"
    );
    assert!(fix.contains("--registry-address"), "{fix}");
    for out in [&run.stdout, &run.stderr] {
        assert!(
            !out.contains("proxy-s3cret") && !out.contains("proxyuser"),
            "{out}"
        );
    }
    // An explicit address asks for the direct path: it is checked, proxy or not.
    let run = h
        .run_env(
            &[
                "doctor",
                "--image",
                &image,
                "--registry-address",
                &registry.address(),
            ],
            env,
        )
        .await;
    assert_row(&run, "Registry endpoint", "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_image_flags_are_checked_before_anything_runs() {
    let h = Harness::new(&[]).await;
    let run = h
        .run(&[
            "doctor",
            "--image",
            "x.dkr.ecr/app",
            "--namespace",
            "Team_A",
        ])
        .await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("--namespace: 'Team_A'"),
        "{}",
        run.stderr
    );
    let run = h.run(&["doctor", "--namespace", "team-a"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--image"), "{}", run.stderr);
    assert!(h.aws.calls().is_empty() && h.kube.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn independent_problems_are_all_reported_in_one_run() {
    let h = Harness::new(&["team-a"]).await;
    seed(OTHER_ACCOUNT, "doctor/many", "v1", None).await;
    h.aws.fail(access_denied(
        "BatchGetImage",
        "ecr:BatchGetImage",
        "doctor/many",
        OTHER_ACCOUNT,
    ));
    // A Secret from a refresh that stopped running (moto's token expired in 2015).
    assert_eq!(
        h.run(&[
            "--namespaces",
            "team-a",
            "--registries",
            &host(OTHER_ACCOUNT)
        ])
        .await
        .code,
        0
    );
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    let image = format!("{}/doctor/many:v1", host(OTHER_ACCOUNT));
    let run = doctor_via(&h, &registry, &image, &["--namespace", "team-a"]).await;
    assert_eq!(run.code, 1);
    assert_row(&run, "Image exists", "ok");
    assert_row(&run, "Pull permission", "FAIL");
    assert_row(&run, "Registry endpoint", "ok");
    assert_row(&run, "Secret team-a/ecr", "FAIL");
    assert_row(&run, "ServiceAccount team-a/default", "warn");
}

/// Stores `manifest` under `tag` in moto and returns its digest.
async fn put_manifest(repo: &str, tag: &str, manifest: &Value) -> String {
    moto_ecr()
        .put_image()
        .repository_name(repo)
        .image_manifest(manifest.to_string())
        .image_tag(tag)
        .send()
        .await
        .expect("moto stores the manifest")
        .image()
        .and_then(|i| i.image_id())
        .and_then(|id| id.image_digest())
        .unwrap()
        .to_string()
}

fn index(platform: &str) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest("e"), "size": 566,
             "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": platform, "size": 1000,
             "platform": {"architecture": "amd64", "os": "linux"}}
        ]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_platform_image_is_followed_to_a_platform_and_its_layer() {
    let h = Harness::new(&[]).await;
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    // seed() stores a single-platform image under `amd64`; the index under `v1` names it.
    let platform = seed(ACCOUNT, "doctor/multi", "amd64", None).await;
    put_manifest("doctor/multi", "v1", &index(&platform)).await;
    let image = format!("{}/doctor/multi:v1", host(ACCOUNT));
    let run = doctor_via(&h, &registry, &image, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    let (line, _) = assert_row(&run, "Pull permission", "ok");
    assert!(
        line.contains(&format!("through the index's platform manifest {platform}")),
        "{line}"
    );
    let layer_calls = h
        .aws
        .calls()
        .iter()
        .filter(|c| c.operation == "GetDownloadUrlForLayer")
        .count();
    assert_eq!(layer_calls, 1);

    // An index whose platform manifest is gone: the image is broken, not forbidden.
    put_manifest("doctor/multi", "broken", &index(&digest("f"))).await;
    let image = format!("{}/doctor/multi:broken", host(ACCOUNT));
    let run = doctor_via(&h, &registry, &image, &[]).await;
    assert_eq!(run.code, 1);
    let (line, fix) = assert_row(&run, "Pull permission", "FAIL");
    assert!(
        line.contains(&format!(
            "the index names platform manifest {}",
            digest("f")
        )),
        "{line}"
    );
    assert!(fix.contains("push the image again"), "{fix}");
}

fn aws_fault(service: &str, operation: Option<&str>, status: u16, code: &str) -> AwsFault {
    AwsFault {
        operation: operation.map(String::from),
        service: Some(service.into()),
        status,
        code: code.into(),
        message: format!("injected {code}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_aws_does_not_accept_fail_the_credentials_row() {
    let h = Harness::new(&[]).await;
    seed(ACCOUNT, "doctor/expired", "v1", None).await;
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    let image = format!("{}/doctor/expired:v1", host(ACCOUNT));
    for (sts_code, ecr_code) in [
        ("InvalidClientTokenId", "UnrecognizedClientException"),
        ("ExpiredToken", "ExpiredTokenException"),
        ("SignatureDoesNotMatch", "InvalidSignatureException"),
    ] {
        h.aws.fail(aws_fault("sts", None, 403, sts_code));
        h.aws.fail_also(aws_fault("ecr", None, 400, ecr_code));
        let run = doctor_via(&h, &registry, &image, &[]).await;
        assert_eq!(run.code, 1, "{}", run.stdout);
        let (line, fix) = assert_row(&run, "AWS credentials", "FAIL");
        assert!(
            line.contains("invalid or expired") && line.contains(sts_code),
            "{line}"
        );
        // Keys from the environment: new keys, exported again.
        assert!(
            fix.contains("AWS_ACCESS_KEY_ID") && fix.contains("new"),
            "{fix}"
        );
        for later in [
            "ECR token",
            "Image exists",
            "Pull permission",
            "Registry endpoint",
        ] {
            assert_row(&run, later, "skip");
        }
        assert!(
            !run.stdout.contains("allow sts:GetCallerIdentity"),
            "{}",
            run.stdout
        );
        assert!(!run.stdout.contains("check the region"), "{}", run.stdout);
    }

    // Credentials from a profile: the fix names the profile's ways to renew.
    let creds = h.dir.path().join("aws-credentials");
    std::fs::write(
        &creds,
        format!("[dev]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"),
    )
    .unwrap();
    let mut env: Vec<(String, String)> = env_trusting(&h, &registry)
        .into_iter()
        .filter(|(k, _)| {
            !k.starts_with("AWS_ACCESS_KEY")
                && !k.starts_with("AWS_SECRET")
                && k != "AWS_SHARED_CREDENTIALS_FILE"
        })
        .collect();
    env.push((
        "AWS_SHARED_CREDENTIALS_FILE".into(),
        creds.display().to_string(),
    ));
    env.push(("AWS_PROFILE".into(), "dev".into()));
    h.aws.fail(aws_fault("sts", None, 403, "ExpiredToken"));
    let run = doctor(&h, env, &image, &registry.address(), &[]).await;
    let (_, fix) = assert_row(&run, "AWS credentials", "FAIL");
    assert!(
        fix.contains("aws sso login --profile dev") && fix.contains("credential_process"),
        "{fix}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aws_endpoint_that_never_answers_is_named_and_not_waited_on_twice() {
    let h = Harness::new(&[]).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut env = h.base_env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    env.push((
        "AWS_ENDPOINT_URL".into(),
        format!("http://{}", silent.local_addr().unwrap()),
    ));
    env.push(("ECR_REFRESHER_LOG_FORMAT".into(), "json".into()));
    let image = format!("{}/doctor/silent:v1", host(ACCOUNT));
    let started = std::time::Instant::now();
    let mut child = tokio::process::Command::new(BIN)
        .args(["doctor", "--image", &image])
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Rows come as they finish: the reference's row is out while AWS is still being waited on.
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("the first row comes before the AWS steps end")
        .unwrap()
        .expect("a first row");
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["check"], "Image");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first row was printed before the AWS steps finished"
    );
    let mut rows = vec![first];
    while let Some(line) = lines.next_line().await.unwrap() {
        rows.push(serde_json::from_str(&line).unwrap());
    }
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    let all = rows
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert_no_secrets(&all);
    // Before: four calls of 60 s each (the SDK's own budget), then a verdict about permissions.
    assert!(took < std::time::Duration::from_secs(40), "{took:?}\n{all}");
    assert_eq!(status.code(), Some(1), "{all}");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["check"].as_str().is_some_and(|c| c.starts_with(name)))
            .unwrap_or_else(|| panic!("no row {name}:\n{all}"))
            .clone()
    };
    let token = row("ECR token");
    assert_eq!(token["result"], "fail", "{all}");
    assert_eq!(token["code"], "timeout", "{all}");
    let fix = token["fix"].as_str().unwrap();
    assert!(
        fix.contains("NAT")
            && fix.contains("proxy")
            && fix.contains("com.amazonaws.us-east-1.ecr.api"),
        "{fix}"
    );
    for later in ["Image exists", "Pull permission"] {
        let r = row(later);
        assert_eq!(r["result"], "skip", "{all}");
        assert!(
            r["detail"].as_str().unwrap().contains("did not answer"),
            "{all}"
        );
    }
    assert_eq!(row("Registry endpoint")["result"], "skip", "{all}");
    assert!(!all.contains("allow ecr:"), "{all}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_caller_unknown_a_denied_pull_gets_both_fixes() {
    let h = Harness::new(&[]).await;
    seed(OTHER_ACCOUNT, "doctor/who", "v1", None).await;
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    let image = format!("{}/doctor/who:v1", host(OTHER_ACCOUNT));
    h.aws.fail(aws_fault(
        "sts",
        Some("GetCallerIdentity"),
        403,
        "AccessDenied",
    ));
    // A denial that does not name the caller: neither account is known.
    h.aws.fail_also(AwsFault {
        message: "Access denied".into(),
        ..access_denied(
            "BatchGetImage",
            "ecr:BatchGetImage",
            "doctor/who",
            OTHER_ACCOUNT,
        )
    });
    let run = doctor_via(&h, &registry, &image, &[]).await;
    assert_row(&run, "AWS identity", "unknown");
    let (line, fix) = assert_row(&run, "Pull permission", "FAIL");
    assert!(
        line.contains("caller") && line.contains("unknown"),
        "{line}"
    );
    assert!(
        fix.contains("repository policy")
            && fix.contains(OTHER_ACCOUNT)
            && fix.contains("AmazonEC2ContainerRegistryReadOnly"),
        "{fix}"
    );

    // A denial that names the caller (as AWS's do): its account decides, as with the identity.
    h.aws.fail(aws_fault(
        "sts",
        Some("GetCallerIdentity"),
        403,
        "AccessDenied",
    ));
    h.aws.fail_also(access_denied(
        "BatchGetImage",
        "ecr:BatchGetImage",
        "doctor/who",
        OTHER_ACCOUNT,
    ));
    let run = doctor_via(&h, &registry, &image, &[]).await;
    let (line, fix) = assert_row(&run, "Pull permission", "FAIL");
    assert!(line.contains("no repository policy"), "{line}");
    assert!(
        fix.contains(&format!("{ACCOUNT}:user/moto")) && fix.contains("add this statement"),
        "{fix}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_reads_that_never_answer_are_bounded_and_named() {
    let h = Harness::new(&["team-a"]).await;
    seed(ACCOUNT, "doctor/hung", "v1", None).await;
    list_ecr_in_sa(&h, "team-a");
    h.kube.inject(Fault::hang().resource("secrets"));
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    let image = format!("{}/doctor/hung:v1", host(ACCOUNT));
    let started = std::time::Instant::now();
    let run = doctor_via(&h, &registry, &image, &["--namespace", "team-a"]).await;
    let took = started.elapsed();
    // The client's own read timeout is 30 s.
    assert!(
        took < std::time::Duration::from_secs(25),
        "{took:?}\n{}",
        run.stdout
    );
    assert_eq!(run.code, 1, "{}", run.stdout);
    let (line, fix) = assert_row(&run, "Secret team-a/ecr", "FAIL");
    assert!(line.contains("no answer within 5 s"), "{line}");
    assert!(fix.contains("/readyz"), "{fix}");
    let (line, _) = assert_row(&run, "ServiceAccount team-a/default", "skip");
    assert!(line.contains("did not answer"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_never_worded_as_a_permission_problem() {
    let h = Harness::new(&[]).await;
    seed(ACCOUNT, "doctor/busy", "v1", None).await;
    let registry = registry(h.dir.path(), MOTO_PASSWORD);
    let image = format!("{}/doctor/busy:v1", host(ACCOUNT));
    h.aws.fail(aws_fault(
        "ecr",
        Some("GetAuthorizationToken"),
        400,
        "ThrottlingException",
    ));
    h.aws.fail_also(aws_fault(
        "ecr",
        Some("DescribeImages"),
        400,
        "ThrottlingException",
    ));
    let run = doctor_via(&h, &registry, &image, &[]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    for name in ["ECR token", "Image exists"] {
        let (line, fix) = assert_row(&run, name, "FAIL");
        assert!(line.contains("ThrottlingException"), "{line}");
        assert!(
            fix.contains("not a permission problem") && !fix.contains("allow "),
            "{fix}"
        );
    }
}
