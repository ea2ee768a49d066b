//! The pieces of the long-running `watch` mode, each with one job; the command that puts them
//! together is [`crate::commands::watch`].
//!
//! - [`schedule`]: when the next full refresh runs (pure).
//! - [`namespace_watch`]: a metadata-only list and watch of namespaces that resumes from the
//!   last resourceVersion and lists again on 410 Gone, as client-go's reflector does.
//! - [`lease`]: leader election with a coordination.k8s.io Lease; it opens and closes the
//!   client's [write gate](crate::cluster::gate).
//! - [`react`]: what a namespace change asks the leader to do (pure).
//! - [`health`] and [`metrics`]: what /readyz and /metrics report; [`server`] serves them.

pub mod health;
pub mod lease;
pub mod metrics;
pub mod namespace_watch;
pub mod react;
pub mod schedule;
pub mod server;
