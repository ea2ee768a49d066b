//! A namespace's time budget: one bound for everything one namespace does (its requests, their
//! retries and the backoff between them), and how its requests are cut short when the run is
//! stopped by a termination signal. See [`crate::shutdown`] for the signals themselves.

use std::time::{Duration, Instant};

use crate::cluster::calls::{ATTEMPTS, backoff, is_transient};
use crate::shutdown::{Exposed, Stop};

/// The longest one request waits for an answer, whatever the budget.
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a namespace's budget kept back, once its Secret is deleted, for putting it back.
const MAX_RESTORE_RESERVE: Duration = Duration::from_secs(5);
/// After the first signal: how long a request already in flight may still take.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// After the first signal: by when the create that follows a delete must be answered.
const STOP_GRACE_REPLACE: Duration = Duration::from_secs(5);
/// After the first signal: by when the restore of the old Secret must be answered. The process
/// exits right after, well within the 10 s this tool promises after SIGTERM.
const STOP_GRACE_RESTORE: Duration = Duration::from_secs(8);

/// Why a request ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Cut {
    /// No answer within the request timeout; retried while the budget lasts.
    #[error("no answer from the API server within {}", seconds(*.0))]
    TimedOut(Duration),
    /// The namespace's budget ran out.
    #[error("the namespace's time budget of {} ran out (--namespace-timeout)", seconds(*.0))]
    OverBudget(Duration),
    /// A termination signal came: not started, or not answered within the grace period.
    #[error("the run was stopped by a termination signal")]
    Stopped,
    /// `watch`: this replica's leader Lease lapsed, so it may no longer write (see
    /// [`crate::cluster::gate`]).
    #[error(
        "this replica no longer holds the leader Lease, so it stopped writing; the leader refreshes this namespace"
    )]
    NotLeader,
}

/// `20s`, `2.5s`.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The [`Cut`] behind an error, if a budget cut the request short.
pub fn cut_of(err: &kube::Error) -> Option<Cut> {
    match err {
        kube::Error::Service(e) => e.downcast_ref::<Cut>().copied(),
        _ => None,
    }
}

fn cut(c: Cut) -> kube::Error {
    kube::Error::Service(Box::new(c))
}

/// Which part of a namespace's work a request belongs to; it decides how much of the budget the
/// request may use and whether it still runs after a termination signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reading and writing in place: never started after a signal.
    Normal,
    /// From the delete of the old Secret to the create of the new one. Finishes after a signal;
    /// leaves the end of the budget to [`Step::Restore`].
    Replace,
    /// Putting the old Secret back after a failed create. Finishes after a signal.
    Restore,
}

/// Time for everything one namespace does: its requests, their retries and the backoff between
/// them. Each request waits at most half the budget (10 s at most) for an answer; once the old
/// Secret is deleted, the last quarter (5 s at most) is kept for putting it back.
#[derive(Debug, Clone)]
pub struct Budget {
    total: Duration,
    deadline: Instant,
    stop: Stop,
}

impl Budget {
    /// A budget of `total` that starts now.
    pub fn start(total: Duration, stop: Stop) -> Budget {
        Budget {
            total,
            deadline: Instant::now() + total,
            stop,
        }
    }

    /// The longest one request waits for an answer.
    pub fn request_timeout(&self) -> Duration {
        (self.total / 2).min(MAX_REQUEST_TIMEOUT)
    }

    fn restore_reserve(&self) -> Duration {
        (self.total / 4).min(MAX_RESTORE_RESERVE)
    }

    /// By when requests of `step` must be done.
    fn step_deadline(&self, step: Step) -> Instant {
        match step {
            Step::Normal | Step::Restore => self.deadline,
            Step::Replace => self
                .deadline
                .checked_sub(self.restore_reserve())
                .unwrap_or(self.deadline),
        }
    }

    fn stop_grace(step: Step) -> Duration {
        match step {
            Step::Normal => STOP_GRACE,
            Step::Replace => STOP_GRACE_REPLACE,
            Step::Restore => STOP_GRACE_RESTORE,
        }
    }

    /// Whether a termination signal has come: no new namespace work, no Event.
    pub fn stopping(&self) -> bool {
        self.stop.signalled().is_some()
    }

    /// Whether a delete may start: not after a signal, and only with enough budget left to
    /// create the new Secret and, failing that, put the old one back.
    pub fn may_delete(&self) -> Result<(), Cut> {
        if self.stopping() {
            return Err(Cut::Stopped);
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left < 2 * self.restore_reserve() {
            return Err(Cut::OverBudget(self.total));
        }
        Ok(())
    }

    /// Marks the namespace as possibly without its Secret while the guard lives.
    pub fn exposed(&self, namespace: &str) -> Exposed {
        self.stop.exposed(namespace)
    }

    /// Runs one attempt of `step`, cut short by the request timeout, the step's share of the
    /// budget, or a signal's grace period.
    async fn attempt<T, Fut>(&self, step: Step, call: Fut) -> Result<T, kube::Error>
    where
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let now = Instant::now();
        let step_deadline = self.step_deadline(step);
        if step_deadline <= now {
            return Err(cut(Cut::OverBudget(self.total)));
        }
        let timeout = now + self.request_timeout();
        let (until, on_timeout) = if timeout < step_deadline {
            (timeout, Cut::TimedOut(self.request_timeout()))
        } else {
            (step_deadline, Cut::OverBudget(self.total))
        };
        tokio::select! {
            r = call => r,
            () = tokio::time::sleep_until(until.into()) => Err(cut(on_timeout)),
            () = self.stop.after_signal(Self::stop_grace(step)) => Err(cut(Cut::Stopped)),
        }
    }

    /// Like `calls::retrying`, within this budget: each attempt is bounded, a backoff that would
    /// overrun the budget is not slept, and after a termination signal nothing is retried and
    /// only [`Step::Replace`] and [`Step::Restore`] requests start at all.
    pub async fn retrying<T, F, Fut>(&self, step: Step, mut call: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut attempt = 1;
        loop {
            if step == Step::Normal && self.stopping() {
                return Err(cut(Cut::Stopped));
            }
            match self.attempt(step, call()).await {
                Err(e) if attempt < ATTEMPTS && is_transient(&e) && !self.stopping() => {
                    let wait = backoff(&e, attempt);
                    if Instant::now() + wait >= self.step_deadline(step) {
                        // No time for another try. Unanswered requests say the budget ran out;
                        // an answer (a 503, a 429) is the better reason to give.
                        return Err(match cut_of(&e) {
                            Some(_) => cut(Cut::OverBudget(self.total)),
                            None => e,
                        });
                    }
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        // No backoff sleeps once a signal came: give up with what we have.
                        () = self.stop.after_signal(Duration::ZERO) => return Err(e),
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::cluster::calls::code_of;
    use crate::shutdown::Reason;

    fn unavailable() -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code: 503,
            ..kube::core::Status::default()
        }))
    }

    #[test]
    fn requests_wait_half_the_budget_at_most_ten_seconds() {
        let b = |s| Budget::start(Duration::from_secs(s), Stop::default());
        assert_eq!(b(4).request_timeout(), Duration::from_secs(2));
        assert_eq!(b(20).request_timeout(), Duration::from_secs(10));
        assert_eq!(b(120).request_timeout(), Duration::from_secs(10));
        assert_eq!(b(4).restore_reserve(), Duration::from_secs(1));
        assert_eq!(b(120).restore_reserve(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_request_that_never_answers_ends_with_the_budget() {
        let budget = Budget::start(Duration::from_millis(1000), Stop::default());
        let tries = AtomicUsize::new(0);
        let started = Instant::now();
        let r: Result<(), _> = budget
            .retrying(Step::Normal, || {
                tries.fetch_add(1, Ordering::SeqCst);
                std::future::pending()
            })
            .await;
        let took = started.elapsed();
        assert_eq!(
            cut_of(&r.unwrap_err()),
            Some(Cut::OverBudget(Duration::from_millis(1000)))
        );
        assert!(
            took >= Duration::from_millis(1000) && took < Duration::from_secs(2),
            "{took:?}"
        );
        // Timed out at 500 ms, waited about 200 ms, tried again, cut by the budget at 1 s.
        assert_eq!(tries.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn after_a_signal_only_the_steps_that_give_a_secret_back_run_and_none_is_retried() {
        let stop = Stop::default();
        let budget = Budget::start(Duration::from_secs(20), stop.clone());
        stop.trigger(Reason::Signal);
        let tries = AtomicUsize::new(0);
        let call = || {
            tries.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(unavailable()) }
        };
        let r = budget.retrying(Step::Normal, call).await;
        assert_eq!(cut_of(&r.unwrap_err()), Some(Cut::Stopped));
        assert_eq!(tries.load(Ordering::SeqCst), 0, "nothing new starts");
        let started = Instant::now();
        let r = budget.retrying(Step::Replace, call).await;
        assert_eq!(code_of(&r.unwrap_err()), Some(503));
        assert_eq!(tries.load(Ordering::SeqCst), 1, "tried once, not retried");
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "no backoff sleep"
        );
        assert_eq!(budget.may_delete(), Err(Cut::Stopped));
    }

    #[tokio::test]
    async fn a_delete_needs_enough_budget_left_to_put_the_secret_back() {
        let budget = Budget::start(Duration::from_millis(400), Stop::default());
        assert_eq!(budget.may_delete(), Ok(()));
        tokio::time::sleep(Duration::from_millis(250)).await;
        // 150 ms left, 200 ms needed (twice the 100 ms restore reserve).
        assert_eq!(
            budget.may_delete(),
            Err(Cut::OverBudget(Duration::from_millis(400)))
        );
    }
}
