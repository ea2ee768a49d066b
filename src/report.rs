//! Per-namespace outcomes, the summary line, and the exit code.

use std::process::ExitCode;
use std::time::Duration;

use jiff::Timestamp;

use crate::secrets::{Action, WriteError};

/// What happened in one namespace.
#[derive(Debug)]
pub struct NamespaceResult {
    pub namespace: String,
    pub result: Result<Action, WriteError>,
    pub elapsed: Duration,
}

/// How a run ended, as the exit code tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every namespace was refreshed (exit 0).
    Refreshed,
    /// Some namespaces failed (exit 1).
    SomeFailed,
    /// Nothing could be done: configuration, credentials, tokens or the cluster connection (exit 2).
    NothingDone,
}

impl RunStatus {
    pub fn exit_code(self) -> ExitCode {
        match self {
            RunStatus::Refreshed => ExitCode::SUCCESS,
            RunStatus::SomeFailed => ExitCode::from(1),
            RunStatus::NothingDone => ExitCode::from(2),
        }
    }
}

/// Counts for the summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub refreshed: usize,
    pub failed: usize,
    /// Namespaces that had a Secret before the run and have none now.
    pub lost: usize,
}

impl Summary {
    pub fn of(results: &[NamespaceResult]) -> Summary {
        let mut s = Summary::default();
        for r in results {
            match &r.result {
                Ok(_) => s.refreshed += 1,
                Err(e) => {
                    s.failed += 1;
                    if e.lost_secret() {
                        s.lost += 1;
                    }
                }
            }
        }
        s
    }

    pub fn status(&self) -> RunStatus {
        if self.failed == 0 {
            RunStatus::Refreshed
        } else {
            RunStatus::SomeFailed
        }
    }
}

/// Logs one namespace's line as soon as it is known.
pub fn log_result(r: &NamespaceResult, secret: &str) {
    let ms = r.elapsed.as_millis() as u64;
    match &r.result {
        Ok(action) => tracing::info!(
            namespace = %r.namespace, secret, outcome = action.as_str(), duration_ms = ms,
            "refreshed"
        ),
        Err(e) if e.lost_secret() => tracing::error!(
            namespace = %r.namespace, secret, outcome = "lost", duration_ms = ms, error = %e,
            "FAILED AND LEFT WITHOUT SECRET"
        ),
        Err(e) => tracing::error!(
            namespace = %r.namespace, secret, outcome = "failed", duration_ms = ms, error = %e,
            "failed"
        ),
    }
}

/// Logs the summary: counts, and when the written passwords expire.
pub fn log_summary(s: &Summary, expires_at: Option<Timestamp>, elapsed: Duration) {
    let expires = expires_at
        .map(|t| t.to_string())
        .unwrap_or_else(|| "unknown".into());
    let ms = elapsed.as_millis() as u64;
    if s.lost > 0 {
        tracing::error!(
            refreshed = s.refreshed, failed = s.failed, lost = s.lost, expires_at = %expires, duration_ms = ms,
            "summary: {} namespace(s) are now WITHOUT their pull secret; see the lines above",
            s.lost
        );
    } else if s.failed > 0 {
        tracing::warn!(
            refreshed = s.refreshed, failed = s.failed, expires_at = %expires, duration_ms = ms,
            "summary: {} refreshed, {} failed", s.refreshed, s.failed
        );
    } else {
        tracing::info!(
            refreshed = s.refreshed, failed = 0, expires_at = %expires, duration_ms = ms,
            "summary: {} refreshed; passwords expire at {expires}", s.refreshed
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(result: Result<Action, WriteError>) -> NamespaceResult {
        NamespaceResult {
            namespace: "n".into(),
            result,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn counts_and_status() {
        let all_ok = [r(Ok(Action::Created)), r(Ok(Action::Updated))];
        assert_eq!(Summary::of(&all_ok).status(), RunStatus::Refreshed);
        let mixed = [
            r(Ok(Action::Updated)),
            r(Err(WriteError::NoNamespace)),
            r(Err(WriteError::LeftWithoutSecret {
                create: "c".into(),
                restore: "r".into(),
            })),
        ];
        let s = Summary::of(&mixed);
        assert_eq!(
            s,
            Summary {
                refreshed: 1,
                failed: 2,
                lost: 1
            }
        );
        assert_eq!(s.status(), RunStatus::SomeFailed);
    }
}
