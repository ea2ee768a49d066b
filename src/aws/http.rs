//! The one HTTP client for every AWS call: STS, ECR, the credential sources, and IAM Roles
//! Anywhere CreateSession, with the retry and timeout settings they share.
//!
//! rustls with ring, like the kube client, and the proxy rules of the environment
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY` and their lower-case twins), read the
//! way the SDK's own default client reads them. Clusters outside AWS, where Roles Anywhere is
//! used, usually reach AWS only through an egress proxy. The CA certificates are the process's
//! own (see [`crate::aws::trust`]), read once, not the SDK's copy of the platform's.

use std::time::Duration;

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{Connector, tls};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

/// The SDK's standard retries (jittered exponential backoff on throttling, server and
/// connection errors), with four attempts in all.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(4)
}

/// Short enough that an unreachable endpoint fails a run within a minute, long enough for a
/// slow proxy.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(20))
        .operation_timeout(Duration::from_secs(60))
        .build()
}

/// The client. Connectors are built per timeout setting (the SDK asks with its own settings)
/// and reused, so connections are pooled across calls. Wrapped so that a deadline can name the
/// endpoint that did not answer ([`crate::aws::in_flight`]).
pub fn client() -> SharedHttpClient {
    crate::aws::in_flight::track(untracked())
}

fn untracked() -> SharedHttpClient {
    // `build_with_connector_fn` is how the SDK builds its own default client with a proxy
    // configuration; `Builder::build_https` has no way to set one.
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        // With neither, this is the SDK's warm-up call when a client is validated
        // (aws-smithy-http-client's `validate_base_client_config`), made only to load the
        // platform's certificates early; it drops the connector. Our roots load once anyway,
        // and handing them over here cost a PEM decode of the whole bundle per client (two
        // more on every start of the kubelet plugin). Real connectors always come with both.
        let warm_up = settings.is_none() && components.is_none();
        let mut builder = Connector::builder()
            .proxy_config(ProxyConfig::from_env())
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .tls_context(tls_context(warm_up));
        builder.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            builder.set_sleep_impl(components.sleep_impl());
        }
        builder.build()
    })
}

/// Trust exactly the process's roots (none for the warm-up connector, which is never used).
/// The SDK's default would read the platform's store again, the bundle and then every file of
/// /etc/ssl/certs.
fn tls_context(empty: bool) -> tls::TlsContext {
    let mut store = tls::TrustStore::empty().with_native_roots(false);
    if !empty {
        store = store.with_pem_certificate(crate::aws::trust::roots().pem.clone());
    }
    tls::TlsContext::builder()
        .with_trust_store(store)
        .build()
        .unwrap_or_default()
}

/// A non-empty environment variable.
pub fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The proxy that HTTPS to `host` goes through under the usual environment rules, as
/// `HOST[:PORT]` (never its user or password): `HTTPS_PROXY`, else `ALL_PROXY` (upper case
/// first, then lower), unless `NO_PROXY` excludes the host. `env` reads a variable.
pub fn proxy_for(host: &str, env: impl Fn(&str) -> Option<String>) -> Option<String> {
    proxy_url_for(host, env).map(|url| proxy_address(&url))
}

/// The same choice as [`proxy_for`], as the whole proxy URL (credentials included, for a client
/// to use; never for a message).
pub fn proxy_url_for(host: &str, env: impl Fn(&str) -> Option<String>) -> Option<String> {
    let first = |names: &[&str]| names.iter().find_map(|n| env(n));
    let proxy = first(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])?;
    let excluded = first(&["NO_PROXY", "no_proxy"])
        .is_some_and(|rules| rules.split([',', ' ']).any(|r| no_proxy_matches(r, host)));
    (!excluded).then_some(proxy)
}

/// One `NO_PROXY` entry against a host: `*` matches all; `name` and `.name` (or `*.name`)
/// match the name and its subdomains; an IP address matches itself and a CIDR block
/// (`10.0.0.0/8`) the addresses in it; an entry with a port matches port 443 only.
fn no_proxy_matches(rule: &str, host: &str) -> bool {
    let rule = rule.trim();
    if rule == "*" {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return ip_matches(rule, ip);
    }
    let rule = match rule.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.parse::<u16>().is_ok() => {
            if port != "443" {
                return false;
            }
            name
        }
        _ => rule,
    };
    let rule = rule.trim_start_matches('*').trim_start_matches('.');
    if rule.is_empty() {
        return false;
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let rule = rule.trim_end_matches('.').to_ascii_lowercase();
    host == rule || host.ends_with(&format!(".{rule}"))
}

/// `HOST[:PORT]` of a proxy URL: no scheme, no path, and no `user:password@`.
fn proxy_address(url: &str) -> String {
    let rest = url.trim().split_once("://").map_or(url.trim(), |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_string()
}

/// An IP or CIDR `NO_PROXY` entry against an address.
fn ip_matches(rule: &str, ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let (net, bits) = match rule.split_once('/') {
        Some((net, bits)) => match bits.parse::<u32>() {
            Ok(b) => (net, Some(b)),
            Err(_) => return false,
        },
        None => (rule, None),
    };
    let Ok(net) = net
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return false;
    };
    let prefix = |a: u128, b: u128, width: u32, bits: u32| {
        bits <= width && (bits == 0 || (a ^ b) >> (width - bits) == 0)
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => prefix(
            u128::from(u32::from(n)),
            u128::from(u32::from(i)),
            32,
            bits.unwrap_or(32),
        ),
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            prefix(u128::from(n), u128::from(i), 128, bits.unwrap_or(128))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn no_proxy_takes_addresses_and_cidr_blocks_for_ip_hosts() {
        let proxy = "http://u:p@proxy:3128";
        for (rules, host, proxied) in [
            ("10.0.0.0/8", "10.1.2.3", false),
            ("10.0.0.0/8", "11.1.2.3", true),
            ("10.1.2.3", "10.1.2.3", false),
            ("10.1.2.3", "10.1.2.4", true),
            ("fd00::/8", "[fd00::1]", false),
            ("fd00::/8", "fe80::1", true),
            ("example.com,10.0.0.0/8", "api.example.com", false),
            ("10.0.0.0/8", "api.example.com", true),
            ("0.0.0.0/0", "192.168.1.1", false),
        ] {
            let e = |name: &str| match name {
                "HTTPS_PROXY" => Some(proxy.to_string()),
                "NO_PROXY" => Some(rules.to_string()),
                _ => None,
            };
            assert_eq!(
                proxy_url_for(host, e).is_some(),
                proxied,
                "{rules} for {host}"
            );
        }
        assert_eq!(
            proxy_url_for("h", env(&[("https_proxy", "http://u:p@proxy:3128")])).as_deref(),
            Some("http://u:p@proxy:3128")
        );
    }
}
