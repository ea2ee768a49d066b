//! Per-namespace outcomes, the summary line, and the exit code.

use std::process::ExitCode;
use std::time::Duration;

use jiff::Timestamp;

use crate::cluster::secrets::{Action, WriteError};
use crate::shutdown;

/// What happened in one namespace.
#[derive(Debug)]
pub enum Outcome {
    Refreshed {
        action: Action,
        notes: Vec<String>,
    },
    /// Passed over on purpose (terminating, gone since it was listed).
    Skipped(String),
    Failed(WriteError),
    /// Not attempted: the run was stopped first.
    NotStarted(shutdown::Reason),
}

#[derive(Debug)]
pub struct NamespaceResult {
    pub namespace: String,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// How a run ended, as the exit code tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every namespace was refreshed (exit 0).
    Refreshed,
    /// Some namespaces failed (exit 1).
    SomeFailed,
    /// Nothing was done, and running again will not help until something is fixed:
    /// configuration, credentials, permissions (exit 2). The shipped Jobs fail at once on it.
    NothingDone,
    /// Nothing was done, but a later run may pass without any change: AWS or the API server did
    /// not answer, throttled, or failed on its side (exit 3). The shipped Jobs retry it.
    Unavailable,
}

impl RunStatus {
    pub fn exit_code(self) -> ExitCode {
        match self {
            RunStatus::Refreshed => ExitCode::SUCCESS,
            RunStatus::SomeFailed => ExitCode::from(1),
            RunStatus::NothingDone => ExitCode::from(2),
            RunStatus::Unavailable => ExitCode::from(3),
        }
    }
}

/// Counts for the summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub refreshed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub not_started: usize,
    /// Namespaces that had a Secret before the run and have none now.
    pub lost: usize,
    /// Namespaces where pruning failed.
    pub prune_failed: usize,
}

impl Summary {
    pub fn of(results: &[NamespaceResult]) -> Summary {
        let mut s = Summary::default();
        for r in results {
            s.count(&r.outcome);
        }
        s
    }

    /// Counts one namespace's outcome.
    pub fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Refreshed { .. } => self.refreshed += 1,
            Outcome::Skipped(_) => self.skipped += 1,
            Outcome::NotStarted(_) => self.not_started += 1,
            Outcome::Failed(e) => {
                self.failed += 1;
                if e.lost_secret() {
                    self.lost += 1;
                }
            }
        }
    }

    pub fn status(&self) -> RunStatus {
        if self.failed + self.not_started + self.prune_failed == 0 {
            RunStatus::Refreshed
        } else {
            RunStatus::SomeFailed
        }
    }
}

/// Logs one namespace's line as soon as it is known.
pub fn log_result(r: &NamespaceResult, secret: &str, registries: &str) {
    let ms = r.elapsed.as_millis() as u64;
    let ns = r.namespace.as_str();
    match &r.outcome {
        Outcome::Refreshed { action, notes } if notes.is_empty() => tracing::info!(
            namespace = %ns, secret = %secret, registries = %registries, outcome = %action.as_str(), duration_ms = ms, "refreshed"
        ),
        Outcome::Refreshed { action, notes } => tracing::info!(
            namespace = %ns, secret = %secret, registries = %registries, outcome = %action.as_str(), duration_ms = ms,
            notes = %notes.join("; "), "refreshed"
        ),
        Outcome::Skipped(why) => tracing::info!(
            namespace = %ns, secret = %secret, outcome = %"skipped", duration_ms = ms, reason = %why, "skipped"
        ),
        Outcome::NotStarted(reason) => tracing::warn!(
            namespace = %ns, secret = %secret, outcome = %"not-started", reason = %reason.as_str(), "not refreshed"
        ),
        Outcome::Failed(e) if e.lost_secret() => tracing::error!(
            namespace = %ns, secret = %secret, registries = %registries, outcome = %"lost", duration_ms = ms, error = %e,
            "FAILED AND LEFT WITHOUT SECRET"
        ),
        Outcome::Failed(e) => tracing::error!(
            namespace = %ns, secret = %secret, registries = %registries, outcome = %"failed", duration_ms = ms, error = %e, "failed"
        ),
    }
}

/// Logs the summary: counts, and the earliest expiry among the written passwords.
pub fn log_summary(s: &Summary, expires_at: Option<Timestamp>, elapsed: Duration) {
    let expires = expires_at
        .map(|t| t.to_string())
        .unwrap_or_else(|| "unknown".into());
    let ms = elapsed.as_millis() as u64;
    let counts = format!(
        "{} refreshed, {} failed, {} skipped, {} not started",
        s.refreshed, s.failed, s.skipped, s.not_started
    );
    if s.lost > 0 {
        tracing::error!(
            refreshed = s.refreshed, failed = s.failed, skipped = s.skipped, not_started = s.not_started,
            lost = s.lost, expires_at = %expires, duration_ms = ms,
            "summary: {counts}; {} namespace(s) are now WITHOUT their pull secret, see the lines above",
            s.lost
        );
    } else if s.status() != RunStatus::Refreshed {
        tracing::warn!(
            refreshed = s.refreshed, failed = s.failed, skipped = s.skipped, not_started = s.not_started,
            prune_failed = s.prune_failed, expires_at = %expires, duration_ms = ms,
            "summary: {counts}; earliest expiry {expires}"
        );
    } else {
        tracing::info!(
            refreshed = s.refreshed, failed = 0, skipped = s.skipped, not_started = 0,
            expires_at = %expires, duration_ms = ms,
            "summary: {counts}; earliest expiry {expires}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(outcome: Outcome) -> NamespaceResult {
        NamespaceResult {
            namespace: "n".into(),
            outcome,
            elapsed: Duration::ZERO,
        }
    }

    fn ok() -> Outcome {
        Outcome::Refreshed {
            action: Action::Updated,
            notes: vec![],
        }
    }

    #[test]
    fn counts_and_status() {
        let all_ok = [r(ok()), r(Outcome::Skipped("terminating".into()))];
        assert_eq!(Summary::of(&all_ok).status(), RunStatus::Refreshed);
        let mixed = [
            r(ok()),
            r(Outcome::Failed(WriteError::NoNamespace)),
            r(Outcome::Failed(WriteError::LeftWithoutSecret {
                create: "c".into(),
                restore: "r".into(),
            })),
            r(Outcome::NotStarted(shutdown::Reason::Signal)),
        ];
        let s = Summary::of(&mixed);
        assert_eq!((s.refreshed, s.failed, s.lost, s.not_started), (1, 2, 1, 1));
        assert_eq!(s.status(), RunStatus::SomeFailed);
        let stopped = [r(ok()), r(Outcome::NotStarted(shutdown::Reason::Deadline))];
        assert_eq!(Summary::of(&stopped).status(), RunStatus::SomeFailed);
    }
}
