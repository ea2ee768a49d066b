//! `CredentialProviderRequest` in, `CredentialProviderResponse` out, in the apiVersion the
//! kubelet sent: `credentialprovider.kubelet.k8s.io/v1` (stable since 1.26), or `v1beta1` and
//! `v1alpha1` from older kubelets. The three carry the same image and response fields; the
//! ServiceAccount fields (`serviceAccountToken`, `serviceAccountAnnotations`, KEP-4412) exist
//! only in v1, since the kubelet accepts `tokenAttributes` only for a v1 provider. In another
//! version they are ignored, as that version's decoder would.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::kubelet::cache::go_duration;
use crate::sensitive::Sensitive;

pub const GROUP: &str = "credentialprovider.kubelet.k8s.io";
pub const REQUEST_KIND: &str = "CredentialProviderRequest";
pub const RESPONSE_KIND: &str = "CredentialProviderResponse";

/// The protocol versions a kubelet may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V1,
    V1beta1,
    V1alpha1,
}

impl ApiVersion {
    pub const ALL: [ApiVersion; 3] = [ApiVersion::V1, ApiVersion::V1beta1, ApiVersion::V1alpha1];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1 => "credentialprovider.kubelet.k8s.io/v1",
            ApiVersion::V1beta1 => "credentialprovider.kubelet.k8s.io/v1beta1",
            ApiVersion::V1alpha1 => "credentialprovider.kubelet.k8s.io/v1alpha1",
        }
    }

    fn parse(s: &str) -> Option<ApiVersion> {
        ApiVersion::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the kubelet asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub api_version: ApiVersion,
    /// The image being pulled, as written in the pod spec.
    pub image: String,
    /// The pod's ServiceAccount token, sent only when the kubelet's config has `tokenAttributes`.
    pub service_account_token: Option<Sensitive>,
    /// The ServiceAccount annotations the config's `tokenAttributes` asked for.
    pub service_account_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(
        "stdin is not a CredentialProviderRequest: {0}. This command is run by the kubelet, which writes the request to its stdin"
    )]
    NotJson(String),
    #[error(
        "apiVersion '{0}' is not one this plugin speaks: set the provider's apiVersion in the kubelet's CredentialProviderConfig to credentialprovider.kubelet.k8s.io/v1 (or v1beta1, v1alpha1)"
    )]
    ApiVersion(String),
    #[error("kind '{0}' is not CredentialProviderRequest")]
    Kind(String),
    #[error("the CredentialProviderRequest names no image")]
    NoImage,
}

/// The request as sent. Field types are loose so that a wrong type is reported by name, not
/// by serde, whose messages quote the offending value (which could be the token).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    api_version: Option<Value>,
    kind: Option<Value>,
    image: Option<Value>,
    service_account_token: Option<Value>,
    service_account_annotations: Option<Map<String, Value>>,
}

/// Reads one request. Errors never quote the token.
pub fn parse_request(input: &[u8]) -> Result<Request, RequestError> {
    let raw: Raw = serde_json::from_slice(input).map_err(|e| {
        RequestError::NotJson(format!(
            "invalid JSON at line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    let text = |v: Option<Value>| match v {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let version = text(raw.api_version);
    let api_version = ApiVersion::parse(&version).ok_or(RequestError::ApiVersion(version))?;
    let kind = text(raw.kind);
    if kind != REQUEST_KIND {
        return Err(RequestError::Kind(kind));
    }
    let image = text(raw.image).trim().to_string();
    if image.is_empty() {
        return Err(RequestError::NoImage);
    }
    // Not fields of v1beta1 or v1alpha1: a role is never chosen from them.
    let v1 = api_version == ApiVersion::V1;
    let token = if v1 {
        text(raw.service_account_token)
    } else {
        String::new()
    };
    let service_account_annotations = raw
        .service_account_annotations
        .filter(|_| v1)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            _ => None,
        })
        .collect();
    Ok(Request {
        api_version,
        image,
        service_account_token: (!token.is_empty()).then(|| Sensitive::new(token)),
        service_account_annotations,
    })
}

/// One `auth` entry: the match key (a registry host) and its docker credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub key: String,
    pub username: String,
    pub password: Sensitive,
}

/// What the plugin answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub api_version: ApiVersion,
    pub cache_duration: Duration,
    pub auth: Vec<Auth>,
}

/// The cache key type: one answer serves every image of the registry, since an ECR token is
/// valid for the whole registry (ECR Public: every public repository). In ServiceAccount-token
/// mode the kubelet adds the ServiceAccount to the key itself, as the config's
/// `tokenAttributes.cacheType` says.
pub const CACHE_KEY_TYPE: &str = "Registry";

/// The response JSON, which holds the password: print it to stdout and nowhere else.
pub fn render_response(r: &Response) -> Sensitive {
    let auth: Map<String, Value> = r
        .auth
        .iter()
        .map(|a| {
            (
                a.key.clone(),
                json!({"username": a.username, "password": a.password.expose()}),
            )
        })
        .collect();
    Sensitive::new(
        json!({
            "apiVersion": r.api_version.as_str(),
            "kind": RESPONSE_KIND,
            "cacheKeyType": CACHE_KEY_TYPE,
            "cacheDuration": go_duration(r.cache_duration),
            "auth": auth,
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.sig";

    #[test]
    fn reads_each_version() {
        for v in ApiVersion::ALL {
            let body = format!(
                r#"{{"apiVersion":"{v}","kind":"CredentialProviderRequest","image":"123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1"}}"#
            );
            let r = parse_request(body.as_bytes()).unwrap();
            assert_eq!(r.api_version, v);
            assert_eq!(
                r.image,
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1"
            );
            assert!(r.service_account_token.is_none());
            assert!(r.service_account_annotations.is_empty());
        }
    }

    #[test]
    fn reads_the_service_account_fields() {
        let body = format!(
            r#"{{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"public.ecr.aws/x/y","serviceAccountToken":"{TOKEN}","serviceAccountAnnotations":{{"eks.amazonaws.com/ecr-role-arn":"arn:aws:iam::123456789012:role/r","n":1}}}}"#
        );
        let r = parse_request(body.as_bytes()).unwrap();
        assert_eq!(r.service_account_token.unwrap().expose(), TOKEN);
        assert_eq!(
            r.service_account_annotations
                .get("eks.amazonaws.com/ecr-role-arn")
                .map(String::as_str),
            Some("arn:aws:iam::123456789012:role/r")
        );
        // Annotation values are strings; anything else is dropped, not guessed at.
        assert!(!r.service_account_annotations.contains_key("n"));
    }

    #[test]
    fn the_service_account_fields_are_read_only_in_v1() {
        for v in [ApiVersion::V1beta1, ApiVersion::V1alpha1] {
            let body = format!(
                r#"{{"apiVersion":"{v}","kind":"CredentialProviderRequest","image":"public.ecr.aws/x/y","serviceAccountToken":"{TOKEN}","serviceAccountAnnotations":{{"eks.amazonaws.com/ecr-role-arn":"arn:aws:iam::123456789012:role/r"}}}}"#
            );
            let r = parse_request(body.as_bytes()).unwrap();
            assert!(r.service_account_token.is_none(), "{v}");
            assert!(r.service_account_annotations.is_empty(), "{v}");
        }
    }

    #[test]
    fn bad_requests_are_named_and_never_quote_the_token() {
        let v1 = "credentialprovider.kubelet.k8s.io/v1";
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "invalid JSON at line 1"),
            (
                format!(r#"{{"serviceAccountToken":"{TOKEN}""#),
                "invalid JSON",
            ),
            (
                format!(
                    r#"{{"apiVersion":"v1","kind":"CredentialProviderRequest","image":"a.io/b","serviceAccountToken":"{TOKEN}"}}"#
                ),
                "apiVersion 'v1'",
            ),
            (
                format!(r#"{{"apiVersion":"{v1}","kind":"Pod","image":"a.io/b"}}"#),
                "kind 'Pod'",
            ),
            (
                format!(
                    r#"{{"apiVersion":"{v1}","kind":"CredentialProviderRequest","image":" "}}"#
                ),
                "names no image",
            ),
            (
                format!(
                    r#"{{"apiVersion":"{v1}","kind":"CredentialProviderRequest","image":7,"serviceAccountToken":["{TOKEN}"]}}"#
                ),
                "names no image",
            ),
        ];
        for (body, want) in cases {
            let err = parse_request(body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{body}: {err}");
            assert!(!err.contains(TOKEN) && !err.contains("c2VjcmV0"), "{err}");
        }
    }

    #[test]
    fn renders_in_the_version_it_was_sent() {
        for v in ApiVersion::ALL {
            let r = Response {
                api_version: v,
                cache_duration: Duration::from_secs(42300),
                auth: vec![Auth {
                    key: "123456789012.dkr.ecr.us-east-1.amazonaws.com".into(),
                    username: "AWS".into(),
                    password: Sensitive::new("pw"),
                }],
            };
            let out: Value = serde_json::from_str(render_response(&r).expose()).unwrap();
            assert_eq!(
                out,
                json!({
                    "apiVersion": v.as_str(),
                    "kind": "CredentialProviderResponse",
                    "cacheKeyType": "Registry",
                    "cacheDuration": "11h45m0s",
                    "auth": {"123456789012.dkr.ecr.us-east-1.amazonaws.com": {"username": "AWS", "password": "pw"}}
                })
            );
        }
    }
}
