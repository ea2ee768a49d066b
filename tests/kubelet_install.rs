//! `kubelet-credential-provider install` end to end: the binary puts itself into a bin dir and
//! its provider into a CredentialProviderConfig, as cloud-init would run it on a node; the
//! installed copy then answers a kubelet request with the config's own args and env.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::ra::*;
use common::*;
use serde_json::{Value, json};

const V1: &str = "credentialprovider.kubelet.k8s.io/v1";
const NAME: &str = "ecr-secret-refresher";

struct Node {
    dir: tempfile::TempDir,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Node {
    fn new() -> Node {
        // Beside the test binary, so that `with_binary` can hard-link it.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        Node { dir }
    }

    /// A node where this binary is already installed: for tests about the config file, which
    /// need not copy a debug build (hundreds of MB) every time.
    fn with_binary() -> Node {
        let node = Node::new();
        std::fs::hard_link(BIN, node.installed())
            .or_else(|_| std::fs::copy(BIN, node.installed()).map(|_| ()))
            .unwrap();
        std::fs::set_permissions(node.installed(), std::fs::Permissions::from_mode(0o755)).unwrap();
        node
    }
    fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }
    fn config(&self) -> PathBuf {
        self.dir.path().join("credential-provider-config.yaml")
    }
    fn installed(&self) -> PathBuf {
        self.bin_dir().join(NAME)
    }

    /// `install --bin-dir BIN --config CONFIG` plus `extra`, in a clean environment.
    fn install(&self, extra: &[&str]) -> Out {
        let bin = self.bin_dir().display().to_string();
        let config = self.config().display().to_string();
        let mut args = vec![
            "kubelet-credential-provider",
            "install",
            "--bin-dir",
            &bin,
            "--config",
            &config,
        ];
        args.extend_from_slice(extra);
        run(&args, self.dir.path())
    }
}

fn run(args: &[&str], cwd: &Path) -> Out {
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", cwd)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("binary runs");
    let out = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_no_secrets(&format!("{}{}", out.stdout, out.stderr));
    out
}

fn read_config(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

fn provider_names(config: &Value) -> Vec<String> {
    config["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

fn ours(config: &Value) -> Value {
    config["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == NAME)
        .cloned()
        .expect("our provider")
}

/// Every file name in `dir`: nothing half-written or temporary may be left.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// (inode, mtime in ns, ctime in ns): a rename gives a new inode, a write a new mtime, a chmod
/// a new ctime.
fn stamp(path: &Path) -> (u64, i64, i64) {
    let m = std::fs::metadata(path).unwrap();
    (
        m.ino(),
        m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        m.ctime() * 1_000_000_000 + m.ctime_nsec(),
    )
}

fn example(name: &str) -> Value {
    read_config(Path::new(&format!(
        "{}/manifests/kubelet/{name}",
        env!("CARGO_MANIFEST_DIR")
    )))
}

#[test]
fn a_fresh_install_writes_the_binary_and_a_config_and_prints_the_flags() {
    let node = Node::new();
    let out = node.install(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let installed = std::fs::read(node.installed()).unwrap();
    assert!(
        installed == std::fs::read(BIN).unwrap(),
        "the installed file is this binary"
    );
    let mode = std::fs::metadata(node.installed())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
    let config = read_config(&node.config());
    assert_eq!(config["apiVersion"], "kubelet.config.k8s.io/v1");
    assert_eq!(config["kind"], "CredentialProviderConfig");
    assert_eq!(provider_names(&config), [NAME]);
    let p = ours(&config);
    assert_eq!(p["args"], json!(["kubelet-credential-provider"]));
    assert_eq!(p["apiVersion"], V1);
    assert!(p.get("tokenAttributes").is_none(), "{p}");
    assert!(
        p.get("env").is_none(),
        "the node identity on EC2 needs no env: {p}"
    );
    for flag in [
        format!(
            "--image-credential-provider-bin-dir={}",
            node.bin_dir().display()
        ),
        format!(
            "--image-credential-provider-config={}",
            node.config().display()
        ),
    ] {
        assert!(
            out.stdout.lines().any(|l| l.trim() == flag),
            "{flag}\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("Installed "), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("Added the ecr-secret-refresher provider"),
        "{}",
        out.stdout
    );
    assert_eq!(listing(&node.bin_dir()), [NAME]);
    assert_eq!(
        listing(node.dir.path()),
        ["bin", "credential-provider-config.yaml"]
    );

    // A JSON file stays JSON.
    let json_config = node.dir.path().join("config.json");
    let bin = node.bin_dir().display().to_string();
    let path = json_config.display().to_string();
    let out = run(
        &[
            "kubelet-credential-provider",
            "install",
            "--bin-dir",
            &bin,
            "--config",
            &path,
        ],
        node.dir.path(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(&json_config).unwrap();
    let parsed: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(provider_names(&parsed), [NAME]);
    assert!(
        out.stdout.contains("is already this binary"),
        "{}",
        out.stdout
    );
}

#[test]
fn our_entry_is_replaced_and_every_other_provider_kept_in_order() {
    for (version, provider_version) in [
        ("kubelet.config.k8s.io/v1", V1),
        (
            "kubelet.config.k8s.io/v1beta1",
            "credentialprovider.kubelet.k8s.io/v1beta1",
        ),
        (
            "kubelet.config.k8s.io/v1alpha1",
            "credentialprovider.kubelet.k8s.io/v1alpha1",
        ),
    ] {
        let node = Node::with_binary();
        let before = format!(
            "# the node's providers\napiVersion: {version}\nkind: CredentialProviderConfig\nproviders:\n  - name: gcr-credential-provider\n    matchImages: [\"gcr.io\", \"*.gcr.io\"]\n    defaultCacheDuration: 1h\n    apiVersion: {provider_version}\n  - name: ecr-secret-refresher\n    matchImages: [\"old.example\"]\n    defaultCacheDuration: 5m\n    apiVersion: {provider_version}\n    args: [old]\n  - name: acr-credential-provider\n    matchImages: [\"*.azurecr.io\"]\n    defaultCacheDuration: 10m\n    apiVersion: {provider_version}\n    args: [\"--config\", \"/etc/azure.json\"]\n    env:\n      - name: X\n        value: \"false\"\n"
        );
        std::fs::write(node.config(), &before).unwrap();
        let old = read_config(&node.config());
        let out = node.install(&[]);
        assert_eq!(out.code, 0, "{version}: {}", out.stderr);
        assert!(
            out.stdout
                .contains("Replaced the ecr-secret-refresher provider"),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains("is already this binary; not written"),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains("comments"),
            "says the comment is gone: {}",
            out.stdout
        );
        let after = read_config(&node.config());
        assert_eq!(after["apiVersion"], version);
        assert_eq!(
            provider_names(&after),
            ["gcr-credential-provider", NAME, "acr-credential-provider"]
        );
        for i in [0, 2] {
            assert_eq!(after["providers"][i], old["providers"][i], "{version}");
        }
        // The "false" string stays a string.
        assert_eq!(after["providers"][2]["env"][0]["value"], "false");
        let p = ours(&after);
        assert_eq!(p["args"], json!(["kubelet-credential-provider"]));
        assert_eq!(p["defaultCacheDuration"], "11h");
        // The protocol version every kubelet that reads this config version speaks.
        assert_eq!(p["apiVersion"], provider_version);
        assert!(p["matchImages"].as_array().unwrap().len() > 10, "{p}");
    }
}

#[test]
fn a_second_identical_run_writes_nothing_and_says_so() {
    let node = Node::new();
    let first = node.install(&["--service-account-roles"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let (bin, config) = (stamp(&node.installed()), stamp(&node.config()));
    let dirs = (stamp(&node.bin_dir()), stamp(node.dir.path()));
    // Long enough for a coarse file system clock to move.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let second = node.install(&["--service-account-roles"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stdout.starts_with("Nothing to change"),
        "{}",
        second.stdout
    );
    assert!(
        second.stdout.contains("nothing was written"),
        "{}",
        second.stdout
    );
    assert!(
        second
            .stdout
            .contains("--image-credential-provider-config="),
        "the flags are printed every time: {}",
        second.stdout
    );
    assert_eq!(
        stamp(&node.installed()),
        bin,
        "the binary was not rewritten"
    );
    assert_eq!(
        stamp(&node.config()),
        config,
        "the config was not rewritten"
    );
    assert_eq!(
        (stamp(&node.bin_dir()), stamp(node.dir.path())),
        dirs,
        "no file came or went"
    );

    // The same entry written by hand in another layout is recognised too.
    let text = std::fs::read_to_string(node.config()).unwrap();
    let as_json = serde_json::to_string(&read_config(&node.config())).unwrap();
    std::fs::write(node.config(), &as_json).unwrap();
    let config = stamp(&node.config());
    let third = node.install(&["--service-account-roles"]);
    assert!(
        third.stdout.starts_with("Nothing to change"),
        "{}",
        third.stdout
    );
    assert_eq!(stamp(&node.config()), config);
    assert_ne!(as_json, text);

    // Another variant is a change: the entry is replaced, the binary left alone.
    let fourth = node.install(&[]);
    assert_eq!(fourth.code, 0, "{}", fourth.stderr);
    assert!(
        fourth
            .stdout
            .contains("is already this binary; not written"),
        "{}",
        fourth.stdout
    );
    assert!(fourth.stdout.contains("Replaced"), "{}", fourth.stdout);
    assert_eq!(stamp(&node.installed()), bin);
    assert!(
        ours(&read_config(&node.config()))
            .get("tokenAttributes")
            .is_none()
    );
}

#[test]
fn a_file_that_is_not_a_credential_provider_config_is_refused_and_nothing_written() {
    let cases = [
        (
            "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: x\n    env: [{name: TOKEN, value: hunter2-secret-value\n",
            "invalid YAML at line",
        ),
        (
            "{\"apiVersion\": \"kubelet.config.k8s.io/v1\", \"providers\": [hunter2-secret-value]}",
            "invalid JSON at line 1",
        ),
        (
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n",
            "kind is 'KubeletConfiguration'",
        ),
        (
            "apiVersion: kubelet.config.k8s.io/v2\nkind: CredentialProviderConfig\nproviders: []\n",
            "apiVersion is 'kubelet.config.k8s.io/v2'",
        ),
        (
            "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  name: x\n",
            "providers field",
        ),
        (
            "- just\n- a list\n",
            "not a kubelet CredentialProviderConfig",
        ),
    ];
    for (text, want) in cases {
        let node = Node::new();
        std::fs::write(node.config(), text).unwrap();
        let stamp_before = stamp(&node.config());
        let out = node.install(&[]);
        assert_eq!(out.code, 2, "{text}");
        assert!(out.stdout.is_empty(), "{}", out.stdout);
        assert!(out.stderr.contains(want), "{want}: {}", out.stderr);
        assert!(
            out.stderr.contains(&node.config().display().to_string()),
            "names the file: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("nothing was installed"),
            "{}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("hunter2"),
            "never quotes the file: {}",
            out.stderr
        );
        assert_eq!(std::fs::read_to_string(node.config()).unwrap(), text);
        assert_eq!(stamp(&node.config()), stamp_before);
        assert!(
            listing(&node.bin_dir()).is_empty(),
            "no binary: {:?}",
            listing(&node.bin_dir())
        );
        assert_eq!(
            listing(node.dir.path()),
            ["bin", "credential-provider-config.yaml"]
        );
    }
    // Per-ServiceAccount roles are written only into v1 files.
    let node = Node::new();
    let text = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: CredentialProviderConfig\nproviders: []\n";
    std::fs::write(node.config(), text).unwrap();
    let out = node.install(&["--service-account-roles"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("kubelet.config.k8s.io/v1 files"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(node.config()).unwrap(), text);
    assert!(listing(&node.bin_dir()).is_empty());
}

#[test]
fn a_missing_or_unwritable_directory_is_refused_without_leftovers() {
    // The bin dir is missing: nothing is written, the config not created either.
    let node = Node::new();
    std::fs::remove_dir(node.bin_dir()).unwrap();
    let out = node.install(&[]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--bin-dir"), "{}", out.stderr);
    assert!(
        out.stderr.contains("does not exist: create it first"),
        "{}",
        out.stderr
    );
    assert!(
        listing(node.dir.path()).is_empty(),
        "{:?}",
        listing(node.dir.path())
    );

    // A part of the bin dir's path is a regular file.
    let node = Node::new();
    std::fs::write(node.dir.path().join("file"), "x").unwrap();
    let bin = node.dir.path().join("file/bin").display().to_string();
    let config = node.config().display().to_string();
    let out = run(
        &[
            "kubelet-credential-provider",
            "install",
            "--bin-dir",
            &bin,
            "--config",
            &config,
        ],
        node.dir.path(),
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("is a file, not a directory"),
        "{}",
        out.stderr
    );
    assert_eq!(listing(node.dir.path()), ["bin", "file"]);

    // The config's directory is missing: the binary is not installed either.
    let node = Node::new();
    let config = node
        .dir
        .path()
        .join("missing/config.yaml")
        .display()
        .to_string();
    let bin = node.bin_dir().display().to_string();
    let out = run(
        &[
            "kubelet-credential-provider",
            "install",
            "--bin-dir",
            &bin,
            "--config",
            &config,
        ],
        node.dir.path(),
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("its directory: does not exist"),
        "{}",
        out.stderr
    );
    assert!(listing(&node.bin_dir()).is_empty());

    // A directory that exists but cannot be written, even by root: /proc. The config is not
    // written after the binary failed.
    let node = Node::new();
    let config = node.config().display().to_string();
    let out = run(
        &[
            "kubelet-credential-provider",
            "install",
            "--bin-dir",
            "/proc",
            "--config",
            &config,
        ],
        node.dir.path(),
    );
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("cannot write /proc/ecr-secret-refresher"),
        "{}",
        out.stderr
    );
    assert!(!Path::new("/proc/ecr-secret-refresher").exists());
    assert_eq!(listing(node.dir.path()), ["bin"]);

    // chmod 0555: denied unless we are root, whom permissions do not stop; check which.
    let node = Node::new();
    std::fs::set_permissions(node.bin_dir(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let denied = std::fs::write(node.bin_dir().join("probe"), "x").is_err();
    let _ = std::fs::remove_file(node.bin_dir().join("probe"));
    let out = node.install(&[]);
    if denied {
        assert_eq!(out.code, 2);
        assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
        assert!(listing(&node.bin_dir()).is_empty());
        assert_eq!(listing(node.dir.path()), ["bin"]);
    } else {
        // Root writes through 0555: the /proc case above is the denied one.
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(listing(&node.bin_dir()), [NAME]);
    }
    std::fs::set_permissions(node.bin_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn bad_install_flags_are_named_before_anything_is_written() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["--service-account-roles", "--token-audience", " "],
            "--token-audience: ' '",
        ),
        (&["--kubelet-version", "1.33"], "--service-account-roles"),
        (
            &["--service-account-roles", "--kubelet-version", "1.32"],
            "1.33 or later",
        ),
        (
            &["--service-account-roles", "--kubelet-version", "one"],
            "--kubelet-version: 'one'",
        ),
        (
            &["--require-role"],
            "--require-role only applies with --service-account-roles",
        ),
        (
            &["--ra-certificate", "/etc/node.crt"],
            "IAM Roles Anywhere needs",
        ),
    ];
    for (extra, want) in cases {
        let node = Node::new();
        let out = node.install(extra);
        assert_eq!(out.code, 2, "{extra:?}");
        assert!(out.stderr.contains(want), "{extra:?}: {}", out.stderr);
        assert_eq!(listing(node.dir.path()), ["bin"], "{extra:?}");
        assert!(listing(&node.bin_dir()).is_empty());
    }
}

/// The shipped examples are exactly what `install` writes for their options: one source.
#[test]
fn the_shipped_examples_are_what_install_writes() {
    let node_example = example("credential-provider-config.yaml");
    let env = |p: &Value, name: &str| -> String {
        p["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{name} in {p}"))
    };
    let shipped = &node_example["providers"][0];
    let flags: Vec<String> = [
        ("--ra-certificate", "ECR_REFRESHER_RA_CERTIFICATE"),
        ("--ra-private-key", "ECR_REFRESHER_RA_PRIVATE_KEY"),
        ("--ra-trust-anchor-arn", "ECR_REFRESHER_RA_TRUST_ANCHOR_ARN"),
        ("--ra-profile-arn", "ECR_REFRESHER_RA_PROFILE_ARN"),
        ("--ra-role-arn", "ECR_REFRESHER_RA_ROLE_ARN"),
    ]
    .iter()
    .flat_map(|(flag, name)| [flag.to_string(), env(shipped, name)])
    .collect();
    let node = Node::with_binary();
    let out = node.install(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let written = read_config(&node.config());
    assert_eq!(written, node_example, "credential-provider-config.yaml");

    let sa_example = example("service-account-tokens.yaml");
    let node = Node::with_binary();
    let out = node.install(&["--service-account-roles"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        read_config(&node.config()),
        sa_example,
        "service-account-tokens.yaml"
    );
    assert!(out.stdout.contains("sts.amazonaws.com"), "{}", out.stdout);
    assert!(!out.stdout.contains("feature-gates"), "{}", out.stdout);

    let sa_133 = example("service-account-tokens-1.33.yaml");
    let node = Node::with_binary();
    let out = node.install(&["--service-account-roles", "--kubelet-version", "v1.33.4"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        read_config(&node.config()),
        sa_133,
        "service-account-tokens-1.33.yaml"
    );
    assert!(
        out.stdout
            .contains("--feature-gates=KubeletServiceAccountTokenForCredentialProviders=true"),
        "{}",
        out.stdout
    );
}

/// The copy in the bin dir runs as the kubelet would run it: the config's args and env, the
/// request on stdin.
async fn kubelet_runs(
    plugin: &Path,
    provider: &Value,
    env: Vec<(String, String)>,
    stdin: &str,
) -> Run {
    use tokio::io::AsyncWriteExt;
    let args: Vec<String> = provider["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let mut env = env;
    for e in provider["env"].as_array().cloned().unwrap_or_default() {
        env.push((
            e["name"].as_str().unwrap().to_string(),
            e["value"].as_str().unwrap().to_string(),
        ));
    }
    let mut child = tokio::process::Command::new(plugin)
        .args(&args)
        .env_clear()
        .envs(env)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the installed plugin starts");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_installed_plugin_answers_the_kubelet() {
    let h = Harness::new(&[]).await;
    let host = registry("us-east-1");
    let request = json!({
        "apiVersion": V1, "kind": "CredentialProviderRequest",
        "image": format!("{host}/team/app:v1"),
    })
    .to_string();

    // The node identity from the environment the kubelet runs with.
    let node = Node::new();
    assert_eq!(node.install(&[]).code, 0);
    let provider = ours(&read_config(&node.config()));
    let run = kubelet_runs(&node.installed(), &provider, h.base_env(), &request).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_no_secrets(&run.stderr);
    let r: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(r["kind"], "CredentialProviderResponse");
    assert_eq!(r["auth"][&host]["password"], MOTO_PASSWORD);
    assert_eq!(h.aws.calls().len(), 1);

    // Roles Anywhere, configured through install's options alone: relative paths are made
    // absolute, since the kubelet runs the plugin from its own directory.
    let server = RaServer::start(h.dir.path());
    let node = Node::new();
    for f in ["p256.crt", "p256.pkcs8.pem", "intermediate.crt"] {
        std::fs::copy(pem(f), node.dir.path().join(f)).unwrap();
    }
    let out = node.install(&[
        "--ra-certificate",
        "p256.crt",
        "--ra-private-key",
        "p256.pkcs8.pem",
        "--ra-intermediates",
        "intermediate.crt",
        "--ra-trust-anchor-arn",
        TA,
        "--ra-profile-arn",
        PROFILE,
        "--ra-role-arn",
        ROLE,
        "--ra-endpoint",
        &server.url,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let provider = ours(&read_config(&node.config()));
    let cert = provider["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "ECR_REFRESHER_RA_CERTIFICATE")
        .unwrap()["value"]
        .clone();
    assert_eq!(cert, node.dir.path().join("p256.crt").display().to_string());
    let run = kubelet_runs(&node.installed(), &provider, h.env_without_keys(), &request).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_no_secrets(&run.stderr);
    let r: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(r["auth"][&host]["password"], MOTO_PASSWORD);
    assert!(run.stderr.contains("IAM Roles Anywhere"), "{}", run.stderr);
    assert_eq!(server.requests().len(), 1, "one CreateSession");
    assert_eq!(h.aws.calls().last().unwrap().access_key, RA_KEY_ID);
}
