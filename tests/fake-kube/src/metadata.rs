//! Credential endpoints that live on the machine or the pod: EC2 IMDSv2 and the container
//! credentials endpoint (EKS Pod Identity, ECS), in one loopback server.
//!
//! IMDSv2 is followed as the real one behaves: a session token from `PUT /latest/api/token`
//! (which must carry a TTL header, and whose answer echoes it), required on every `GET`.

use std::sync::{Arc, Mutex};

use hyper::Method;

use crate::http::{self, Response};

const ROLE: &str = "node-role";
const IMDS_TOKEN: &str = "imds-session-token";

/// Credentials the endpoints hand out.
#[derive(Debug, Clone)]
pub struct IssuedCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

pub struct MetadataServer {
    addr: std::net::SocketAddr,
    hits: Arc<Mutex<Vec<String>>>,
    /// How many of the next requests answer 503, as an IMDS under load may.
    failing: Arc<std::sync::atomic::AtomicUsize>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl MetadataServer {
    /// Serves `creds` on IMDSv2 paths and on `/pod-identity`, which requires
    /// `Authorization: <container_token>`.
    pub async fn start(
        creds: IssuedCredentials,
        container_token: &str,
    ) -> std::io::Result<MetadataServer> {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (h, token, f) = (hits.clone(), container_token.to_string(), failing.clone());
        let (addr, tx) = http::serve("127.0.0.1:0", move |req| {
            let busy = f
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok();
            std::future::ready(if busy {
                h.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
                    "{} {} 503",
                    req.method(),
                    req.uri().path()
                ));
                reply(503, String::new(), &[])
            } else {
                answer(req, &h, &creds, &token)
            })
        })
        .await?;
        Ok(MetadataServer {
            addr,
            hits,
            failing,
            _shutdown: tx,
        })
    }

    /// Answers the next `n` requests with 503 Service Unavailable, then serves again.
    pub fn fail_next(&self, n: usize) {
        self.failing.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `METHOD path` of every request served.
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn reply(status: u16, body: String, headers: &[(&'static str, String)]) -> Response {
    http::response(status, headers, body)
}

fn credentials_json(c: &IssuedCredentials, imds: bool) -> String {
    let expiration = "2099-01-01T00:00:00Z";
    if imds {
        format!(
            r#"{{"Code":"Success","LastUpdated":"2026-01-01T00:00:00Z","Type":"AWS-HMAC","AccessKeyId":"{}","SecretAccessKey":"{}","Token":"{}","Expiration":"{expiration}"}}"#,
            c.access_key_id, c.secret_access_key, c.session_token
        )
    } else {
        format!(
            r#"{{"AccessKeyId":"{}","SecretAccessKey":"{}","Token":"{}","AccountId":"123456789012","Expiration":"{expiration}"}}"#,
            c.access_key_id, c.secret_access_key, c.session_token
        )
    }
}

fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    hits: &Mutex<Vec<String>>,
    creds: &IssuedCredentials,
    container_token: &str,
) -> Response {
    let path = req.uri().path().to_string();
    hits.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(format!("{} {path}", req.method()));
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    if path == "/pod-identity" {
        return if header("authorization") == container_token {
            reply(
                200,
                credentials_json(creds, false),
                &[("content-type", "application/json".into())],
            )
        } else {
            reply(401, r#"{"message":"bad token"}"#.into(), &[])
        };
    }
    if req.method() == Method::PUT && path == "/latest/api/token" {
        let ttl = header("x-aws-ec2-metadata-token-ttl-seconds");
        if ttl.parse::<u32>().is_err() {
            return reply(400, String::new(), &[]);
        }
        return reply(
            200,
            IMDS_TOKEN.into(),
            &[("x-aws-ec2-metadata-token-ttl-seconds", ttl)],
        );
    }
    if header("x-aws-ec2-metadata-token") != IMDS_TOKEN {
        return reply(401, String::new(), &[]);
    }
    match path.as_str() {
        "/latest/meta-data/iam/security-credentials/"
        | "/latest/meta-data/iam/security-credentials" => reply(200, ROLE.into(), &[]),
        p if p == format!("/latest/meta-data/iam/security-credentials/{ROLE}") => {
            reply(200, credentials_json(creds, true), &[])
        }
        "/latest/meta-data/placement/region" => reply(200, "eu-central-1".into(), &[]),
        _ => reply(404, String::new(), &[]),
    }
}
