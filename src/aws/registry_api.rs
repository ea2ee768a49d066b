//! The registry endpoint itself (`https://ACCOUNT.dkr.ecr.REGION.amazonaws.com`): does
//! `GET /v2/` answer over HTTPS, within a short time, and accept the ECR token as Basic auth?
//! That is the first request every pull makes, so a failure here is a network or token problem
//! no IAM policy explains.
//!
//! Resolving the name is a step of its own, so that "no such name" and "no route" are told
//! apart. The address may be overridden (like curl's `--connect-to`): the TLS name, the
//! certificate check and the `Host` header stay the registry's, only the TCP peer changes. That
//! serves VPC endpoints without private DNS, and tests. The HTTP transport is one function,
//! [`get_v2`], so it can move onto a shared client.

use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

use crate::aws::http::{env_value, proxy_for};
use crate::sensitive::Sensitive;

/// How the `/v2/` check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V2Outcome {
    /// 200: the endpoint is reachable and took the token.
    Accepted { addrs: Vec<SocketAddr> },
    /// 401 (or 403) with the token: the registry does not accept it.
    TokenRefused { status: u16, addrs: Vec<SocketAddr> },
    /// Some other HTTP status.
    Unexpected { status: u16, addrs: Vec<SocketAddr> },
    /// The name does not resolve.
    Dns { name: String, message: String },
    /// No answer in time; `stage` says what was being waited for.
    Timeout {
        stage: &'static str,
        addrs: Vec<SocketAddr>,
    },
    /// The connection was refused or reset.
    Unreachable {
        addrs: Vec<SocketAddr>,
        message: String,
    },
    /// The TLS handshake failed, e.g. the certificate is not for the registry's name.
    Tls { message: String },
    /// The override address is not `HOST:PORT`.
    BadAddress(String),
    /// Not checked: the environment sends HTTPS to the registry through a proxy, which a
    /// direct connection would not test. `proxy` is its `HOST[:PORT]`, without credentials.
    ViaProxy { proxy: String },
}

/// Checks `GET https://{host}/v2/` with `username:password` as Basic auth, connecting to
/// `connect_to` (`HOST:PORT`) instead of `host:443` when given. Every step shares `timeout`.
pub async fn check(
    host: &str,
    connect_to: Option<&str>,
    username: &str,
    password: &Sensitive,
    timeout: Duration,
) -> V2Outcome {
    // The pull path goes through the proxy, which this check cannot stand in for; an explicit
    // address means the user wants the direct path checked.
    if connect_to.is_none()
        && let Some(proxy) = proxy_for(host, env_value)
    {
        return V2Outcome::ViaProxy { proxy };
    }
    let target = connect_to
        .map(str::to_string)
        .unwrap_or_else(|| format!("{host}:443"));
    if target
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return V2Outcome::BadAddress(target);
    }
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(timeout, tokio::net::lookup_host(target.clone())).await {
            Err(_) => {
                return V2Outcome::Timeout {
                    stage: "resolving the name",
                    addrs: Vec::new(),
                };
            }
            Ok(Err(e)) => {
                return V2Outcome::Dns {
                    name: target,
                    message: e.to_string(),
                };
            }
            Ok(Ok(a)) => a.collect(),
        };
    let auth = Sensitive::new(format!(
        "Basic {}",
        STANDARD.encode(format!("{username}:{}", password.expose()))
    ));
    match get_v2(host, &addrs, &auth, timeout).await {
        Ok(200) => V2Outcome::Accepted { addrs },
        Ok(status @ (401 | 403)) => V2Outcome::TokenRefused { status, addrs },
        Ok(status) => V2Outcome::Unexpected { status, addrs },
        Err(Failure::Timeout(stage)) => V2Outcome::Timeout { stage, addrs },
        Err(Failure::Tls(message)) => V2Outcome::Tls { message },
        Err(Failure::Other(message)) => V2Outcome::Unreachable { addrs, message },
    }
}

enum Failure {
    Timeout(&'static str),
    Tls(String),
    Other(String),
}

/// A resolver that answers every name with the addresses already looked up.
#[derive(Clone)]
struct Resolved(Vec<SocketAddr>);

impl tower_service::Service<Name> for Resolved {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Name) -> Self::Future {
        std::future::ready(Ok(self.0.clone().into_iter()))
    }
}

/// rustls with ring and the process's trust roots (read once, honouring `SSL_CERT_FILE`; see
/// [`crate::aws::trust`]).
fn tls_config() -> Result<rustls::ClientConfig, Failure> {
    let roots = crate::aws::trust::roots();
    if roots.der.is_empty() {
        return Err(Failure::Tls(
            "no CA certificates: install the ca-certificates package or set SSL_CERT_FILE to a PEM bundle".into(),
        ));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::Tls(e.to_string()))?
        .with_root_certificates(roots.store.clone())
        .with_no_client_auth())
}

/// The transport: one HTTPS GET of `/v2/` to `addrs`, with rustls (ring) and the process's
/// trust roots, SNI and certificate name `host`. Returns the status.
async fn get_v2(
    host: &str,
    addrs: &[SocketAddr],
    authorization: &Sensitive,
    timeout: Duration,
) -> Result<u16, Failure> {
    let mut http = HttpConnector::new_with_resolver(Resolved(addrs.to_vec()));
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config()?)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let mut value = hyper::header::HeaderValue::from_str(authorization.expose())
        .map_err(|_| Failure::Other("the token is not a valid header value".into()))?;
    value.set_sensitive(true);
    let request = hyper::Request::get(format!("https://{host}/v2/"))
        .header(hyper::header::AUTHORIZATION, value)
        .header(
            hyper::header::USER_AGENT,
            concat!("ecr-secret-refresher/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| Failure::Other(e.to_string()))?;
    match tokio::time::timeout(timeout, client.request(request)).await {
        Err(_) => Err(Failure::Timeout(
            "a TLS handshake and an HTTP answer after connecting",
        )),
        Ok(Ok(response)) => Ok(response.status().as_u16()),
        Ok(Err(e)) => Err(classify(&e)),
    }
}

/// Sorts a transport error by the I/O errors inside it: rustls failures surface as
/// `InvalidData`. `io::Error::source` skips a wrapped error, so wrapped ones are opened by hand.
fn classify(err: &(dyn std::error::Error + 'static)) -> Failure {
    let message = crate::errors::chain(err);
    let mut pending: Vec<&(dyn std::error::Error + 'static)> = vec![err];
    while let Some(e) = pending.pop() {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::TimedOut => return Failure::Timeout("a TCP connection"),
                std::io::ErrorKind::InvalidData => return Failure::Tls(message),
                _ => {}
            }
            if let Some(inner) = io.get_ref() {
                pending.push(inner);
            }
        }
        if let Some(next) = e.source() {
            pending.push(next);
        }
    }
    Failure::Other(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

    #[test]
    fn the_proxy_is_found_and_shown_without_credentials() {
        assert_eq!(proxy_for(ECR, env(&[])), None);
        let p = proxy_for(
            ECR,
            env(&[("HTTPS_PROXY", "http://user:s3cret@proxy.corp:3128/")]),
        );
        assert_eq!(p.as_deref(), Some("proxy.corp:3128"));
        let p = proxy_for(ECR, env(&[("https_proxy", "user:s3cret@10.0.0.5:8080")]));
        assert_eq!(p.as_deref(), Some("10.0.0.5:8080"));
        // ALL_PROXY is the fallback; HTTPS_PROXY wins over it; HTTP_PROXY is not for HTTPS.
        let p = proxy_for(ECR, env(&[("ALL_PROXY", "socks5://all:1080")]));
        assert_eq!(p.as_deref(), Some("all:1080"));
        let p = proxy_for(
            ECR,
            env(&[
                ("ALL_PROXY", "http://all:1"),
                ("HTTPS_PROXY", "http://https:2"),
            ]),
        );
        assert_eq!(p.as_deref(), Some("https:2"));
        assert_eq!(
            proxy_for(ECR, env(&[("HTTP_PROXY", "http://p:3128")])),
            None
        );
    }

    #[test]
    fn no_proxy_excludes_by_name_suffix_port_and_star() {
        let excluded = |rules: &str| {
            proxy_for(
                ECR,
                env(&[("HTTPS_PROXY", "http://p:3128"), ("NO_PROXY", rules)]),
            )
            .is_none()
        };
        for rules in [
            "*",
            ECR,
            ".amazonaws.com",
            "amazonaws.com",
            "*.amazonaws.com",
            "localhost, .AMAZONAWS.com",
            "localhost,ecr.us-east-1.amazonaws.com",
            "dkr.ecr.us-east-1.amazonaws.com:443",
        ] {
            assert!(excluded(rules), "{rules}");
        }
        for rules in [
            "",
            "localhost,127.0.0.1,10.0.0.0/8",
            "azonaws.com",
            "dkr.ecr.us-east-1.amazonaws.com:8443",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn",
            ".",
        ] {
            assert!(!excluded(rules), "{rules}");
        }
        // The lower-case form counts too.
        let p = proxy_for(
            ECR,
            env(&[
                ("https_proxy", "http://p:1"),
                ("no_proxy", ".amazonaws.com"),
            ]),
        );
        assert_eq!(p, None);
    }

    #[tokio::test]
    async fn a_malformed_override_is_named() {
        let pw = Sensitive::new("pw");
        for bad in ["127.0.0.1", "127.0.0.1:http", ":443"] {
            let out = check("h.example", Some(bad), "AWS", &pw, Duration::from_secs(1)).await;
            assert_eq!(out, V2Outcome::BadAddress(bad.into()));
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_not_a_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let pw = Sensitive::new("pw");
        let out = check("h.example", Some(&addr), "AWS", &pw, Duration::from_secs(2)).await;
        assert!(matches!(out, V2Outcome::Unreachable { .. }), "{out:?}");
    }
}
