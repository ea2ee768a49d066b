//! The AWS steps of `doctor --image`: the credentials and caller, the token, whether the image
//! exists, and whether the pull actions are allowed, fetched as a pull fetches them.

use std::fmt::Write as _;

use crate::aws::credentials;
use crate::aws::ecr;
use crate::aws::failure::{self, Cause};
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
    rows: &mut Report<'_>,
) {
    let token_name = format!("{ECR_TOKEN} {}", registry.region);
    let skip_rest = |rows: &mut Report<'_>, why: &str| {
        for name in [
            token_name.as_str(),
            IMAGE_EXISTS,
            PULL_PERMISSION,
            REGISTRY_ENDPOINT,
        ] {
            rows.push(skip(name, why));
        }
    };
    let loaded = bounded(
        CREDENTIALS_TIMEOUT,
        credentials::load(&config.aws, Some(&registry.region)),
    )
    .await;
    let aws = match loaded {
        Some(Ok(aws)) => aws,
        Some(Err(e)) => {
            let check = if e.is_region() {
                AWS_REGION
            } else {
                AWS_CREDENTIALS
            };
            rows.push(bad(Status::Fail, check, None, e.to_string(), e.fix()));
            return skip_rest(rows, "needs AWS credentials");
        }
        None => {
            rows.push(bad(
                Status::Fail,
                AWS_CREDENTIALS,
                Some("timeout"),
                format!(
                    "getting credentials did not finish within {} s: their source (a credentials endpoint, instance metadata, or STS for an AssumeRole) did not answer",
                    CREDENTIALS_TIMEOUT.as_secs()
                ),
                "check the network path to the credentials source (and to STS with --assume-role-arn or a role profile), or pick another source with --credentials-source",
            ));
            return skip_rest(rows, "needs AWS credentials");
        }
    };
    let region = aws
        .sdk
        .region()
        .map_or_else(|| registry.region.clone(), ToString::to_string);
    let sts = explicit_endpoint(&aws).unwrap_or_else(|| failure::sts_host(&region));
    // The caller's account tells a cross-account repository apart; its ARN goes in the fix.
    // It is also the first call signed with the credentials: whether AWS accepts them.
    let caller = match bounded(AWS_STEP_TIMEOUT, credentials::caller_identity(&aws.sdk)).await {
        Some(Ok((account, arn))) => {
            rows.push(ok(AWS_CREDENTIALS, aws.source));
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
        Some(Err(e)) if e.caller_identity_cause() == Some(Cause::BadCredentials) => {
            rows.push(bad_credentials(&aws, None, &identity_failure(&e)));
            rows.push(skip(AWS_IDENTITY, "needs valid credentials"));
            return skip_rest(rows, "needs valid credentials");
        }
        Some(Err(e)) => {
            rows.push(ok(AWS_CREDENTIALS, aws.source));
            let cause = e.caller_identity_cause().unwrap_or(Cause::Other);
            let why = "only needed to explain cross-account problems";
            let fix = match cause {
                c if c.is_network() => format!(
                    "{}; {why}",
                    failure::network_fix(c, &sts, &region, "sts").unwrap_or_default()
                ),
                Cause::Unavailable => format!(
                    "STS is throttling or failing on its side, not a permission problem: run again later; {why}"
                ),
                _ => "allow sts:GetCallerIdentity, so that cross-account problems can be explained"
                    .into(),
            };
            let code = cause.is_network().then(|| cause.label());
            rows.push(bad(
                Status::Unknown,
                AWS_IDENTITY,
                code,
                identity_failure(&e),
                fix,
            ));
            None
        }
        None => {
            rows.push(ok(AWS_CREDENTIALS, aws.source));
            rows.push(bad(
                Status::Unknown,
                AWS_IDENTITY,
                Some("timeout"),
                format!(
                    "no answer from {sts} within {} s",
                    AWS_STEP_TIMEOUT.as_secs()
                ),
                format!(
                    "{}; only needed to explain cross-account problems",
                    failure::network_fix(Cause::TimedOut, &sts, &region, "sts").unwrap_or_default()
                ),
            ));
            None
        }
    };
    let ecr_api = explicit_endpoint(&aws)
        .unwrap_or_else(|| failure::ecr_api_host(&registry.region, registry.fips));
    let scopes = group_by_scope(std::slice::from_ref(registry));
    let token = bounded(AWS_STEP_TIMEOUT, ecr::registry_auths(&aws.sdk, &scopes)).await;
    // Once the ECR API cannot be talked to, the steps that call it are not tried.
    let mut unreachable = None;
    let auth = match token {
        Some(Ok((auths, expires))) => {
            let when = expires
                .map(|t| format!(", expires {t}"))
                .unwrap_or_default();
            rows.push(ok(
                &token_name,
                format!("GetAuthorizationToken in {}{when}", registry.region),
            ));
            auths.into_iter().next()
        }
        Some(Err(e)) => {
            let cause = e.cause().unwrap_or(Cause::Other);
            if cause == Cause::BadCredentials {
                rows.push(bad_credentials(&aws, e.code(), &e.what_failed()));
                return skip_rest(rows, "needs valid credentials");
            }
            if cause.is_network() {
                unreachable = Some(format!("{ecr_api} {}", failure::network_words(cause)));
            }
            let fix = token_fix(&e, cause, caller.as_ref(), registry, &ecr_api);
            let code = e.code().or(cause.is_network().then(|| cause.label()));
            rows.push(bad(Status::Fail, &token_name, code, e.what_failed(), fix));
            None
        }
        None => {
            rows.push(bad(
                Status::Fail,
                &token_name,
                Some("timeout"),
                format!(
                    "GetAuthorizationToken: no answer from {ecr_api} within {} s",
                    AWS_STEP_TIMEOUT.as_secs()
                ),
                failure::network_fix(Cause::TimedOut, &ecr_api, &registry.region, "ecr.api")
                    .unwrap_or_default(),
            ));
            unreachable = Some(format!("{ecr_api} did not answer"));
            None
        }
    };
    if let Some(why) = unreachable {
        rows.push(skip(IMAGE_EXISTS, &why));
        rows.push(skip(PULL_PERMISSION, &why));
        rows.push(skip(REGISTRY_ENDPOINT, "needs a token"));
        return;
    }
    let target = Target::new(registry.clone(), image);
    let client = repository::client(&aws.sdk, registry);
    let no_answer = |name: &str| {
        bad(
            Status::Fail,
            name,
            Some("timeout"),
            format!(
                "no answer from {ecr_api} within {} s",
                AWS_STEP_TIMEOUT.as_secs()
            ),
            failure::network_fix(Cause::TimedOut, &ecr_api, &registry.region, "ecr.api")
                .unwrap_or_default(),
        )
    };
    let Some((exists, manifest)) = bounded(AWS_STEP_TIMEOUT, exists_row(&client, &target)).await
    else {
        rows.push(no_answer(IMAGE_EXISTS));
        rows.push(skip(PULL_PERMISSION, &format!("{ecr_api} did not answer")));
        return endpoint_step(rows, registry, args, auth).await;
    };
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
        let pull = pull_row(&client, &target, manifest, found, caller.as_ref());
        match bounded(AWS_STEP_TIMEOUT, pull).await {
            Some(row) => rows.push(row),
            None => rows.push(no_answer(PULL_PERMISSION)),
        }
    }
    endpoint_step(rows, registry, args, auth).await;
}

/// Step 5, when there is a token to try.
async fn endpoint_step(
    rows: &mut Report<'_>,
    registry: &Registry,
    args: &DoctorArgs,
    auth: Option<crate::aws::ecr::RegistryAuth>,
) {
    match auth {
        Some(auth) => {
            rows.push(endpoint_row(registry, args.registry_address.as_deref(), &auth).await)
        }
        None => rows.push(skip(REGISTRY_ENDPOINT, "needs a token")),
    }
}

/// The endpoint every AWS call goes to, when one is set (AWS_ENDPOINT_URL, a profile's
/// endpoint_url): the name to blame when calls do not get through.
fn explicit_endpoint(aws: &credentials::Aws) -> Option<String> {
    aws.sdk.endpoint_url().map(str::to_string)
}

/// What GetCallerIdentity's failure was, without its advice (to name the registries), which
/// is for the refresh, not for this check.
fn identity_failure(e: &credentials::AwsSetupError) -> String {
    match e {
        credentials::AwsSetupError::CallerIdentity { message, .. } => {
            format!("STS GetCallerIdentity failed: {message}")
        }
        other => other.to_string(),
    }
}

/// The credentials row when AWS refused them as invalid or expired.
fn bad_credentials(aws: &credentials::Aws, code: Option<&str>, message: &str) -> Row {
    let profile = crate::aws::profile::ProfileFiles::from_env().profile;
    bad(
        Status::Fail,
        AWS_CREDENTIALS,
        Some(code.unwrap_or("credentials")),
        format!(
            "from {}, but AWS does not accept them: they are invalid or expired ({message})",
            aws.source
        ),
        failure::renew_credentials(aws.source, &profile),
    )
}

/// The fix for a failed token call, by its cause: only a refusal is about the IAM policy.
fn token_fix(
    e: &ecr::EcrError,
    cause: Cause,
    caller: Option<&(String, String)>,
    registry: &Registry,
    ecr_api: &str,
) -> String {
    if let Some(fix) = failure::network_fix(cause, ecr_api, &registry.region, "ecr.api") {
        return fix;
    }
    if cause == Cause::Unavailable {
        return format!(
            "ECR is throttling or failing on its side ({}): not a permission problem; run doctor again in a minute",
            e.code().unwrap_or("no answer")
        );
    }
    if e.code() == Some("AccessDeniedException") {
        let who = caller
            .map(|(_, a)| repository::principal_for(a))
            .unwrap_or_else(|| "the caller".into());
        return format!(
            "allow ecr:GetAuthorizationToken (Resource \"*\") for {who}, e.g. attach the AWS managed policy AmazonEC2ContainerRegistryReadOnly"
        );
    }
    format!(
        "check the region ({}) and that {ecr_api} is the ECR API endpoint for it",
        registry.region
    )
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
            let fix = match e.code().and_then(failure::of_code) {
                Some(Cause::Unavailable) => {
                    "ECR is throttling or failing on its side: not a permission problem; run doctor again in a minute".to_string()
                }
                Some(Cause::BadCredentials) => {
                    "AWS stopped accepting the credentials during the check (they expired?): renew them and run doctor again".to_string()
                }
                _ => format!(
                    "try again; if it persists, check that api.ecr.{}.{} is reachable from here",
                    target.registry.region,
                    dns_suffix(&target.registry.region)
                ),
            };
            let row = bad(
                Status::Fail,
                NAME,
                e.code(),
                format!("{via} failed: {}", e.message()),
                fix,
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
