//! The Kubernetes client: from `--kubeconfig`/`--context`, KUBECONFIG, ~/.kube/config, or the
//! in-cluster service account; and the connection check a refresh makes before it writes.

use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cluster::calls::{code_of, describe, retrying};
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
    #[error(
        "cannot reach the Kubernetes API server at {url}: {message}. Check that it is up and reachable from here, and that the kubeconfig (--kubeconfig, --context) names the right cluster"
    )]
    Unreachable { url: String, message: String },
    #[error(
        "the Kubernetes API server at {url} refused our credentials: {message}. Check the kubeconfig's user (--kubeconfig, --context), or the ServiceAccount token when running in a cluster"
    )]
    Unauthorized { url: String, message: String },
}

/// How long the connection check waits for the API server, all tries included.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for the cluster `target` names.
pub async fn connect(target: &KubeTarget) -> Result<Client, ClusterError> {
    let config = load(target).await?;
    Client::try_from(config).map_err(|e| ClusterError::Client(errors::chain(&e)))
}

/// A client for the cluster `target` names, once the API server has answered `GET /version`
/// (which every client may call, authenticated or not) within [`PROBE_TIMEOUT`]. A run that
/// will write checks this once, so that an unreachable or hung server fails the run before any
/// namespace is tried.
pub async fn connect_checked(target: &KubeTarget) -> Result<Client, ClusterError> {
    let config = load(target).await?;
    let url = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let client = Client::try_from(config).map_err(|e| ClusterError::Client(errors::chain(&e)))?;
    probe(&client, &url).await?;
    Ok(client)
}

async fn probe(client: &Client, url: &str) -> Result<(), ClusterError> {
    let answered =
        tokio::time::timeout(PROBE_TIMEOUT, retrying(|| client.apiserver_version())).await;
    let unreachable = |message: String| ClusterError::Unreachable {
        url: url.to_string(),
        message,
    };
    match answered {
        Ok(Ok(_)) => Ok(()),
        Err(_) => Err(unreachable(format!(
            "no answer within {}s",
            PROBE_TIMEOUT.as_secs()
        ))),
        Ok(Err(e)) => match code_of(&e) {
            Some(401) => Err(ClusterError::Unauthorized {
                url: url.to_string(),
                message: describe(&e),
            }),
            Some(code) if code == 429 || code >= 500 => Err(unreachable(describe(&e))),
            // It answered: whether this client may read /version does not matter here.
            Some(_) => Ok(()),
            None => Err(unreachable(describe(&e))),
        },
    }
}

/// The client configuration for `target`, with timeouts on every connection.
async fn load(target: &KubeTarget) -> Result<Config, ClusterError> {
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
    Ok(config)
}
