//! The CreateSession call: sending the signed request and reading the credentials out of the
//! answer. The transport is hyper with rustls, the same stack as the other clients.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::RaError;
use super::signer::Signed;
use crate::sensitive::Sensitive;

/// Session credentials from Roles Anywhere.
#[derive(Debug, Clone)]
pub struct SessionCredentials {
    pub access_key_id: String,
    pub secret_access_key: Sensitive,
    pub session_token: Sensitive,
    pub expiration: jiff::Timestamp,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    credential_set: Vec<CredentialSetItem>,
}

#[derive(Deserialize)]
struct CredentialSetItem {
    credentials: Credentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

#[derive(Deserialize)]
struct ServiceError {
    #[serde(alias = "Message")]
    message: Option<String>,
}

/// Parses a 2xx CreateSession body.
pub fn parse_response(body: &[u8]) -> Result<SessionCredentials, String> {
    let resp: Response =
        serde_json::from_slice(body).map_err(|e| format!("unexpected answer: {e}"))?;
    let c = resp
        .credential_set
        .into_iter()
        .next()
        .ok_or("the answer has an empty credentialSet")?
        .credentials;
    let expiration = c
        .expiration
        .parse::<jiff::Timestamp>()
        .map_err(|e| format!("unexpected expiration '{}': {e}", c.expiration))?;
    Ok(SessionCredentials {
        access_key_id: c.access_key_id,
        secret_access_key: Sensitive::new(c.secret_access_key),
        session_token: Sensitive::new(c.session_token),
        expiration,
    })
}

/// POSTs the signed request to `endpoint` (scheme and authority) and reads the answer.
pub async fn create_session(
    endpoint: &str,
    signed: &Signed,
    body: Vec<u8>,
) -> Result<SessionCredentials, RaError> {
    let transport = |message: String| RaError::Transport {
        endpoint: endpoint.to_string(),
        message,
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| transport(format!("no CA certificates: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let mut builder = hyper::Request::post(format!("{endpoint}{}", signed.path_and_query));
    for (k, v) in &signed.headers {
        // hyper derives Host from the URL; a second one would be a different request.
        if k != "host" {
            builder = builder.header(k, v);
        }
    }
    builder = builder.header(
        "user-agent",
        concat!("ecr-secret-refresher/", env!("CARGO_PKG_VERSION")),
    );
    let request = builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| transport(e.to_string()))?;
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
            .await
            .map_err(|_| transport("no answer within 30 s".into()))?
            .map_err(|e| transport(crate::errors::chain(&e)))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| transport(e.to_string()))?
        .to_bytes();
    if status.is_success() {
        return parse_response(&bytes).map_err(|message| RaError::Service {
            status: status.as_u16(),
            message,
        });
    }
    let message = serde_json::from_slice::<ServiceError>(&bytes)
        .ok()
        .and_then(|e| e.message)
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
    Err(RaError::Service {
        status: status.as_u16(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_credential_set() {
        let body = br#"{"credentialSet":[{"assumedRoleUser":{"arn":"arn:aws:sts::123456789012:assumed-role/r/s","assumedRoleId":"AROA:s"},
            "credentials":{"accessKeyId":"ASIAEXAMPLE","expiration":"2026-11-21T13:00:00Z","secretAccessKey":"sk","sessionToken":"st"},
            "packedPolicySize":0,"roleArn":"arn:aws:iam::123456789012:role/r","sourceIdentity":"CN=leaf"}],"subjectArn":"arn:aws:rolesanywhere:us-east-1:123456789012:subject/s"}"#;
        let c = parse_response(body).unwrap();
        assert_eq!(c.access_key_id, "ASIAEXAMPLE");
        assert_eq!(c.secret_access_key.expose(), "sk");
        assert_eq!(c.expiration.to_string(), "2026-11-21T13:00:00Z");
        assert!(parse_response(br#"{"credentialSet":[]}"#).is_err());
    }
}
