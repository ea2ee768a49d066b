//! The metrics of the `watch` mode, with the names the manifests' alerts use. Encoded by the
//! Prometheus project's own crate in the text format 0.0.4; no label or value ever holds a
//! secret (registry hostnames, outcome and error kinds only).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use jiff::Timestamp;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::report::Summary;

/// The `Content-Type` of /metrics.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;
type TimeGauge = Gauge<f64, AtomicU64>;

/// What failed, for `ecr_refresher_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Credentials or tokens could not be had.
    Aws,
    /// The API server failed the namespace watch, a listing or the Lease.
    ApiServer,
    /// One namespace could not be written or pruned.
    Namespace,
}

impl ErrorKind {
    fn label(self) -> &'static str {
        match self {
            ErrorKind::Aws => "aws",
            ErrorKind::ApiServer => "apiserver",
            ErrorKind::Namespace => "namespace",
        }
    }
}

/// The registry and a handle on each metric.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    last_success: TimeGauge,
    token_expiry: Family<Labels, TimeGauge>,
    namespaces: Family<Labels, Gauge>,
    duration: Histogram,
    errors: Family<Labels, Counter>,
    watch_restarts: Counter,
    leader: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let last_success = TimeGauge::default();
        registry.register(
            "ecr_refresher_last_success_timestamp_seconds",
            "Unix time of the last full refresh in which every namespace was refreshed",
            last_success.clone(),
        );
        let token_expiry = Family::<Labels, TimeGauge>::default();
        registry.register(
            "ecr_refresher_token_expiry_timestamp_seconds",
            "Unix time at which the token held for each registry expires",
            token_expiry.clone(),
        );
        let namespaces = Family::<Labels, Gauge>::default();
        registry.register(
            "ecr_refresher_namespaces",
            "Namespaces by outcome in the last full refresh",
            namespaces.clone(),
        );
        // From 50 ms to about 7 minutes: one namespace to ten thousand.
        let duration = Histogram::new([
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
        ]);
        registry.register(
            "ecr_refresher_refresh_duration_seconds",
            "Duration of full refreshes",
            duration.clone(),
        );
        let errors = Family::<Labels, Counter>::default();
        registry.register(
            "ecr_refresher_errors",
            "Failures by kind: aws (credentials, tokens), apiserver (watch, listing, Lease), namespace (one namespace's write or prune)",
            errors.clone(),
        );
        let watch_restarts = Counter::default();
        registry.register(
            "ecr_refresher_watch_restarts",
            "Namespace watch restarts after the first, after a failure or a 410 Gone (relist); not the routine resume after the watch's timeout",
            watch_restarts.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "ecr_refresher_leader",
            "1 while this replica holds the leader Lease (or runs without leader election), else 0",
            leader.clone(),
        );
        // Present from the start, so that a dashboard sees 0 rather than nothing.
        for kind in [ErrorKind::Aws, ErrorKind::ApiServer, ErrorKind::Namespace] {
            let _ = errors.get_or_create(&vec![("kind", kind.label().to_string())]);
        }
        Metrics {
            registry: Arc::new(registry),
            last_success,
            token_expiry,
            namespaces,
            duration,
            errors,
            watch_restarts,
            leader,
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors
            .get_or_create(&vec![("kind", kind.label().to_string())])
            .inc();
    }

    pub fn watch_restarted(&self) {
        self.watch_restarts.inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The tokens now held: each registry host with its token's expiry.
    pub fn tokens(&self, expiries: &[(String, Option<Timestamp>)]) {
        self.token_expiry.clear();
        for (host, expires) in expiries {
            if let Some(t) = expires {
                self.token_expiry
                    .get_or_create(&vec![("registry", host.clone())])
                    .set(seconds(*t));
            }
        }
    }

    /// Every namespace now has the Secret (the ones that failed were tried again), at `now`.
    pub fn succeeded(&self, now: Timestamp) {
        self.last_success.set(seconds(now));
    }

    /// A full refresh ended with `summary` after `elapsed` seconds, at `now`.
    pub fn refreshed(&self, summary: &Summary, elapsed: f64, now: Timestamp) {
        self.duration.observe(elapsed);
        for (outcome, n) in [
            ("refreshed", summary.refreshed),
            ("failed", summary.failed),
            ("skipped", summary.skipped),
            ("not_started", summary.not_started),
            ("lost", summary.lost),
            ("prune_failed", summary.prune_failed),
        ] {
            self.namespaces
                .get_or_create(&vec![("outcome", outcome.to_string())])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for _ in 0..summary.failed + summary.prune_failed {
            self.error(ErrorKind::Namespace);
        }
        if summary.status() == crate::report::RunStatus::Refreshed {
            self.last_success.set(seconds(now));
        }
    }
}

fn seconds(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_the_contract_names() {
        let m = Metrics::new();
        m.set_leader(true);
        m.tokens(&[(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com".into(),
            Some(Timestamp::from_second(1_800_000_000).unwrap()),
        )]);
        let summary = Summary {
            refreshed: 3,
            skipped: 1,
            ..Summary::default()
        };
        m.refreshed(
            &summary,
            0.2,
            Timestamp::from_second(1_799_956_800).unwrap(),
        );
        m.error(ErrorKind::Aws);
        m.watch_restarted();
        let text = m.encode();
        for line in [
            "# TYPE ecr_refresher_last_success_timestamp_seconds gauge",
            "ecr_refresher_last_success_timestamp_seconds 1799956800.0",
            "ecr_refresher_token_expiry_timestamp_seconds{registry=\"123456789012.dkr.ecr.us-east-1.amazonaws.com\"} 1800000000.0",
            "ecr_refresher_namespaces{outcome=\"refreshed\"} 3",
            "ecr_refresher_namespaces{outcome=\"skipped\"} 1",
            "ecr_refresher_namespaces{outcome=\"failed\"} 0",
            "# TYPE ecr_refresher_refresh_duration_seconds histogram",
            "ecr_refresher_refresh_duration_seconds_count 1",
            "# TYPE ecr_refresher_errors_total counter",
            "ecr_refresher_errors_total{kind=\"aws\"} 1",
            "ecr_refresher_errors_total{kind=\"apiserver\"} 0",
            "ecr_refresher_watch_restarts_total 1",
            "ecr_refresher_leader 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(!text.contains("# EOF"), "0.0.4, not OpenMetrics");
        assert!(CONTENT_TYPE.starts_with("text/plain; version=0.0.4"));
    }

    #[test]
    fn a_refresh_with_failures_is_not_a_success() {
        let m = Metrics::new();
        let summary = Summary {
            refreshed: 1,
            failed: 2,
            ..Summary::default()
        };
        m.refreshed(
            &summary,
            1.0,
            Timestamp::from_second(1_799_956_800).unwrap(),
        );
        let text = m.encode();
        assert!(
            text.contains("ecr_refresher_last_success_timestamp_seconds 0"),
            "{text}"
        );
        assert!(
            text.contains("ecr_refresher_errors_total{kind=\"namespace\"} 2"),
            "{text}"
        );
    }
}
