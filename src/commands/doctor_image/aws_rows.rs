//! The AWS steps of `doctor --image`: the credentials and caller, the token, whether the image
//! exists, and whether the pull actions are allowed, fetched as a pull fetches them.

use std::fmt::Write as _;

use crate::aws::credentials;
use crate::aws::ecr;
use crate::aws::image::ImageRef;
use crate::aws::registry::{Registry, dns_suffix, group_by_scope};
use crate::aws::repository::{self, Manifest, Refusal, Target};
use crate::config::{Config, DoctorArgs};

use super::endpoint::endpoint_row;
use super::policy::denied_row;
use super::*;

pub(super) async fn aws_rows(
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
