//! `doctor`: checks, without changing anything, everything a refresh with the same flags
//! needs, and prints one row per check with a fix for each failure.

use std::fmt::Write as _;

use futures::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};

use std::sync::atomic::{AtomicBool, Ordering};

use crate::aws::failure::{self, Cause};
use crate::aws::profile::ProfileFiles;
use crate::aws::registry::{TokenScope, group_by_scope};
use crate::aws::{credentials, ecr, ecr_public};
use crate::cluster;
use crate::cluster::calls::describe;
use crate::cluster::client::ClusterError;
use crate::cluster::ownership::{self, INSTANCE_LABEL, MANAGED_BY_LABEL, Owner};
use crate::cluster::secrets::EXPIRES_AT_ANNOTATION;
use crate::commands::{checks, refresh};
use crate::config::{Config, LogFormat, Strategy};

pub use crate::commands::checks::{Row as Check, Status, passed};

fn row(
    name: impl Into<String>,
    status: Status,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    Check {
        name: name.into(),
        status,
        code: None,
        detail: detail.into(),
        fix: fix.into(),
    }
}

/// The (verb, resource, named) permissions a refresh with `config` uses in a namespace.
pub fn needed_permissions(config: &Config) -> Vec<(&'static str, &'static str, bool)> {
    let mut p = match config.strategy {
        Strategy::Update => vec![
            ("patch", "secrets", true),
            ("create", "secrets", false),
            ("get", "secrets", true),
            ("update", "secrets", true),
            ("delete", "secrets", true),
        ],
        Strategy::Recreate => vec![
            ("get", "secrets", true),
            ("delete", "secrets", true),
            ("create", "secrets", false),
        ],
    };
    p.push(("create", "events", false));
    if !config.service_accounts.is_empty() {
        p.push(("get", "serviceaccounts", true));
        p.push(("patch", "serviceaccounts", true));
    }
    p
}

async fn allowed(
    client: &Client,
    namespace: &str,
    verb: &str,
    resource: &str,
    name: Option<&str>,
) -> Result<bool, String> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
                verb: Some(verb.into()),
                resource: Some(resource.into()),
                name: name.map(String::from),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| describe(&e))?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

async fn aws_checks(config: &Config, rows: &mut Vec<Check>) {
    let aws = match credentials::load(&config.aws, refresh::region_hint(config)).await {
        Ok(aws) => {
            rows.push(row("AWS credentials", Status::Ok, aws.source, ""));
            aws
        }
        Err(e) => {
            let check = if e.is_region() {
                "AWS region"
            } else {
                "AWS credentials"
            };
            rows.push(row(check, Status::Fail, e.to_string(), e.fix()));
            return;
        }
    };
    let identity = credentials::caller_identity(&aws.sdk).await;
    // `public.ecr.aws` alone names every registry wanted: no default private one to check.
    let registries = match (
        &identity,
        config.registries.is_empty() && !config.ecr_public,
    ) {
        (Ok((account, arn)), empty) => {
            rows.push(row("AWS identity", Status::Ok, arn.clone(), ""));
            if empty {
                match refresh::caller_registry(&aws.sdk, account, config.aws.fips) {
                    Ok(r) => vec![r],
                    // Without a registry there is no token to check: say so rather than pass.
                    Err(e) => {
                        rows.push(row(
                            "ECR registry",
                            Status::Fail,
                            e.to_string(),
                            "pass --region, or name the registries with --registries",
                        ));
                        return;
                    }
                }
            } else {
                config.registries.clone()
            }
        }
        (Err(e), needed) => {
            let cause = e.caller_identity_cause().unwrap_or(Cause::Other);
            let region = aws
                .sdk
                .region()
                .map(ToString::to_string)
                .unwrap_or_default();
            let sts = aws
                .sdk
                .endpoint_url()
                .map_or_else(|| failure::sts_host(&region), str::to_string);
            let fix = match cause {
                Cause::BadCredentials => {
                    failure::renew_credentials(aws.source, &ProfileFiles::from_env().profile)
                }
                Cause::Unavailable => {
                    "STS is throttling or failing on its side, not a permission problem: run again in a minute".into()
                }
                c => failure::network_fix(c, &sts, &region, "sts").unwrap_or_else(|| {
                    "allow sts:GetCallerIdentity, or name the registries with --registries"
                        .into()
                }),
            };
            // Credentials AWS does not accept fail every later call too: never a warning.
            if needed || cause == Cause::BadCredentials {
                rows.push(row("AWS identity", Status::Fail, e.to_string(), fix));
                return;
            }
            rows.push(row(
                "AWS identity",
                Status::Warn,
                e.to_string(),
                format!("not needed with --registries; fine to ignore ({fix})"),
            ));
            config.registries.clone()
        }
    };
    for scope in group_by_scope(&registries) {
        let name = format!(
            "ECR token {}{}",
            scope.region,
            if scope.fips { " (FIPS)" } else { "" }
        );
        match ecr::registry_auths(&aws.sdk, std::slice::from_ref(&scope)).await {
            Ok((_, expires)) => {
                let hosts: Vec<&str> = scope.registries.iter().map(|r| r.host.as_str()).collect();
                let when = expires
                    .map(|t| format!(", expires {t}"))
                    .unwrap_or_default();
                rows.push(row(
                    name,
                    Status::Ok,
                    format!("{}{when}", hosts.join(",")),
                    "",
                ));
            }
            Err(e) => rows.push(row(
                name,
                Status::Fail,
                e.what_failed(),
                token_fix(&e, &aws, &scope),
            )),
        }
    }
    if config.ecr_public {
        let name = "ECR Public token";
        match ecr_public::registry_auth(&aws.sdk).await {
            Ok((auth, expires)) => {
                let when = expires.map(|t| format!(", expires {t}")).unwrap_or_default();
                rows.push(row(name, Status::Ok, format!("{}{when}", auth.host), ""));
            }
            Err(e) => rows.push(row(
                name,
                Status::Fail,
                e.to_string(),
                "allow ecr-public:GetAuthorizationToken and sts:GetServiceBearerToken for this identity",
            )),
        }
    }
}

/// The fix for a failed token call, by its cause: only a refusal is about the IAM policy.
fn token_fix(e: &ecr::EcrError, aws: &credentials::Aws, scope: &TokenScope) -> String {
    let cause = e.cause().unwrap_or(Cause::Other);
    let endpoint = aws.sdk.endpoint_url().map_or_else(
        || failure::ecr_api_host(&scope.region, scope.fips),
        str::to_string,
    );
    if let Some(fix) = failure::network_fix(cause, &endpoint, &scope.region, "ecr.api") {
        return fix;
    }
    match cause {
        Cause::Unavailable => format!(
            "ECR is throttling or failing on its side ({}): not a permission problem; run doctor again in a minute",
            e.code().unwrap_or("no answer")
        ),
        Cause::BadCredentials => {
            failure::renew_credentials(aws.source, &ProfileFiles::from_env().profile)
        }
        _ => "allow ecr:GetAuthorizationToken (and pull actions on the repositories) for this identity".into(),
    }
}

/// Whether the API server has stopped answering during this run: after one request went
/// unanswered, the rest are skipped rather than each waited on in turn.
#[derive(Default)]
struct Silence(AtomicBool);

/// A request to the API server with the connection check's bound, or `None` (and the server
/// marked silent) when it took longer.
async fn ask<T>(silence: &Silence, request: impl Future<Output = T>) -> Option<T> {
    let answer = tokio::time::timeout(cluster::client::PROBE_TIMEOUT, request)
        .await
        .ok();
    if answer.is_none() {
        silence.0.store(true, Ordering::Relaxed);
    }
    answer
}

fn no_answer(name: String, what: &str) -> Check {
    row(
        name,
        Status::Fail,
        format!(
            "no answer within {} s to {what}",
            cluster::client::PROBE_TIMEOUT.as_secs()
        ),
        checks::API_SERVER_STOPPED_FIX,
    )
}

const SILENT: &str = "not checked: the API server did not answer an earlier request";

/// The overlay whose RBAC fits the selection: per-namespace Roles when the namespaces are exact
/// names, the cluster-wide one when patterns, a selector or --prune need to list namespaces.
pub fn rbac_fix(config: &Config) -> String {
    if config.namespaces.needs_listing() || config.prune {
        "grant them to the refresher's ServiceAccount (manifests/rbac): patterns, --namespace-selector and --prune list namespaces, so use the cluster-wide overlay, e.g. kubectl apply -k manifests/overlays/cluster".into()
    } else {
        "grant them to the refresher's ServiceAccount (manifests/rbac): with exact namespace names a Role per namespace is enough, e.g. the namespaced overlay (copy manifests/overlays/namespaced/team-a/ for each namespace, then kubectl apply -k manifests/overlays/namespaced)".into()
    }
}

async fn namespace_rows(
    client: &Client,
    config: &Config,
    instance: &str,
    namespace: &str,
    silence: &Silence,
) -> Vec<Check> {
    let mut rows = Vec::new();
    let rbac = format!("RBAC in {namespace}");
    let secret_row = format!("Secret {namespace}/{}", config.secret_name);
    let skipped = |rows: &mut Vec<Check>, names: &[&String]| {
        for n in names {
            rows.push(row(n.as_str(), Status::Skip, SILENT, ""));
        }
    };
    let mut denied = Vec::new();
    for (verb, resource, named) in needed_permissions(config) {
        // Named permissions are checked for each name the refresh will use.
        let names: Vec<Option<&str>> = match (named, resource) {
            (false, _) => vec![None],
            (true, "secrets") => vec![Some(config.secret_name.as_str())],
            (true, _) => config
                .service_accounts
                .iter()
                .map(|s| Some(s.as_str()))
                .collect(),
        };
        for name in names {
            let what = match name {
                Some(n) if resource == "serviceaccounts" => format!("{verb} {resource}/{n}"),
                _ => format!("{verb} {resource}"),
            };
            if silence.0.load(Ordering::Relaxed) {
                skipped(&mut rows, &[&rbac, &secret_row]);
                return rows;
            }
            match ask(silence, allowed(client, namespace, verb, resource, name)).await {
                Some(Ok(true)) => {}
                Some(Ok(false)) => denied.push(what),
                Some(Err(e)) => denied.push(format!("{what} (review failed: {e})")),
                None => {
                    rows.push(no_answer(
                        rbac,
                        &format!("a SelfSubjectAccessReview ({what})"),
                    ));
                    skipped(&mut rows, &[&secret_row]);
                    return rows;
                }
            }
        }
    }
    if denied.is_empty() {
        rows.push(row(
            rbac,
            Status::Ok,
            "every verb the refresh uses is allowed",
            "",
        ));
    } else {
        rows.push(row(
            rbac,
            Status::Fail,
            format!("denied: {}", denied.join(", ")),
            rbac_fix(config),
        ));
    }
    if silence.0.load(Ordering::Relaxed) {
        skipped(&mut rows, &[&secret_row]);
        return rows;
    }
    let name = secret_row;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(found) = ask(silence, api.get_opt(&config.secret_name)).await else {
        rows.push(no_answer(name, "reading the Secret"));
        return rows;
    };
    match found {
        Ok(None) => rows.push(row(name, Status::Ok, "none yet: a refresh creates it", "")),
        Ok(Some(s)) => {
            let expires = s
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(EXPIRES_AT_ANNOTATION))
                .cloned();
            let labels = s.metadata.labels.as_ref();
            let not_ours = match ownership::owner(labels, instance) {
                Owner::Us | Owner::Legacy => None,
                Owner::OtherInstance(theirs) => Some((
                    format!(
                        "written by another install ({INSTANCE_LABEL}={theirs}, this is {instance})"
                    ),
                    "give one of them another --secret-name, or the same --instance if they are one install",
                )),
                Owner::Foreign(owner) => Some((
                    format!(
                        "not ours ({MANAGED_BY_LABEL}={})",
                        owner.unwrap_or("<none>")
                    ),
                    "pass --force to take it over, or pick another --secret-name",
                )),
            };
            match not_ours {
                None => {
                    let stale = expires
                        .as_deref()
                        .and_then(|e| e.parse::<jiff::Timestamp>().ok())
                        .is_some_and(|t| t < jiff::Timestamp::now());
                    let mut detail = format!(
                        "ours, expires {}",
                        expires.unwrap_or_else(|| "at an unknown time".into())
                    );
                    if ownership::owner(labels, instance) == Owner::Legacy {
                        detail += "; written by an earlier version, adopted on the next refresh";
                    }
                    if stale {
                        rows.push(row(
                            name,
                            Status::Warn,
                            detail + " (expired)",
                            "run a refresh; check the CronJob's last runs",
                        ));
                    } else {
                        rows.push(row(name, Status::Ok, detail, ""));
                    }
                }
                Some((detail, _)) if config.force => rows.push(row(
                    name,
                    Status::Warn,
                    format!("{detail}; --force takes it over"),
                    "",
                )),
                Some((detail, fix)) => rows.push(row(name, Status::Fail, detail, fix)),
            }
        }
        Err(e) => rows.push(row(
            name,
            Status::Fail,
            describe(&e),
            "allow get on this Secret",
        )),
    }
    rows
}

/// The row a failure to connect belongs to: the server's answer (or silence), or the
/// configuration that names it.
pub fn cluster_check_name(e: &ClusterError) -> &'static str {
    match e {
        ClusterError::Unreachable { .. } | ClusterError::Unauthorized { .. } => "Kubernetes API",
        _ => "Kubernetes config",
    }
}

async fn cluster_checks(config: &Config, rows: &mut Vec<Check>) {
    let config_failed = |rows: &mut Vec<Check>, e: ClusterError| {
        let fix = e.fix();
        rows.push(row(
            cluster_check_name(&e),
            Status::Fail,
            e.to_string(),
            fix,
        ));
    };
    let source = match cluster::client::load(&config.kube) {
        Ok(s) => s,
        Err(e) => return config_failed(rows, e),
    };
    let instance = match config
        .instance
        .clone()
        .map(Ok)
        .unwrap_or_else(|| source.default_instance())
    {
        Ok(i) => i,
        Err(e) => return config_failed(rows, e),
    };
    // The same bounded check a refresh makes: a hung server fails within PROBE_TIMEOUT, and a
    // refused token is told apart from no answer.
    let client = match source.connect_checked().await {
        Ok(c) => c,
        Err(e) => return config_failed(rows, e),
    };
    // It has just answered; the version is for the detail only, so it gets the same bound.
    let version =
        tokio::time::timeout(cluster::client::PROBE_TIMEOUT, client.apiserver_version()).await;
    let detail = match version {
        Ok(Ok(v)) => format!("{} ({}.{})", v.git_version, v.major, v.minor),
        Ok(Err(e)) => format!("answers (its version is not readable: {})", describe(&e)),
        Err(_) => "answers (its version did not come in time)".into(),
    };
    rows.push(row("Kubernetes API", Status::Ok, detail, ""));
    let silence = Silence::default();
    let selection = match ask(&silence, refresh::select_namespaces(&client, config)).await {
        Some(Ok(s)) => s,
        None => {
            rows.push(no_answer("Namespaces".into(), "listing namespaces"));
            return;
        }
        Some(Err(e)) => {
            rows.push(row(
                "Namespaces",
                Status::Fail,
                e.to_string(),
                "grant list on namespaces, or name the namespaces exactly",
            ));
            return;
        }
    };
    let mut detail = format!("{} selected, instance {instance}", selection.targets.len());
    if !selection.skipped.is_empty() {
        let _ = write!(detail, ", {} skipped", selection.skipped.len());
    }
    if selection.missing.is_empty() {
        rows.push(row("Namespaces", Status::Ok, detail, ""));
    } else {
        rows.push(row(
            "Namespaces",
            Status::Fail,
            format!("{detail}; missing: {}", selection.missing.join(", ")),
            "create them, or remove them from --namespaces",
        ));
    }
    if config.prune && !config.namespaces.needs_listing() {
        rows.push(row(
            "Prune",
            Status::Warn,
            format!(
                "--prune with exact names only: every other namespace loses the Secret that instance {instance} wrote there"
            ),
            "fine if that is what you want; if several jobs run as this instance with different lists, give each its own --instance",
        ));
    }
    let per_ns: Vec<Vec<Check>> = futures::stream::iter(selection.targets.iter())
        .map(|t| namespace_rows(&client, config, &instance, &t.name, &silence))
        .buffered(config.concurrency)
        .collect()
        .await;
    rows.extend(per_ns.into_iter().flatten());
}

/// Runs every check. The AWS and cluster halves are independent: both always run.
pub async fn run(config: &Config) -> Vec<Check> {
    let mut rows = Vec::new();
    aws_checks(config, &mut rows).await;
    cluster_checks(config, &mut rows).await;
    rows
}

/// The report as a table, with the fix under each row that needs one.
pub fn render(rows: &[Check]) -> String {
    checks::render(rows, LogFormat::Text, 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_fixes_only_where_needed() {
        let rows = vec![
            row("AWS credentials", Status::Ok, "environment", "unused"),
            row(
                "RBAC in team-a",
                Status::Fail,
                "denied: patch secrets",
                "grant it",
            ),
        ];
        let t = render(&rows);
        assert!(t.starts_with("CHECK"));
        assert!(t.contains("RBAC in team-a   FAIL    denied: patch secrets\n"));
        assert!(t.contains("fix: grant it"));
        assert!(!t.contains("unused"));
        assert!(!passed(&rows));
        assert!(passed(&rows[..1]));
    }
}
