//! The cluster steps of `doctor --image`: the pull Secret in the pod's namespace (and its
//! password on the registry) and the ServiceAccount's imagePullSecrets.

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::{Api, Client};

use crate::cluster;
use crate::cluster::calls::{code_of, describe};
use crate::cluster::client::PROBE_TIMEOUT;
use crate::cluster::pull_secret::{check_secret, credentials_for};
use crate::commands::doctor::cluster_check_name;
use crate::config::{Config, DoctorArgs};

use super::endpoint::password_row;
use super::*;

/// Step 6: the pull Secret and the ServiceAccount in `namespace`.
pub(super) async fn cluster_rows(
    config: &Config,
    args: &DoctorArgs,
    namespace: &str,
    host: &str,
    rows: &mut Report<'_>,
) {
    let secret_name = format!("Secret {namespace}/{}", config.secret_name);
    let sa_name = format!("ServiceAccount {namespace}/{}", args.service_account);
    // The same bounded check a refresh makes, so a hung API server fails within seconds.
    let connected = async { cluster::client::load(&config.kube)?.connect_checked().await };
    let client = match connected.await {
        Ok(c) => c,
        Err(e) => {
            rows.push(bad(
                Status::Fail,
                cluster_check_name(&e),
                None,
                e.to_string(),
                e.fix(),
            ));
            rows.push(skip(secret_name, "needs the cluster"));
            rows.push(skip(sa_name, "needs the cluster"));
            return;
        }
    };
    // The Secret's own password is tried only where the endpoint answered the fresh token.
    let try_password = rows
        .rows()
        .iter()
        .any(|r| r.name == REGISTRY_ENDPOINT && r.status == Status::Ok)
        .then_some(args.registry_address.as_deref());
    // Each read gets the connection check's bound (not the client's 30 s read timeout); after
    // one went unanswered, the next is not tried.
    let secret = secret_row(&client, config, namespace, host, secret_name, try_password).await;
    let unanswered = secret.code.as_deref() == Some(TIMEOUT);
    rows.push(secret);
    if unanswered {
        return rows.push(skip(sa_name, "the API server did not answer"));
    }
    rows.push(sa_row(&client, config, args, namespace, sa_name).await);
}

/// The code of a row whose request got no answer in time.
const TIMEOUT: &str = "timeout";

fn no_answer(name: String) -> Row {
    bad(
        Status::Fail,
        name,
        Some(TIMEOUT),
        format!(
            "the API server took the request and gave no answer within {} s",
            PROBE_TIMEOUT.as_secs()
        ),
        crate::commands::checks::API_SERVER_STOPPED_FIX,
    )
}

fn forbidden(name: String, err: &kube::Error, verb_resource: &str, namespace: &str) -> Row {
    bad(
        Status::Unknown,
        name,
        Some("Forbidden"),
        format!("could not check: {}", describe(err)),
        format!(
            "to check it, allow {verb_resource} in {namespace} for this identity (kubectl auth can-i {verb_resource} -n {namespace})"
        ),
    )
}

fn api_failed(name: String, err: &kube::Error) -> Row {
    bad(
        Status::Fail,
        name,
        None,
        describe(err),
        "check that the API server is reachable and the credentials in the kubeconfig are valid",
    )
}

/// `try_password`: when `Some(connect_to)`, the Secret's password for `host` is tried on
/// `GET /v2/`, as the kubelet would send it.
async fn secret_row(
    client: &Client,
    config: &Config,
    namespace: &str,
    host: &str,
    name: String,
    try_password: Option<Option<&str>>,
) -> Row {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(found) = bounded(PROBE_TIMEOUT, api.get_opt(&config.secret_name)).await else {
        return no_answer(name);
    };
    match found {
        // A typo in --namespace looks the same from here: ask (reading namespaces may be denied).
        Ok(None) if namespace_missing(client, namespace).await => bad(
            Status::Fail,
            name,
            Some("NotFound"),
            format!("there is no namespace {namespace}"),
            "check --namespace: it must be the pod's namespace (kubectl get pod POD -o jsonpath='{.metadata.namespace}')",
        ),
        Ok(None) => bad(
            Status::Fail,
            name,
            Some("NotFound"),
            format!("no Secret '{}' in {namespace}", config.secret_name),
            format!(
                "run a refresh for this namespace (add {namespace} to the refresher's --namespaces), or fix the pod's imagePullSecrets name; if the nodes run this tool as their kubelet credential provider instead, the kubelet needs no Secret and this row does not apply"
            ),
        ),
        Ok(Some(secret)) => match check_secret(&secret, host, jiff::Timestamp::now()) {
            Ok(detail) => match (try_password, credentials_for(&secret, host)) {
                (Some(connect_to), Some((user, password))) => {
                    password_row(name, detail, host, connect_to, &user, &password).await
                }
                _ => ok(name, detail),
            },
            Err((detail, fix)) => bad(Status::Fail, name, None, detail, fix),
        },
        Err(e) if code_of(&e) == Some(403) => forbidden(
            name,
            &e,
            &format!("get secrets/{}", config.secret_name),
            namespace,
        ),
        Err(e) => api_failed(name, &e),
    }
}

/// Whether the namespace is known not to exist (a denied or failed lookup says nothing).
async fn namespace_missing(client: &Client, namespace: &str) -> bool {
    let api: Api<Namespace> = Api::all(client.clone());
    matches!(
        bounded(PROBE_TIMEOUT, api.get_opt(namespace)).await,
        Some(Ok(None))
    )
}

async fn sa_row(
    client: &Client,
    config: &Config,
    args: &DoctorArgs,
    namespace: &str,
    name: String,
) -> Row {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let sa = &args.service_account;
    let secret = &config.secret_name;
    let Some(found) = bounded(PROBE_TIMEOUT, api.get_opt(sa)).await else {
        return no_answer(name);
    };
    match found {
        Ok(None) => bad(
            Status::Fail,
            name,
            Some("NotFound"),
            format!("no ServiceAccount '{sa}' in {namespace}"),
            format!(
                "pods naming serviceAccountName {sa} are not created: create it (kubectl -n {namespace} create serviceaccount {sa}), or pass the --service-account the pods use"
            ),
        ),
        Ok(Some(account)) => {
            let listed: Vec<&str> = account
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.as_str())
                .collect();
            if listed.contains(&secret.as_str()) {
                ok(name, format!("imagePullSecrets lists {secret}"))
            } else {
                // Pods may name the Secret themselves, and the kubelet credential provider
                // needs none: worth a look, not a failure.
                bad(
                    Status::Warn,
                    name,
                    None,
                    format!(
                        "imagePullSecrets {}, not {secret}",
                        if listed.is_empty() {
                            "is empty".to_string()
                        } else {
                            format!("lists {}", listed.join(", "))
                        }
                    ),
                    format!(
                        "pods using this ServiceAccount do not get the Secret unless they name it in their own imagePullSecrets (fine if they do, or if the nodes use the kubelet credential provider): run the refresher with --service-accounts {sa}, or kubectl -n {namespace} patch serviceaccount {sa} -p '{{\"imagePullSecrets\":[{{\"name\":\"{secret}\"}}]}}'"
                    ),
                )
            }
        }
        Err(e) if code_of(&e) == Some(403) => {
            forbidden(name, &e, &format!("get serviceaccounts/{sa}"), namespace)
        }
        Err(e) => api_failed(name, &e),
    }
}
