//! The subcommands, each a short pipeline over [`crate::aws`] and [`crate::cluster`].

pub mod credential_process;
pub mod doctor;
pub mod kubelet_credential_provider;
pub mod refresh;
