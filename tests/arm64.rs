//! The arm64 release binary, run under qemu-user on an amd64 machine, against the same local
//! servers as the other tests: it must answer exactly as the amd64 build does (kubelet mode,
//! refresh, `doctor --image` over TLS), so what ships for arm64 nodes is tested, not just built.
//!
//! Driven by the environment, as scripts/test sets it:
//! - `ECR_REFRESHER_ARM64_BIN`: the aarch64 binary (scripts/release arm64 builds it);
//! - `ECR_REFRESHER_ARM64_RUNNER`: what runs it, `qemu-aarch64-static` unless set; set it empty
//!   on an arm64 machine to run the binary directly;
//! - `ECR_REFRESHER_ARM64_SKIP`: a reason, when the binary could not be built. Each test then
//!   prints the reason and returns.
//!
//! With none of them set, every test fails and says how to run it: a test run that never saw
//! the arm64 binary must not look like one that passed.

mod common;

use common::stand_in::{Registry, seed_image};
use common::*;
use serde_json::{Value, json};

const BIN_VAR: &str = "ECR_REFRESHER_ARM64_BIN";
const RUNNER_VAR: &str = "ECR_REFRESHER_ARM64_RUNNER";
const SKIP_VAR: &str = "ECR_REFRESHER_ARM64_SKIP";
/// ELF `e_machine` of AArch64.
const EM_AARCH64: u16 = 183;

/// The command that runs the arm64 binary (`[runner, binary]` or `[binary]`), or `None` when
/// scripts/test said why it could not build one.
fn arm64() -> Option<Vec<String>> {
    let Ok(bin) = std::env::var(BIN_VAR) else {
        if let Ok(reason) = std::env::var(SKIP_VAR) {
            eprintln!("arm64 tests SKIPPED: {reason}");
            return None;
        }
        panic!(
            "{BIN_VAR} is not set, so the arm64 binary was not tested. Run scripts/test (it builds \
             the binary with scripts/release arm64), or set {BIN_VAR}=target/aarch64-unknown-linux-musl/release/ecr-secret-refresher \
             (and {RUNNER_VAR} if qemu-aarch64-static is not on PATH), or skip on purpose with {SKIP_VAR}=<why>"
        );
    };
    let header = std::fs::read(&bin).unwrap_or_else(|e| panic!("{BIN_VAR}={bin}: {e}"));
    // An amd64 binary here would make every comparison below pass without testing arm64.
    assert!(
        header.len() > 20 && header.starts_with(b"\x7fELF\x02\x01"),
        "{BIN_VAR}={bin} is not a 64-bit little-endian ELF file"
    );
    let machine = u16::from_le_bytes([header[18], header[19]]);
    assert_eq!(
        machine, EM_AARCH64,
        "{BIN_VAR}={bin} is not an aarch64 executable (e_machine {machine})"
    );
    let runner = std::env::var(RUNNER_VAR).unwrap_or_else(|_| "qemu-aarch64-static".into());
    Some(
        [runner, bin]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The same run with the amd64 build (the test build cargo made) and the arm64 one.
async fn both(
    h: &Harness,
    arm: &[String],
    args: &[&str],
    env: Vec<(String, String)>,
    stdin: Option<&str>,
) -> (Run, Run) {
    let amd = h.run_program(&[BIN], args, env.clone(), stdin).await;
    let arm = h.run_program(&as_strs(arm), args, env, stdin).await;
    (amd, arm)
}

#[tokio::test(flavor = "multi_thread")]
async fn arm64_binary_prints_the_same_version() {
    let Some(arm) = arm64() else { return };
    let h = Harness::new(&[]).await;
    let (amd, arm) = both(&h, &arm, &["--version"], h.base_env(), None).await;
    assert_eq!(arm.code, 0, "{}", arm.stderr);
    assert!(
        arm.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        arm.stdout
    );
    assert_eq!(arm.stdout, amd.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn arm64_kubelet_answer_equals_the_amd64_one() {
    let Some(arm) = arm64() else { return };
    let h = Harness::new(&[]).await;
    let host = registry("us-east-1");
    let request = json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": format!("{host}/team/app:v1"),
    })
    .to_string();
    let (amd, arm) = both(
        &h,
        &arm,
        &["kubelet-credential-provider"],
        h.base_env(),
        Some(&request),
    )
    .await;
    assert_eq!(arm.code, 0, "{}", arm.stderr);
    assert_eq!(amd.code, 0, "{}", amd.stderr);
    // stdout carries the one password by design; nothing else may.
    assert_no_secrets(&arm.stderr);
    assert_no_secrets(&arm.stdout.replace(MOTO_PASSWORD, "<the password>"));
    let answer: Value = serde_json::from_str(&arm.stdout).expect("the arm64 answer is JSON");
    assert_eq!(answer["kind"], "CredentialProviderResponse", "{answer}");
    assert_eq!(answer["auth"][&host]["username"], "AWS", "{answer}");
    assert_eq!(answer["auth"][&host]["password"], MOTO_PASSWORD, "{answer}");
    let amd_answer: Value = serde_json::from_str(&amd.stdout).expect("the amd64 answer is JSON");
    assert_eq!(answer, amd_answer);
    // Each build fetched its own token: the arm64 answer did not come from a cache.
    let tokens = h
        .aws
        .calls()
        .iter()
        .filter(|c| c.operation == "GetAuthorizationToken")
        .count();
    assert_eq!(tokens, 2, "{:?}", h.aws.calls());
}

#[tokio::test(flavor = "multi_thread")]
async fn arm64_refreshes_three_namespaces_as_amd64_does() {
    let Some(arm) = arm64() else { return };
    const NS: [&str; 3] = ["team-a", "team-b", "team-c"];
    let args = ["--namespaces", "team-a,team-b,team-c"];
    let host = registry("us-east-1");
    // One cluster each, so that both builds create the Secrets from nothing.
    let amd_h = Harness::new(&NS).await;
    let arm_h = Harness::new(&NS).await;
    let amd = amd_h
        .run_program(&[BIN], &args, amd_h.base_env(), None)
        .await;
    let run = arm_h
        .run_program(&as_strs(&arm), &args, arm_h.base_env(), None)
        .await;
    assert_no_secrets(&run.output());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(amd.code, 0, "{}", amd.stderr);
    assert!(
        run.stderr.contains("summary: 3 refreshed"),
        "{}",
        run.stderr
    );
    for ns in NS {
        let s = arm_h
            .secret(ns, "ecr")
            .unwrap_or_else(|| panic!("the arm64 run left no Secret in {ns}"));
        assert_eq!(s["type"], "kubernetes.io/dockerconfigjson");
        assert_eq!(docker_config(&s)["auths"][&host]["password"], MOTO_PASSWORD);
        let twin = amd_h.secret(ns, "ecr").expect("the amd64 run wrote it");
        // Byte for byte the Secret the amd64 build writes, but for the refresh time.
        for field in ["type", "data"] {
            assert_eq!(s[field], twin[field], "{ns}: {field}");
        }
        assert_eq!(s["metadata"]["labels"], twin["metadata"]["labels"], "{ns}");
        let expiry =
            |s: &Value| s["metadata"]["annotations"]["ecr-secret-refresher/expires-at"].clone();
        assert_eq!(expiry(&s), expiry(&twin), "{ns}");
    }
    // The same requests; namespaces are written concurrently, so in any order.
    let sorted = |h: &Harness| {
        let mut r = h.kube_requests();
        r.sort();
        r
    };
    assert_eq!(sorted(&arm_h), sorted(&amd_h));
}

#[tokio::test(flavor = "multi_thread")]
async fn arm64_doctor_image_passes_over_tls_as_amd64_does() {
    let Some(arm) = arm64() else { return };
    let h = Harness::new(&[]).await;
    seed_image("arm64/pass", "v1").await;
    let host = registry("us-east-1");
    let stand_in = Registry::start(h.dir.path(), MOTO_PASSWORD, &[&host]);
    let mut env = h.base_env();
    env.push(("SSL_CERT_FILE".into(), stand_in.ca()));
    let image = format!("{host}/arm64/pass:v1");
    let args = [
        "doctor",
        "--image",
        &image,
        "--registry-address",
        &stand_in.address(),
    ];
    let amd = h.run_program(&[BIN], &args, env.clone(), None).await;
    let seen_by_amd = stand_in.requests();
    let run = h.run_program(&as_strs(&arm), &args, env, None).await;
    assert_no_secrets(&run.output());
    assert_eq!(amd.code, 0, "{}\n{}", amd.stdout, amd.stderr);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    // The arm64 build made its own TLS connection (ring's aarch64 code) and sent the token.
    let seen_by_arm = stand_in.requests()[seen_by_amd.len()..].to_string();
    assert!(
        seen_by_arm.contains(&format!("GET /v2/ host={host} authorized=True")),
        "{seen_by_arm}"
    );
    assert_eq!(run.stdout, amd.stdout);
}
