//! Log output: human text or JSON lines, on stderr.
//!
//! Other crates log at `warn` and above whatever `RUST_LOG` says: their debug and trace output
//! includes request and response bodies, and those carry tokens and passwords.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

use crate::config::LogFormat;

/// Crates whose error lines repeat what our own namespace lines already say, better.
const SILENCED: &[&str] = &["tower_http", "kube_client"];

/// Targets whose warnings repeat what our own errors say, better: aws-config warns about each
/// source it probes (the IMDS region probe's is a 600-character `Debug` dump), the profile
/// file loader about each file that is absent, and every failure they report reaches the user
/// through our error, which names the source or file and what to fix.
const ERRORS_ONLY: &[&str] = &["aws_config", "aws_runtime::env_config"];

/// Our own level comes from `RUST_LOG` when it is a plain level (`debug`); everything else is
/// fixed here, so no `RUST_LOG` directive, however specific its target, can raise another
/// crate above `warn`. A fixed table of targets (`Targets`, the most specific prefix wins)
/// rather than `EnvFilter`: no directive is ever parsed, and its parser and regex matchers
/// stay out of the binary.
fn filter(rust_log: Option<&str>) -> Targets {
    let ours = rust_log
        .and_then(|v| v.trim().parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let mut filter = Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("ecr_secret_refresher", ours);
    for target in SILENCED {
        filter = filter.with_target(*target, LevelFilter::OFF);
    }
    for target in ERRORS_ONLY {
        filter = filter.with_target(*target, LevelFilter::ERROR);
    }
    filter
}

pub fn init(format: LogFormat) {
    let registry =
        tracing_subscriber::registry().with(filter(std::env::var("RUST_LOG").ok().as_deref()));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => registry.with(layer.with_ansi(false)).init(),
        LogFormat::Json => registry
            .with(layer.json().flatten_event(true).with_current_span(false))
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(filter: &Targets, target: &str) -> Option<LevelFilter> {
        [
            LevelFilter::TRACE,
            LevelFilter::DEBUG,
            LevelFilter::INFO,
            LevelFilter::WARN,
            LevelFilter::ERROR,
        ]
        .into_iter()
        .find(|l| {
            l.into_level()
                .is_some_and(|l| filter.would_enable(target, &l))
        })
    }

    #[test]
    fn rust_log_sets_only_our_own_level() {
        let f = filter(Some("debug"));
        assert_eq!(
            level(&f, "ecr_secret_refresher::aws::ecr"),
            Some(LevelFilter::DEBUG)
        );
        assert_eq!(level(&f, "hyper_util::client"), Some(LevelFilter::WARN));
        assert_eq!(level(&f, "aws_config::imds"), Some(LevelFilter::ERROR));
        assert_eq!(
            level(&f, "aws_runtime::env_config::file"),
            Some(LevelFilter::ERROR)
        );
        assert_eq!(
            level(&f, "aws_runtime::user_agent"),
            Some(LevelFilter::WARN)
        );
        assert_eq!(level(&f, "kube_client::client"), None);
        // A directive with a target is not a plain level: ours stays at info, others at warn.
        let f = filter(Some("aws_smithy_runtime=trace,debug"));
        assert_eq!(level(&f, "ecr_secret_refresher"), Some(LevelFilter::INFO));
        assert_eq!(level(&f, "aws_smithy_runtime"), Some(LevelFilter::WARN));
        assert_eq!(
            level(&filter(None), "ecr_secret_refresher"),
            Some(LevelFilter::INFO)
        );
    }
}
