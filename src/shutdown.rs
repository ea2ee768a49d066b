//! Stopping a run early.
//!
//! The `--timeout` deadline stops new namespaces from starting; the ones in flight finish within
//! their own budget. The first SIGTERM or SIGINT does more, because Kubernetes sends SIGKILL 30 s
//! after SIGTERM: no new namespace, no new request except those that give a namespace its Secret
//! back (the create after a delete, the restore), no backoff sleeps, no Events, each in-flight
//! request cut short after a few seconds, so the summary prints well within 10 s. A second
//! signal exits at once, naming every namespace caught between a delete and the create that
//! replaces it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a run ends when a second signal comes: at once, with a non-zero code.
const SECOND_SIGNAL_EXIT_CODE: i32 = 1;

/// Why a run stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Signal,
    Deadline,
}

impl Reason {
    /// Why the run stopped, in a few words.
    pub fn summary(self) -> &'static str {
        match self {
            Reason::Signal => "the run was stopped by a termination signal",
            Reason::Deadline => "--timeout was reached",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Signal => {
                "stopped by a termination signal before this namespace was refreshed; nothing was deleted there"
            }
            Reason::Deadline => "--timeout was reached before this namespace was started",
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// 0: running, 1: signal, 2: deadline. Set once.
    reason: AtomicU8,
    /// When the first signal came: the grace periods of in-flight requests count from it.
    signalled: tokio::sync::watch::Sender<Option<Instant>>,
    /// Namespaces between the delete of their Secret and the create that replaces it, with how
    /// many writers hold each (one, unless a namespace is listed twice).
    exposed: Mutex<BTreeMap<String, usize>>,
}

/// What the namespace workers share about stopping: set once, read everywhere.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<Inner>);

impl Stop {
    /// Why the run stopped, if it did: no namespace starts once this is set.
    pub fn reason(&self) -> Option<Reason> {
        match self.0.reason.load(Ordering::SeqCst) {
            1 => Some(Reason::Signal),
            2 => Some(Reason::Deadline),
            _ => None,
        }
    }

    /// Stops the run. The first reason is the one reported; a signal after the deadline still
    /// cuts the work in flight short.
    pub fn trigger(&self, reason: Reason) {
        let code = match reason {
            Reason::Signal => 1,
            Reason::Deadline => 2,
        };
        let _ = self
            .0
            .reason
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        if reason == Reason::Signal {
            self.0.signalled.send_if_modified(|at| {
                let first = at.is_none();
                if first {
                    *at = Some(Instant::now());
                }
                first
            });
        }
    }

    /// When the first termination signal came, if one did.
    pub fn signalled(&self) -> Option<Instant> {
        *self.0.signalled.borrow()
    }

    /// Completes `grace` after the first termination signal; never, if none comes.
    pub async fn after_signal(&self, grace: Duration) {
        let mut rx = self.0.signalled.subscribe();
        let at = match rx.wait_for(Option::is_some).await {
            Ok(at) => *at,
            // The sender lives as long as `self`, so this cannot happen; wait forever if it does.
            Err(_) => None,
        };
        match at {
            Some(at) => tokio::time::sleep_until((at + grace).into()).await,
            None => std::future::pending().await,
        }
    }

    /// Marks `namespace` as possibly without its Secret until the guard is dropped: a second
    /// signal names it.
    pub fn exposed(&self, namespace: &str) -> Exposed {
        let mut set = self.0.exposed.lock().unwrap_or_else(|e| e.into_inner());
        *set.entry(namespace.to_string()).or_default() += 1;
        Exposed {
            stop: self.clone(),
            namespace: namespace.to_string(),
        }
    }

    fn exposed_now(&self) -> Vec<String> {
        let set = self.0.exposed.lock().unwrap_or_else(|e| e.into_inner());
        set.keys().cloned().collect()
    }

    /// Stops the run on SIGTERM, SIGINT, or when `deadline` (from now) passes, and exits at once
    /// on a second signal. The signal handlers are installed before this returns, so a signal
    /// that comes right after never kills the process by default.
    pub fn arm(&self, deadline: Option<Duration>) -> tokio::task::JoinHandle<()> {
        let stop = self.clone();
        let mut signals = Signals::install();
        tokio::spawn(async move {
            let deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(deadline);
            let mut deadline_passed = false;
            loop {
                tokio::select! {
                    () = &mut deadline, if !deadline_passed => {
                        deadline_passed = true;
                        if stop.reason().is_none() {
                            tracing::warn!("--timeout reached: finishing the namespaces in flight, starting no new ones");
                        }
                        stop.trigger(Reason::Deadline);
                    }
                    () = signals.next() => {
                        if stop.signalled().is_some() {
                            stop.exit_at_once();
                        }
                        tracing::warn!(
                            "termination signal received: starting no new namespaces or requests, finishing only what gives a namespace its Secret back; a second signal exits at once"
                        );
                        stop.trigger(Reason::Signal);
                    }
                }
            }
        })
    }

    /// The second signal: name every namespace that may be without its Secret, and exit.
    fn exit_at_once(&self) -> ! {
        let exposed = self.exposed_now();
        for ns in &exposed {
            tracing::error!(
                namespace = %ns, outcome = %"lost",
                "NAMESPACE LEFT WITHOUT ITS SECRET: a second termination signal stopped the run after the old Secret was deleted and before the new one was created. Pods here cannot pull from ECR until a run succeeds"
            );
        }
        if exposed.is_empty() {
            tracing::error!(
                "second termination signal: exiting at once; namespaces in flight may not have been refreshed"
            );
        } else {
            tracing::error!(
                lost = exposed.len(),
                "second termination signal: exiting at once; {} namespace(s) may now be WITHOUT their pull secret: {}",
                exposed.len(),
                exposed.join(", ")
            );
        }
        std::process::exit(SECOND_SIGNAL_EXIT_CODE)
    }
}

/// Held from the delete of a namespace's Secret until a Secret is back (or known lost).
#[derive(Debug)]
pub struct Exposed {
    stop: Stop,
    namespace: String,
}

impl Drop for Exposed {
    fn drop(&mut self) {
        let mut set = self
            .stop
            .0
            .exposed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = set.get_mut(&self.namespace) {
            *n -= 1;
            if *n == 0 {
                set.remove(&self.namespace);
            }
        }
    }
}

/// SIGTERM and SIGINT, as one stream.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    #[cfg(unix)]
    async fn next(&mut self) {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            let received = match s {
                Some(s) => s.recv().await.is_some(),
                None => false,
            };
            // A closed or missing stream never delivers: wait on the other one.
            if !received {
                std::future::pending::<()>().await;
            }
        }
        tokio::select! {
            () = recv(&mut self.term) => {}
            () = recv(&mut self.int) => {}
        }
    }

    #[cfg(not(unix))]
    fn install() -> Signals {
        Signals {}
    }

    #[cfg(not(unix))]
    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_namespaces_are_tracked_while_guarded() {
        let stop = Stop::default();
        let a = stop.exposed("team-a");
        let a2 = stop.exposed("team-a");
        let b = stop.exposed("team-b");
        assert_eq!(stop.exposed_now(), ["team-a", "team-b"]);
        drop(a);
        drop(b);
        assert_eq!(stop.exposed_now(), ["team-a"]);
        drop(a2);
        assert!(stop.exposed_now().is_empty());
    }

    #[test]
    fn the_first_reason_is_kept_and_a_late_signal_is_still_recorded() {
        let stop = Stop::default();
        stop.trigger(Reason::Deadline);
        assert!(stop.signalled().is_none());
        stop.trigger(Reason::Signal);
        assert_eq!(stop.reason(), Some(Reason::Deadline));
        let first = stop.signalled().unwrap();
        stop.trigger(Reason::Signal);
        assert_eq!(
            stop.signalled(),
            Some(first),
            "the first signal's time is kept"
        );
    }
}
