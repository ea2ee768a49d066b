//! The Kubernetes side of the refresh mode: the client, namespace selection, writing the pull
//! Secret, ServiceAccounts, Events and pruning. It takes the tokens as given.

pub mod budget;
pub mod calls;
pub mod client;
pub mod dockerconfig;
pub mod events;
pub mod gate;
pub mod labels;
pub mod names;
pub mod namespaces;
pub mod ownership;
pub mod prune;
pub mod pull_secret;
pub mod secrets;
pub mod service_accounts;
