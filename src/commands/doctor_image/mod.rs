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
//!
//! This module holds the steps' order and the report; the AWS steps are in `aws_rows` (with the
//! repository policy in `policy`), the registry endpoint in `endpoint`, the cluster steps in
//! `cluster_rows`, and the pure checks of the Secret in `crate::cluster::pull_secret`.

mod aws_rows;
mod cluster_rows;
mod endpoint;
mod policy;

use std::time::Duration;

use crate::aws::image::ImageRef;
use crate::aws::registry::{ECR_PUBLIC_HOST, Registry, is_ecr_public, partition};
use crate::config::{Config, DoctorArgs, LogFormat};

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

/// How long the registry endpoint may take to answer, per step (resolve, connect, answer).
const V2_TIMEOUT: Duration = Duration::from_secs(4);

/// How long one AWS step may take, the SDK's own retries included. Its budget (a minute per
/// call) suits a refresh, not a person waiting on a diagnosis.
const AWS_STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long getting the credentials may take (a credentials endpoint, IMDS, an AssumeRole).
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(15);

/// The whole run's bound: every step has its own, this only guards against one forgotten.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(90);

/// The table's RESULT column: room for `unknown`.
const RESULT_WIDTH: usize = 7;

use crate::commands::checks::{self, Report};
pub use crate::commands::checks::{Row, Status, passed};

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

/// Runs every step for `args.image`, writing each row to `out` as it finishes (in
/// `config.log_format`), and returns the rows.
pub async fn run(config: &Config, args: &DoctorArgs, out: &mut dyn std::io::Write) -> Vec<Row> {
    let text = args.image.as_deref().unwrap_or_default();
    let parsed = reference(text);
    let region = parsed.as_ref().ok().map(|(_, r)| r.region.as_str());
    let width = row_names(config, args, region)
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0);
    let mut rows = Report::new(out, config.log_format, width, RESULT_WIDTH);
    let finished =
        tokio::time::timeout(TOTAL_TIMEOUT, steps(config, args, parsed, &mut rows)).await;
    if finished.is_err() {
        rows.push(bad(
            Status::Fail,
            "Doctor",
            Some("timeout"),
            format!(
                "stopped after {} s before every step was done",
                TOTAL_TIMEOUT.as_secs()
            ),
            "the rows above are what was checked; run again, and report this if it repeats",
        ));
    }
    rows.into_rows()
}

/// Every name a row of this run can have, for the width of the table's first column.
fn row_names(config: &Config, args: &DoctorArgs, region: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = [
        IMAGE,
        AWS_CREDENTIALS,
        AWS_REGION,
        AWS_IDENTITY,
        IMAGE_EXISTS,
        PULL_PERMISSION,
        REGISTRY_ENDPOINT,
    ]
    .map(String::from)
    .into();
    names.push(match region {
        Some(r) => format!("{ECR_TOKEN} {r}"),
        None => ECR_TOKEN.into(),
    });
    if let Some(ns) = &args.namespace {
        names.push("Kubernetes config".into());
        names.push(format!("Secret {ns}/{}", config.secret_name));
        names.push(format!("ServiceAccount {ns}/{}", args.service_account));
    }
    names
}

async fn steps(
    config: &Config,
    args: &DoctorArgs,
    parsed: Result<(ImageRef, Registry), Box<Row>>,
    rows: &mut Report<'_>,
) {
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
            aws_rows::aws_rows(config, args, &image, &registry, rows).await;
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
        cluster_rows::cluster_rows(config, args, namespace, &host, rows).await;
    }
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

/// The report as a table (the same style as `doctor`, with room for `unknown`), or as JSON
/// lines.
pub fn render(rows: &[Row], format: LogFormat) -> String {
    checks::render(rows, format, RESULT_WIDTH)
}

/// `fut`, or `None` if it takes longer than `limit`.
async fn bounded<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit, fut).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

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
