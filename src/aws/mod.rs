//! The AWS side: where credentials come from (the SDK's chain or IAM Roles Anywhere), which
//! registries a hostname names, and the ECR tokens for them. Nothing here knows Kubernetes, so
//! the refresh mode and any other consumer of tokens share it.

pub mod credentials;
pub mod ecr;
pub mod ecr_public;
pub mod failure;
pub mod http;
pub mod image;
pub mod in_flight;
pub mod profile;
pub mod registry;
pub mod registry_api;
pub mod repository;
pub mod roles_anywhere;
pub mod settings;
pub mod transient;
pub mod trust;
pub mod web_identity;
