//! Log output: human text or JSON lines, on stderr.
//!
//! Other crates log at `warn` and above whatever `RUST_LOG` says: their debug and trace output
//! includes request and response bodies, and those carry tokens and passwords.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;

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
/// crate above `warn`.
fn filter() -> EnvFilter {
    let ours = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.trim().parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let mut filter = EnvFilter::new(format!("warn,ecr_secret_refresher={ours}"));
    for target in SILENCED {
        if let Ok(d) = format!("{target}=off").parse::<Directive>() {
            filter = filter.add_directive(d);
        }
    }
    for target in ERRORS_ONLY {
        if let Ok(d) = format!("{target}=error").parse::<Directive>() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}
