//! Shared harness for the integration tests: the fake API server, the AWS front on moto, and
//! running the compiled binary as a user would, with a clean environment.
#![allow(dead_code)]

pub mod ra;
pub mod stand_in;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fake_kube::{AwsFront, FakeKube};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ecr-secret-refresher");
/// moto's fixed ECR password for its default account.
pub const MOTO_PASSWORD: &str = "123456789012-auth-token";
pub const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
pub const SECRET_KEY: &str = "wJalrXUtnFEMI-test-secret-key-do-not-log";
pub const ACCOUNT: &str = "123456789012";

/// The moto server the test command started. Tests fail, not skip, without it.
pub fn moto_url() -> String {
    std::env::var("MOTO_URL").unwrap_or_else(|_| {
        panic!("MOTO_URL is not set: run the tests with scripts/test, which starts moto, or start `moto_server -p 5000` and export MOTO_URL=http://127.0.0.1:5000")
    })
}

pub struct Harness {
    pub kube: FakeKube,
    pub aws: AwsFront,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Harness {
    pub async fn new(namespaces: &[&str]) -> Harness {
        let kube = FakeKube::start().await.expect("fake API server starts");
        for ns in namespaces {
            kube.add_namespace(ns, &[]);
        }
        let aws = AwsFront::start(&moto_url())
            .await
            .expect("AWS front starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = kube
            .write_kubeconfig(dir.path())
            .expect("kubeconfig written");
        Harness {
            kube,
            aws,
            dir,
            kubeconfig,
        }
    }

    /// The environment of a user with static AWS keys and nothing else configured.
    pub fn base_env(&self) -> Vec<(String, String)> {
        let home = self.dir.path().display().to_string();
        [
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("HOME", home.clone()),
            ("AWS_CONFIG_FILE", format!("{home}/no-aws-config")),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                format!("{home}/no-aws-credentials"),
            ),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.aws.url()),
            // Nothing in a test may wait on the real instance metadata address.
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            (
                "ECR_REFRESHER_KUBECONFIG",
                self.kubeconfig.display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The same environment without static AWS keys: credentials must come from elsewhere.
    pub fn env_without_keys(&self) -> Vec<(String, String)> {
        self.base_env()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("AWS_ACCESS_KEY") && !k.starts_with("AWS_SECRET"))
            .collect()
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, self.base_env()).await
    }

    /// Runs the binary with exactly `env`, and checks that no secret value reached its output.
    pub async fn run_env(&self, args: &[&str], env: Vec<(String, String)>) -> Run {
        let run = self.run_unchecked(args, env).await;
        assert_no_secrets(&run.output());
        run
    }

    /// Runs the binary without checking its output: for commands whose output is a secret.
    pub async fn run_unchecked(&self, args: &[&str], env: Vec<(String, String)>) -> Run {
        self.run_program(&[BIN], args, env, None).await
    }

    /// Runs the binary with exactly `env` and `stdin` on its standard input, as the kubelet runs
    /// a credential provider. Its stdout holds a password by design: the caller checks it.
    pub async fn run_stdin(&self, args: &[&str], env: Vec<(String, String)>, stdin: &str) -> Run {
        self.run_program(&[BIN], args, env, Some(stdin)).await
    }

    /// Runs `program` (the binary, or a runner and its arguments before the binary, as
    /// tests/arm64.rs runs the arm64 build under qemu) with exactly `env`, and `stdin` on its
    /// standard input when given. Checks nothing in the output.
    pub async fn run_program(
        &self,
        program: &[&str],
        args: &[&str],
        env: Vec<(String, String)>,
        stdin: Option<&str>,
    ) -> Run {
        use tokio::io::AsyncWriteExt;
        let (exe, before) = program.split_first().expect("a program to run");
        let mut child = tokio::process::Command::new(exe)
            .args(before)
            .args(args)
            .env_clear()
            .envs(env)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{exe} starts: {e}"));
        if let Some(stdin) = stdin {
            let mut input = child.stdin.take().expect("stdin is piped");
            // A binary that fails before reading its stdin (a refused flag, no credentials)
            // closes the pipe: that is its answer, judged by the assertions on its output.
            if let Err(e) = input.write_all(stdin.as_bytes()).await {
                assert_eq!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe,
                    "request written: {e}"
                );
            }
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("binary finishes within 60 s")
            .expect("binary output");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn secret(&self, ns: &str, name: &str) -> Option<Value> {
        self.kube.get("secrets", ns, name)
    }

    /// Requests the refresher made, as `verb resource namespace`, without the connection check
    /// (`GET /version`) that a run which writes makes first.
    pub fn kube_requests(&self) -> Vec<String> {
        self.kube
            .requests()
            .iter()
            .filter(|r| !is_connection_check(r))
            .map(|r| format!("{} {} {}", r.verb, r.resource, r.namespace))
            .collect()
    }

    /// The verbs of the requests the refresher made, in order, without the connection check.
    pub fn kube_verbs(&self) -> Vec<String> {
        self.kube
            .requests()
            .iter()
            .filter(|r| !is_connection_check(r))
            .map(|r| r.verb.clone())
            .collect()
    }
}

/// The `GET /version` a run that writes makes once before anything else.
pub fn is_connection_check(r: &fake_kube::Request) -> bool {
    r.resource == "version"
}

/// Every form a secret value could take in output: raw, in `auth`, in the Secret's data.
pub fn assert_no_secrets(output: &str) {
    let auth = STANDARD.encode(format!("AWS:{MOTO_PASSWORD}"));
    let needles = [
        MOTO_PASSWORD,
        auth.as_str(),
        SECRET_KEY,
        "auth-token",
        "session-token-value",
        // The Roles Anywhere test server's session credentials, key material, the passphrase.
        "ra-secret-",
        "ra-session-token-",
        "PRIVATE KEY-----",
        "correct horse battery staple",
    ];
    for needle in needles {
        assert!(
            !output.contains(needle),
            "output leaks a secret ({needle}):\n{output}"
        );
    }
    // The base64 of any docker config we write starts with this prefix: `{"auths":{"`.
    assert!(
        !output.contains("eyJhdXRocyI6"),
        "output leaks Secret data:\n{output}"
    );
}

/// The decoded `.dockerconfigjson` of a Secret object.
pub fn docker_config(secret: &Value) -> Value {
    let b64 = secret["data"][".dockerconfigjson"]
        .as_str()
        .expect("data[.dockerconfigjson]");
    let bytes = STANDARD.decode(b64).expect("base64 data");
    serde_json::from_slice(&bytes).expect("docker config is JSON")
}

pub fn registry(region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{ACCOUNT}.dkr.ecr.{region}.{suffix}")
}

/// A Secret this tool did not write.
pub fn foreign_secret(ns: &str, name: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": {"owner": "someone-else"}},
        "type": "Opaque",
        "data": {"token": STANDARD.encode("keep me")}
    })
}

/// The objects `kubectl kustomize` renders for an overlay.
pub fn render(overlay: &str) -> Vec<Value> {
    let dir = format!(
        "{}/manifests/overlays/{overlay}",
        env!("CARGO_MANIFEST_DIR")
    );
    render_dir(std::path::Path::new(&dir))
}

/// The objects `kubectl kustomize` renders for a kustomization directory.
pub fn render_dir(dir: &std::path::Path) -> Vec<Value> {
    let dir = dir.display().to_string();
    let out = std::process::Command::new("kubectl")
        .args(["kustomize", &dir])
        .output()
        .unwrap_or_else(|e| {
            panic!("kubectl is needed to render the manifests ({e}); see README: Install")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .expect("rendered YAML parses")
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}
