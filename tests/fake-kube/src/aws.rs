//! A recording front for an AWS emulator (moto): it forwards every request upstream and logs
//! which operation was called in which region, or answers with an injected AWS error instead.
//! It also answers `GetDownloadUrlForLayer` itself, which moto does not implement.
//! It answers ECR Public's GetAuthorizationToken itself, since moto has no `ecr-public`.

use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::http;

/// One AWS call as the front saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCall {
    /// `GetAuthorizationToken`, `GetCallerIdentity`, `AssumeRole`, ...
    pub operation: String,
    /// Signing service from the credential scope (`ecr`, `sts`).
    pub service: String,
    /// Signing region from the credential scope.
    pub region: String,
    /// Access key ID from the credential scope: shows which credentials signed the call.
    pub access_key: String,
}

/// An AWS error to answer instead of forwarding.
#[derive(Debug, Clone)]
pub struct AwsFault {
    /// Only calls to this operation fail; `None` fails every call.
    pub operation: Option<String>,
    /// Only calls to this signing service fail (`ecr`, `ecr-public`, `sts`): ECR and ECR Public
    /// share operation names. `None` fails calls to any service.
    pub service: Option<String>,
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl AwsFault {
    fn matches(&self, call: &AwsCall) -> bool {
        self.operation
            .as_ref()
            .is_none_or(|op| *op == call.operation)
            && self.service.as_ref().is_none_or(|s| *s == call.service)
    }
}

#[derive(Default)]
struct Shared {
    calls: Vec<AwsCall>,
    /// The first fault that matches a call answers it; with a count, only that many calls.
    faults: Vec<(AwsFault, Option<usize>)>,
}

/// The password the front's ECR Public token carries: it names the access key that signed the
/// call, so a test can tell whose credentials were used.
pub fn ecr_public_password(access_key: &str) -> String {
    format!("{access_key}-public-auth-token")
}

/// How long the front's ECR Public tokens live, like the real service's.
pub const ECR_PUBLIC_TOKEN_LIFE: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

pub struct AwsFront {
    shared: Arc<Mutex<Shared>>,
    addr: std::net::SocketAddr,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl AwsFront {
    /// Starts a front on a free loopback port that forwards to `upstream` (e.g. `http://127.0.0.1:5000`).
    pub async fn start(upstream: &str) -> std::io::Result<AwsFront> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let upstream: hyper::Uri = upstream
            .parse()
            .map_err(|e| std::io::Error::other(format!("bad upstream URL: {e}")))?;
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let state = shared.clone();
        let (addr, tx) = http::serve("127.0.0.1:0", move |req| {
            forward(req, state.clone(), client.clone(), upstream.clone())
        })
        .await?;
        Ok(AwsFront {
            shared,
            addr,
            _shutdown: tx,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<AwsCall> {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .calls
            .clone()
    }

    /// Answers matching calls with `fault` from now on, instead of any earlier fault.
    pub fn fail(&self, fault: AwsFault) {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).faults = vec![(fault, None)];
    }

    /// Adds `fault` to the faults already injected (for other operations).
    pub fn fail_also(&self, fault: AwsFault) {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .faults
            .push((fault, None));
    }

    /// Answers the next `times` matching calls with `fault`, then forwards again. Faults added
    /// before stay, and answer the calls this one does not match.
    pub fn fail_times(&self, fault: AwsFault, times: usize) {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .faults
            .push((fault, Some(times)));
    }

    pub fn clear_fault(&self) {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .faults
            .clear();
    }
}

/// The operation name: from `X-Amz-Target` (JSON protocols), or `Action=` in a query-protocol body.
fn operation(headers: &hyper::HeaderMap, body: &[u8]) -> String {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return target.rsplit('.').next().unwrap_or(target).to_string();
    }
    let body = String::from_utf8_lossy(body);
    body.split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .unwrap_or("")
        .to_string()
}

/// `(access key, region, service)` from `Credential=AKID/DATE/REGION/SERVICE/aws4_request`.
fn scope(headers: &hyper::HeaderMap) -> (String, String, String) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let cred = auth
        .split("Credential=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("");
    let parts: Vec<&str> = cred.split('/').collect();
    match parts.as_slice() {
        [key, _date, region, service, ..] => {
            (key.to_string(), region.to_string(), service.to_string())
        }
        _ => Default::default(),
    }
}

async fn forward(
    req: hyper::Request<hyper::body::Incoming>,
    state: Arc<Mutex<Shared>>,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: hyper::Uri,
) -> http::Response {
    let (mut parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (access_key, region, service) = scope(&parts.headers);
    let call = AwsCall {
        operation: operation(&parts.headers, &body),
        service,
        region,
        access_key,
    };
    let fault = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.calls.push(call.clone());
        let found = st.faults.iter().position(|(f, _)| f.matches(&call));
        found.map(|i| {
            let fault = st.faults[i].0.clone();
            if let Some(left) = st.faults[i].1.as_mut() {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    st.faults.remove(i);
                }
            }
            fault
        })
    };
    if let Some(f) = fault {
        // Query-protocol services (STS) answer errors in XML, JSON-protocol ones in JSON.
        if parts.headers.get("x-amz-target").is_none() {
            let body = format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>fake-request-id</RequestId></ErrorResponse>",
                f.code, f.message
            );
            return http::response(
                f.status,
                &[
                    ("content-type", "text/xml".into()),
                    ("x-amzn-requestid", "fake-request-id".into()),
                ],
                body,
            );
        }
        let body = format!(r#"{{"__type":"{}","message":"{}"}}"#, f.code, f.message);
        return http::response(
            f.status,
            &[
                ("content-type", "application/x-amz-json-1.1".into()),
                ("x-amzn-errortype", f.code.clone()),
                ("x-amzn-requestid", "fake-request-id".into()),
            ],
            body,
        );
    }
    if call.operation == "GetDownloadUrlForLayer" {
        return download_url(&body);
    }
    if call.service == "ecr-public" && call.operation == "GetAuthorizationToken" {
        return ecr_public_token(&call.access_key);
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri = format!(
        "{}://{}{}",
        upstream.scheme_str().unwrap_or("http"),
        upstream.authority().map(|a| a.as_str()).unwrap_or(""),
        path
    );
    parts.uri = match uri.parse() {
        Ok(u) => u,
        Err(e) => return http::response(502, &[], format!("bad upstream URI: {e}")),
    };
    match client
        .request(hyper::Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            hyper::Response::from_parts(parts, Full::new(body).boxed())
        }
        Err(e) => http::response(502, &[], format!("upstream failed: {e}")),
    }
}

/// `GetDownloadUrlForLayer` as ECR answers it (moto lacks it): a pre-signed S3 URL for the layer.
fn download_url(body: &[u8]) -> http::Response {
    let digest = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["layerDigest"].as_str().map(str::to_string))
        .unwrap_or_default();
    let answer = serde_json::json!({
        "downloadUrl": format!("https://prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com/{}", digest.replace(':', "-")),
        "layerDigest": digest,
    });
    http::response(
        200,
        &[("content-type", "application/x-amz-json-1.1".into())],
        answer.to_string(),
    )
}

/// ECR Public's GetAuthorizationToken (awsJson1_1), as the service documents its answer.
fn ecr_public_token(access_key: &str) -> http::Response {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("AWS:{}", ecr_public_password(access_key)));
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        + ECR_PUBLIC_TOKEN_LIFE;
    let body = serde_json::json!({
        "authorizationData": {"authorizationToken": token, "expiresAt": expires.as_secs()}
    });
    http::response(
        200,
        &[
            ("content-type", "application/x-amz-json-1.1".into()),
            ("x-amzn-requestid", "fake-request-id".into()),
        ],
        body.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls `operation` of `service` on the front, signed as the SDK would scope it, and
    /// returns the status.
    async fn call(front: &AwsFront, service: &str, operation: &str) -> u16 {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let target = match service {
            "ecr-public" => format!("SpencerFrontendService.{operation}"),
            _ => format!("AmazonEC2ContainerRegistry_V20150921.{operation}"),
        };
        let req = hyper::Request::post(front.url())
            .header("x-amz-target", target)
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=00"
                ),
            )
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        client.request(req).await.unwrap().status().as_u16()
    }

    fn fault(operation: &str, service: Option<&str>) -> AwsFault {
        AwsFault {
            operation: Some(operation.into()),
            service: service.map(Into::into),
            status: 400,
            code: "AccessDeniedException".into(),
            message: "injected".into(),
        }
    }

    #[tokio::test]
    async fn a_fault_for_one_service_leaves_the_other_alone() {
        // Nothing listens upstream: only the front's own answers can succeed.
        let front = AwsFront::start("http://127.0.0.1:1").await.unwrap();
        front.fail(fault("GetAuthorizationToken", Some("ecr")));
        assert_eq!(call(&front, "ecr", "GetAuthorizationToken").await, 400);
        assert_eq!(
            call(&front, "ecr-public", "GetAuthorizationToken").await,
            200
        );
        front.fail(fault("GetAuthorizationToken", None));
        assert_eq!(
            call(&front, "ecr-public", "GetAuthorizationToken").await,
            400
        );
    }

    #[tokio::test]
    async fn fail_times_keeps_the_faults_added_before() {
        let front = AwsFront::start("http://127.0.0.1:1").await.unwrap();
        front.fail(fault("DescribeImages", None));
        front.fail_times(fault("GetAuthorizationToken", Some("ecr-public")), 1);
        assert_eq!(
            call(&front, "ecr-public", "GetAuthorizationToken").await,
            400
        );
        assert_eq!(
            call(&front, "ecr-public", "GetAuthorizationToken").await,
            200
        );
        assert_eq!(call(&front, "ecr", "DescribeImages").await, 400);
    }
}
