//! `doctor --image`: why does this image not pull? Follows the pull path one step at a time
//! with the credentials a refresh would use, changes nothing, and prints one row per step with
//! the AWS error code and a fix for each failure.
//!
//! Steps: the reference, the credentials and caller, the token for the registry's region, the
//! repository and tag (`DescribeImages`, falling back to `BatchGetImage`), the pull actions
//! (`BatchGetImage`, `GetDownloadUrlForLayer`, and for another account's repository its
//! policy), the registry endpoint (`GET /v2/`), and with `--namespace` the pull Secret and the
//! ServiceAccount. A step that needs an earlier one that failed is shown as skipped; a step
//! the caller may not look at is "unknown", which does not fail the run.

use std::fmt::Write as _;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::aws::credentials;
use crate::aws::ecr::{self, RegistryAuth};
use crate::aws::image::ImageRef;
use crate::aws::registry::{
    ECR_PUBLIC_HOST, Registry, dns_suffix, group_by_scope, is_ecr_public, partition,
};
use crate::aws::registry_api::{self, V2Outcome};
use crate::aws::repository::{self, Manifest, PULL_ACTIONS, Refusal, Target};
use crate::cluster;
use crate::cluster::calls::{code_of, describe};
use crate::cluster::secrets::{DOCKER_CONFIG_JSON, DOCKER_CONFIG_KEY, EXPIRES_AT_ANNOTATION};
use crate::commands::doctor::cluster_check_name;
use crate::config::{Config, DoctorArgs, LogFormat, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::sensitive::Sensitive;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

// The steps' names: rows are found by them (the Secret's password is tried only after
// REGISTRY_ENDPOINT passed), so each is spelt once.
const IMAGE: &str = "Image";
const AWS_CREDENTIALS: &str = "AWS credentials";
const AWS_REGION: &str = "AWS region";
const AWS_IDENTITY: &str = "AWS identity";
const ECR_TOKEN: &str = "ECR token";
const IMAGE_EXISTS: &str = "Image exists";
const PULL_PERMISSION: &str = "Pull permission";
const REGISTRY_ENDPOINT: &str = "Registry endpoint";

/// How to run a refresh at once, for the fixes that need one.
const REFRESH_NOW: &str =
    "kubectl -n ecr-secret-refresher create job --from=cronjob/ecr-secret-refresher refresh-now";

/// How long the registry endpoint may take to answer, per step (resolve, connect, answer).
const V2_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Fail,
    /// Could not check (not allowed to look): not a failure.
    Unknown,
    /// Not run because a step it needs failed.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fail => "FAIL",
            Status::Unknown => "unknown",
            Status::Skip => "skip",
        }
    }
}

/// One step of the report.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub status: Status,
    /// The AWS (or Kubernetes) error code behind a failure, e.g. `AccessDeniedException`.
    pub code: Option<String>,
    pub detail: String,
    /// What to change, for a row that is not ok.
    pub fix: String,
}

fn ok(name: impl Into<String>, detail: impl Into<String>) -> Row {
    Row {
        name: name.into(),
        status: Status::Ok,
        code: None,
        detail: detail.into(),
        fix: String::new(),
    }
}

fn bad(
    status: Status,
    name: impl Into<String>,
    code: Option<&str>,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Row {
    Row {
        name: name.into(),
        status,
        code: code.map(str::to_string),
        detail: detail.into(),
        fix: fix.into(),
    }
}

fn skip(name: impl Into<String>, why: &str) -> Row {
    bad(Status::Skip, name, None, format!("not checked: {why}"), "")
}

const NETWORK_FIX: &str = "no network path from here to the registry on port 443: check the \
route table (a NAT gateway for private subnets, an internet gateway for public ones), that \
security groups and network ACLs allow outbound 443, or add VPC endpoints: interface endpoints \
com.amazonaws.REGION.ecr.api and com.amazonaws.REGION.ecr.dkr (private DNS on, their security \
group allowing 443 from the nodes) and the gateway endpoint com.amazonaws.REGION.s3, which \
serves the layers";

/// Runs every step for `args.image`.
pub async fn run(config: &Config, args: &DoctorArgs) -> Vec<Row> {
    let mut rows = Vec::new();
    let text = args.image.as_deref().unwrap_or_default();
    let parsed = reference(text);
    // The Secret is checked for an ECR host only: for any other, its fix would be wrong.
    let host = parsed.as_ref().ok().map(|(_, r)| r.host.clone());
    match parsed {
        Ok((image, registry)) => {
            rows.push(ok(
                IMAGE,
                format!(
                    "registry {} (account {}, partition {}, region {}{}), repository {}, {}",
                    registry.host,
                    registry.account,
                    partition(&registry.region),
                    registry.region,
                    if registry.fips { ", FIPS" } else { "" },
                    image.repository,
                    match (&image.tag, &image.digest) {
                        (Some(t), Some(d)) =>
                            format!("tag {t} and digest {d} (the digest decides)"),
                        (None, Some(d)) => format!("digest {d}"),
                        (Some(t), None) => format!("tag {t}"),
                        (None, None) => "tag latest (none given)".into(),
                    }
                ),
            ));
            aws_rows(config, args, &image, &registry, &mut rows).await;
        }
        Err(row) => {
            rows.push(*row);
            for name in [
                AWS_CREDENTIALS,
                ECR_TOKEN,
                IMAGE_EXISTS,
                PULL_PERMISSION,
                REGISTRY_ENDPOINT,
            ] {
                rows.push(skip(name, "needs an ECR image reference"));
            }
            if let Some(namespace) = &args.namespace {
                rows.push(skip(
                    format!("Secret {namespace}/{}", config.secret_name),
                    "needs an ECR image reference",
                ));
            }
        }
    }
    if let (Some(namespace), Some(host)) = (&args.namespace, host) {
        cluster_rows(config, args, namespace, &host, &mut rows).await;
    }
    rows
}

/// Step 1: the reference and its registry, or the row that says what is wrong with it.
fn reference(text: &str) -> Result<(ImageRef, Registry), Box<Row>> {
    let image: ImageRef = match text.parse() {
        Ok(i) => i,
        Err(e) => {
            return Err(Box::new(bad(
                Status::Fail,
                IMAGE,
                None,
                e.to_string(),
                "write the image as ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG, exactly as the pod spec names it",
            )));
        }
    };
    match image.host.parse::<Registry>() {
        Ok(r) => Ok((image, r)),
        Err(_) if is_ecr_public(&image.host) => {
            let row = bad(
                Status::Fail,
                IMAGE,
                None,
                format!(
                    "{} is on ECR Public, not a private ECR registry; this check follows private ECR pulls only",
                    image.host
                ),
                format!(
                    "ECR Public pulls need no ECR token: they work anonymously, at a lower rate limit; for higher limits run the refresher with --registries {ECR_PUBLIC_HOST}, which adds an authenticated {ECR_PUBLIC_HOST} entry to its Secret"
                ),
            );
            Err(Box::new(row))
        }
        Err(_) => {
            let row = bad(
                Status::Fail,
                IMAGE,
                None,
                format!("{} is not an ECR registry host", image.host),
                format!(
                    "this tool's Secret only works for ACCOUNT.dkr.ecr.REGION.amazonaws.com (or .amazonaws.com.cn): use that registry's own credentials for {}, or push the image to ECR",
                    image.host
                ),
            );
            Err(Box::new(row))
        }
    }
}

async fn aws_rows(
    config: &Config,
    args: &DoctorArgs,
    image: &ImageRef,
    registry: &Registry,
    rows: &mut Vec<Row>,
) {
    let token_name = format!("{ECR_TOKEN} {}", registry.region);
    let aws = match credentials::load(&config.aws, Some(&registry.region)).await {
        Ok(aws) => {
            rows.push(ok(AWS_CREDENTIALS, aws.source));
            aws
        }
        Err(e) => {
            let check = if e.is_region() {
                AWS_REGION
            } else {
                AWS_CREDENTIALS
            };
            rows.push(bad(Status::Fail, check, None, e.to_string(), e.fix()));
            for name in [
                token_name.as_str(),
                IMAGE_EXISTS,
                PULL_PERMISSION,
                REGISTRY_ENDPOINT,
            ] {
                rows.push(skip(name, "needs AWS credentials"));
            }
            return;
        }
    };
    // The caller's account tells a cross-account repository apart; its ARN goes in the fix.
    let caller = match credentials::caller_identity(&aws.sdk).await {
        Ok((account, arn)) => {
            let mut detail = arn.clone();
            if account != registry.account {
                let _ = write!(
                    detail,
                    " (account {account}: the repository is in another account, {})",
                    registry.account
                );
            }
            rows.push(ok(AWS_IDENTITY, detail));
            Some((account, arn))
        }
        Err(e) => {
            rows.push(bad(
                Status::Unknown,
                AWS_IDENTITY,
                None,
                e.to_string(),
                "allow sts:GetCallerIdentity, so that cross-account problems can be explained",
            ));
            None
        }
    };
    let auth = match ecr::registry_auths(&aws.sdk, &group_by_scope(std::slice::from_ref(registry)))
        .await
    {
        Ok((auths, expires)) => {
            let when = expires
                .map(|t| format!(", expires {t}"))
                .unwrap_or_default();
            rows.push(ok(
                &token_name,
                format!("GetAuthorizationToken in {}{when}", registry.region),
            ));
            auths.into_iter().next()
        }
        Err(e) => {
            let who = caller
                .as_ref()
                .map(|(_, a)| repository::principal_for(a))
                .unwrap_or_else(|| "the caller".into());
            let fix = if e.code() == Some("AccessDeniedException") {
                format!(
                    "allow ecr:GetAuthorizationToken (Resource \"*\") for {who}, e.g. attach the AWS managed policy AmazonEC2ContainerRegistryReadOnly"
                )
            } else {
                format!(
                    "check the region ({}) and that api.ecr.{}.{} is reachable from here",
                    registry.region,
                    registry.region,
                    dns_suffix(&registry.region)
                )
            };
            rows.push(bad(Status::Fail, &token_name, e.code(), e.to_string(), fix));
            None
        }
    };
    let target = Target::new(registry.clone(), image);
    let client = repository::client(&aws.sdk, registry);
    let (exists, manifest) = exists_row(&client, &target).await;
    let found = exists.status == Status::Ok;
    let missing = matches!(
        manifest,
        Some(Err(
            Refusal::RepositoryNotFound(_) | Refusal::ImageNotFound(_)
        ))
    );
    rows.push(exists);
    if missing {
        rows.push(skip(PULL_PERMISSION, "the image does not exist"));
    } else {
        rows.push(pull_row(&client, &target, manifest, found, caller.as_ref()).await);
    }
    match auth {
        Some(auth) => {
            rows.push(endpoint_row(registry, args.registry_address.as_deref(), &auth).await)
        }
        None => rows.push(skip(REGISTRY_ENDPOINT, "needs a token")),
    }
}

/// Step 3. Returns the row and, when `BatchGetImage` was already called, its answer (so the
/// permission step reuses it; `Some(Err(not found))` means the image is missing).
async fn exists_row(
    client: &aws_sdk_ecr::Client,
    target: &Target,
) -> (Row, Option<Result<Manifest, Refusal>>) {
    const NAME: &str = IMAGE_EXISTS;
    let what = target.display();
    let (via, answer) = match repository::describe_image(client, target).await {
        Ok(info) => {
            let mut detail = format!("{what} in {}", target.registry.account);
            if let Some(d) = &info.digest {
                let _ = write!(detail, " is {d}");
            }
            if let Some(t) = info.pushed_at {
                let _ = write!(detail, ", pushed {t}");
            }
            return (ok(NAME, detail), None);
        }
        // Pull-only policies do not allow DescribeImages: ask the way a pull does.
        Err(Refusal::AccessDenied { .. }) => (
            "BatchGetImage (ecr:DescribeImages is not allowed, and a pull does not need it)",
            repository::batch_get_image(client, target).await,
        ),
        Err(e) => ("DescribeImages", Err(e)),
    };
    let list = format!(
        "aws ecr list-images --registry-id {} --region {} --repository-name {}",
        target.registry.account, target.registry.region, target.repository
    );
    let reference = what
        .trim_start_matches(target.repository.as_str())
        .trim_start_matches([':', '@'])
        .to_string();
    match answer {
        Ok(m) => {
            let digest = m
                .digest
                .as_deref()
                .map(|d| format!(" as {d}"))
                .unwrap_or_default();
            (
                ok(NAME, format!("{what} exists{digest}, seen with {via}")),
                Some(Ok(m)),
            )
        }
        Err(e @ Refusal::RepositoryNotFound(_)) => {
            let row = bad(
                Status::Fail,
                NAME,
                e.code(),
                format!("RepositoryNotFoundException: {}", e.message()),
                format!(
                    "no repository '{}' in account {} region {}: fix the repository name (or the account and region in the hostname) in the pod spec; the repositories there: aws ecr describe-repositories --registry-id {} --region {}",
                    target.repository,
                    target.registry.account,
                    target.registry.region,
                    target.registry.account,
                    target.registry.region
                ),
            );
            (row, Some(Err(e)))
        }
        Err(e @ Refusal::ImageNotFound(_)) => {
            let row = bad(
                Status::Fail,
                NAME,
                e.code(),
                format!("ImageNotFoundException: {}", e.message()),
                format!(
                    "the repository '{}' has no {reference}: push it, or fix the tag or digest in the pod spec; the images there: {list}",
                    target.repository
                ),
            );
            (row, Some(Err(e)))
        }
        Err(e @ Refusal::AccessDenied { .. }) => {
            let row = bad(
                Status::Unknown,
                NAME,
                e.code(),
                format!(
                    "could not check: AccessDeniedException on DescribeImages and BatchGetImage: {}",
                    e.message()
                ),
                "see Pull permission",
            );
            (row, Some(Err(e)))
        }
        // The permission step asks again rather than reuse a passing failure.
        Err(e) => {
            let row = bad(
                Status::Fail,
                NAME,
                e.code(),
                format!("{via} failed: {}", e.message()),
                format!(
                    "try again; if it persists, check that api.ecr.{}.{} is reachable from here",
                    target.registry.region,
                    dns_suffix(&target.registry.region)
                ),
            );
            (row, None)
        }
    }
}

/// Step 4: the pull actions, and for another account's repository, its policy.
async fn pull_row(
    client: &aws_sdk_ecr::Client,
    target: &Target,
    manifest: Option<Result<Manifest, Refusal>>,
    exists: bool,
    caller: Option<&(String, String)>,
) -> Row {
    const NAME: &str = PULL_PERMISSION;
    let manifest = match manifest {
        Some(m) => m,
        None => repository::batch_get_image(client, target).await,
    };
    let refused = match pull_path(client, target, manifest).await {
        Ok(what) => return ok(NAME, what),
        Err(e) => e,
    };
    match &refused {
        Refusal::AccessDenied { action, message } => {
            denied_row(client, target, action, message, caller).await
        }
        Refusal::LayerMissing { .. } => bad(
            Status::Fail,
            NAME,
            refused.code(),
            format!(
                "{}: {}",
                refused.code().unwrap_or_default(),
                refused.message()
            ),
            format!(
                "the manifest of {} names a layer or platform manifest the repository does not have: push the image again",
                target.display()
            ),
        ),
        Refusal::RepositoryNotFound(_) | Refusal::ImageNotFound(_) if exists => bad(
            Status::Fail,
            NAME,
            refused.code(),
            refused.message().to_string(),
            "the image was deleted while checking; push it again",
        ),
        Refusal::RepositoryNotFound(_) | Refusal::ImageNotFound(_) => {
            skip(NAME, "the image does not exist")
        }
        _ => bad(
            Status::Fail,
            NAME,
            refused.code(),
            format!(
                "{}: {}",
                refused.code().unwrap_or("error"),
                refused.message()
            ),
            "try again; if it persists, check the network to the ECR API",
        ),
    }
}

/// The manifest (and for an index, its first platform manifest) and one layer, as a pull
/// fetches them. `Ok` says what was fetched.
async fn pull_path(
    client: &aws_sdk_ecr::Client,
    target: &Target,
    manifest: Result<Manifest, Refusal>,
) -> Result<String, Refusal> {
    let mut manifest = manifest?;
    let mut via = String::new();
    if manifest.first_layer.is_none()
        && let Some(platform) = manifest.first_platform.clone()
    {
        manifest = repository::batch_get_image(client, &target.at_digest(&platform))
            .await
            .map_err(|e| match e {
                Refusal::ImageNotFound(message) => Refusal::LayerMissing {
                    code: "ImageNotFoundException".into(),
                    message: format!("the index names platform manifest {platform}: {message}"),
                },
                other => other,
            })?;
        via = format!(", through the index's platform manifest {platform}");
    }
    match manifest.first_layer {
        Some(layer) => {
            repository::layer_url(client, target, &layer).await?;
            Ok(format!(
                "ecr:BatchGetImage (the manifest{via}) and ecr:GetDownloadUrlForLayer (a layer) are allowed"
            ))
        }
        None => Ok("ecr:BatchGetImage is allowed (the manifest names no layer to check)".into()),
    }
}

async fn denied_row(
    client: &aws_sdk_ecr::Client,
    target: &Target,
    action: &str,
    message: &str,
    caller: Option<&(String, String)>,
) -> Row {
    const NAME: &str = PULL_PERMISSION;
    let arn = target.repository_arn();
    let owner = &target.registry.account;
    let detail = format!("AccessDeniedException: {action} refused: {message}");
    let code = Some("AccessDeniedException");
    let (principal, account) = match caller {
        Some((account, arn)) => (repository::principal_for(arn), Some(account.as_str())),
        None => ("the caller".to_string(), None),
    };
    let identity_fix = format!(
        "allow {} on {arn} for {principal} (the AWS managed policy AmazonEC2ContainerRegistryReadOnly does)",
        PULL_ACTIONS.join(", ")
    );
    let Some(account) = account.filter(|a| *a != owner.as_str()) else {
        return bad(
            Status::Fail,
            NAME,
            code,
            detail,
            format!("{identity_fix}, and check the repository policy has no Deny for it"),
        );
    };
    let statement = repository::pull_statement(&principal);
    let add = format!(
        "add this statement to the repository policy of '{}' in account {owner} (aws ecr set-repository-policy, or the console's Permissions tab): {statement}",
        target.repository
    );
    match repository::repository_policy(client, target).await {
        Ok(policy) => match repository::missing_pull_actions(&policy, &principal, account) {
            Ok(missing) if missing.is_empty() => bad(
                Status::Fail,
                NAME,
                code,
                format!(
                    "{detail}; the repository policy of account {owner} grants the pull actions to {principal}"
                ),
                format!("the caller's own account must allow it too: {identity_fix}"),
            ),
            Ok(missing) => bad(
                Status::Fail,
                NAME,
                code,
                format!(
                    "{detail}; the repository policy of account {owner} does not grant {} to {principal} or its account",
                    missing.join(", ")
                ),
                format!("{add}; and in account {account}, {identity_fix}"),
            ),
            Err(e) => bad(
                Status::Fail,
                NAME,
                code,
                format!("{detail}; the repository policy could not be read: {e}"),
                format!("{add}; and in account {account}, {identity_fix}"),
            ),
        },
        Err(Refusal::NoPolicy(_)) => bad(
            Status::Fail,
            NAME,
            code,
            format!(
                "{detail}; the repository in account {owner} has no repository policy, so no other account may pull from it"
            ),
            format!("{add}; and in account {account}, {identity_fix}"),
        ),
        Err(e) => bad(
            Status::Fail,
            NAME,
            code,
            format!(
                "{detail}; its repository policy could not be read ({} on GetRepositoryPolicy)",
                e.code().unwrap_or("error")
            ),
            format!(
                "ask the owner of account {owner} to {add}; and in account {account}, {identity_fix}"
            ),
        ),
    }
}

/// Step 5: `GET /v2/` on the registry endpoint with the token.
async fn endpoint_row(registry: &Registry, connect_to: Option<&str>, auth: &RegistryAuth) -> Row {
    const NAME: &str = REGISTRY_ENDPOINT;
    let url = format!("https://{}/v2/", registry.host);
    let via = |addrs: &[std::net::SocketAddr]| {
        addrs
            .first()
            .map(|a| format!(" (at {a})"))
            .unwrap_or_default()
    };
    let network = NETWORK_FIX.replace("REGION", &registry.region);
    match registry_api::check(
        &registry.host,
        connect_to,
        &auth.username,
        &auth.password,
        V2_TIMEOUT,
    )
    .await
    {
        V2Outcome::Accepted { addrs } => ok(
            NAME,
            format!("GET {url} answered 200 with the token{}", via(&addrs)),
        ),
        V2Outcome::TokenRefused { status, addrs } => bad(
            Status::Fail,
            NAME,
            Some(&format!("HTTP {status}")),
            format!(
                "GET {url}{} answered {status}: the registry did not accept the token",
                via(&addrs)
            ),
            format!(
                "check the clock of this machine, that no proxy strips the Authorization header, and that the token comes from {} ({}); a token only works in the region and partition that issued it",
                registry.region,
                partition(&registry.region)
            ),
        ),
        V2Outcome::Unexpected { status, addrs } => bad(
            Status::Fail,
            NAME,
            Some(&format!("HTTP {status}")),
            format!("GET {url}{} answered {status}, not 200 or 401", via(&addrs)),
            "something between here and ECR answers instead of it (a proxy or captive portal?): check --registry-address and the proxy settings",
        ),
        V2Outcome::Dns { name, message } => bad(
            Status::Fail,
            NAME,
            Some("DNS"),
            format!("cannot resolve {name}: {message}"),
            format!(
                "check this machine's DNS resolver; in a VPC without internet access, create the interface endpoints com.amazonaws.{r}.ecr.dkr and com.amazonaws.{r}.ecr.api with private DNS on (that makes the name resolve to them), and the gateway endpoint com.amazonaws.{r}.s3 for the layers",
                r = registry.region
            ),
        ),
        V2Outcome::Timeout { stage, addrs } => bad(
            Status::Fail,
            NAME,
            Some("timeout"),
            format!(
                "no answer from {url}{} within {} s, waiting for {stage}",
                via(&addrs),
                V2_TIMEOUT.as_secs()
            ),
            network,
        ),
        V2Outcome::Unreachable { addrs, message } => bad(
            Status::Fail,
            NAME,
            Some("unreachable"),
            format!("cannot connect to {url}{}: {message}", via(&addrs)),
            network,
        ),
        V2Outcome::Tls { message } => bad(
            Status::Fail,
            NAME,
            Some("TLS"),
            format!("TLS with {} failed: {message}", registry.host),
            "a proxy or firewall intercepting TLS? trust its CA with SSL_CERT_FILE; with --registry-address, check it points at the registry or its VPC endpoint",
        ),
        V2Outcome::BadAddress(a) => bad(
            Status::Fail,
            NAME,
            None,
            format!("--registry-address '{a}' is not HOST:PORT"),
            "pass --registry-address as HOST:PORT, e.g. 10.0.1.23:443",
        ),
        V2Outcome::ViaProxy { proxy } => bad(
            Status::Unknown,
            NAME,
            None,
            format!("GET {url} goes through the proxy at {proxy}; not checked"),
            format!(
                "a direct connection would not test the proxy's path: check that the proxy allows CONNECT to {}:443, or pass --registry-address (the registry's or its VPC endpoint's address) to check a direct path",
                registry.host
            ),
        ),
    }
}

/// Step 6: the pull Secret and the ServiceAccount in `namespace`.
async fn cluster_rows(
    config: &Config,
    args: &DoctorArgs,
    namespace: &str,
    host: &str,
    rows: &mut Vec<Row>,
) {
    let secret_name = format!("Secret {namespace}/{}", config.secret_name);
    let sa_name = format!("ServiceAccount {namespace}/{}", args.service_account);
    // The same bounded check a refresh makes, so a hung API server fails within seconds.
    let connected = async { cluster::client::load(&config.kube)?.connect_checked().await };
    let client = match connected.await {
        Ok(c) => c,
        Err(e) => {
            rows.push(bad(
                Status::Fail,
                cluster_check_name(&e),
                None,
                e.to_string(),
                e.fix(),
            ));
            rows.push(skip(secret_name, "needs the cluster"));
            rows.push(skip(sa_name, "needs the cluster"));
            return;
        }
    };
    // The Secret's own password is tried only where the endpoint answered the fresh token.
    let try_password = rows
        .iter()
        .any(|r| r.name == REGISTRY_ENDPOINT && r.status == Status::Ok)
        .then_some(args.registry_address.as_deref());
    rows.push(secret_row(&client, config, namespace, host, secret_name, try_password).await);
    rows.push(sa_row(&client, config, args, namespace, sa_name).await);
}

fn forbidden(name: String, err: &kube::Error, verb_resource: &str, namespace: &str) -> Row {
    bad(
        Status::Unknown,
        name,
        Some("Forbidden"),
        format!("could not check: {}", describe(err)),
        format!(
            "to check it, allow {verb_resource} in {namespace} for this identity (kubectl auth can-i {verb_resource} -n {namespace})"
        ),
    )
}

fn api_failed(name: String, err: &kube::Error) -> Row {
    bad(
        Status::Fail,
        name,
        None,
        describe(err),
        "check that the API server is reachable and the credentials in the kubeconfig are valid",
    )
}

/// `try_password`: when `Some(connect_to)`, the Secret's password for `host` is tried on
/// `GET /v2/`, as the kubelet would send it.
async fn secret_row(
    client: &Client,
    config: &Config,
    namespace: &str,
    host: &str,
    name: String,
    try_password: Option<Option<&str>>,
) -> Row {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(&config.secret_name).await {
        // A typo in --namespace looks the same from here: ask (reading namespaces may be denied).
        Ok(None) if namespace_missing(client, namespace).await => bad(
            Status::Fail,
            name,
            Some("NotFound"),
            format!("there is no namespace {namespace}"),
            "check --namespace: it must be the pod's namespace (kubectl get pod POD -o jsonpath='{.metadata.namespace}')",
        ),
        Ok(None) => bad(
            Status::Fail,
            name,
            Some("NotFound"),
            format!("no Secret '{}' in {namespace}", config.secret_name),
            format!(
                "run a refresh for this namespace (add {namespace} to the refresher's --namespaces), or fix the pod's imagePullSecrets name"
            ),
        ),
        Ok(Some(secret)) => match check_secret(&secret, host, jiff::Timestamp::now()) {
            Ok(detail) => match (try_password, credentials_for(&secret, host)) {
                (Some(connect_to), Some((user, password))) => {
                    password_row(name, detail, host, connect_to, &user, &password).await
                }
                _ => ok(name, detail),
            },
            Err((detail, fix)) => bad(Status::Fail, name, None, detail, fix),
        },
        Err(e) if code_of(&e) == Some(403) => forbidden(
            name,
            &e,
            &format!("get secrets/{}", config.secret_name),
            namespace,
        ),
        Err(e) => api_failed(name, &e),
    }
}

/// Whether an `auths` key names `host`: the kubelet also matches `https://host` keys.
fn names_host(key: &str, host: &str) -> bool {
    key.trim_start_matches("https://")
        .trim_end_matches('/')
        .eq_ignore_ascii_case(host)
}

/// The username and password the Secret holds for `host` (`username`/`password`, else `auth`).
pub fn credentials_for(secret: &Secret, host: &str) -> Option<(String, Sensitive)> {
    let config: Value =
        serde_json::from_slice(&secret.data.as_ref()?.get(DOCKER_CONFIG_KEY)?.0).ok()?;
    let (_, entry) = config
        .get("auths")?
        .as_object()?
        .iter()
        .find(|(k, _)| names_host(k, host))?;
    let field = |k: &str| {
        entry
            .get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    if let (Some(user), Some(password)) = (field("username"), field("password")) {
        return Some((user.to_string(), Sensitive::new(password)));
    }
    let decoded = STANDARD.decode(field("auth")?).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), Sensitive::new(password)))
}

/// Tries the Secret's password on the registry, as the kubelet will.
async fn password_row(
    name: String,
    detail: String,
    host: &str,
    connect_to: Option<&str>,
    user: &str,
    password: &Sensitive,
) -> Row {
    match registry_api::check(host, connect_to, user, password, V2_TIMEOUT).await {
        V2Outcome::Accepted { .. } => {
            ok(name, format!("{detail}; the registry accepts its password"))
        }
        V2Outcome::TokenRefused { status, .. } => bad(
            Status::Fail,
            name,
            Some(&format!("HTTP {status}")),
            format!("{detail}, but the registry refuses its password (HTTP {status})"),
            format!("the password is stale or was edited: run a refresh now ({REFRESH_NOW})"),
        ),
        // The endpoint answered the fresh token moments ago: a passing failure, not a verdict.
        _ => ok(
            name,
            format!("{detail}; its password could not be tried (no answer this time)"),
        ),
    }
}

/// Whether the namespace is known not to exist (a denied or failed lookup says nothing).
async fn namespace_missing(client: &Client, namespace: &str) -> bool {
    let api: Api<Namespace> = Api::all(client.clone());
    matches!(api.get_opt(namespace).await, Ok(None))
}

/// Whether the Secret can serve a pull from `host`: ours, the right type, an entry for the
/// host, not expired. `Ok(detail)` or `Err((detail, fix))`. Never shows the Secret's values.
pub fn check_secret(
    secret: &Secret,
    host: &str,
    now: jiff::Timestamp,
) -> Result<String, (String, String)> {
    // Any install of the refresher keeps it fresh; which one does not matter to a pull.
    let owner = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .map(String::as_str);
    if owner != Some(MANAGED_BY_VALUE) {
        return Err((
            format!("not written by ecr-secret-refresher ({MANAGED_BY_LABEL}={})", owner.unwrap_or("<none>")),
            "something else manages this Secret and will not refresh its ECR password: pass --force to a refresh to take it over, or pick another --secret-name and point the pods' imagePullSecrets at it".into(),
        ));
    }
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    if type_ != DOCKER_CONFIG_JSON {
        return Err((
            format!("type {type_}, not {DOCKER_CONFIG_JSON}"),
            "the kubelet ignores it for pulls: delete it and run a refresh, which creates it with the right type".into(),
        ));
    }
    let hosts: Vec<String> = secret
        .data
        .as_ref()
        .and_then(|d| d.get(DOCKER_CONFIG_KEY))
        .and_then(|b| serde_json::from_slice::<Value>(&b.0).ok())
        .and_then(|v| {
            v.get("auths")
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
        })
        .unwrap_or_default();
    if !hosts.iter().any(|k| names_host(k, host)) {
        let held = if hosts.is_empty() {
            "no registry at all".to_string()
        } else {
            hosts.join(", ")
        };
        return Err((
            format!("holds {held}, not {host}"),
            format!(
                "add {host} to the refresher's --registries (ECR_REFRESHER_REGISTRIES in the CronJob) and run it"
            ),
        ));
    }
    let expires = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EXPIRES_AT_ANNOTATION));
    match expires.map(|e| (e, e.parse::<jiff::Timestamp>())) {
        Some((_, Ok(t))) if t <= now => Err((
            format!("holds {host}, but its password expired at {t}"),
            format!(
                "the refresher has not refreshed it since: run it now ({REFRESH_NOW}) and check why the CronJob's last runs failed"
            ),
        )),
        Some((_, Ok(t))) => Ok(format!(
            "ours, {DOCKER_CONFIG_JSON}, holds {host}, expires {t}"
        )),
        _ => Ok(format!(
            "ours, {DOCKER_CONFIG_JSON}, holds {host}, expiry unknown (no {EXPIRES_AT_ANNOTATION} annotation)"
        )),
    }
}

async fn sa_row(
    client: &Client,
    config: &Config,
    args: &DoctorArgs,
    namespace: &str,
    name: String,
) -> Row {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let sa = &args.service_account;
    let secret = &config.secret_name;
    match api.get_opt(sa).await {
        Ok(None) => bad(
            Status::Fail,
            name,
            Some("NotFound"),
            format!("no ServiceAccount '{sa}' in {namespace}"),
            format!(
                "pods naming serviceAccountName {sa} are not created: create it (kubectl -n {namespace} create serviceaccount {sa}), or pass the --service-account the pods use"
            ),
        ),
        Ok(Some(account)) => {
            let listed: Vec<&str> = account
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.as_str())
                .collect();
            if listed.contains(&secret.as_str()) {
                ok(name, format!("imagePullSecrets lists {secret}"))
            } else {
                bad(
                    Status::Fail,
                    name,
                    None,
                    format!(
                        "imagePullSecrets {}, not {secret}",
                        if listed.is_empty() {
                            "is empty".to_string()
                        } else {
                            format!("lists {}", listed.join(", "))
                        }
                    ),
                    format!(
                        "pods using this ServiceAccount do not get the Secret unless they name it: run the refresher with --service-accounts {sa}, or kubectl -n {namespace} patch serviceaccount {sa} -p '{{\"imagePullSecrets\":[{{\"name\":\"{secret}\"}}]}}'"
                    ),
                )
            }
        }
        Err(e) if code_of(&e) == Some(403) => {
            forbidden(name, &e, &format!("get serviceaccounts/{sa}"), namespace)
        }
        Err(e) => api_failed(name, &e),
    }
}

/// The report as a table (the same style as `doctor`), or as JSON lines.
pub fn render(rows: &[Row], format: LogFormat) -> String {
    match format {
        LogFormat::Json => rows
            .iter()
            .map(|r| {
                json!({
                    "check": r.name,
                    "result": r.status.label().to_ascii_lowercase(),
                    "code": r.code,
                    "detail": r.detail,
                    "fix": if r.status == Status::Ok || r.fix.is_empty() { None } else { Some(&r.fix) },
                })
                .to_string()
                    + "\n"
            })
            .collect(),
        LogFormat::Text => {
            let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
            let mut out = format!("{:width$}  {:7}  DETAIL\n", "CHECK", "RESULT");
            for r in rows {
                let _ = writeln!(
                    out,
                    "{:width$}  {:7}  {}",
                    r.name,
                    r.status.label(),
                    r.detail.replace('\n', " ")
                );
                if r.status != Status::Ok && !r.fix.is_empty() {
                    let _ = writeln!(out, "{:width$}  {:7}  fix: {}", "", "", r.fix);
                }
            }
            out
        }
    }
}

/// Whether the image should pull: no step failed (unknown and skipped steps do not fail).
pub fn passed(rows: &[Row]) -> bool {
    rows.iter().all(|r| r.status != Status::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

    /// A docker config for tests and examples: `{"auths":{host:{...}}}` with a placeholder password.
    fn docker_config(hosts: &[&str]) -> Vec<u8> {
        let auths: serde_json::Map<String, Value> = hosts
            .iter()
            .map(|h| {
                (
                    h.to_string(),
                    json!({"username": "AWS", "password": "x", "auth": STANDARD.encode("AWS:x")}),
                )
            })
            .collect();
        serde_json::to_vec(&json!({ "auths": auths })).unwrap()
    }

    fn secret(owner: Option<&str>, type_: &str, hosts: &[&str], expires: Option<&str>) -> Secret {
        let mut s = Secret::default();
        s.metadata.labels =
            owner.map(|o| BTreeMap::from([(MANAGED_BY_LABEL.to_string(), o.to_string())]));
        s.metadata.annotations =
            expires.map(|e| BTreeMap::from([(EXPIRES_AT_ANNOTATION.to_string(), e.to_string())]));
        s.type_ = Some(type_.into());
        s.data = Some(BTreeMap::from([(
            DOCKER_CONFIG_KEY.to_string(),
            ByteString(docker_config(hosts)),
        )]));
        s
    }

    #[test]
    fn each_secret_problem_names_its_fix() {
        let now: jiff::Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        let good = secret(
            Some(MANAGED_BY_VALUE),
            DOCKER_CONFIG_JSON,
            &[HOST],
            Some("2026-11-23T20:00:00Z"),
        );
        assert!(
            check_secret(&good, HOST, now)
                .unwrap()
                .contains("expires 2026-11-23T20:00:00Z")
        );
        let https = secret(
            Some(MANAGED_BY_VALUE),
            DOCKER_CONFIG_JSON,
            &[&format!("https://{HOST}")],
            None,
        );
        assert!(
            check_secret(&https, HOST, now)
                .unwrap()
                .contains("expiry unknown")
        );
        let cases = [
            (
                secret(Some("helm"), DOCKER_CONFIG_JSON, &[HOST], None),
                "--force",
            ),
            (
                secret(Some(MANAGED_BY_VALUE), "Opaque", &[HOST], None),
                "delete it and run a refresh",
            ),
            (
                secret(
                    Some(MANAGED_BY_VALUE),
                    DOCKER_CONFIG_JSON,
                    &["111111111111.dkr.ecr.eu-west-1.amazonaws.com"],
                    None,
                ),
                "--registries",
            ),
            (
                secret(
                    Some(MANAGED_BY_VALUE),
                    DOCKER_CONFIG_JSON,
                    &[HOST],
                    Some("2026-11-23T11:00:00Z"),
                ),
                "run it now",
            ),
        ];
        for (s, want) in cases {
            let (detail, fix) = check_secret(&s, HOST, now).unwrap_err();
            assert!(fix.contains(want), "{detail}: {fix}");
            assert!(!detail.contains("QVdTOng"), "{detail}");
        }
    }

    #[test]
    fn reads_the_password_the_kubelet_would_send() {
        let s = secret(Some(MANAGED_BY_VALUE), DOCKER_CONFIG_JSON, &[HOST], None);
        let (user, pw) = credentials_for(&s, HOST).unwrap();
        assert_eq!((user.as_str(), pw.expose()), ("AWS", "x"));
        let mut auth_only = s.clone();
        let config = json!({"auths": {format!("https://{HOST}"): {"auth": STANDARD.encode("AWS:from-auth")}}});
        auth_only.data = Some(BTreeMap::from([(
            DOCKER_CONFIG_KEY.to_string(),
            ByteString(config.to_string().into_bytes()),
        )]));
        let (_, pw) = credentials_for(&auth_only, HOST).unwrap();
        assert_eq!(pw.expose(), "from-auth");
        assert!(credentials_for(&s, "111111111111.dkr.ecr.us-east-1.amazonaws.com").is_none());
    }

    #[test]
    fn non_ecr_references_say_what_to_do() {
        let row = reference("nginx:1.25").unwrap_err();
        assert!(row.detail.contains("Docker Hub"), "{}", row.detail);
        let row = reference("public.ecr.aws/docker/library/busybox:1.36").unwrap_err();
        assert!(row.fix.contains("need no ECR token"), "{}", row.fix);
        assert!(!row.fix.contains("remove this Secret"), "{}", row.fix);
        // Any spelling the refresher accepts for ECR Public is recognised.
        let row = reference("PUBLIC.ECR.AWS/docker/library/busybox:1.36").unwrap_err();
        assert!(
            row.fix.contains("--registries public.ecr.aws"),
            "{}",
            row.fix
        );
        let row = reference("ghcr.io/org/app:v1").unwrap_err();
        assert!(row.fix.contains("ghcr.io"), "{}", row.fix);
        let (image, registry) =
            reference(&format!("{HOST}/team/app@sha256:{}", "a".repeat(64))).unwrap();
        assert_eq!(
            (registry.account.as_str(), image.repository.as_str()),
            ("123456789012", "team/app")
        );
    }

    #[test]
    fn json_rows_carry_code_and_fix() {
        let rows = vec![
            ok("Image", "fine"),
            bad(
                Status::Fail,
                "Pull permission",
                Some("AccessDeniedException"),
                "denied",
                "allow it",
            ),
        ];
        let out = render(&rows, LogFormat::Json);
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["result"], "ok");
        assert_eq!(lines[0]["fix"], Value::Null);
        assert_eq!(lines[1]["code"], "AccessDeniedException");
        assert_eq!(lines[1]["result"], "fail");
        assert!(render(&rows, LogFormat::Text).contains("fix: allow it"));
        assert!(!passed(&rows) && passed(&rows[..1]));
    }
}
