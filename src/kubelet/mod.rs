//! The kubelet's image credential provider protocol, as pure functions: reading a
//! `CredentialProviderRequest`, choosing whose identity pulls, and writing the
//! `CredentialProviderResponse` with a cache duration the kubelet can trust.
//!
//! No I/O and nothing from the cluster side: `commands::kubelet_credential_provider` reads
//! stdin, asks [`crate::aws`] for the token and prints what this module renders.

pub mod cache;
pub mod identity;
pub mod protocol;
pub mod provider_config;
pub mod yaml;
