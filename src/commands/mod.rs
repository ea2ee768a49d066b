//! The subcommands, each a short pipeline over [`crate::aws`] and [`crate::cluster`].

pub mod checks;
pub mod credential_process;
pub mod doctor;
pub mod doctor_image;
pub mod kubelet_credential_provider;
pub mod refresh;
pub mod watch;
