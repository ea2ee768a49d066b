//! Log output: human text or JSON lines, on stderr.
//!
//! Other crates are capped at `info` whatever `RUST_LOG` says: their debug and trace output can
//! include request and response bodies, and those carry tokens and passwords.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;

use crate::config::LogFormat;

const CAPPED: &[&str] = &[
    "aws_config",
    "aws_runtime",
    "aws_sdk_ecr",
    "aws_sdk_sts",
    "aws_sdk_sso",
    "aws_sdk_ssooidc",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_smithy_types",
    "aws_sigv4",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "tower",
    "tower_http",
    "kube",
    "kube_client",
];

/// Crates whose error lines repeat what our own namespace lines already say, better.
const SILENCED: &[&str] = &["tower_http", "kube_client"];

fn filter() -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for target in CAPPED {
        let level = if SILENCED.contains(target) {
            "off"
        } else {
            "warn"
        };
        if let Ok(d) = format!("{target}={level}").parse::<Directive>() {
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
