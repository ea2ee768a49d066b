//! The IAM Roles Anywhere test PKI and verifying server (`tests/roles_anywhere/`), for every
//! test that needs a node or pod identity from a certificate.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

pub const TA: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/0b1f4c2e";
pub const PROFILE: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:profile/9a8c7d6e";
pub const ROLE: &str = "arn:aws:iam::123456789012:role/ecr-reader";
pub const RA_KEY_ID: &str = "ASIAROLESANYWHERE";

pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

pub fn script(name: &str) -> String {
    format!("{}/tests/roles_anywhere/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The test PKI, generated once per test process by tests/roles_anywhere/pki.py.
pub fn pki() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("ra-pki-{}", std::process::id()));
        let out = Command::new(python())
            .arg(script("pki.py"))
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): run the tests with scripts/test, which sets up .venv",
                    python()
                )
            });
        assert!(
            out.status.success(),
            "pki.py failed (is `cryptography` installed?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

pub fn pem(name: &str) -> String {
    pki().join(name).display().to_string()
}

/// The verifying server, killed when dropped.
pub struct RaServer {
    child: Child,
    pub url: String,
    log: PathBuf,
}

impl RaServer {
    pub fn start(dir: &Path) -> RaServer {
        RaServer::start_with(dir, &[])
    }

    /// A server with extra arguments, such as a fault switch (`--fail-first 2`).
    pub fn start_with(dir: &Path, extra: &[&str]) -> RaServer {
        static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = dir.join(format!("ra-requests-{n}.jsonl"));
        let mut child = Command::new(python())
            .arg(script("server.py"))
            .args([
                "--trust-anchor",
                &pem("root.crt"),
                "--log",
                log.to_str().unwrap(),
                "--access-key-id",
                RA_KEY_ID,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the Roles Anywhere test server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("server printed no port: {line:?}"));
        RaServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for RaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn ra_args(server: &RaServer, cert: &str, key: &str) -> Vec<String> {
    [
        "--ra-certificate",
        &pem(cert),
        "--ra-private-key",
        &pem(key),
        "--ra-trust-anchor-arn",
        TA,
        "--ra-profile-arn",
        PROFILE,
        "--ra-role-arn",
        ROLE,
        "--ra-endpoint",
        &server.url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
