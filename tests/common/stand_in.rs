//! The scene for `doctor --image` runs, shared by the tests that need a pullable image: the TLS
//! `/v2/` registry stand-in (tests/doctor_image/registry.py) and an image seeded into moto.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use aws_sdk_ecr::config::{Credentials, Region};
use serde_json::json;

use super::{ACCESS_KEY, SECRET_KEY, moto_url};

/// The TLS `/v2/` stand-in, killed when dropped.
pub struct Registry {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Registry {
    /// Serves `hosts` with a certificate from a throwaway CA; accepts `AWS:password`.
    pub fn start(dir: &Path, password: &str, hosts: &[&str]) -> Registry {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let dir = dir.join("registry");
        let script = format!(
            "{}/tests/doctor_image/registry.py",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut child = Command::new(&python)
            .arg(script)
            .args(["--dir", dir.to_str().expect("a UTF-8 temp dir")])
            .args(["--password", password])
            .args(hosts)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {python} ({e}): run the tests with scripts/test")
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("registry.py prints its port");
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("registry.py printed no port (is `cryptography` installed?): {line:?}")
        });
        Registry { child, port, dir }
    }

    /// For `--registry-address`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The CA to trust, for `SSL_CERT_FILE`.
    pub fn ca(&self) -> String {
        self.dir.join("ca.pem").display().to_string()
    }

    /// One line per request: `GET /v2/ host=HOST authorized=True|False`.
    pub fn requests(&self) -> String {
        std::fs::read_to_string(self.dir.join("requests.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An ECR client straight to moto (not through the recording front), to set the scene.
pub fn moto_ecr() -> aws_sdk_ecr::Client {
    let conf = aws_sdk_ecr::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .endpoint_url(moto_url())
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .http_client(ecr_secret_refresher::aws::http::client())
        .build();
    aws_sdk_ecr::Client::from_conf(conf)
}

/// A fresh repository `repo` in moto's default account holding one image tagged `tag`.
/// Returns the image's digest as ECR computed it.
pub async fn seed_image(repo: &str, tag: &str) -> String {
    seed_image_in(super::ACCOUNT, repo, tag).await
}

/// A fresh repository `repo` in `account` holding one image tagged `tag`. Returns the image's
/// digest as ECR computed it.
pub async fn seed_image_in(account: &str, repo: &str, tag: &str) -> String {
    let ecr = moto_ecr();
    // moto outlives test runs: start from an empty repository.
    let _ = ecr
        .delete_repository()
        .registry_id(account)
        .repository_name(repo)
        .force(true)
        .send()
        .await;
    ecr.create_repository()
        .registry_id(account)
        .repository_name(repo)
        .send()
        .await
        .expect("moto creates the repository");
    let digest = |c: &str| format!("sha256:{}", c.repeat(64));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1469, "digest": digest("c")},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 2811, "digest": digest("a")}]
    });
    let put = ecr
        .put_image()
        .registry_id(account)
        .repository_name(repo)
        .image_manifest(manifest.to_string())
        .image_tag(tag)
        .send()
        .await
        .expect("moto stores the image");
    put.image()
        .and_then(|i| i.image_id())
        .and_then(|id| id.image_digest())
        .expect("PutImage answers the digest")
        .to_string()
}
