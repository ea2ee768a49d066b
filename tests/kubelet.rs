//! The kubelet credential provider mode end to end: the binary is fed a
//! CredentialProviderRequest on stdin, as the kubelet does, with the environment a kubelet
//! passes, and answers against moto, the recording AWS front (which serves ECR Public itself)
//! and the Roles Anywhere verifier. Every stream is searched for secrets, the ServiceAccount
//! token included; stdout must hold exactly the one password it is meant to.

mod common;

use std::time::{Duration, Instant};

use common::ra::*;
use common::*;
use fake_kube::{
    AwsFault, ECR_PUBLIC_TOKEN_LIFE, IssuedCredentials, MetadataServer, SilentServer,
    ecr_public_password,
};
use serde_json::{Value, json};

const V1: &str = "credentialprovider.kubelet.k8s.io/v1";
const V1BETA1: &str = "credentialprovider.kubelet.k8s.io/v1beta1";
const V1ALPHA1: &str = "credentialprovider.kubelet.k8s.io/v1alpha1";
/// A ServiceAccount token as the kubelet would send it: must never reach any output.
const SA_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6dGVhbS1hOnB1bGxlciJ9.sa-token-signature-do-not-log";
const ROLE_ANNOTATION: &str = "eks.amazonaws.com/ecr-role-arn";
const OTHER_ACCOUNT: &str = "210987654321";
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn request(api_version: &str, image: &str) -> String {
    json!({"apiVersion": api_version, "kind": "CredentialProviderRequest", "image": image})
        .to_string()
}

fn sa_request(image: &str, annotations: Value) -> String {
    json!({
        "apiVersion": V1, "kind": "CredentialProviderRequest", "image": image,
        "serviceAccountToken": SA_TOKEN, "serviceAccountAnnotations": annotations,
    })
    .to_string()
}

/// Runs the plugin as the kubelet does: the subcommand from the config's args, the request on stdin.
async fn provide(h: &Harness, env: Vec<(String, String)>, stdin: &str) -> Run {
    provide_with(h, &[], env, stdin).await
}

async fn provide_with(h: &Harness, extra: &[&str], env: Vec<(String, String)>, stdin: &str) -> Run {
    let mut args = vec!["kubelet-credential-provider"];
    args.extend_from_slice(extra);
    let run = h.run_stdin(&args, env, stdin).await;
    check_streams(&run, None);
    run
}

/// No stream holds a secret it should not: stderr holds none at all, stdout at most the
/// one password the response carries.
fn check_streams(run: &Run, password: Option<&str>) {
    assert_no_secrets(&run.stderr);
    for out in [&run.stdout, &run.stderr] {
        assert!(
            !out.contains(SA_TOKEN),
            "the ServiceAccount token leaked:\n{out}"
        );
        assert!(
            !out.contains("sa-token-signature"),
            "the ServiceAccount token leaked:\n{out}"
        );
        assert!(
            !out.contains(SECRET_KEY),
            "the AWS secret key leaked:\n{out}"
        );
    }
    if let Some(pw) = password {
        assert_no_secrets(&run.stdout.replace(pw, "<the password>"));
    }
}

/// The one response on stdout, checked for the fields every response has.
fn response(run: &Run, api_version: &str) -> Value {
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "one JSON document on stdout: {}",
        run.stdout
    );
    let r: Value = serde_json::from_str(lines[0]).expect("the response is JSON");
    assert_eq!(r["apiVersion"], api_version);
    assert_eq!(r["kind"], "CredentialProviderResponse");
    assert_eq!(r["cacheKeyType"], "Registry");
    r
}

/// `(username, password)` of the response's only `auth` entry, which must be keyed by `host`.
fn auth(r: &Value, host: &str) -> (String, String) {
    let auth = r["auth"].as_object().expect("auth map");
    assert_eq!(auth.keys().collect::<Vec<_>>(), [host], "{r}");
    (
        auth[host]["username"].as_str().unwrap().to_string(),
        auth[host]["password"].as_str().unwrap().to_string(),
    )
}

/// Parses the Go duration strings the plugin writes (`11h45m0s`, `1m0s`).
fn go_seconds(s: &str) -> u64 {
    let mut total = 0;
    let mut n = String::new();
    for c in s.chars() {
        match c {
            '0'..='9' => n.push(c),
            'h' | 'm' | 's' => {
                let v: u64 = n.parse().unwrap_or_else(|_| panic!("bad duration {s}"));
                total += v * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                n.clear();
            }
            _ => panic!("bad duration {s}"),
        }
    }
    assert!(n.is_empty(), "bad duration {s}");
    total
}

fn ops(h: &Harness) -> Vec<String> {
    h.aws.calls().iter().map(|c| c.operation.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_in_the_api_version_it_was_sent() {
    let h = Harness::new(&[]).await;
    let host = registry("us-east-1");
    for version in [V1, V1BETA1, V1ALPHA1] {
        let run = provide(
            &h,
            h.base_env(),
            &request(version, &format!("{host}/team/app:v1")),
        )
        .await;
        let r = response(&run, version);
        check_streams(&run, Some(MOTO_PASSWORD));
        assert_eq!(
            auth(&r, &host),
            ("AWS".to_string(), MOTO_PASSWORD.to_string())
        );
        // moto's tokens expired in 2015: cached briefly, never as if valid.
        assert_eq!(r["cacheDuration"], "1m0s", "{r}");
        assert!(run.stderr.contains("credentials issued"), "{}", run.stderr);
    }
    // One token call per invocation, and nothing else: no caller lookup, no cluster.
    assert_eq!(ops(&h), ["GetAuthorizationToken"; 3]);
    assert!(
        h.aws
            .calls()
            .iter()
            .all(|c| c.access_key == ACCESS_KEY && c.region == "us-east-1")
    );
    assert!(
        h.kube.requests().is_empty(),
        "the plugin never talks to the cluster"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn china_fips_dual_stack_and_digest_references() {
    let h = Harness::new(&[]).await;
    let cases = [
        (
            format!("{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            format!("/team/app@{DIGEST}"),
            "cn-north-1",
        ),
        (
            format!("{ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.com"),
            "/app:1.2.3".to_string(),
            "us-gov-west-1",
        ),
        (
            format!("{ACCOUNT}.dkr-ecr.eu-west-1.on.aws"),
            format!("/app:v2@{DIGEST}"),
            "eu-west-1",
        ),
        (
            format!("{ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com"),
            "/no/tag".to_string(),
            "us-west-2",
        ),
    ];
    for (host, path, region) in &cases {
        let before = h.aws.calls().len();
        // The node's own region is us-east-1: the token call must go to the image's region.
        let run = provide(&h, h.base_env(), &request(V1, &format!("{host}{path}"))).await;
        let r = response(&run, V1);
        check_streams(&run, Some(MOTO_PASSWORD));
        assert_eq!(auth(&r, host).1, MOTO_PASSWORD);
        let calls = h.aws.calls()[before..].to_vec();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].operation, "GetAuthorizationToken");
        assert_eq!(
            (calls[0].service.as_str(), calls[0].region.as_str()),
            ("ecr", *region),
            "{host}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ecr_public_through_its_own_api_in_us_east_1() {
    let h = Harness::new(&[]).await;
    let mut env = h.base_env();
    // The node is elsewhere; ECR Public's token API is only in us-east-1.
    env.retain(|(k, _)| k != "AWS_REGION");
    env.push(("AWS_REGION".into(), "eu-west-1".into()));
    let image = format!("public.ecr.aws/docker/library/busybox:1.36@{DIGEST}");
    let run = provide(&h, env, &request(V1, &image)).await;
    let r = response(&run, V1);
    let password = ecr_public_password(ACCESS_KEY);
    check_streams(&run, Some(&password));
    assert_eq!(auth(&r, "public.ecr.aws"), ("AWS".to_string(), password));
    let calls = h.aws.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (
            calls[0].service.as_str(),
            calls[0].region.as_str(),
            calls[0].operation.as_str()
        ),
        ("ecr-public", "us-east-1", "GetAuthorizationToken")
    );
    // A real expiry (12 h) is cached until 15 minutes before it.
    let cached = go_seconds(r["cacheDuration"].as_str().unwrap());
    let want = ECR_PUBLIC_TOKEN_LIFE.as_secs() - 15 * 60;
    assert!((want - 60..=want).contains(&cached), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_mode_writes_the_ecr_public_entry() {
    let h = Harness::new(&["team-a"]).await;
    let private = registry("us-east-1");
    let run = h
        .run(&[
            "--namespaces",
            "team-a",
            "--registries",
            &format!("public.ecr.aws,{private}"),
        ])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let config = docker_config(&h.secret("team-a", "ecr").expect("Secret written"));
    assert_eq!(config["auths"][&private]["password"], MOTO_PASSWORD);
    assert_eq!(
        config["auths"]["public.ecr.aws"]["password"],
        ecr_public_password(ACCESS_KEY)
    );
    let mut services: Vec<String> = h
        .aws
        .calls()
        .iter()
        .map(|c| format!("{} {}", c.service, c.operation))
        .collect();
    // The two token calls are made together: either may reach the front first.
    services.sort();
    assert_eq!(
        services,
        [
            "ecr GetAuthorizationToken",
            "ecr-public GetAuthorizationToken"
        ]
    );
    // ECR Public alone: no default private registry, so no caller lookup.
    let h = Harness::new(&["team-a"]).await;
    let run = h
        .run(&["--namespaces", "team-a", "--registries", "public.ecr.aws"])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let config = docker_config(&h.secret("team-a", "ecr").unwrap());
    assert_eq!(config["auths"].as_object().unwrap().len(), 1, "{config}");
    assert_eq!(ops(&h), ["GetAuthorizationToken"]);
    assert!(run.stderr.contains("public.ecr.aws"), "{}", run.stderr);
    // doctor checks the ECR Public token, and no default private registry.
    let run = h
        .run(&[
            "doctor",
            "--namespaces",
            "team-a",
            "--registries",
            "public.ecr.aws",
        ])
        .await;
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("ECR Public token"));
    assert!(
        line.is_some_and(|l| l.contains(" ok ") && l.contains("public.ecr.aws")),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("ECR token us-east-1"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn images_outside_ecr_are_refused_by_name_without_a_call() {
    let h = Harness::new(&[]).await;
    for image in [
        "nginx:1.25".to_string(),
        "docker.io/library/nginx:1.25".to_string(),
        "ghcr.io/org/app:v1".to_string(),
        format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com.evil.example/app"),
        "gallery.ecr.aws/app".to_string(),
        "localhost:5000/app".to_string(),
    ] {
        let run = provide(&h, h.base_env(), &request(V1, &image)).await;
        assert_eq!(run.code, 2, "{image}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{image}: {}", run.stdout);
        assert!(
            run.stderr.contains(&format!("'{image}'")),
            "names the image: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("matchImages"),
            "says what to fix: {}",
            run.stderr
        );
    }
    // Malformed requests are named too.
    let bad = [
        (
            request("credentialprovider.kubelet.k8s.io/v2", "public.ecr.aws/a/b"),
            "apiVersion 'credentialprovider.kubelet.k8s.io/v2'",
        ),
        ("{\"apiVersion\":".to_string(), "invalid JSON"),
        (
            json!({"apiVersion": V1, "kind": "CredentialProviderRequest"}).to_string(),
            "names no image",
        ),
    ];
    for (body, want) in bad {
        let run = provide(&h, h.base_env(), &body).await;
        assert_eq!(run.code, 2, "{body}");
        assert!(run.stderr.contains(want), "{body}: {}", run.stderr);
    }
    let run = provide(
        &h,
        h.base_env(),
        &request(V1, &format!("{}/App", registry("us-east-1"))),
    )
    .await;
    assert!(run.stderr.contains("repository 'App'"), "{}", run.stderr);
    assert!(h.aws.calls().is_empty(), "{:?}", h.aws.calls());
}

#[tokio::test(flavor = "multi_thread")]
async fn no_credentials_fails_fast_and_says_what_was_tried() {
    let h = Harness::new(&[]).await;
    let started = Instant::now();
    let image = format!("{}/app", registry("us-east-1"));
    let run = provide(&h, h.env_without_keys(), &request(V1, &image)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.contains("no AWS credentials found"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("EC2 instance metadata"),
        "{}",
        run.stderr
    );
    assert!(h.aws.calls().is_empty());
    // No cluster setting is needed, and a bad AWS flag is still named.
    let run = provide_with(
        &h,
        &["--region", "mars"],
        h.base_env(),
        &request(V1, &image),
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--region: 'mars'"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_token_call_is_retried_then_reported() {
    let h = Harness::new(&[]).await;
    let throttle = || AwsFault {
        operation: Some("GetAuthorizationToken".into()),
        service: None,
        status: 400,
        code: "ThrottlingException".into(),
        message: "Rate exceeded".into(),
    };
    let image = format!("{}/app:v1", registry("us-east-1"));
    h.aws.fail_times(throttle(), 2);
    let run = provide(&h, h.base_env(), &request(V1, &image)).await;
    let r = response(&run, V1);
    check_streams(&run, Some(MOTO_PASSWORD));
    assert_eq!(auth(&r, &registry("us-east-1")).1, MOTO_PASSWORD);
    assert_eq!(
        ops(&h),
        ["GetAuthorizationToken"; 3],
        "two throttled, the third answered"
    );

    h.aws.fail(throttle());
    let run = provide(&h, h.base_env(), &request(V1, &image)).await;
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty(), "no half answer: {}", run.stdout);
    assert!(run.stderr.contains("Rate exceeded"), "{}", run.stderr);
    assert!(
        run.stderr.contains("GetAuthorizationToken in us-east-1"),
        "{}",
        run.stderr
    );
    assert_eq!(ops(&h).len(), 3 + 4, "four attempts, then the error");
}

/// The hand-made ECR Public call classifies failures as the SDK did: throttling is retried
/// (four attempts in all) and, when it outlasts them, is an outage (exit 3); a denial is not
/// retried and needs a person (exit 2). No Secret is written without its token.
#[tokio::test(flavor = "multi_thread")]
async fn ecr_public_throttling_is_retried_and_a_denial_is_not() {
    let h = Harness::new(&["team-a"]).await;
    let fault = |code: &str, message: &str| AwsFault {
        operation: Some("GetAuthorizationToken".into()),
        service: Some("ecr-public".into()),
        status: 400,
        code: code.into(),
        message: message.into(),
    };
    let args = ["--namespaces", "team-a", "--registries", "public.ecr.aws"];

    h.aws.fail(fault("ThrottlingException", "Rate exceeded"));
    let run = h.run(&args).await;
    assert_eq!(run.code, 3, "an outage: {}", run.stderr);
    assert!(run.stderr.contains("ECR Public"), "{}", run.stderr);
    assert!(run.stderr.contains("Rate exceeded"), "{}", run.stderr);
    assert_eq!(ops(&h), ["GetAuthorizationToken"; 4], "four attempts");
    assert!(h.secret("team-a", "ecr").is_none());
    assert_no_secrets(&run.stderr);

    h.aws.fail(fault(
        "AccessDeniedException",
        "not authorized to perform ecr-public:GetAuthorizationToken",
    ));
    let run = h.run(&args).await;
    assert_eq!(run.code, 2, "a person must act: {}", run.stderr);
    assert!(
        run.stderr.contains("AccessDeniedException"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("sts:GetServiceBearerToken"),
        "{}",
        run.stderr
    );
    assert_eq!(ops(&h).len(), 4 + 1, "a denial is not retried");
    assert!(h.secret("team-a", "ecr").is_none());
    assert_no_secrets(&run.stderr);

    h.aws.clear_fault();
    h.aws
        .fail_times(fault("ThrottlingException", "Rate exceeded"), 2);
    let run = h.run(&args).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(ops(&h).len(), 5 + 3, "two throttled, the third answered");
    let config = docker_config(&h.secret("team-a", "ecr").expect("Secret written"));
    assert_eq!(
        config["auths"]["public.ecr.aws"]["password"],
        ecr_public_password(ACCESS_KEY)
    );
    assert_no_secrets(&run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_account_role_in_another_account_pulls_with_that_account() {
    let h = Harness::new(&[]).await;
    let role = format!("arn:aws:iam::{OTHER_ACCOUNT}:role/team-a-pull");
    let host = format!("{OTHER_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com");
    let body = sa_request(
        &format!("{host}/team-a/app:v1"),
        json!({ROLE_ANNOTATION: role}),
    );
    // The node has its own keys too: the ServiceAccount's role must win.
    let run = provide(&h, h.base_env(), &body).await;
    let r = response(&run, V1);
    let password = format!("{OTHER_ACCOUNT}-auth-token");
    check_streams(&run, Some(&password));
    assert_eq!(
        auth(&r, &host).1,
        password,
        "moto's password names the account that asked"
    );
    let calls = h.aws.calls();
    assert_eq!(
        ops(&h),
        ["AssumeRoleWithWebIdentity", "GetAuthorizationToken"],
        "{calls:?}"
    );
    assert_eq!(
        calls[0].access_key, "",
        "AssumeRoleWithWebIdentity is unsigned"
    );
    assert_eq!(calls[0].region, "", "unsigned: no credential scope");
    assert_ne!(
        calls[1].access_key, ACCESS_KEY,
        "signed with the role's session"
    );
    assert_eq!(calls[1].region, "eu-west-1");
    assert!(
        run.stderr.contains(&role),
        "the log names the role: {}",
        run.stderr
    );

    // ECR Public with the role too.
    let before = h.aws.calls().len();
    let body = sa_request(
        "public.ecr.aws/team-a/tool:1",
        json!({ROLE_ANNOTATION: role}),
    );
    let run = provide(&h, h.base_env(), &body).await;
    let r = response(&run, V1);
    let session_key = h.aws.calls()[before + 1].access_key.clone();
    let password = ecr_public_password(&session_key);
    check_streams(&run, Some(&password));
    assert_eq!(auth(&r, "public.ecr.aws").1, password);
    assert_ne!(session_key, ACCESS_KEY);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_account_without_a_role_falls_back_to_the_node() {
    let h = Harness::new(&[]).await;
    let host = registry("us-east-1");
    let role = format!("arn:aws:iam::{OTHER_ACCOUNT}:role/team-a-pull");
    // A token but no annotation; then the role under a key the plugin was not told to read,
    // with ECR_REFRESHER_REQUIRE_ROLE spelt out as the shipped example does ("false").
    let mut explicit = h.base_env();
    explicit.push(("ECR_REFRESHER_REQUIRE_ROLE".into(), "false".into()));
    for (annotations, env) in [
        (json!({}), h.base_env()),
        (json!({"example.com/pull-role": role}), explicit),
    ] {
        let run = provide(&h, env, &sa_request(&format!("{host}/app"), annotations)).await;
        let r = response(&run, V1);
        check_streams(&run, Some(MOTO_PASSWORD));
        assert_eq!(auth(&r, &host).1, MOTO_PASSWORD);
    }
    assert_eq!(
        ops(&h),
        ["GetAuthorizationToken"; 2],
        "no STS call for the node identity"
    );
    assert!(h.aws.calls().iter().all(|c| c.access_key == ACCESS_KEY));
    // The annotation key is configurable, by flag or by the environment the kubelet passes.
    let body = sa_request(
        &format!("{host}/app"),
        json!({"example.com/pull-role": role}),
    );
    let run = provide_with(
        &h,
        &["--role-annotation", "example.com/pull-role"],
        h.base_env(),
        &body,
    )
    .await;
    assert_eq!(
        auth(&response(&run, V1), &host).1,
        format!("{OTHER_ACCOUNT}-auth-token")
    );
    let mut env = h.base_env();
    env.push((
        "ECR_REFRESHER_ROLE_ANNOTATION".into(),
        "example.com/pull-role".into(),
    ));
    let run = provide(&h, env, &body).await;
    assert_eq!(
        auth(&response(&run, V1), &host).1,
        format!("{OTHER_ACCOUNT}-auth-token")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn require_role_refuses_the_node_identity() {
    let h = Harness::new(&[]).await;
    let host = registry("us-east-1");
    let mut env = h.base_env();
    env.push(("ECR_REFRESHER_REQUIRE_ROLE".into(), "true".into()));
    for body in [
        sa_request(&format!("{host}/app"), json!({})),
        request(V1, &format!("{host}/app")),
    ] {
        let run = provide(&h, env.clone(), &body).await;
        assert_eq!(run.code, 2, "{}", run.stdout);
        assert!(run.stdout.is_empty());
        assert!(run.stderr.contains("--require-role"), "{}", run.stderr);
        assert!(run.stderr.contains(ROLE_ANNOTATION), "{}", run.stderr);
    }
    // A bad role ARN in the annotation is named, not tried.
    let run = provide(
        &h,
        h.base_env(),
        &sa_request(
            &format!("{host}/app"),
            json!({ROLE_ANNOTATION: "team-a-pull"}),
        ),
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("'team-a-pull'"), "{}", run.stderr);
    assert!(h.aws.calls().is_empty(), "{:?}", h.aws.calls());
    // With a role, the same setting pulls.
    let role = format!("arn:aws:iam::{OTHER_ACCOUNT}:role/team-a-pull");
    let run = provide(
        &h,
        env,
        &sa_request(&format!("{host}/app"), json!({ROLE_ANNOTATION: role})),
    )
    .await;
    assert_eq!(
        auth(&response(&run, V1), &host).1,
        format!("{OTHER_ACCOUNT}-auth-token")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sts_refusal_is_reported_with_the_role() {
    let h = Harness::new(&[]).await;
    h.aws.fail(AwsFault {
        operation: Some("AssumeRoleWithWebIdentity".into()),
        service: None,
        status: 400,
        code: "InvalidIdentityToken".into(),
        message: "Incorrect token audience".into(),
    });
    let role = format!("arn:aws:iam::{OTHER_ACCOUNT}:role/team-a-pull");
    let body = sa_request(
        &format!("{}/app", registry("us-east-1")),
        json!({ROLE_ANNOTATION: role}),
    );
    let run = provide(&h, h.base_env(), &body).await;
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.contains("Incorrect token audience"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&role) && run.stderr.contains("trust policy"),
        "{}",
        run.stderr
    );
    assert_eq!(
        ops(&h),
        ["AssumeRoleWithWebIdentity"],
        "no token call with the node's keys instead"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_anywhere_is_the_node_identity_off_aws() {
    let h = Harness::new(&[]).await;
    let server = RaServer::start(h.dir.path());
    let mut env = h.env_without_keys();
    for (k, v) in [
        ("ECR_REFRESHER_RA_CERTIFICATE", pem("p256.crt")),
        ("ECR_REFRESHER_RA_PRIVATE_KEY", pem("p256.pkcs8.pem")),
        ("ECR_REFRESHER_RA_INTERMEDIATES", pem("intermediate.crt")),
        ("ECR_REFRESHER_RA_TRUST_ANCHOR_ARN", TA.to_string()),
        ("ECR_REFRESHER_RA_PROFILE_ARN", PROFILE.to_string()),
        ("ECR_REFRESHER_RA_ROLE_ARN", ROLE.to_string()),
        ("ECR_REFRESHER_RA_ENDPOINT", server.url.clone()),
    ] {
        env.push((k.to_string(), v));
    }
    let host = registry("us-east-1");
    for image in [
        format!("{host}/app:v1"),
        "public.ecr.aws/team/tool".to_string(),
    ] {
        let run = provide(&h, env.clone(), &request(V1, &image)).await;
        let r = response(&run, V1);
        let key = if image.starts_with("public") {
            "public.ecr.aws"
        } else {
            host.as_str()
        };
        let password = if image.starts_with("public") {
            ecr_public_password(RA_KEY_ID)
        } else {
            MOTO_PASSWORD.to_string()
        };
        check_streams(&run, Some(&password));
        assert_eq!(auth(&r, key).1, password);
        assert!(run.stderr.contains("IAM Roles Anywhere"), "{}", run.stderr);
    }
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "one CreateSession per invocation");
    assert!(reqs.iter().all(|r| r["result"] == "accepted"));
    assert!(
        h.aws.calls().iter().all(|c| c.access_key == RA_KEY_ID),
        "{:?}",
        h.aws.calls()
    );
}

// ---- Deadlines, IMDS at boot, partitions and FIPS (issue 16) ----

/// The test-only override of the plugin's deadline, in seconds.
const TEST_DEADLINE: &str = "ECR_REFRESHER_TEST_KUBELET_DEADLINE_SECS";

/// What every no-answer error must say: the endpoint, and network things to check, never the
/// trust policy (nothing was refused).
fn assert_network_worded(run: &Run, endpoint: &str, secs: u64) {
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let want = format!("no answer from {endpoint} within {secs} s");
    assert!(run.stderr.contains(&want), "{want}: {}", run.stderr);
    for what in ["HTTPS_PROXY", "NAT gateway", "VPC endpoint"] {
        assert!(run.stderr.contains(what), "{what}: {}", run.stderr);
    }
    assert!(!run.stderr.contains("trust policy"), "{}", run.stderr);
}

/// The real deadline, STS then ECR sharing it: STS answers, ECR never does. The kubelet kills
/// the plugin at 60 s, so the answer must come well before.
#[tokio::test(flavor = "multi_thread")]
async fn one_deadline_well_under_the_kubelets_minute() {
    let h = Harness::new(&[]).await;
    let silent = SilentServer::start().await.expect("listener starts");
    let mut env = h.base_env();
    env.push(("AWS_ENDPOINT_URL_ECR".into(), silent.url()));
    let role = format!("arn:aws:iam::{OTHER_ACCOUNT}:role/team-a-pull");
    let body = sa_request(
        &format!("{}/app", registry("us-east-1")),
        json!({ROLE_ANNOTATION: role}),
    );
    let started = Instant::now();
    let run = provide(&h, env, &body).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(50), "took {took:?}");
    assert!(took > Duration::from_secs(30), "gave up early: {took:?}");
    let endpoint = silent.url().trim_start_matches("http://").to_string();
    assert_network_worded(&run, &endpoint, 45);
    assert_eq!(ops(&h), ["AssumeRoleWithWebIdentity"], "STS answered first");
    assert!(silent.connections() >= 2, "short attempts, retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unanswering_sts_or_ecr_is_named_with_what_to_check() {
    let h = Harness::new(&[]).await;
    let silent = SilentServer::start().await.expect("listener starts");
    let endpoint = silent.url().trim_start_matches("http://").to_string();
    let role = format!("arn:aws:iam::{OTHER_ACCOUNT}:role/team-a-pull");
    let image = format!("{}/app", registry("us-east-1"));
    let cases = [
        // The node's keys, ECR silent.
        ("AWS_ENDPOINT_URL", request(V1, &image)),
        // A ServiceAccount role, STS silent: not a trust-policy problem.
        (
            "AWS_ENDPOINT_URL_STS",
            sa_request(&image, json!({ROLE_ANNOTATION: role})),
        ),
    ];
    for (variable, body) in cases {
        let mut env = h.base_env();
        env.push((variable.into(), silent.url()));
        env.push((TEST_DEADLINE.into(), "4".into()));
        let started = Instant::now();
        let run = provide(&h, env, &body).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(4) && took < Duration::from_secs(8),
            "{variable}: took {took:?}"
        );
        assert_network_worded(&run, &endpoint, 4);
    }
    assert!(h.aws.calls().is_empty(), "{:?}", h.aws.calls());
}

/// On a node IMDS is the usual source, and while many pods start it may fail an answer: the
/// plugin asks again, as the SDK does, instead of reporting "no AWS credentials".
#[tokio::test(flavor = "multi_thread")]
async fn imds_is_asked_again_in_plugin_mode() {
    let h = Harness::new(&[]).await;
    let imds = MetadataServer::start(
        IssuedCredentials {
            access_key_id: "ASIAIMDSNODE".into(),
            secret_access_key: "imds-secret-do-not-log".into(),
            session_token: "session-token-value".into(),
        },
        "unused",
    )
    .await
    .expect("IMDS starts");
    let mut env: Vec<(String, String)> = h
        .env_without_keys()
        .into_iter()
        .filter(|(k, _)| k != "AWS_EC2_METADATA_DISABLED")
        .collect();
    env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), imds.url()));
    imds.fail_next(1);
    let host = registry("us-east-1");
    let run = provide(&h, env.clone(), &request(V1, &format!("{host}/app"))).await;
    let r = response(&run, V1);
    check_streams(&run, Some(MOTO_PASSWORD));
    assert!(!run.stderr.contains("imds-secret"), "{}", run.stderr);
    assert_eq!(auth(&r, &host).1, MOTO_PASSWORD);
    let hits = imds.hits();
    assert_eq!(hits[0], "PUT /latest/api/token 503", "{hits:?}");
    assert!(
        hits[1..].contains(&"PUT /latest/api/token".to_string()),
        "{hits:?}"
    );
    assert!(h.aws.calls().iter().all(|c| c.access_key == "ASIAIMDSNODE"));

    // A laptop run (refresh, doctor) still probes IMDS once, and fast.
    imds.fail_next(1);
    let before = imds.hits().len();
    let run = h
        .run_env(
            &[
                "--namespaces",
                "x",
                "--dry-run",
                "--credentials-source",
                "imds",
            ],
            env,
        )
        .await;
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert_eq!(imds.hits().len() - before, 1, "{:?}", imds.hits());
}

/// Off EC2 with no credentials configured, IMDS never answers: that is still "no
/// credentials", with every source tried, not a network problem to chase.
#[tokio::test(flavor = "multi_thread")]
async fn no_credentials_off_ec2_lists_the_sources_tried() {
    let h = Harness::new(&[]).await;
    let silent = SilentServer::start().await.expect("listener starts");
    let mut env: Vec<(String, String)> = h
        .env_without_keys()
        .into_iter()
        .filter(|(k, _)| k != "AWS_EC2_METADATA_DISABLED")
        .collect();
    env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), silent.url()));
    let started = Instant::now();
    let run = provide(
        &h,
        env,
        &request(V1, &format!("{}/app", registry("us-east-1"))),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("no AWS credentials found"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("EC2 instance metadata"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("no answer from"), "{}", run.stderr);
    assert!(silent.connections() >= 1, "IMDS was asked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_of_another_partition_is_refused_before_any_call() {
    let h = Harness::new(&[]).await;
    let role = "arn:aws-cn:iam::123456789012:role/team-a-pull";
    let host = registry("us-east-1");
    let run = provide(
        &h,
        h.base_env(),
        &sa_request(&format!("{host}/app"), json!({ROLE_ANNOTATION: role})),
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stdout.is_empty());
    for want in [role, "aws-cn", host.as_str(), "partition aws"] {
        assert!(run.stderr.contains(want), "{want}: {}", run.stderr);
    }
    assert!(!run.stderr.contains("trust policy"), "{}", run.stderr);
    assert!(h.aws.calls().is_empty(), "{:?}", h.aws.calls());
}

/// Which STS endpoint the plugin picks, seen through the front used as the HTTPS proxy (it
/// logs the CONNECT target and refuses to tunnel): FIPS for a FIPS registry.
#[tokio::test(flavor = "multi_thread")]
async fn a_fips_registry_uses_the_sts_fips_endpoint() {
    let h = Harness::new(&[]).await;
    let role = format!("arn:aws:iam::{OTHER_ACCOUNT}:role/team-a-pull");
    for (host, sts) in [
        (
            format!("{ACCOUNT}.dkr.ecr-fips.us-east-1.amazonaws.com"),
            "sts-fips.us-east-1.amazonaws.com:443",
        ),
        (
            format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"),
            "sts.us-east-1.amazonaws.com:443",
        ),
    ] {
        let before = h.aws.calls().len();
        let mut env: Vec<(String, String)> = h
            .base_env()
            .into_iter()
            .filter(|(k, _)| k != "AWS_ENDPOINT_URL")
            .collect();
        env.push(("HTTPS_PROXY".into(), h.aws.url()));
        env.push((TEST_DEADLINE.into(), "10".into()));
        let body = sa_request(&format!("{host}/app"), json!({ROLE_ANNOTATION: role}));
        let run = provide(&h, env, &body).await;
        assert_eq!(run.code, 2, "the front does not tunnel: {}", run.stdout);
        let hosts: Vec<String> = h.aws.calls()[before..]
            .iter()
            .map(|c| c.host.clone())
            .collect();
        assert!(!hosts.is_empty(), "{}", run.stderr);
        assert!(hosts.iter().all(|h| h == sts), "{host}: {hosts:?}");
    }
}

// ---- The shipped CredentialProviderConfig examples ----

fn example(name: &str) -> Value {
    let path = format!("{}/manifests/kubelet/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path} parses: {e}"))
}

/// The kubelet's matchImages rule: the pattern's host and the image's host have the same
/// number of dot-separated parts and each part matches as a glob (`*` any run of characters,
/// `?` one); a port in the pattern must equal the image's; the pattern's path must prefix the
/// image's.
fn kubelet_matches(pattern: &str, image: &str) -> bool {
    fn glob(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
            (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
            _ => false,
        }
    }
    fn split(s: &str) -> (&str, Option<&str>, &str) {
        let (authority, path) = s.split_once('/').map_or((s, ""), |(a, p)| (a, p));
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        (host, port, path)
    }
    assert!(
        !pattern.contains('['),
        "character classes are not modelled here: {pattern}"
    );
    let (p_host, p_port, p_path) = split(pattern);
    let (i_host, i_port, i_path) = split(image);
    let (pp, ip): (Vec<&str>, Vec<&str>) =
        (p_host.split('.').collect(), i_host.split('.').collect());
    pp.len() == ip.len()
        && pp
            .iter()
            .zip(&ip)
            .all(|(p, i)| glob(p.as_bytes(), i.as_bytes()))
        && p_port.is_none_or(|p| Some(p) == i_port)
        && i_path.starts_with(p_path)
}

#[test]
fn the_glob_model_follows_the_kubelets_documented_examples() {
    assert!(kubelet_matches("*.k8s.io", "abc.k8s.io/app"));
    assert!(kubelet_matches("k8s.*.io", "k8s.example.io"));
    assert!(kubelet_matches("k8s.*", "k8s.io/x"));
    assert!(!kubelet_matches("app*.k8s.io", "api.k8s.io/x"));
    assert!(kubelet_matches("a*.k8s.io", "api.k8s.io/x"));
    assert!(
        !kubelet_matches("*.io", "abc.k8s.io/x"),
        "one part per glob"
    );
    assert!(kubelet_matches(
        "registry.io:8080/path",
        "registry.io:8080/path/app"
    ));
    assert!(!kubelet_matches(
        "registry.io:8080/path",
        "registry.io:5000/path/app"
    ));
    assert!(!kubelet_matches("registry.io/path", "registry.io/other"));
}

/// One image per partition and endpoint form the plugin serves.
fn partition_samples() -> Vec<String> {
    [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1",
        "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com/app",
        "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/app:v1",
        "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/team/app",
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app:v1",
        "123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn/app",
        "123456789012.dkr-ecr.us-east-1.on.aws/app:v1",
        "123456789012.dkr-ecr-fips.us-gov-east-1.on.aws/app",
        "123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn/app",
        "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu/app",
        "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov/app",
        "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov/app",
        "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk/app",
        "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov/app",
        "public.ecr.aws/docker/library/busybox:1.36",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!(
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app@{DIGEST}"
    )])
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_configs_match_every_partition_and_run_as_shipped() {
    let h = Harness::new(&[]).await;
    let help = h.run(&["--help"]).await.stdout;
    for file in [
        "credential-provider-config.yaml",
        "service-account-tokens.yaml",
        "service-account-tokens-1.33.yaml",
    ] {
        let config = example(file);
        assert_eq!(config["apiVersion"], "kubelet.config.k8s.io/v1", "{file}");
        assert_eq!(config["kind"], "CredentialProviderConfig", "{file}");
        let providers = config["providers"].as_array().expect("providers");
        assert_eq!(providers.len(), 1, "{file}");
        let p = &providers[0];
        // The kubelet runs the file named after the provider from its bin dir.
        assert_eq!(p["name"], "ecr-secret-refresher", "{file}");
        assert_eq!(p["apiVersion"], V1, "{file}");
        let default_cache = go_seconds(
            p["defaultCacheDuration"]
                .as_str()
                .expect("defaultCacheDuration"),
        );
        assert!(
            default_cache > 0 && default_cache < 12 * 3600,
            "{file}: under the token's 12 h"
        );
        let patterns: Vec<&str> = p["matchImages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();

        for image in partition_samples() {
            assert!(
                patterns.iter().any(|pat| kubelet_matches(pat, &image)),
                "{file}: nothing matches {image}"
            );
            // And the plugin accepts every image the config sends it: the same image answers.
            let host = image.split('/').next().unwrap();
            assert!(
                host == "public.ecr.aws"
                    || host
                        .parse::<ecr_secret_refresher::aws::registry::Registry>()
                        .is_ok(),
                "{file}: {host} matches but the plugin would refuse it"
            );
        }
        for image in [
            "docker.io/library/nginx:1.25",
            "ghcr.io/org/app:v1",
            "quay.io/org/app",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example/app",
            "evil.public.ecr.aws/app",
            "public.ecr.aws.evil.example/app",
        ] {
            assert!(
                !patterns.iter().any(|pat| kubelet_matches(pat, image)),
                "{file}: {image} should not match"
            );
        }

        // The env names are the binary's own variables, and the args and env run as shipped.
        let env_entries = p["env"].as_array().cloned().unwrap_or_default();
        for e in &env_entries {
            let name = e["name"].as_str().unwrap();
            assert!(
                help.contains(&format!("[env: {name}=")),
                "{file}: the binary has no {name}"
            );
        }
        let args: Vec<String> = p["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let server = RaServer::start(h.dir.path());
        // The servers of both files log to the same file.
        let sessions_before = server.requests().len();
        let mut env = h.env_without_keys();
        for e in env_entries {
            let (name, value) = (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            );
            // Point the node-specific values at the test PKI and server; keep every other value.
            let value = match name.as_str() {
                "ECR_REFRESHER_RA_CERTIFICATE" => pem("p384.bundle.crt"),
                "ECR_REFRESHER_RA_PRIVATE_KEY" => pem("p384.pkcs8.pem"),
                "ECR_REFRESHER_RA_TRUST_ANCHOR_ARN" => TA.to_string(),
                "ECR_REFRESHER_RA_PROFILE_ARN" => PROFILE.to_string(),
                "ECR_REFRESHER_RA_ROLE_ARN" => ROLE.to_string(),
                _ => value,
            };
            env.push((name, value));
        }
        let uses_ra = env.iter().any(|(k, _)| k.starts_with("ECR_REFRESHER_RA_"));
        if uses_ra {
            env.push(("ECR_REFRESHER_RA_ENDPOINT".into(), server.url.clone()));
        } else {
            env = h
                .base_env()
                .into_iter()
                .chain(
                    env.into_iter()
                        .filter(|(k, _)| k.starts_with("ECR_REFRESHER_")),
                )
                .collect();
        }
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let image = format!("{}/app:v1", registry("us-east-1"));
        let body = if p.get("tokenAttributes").is_some() {
            let attrs = &p["tokenAttributes"];
            // Kubelet 1.34 requires cacheType; 1.33's strict decoder refuses it.
            if file.contains("1.33") {
                assert!(attrs.get("cacheType").is_none(), "{file}");
            } else {
                assert_eq!(attrs["cacheType"], "ServiceAccount", "{file}");
            }
            let keys = attrs["optionalServiceAccountAnnotationKeys"]
                .as_array()
                .unwrap();
            assert!(
                keys.iter().any(|k| k == ROLE_ANNOTATION),
                "{file}: the role annotation is sent"
            );
            // The shipped RBAC lets the nodes ask for exactly this audience.
            let rbac = std::fs::read_to_string(format!(
                "{}/manifests/kubelet/audience-rbac.yaml",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            let docs: Vec<Value> = serde_saphyr::from_multiple(&rbac).unwrap();
            let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
            assert_eq!(
                role["rules"][0]["resources"][0],
                attrs["serviceAccountTokenAudience"]
            );
            assert_eq!(
                role["rules"][0]["verbs"][0],
                "request-serviceaccounts-token-audience"
            );
            let binding = docs.iter().find(|d| d["kind"] == "ClusterRoleBinding");
            assert_eq!(binding.unwrap()["subjects"][0]["name"], "system:nodes");
            sa_request(
                &image,
                json!({ROLE_ANNOTATION: format!("arn:aws:iam::{OTHER_ACCOUNT}:role/r")}),
            )
        } else {
            request(V1, &image)
        };
        let run = h.run_stdin(&arg_refs, env, &body).await;
        let r = response(&run, V1);
        let want = if p.get("tokenAttributes").is_some() {
            format!("{OTHER_ACCOUNT}-auth-token")
        } else {
            MOTO_PASSWORD.to_string()
        };
        check_streams(&run, Some(&want));
        assert_eq!(auth(&r, &registry("us-east-1")).1, want, "{file}");
        assert_eq!(
            server.requests().len() - sessions_before,
            usize::from(uses_ra),
            "{file}"
        );
    }
}
