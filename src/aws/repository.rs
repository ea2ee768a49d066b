//! Questions about one ECR repository and image, asked the way a pull would ask them:
//! does the repository hold this tag or digest (`DescribeImages`, `BatchGetImage`), may the
//! caller fetch its manifest and layers (`BatchGetImage`, `GetDownloadUrlForLayer`), and what
//! does the repository policy allow (`GetRepositoryPolicy`).
//!
//! Each call answers with a typed [`Refusal`] that keeps "does not exist" apart from "not
//! authorized", because the fixes differ. The policy reading is pure and tested on its own.

use aws_config::{Region, SdkConfig};
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecr::types::ImageIdentifier;
use serde_json::Value;

use crate::aws::image::{ImageRef, Reference};
use crate::aws::registry::{Registry, partition};

/// The actions a pull needs on the repository (the registry endpoint checks the same ones).
pub const PULL_ACTIONS: [&str; 3] = [
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
];

/// One image in one registry: what the calls below are about.
#[derive(Debug, Clone)]
pub struct Target {
    pub registry: Registry,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Target {
    pub fn new(registry: Registry, image: &ImageRef) -> Target {
        Target {
            registry,
            repository: image.repository.clone(),
            tag: image.tag.clone(),
            digest: image.digest.clone(),
        }
    }

    /// The repository's ARN, in the registry's partition.
    pub fn repository_arn(&self) -> String {
        format!(
            "arn:{}:ecr:{}:{}:repository/{}",
            partition(&self.registry.region),
            self.registry.region,
            self.registry.account,
            self.repository
        )
    }

    /// `repo:tag`, `repo@digest`, or `repo:latest` when neither was given, as a pull resolves it.
    pub fn display(&self) -> String {
        match self.reference() {
            Reference::Digest(d) => format!("{}@{d}", self.repository),
            Reference::Tag(t) => format!("{}:{t}", self.repository),
        }
    }

    fn reference(&self) -> Reference<'_> {
        Reference::of(self.tag.as_deref(), self.digest.as_deref())
    }

    /// The same repository, one manifest by digest (a platform manifest of an index).
    pub fn at_digest(&self, digest: &str) -> Target {
        Target {
            tag: None,
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    fn image_id(&self) -> ImageIdentifier {
        match self.reference() {
            Reference::Digest(d) => ImageIdentifier::builder().image_digest(d).build(),
            Reference::Tag(t) => ImageIdentifier::builder().image_tag(t).build(),
        }
    }
}

/// Why a call gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `RepositoryNotFoundException`.
    RepositoryNotFound(String),
    /// `ImageNotFoundException`, or an `ImageNotFound` failure in `BatchGetImage`.
    ImageNotFound(String),
    /// `LayersNotFoundException` / `LayerInaccessibleException`: the image is broken.
    LayerMissing { code: String, message: String },
    /// `RepositoryPolicyNotFoundException`: the repository has no policy.
    NoPolicy(String),
    /// `AccessDeniedException`: `action` is the IAM action that was refused.
    AccessDenied { action: String, message: String },
    /// Anything else: throttling, network, an unexpected answer.
    Failed {
        code: Option<String>,
        message: String,
    },
}

impl Refusal {
    /// The AWS error code, as the API named it.
    pub fn code(&self) -> Option<&str> {
        match self {
            Refusal::RepositoryNotFound(_) => Some("RepositoryNotFoundException"),
            Refusal::ImageNotFound(_) => Some("ImageNotFoundException"),
            Refusal::LayerMissing { code, .. } => Some(code),
            Refusal::NoPolicy(_) => Some("RepositoryPolicyNotFoundException"),
            Refusal::AccessDenied { .. } => Some("AccessDeniedException"),
            Refusal::Failed { code, .. } => code.as_deref(),
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Refusal::RepositoryNotFound(m)
            | Refusal::ImageNotFound(m)
            | Refusal::NoPolicy(m)
            | Refusal::LayerMissing { message: m, .. }
            | Refusal::AccessDenied { message: m, .. }
            | Refusal::Failed { message: m, .. } => m,
        }
    }
}

/// What `DescribeImages` says about the image.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub digest: Option<String>,
    pub pushed_at: Option<jiff::Timestamp>,
}

/// What `BatchGetImage` returned: the manifest's digest and the first layer to fetch, if the
/// manifest names layers, or the first platform manifest, if it is an index.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: Option<String>,
    pub first_layer: Option<String>,
    pub first_platform: Option<String>,
}

/// An ECR API client for the registry's region (and FIPS endpoint), with the caller's credentials.
pub fn client(sdk: &SdkConfig, registry: &Registry) -> aws_sdk_ecr::Client {
    let conf = aws_sdk_ecr::config::Builder::from(sdk)
        .region(Region::new(registry.region.clone()))
        .use_fips(registry.fips)
        .build();
    aws_sdk_ecr::Client::from_conf(conf)
}

/// Sorts an SDK error into a [`Refusal`]; `operation` names the IAM action when AWS did not.
fn refusal<E, R>(err: &SdkError<E, R>, operation: &str) -> Refusal
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let code = err.code().map(str::to_string);
    let message = err
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| crate::errors::chain(err));
    match code.as_deref() {
        Some("RepositoryNotFoundException") => Refusal::RepositoryNotFound(message),
        Some("ImageNotFoundException") => Refusal::ImageNotFound(message),
        Some("RepositoryPolicyNotFoundException") => Refusal::NoPolicy(message),
        Some(c @ ("LayersNotFoundException" | "LayerInaccessibleException")) => {
            Refusal::LayerMissing {
                code: c.to_string(),
                message,
            }
        }
        Some("AccessDeniedException") => Refusal::AccessDenied {
            action: denied_action(&message).unwrap_or_else(|| format!("ecr:{operation}")),
            message,
        },
        _ => Refusal::Failed { code, message },
    }
}

/// The action an AccessDenied message names: `... is not authorized to perform: ecr:X on ...`.
pub fn denied_action(message: &str) -> Option<String> {
    let rest = message.split("not authorized to perform: ").nth(1)?;
    let action: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == ':' || *c == '-')
        .collect();
    action.contains(':').then_some(action)
}

/// `DescribeImages` for the one image.
pub async fn describe_image(
    client: &aws_sdk_ecr::Client,
    target: &Target,
) -> Result<ImageInfo, Refusal> {
    let out = client
        .describe_images()
        .registry_id(&target.registry.account)
        .repository_name(&target.repository)
        .image_ids(target.image_id())
        .send()
        .await
        .map_err(|e| refusal(&e, "DescribeImages"))?;
    let detail = out
        .image_details
        .and_then(|d| d.into_iter().next())
        .ok_or_else(|| Refusal::ImageNotFound(format!("no image {}", target.display())))?;
    Ok(ImageInfo {
        digest: detail.image_digest,
        pushed_at: detail
            .image_pushed_at
            .and_then(|t| jiff::Timestamp::new(t.secs(), 0).ok()),
    })
}

/// `BatchGetImage` for the one image: the manifest a pull fetches first.
pub async fn batch_get_image(
    client: &aws_sdk_ecr::Client,
    target: &Target,
) -> Result<Manifest, Refusal> {
    let out = client
        .batch_get_image()
        .registry_id(&target.registry.account)
        .repository_name(&target.repository)
        .image_ids(target.image_id())
        .send()
        .await
        .map_err(|e| refusal(&e, "BatchGetImage"))?;
    if let Some(image) = out.images.and_then(|i| i.into_iter().next()) {
        let text = image.image_manifest.as_deref().unwrap_or_default();
        return Ok(Manifest {
            digest: image.image_id.and_then(|id| id.image_digest),
            first_layer: first_layer(text),
            first_platform: first_platform(text),
        });
    }
    let failure = out.failures.and_then(|f| f.into_iter().next());
    let reason = failure
        .as_ref()
        .and_then(|f| f.failure_reason.clone())
        .unwrap_or_else(|| "no image in the answer".into());
    let message = format!("{}: {reason}", target.display());
    match failure.and_then(|f| f.failure_code) {
        Some(code)
            if code.as_str() == "ImageNotFound"
                || code.as_str() == "ImageTagDoesNotMatchDigest" =>
        {
            Err(Refusal::ImageNotFound(message))
        }
        code => Err(Refusal::Failed {
            code: code.map(|c| c.as_str().to_string()),
            message,
        }),
    }
}

/// The first layer digest of an image manifest (Docker v2 or OCI); `None` for an index.
pub fn first_layer(manifest: &str) -> Option<String> {
    let v: Value = serde_json::from_str(manifest).ok()?;
    v.get("layers")?
        .as_array()?
        .first()?
        .get("digest")?
        .as_str()
        .map(str::to_string)
}

/// The first platform manifest of an index (Docker manifest list or OCI index), skipping the
/// attestation manifests `docker buildx` adds, which no runtime pulls.
pub fn first_platform(manifest: &str) -> Option<String> {
    let v: Value = serde_json::from_str(manifest).ok()?;
    v.get("manifests")?
        .as_array()?
        .iter()
        .find(|m| {
            m.pointer("/annotations/vnd.docker.reference.type")
                .and_then(Value::as_str)
                != Some("attestation-manifest")
        })?
        .get("digest")?
        .as_str()
        .map(str::to_string)
}

/// `GetDownloadUrlForLayer` for one layer: what a pull asks for every layer it lacks.
pub async fn layer_url(
    client: &aws_sdk_ecr::Client,
    target: &Target,
    layer: &str,
) -> Result<(), Refusal> {
    client
        .get_download_url_for_layer()
        .registry_id(&target.registry.account)
        .repository_name(&target.repository)
        .layer_digest(layer)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| refusal(&e, "GetDownloadUrlForLayer"))
}

/// The repository policy text.
pub async fn repository_policy(
    client: &aws_sdk_ecr::Client,
    target: &Target,
) -> Result<String, Refusal> {
    let out = client
        .get_repository_policy()
        .registry_id(&target.registry.account)
        .repository_name(&target.repository)
        .send()
        .await
        .map_err(|e| refusal(&e, "GetRepositoryPolicy"))?;
    out.policy_text
        .ok_or_else(|| Refusal::NoPolicy("the answer has no policy text".into()))
}

/// The principal a resource policy names for the caller: an assumed-role session's role, else
/// the caller's own ARN. A role with a path needs the path inserted by hand: STS does not say it.
pub fn principal_for(caller_arn: &str) -> String {
    let parts: Vec<&str> = caller_arn.splitn(6, ':').collect();
    if let ["arn", partition, "sts", "", account, resource] = parts.as_slice()
        && let Some(rest) = resource.strip_prefix("assumed-role/")
        && let Some(role) = rest.split('/').next()
    {
        return format!("arn:{partition}:iam::{account}:role/{role}");
    }
    caller_arn.to_string()
}

/// The pull actions that no `Allow` statement of `policy` grants to the caller (matched as the
/// principal ARN, its account root, its account ID, or `*`), or that a `Deny` statement refuses.
/// Conditions are not evaluated: a statement with one counts as granting.
pub fn missing_pull_actions(
    policy: &str,
    principal: &str,
    account: &str,
) -> Result<Vec<&'static str>, String> {
    let doc: Value = serde_json::from_str(policy).map_err(|e| format!("not JSON: {e}"))?;
    let statements: Vec<&Value> = match doc.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => return Err("no Statement".into()),
    };
    let partition = principal.split(':').nth(1).unwrap_or("aws");
    let names = [
        principal.to_string(),
        format!("arn:{partition}:iam::{account}:root"),
        account.to_string(),
    ];
    let applies = |s: &Value| principal_matches(s.get("Principal"), &names);
    let grants = |s: &Value, action: &str| strings(s.get("Action")).iter().any(|p| glob(p, action));
    let effect = |s: &Value, e: &str| s.get("Effect").and_then(Value::as_str) == Some(e);
    Ok(PULL_ACTIONS
        .into_iter()
        .filter(|action| {
            let allowed = statements
                .iter()
                .any(|s| effect(s, "Allow") && applies(s) && grants(s, action));
            let denied = statements
                .iter()
                .any(|s| effect(s, "Deny") && applies(s) && grants(s, action));
            !allowed || denied
        })
        .collect())
}

fn principal_matches(principal: Option<&Value>, names: &[String]) -> bool {
    match principal {
        Some(Value::String(s)) => s == "*",
        Some(Value::Object(map)) => map
            .get("AWS")
            .map(|v| strings(Some(v)))
            .unwrap_or_default()
            .iter()
            .any(|p| p == "*" || names.iter().any(|n| n == p)),
        _ => false,
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// IAM action matching: case-insensitive, `*` for any run and `?` for one character.
fn glob(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], a) || (!a.is_empty() && go(p, &a[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => go(&p[1..], &a[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

/// The repository policy statement that lets `principal` pull, as JSON to paste, with its keys
/// in the order people write them.
pub fn pull_statement(principal: &str) -> String {
    format!(
        r#"{{"Sid":"AllowPull","Effect":"Allow","Principal":{{"AWS":{}}},"Action":{}}}"#,
        Value::from(principal),
        Value::from(PULL_ACTIONS.to_vec())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_denied_action() {
        let m = "User: arn:aws:sts::123456789012:assumed-role/node/i-1 is not authorized to perform: ecr:BatchGetImage on resource: arn:aws:ecr:us-east-1:111111111111:repository/app because no resource-based policy allows the ecr:BatchGetImage action";
        assert_eq!(denied_action(m).as_deref(), Some("ecr:BatchGetImage"));
        assert_eq!(denied_action("Access denied"), None);
    }

    #[test]
    fn an_assumed_role_session_becomes_its_role() {
        assert_eq!(
            principal_for("arn:aws:sts::123456789012:assumed-role/eks-node/i-0abc"),
            "arn:aws:iam::123456789012:role/eks-node"
        );
        assert_eq!(
            principal_for("arn:aws-cn:iam::123456789012:user/ci"),
            "arn:aws-cn:iam::123456789012:user/ci"
        );
    }

    #[test]
    fn reads_what_a_policy_grants_to_the_caller() {
        let me = "arn:aws:iam::123456789012:role/node";
        let account_wide = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"ecr:*"}}"#;
        assert!(
            missing_pull_actions(account_wide, me, "123456789012")
                .unwrap()
                .is_empty()
        );
        let partial = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::123456789012:role/node"]},"Action":["ecr:BatchGetImage","ecr:batchcheck*"]}]}"#;
        assert_eq!(
            missing_pull_actions(partial, me, "123456789012").unwrap(),
            ["ecr:GetDownloadUrlForLayer"]
        );
        let someone_else = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999999999999:root"},"Action":"ecr:*"}]}"#;
        assert_eq!(
            missing_pull_actions(someone_else, me, "123456789012")
                .unwrap()
                .len(),
            3
        );
        let denied = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:*"},{"Effect":"Deny","Principal":{"AWS":"123456789012"},"Action":"ecr:GetDownloadUrlForLayer"}]}"#;
        assert_eq!(
            missing_pull_actions(denied, me, "123456789012").unwrap(),
            ["ecr:GetDownloadUrlForLayer"]
        );
        assert!(missing_pull_actions("nope", me, "123456789012").is_err());
    }

    #[test]
    fn the_statement_to_add_names_principal_and_actions() {
        let s: Value =
            serde_json::from_str(&pull_statement("arn:aws:iam::123456789012:role/node")).unwrap();
        assert_eq!(s["Principal"]["AWS"], "arn:aws:iam::123456789012:role/node");
        assert_eq!(s["Action"][0], "ecr:BatchGetImage");
        assert_eq!(s["Effect"], "Allow");
    }

    #[test]
    fn finds_the_first_layer_of_a_manifest() {
        let m = r#"{"schemaVersion":2,"layers":[{"digest":"sha256:aa"},{"digest":"sha256:bb"}]}"#;
        assert_eq!(first_layer(m).as_deref(), Some("sha256:aa"));
        let index = r#"{"manifests":[{"digest":"sha256:att","annotations":{"vnd.docker.reference.type":"attestation-manifest"}},{"digest":"sha256:cc","platform":{"os":"linux"}}]}"#;
        assert_eq!(first_layer(index), None);
        assert_eq!(first_platform(index).as_deref(), Some("sha256:cc"));
        assert_eq!(first_platform(m), None);
    }
}
