//! ecr-secret-refresher: keeps Kubernetes image-pull secrets for Amazon ECR fresh, and answers
//! the kubelet's image credential provider requests.
//!
//! Two halves and thin commands on top:
//! - [`aws`]: credentials (Roles Anywhere included), registry hostnames, ECR tokens. It knows
//!   nothing of Kubernetes and serves both ways of pulling.
//! - [`cluster`]: the Kubernetes side of the refresh mode: namespaces, the pull Secret,
//!   ServiceAccounts, Events, pruning.
//! - [`kubelet`]: the kubelet credential provider protocol, pure: request, identity choice,
//!   response and cache duration. It uses [`aws`] types, never [`cluster`].
//! - [`commands`]: `refresh`, `doctor` and `doctor --image`, `credential-process`,
//!   `kubelet-credential-provider`, each a short pipeline over the halves.
//!
//! [`config`] turns flags into typed settings for both halves; [`report`], [`logging`],
//! [`shutdown`], [`sensitive`] and [`errors`] are the small pieces every command shares.

pub mod aws;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod errors;
pub mod kubelet;
pub mod logging;
pub mod report;
pub mod sensitive;
pub mod shutdown;
pub mod watch;
