//! ecr-secret-refresher: keeps Kubernetes image-pull secrets for Amazon ECR fresh.
//!
//! One run is one pass of a pipeline, one module per stage:
//! [`config`] → [`credentials`] → [`ecr`] (per [`registry`] scope) → [`dockerconfig`] →
//! [`secrets`] (per namespace, through [`cluster`]) → [`report`]. [`refresh`] runs the stages.

pub mod cluster;
pub mod config;
pub mod credential_process;
pub mod credentials;
pub mod dockerconfig;
pub mod doctor;
pub mod ecr;
pub mod errors;
pub mod events;
pub mod kube_calls;
pub mod labels;
pub mod logging;
pub mod namespaces;
pub mod prune;
pub mod refresh;
pub mod registry;
pub mod report;
pub mod roles_anywhere;
pub mod secrets;
pub mod sensitive;
pub mod service_accounts;
pub mod shutdown;
