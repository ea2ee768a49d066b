//! The registry endpoint step (`GET /v2/` with the fresh token) and the try of the Secret's own
//! password there, with the network fixes for each way it fails.

use crate::aws::ecr::RegistryAuth;
use crate::aws::registry::Registry;
use crate::aws::registry_api::{self, V2Outcome};
use crate::cluster::pull_secret::REFRESH_NOW;
use crate::sensitive::Sensitive;

use super::*;

const NETWORK_FIX: &str = "no network path from here to the registry on port 443: check the \
route table (a NAT gateway for private subnets, an internet gateway for public ones), that \
security groups and network ACLs allow outbound 443, or add VPC endpoints: interface endpoints \
com.amazonaws.REGION.ecr.api and com.amazonaws.REGION.ecr.dkr (private DNS on, their security \
group allowing 443 from the nodes) and the gateway endpoint com.amazonaws.REGION.s3, which \
serves the layers";

/// Step 5: `GET /v2/` on the registry endpoint with the token.
pub(super) async fn endpoint_row(
    registry: &Registry,
    connect_to: Option<&str>,
    auth: &RegistryAuth,
) -> Row {
    const NAME: &str = REGISTRY_ENDPOINT;
    let url = format!("https://{}/v2/", registry.host);
    let via = |addrs: &[std::net::SocketAddr]| {
        addrs
            .first()
            .map(|a| format!(" (at {a})"))
            .unwrap_or_default()
    };
    let network = NETWORK_FIX.replace("REGION", &registry.region);
    match registry_api::check(
        &registry.host,
        connect_to,
        &auth.username,
        &auth.password,
        V2_TIMEOUT,
    )
    .await
    {
        V2Outcome::Accepted { addrs } => ok(
            NAME,
            format!("GET {url} answered 200 with the token{}", via(&addrs)),
        ),
        V2Outcome::TokenRefused { status, addrs } => bad(
            Status::Fail,
            NAME,
            Some(&format!("HTTP {status}")),
            format!(
                "GET {url}{} answered {status}: the registry did not accept the token",
                via(&addrs)
            ),
            format!(
                "check the clock of this machine, that no proxy strips the Authorization header, and that the token comes from {} ({}); a token only works in the region and partition that issued it",
                registry.region,
                partition(&registry.region)
            ),
        ),
        V2Outcome::Unexpected { status, addrs } => bad(
            Status::Fail,
            NAME,
            Some(&format!("HTTP {status}")),
            format!("GET {url}{} answered {status}, not 200 or 401", via(&addrs)),
            "something between here and ECR answers instead of it (a proxy or captive portal?): check --registry-address and the proxy settings",
        ),
        V2Outcome::Dns { name, message } => bad(
            Status::Fail,
            NAME,
            Some("DNS"),
            format!("cannot resolve {name}: {message}"),
            format!(
                "check this machine's DNS resolver; in a VPC without internet access, create the interface endpoints com.amazonaws.{r}.ecr.dkr and com.amazonaws.{r}.ecr.api with private DNS on (that makes the name resolve to them), and the gateway endpoint com.amazonaws.{r}.s3 for the layers",
                r = registry.region
            ),
        ),
        V2Outcome::Timeout { stage, addrs } => bad(
            Status::Fail,
            NAME,
            Some("timeout"),
            format!(
                "no answer from {url}{} within {} s, waiting for {stage}",
                via(&addrs),
                V2_TIMEOUT.as_secs()
            ),
            network,
        ),
        V2Outcome::Unreachable { addrs, message } => bad(
            Status::Fail,
            NAME,
            Some("unreachable"),
            format!("cannot connect to {url}{}: {message}", via(&addrs)),
            network,
        ),
        V2Outcome::Tls { message } => bad(
            Status::Fail,
            NAME,
            Some("TLS"),
            format!("TLS with {} failed: {message}", registry.host),
            "a proxy or firewall intercepting TLS? trust its CA with SSL_CERT_FILE; with --registry-address, check it points at the registry or its VPC endpoint",
        ),
        V2Outcome::BadAddress(a) => bad(
            Status::Fail,
            NAME,
            None,
            format!("--registry-address '{a}' is not HOST:PORT"),
            "pass --registry-address as HOST:PORT, e.g. 10.0.1.23:443",
        ),
        V2Outcome::ViaProxy { proxy } => bad(
            Status::Unknown,
            NAME,
            None,
            format!("GET {url} goes through the proxy at {proxy}; not checked"),
            format!(
                "a direct connection would not test the proxy's path: check that the proxy allows CONNECT to {}:443, or pass --registry-address (the registry's or its VPC endpoint's address) to check a direct path",
                registry.host
            ),
        ),
    }
}

/// Tries the Secret's password on the registry, as the kubelet will.
pub(super) async fn password_row(
    name: String,
    detail: String,
    host: &str,
    connect_to: Option<&str>,
    user: &str,
    password: &Sensitive,
) -> Row {
    match registry_api::check(host, connect_to, user, password, V2_TIMEOUT).await {
        V2Outcome::Accepted { .. } => {
            ok(name, format!("{detail}; the registry accepts its password"))
        }
        V2Outcome::TokenRefused { status, .. } => bad(
            Status::Fail,
            name,
            Some(&format!("HTTP {status}")),
            format!("{detail}, but the registry refuses its password (HTTP {status})"),
            format!("the password is stale or was edited: run a refresh now ({REFRESH_NOW})"),
        ),
        // The endpoint answered the fresh token moments ago: a passing failure, not a verdict.
        _ => ok(
            name,
            format!("{detail}; its password could not be tried (no answer this time)"),
        ),
    }
}
