//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does:
//! a 15 s lease, renewed every 10 s, tried every 2 s by the others, updated with its
//! resourceVersion so that two candidates cannot both win, and released on the way out.
//!
//! The leader writes only while its [write gate](crate::cluster::gate) is open: until 12 s
//! after it sent its last successful renewal. Another candidate takes the Lease only after it
//! saw the record unchanged for 15 s on its own clock, so the old leader has stopped writing
//! (requests in flight included) at least 3 s before anyone else may start.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::cluster::calls::{code_of, describe};
use crate::cluster::gate::GateKeeper;
use crate::watch::health::Health;
use crate::watch::metrics::{ErrorKind, Metrics};

/// How long a Lease holds without renewal (`leaseDurationSeconds`).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the leader renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often a candidate tries, and the leader retries a failed renewal.
pub const RETRY_EVERY: Duration = Duration::from_secs(2);
/// How long before the Lease could expire for the others the leader stops writing.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(3);
/// The longest one Lease request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Where a pod finds its own namespace.
const POD_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// What a candidate does with the Lease as it finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is none: create it, held by us.
    Create,
    /// Free, released, or expired: take it.
    Take,
    /// Ours: renew it.
    Renew,
    /// Someone else holds it.
    Wait(String),
}

/// Pure: what to do with `spec` (`None`: no Lease), as `me`, when the record has not changed for
/// `unchanged_for` on our clock.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, unchanged_for: Duration) -> Decision {
    let Some(spec) = spec else {
        return Decision::Create;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Decision::Take,
        Some(holder) if holder == me => Decision::Renew,
        Some(holder) => {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(LEASE_DURATION, Duration::from_secs);
            if unchanged_for >= duration {
                Decision::Take
            } else {
                Decision::Wait(holder.to_string())
            }
        }
    }
}

/// The record as we hold it after a take or renewal. Pure.
pub fn held(old: Option<&LeaseSpec>, me: &str, now: Timestamp) -> LeaseSpec {
    let ours = old.is_some_and(|s| s.holder_identity.as_deref() == Some(me));
    let transitions = old.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        acquire_time: match old {
            Some(s) if ours => s.acquire_time.clone(),
            _ => Some(MicroTime(now)),
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(match old {
            Some(_) if !ours => transitions.saturating_add(1),
            _ => transitions,
        }),
        ..old.cloned().unwrap_or_default()
    }
}

/// The record as left on the way out: no holder, so that the next candidate takes it at once.
pub fn released(old: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(now)),
        ..old.clone()
    }
}

/// This replica's name in the Lease: POD_NAME (the downward API), else the host name, else a
/// made-up one.
pub fn identity() -> String {
    let from_env = |k| std::env::var(k).ok().map(|v: String| v.trim().to_string());
    from_env("POD_NAME")
        .filter(|v| !v.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .or_else(|| from_env("HOSTNAME").filter(|v| !v.is_empty()))
        .unwrap_or_else(|| {
            let n = (crate::watch::schedule::jitter() * 1e9) as u64;
            format!("ecr-secret-refresher-{n:x}")
        })
}

/// The Lease's namespace when --lease-namespace is not given: the pod's own, else the
/// kubeconfig context's (the client's default namespace).
pub fn default_namespace(client: &Client) -> String {
    std::fs::read_to_string(POD_NAMESPACE_FILE)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_string())
}

/// What we last saw of the Lease.
struct Observed {
    /// holderIdentity, renewTime and resourceVersion: a change of any restarts the clock.
    record: (Option<String>, Option<Timestamp>, Option<String>),
    at: Instant,
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    namespace: String,
    me: String,
    observed: Option<Observed>,
    /// The Lease as we last wrote it, while we hold it.
    ours: Option<Lease>,
}

/// The outcome of one try.
enum Tried {
    Leading { until: Instant },
    Following { holder: String },
}

impl Elector {
    /// `client` must not be gated: the Lease is how the gate opens.
    pub fn new(client: Client, namespace: &str, name: &str, me: &str) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            namespace: namespace.to_string(),
            me: me.to_string(),
            observed: None,
            ours: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.me
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())),
        }
    }

    /// One try to take or renew the Lease.
    async fn try_once(&mut self) -> Result<Tried, String> {
        let sent = Instant::now();
        let found = self.bounded(self.api.get_opt(&self.name)).await?;
        let spec = found.as_ref().and_then(|l| l.spec.clone());
        let record = (
            spec.as_ref().and_then(|s| s.holder_identity.clone()),
            spec.as_ref()
                .and_then(|s| s.renew_time.as_ref().map(|t| t.0)),
            found
                .as_ref()
                .and_then(|l| l.metadata.resource_version.clone()),
        );
        if self.observed.as_ref().is_none_or(|o| o.record != record) {
            self.observed = Some(Observed { record, at: sent });
        }
        let unchanged_for = self
            .observed
            .as_ref()
            .map_or(Duration::ZERO, |o| o.at.elapsed());
        let decision = decide(spec.as_ref(), &self.me, unchanged_for);
        let new_spec = held(spec.as_ref(), &self.me, Timestamp::now());
        let written = match (decision, found) {
            (Decision::Wait(holder), _) => {
                self.ours = None;
                return Ok(Tried::Following { holder });
            }
            (Decision::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(new_spec),
                };
                let params = PostParams::default();
                tokio::time::timeout(REQUEST_TIMEOUT, self.api.create(&params, &lease)).await
            }
            (_, Some(mut lease)) => {
                lease.spec = Some(new_spec);
                let params = PostParams::default();
                tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    self.api.replace(&self.name, &params, &lease),
                )
                .await
            }
            (_, None) => return Err("the Lease vanished while being read".into()),
        };
        match written {
            Ok(Ok(lease)) => {
                self.ours = Some(lease);
                Ok(Tried::Leading {
                    until: sent + LEASE_DURATION - SAFETY_MARGIN,
                })
            }
            // Someone else wrote it first (409 AlreadyExists or Conflict): theirs, this time.
            Ok(Err(e)) if code_of(&e) == Some(409) => {
                self.ours = None;
                Ok(Tried::Following {
                    holder: "another replica".into(),
                })
            }
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())),
        }
    }

    /// Takes and keeps the Lease for ever, opening `keeper`'s gate while it is held and closing
    /// it when it is lost. Never returns; drop it to stop, then [`Elector::release`].
    pub async fn keep(&mut self, keeper: &GateKeeper, health: &Health, metrics: &Metrics) {
        let mut leading_until: Option<Instant> = None;
        let mut last_holder = String::new();
        loop {
            let next = match self.try_once().await {
                Ok(Tried::Leading { until }) => {
                    health.api_ok();
                    if leading_until.is_none() {
                        tracing::info!(lease = %self.name, namespace = %self.namespace, identity = %self.me, "became the leader: this replica writes now");
                    }
                    leading_until = Some(until);
                    keeper.open_until(until);
                    RENEW_EVERY
                }
                Ok(Tried::Following { holder }) => {
                    health.api_ok();
                    if leading_until.take().is_some() {
                        keeper.close();
                        tracing::warn!(lease = %self.name, holder = %holder, "lost the Lease to {holder}: stopped writing");
                    } else if holder != last_holder {
                        tracing::info!(lease = %self.name, holder = %holder, "standing by: {holder} leads");
                    }
                    last_holder = holder;
                    RETRY_EVERY
                }
                Err(why) => {
                    health.api_failed();
                    metrics.error(ErrorKind::ApiServer);
                    match leading_until {
                        Some(until) if until <= Instant::now() => {
                            leading_until = None;
                            keeper.close();
                            tracing::error!(lease = %self.name, "could not renew the Lease in time ({why}): stopped writing; another replica may lead now");
                        }
                        Some(_) => {
                            tracing::warn!(lease = %self.name, "could not renew the Lease ({why}); trying again in {}s", RETRY_EVERY.as_secs())
                        }
                        None => {
                            tracing::warn!(lease = %self.name, namespace = %self.namespace, "could not read or take the Lease: {why}")
                        }
                    }
                    RETRY_EVERY
                }
            };
            let leading = leading_until.is_some();
            health.set_leader(leading);
            metrics.set_leader(leading);
            tokio::time::sleep(next).await;
        }
    }

    /// Gives the Lease up, if we hold it, so that a standby takes over at once. Call it only
    /// once nothing writes any more. Bounded by one request timeout.
    pub async fn release(&mut self) {
        let Some(mut lease) = self.ours.take() else {
            return;
        };
        let Some(spec) = lease.spec.as_ref() else {
            return;
        };
        lease.spec = Some(released(spec, Timestamp::now()));
        let params = PostParams::default();
        match self
            .bounded(self.api.replace(&self.name, &params, &lease))
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "released the Lease"),
            Err(why) => {
                tracing::warn!(lease = %self.name, "could not release the Lease ({why}); another replica takes it once it expires")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, duration: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: duration,
            ..LeaseSpec::default()
        }
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_lease_is_taken_only_when_free_released_or_expired() {
        assert_eq!(decide(None, "a", Duration::ZERO), Decision::Create);
        assert_eq!(
            decide(Some(&spec(None, Some(15))), "a", Duration::ZERO),
            Decision::Take
        );
        assert_eq!(
            decide(Some(&spec(Some(""), Some(1))), "a", Duration::ZERO),
            Decision::Take
        );
        assert_eq!(
            decide(Some(&spec(Some("a"), Some(15))), "a", Duration::ZERO),
            Decision::Renew
        );
        let theirs = spec(Some("b"), Some(15));
        assert_eq!(
            decide(Some(&theirs), "a", 14 * SEC),
            Decision::Wait("b".into())
        );
        assert_eq!(decide(Some(&theirs), "a", 15 * SEC), Decision::Take);
        // The holder's own duration counts, not ours.
        assert_eq!(
            decide(Some(&spec(Some("b"), Some(60))), "a", 30 * SEC),
            Decision::Wait("b".into())
        );
    }

    #[test]
    fn taking_counts_a_transition_and_renewing_keeps_the_acquire_time() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let t1 = Timestamp::from_second(1_800_000_010).unwrap();
        let mut theirs = spec(Some("b"), Some(15));
        theirs.lease_transitions = Some(4);
        let taken = held(Some(&theirs), "a", t0);
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(5));
        assert_eq!(taken.lease_duration_seconds, Some(15));
        assert_eq!(taken.acquire_time, Some(MicroTime(t0)));
        let renewed = held(Some(&taken), "a", t1);
        assert_eq!(renewed.lease_transitions, Some(5));
        assert_eq!(renewed.acquire_time, Some(MicroTime(t0)));
        assert_eq!(renewed.renew_time, Some(MicroTime(t1)));
        assert_eq!(held(None, "a", t0).lease_transitions, Some(0));
        let gone = released(&renewed, t1);
        assert_eq!(gone.holder_identity, None);
        assert_eq!(gone.lease_duration_seconds, Some(1));
    }

    #[test]
    fn the_leader_stops_writing_well_before_anyone_may_take_over() {
        // A failed renewal is tried again at least once before the gate closes.
        assert!(RENEW_EVERY + RETRY_EVERY <= LEASE_DURATION - SAFETY_MARGIN);
        assert!(SAFETY_MARGIN >= REQUEST_TIMEOUT);
    }
}
