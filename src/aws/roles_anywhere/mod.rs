//! IAM Roles Anywhere, natively: short-lived AWS credentials from an X.509 certificate and its
//! private key, through CreateSession, with no helper binary.
//!
//! [`keys`] loads and checks the identity, [`signer`] computes the signature (pure),
//! [`session`] sends the request; [`RolesAnywhere`] ties them together as an aws-config
//! credentials provider, so the ECR and STS clients use it like any other source.

pub mod keys;
pub mod session;
pub mod signer;

use std::path::PathBuf;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::aws::registry::{dns_suffix, is_region};
use crate::sensitive::Sensitive;
use keys::{Certificate, KeyError, SigningKey};
use session::SessionCredentials;

#[derive(Debug, thiserror::Error)]
pub enum RaError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{flag}: '{value}' is not {what}")]
    Arn {
        flag: &'static str,
        value: String,
        what: &'static str,
    },
    #[error(
        "--ra-profile-arn is in {profile} but --ra-trust-anchor-arn is in {anchor}: the profile and the trust anchor must be in the same region"
    )]
    RegionMismatch { anchor: String, profile: String },
    #[error("--ra-session-duration must be between 900 and 43200 seconds, got {0}")]
    Duration(u32),
    #[error(
        "--ra-endpoint: '{0}' is not an endpoint such as https://rolesanywhere.eu-west-1.amazonaws.com (scheme and host, optionally a port, no path)"
    )]
    Endpoint(String),
    #[error(
        "--ra-endpoint: '{0}' uses http://, which would send the session credentials unencrypted. Use https://; http:// is allowed only for a loopback host (127.0.0.1, ::1, localhost)"
    )]
    PlainHttpEndpoint(String),
    #[error("cannot read the private key's passphrase: {0}")]
    Passphrase(String),
    #[error("cannot reach Roles Anywhere at {endpoint}: {message}")]
    Transport {
        endpoint: String,
        message: String,
        /// No answer in time, or a connection that failed or broke: a later run may pass.
        transient: bool,
    },
    #[error(
        "cannot build the Roles Anywhere CreateSession request for {endpoint}: {message}. Check --ra-endpoint and the certificate files"
    )]
    Request { endpoint: String, message: String },
    #[error("Roles Anywhere CreateSession failed (HTTP {status}): {message}")]
    Service { status: u16, message: String },
}

impl RaError {
    /// Whether a later run may pass without anyone changing anything: the service did not
    /// answer, throttled, or failed on its side.
    pub fn may_pass_on_retry(&self) -> bool {
        match self {
            RaError::Transport { transient, .. } => *transient,
            RaError::Service { status, .. } => crate::aws::transient::http_status(*status),
            _ => false,
        }
    }
}

/// Where the passphrase of an encrypted private key comes from; never a flag's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Passphrase {
    /// The name of an environment variable that holds it.
    Env(String),
    /// A file that holds it (a trailing newline is dropped).
    File(PathBuf),
}

/// Validated Roles Anywhere settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    pub intermediates: Option<PathBuf>,
    pub trust_anchor_arn: String,
    pub profile_arn: String,
    pub role_arn: String,
    pub duration_seconds: u32,
    pub role_session_name: Option<String>,
    pub endpoint: Option<String>,
    pub passphrase: Option<Passphrase>,
    /// From the trust anchor's ARN.
    pub region: String,
}

/// `(partition, region)` of a Roles Anywhere ARN of the given resource type.
pub fn parse_arn(value: &str, resource: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "rolesanywhere", region, account, res]
            if partition.starts_with("aws")
                && is_region(region)
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && res
                    .strip_prefix(resource)
                    .and_then(|r| r.strip_prefix('/'))
                    .is_some_and(|id| !id.is_empty()) =>
        {
            Some((partition.to_string(), region.to_string()))
        }
        _ => None,
    }
}

impl Settings {
    /// Checks the ARNs, their regions and the duration. Files are read later, by [`RolesAnywhere::load`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        certificate: PathBuf,
        private_key: PathBuf,
        intermediates: Option<PathBuf>,
        trust_anchor_arn: String,
        profile_arn: String,
        role_arn: String,
        duration_seconds: u32,
        role_session_name: Option<String>,
        endpoint: Option<String>,
        passphrase: Option<Passphrase>,
    ) -> Result<Settings, RaError> {
        let (_, region) = parse_arn(&trust_anchor_arn, "trust-anchor").ok_or_else(|| RaError::Arn {
            flag: "--ra-trust-anchor-arn",
            value: trust_anchor_arn.clone(),
            what: "a trust anchor ARN such as arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/ID",
        })?;
        let (_, profile_region) = parse_arn(&profile_arn, "profile").ok_or_else(|| RaError::Arn {
            flag: "--ra-profile-arn",
            value: profile_arn.clone(),
            what: "a profile ARN such as arn:aws:rolesanywhere:us-east-1:123456789012:profile/ID",
        })?;
        if profile_region != region {
            return Err(RaError::RegionMismatch {
                anchor: region,
                profile: profile_region,
            });
        }
        if !crate::aws::settings::is_role_arn(&role_arn) {
            return Err(RaError::Arn {
                flag: "--ra-role-arn",
                value: role_arn,
                what: "an IAM role ARN such as arn:aws:iam::123456789012:role/ecr-reader",
            });
        }
        if !(900..=43200).contains(&duration_seconds) {
            return Err(RaError::Duration(duration_seconds));
        }
        if let Some(e) = &endpoint {
            endpoint_host(e).ok_or_else(|| RaError::Endpoint(e.clone()))?;
            if !plain_http_allowed(e) {
                return Err(RaError::PlainHttpEndpoint(e.clone()));
            }
        }
        Ok(Settings {
            certificate,
            private_key,
            intermediates,
            trust_anchor_arn,
            profile_arn,
            role_arn,
            duration_seconds,
            role_session_name,
            endpoint,
            passphrase,
            region,
        })
    }

    /// `https://rolesanywhere.{region}.{partition suffix}`, or the override.
    pub fn endpoint(&self) -> String {
        match &self.endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!(
                "https://rolesanywhere.{}.{}",
                self.region,
                dns_suffix(&self.region)
            ),
        }
    }
}

/// The `Host` header for an endpoint URL, as the HTTP client will send it: the host, and the
/// port only when it is not the scheme's default. `None` for anything but `scheme://authority`.
pub fn endpoint_host(endpoint: &str) -> Option<String> {
    let uri: hyper::Uri = endpoint.trim_end_matches('/').parse().ok()?;
    let default_port = match uri.scheme_str()? {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
        return None;
    }
    let host = uri.host()?.to_string();
    Some(match uri.port_u16() {
        Some(p) if p != default_port => format!("{host}:{p}"),
        _ => host,
    })
}

/// Whether `endpoint` (already checked by [`endpoint_host`]) may be used: any https:// URL, and
/// http:// only on this machine (a local test server or a sidecar), since the answer carries
/// the session credentials.
fn plain_http_allowed(endpoint: &str) -> bool {
    let Ok(uri) = endpoint.trim_end_matches('/').parse::<hyper::Uri>() else {
        return false;
    };
    if uri.scheme_str() != Some("http") {
        return true;
    }
    let host = uri.host().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A loaded, checked Roles Anywhere identity that can create sessions.
#[derive(Debug)]
pub struct RolesAnywhere {
    settings: Settings,
    leaf: Certificate,
    chain: Vec<Certificate>,
    key: SigningKey,
    http: SharedHttpClient,
}

fn read_passphrase(p: &Passphrase) -> Result<Sensitive, RaError> {
    match p {
        Passphrase::Env(name) => std::env::var(name)
            .map(Sensitive::new)
            .map_err(|_| RaError::Passphrase(format!("the environment variable {name} (named by --ra-private-key-passphrase-env) is not set"))),
        Passphrase::File(path) => std::fs::read_to_string(path)
            .map(|s| Sensitive::new(s.trim_end_matches(['\r', '\n'])))
            .map_err(|e| RaError::Passphrase(format!("{}: {e}", path.display()))),
    }
}

impl RolesAnywhere {
    /// Reads the certificate, chain and key, and checks them: the key matches the leaf, and the
    /// leaf is valid now. Every failure names the file. Sessions are created through `http`, the
    /// client of every AWS call.
    pub fn load(settings: Settings, http: SharedHttpClient) -> Result<RolesAnywhere, RaError> {
        let certs = keys::load_certificates(&settings.certificate)?;
        let mut chain: Vec<Certificate> = certs[1..].to_vec();
        let leaf = certs
            .into_iter()
            .next()
            .ok_or_else(|| KeyError::NoCertificate {
                path: settings.certificate.clone(),
                message: "the file is empty".into(),
            })?;
        if let Some(path) = &settings.intermediates {
            chain.extend(keys::load_certificates(path)?);
        }
        leaf.check_validity(&settings.certificate, SystemTime::now())?;
        let passphrase = settings
            .passphrase
            .as_ref()
            .map(read_passphrase)
            .transpose()?;
        let key = keys::load_key(&settings.private_key, passphrase.as_ref())?;
        key.check_matches(&leaf, &settings.private_key, &settings.certificate)?;
        tracing::debug!(key = %key.kind(), serial = %leaf.serial, intermediates = chain.len(), "Roles Anywhere identity loaded");
        Ok(RolesAnywhere {
            settings,
            leaf,
            chain,
            key,
            http,
        })
    }

    /// The request to sign, with the ARNs in the query string as AWS's own client sends them.
    pub fn request(&self) -> (signer::Request, Vec<u8>) {
        let mut body = serde_json::json!({"durationSeconds": self.settings.duration_seconds});
        if let Some(name) = &self.settings.role_session_name {
            body["roleSessionName"] = serde_json::json!(name);
        }
        let body = body.to_string().into_bytes();
        // Checked when the settings were made; the default endpoint always parses.
        let host = endpoint_host(&self.settings.endpoint()).unwrap_or_default();
        let chain = (!self.chain.is_empty()).then(|| {
            self.chain
                .iter()
                .map(|c| STANDARD.encode(&c.der))
                .collect::<Vec<_>>()
                .join(",")
        });
        let req = signer::Request {
            host,
            path: "/sessions".into(),
            query: vec![
                ("profileArn".into(), self.settings.profile_arn.clone()),
                ("roleArn".into(), self.settings.role_arn.clone()),
                (
                    "trustAnchorArn".into(),
                    self.settings.trust_anchor_arn.clone(),
                ),
            ],
            body: body.clone(),
            region: self.settings.region.clone(),
            x509: STANDARD.encode(&self.leaf.der),
            x509_chain: chain,
            serial: self.leaf.serial.clone(),
        };
        (req, body)
    }

    /// Signs and sends CreateSession.
    pub async fn create_session(&self) -> Result<SessionCredentials, RaError> {
        let (req, body) = self.request();
        let signed = signer::sign(&req, &signer::amz_date(jiff::Timestamp::now()), &self.key);
        session::create_session(&self.http, &self.settings.endpoint(), &signed, body).await
    }
}

impl ProvideCredentials for RolesAnywhere {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let c = self
                .create_session()
                .await
                .map_err(CredentialsError::provider_error)?;
            let expiry = SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(c.expiration.as_second().max(0) as u64);
            Ok(Credentials::new(
                c.access_key_id,
                c.secret_access_key.expose(),
                Some(c.session_token.expose().to_string()),
                Some(expiry),
                "RolesAnywhere",
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TA: &str = "arn:aws:rolesanywhere:eu-west-1:123456789012:trust-anchor/7b1c";
    const PROFILE: &str = "arn:aws:rolesanywhere:eu-west-1:123456789012:profile/9f2e";
    const ROLE: &str = "arn:aws:iam::123456789012:role/ecr";

    fn settings(ta: &str, profile: &str, role: &str, duration: u32) -> Result<Settings, RaError> {
        Settings::new(
            "c".into(),
            "k".into(),
            None,
            ta.into(),
            profile.into(),
            role.into(),
            duration,
            None,
            None,
            None,
        )
    }

    #[test]
    fn region_and_endpoint_from_the_trust_anchor() {
        let s = settings(TA, PROFILE, ROLE, 3600).unwrap();
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(
            s.endpoint(),
            "https://rolesanywhere.eu-west-1.amazonaws.com"
        );
        let cn = settings(
            "arn:aws-cn:rolesanywhere:cn-north-1:123456789012:trust-anchor/a",
            "arn:aws-cn:rolesanywhere:cn-north-1:123456789012:profile/b",
            "arn:aws-cn:iam::123456789012:role/r",
            900,
        )
        .unwrap();
        assert_eq!(
            cn.endpoint(),
            "https://rolesanywhere.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn host_header_as_the_client_sends_it() {
        assert_eq!(
            endpoint_host("https://rolesanywhere.eu-west-1.amazonaws.com").as_deref(),
            Some("rolesanywhere.eu-west-1.amazonaws.com")
        );
        assert_eq!(
            endpoint_host("https://ra.example:443/").as_deref(),
            Some("ra.example")
        );
        assert_eq!(
            endpoint_host("http://127.0.0.1:8443").as_deref(),
            Some("127.0.0.1:8443")
        );
        assert_eq!(endpoint_host("https://ra.example/prefix"), None);
        assert_eq!(endpoint_host("ra.example"), None);
        assert!(
            Settings::new(
                "c".into(),
                "k".into(),
                None,
                TA.into(),
                PROFILE.into(),
                ROLE.into(),
                3600,
                None,
                Some("ftp://x".into()),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn plain_http_is_allowed_only_on_loopback() {
        let with_endpoint = |e: &str| {
            Settings::new(
                "c".into(),
                "k".into(),
                None,
                TA.into(),
                PROFILE.into(),
                ROLE.into(),
                3600,
                None,
                Some(e.into()),
                None,
            )
        };
        for ok in [
            "http://127.0.0.1:8443",
            "http://127.1.2.3",
            "http://[::1]:8443",
            "http://localhost:8443",
            "http://LOCALHOST",
            "https://ra.example",
            "https://10.0.0.5:8443",
        ] {
            assert!(with_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://ra.example",
            "http://10.0.0.5:8443",
            "http://[fe80::1]",
            "http://localhost.example.com",
            "http://128.0.0.1",
        ] {
            let err = with_endpoint(bad).unwrap_err();
            assert!(matches!(err, RaError::PlainHttpEndpoint(_)), "{bad}: {err}");
            let msg = err.to_string();
            assert!(
                msg.contains("--ra-endpoint") && msg.contains(bad) && msg.contains("https://"),
                "{msg}"
            );
        }
    }

    #[test]
    fn each_bad_setting_is_named() {
        let cases = [
            (
                settings(
                    "arn:aws:rolesanywhere:eu-west-1:123456789012:profile/x",
                    PROFILE,
                    ROLE,
                    3600,
                ),
                "--ra-trust-anchor-arn",
            ),
            (settings(TA, "nope", ROLE, 3600), "--ra-profile-arn"),
            (
                settings(
                    TA,
                    "arn:aws:rolesanywhere:us-east-1:123456789012:profile/9f2e",
                    ROLE,
                    3600,
                ),
                "same region",
            ),
            (
                settings(TA, PROFILE, "arn:aws:iam::123456789012:user/u", 3600),
                "--ra-role-arn",
            ),
            (settings(TA, PROFILE, ROLE, 899), "--ra-session-duration"),
            (settings(TA, PROFILE, ROLE, 43201), "--ra-session-duration"),
        ];
        for (result, want) in cases {
            let err = result.unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
