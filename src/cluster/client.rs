//! The Kubernetes client: from `--kubeconfig`/`--context`, KUBECONFIG, ~/.kube/config, or the
//! in-cluster service account; the default instance name that goes with that choice; and the
//! connection check a refresh makes before it writes.
//!
//! The kubeconfig is read here rather than by `Config::infer`, for three reasons: a parser
//! error quotes the file around the fault, token included, so only its line and column may be
//! shown; a context that does not exist deserves its own message; and the context's name is
//! the install's default instance.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use crate::aws::http::{env_value, proxy_url_for};
use crate::cluster::calls::{code_of, describe, retrying};
use crate::cluster::ownership;
use crate::config::KubeTarget;
use crate::errors;

/// Where the in-cluster ServiceAccount token is mounted.
const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error(
        "kubeconfig {path} is not valid YAML at line {line}, column {column}; fix the file there, or a quote or bracket left open before it (the parser's message is not shown, because it quotes the file and the credentials in it)"
    )]
    KubeconfigSyntax {
        path: String,
        line: u64,
        column: u64,
    },
    #[error(
        "context '{context}' does not exist in the kubeconfig ({paths}); it has: {available}. Pick one of those with --context"
    )]
    NoContext {
        context: String,
        paths: String,
        available: String,
    },
    #[error(
        "the kubeconfig ({paths}) sets no current-context; pick one of its contexts with --context: {available}"
    )]
    NoCurrentContext { paths: String, available: String },
    #[error(
        "--context '{0}' needs a kubeconfig, and there is none: KUBECONFIG is not set and ~/.kube/config does not exist. Pass --kubeconfig"
    )]
    NoKubeconfigForContext(String),
    #[error(
        "no Kubernetes configuration: {0}. Set KUBECONFIG or --kubeconfig, or run inside a cluster"
    )]
    Infer(String),
    #[error("cannot use the Kubernetes configuration: {0}")]
    Client(String),
    #[error(
        "cannot get credentials from the kubeconfig's exec plugin {plugin}: {message}. Run it yourself to see why (its output is not shown here, because it may hold a token), or check the kubeconfig's user (--kubeconfig, --context)"
    )]
    ExecPlugin { plugin: String, message: String },
    #[error(
        "cannot reach the Kubernetes API server at {url}: {message}. Check that it is up and reachable from here, and that the kubeconfig (--kubeconfig, --context) names the right cluster"
    )]
    Unreachable { url: String, message: String },
    #[error(
        "the Kubernetes API server at {url} refused our credentials: {message}. Check the kubeconfig's user (--kubeconfig, --context), or the ServiceAccount token when running in a cluster"
    )]
    Unauthorized { url: String, message: String },
    #[error(
        "cannot tell which install this is (the instance label of its Secrets): {0}. Pass --instance"
    )]
    Instance(String),
}

impl ClusterError {
    /// Whether a later run may pass without anyone changing anything: the API server did not
    /// answer, or answered only with throttling or server errors.
    pub fn may_pass_on_retry(&self) -> bool {
        matches!(self, ClusterError::Unreachable { .. })
    }

    /// What to do about it, for `doctor`.
    pub fn fix(&self) -> &'static str {
        match self {
            ClusterError::KubeconfigSyntax { .. } => "fix the kubeconfig at that line",
            ClusterError::NoContext { .. } | ClusterError::NoCurrentContext { .. } => {
                "pick one of the listed contexts with --context"
            }
            ClusterError::NoKubeconfigForContext(_) => {
                "pass --kubeconfig, or leave --context out inside a cluster"
            }
            ClusterError::Instance(_) => "pass --instance",
            ClusterError::Unreachable { .. } => {
                "check that the API server is up and reachable from here, and that the kubeconfig names the right cluster"
            }
            ClusterError::Unauthorized { .. } => {
                "check the kubeconfig's user, or the ServiceAccount token in a cluster"
            }
            ClusterError::ExecPlugin { .. } => {
                "run the kubeconfig user's exec plugin by hand to see why it fails"
            }
            _ => "check --kubeconfig, --context or KUBECONFIG",
        }
    }
}

/// Where the cluster connection comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Kubeconfig {
        config: Box<Kubeconfig>,
        context: String,
    },
    InCluster,
}

/// The kubeconfig files to read: `--kubeconfig`, else KUBECONFIG's existing files (as kubectl,
/// missing ones are skipped), else ~/.kube/config if it exists. Empty means in-cluster.
fn kubeconfig_paths(target: &KubeTarget) -> Result<Vec<PathBuf>, ClusterError> {
    if let Some(path) = &target.kubeconfig {
        return Ok(vec![path.clone()]);
    }
    if let Some(value) = std::env::var_os("KUBECONFIG") {
        let listed: Vec<PathBuf> = std::env::split_paths(&value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !listed.is_empty() {
            let found: Vec<PathBuf> = listed.iter().filter(|p| p.exists()).cloned().collect();
            if found.is_empty() {
                return Err(ClusterError::Kubeconfig {
                    path: value.to_string_lossy().into_owned(),
                    message:
                        "KUBECONFIG names no file that exists. Fix KUBECONFIG, or pass --kubeconfig"
                            .into(),
                });
            }
            return Ok(found);
        }
    }
    Ok(std::env::home_dir()
        .map(|h| h.join(".kube").join("config"))
        .filter(|p| p.exists())
        .into_iter()
        .collect())
}

/// One kubeconfig file, with parser errors reduced to where they are.
fn read_one(path: &Path) -> Result<Kubeconfig, ClusterError> {
    Kubeconfig::read_from(path).map_err(|e| kubeconfig_error(path, &e))
}

fn kubeconfig_error(path: &Path, err: &KubeconfigError) -> ClusterError {
    let path = path.display().to_string();
    match err {
        KubeconfigError::Parse(parse) => match parse.location() {
            Some(at) => ClusterError::KubeconfigSyntax {
                path,
                line: at.line(),
                column: at.column(),
            },
            None => ClusterError::Kubeconfig {
                path,
                message: "it is not a valid kubeconfig (the parser's message is not shown, because it quotes the file). Check it with `kubectl config view`".into(),
            },
        },
        other => ClusterError::Kubeconfig {
            path,
            message: format!(
                "{}. Check --kubeconfig or KUBECONFIG",
                errors::chain(other)
            ),
        },
    }
}

/// Chooses the source: the kubeconfig (and its context) when there is one, else in-cluster.
pub fn load(target: &KubeTarget) -> Result<Source, ClusterError> {
    let paths = kubeconfig_paths(target)?;
    if paths.is_empty() {
        return match &target.context {
            Some(c) => Err(ClusterError::NoKubeconfigForContext(c.clone())),
            None => Ok(Source::InCluster),
        };
    }
    let mut merged = Kubeconfig::default();
    for path in &paths {
        let next = read_one(path)?;
        merged = merged.merge(next).map_err(|e| kubeconfig_error(path, &e))?;
    }
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let shown = shown.join(", ");
    let available: Vec<&str> = merged.contexts.iter().map(|c| c.name.as_str()).collect();
    let available = if available.is_empty() {
        "no contexts at all".to_string()
    } else {
        available.join(", ")
    };
    let context = match target.context.clone().or(merged.current_context.clone()) {
        Some(c) if !c.is_empty() => c,
        _ => {
            return Err(ClusterError::NoCurrentContext {
                paths: shown,
                available,
            });
        }
    };
    if !merged.contexts.iter().any(|c| c.name == context) {
        return Err(ClusterError::NoContext {
            context,
            paths: shown,
            available,
        });
    }
    Ok(Source::Kubeconfig {
        config: Box::new(merged),
        context,
    })
}

impl Source {
    /// The instance name this source gives an install that sets no `--instance`: the context's
    /// name, or `namespace_serviceaccount` from the pod's ServiceAccount token. No request.
    pub fn default_instance(&self) -> Result<String, ClusterError> {
        match self {
            Source::Kubeconfig { context, .. } => Ok(ownership::instance_from(context)),
            Source::InCluster => {
                let token = std::fs::read_to_string(TOKEN_PATH).map_err(|e| {
                    ClusterError::Instance(format!("cannot read {TOKEN_PATH}: {e}"))
                })?;
                ownership::instance_from_token(token.trim()).ok_or_else(|| {
                    ClusterError::Instance(format!(
                        "{TOKEN_PATH} carries no system:serviceaccount:NAMESPACE:NAME subject"
                    ))
                })
            }
        }
    }

    /// A client for this source.
    pub async fn connect(self) -> Result<Client, ClusterError> {
        let plugin = self.exec_plugin();
        let config = self.config(plugin.as_deref()).await?;
        Client::try_from(config).map_err(|e| client_error(&e, plugin.as_deref()))
    }

    /// The command of the exec credential plugin of the chosen context's user, if it has one:
    /// kube runs it while building the client.
    fn exec_plugin(&self) -> Option<String> {
        let Source::Kubeconfig { config, context } = self else {
            return None;
        };
        let user = config
            .contexts
            .iter()
            .find(|c| &c.name == context)?
            .context
            .as_ref()?
            .user
            .clone()?;
        let auth = config.auth_infos.iter().find(|a| a.name == user)?;
        auth.auth_info.as_ref()?.exec.as_ref()?.command.clone()
    }

    /// Whether the chosen context's cluster names its own `proxy-url`, which then wins over the
    /// environment, as with kubectl.
    fn has_proxy_url(&self) -> bool {
        let Source::Kubeconfig { config, context } = self else {
            return false;
        };
        let cluster = config
            .contexts
            .iter()
            .find(|c| &c.name == context)
            .and_then(|c| c.context.as_ref())
            .map(|c| c.cluster.as_str());
        config
            .clusters
            .iter()
            .filter(|c| Some(c.name.as_str()) == cluster)
            .any(|c| c.cluster.as_ref().is_some_and(|c| c.proxy_url.is_some()))
    }

    /// A client for this source, once the API server has answered `GET /version` (which every
    /// client may call, authenticated or not) within [`PROBE_TIMEOUT`]. A run that will write
    /// checks this once, so that an unreachable or hung server fails the run before any
    /// namespace is tried.
    pub async fn connect_checked(self) -> Result<Client, ClusterError> {
        self.checked().await.map(|c| c.client)
    }

    /// Like [`Source::connect_checked`], keeping the configuration for more clients (the
    /// `watch` mode builds a gated one and one for long watches from it).
    pub async fn checked(self) -> Result<Checked, ClusterError> {
        let plugin = self.exec_plugin();
        let config = self.config(plugin.as_deref()).await?;
        let url = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        let client =
            Client::try_from(config.clone()).map_err(|e| client_error(&e, plugin.as_deref()))?;
        probe(&client, &url).await?;
        Ok(Checked {
            client,
            config,
            plugin,
        })
    }

    /// The client configuration, with timeouts on every connection.
    async fn config(self, plugin: Option<&str>) -> Result<Config, ClusterError> {
        let own_proxy = self.has_proxy_url();
        let mut config = match self {
            Source::Kubeconfig { config, context } => {
                let options = KubeConfigOptions {
                    context: Some(context),
                    ..KubeConfigOptions::default()
                };
                Config::from_custom_kubeconfig(*config, &options)
                    .await
                    .map_err(|e| client_error(&e, plugin))?
            }
            Source::InCluster => Config::incluster().map_err(|e| {
                ClusterError::Infer(format!(
                    "no kubeconfig (KUBECONFIG is not set, ~/.kube/config does not exist) and not inside a cluster ({})",
                    errors::chain(&e)
                ))
            })?,
        };
        // kube takes HTTPS_PROXY for the API server but checks NO_PROXY against the proxy's
        // own address; kubectl checks it against the API server's, and so do we, so that a
        // laptop behind a proxy reaches AWS through it and an internal cluster directly.
        if !own_proxy && config.proxy_url.is_some() {
            let host = config.cluster_url.host().unwrap_or_default();
            config.proxy_url = proxy_url_for(host, env_value)
                .map(|url| url.parse())
                .transpose()
                .map_err(|_| {
                    ClusterError::Client(
                        "HTTPS_PROXY (or ALL_PROXY) is not a URL such as http://proxy:3128".into(),
                    )
                })?;
        }
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(30));
        config.write_timeout = Some(Duration::from_secs(30));
        Ok(config)
    }
}

/// A client whose API server answered, and the configuration it came from.
pub struct Checked {
    pub client: Client,
    config: Config,
    plugin: Option<String>,
}

impl Checked {
    /// A client whose writes pass only through `gate` (see [`crate::cluster::gate`]).
    pub fn gated(&self, gate: crate::cluster::gate::WriteGate) -> Result<Client, ClusterError> {
        let builder = kube::client::ClientBuilder::try_from(self.config.clone())
            .map_err(|e| client_error(&e, self.plugin.as_deref()))?;
        Ok(builder
            .with_layer(&crate::cluster::gate::GateLayer(gate))
            .build())
    }

    /// A client for watches that stay open up to `longest` without a byte: the usual read
    /// timeout would cut a quiet watch.
    pub fn for_watches(&self, longest: Duration) -> Result<Client, ClusterError> {
        let mut config = self.config.clone();
        config.read_timeout = Some(longest);
        Client::try_from(config).map_err(|e| client_error(&e, self.plugin.as_deref()))
    }
}

/// A client or configuration error as shown to people. An exec credential plugin's failure is
/// told by its command and exit status only: kube's own message for it quotes the plugin's
/// stdout and stderr (or, for output it cannot parse, the output itself), where a token may be.
fn client_error(err: &(dyn std::error::Error + 'static), plugin: Option<&str>) -> ClusterError {
    match exec_failure(err) {
        Some(message) => ClusterError::ExecPlugin {
            plugin: plugin.map_or_else(|| "(unnamed)".to_string(), |p| format!("'{p}'")),
            message,
        },
        None => ClusterError::Client(without_userinfo(&errors::chain(err))),
    }
}

/// What went wrong with an exec credential plugin (or another command kube runs for
/// credentials), in words that never include what the command printed; `None` if `err` is not
/// such a failure.
pub(crate) fn exec_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    use kube::client::AuthError;
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(auth) = e.downcast_ref::<AuthError>() {
            return match auth {
                AuthError::AuthExecRun { out, .. } => Some(format!("it ended with {}", out.status)),
                AuthError::AuthExecStart(io) => Some(format!("it could not be started ({io})")),
                AuthError::AuthExecParse(_) => {
                    Some("its output is not an ExecCredential in JSON or YAML".into())
                }
                AuthError::ExecPluginFailed => Some("its output carries no status".into()),
                AuthError::AuthExec(_) => Some("it failed".into()),
                _ => None,
            };
        }
        current = e.source();
    }
    None
}

/// `text` with the user and password of every URL in it (`scheme://user:password@host`)
/// replaced by `***`: kube's errors quote proxy URLs whole.
pub(crate) fn without_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || "\"'`)>,".contains(c))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// How long the connection check waits for the API server, all tries included.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

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
            // Transport errors may quote the proxy URL, password included.
            None => Err(unreachable(without_userinfo(&describe(&e)))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(dir: &Path, text: &str, context: Option<&str>) -> KubeTarget {
        let path = dir.join("kc");
        std::fs::write(&path, text).unwrap();
        KubeTarget {
            kubeconfig: Some(path),
            context: context.map(String::from),
        }
    }

    const KC: &str = "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:6443
contexts:
- name: dev
  context: {cluster: c, user: u}
- name: arn:aws:eks:eu-west-1:123456789012:cluster/prod
  context: {cluster: c, user: u}
current-context: dev
users:
- name: u
  user:
    token: kc-secret-token-123
";

    #[test]
    fn urls_in_messages_lose_their_user_and_password() {
        assert_eq!(
            without_userinfo("tunnel via http://me:s3cret@proxy:3128/ failed"),
            "tunnel via http://***@proxy:3128/ failed"
        );
        assert_eq!(
            without_userinfo("proxy_url: \"https://tok@p\", then http://plain:80"),
            "proxy_url: \"https://***@p\", then http://plain:80"
        );
        assert_eq!(without_userinfo("no url here"), "no url here");
    }

    #[test]
    fn a_syntax_error_shows_where_and_nothing_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let broken = KC.replace("token: kc-secret-token-123", "token: \"kc-secret-token-123");
        let err = load(&target(dir.path(), &broken, None)).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, ClusterError::KubeconfigSyntax { .. }),
            "{msg}"
        );
        assert!(msg.contains("kc") && msg.contains("line"), "{msg}");
        assert!(!msg.contains("kc-secret-token-123"), "{msg}");
    }

    #[test]
    fn a_missing_context_lists_the_real_ones() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(&target(dir.path(), KC, Some("nope"))).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("context 'nope' does not exist in the kubeconfig"),
            "{msg}"
        );
        assert!(msg.contains("dev, arn:aws:eks"), "{msg}");
        assert!(!msg.contains("--kubeconfig"), "{msg}");
    }

    #[test]
    fn the_context_names_the_instance() {
        let dir = tempfile::tempdir().unwrap();
        let src = load(&target(dir.path(), KC, None)).unwrap();
        assert_eq!(src.default_instance().unwrap(), "dev");
        let eks = "arn:aws:eks:eu-west-1:123456789012:cluster/prod";
        let src = load(&target(dir.path(), KC, Some(eks))).unwrap();
        assert_eq!(
            src.default_instance().unwrap(),
            ownership::instance_from(eks)
        );
    }
}
