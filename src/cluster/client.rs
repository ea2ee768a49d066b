//! The Kubernetes client: from `--kubeconfig`/`--context`, KUBECONFIG, ~/.kube/config, or the
//! in-cluster service account.

use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::config::KubeTarget;
use crate::errors;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read kubeconfig {path}: {message}. Check the path given to --kubeconfig")]
    Kubeconfig { path: String, message: String },
    #[error(
        "no Kubernetes configuration: {0}. Set KUBECONFIG or --kubeconfig, or run inside a cluster"
    )]
    Infer(String),
    #[error("cannot use the Kubernetes configuration: {0}")]
    Client(String),
}

/// A client for the cluster `target` names.
pub async fn connect(target: &KubeTarget) -> Result<Client, ClusterError> {
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..KubeConfigOptions::default()
    };
    let mut config = match (&target.kubeconfig, &target.context) {
        (Some(path), _) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| ClusterError::Kubeconfig {
                path: path.display().to_string(),
                message: errors::chain(&e),
            })?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| ClusterError::Kubeconfig {
                    path: path.display().to_string(),
                    message: errors::chain(&e),
                })?
        }
        (None, Some(_)) => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| ClusterError::Infer(errors::chain(&e)))?,
        (None, None) => Config::infer()
            .await
            .map_err(|e| ClusterError::Infer(errors::chain(&e)))?,
    };
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(30));
    config.write_timeout = Some(Duration::from_secs(30));
    Client::try_from(config).map_err(|e| ClusterError::Client(errors::chain(&e)))
}
