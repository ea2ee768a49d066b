//! Stopping a run early: SIGTERM, SIGINT or the `--timeout` deadline stop new namespaces from
//! starting; the ones in flight finish, so none is left halfway, and the summary still prints.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

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
            Reason::Signal => "stopped by a termination signal before this namespace was started",
            Reason::Deadline => "--timeout was reached before this namespace was started",
        }
    }
}

/// A flag shared by the namespace workers, set once.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicU8>);

impl Stop {
    pub fn reason(&self) -> Option<Reason> {
        match self.0.load(Ordering::SeqCst) {
            1 => Some(Reason::Signal),
            2 => Some(Reason::Deadline),
            _ => None,
        }
    }

    pub fn trigger(&self, reason: Reason) {
        let code = match reason {
            Reason::Signal => 1,
            Reason::Deadline => 2,
        };
        let _ = self
            .0
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Sets the flag on SIGTERM, SIGINT, or when `deadline` (from now) passes.
    pub fn arm(&self, deadline: Option<Duration>) -> tokio::task::JoinHandle<()> {
        let stop = self.clone();
        tokio::spawn(async move {
            let deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            let reason = tokio::select! {
                _ = terminate() => Reason::Signal,
                _ = tokio::signal::ctrl_c() => Reason::Signal,
                _ = deadline => Reason::Deadline,
            };
            tracing::warn!(
                "{}: finishing the namespaces in flight, starting no new ones",
                match reason {
                    Reason::Signal => "termination signal received",
                    Reason::Deadline => "--timeout reached",
                }
            );
            stop.trigger(reason);
        })
    }
}

#[cfg(unix)]
async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending().await
}
