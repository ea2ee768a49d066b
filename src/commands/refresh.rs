//! One refresh run: credentials, tokens, then the Secrets, in that order.
//!
//! Everything that can fail without touching the cluster (configuration, credentials, tokens)
//! happens first; the cluster is only written once every token is in hand and the API server
//! has answered once.
//!
//! Time: `--timeout` bounds the setup and stops new namespaces; each namespace has its own
//! budget (`--namespace-timeout`), so a run ends at most one budget after `--timeout`. A
//! termination signal cuts both short (see [`crate::shutdown`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::{Timestamp, Unit};
use kube::Client;
use serde_json::json;

use crate::aws::ecr::RegistryAuth;
use crate::aws::registry::{ECR_PUBLIC_REGION, Registry, group_by_scope};
use crate::aws::{credentials, ecr, ecr_public};
use crate::cluster::budget::Budget;
use crate::cluster::dockerconfig::{docker_config_json, redacted_docker_config_json};
use crate::cluster::namespaces::{self, Selection, Target};
use crate::cluster::ownership::{INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::cluster::secrets::WriteError;
use crate::cluster::secrets::{
    self, DOCKER_CONFIG_JSON, DOCKER_CONFIG_KEY, DesiredSecret, EXPIRES_AT_ANNOTATION,
    REFRESHED_AT_ANNOTATION, REGISTRIES_ANNOTATION,
};
use crate::cluster::service_accounts::{self, SaOutcome};
use crate::cluster::{self, events, prune};
use crate::config::Config;
use crate::report::{NamespaceResult, Outcome, RunStatus, Summary, log_result, log_summary};
use crate::shutdown::{self, Stop};

/// Failures that stop the run before any namespace is written.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Aws(#[from] credentials::AwsSetupError),
    #[error(transparent)]
    Registry(#[from] crate::aws::registry::RegistryError),
    #[error(transparent)]
    Ecr(#[from] ecr::EcrError),
    #[error(transparent)]
    Cluster(#[from] cluster::client::ClusterError),
    #[error(
        "cannot list namespaces: {message}. Patterns in --namespaces, --namespace-selector and --prune need `list` on namespaces; name the namespaces exactly to do without"
    )]
    ListNamespaces { message: String, transient: bool },
    #[error("--timeout was reached before {0} was done")]
    Deadline(&'static str),
    #[error("the run was stopped by a termination signal before {0} was done")]
    Stopped(&'static str),
    /// A state the code above it rules out; reported rather than papered over.
    #[error("internal error: {0}. Nothing was written; please report this")]
    Internal(&'static str),
}

impl SetupError {
    /// Whether a later run may pass without anyone changing anything: a service that did not
    /// answer in time, throttled, or failed on its side. A Job retries those (exit 3) and fails
    /// at once on the rest (exit 2), which need a person.
    pub fn may_pass_on_retry(&self) -> bool {
        match self {
            SetupError::Aws(e) => e.may_pass_on_retry(),
            SetupError::Ecr(e) => e.may_pass_on_retry(),
            SetupError::Cluster(e) => e.may_pass_on_retry(),
            SetupError::ListNamespaces { transient, .. } => *transient,
            SetupError::Deadline(_) => true,
            // Not asked by `run`, which reports a stopped run with its own exit code before it
            // looks at this; for any other caller, a stopped run may well pass when run again.
            SetupError::Stopped(_) => true,
            SetupError::Registry(_) | SetupError::Internal(_) => false,
        }
    }
}

/// Runs a setup step, failing with [`SetupError::Deadline`] if `deadline` passes first, or with
/// [`SetupError::Stopped`] as soon as a termination signal comes.
async fn before<T>(
    deadline: Option<Instant>,
    stop: &Stop,
    what: &'static str,
    step: impl Future<Output = Result<T, SetupError>>,
) -> Result<T, SetupError> {
    let deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = step => r,
        () = deadline => Err(SetupError::Deadline(what)),
        () = stop.after_signal(Duration::ZERO) => Err(SetupError::Stopped(what)),
    }
}

/// Everything a run needs from AWS, obtained before the cluster is touched.
pub struct Tokens {
    pub auths: Vec<RegistryAuth>,
    /// Each registry host's token expiry, in the order of `auths`.
    pub expiries: Vec<(String, Option<Timestamp>)>,
    /// How many GetAuthorizationToken calls were made.
    pub calls: usize,
}

impl Tokens {
    /// The earliest expiry among the tokens.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expiries
            .iter()
            .fold(None, |earliest, (_, e)| ecr::earliest_of(earliest, *e))
    }
}

/// The caller's own registry in the configured region, with that partition's suffix.
pub fn caller_registry(
    sdk: &aws_config::SdkConfig,
    account: &str,
    fips: bool,
) -> Result<Registry, crate::aws::registry::RegistryError> {
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
    Registry::for_account(account, &region, fips)
}

/// The region to use when none is configured: the first named registry's, else ECR Public's
/// (its token API lives in one region). `doctor` uses the same, so it checks what a refresh does.
pub fn region_hint(config: &Config) -> Option<&str> {
    match config.registries.first() {
        Some(r) => Some(r.region.as_str()),
        None if config.ecr_public => Some(ECR_PUBLIC_REGION),
        None => None,
    }
}

/// Credentials, the registry list, and one token per region.
pub async fn tokens(config: &Config) -> Result<Tokens, SetupError> {
    let aws = credentials::load(&config.aws, region_hint(config)).await?;
    tracing::info!(source = aws.source, "AWS credentials found");
    // `public.ecr.aws` alone names every registry wanted: no default private one.
    let registries = if config.registries.is_empty() && !config.ecr_public {
        let account = credentials::caller_account(&aws.sdk).await?;
        vec![caller_registry(&aws.sdk, &account, config.aws.fips)?]
    } else {
        config.registries.clone()
    };
    let scopes = group_by_scope(&registries);
    // The ECR Public token comes from its own API: asked at the same time as the others.
    let public = async {
        match config.ecr_public {
            true => ecr_public::registry_auth(&aws.sdk).await.map(Some),
            false => Ok(None),
        }
    };
    let (private, public) = tokio::try_join!(ecr::registry_auths_each(&aws.sdk, &scopes), public)?;
    let mut calls = scopes.len();
    let (mut auths, mut expiries): (Vec<RegistryAuth>, Vec<(String, Option<Timestamp>)>) = private
        .into_iter()
        .map(|(auth, expires)| {
            let host = auth.host.clone();
            (auth, (host, expires))
        })
        .unzip();
    if let Some((auth, expires)) = public {
        expiries.push((auth.host.clone(), expires));
        auths.push(auth);
        calls += 1;
    }
    Ok(Tokens {
        auths,
        expiries,
        calls,
    })
}

/// The namespaces to write, listing the cluster's only when patterns, a selector or pruning need it.
pub async fn select_namespaces(client: &Client, config: &Config) -> Result<Selection, SetupError> {
    let spec = &config.namespaces;
    if !spec.needs_listing() && !config.prune {
        return Ok(spec.select(None));
    }
    let listed = namespaces::list(client.clone(), spec.selector.as_ref())
        .await
        .map_err(|e| SetupError::ListNamespaces {
            message: crate::cluster::calls::describe(&e),
            transient: crate::cluster::calls::is_transient(&e),
        })?;
    Ok(spec.select(Some(&listed)))
}

/// Runs the whole pipeline and returns how it ended. Errors are logged here.
pub async fn run(config: &Config) -> RunStatus {
    let started = Instant::now();
    match run_inner(config, started).await {
        Ok(status) => status,
        Err(e) => {
            tracing::error!("{e}");
            let status = match e {
                // Not the configuration's fault: worth running again.
                SetupError::Stopped(_) => RunStatus::SomeFailed,
                e if e.may_pass_on_retry() => RunStatus::Unavailable,
                _ => RunStatus::NothingDone,
            };
            match status {
                RunStatus::Unavailable => tracing::error!(
                    "nothing was changed in the cluster; this may pass on a later run without any change"
                ),
                _ => tracing::error!("nothing was changed in the cluster"),
            }
            status
        }
    }
}

async fn run_inner(config: &Config, started: Instant) -> Result<RunStatus, SetupError> {
    let stop = Stop::default();
    let _armed = stop.arm(config.timeout);
    let deadline = config.timeout.map(|t| started + t);
    let tokens = before(
        deadline,
        &stop,
        "getting credentials and tokens",
        tokens(config),
    )
    .await?;
    let hosts: Vec<&str> = tokens.auths.iter().map(|a| a.host.as_str()).collect();
    let hosts = hosts.join(",");
    tracing::info!(registries = %hosts, token_calls = tokens.calls, "ECR tokens obtained");

    let annotations = annotations(&tokens.auths, tokens.expires_at());
    // A dry run that names every namespace exactly needs no cluster at all. A run that writes
    // checks once that the API server answers, rather than fail every namespace one by one.
    let needs_cluster = !config.dry_run || config.namespaces.needs_listing();
    let source = match cluster::client::load(&config.kube) {
        Ok(s) => Some(s),
        Err(e) if needs_cluster => return Err(e.into()),
        Err(_) => None,
    };
    let instance = match (&config.instance, &source) {
        (Some(i), _) => Some(i.clone()),
        (None, Some(s)) => match s.default_instance() {
            Ok(i) => Some(i),
            Err(e) if needs_cluster => return Err(e.into()),
            Err(_) => None,
        },
        (None, None) => None,
    };
    if config.prune && !config.namespaces.needs_listing() {
        warn_prune_with_exact_names(config, instance.as_deref().unwrap_or("?"));
    }
    let client = match source.filter(|_| needs_cluster) {
        Some(source) if config.dry_run => Some(source.connect().await?),
        Some(source) => {
            let check = async { Ok(source.connect_checked().await?) };
            let what = "the connection check of the Kubernetes API server";
            Some(before(deadline, &stop, what, check).await?)
        }
        None => None,
    };
    let selection = match &client {
        Some(c) => {
            let listing = select_namespaces(c, config);
            before(deadline, &stop, "listing namespaces", listing).await?
        }
        None => config.namespaces.select(None),
    };
    let results = decided_by_selection(&selection);
    for r in &results {
        log_result(r, &config.secret_name, &hosts);
    }
    if config.dry_run {
        print_dry_run(
            config,
            &selection.targets,
            &tokens.auths,
            &annotations,
            instance.as_deref(),
        );
        return Ok(if selection.missing.is_empty() {
            RunStatus::Refreshed
        } else {
            RunStatus::SomeFailed
        });
    }
    // A run that writes needs the cluster, so a missing source or instance already ended it.
    let (Some(client), Some(instance)) = (client, instance) else {
        return Err(SetupError::Internal(
            "a run that writes has no Kubernetes client or no instance",
        ));
    };
    let desired = desired_secret(config, &tokens, &instance);
    tracing::info!(instance = %instance, "writing as instance {instance}");
    let ctx = Context {
        client,
        config,
        desired: &desired,
        stop: &stop,
        hosts: &hosts,
        wait_for_service_accounts: Duration::ZERO,
    };
    let summary = write_and_prune(&ctx, &selection, results, &instance)
        .await
        .summary;
    log_summary(&summary, tokens.expires_at(), started.elapsed());
    Ok(summary.status())
}

/// Results for what the selection alone decides: missing exact names fail, terminating
/// namespaces and exact names that do not match the selector are skipped.
pub fn decided_by_selection(selection: &Selection) -> Vec<NamespaceResult> {
    let missing = selection
        .missing
        .iter()
        .map(|ns| (ns, Outcome::Failed(WriteError::NoNamespace)));
    let skipped = selection
        .skipped
        .iter()
        .map(|(ns, why)| (ns, Outcome::Skipped(why.clone())));
    missing
        .chain(skipped)
        .map(|(ns, outcome)| NamespaceResult {
            namespace: ns.clone(),
            outcome,
            elapsed: Duration::ZERO,
        })
        .collect()
}

/// The Secret every namespace gets from these tokens, with this install's labels.
pub fn desired_secret(config: &Config, tokens: &Tokens, instance: &str) -> DesiredSecret {
    DesiredSecret::new(
        &config.secret_name,
        docker_config_json(&tokens.auths).expose().as_bytes(),
        annotations(&tokens.auths, tokens.expires_at()),
        instance,
    )
}

fn annotations(auths: &[RegistryAuth], expires_at: Option<Timestamp>) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let now = Timestamp::now()
        .round(Unit::Second)
        .unwrap_or(Timestamp::now());
    a.insert(REFRESHED_AT_ANNOTATION.to_string(), now.to_string());
    if let Some(t) = expires_at {
        let t = t.round(Unit::Second).unwrap_or(t);
        a.insert(EXPIRES_AT_ANNOTATION.to_string(), t.to_string());
    }
    let hosts: Vec<&str> = auths.iter().map(|x| x.host.as_str()).collect();
    a.insert(REGISTRIES_ANNOTATION.to_string(), hosts.join(","));
    a
}

/// What every namespace worker shares.
pub struct Context<'a> {
    pub client: Client,
    pub config: &'a Config,
    pub desired: &'a DesiredSecret,
    pub stop: &'a Stop,
    /// The registries, comma-separated, for the log lines.
    pub hosts: &'a str,
    /// How long a listed ServiceAccount that does not exist yet is waited for: zero for a
    /// refresh; a few seconds for a namespace that was just created, whose `default`
    /// ServiceAccount the controller adds a moment later.
    pub wait_for_service_accounts: Duration,
}

/// First pause while waiting for a ServiceAccount to appear; doubled each time, up to a second.
const SA_POLL: Duration = Duration::from_millis(100);

/// One ServiceAccount, waited for (polled, within the budget) while it does not exist yet.
async fn ensure_service_account(
    ctx: &Context<'_>,
    namespace: &str,
    sa: &str,
    budget: &Budget,
) -> Result<SaOutcome, String> {
    let until = Instant::now() + ctx.wait_for_service_accounts;
    let mut pause = SA_POLL;
    loop {
        let ensured = service_accounts::ensure(
            ctx.client.clone(),
            namespace,
            sa,
            ctx.desired.name(),
            budget,
        )
        .await;
        match ensured {
            Ok(SaOutcome::Missing) if Instant::now() + pause < until && !budget.stopping() => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// One namespace: the Secret, then the ServiceAccounts, within `budget`.
async fn refresh_namespace(ctx: &Context<'_>, target: &Target, budget: &Budget) -> Outcome {
    let written = secrets::write(
        ctx.client.clone(),
        &target.name,
        ctx.desired,
        ctx.config.strategy,
        ctx.config.force,
        budget,
    )
    .await;
    let action = match written {
        Ok(action) => action,
        Err(WriteError::Stopped) => return Outcome::NotStarted(shutdown::Reason::Signal),
        Err(WriteError::Terminating) => return Outcome::Skipped("namespace is terminating".into()),
        // Listed a moment ago, gone now: nothing left to refresh.
        Err(WriteError::NoNamespace) if !target.exact => {
            return Outcome::Skipped("namespace was deleted during the run".into());
        }
        Err(e) => return Outcome::Failed(e),
    };
    let mut notes = Vec::new();
    for sa in &ctx.config.service_accounts {
        match ensure_service_account(ctx, &target.name, sa, budget).await {
            Ok(SaOutcome::Added) => notes.push(format!("added to ServiceAccount {sa}")),
            Ok(SaOutcome::AlreadyListed) => {}
            Ok(SaOutcome::Missing) => notes.push(format!("ServiceAccount {sa} not found")),
            Err(e) => return Outcome::Failed(WriteError::ServiceAccount(e)),
        }
    }
    Outcome::Refreshed { action, notes }
}

/// One namespace within its own budget, with a `RefreshFailed` Event when it fails (unless the
/// run is being stopped by a signal), logged as soon as it is done.
pub async fn refresh_one(ctx: &Context<'_>, target: &Target) -> NamespaceResult {
    let started = Instant::now();
    let budget = Budget::start(ctx.config.namespace_timeout, ctx.stop.clone());
    let outcome = match ctx.stop.reason() {
        Some(reason) => Outcome::NotStarted(reason),
        None => refresh_namespace(ctx, target, &budget).await,
    };
    if let Outcome::Failed(e) = &outcome
        && !matches!(e, WriteError::NoNamespace)
        && !budget.stopping()
    {
        events::refresh_failed(
            ctx.client.clone(),
            &target.name,
            ctx.desired.name(),
            &e.to_string(),
            &budget,
        )
        .await;
    }
    let r = NamespaceResult {
        namespace: target.name.clone(),
        outcome,
        elapsed: started.elapsed(),
    };
    log_result(&r, ctx.desired.name(), ctx.hosts);
    r
}

/// Writes every namespace, at most `concurrency` at a time, each within its own budget; one
/// namespace's failure never stops the others. Results come back in the order of the targets.
pub async fn write_all(ctx: &Context<'_>, targets: &[Target]) -> Vec<NamespaceResult> {
    let mut results: Vec<(usize, NamespaceResult)> =
        futures::stream::iter(targets.iter().enumerate())
            .map(|(i, target)| async move { (i, refresh_one(ctx, target).await) })
            .buffer_unordered(ctx.config.concurrency)
            .collect()
            .await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Everything a refresh does once the Secret is built and the namespaces chosen: writes the
/// targets, then prunes with --prune (unless the run is stopping). `decided` holds the results
/// the selection decided alone (already logged). The caller logs the summary.
pub async fn write_and_prune(
    ctx: &Context<'_>,
    selection: &Selection,
    decided: Vec<NamespaceResult>,
    instance: &str,
) -> Written {
    // Counted as they come rather than collected: ten thousand results are memory for nothing.
    let mut summary = Summary::of(&decided);
    let mut retry = retryable(&decided);
    drop(decided);
    futures::stream::iter(&selection.targets)
        .map(|target| refresh_one(ctx, target))
        .buffer_unordered(ctx.config.concurrency)
        .for_each(|r| {
            summary.count(&r.outcome);
            retry.extend(retryable(std::slice::from_ref(&r)));
            async {}
        })
        .await;
    let (config, stop) = (ctx.config, ctx.stop);
    if config.prune {
        match stop.reason() {
            None => {
                let options = prune::PruneOptions {
                    secret: &config.secret_name,
                    instance,
                    concurrency: config.concurrency,
                    namespace_timeout: config.namespace_timeout,
                    stop,
                };
                let pruning = prune::prune(ctx.client.clone(), &selection.unselected, &options);
                // Pruning only deletes what is no longer wanted: it can stop at once.
                tokio::select! {
                    failed = pruning => summary.prune_failed = failed,
                    () = stop.after_signal(Duration::ZERO) => tracing::warn!(
                        "--prune stopped: {}; the rest is pruned by the next run",
                        shutdown::Reason::Signal.summary()
                    ),
                }
            }
            Some(reason) => tracing::warn!("--prune skipped: {}", reason.summary()),
        }
    }
    Written { summary, retry }
}

/// What [`write_and_prune`] did.
pub struct Written {
    pub summary: Summary,
    /// The namespaces that failed and may pass when tried again: not the exact names that do
    /// not exist (the watch writes those when they are created).
    pub retry: Vec<String>,
}

/// The failed or unfinished namespaces worth another try. Pure.
pub fn retryable(results: &[NamespaceResult]) -> Vec<String> {
    results
        .iter()
        .filter(|r| match &r.outcome {
            Outcome::Failed(e) => !matches!(e, WriteError::NoNamespace),
            Outcome::NotStarted(_) => true,
            Outcome::Refreshed { .. } | Outcome::Skipped(_) => false,
        })
        .map(|r| r.namespace.clone())
        .collect()
}

/// `--prune` with exact names only prunes every other namespace of the cluster: right when a
/// name was dropped from the list, wrong when two jobs of one instance split a list.
fn warn_prune_with_exact_names(config: &Config, instance: &str) {
    tracing::warn!(
        instance = %instance,
        "--prune with exact names only: every namespace not in --namespaces loses the Secret '{}' that instance {instance} wrote there, and listing them needs `list` on namespaces. If two jobs run as this instance (same ServiceAccount or kubeconfig context) with different lists, give each its own --instance",
        config.secret_name
    );
}

/// What `--dry-run` prints on stdout.
pub const DRY_RUN_NOTICE: &str = "PREVIEW of ecr-secret-refresher --dry-run: nothing was written. This is not a Kubernetes manifest and cannot be applied (the passwords are redacted); run without --dry-run to write the Secrets.";

/// Prints what would be written: one description of the Secret, which is the same in every
/// namespace, and the namespaces. Deliberately not a Kubernetes object or List (no apiVersion,
/// no kind anywhere), so that `kubectl apply -f -` refuses it instead of replacing working
/// Secrets with redacted ones.
fn print_dry_run(
    config: &Config,
    targets: &[Target],
    auths: &[RegistryAuth],
    annotations: &BTreeMap<String, String>,
    instance: Option<&str>,
) {
    let redacted: serde_json::Value =
        serde_json::from_str(&redacted_docker_config_json(auths)).unwrap_or_default();
    let instance = instance.unwrap_or("<unknown without a kubeconfig: pass --instance>");
    let registries: Vec<&str> = auths.iter().map(|a| a.host.as_str()).collect();
    let namespaces: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    let preview = json!({
        "preview": DRY_RUN_NOTICE,
        "namespaces": namespaces,
        "secret": {
            "name": config.secret_name,
            "type": DOCKER_CONFIG_JSON,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, INSTANCE_LABEL: instance},
            "annotations": annotations,
            "registries": registries,
            DOCKER_CONFIG_KEY: redacted,
        },
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&preview).unwrap_or_default()
    );
    tracing::info!(
        namespaces = targets.len(),
        "dry run: nothing was written; stdout holds a preview, not a manifest"
    );
}
