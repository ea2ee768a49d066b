//! `watch`: the long-running mode. One refresh at start and one before the tokens expire, each
//! exactly what the one-shot refresh does ([`refresh`]'s steps); in between, a namespace that
//! starts to be selected gets the Secret within seconds, with the token already held, and
//! nothing else calls AWS or writes. Replicas elect a leader with a Lease; only the leader
//! writes, through a [gated client](crate::cluster::gate).
//!
//! Faults: a failed refresh (AWS refused, the API server gone) is tried again with backoff and
//! leaves the Secrets already written as they are; the watch resumes on its own; a failed
//! namespace is tried again alone, with backoff. SIGTERM stops the work (what is in flight
//! finishes as in a refresh), releases the Lease, and exits within 10 s.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::cluster::budget::Budget;
use crate::cluster::client::{self, ClusterError, Source};
use crate::cluster::events;
use crate::cluster::gate::{self, WriteGate};
use crate::cluster::namespaces::{Listed, Target};
use crate::cluster::prune;
use crate::cluster::secrets::DesiredSecret;
use crate::commands::refresh::{self, Context, Tokens};
use crate::config::{Config, WatchArgs};
use crate::report::{RunStatus, log_result, log_summary};
use crate::shutdown::{Reason, Stop};
use crate::watch::health::Health;
use crate::watch::lease::{self, Elector};
use crate::watch::metrics::{ErrorKind, Metrics};
use crate::watch::namespace_watch::{NamespaceWatch, Seen, WATCH_TIMEOUT};
use crate::watch::react::{Action, Standing, react};
use crate::watch::schedule;
use crate::watch::server::{self, Shared};

/// How long a new namespace's listed ServiceAccounts are waited for: the controller adds
/// `default` a moment after the namespace.
const SA_WAIT: Duration = Duration::from_secs(10);
/// After SIGTERM: how long the work in flight may take before the Lease is released. The
/// namespace budgets already end it sooner (see [`crate::cluster::budget`]).
const STOP_WAIT: Duration = Duration::from_millis(7500);
/// The Event reason of a refresh that got no tokens.
const TOKENS_FAILED: &str = "TokenRefreshFailed";

/// The tokens in hand, as every writer needs them.
struct Held {
    secret: DesiredSecret,
    hosts: String,
    expires_at: Option<Timestamp>,
}

/// What the parts of the leader's work share.
struct Leader<'a> {
    config: &'a Config,
    args: &'a WatchArgs,
    instance: &'a str,
    /// Reads and writes, writes only while the gate is open.
    client: Client,
    /// Long reads for the namespace watch.
    watch_client: Client,
    gate: WriteGate,
    stop: &'a Stop,
    shared: &'a Shared,
    /// Where an Event about this process goes: the pod (POD_NAME) or the Lease.
    about: ObjectReference,
    /// Namespaces whose write failed since the last refresh, for the refresher to try again.
    failed: Mutex<BTreeSet<String>>,
    retry_now: Notify,
}

/// Runs until SIGTERM or SIGINT; the exit status says whether it could start at all.
pub async fn run(config: &Config, args: &WatchArgs) -> RunStatus {
    let stop = Stop::default();
    let _armed = stop.arm(None);
    let shared = Shared {
        health: Health::default(),
        metrics: Metrics::new(),
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(
                "cannot listen on {} for /healthz, /readyz and /metrics: {e}. Pick another address with --listen",
                args.listen
            );
            return RunStatus::NothingDone;
        }
    };
    tracing::info!(listen = %args.listen, "serving /healthz, /readyz and /metrics");
    let server = tokio::spawn(server::serve(listener, shared.clone()));
    let status = watch_until_stopped(config, args, &stop, &shared).await;
    server.abort();
    status
}

async fn watch_until_stopped(
    config: &Config,
    args: &WatchArgs,
    stop: &Stop,
    shared: &Shared,
) -> RunStatus {
    let source = match client::load(&config.kube) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return RunStatus::NothingDone;
        }
    };
    let instance = match config
        .instance
        .clone()
        .map_or_else(|| source.default_instance(), Ok)
    {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("{e}");
            return RunStatus::NothingDone;
        }
    };
    let Some(checked) = connect(source, stop, &shared.health).await else {
        return stopped_or_failed(stop);
    };
    let (keeper, gate) = gate::gate();
    let clients = checked.gated(gate.clone()).and_then(|gated| {
        Ok((
            gated,
            checked.for_watches(WATCH_TIMEOUT + Duration::from_secs(30))?,
        ))
    });
    let (client, watch_client) = match clients {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return RunStatus::NothingDone;
        }
    };
    let lease_namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(|| lease::default_namespace(&checked.client));
    let identity = lease::identity();
    let about = about(&identity, &lease_namespace, &args.lease_name);
    tracing::info!(instance = %instance, identity = %identity, "watching namespaces as instance {instance}");
    let leader = Leader {
        config,
        args,
        instance: &instance,
        client,
        watch_client,
        gate,
        stop,
        shared,
        about,
        failed: Mutex::default(),
        retry_now: Notify::new(),
    };
    if args.no_leader_election {
        tracing::info!(
            "--no-leader-election: this process writes without a Lease; run one replica only"
        );
        keeper.open_until(Instant::now() + Duration::from_secs(10 * 365 * 24 * 3600));
        shared.health.set_leader(true);
        shared.metrics.set_leader(true);
        lead_while_elected(&leader).await;
    } else {
        let mut elector = Elector::new(
            checked.client.clone(),
            &lease_namespace,
            &args.lease_name,
            &identity,
        );
        tracing::info!(lease = %args.lease_name, namespace = %lease_namespace, identity = %identity, "electing a leader with Lease {lease_namespace}/{}", args.lease_name);
        {
            let keep = elector.keep(&keeper, &shared.health, &shared.metrics);
            tokio::select! {
                () = keep => {}
                () = lead_while_elected(&leader) => {}
            }
        }
        // Nothing writes any more: the gate closes before the Lease goes.
        keeper.close();
        elector.release().await;
    }
    shared.metrics.set_leader(false);
    tracing::info!("stopped");
    RunStatus::Refreshed
}

fn stopped_or_failed(stop: &Stop) -> RunStatus {
    match stop.signalled() {
        Some(_) => RunStatus::Refreshed,
        None => RunStatus::NothingDone,
    }
}

/// The checked connection, tried again with backoff while the API server does not answer (a
/// pod must not crash-loop because the control plane is restarting). `None`: stopped by a
/// signal, or a fault that needs a person (logged).
async fn connect(source: Source, stop: &Stop, health: &Health) -> Option<client::Checked> {
    let mut failures = 0;
    loop {
        match source.clone().checked().await {
            Ok(c) => {
                health.api_ok();
                return Some(c);
            }
            Err(e @ ClusterError::Unreachable { .. }) => {
                failures += 1;
                health.api_failed();
                let wait = schedule::retry_after(failures, schedule::jitter());
                tracing::warn!("{e}; trying again in {}s", wait.as_secs());
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.after_signal(Duration::ZERO) => return None,
                }
            }
            Err(e) => {
                tracing::error!("{e}");
                return None;
            }
        }
    }
}

/// What an Event about this process refers to: its pod when POD_NAME names it, else the Lease.
fn about(identity: &str, namespace: &str, lease: &str) -> ObjectReference {
    match std::env::var("POD_NAME").ok().filter(|p| p == identity) {
        Some(pod) => ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod),
            namespace: Some(namespace.into()),
            ..ObjectReference::default()
        },
        None => ObjectReference {
            api_version: Some("coordination.k8s.io/v1".into()),
            kind: Some("Lease".into()),
            name: Some(lease.into()),
            namespace: Some(namespace.into()),
            ..ObjectReference::default()
        },
    }
}

/// Leads each time the gate opens, stops the moment it closes (the work in flight is dropped:
/// the gate already refuses its writes), until a signal; then lets the work finish.
async fn lead_while_elected(l: &Leader<'_>) {
    loop {
        tokio::select! {
            () = l.gate.opened() => {}
            () = l.stop.after_signal(Duration::ZERO) => return,
        }
        tokio::select! {
            () = lead(l) => return,
            () = l.gate.closed() => {
                tracing::warn!("the Lease lapsed: stopped all work, standing by");
                l.shared.health.set_leader(false);
            }
        }
    }
}

/// One term as leader: the namespace watch, the refresher and the writers of new namespaces.
/// Returns after a signal, once the work in flight is done (bounded by [`STOP_WAIT`]).
async fn lead(l: &Leader<'_>) {
    l.shared.health.set_leader(true);
    let (changes_tx, changes_rx) = mpsc::unbounded_channel();
    let (synced_tx, synced_rx) = oneshot::channel();
    let (held_tx, held_rx) = watch::channel(None);
    let spec = l.config.namespaces.clone();
    let selector = spec.selector.clone();
    let classify = Box::new(move |ns: &Listed| Standing::of(&spec, ns));
    let namespaces = NamespaceWatch::new(
        l.watch_client.clone(),
        classify,
        selector,
        l.shared.health.clone(),
        l.shared.metrics.clone(),
    )
    .run(changes_tx, synced_tx);
    let work = async {
        tokio::join!(
            refresher(l, synced_rx, held_tx),
            writers(l, changes_rx, held_rx)
        );
    };
    let after_signal = async {
        l.stop.after_signal(STOP_WAIT).await;
        tracing::warn!(
            "work still in flight {}s after the signal: dropped",
            STOP_WAIT.as_secs_f32()
        );
    };
    tokio::select! {
        () = namespaces => {}
        () = work => {}
        () = after_signal => {}
    }
}

/// A stop for one refresh: triggered by a signal, or by --timeout.
fn pass_stop(process: &Stop, timeout: Option<Duration>) -> (Stop, tokio::task::JoinHandle<()>) {
    let pass = Stop::default();
    let linked = pass.clone();
    let process = process.clone();
    let task = tokio::spawn(async move {
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = process.after_signal(Duration::ZERO) => linked.trigger(Reason::Signal),
            () = deadline => {
                linked.trigger(Reason::Deadline);
                // A signal during the rest of the refresh still cuts it short.
                process.after_signal(Duration::ZERO).await;
                linked.trigger(Reason::Signal);
            }
        }
    });
    (pass, task)
}

/// Why one round of the refresher did not finish.
enum Failed {
    Tokens,
    Listing,
    Stopped,
}

/// The refresher's state between rounds.
struct Plan {
    held: Option<Arc<Held>>,
    /// When the tokens are due for renewal.
    tokens_due: Instant,
    /// A full refresh is owed (new tokens, or the last one could not list namespaces).
    pass_due: bool,
    /// Namespaces to try again.
    retry: BTreeSet<String>,
    failures: u32,
}

/// Full refreshes at start and before the tokens expire; failed namespaces tried again alone.
async fn refresher(
    l: &Leader<'_>,
    synced: oneshot::Receiver<()>,
    held_tx: watch::Sender<Option<Arc<Held>>>,
) {
    // Once the watch has listed, every namespace is either in that listing (older than the
    // refresh's own) or reported by the watch: none falls between the two.
    tokio::select! {
        _ = synced => {}
        () = l.stop.after_signal(Duration::ZERO) => return,
    }
    let mut plan = Plan {
        held: None,
        tokens_due: Instant::now(),
        pass_due: true,
        retry: BTreeSet::new(),
        failures: 0,
    };
    loop {
        let round = refresh_round(l, &mut plan, &held_tx).await;
        if matches!(round, Err(Failed::Stopped)) || l.stop.signalled().is_some() {
            return;
        }
        let failed = round.is_err() || !plan.retry.is_empty();
        plan.failures = if failed { plan.failures + 1 } else { 0 };
        let wait = next_wait(&plan, failed);
        if !failed {
            tracing::info!(
                next_in_s = wait.as_secs(),
                "next refresh in {} min",
                wait.as_secs() / 60
            );
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = l.retry_now.notified() => {
                // A new namespace failed: try it with backoff, not at once.
                plan.failures = plan.failures.max(1);
                tokio::select! {
                    () = tokio::time::sleep(next_wait(&plan, true)) => {}
                    () = l.stop.after_signal(Duration::ZERO) => return,
                }
            }
            () = l.stop.after_signal(Duration::ZERO) => return,
        }
        let failed_since: Vec<String> = {
            let mut set = l.failed.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *set).into_iter().collect()
        };
        plan.retry.extend(failed_since);
    }
}

/// How long until the next round: the tokens' renewal, or sooner, with backoff, after a failure
/// (but never sooner than the backoff when the renewal is what failed).
fn next_wait(plan: &Plan, failed: bool) -> Duration {
    let until_due = plan.tokens_due.saturating_duration_since(Instant::now());
    match failed {
        false => until_due,
        true if until_due.is_zero() => schedule::retry_after(plan.failures, schedule::jitter()),
        true => until_due.min(schedule::retry_after(plan.failures, schedule::jitter())),
    }
}

/// One round: new tokens when due, then a full refresh when owed, else the namespaces to retry.
async fn refresh_round(
    l: &Leader<'_>,
    plan: &mut Plan,
    held_tx: &watch::Sender<Option<Arc<Held>>>,
) -> Result<(), Failed> {
    let config = l.config;
    let (metrics, health) = (&l.shared.metrics, &l.shared.health);
    if plan.held.is_none() || Instant::now() >= plan.tokens_due {
        let got = tokio::select! {
            r = refresh::tokens(config) => r,
            () = l.stop.after_signal(Duration::ZERO) => return Err(Failed::Stopped),
        };
        let tokens = match got {
            Ok(t) => t,
            Err(e) => {
                metrics.error(ErrorKind::Aws);
                let message = format!(
                    "cannot get ECR tokens: {e}. The Secrets already written stay as they are"
                );
                tracing::error!("{message}; trying again with backoff");
                let budget = Budget::start(Duration::from_secs(5), l.stop.clone());
                let namespace = l.about.namespace.clone().unwrap_or_default();
                events::warning(
                    l.client.clone(),
                    &namespace,
                    l.about.clone(),
                    TOKENS_FAILED,
                    &message,
                    &budget,
                )
                .await;
                return Err(Failed::Tokens);
            }
        };
        let held = hold(l, &tokens);
        tracing::info!(registries = %held.hosts, token_calls = tokens.calls, expires_at = ?tokens.expires_at(), "ECR tokens obtained");
        let wait = schedule::until_refresh(
            tokens.expires_at(),
            Timestamp::now(),
            l.args.refresh_before,
            schedule::jitter(),
        );
        plan.tokens_due = Instant::now() + wait;
        health.tokens(tokens.expires_at());
        metrics.tokens(&tokens.expiries);
        held_tx.send_replace(Some(held.clone()));
        plan.held = Some(held);
        plan.pass_due = true;
    }
    let Some(held) = plan.held.clone() else {
        return Err(Failed::Tokens);
    };
    let (stop, link) = pass_stop(l.stop, config.timeout);
    let ctx = Context {
        client: l.client.clone(),
        config,
        desired: &held.secret,
        stop: &stop,
        hosts: &held.hosts,
        wait_for_service_accounts: Duration::ZERO,
    };
    let result = if plan.pass_due {
        full_refresh(l, &ctx, &held).await.map(|retry| {
            plan.pass_due = false;
            plan.retry = retry.into_iter().collect();
        })
    } else if !plan.retry.is_empty() {
        let targets: Vec<Target> = plan
            .retry
            .iter()
            .map(|name| Target {
                name: name.clone(),
                exact: false,
            })
            .collect();
        tracing::info!(
            namespaces = targets.len(),
            "trying the namespaces that failed again"
        );
        let results = refresh::write_all(&ctx, &targets).await;
        plan.retry = refresh::retryable(&results).into_iter().collect();
        if plan.retry.is_empty() {
            metrics.succeeded(Timestamp::now());
        }
        Ok(())
    } else {
        Ok(())
    };
    link.abort();
    result
}

fn hold(l: &Leader<'_>, tokens: &Tokens) -> Arc<Held> {
    let hosts: Vec<&str> = tokens.auths.iter().map(|a| a.host.as_str()).collect();
    Arc::new(Held {
        secret: refresh::desired_secret(l.config, tokens, l.instance),
        hosts: hosts.join(","),
        expires_at: tokens.expires_at(),
    })
}

/// The one-shot refresh's selection, writes and prune. Returns the namespaces to try again.
async fn full_refresh(
    l: &Leader<'_>,
    ctx: &Context<'_>,
    held: &Held,
) -> Result<Vec<String>, Failed> {
    let started = Instant::now();
    let listing = tokio::select! {
        r = refresh::select_namespaces(&ctx.client, l.config) => r,
        () = l.stop.after_signal(Duration::ZERO) => return Err(Failed::Stopped),
    };
    let selection = match listing {
        Ok(s) => s,
        Err(e) => {
            l.shared.metrics.error(ErrorKind::ApiServer);
            l.shared.health.api_failed();
            tracing::error!("{e}; the refresh is tried again with backoff");
            return Err(Failed::Listing);
        }
    };
    l.shared.health.api_ok();
    let decided = refresh::decided_by_selection(&selection);
    for r in &decided {
        log_result(r, &l.config.secret_name, &held.hosts);
    }
    let written = refresh::write_and_prune(ctx, &selection, decided, l.instance).await;
    let elapsed = started.elapsed();
    log_summary(&written.summary, held.expires_at, elapsed);
    l.shared
        .metrics
        .refreshed(&written.summary, elapsed.as_secs_f64(), Timestamp::now());
    Ok(written.retry)
}

/// Writes (or prunes) each namespace the watch reports as newly selected (or unselected), at
/// most --concurrency at a time, until a signal.
async fn writers(
    l: &Leader<'_>,
    changes: mpsc::UnboundedReceiver<Seen>,
    held: watch::Receiver<Option<Arc<Held>>>,
) {
    let changes = futures::stream::unfold(changes, |mut rx| async move {
        rx.recv().await.map(|seen| (seen, rx))
    });
    changes
        .take_until(l.stop.after_signal(Duration::ZERO))
        .for_each_concurrent(l.config.concurrency, |seen| {
            let held = held.borrow().clone();
            async move { act(l, &seen, held).await }
        })
        .await;
}

async fn act(l: &Leader<'_>, seen: &Seen, held: Option<Arc<Held>>) {
    let config = l.config;
    match react(config.prune, seen) {
        Action::Nothing => {}
        Action::Write(name) => {
            // No tokens yet: the first refresh, still to come, writes it.
            let Some(held) = held else {
                tracing::info!(namespace = %name, "namespace selected before the first tokens came; the first refresh writes it");
                return;
            };
            tracing::info!(namespace = %name, "namespace selected: writing its Secret");
            let ctx = Context {
                client: l.client.clone(),
                config,
                desired: &held.secret,
                stop: l.stop,
                hosts: &held.hosts,
                wait_for_service_accounts: SA_WAIT,
            };
            let target = Target { name, exact: false };
            let result = refresh::refresh_one(&ctx, &target).await;
            if let Some(name) = refresh::retryable(std::slice::from_ref(&result)).pop() {
                l.shared.metrics.error(ErrorKind::Namespace);
                l.failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name);
                l.retry_now.notify_one();
            }
        }
        Action::Prune(name) => {
            tracing::info!(namespace = %name, "namespace no longer selected: pruning its Secret (--prune)");
            let options = prune::PruneOptions {
                secret: &config.secret_name,
                instance: l.instance,
                concurrency: 1,
                namespace_timeout: config.namespace_timeout,
                stop: l.stop,
            };
            if prune::prune(l.client.clone(), std::slice::from_ref(&name), &options).await > 0 {
                l.shared.metrics.error(ErrorKind::Namespace);
            }
        }
    }
}
