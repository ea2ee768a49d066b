//! Writing the pull Secret into one namespace: ownership, the `update` and `recreate`
//! strategies, retries, and never leaving a namespace without the Secret it had.
//!
//! All of it runs within the namespace's [`Budget`]; once the old Secret is deleted, the create
//! and the restore are the only requests that still run after a termination signal.
//!
//! Steady-state cost: `update` is one request (a JSON patch that tests our label and the type,
//! then replaces the data); `recreate` is three (get, delete with preconditions, create).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, ReplaceOperation, TestOperation};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::Value;

use crate::cluster::budget::{Budget, Cut, Step, cut_of};
use crate::cluster::calls::{code_of, describe, exact_delete, status_of};
use crate::cluster::ownership::{self, INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Owner};
use crate::config::Strategy;

/// The Secret type for image-pull secrets.
pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// The key of the docker config in the Secret's data.
pub const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";
pub const EXPIRES_AT_ANNOTATION: &str = "ecr-secret-refresher/expires-at";
pub const REFRESHED_AT_ANNOTATION: &str = "ecr-secret-refresher/refreshed-at";
pub const REGISTRIES_ANNOTATION: &str = "ecr-secret-refresher/registries";

/// How many times the full update is tried when the Secret keeps changing under us.
const ATTEMPTS: u32 = 3;

/// The Secret to write, the same in every namespace. Built once per run.
pub struct DesiredSecret {
    name: String,
    data: BTreeMap<String, ByteString>,
    annotations: BTreeMap<String, String>,
    /// This install's instance label value.
    instance: String,
    /// The JSON patch of the update strategy, built once and reused for every namespace.
    patch: Patch<()>,
}

impl DesiredSecret {
    pub fn new(
        name: &str,
        docker_config: &[u8],
        annotations: BTreeMap<String, String>,
        instance: &str,
    ) -> Self {
        let data = BTreeMap::from([(
            DOCKER_CONFIG_KEY.to_string(),
            ByteString(docker_config.to_vec()),
        )]);
        let patch = Patch::Json(update_patch(&data, &annotations, instance));
        DesiredSecret {
            name: name.to_string(),
            data,
            annotations,
            instance: instance.to_string(),
            patch,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full Secret object for `namespace`.
    pub fn object(&self, namespace: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(namespace.to_string()),
                labels: Some(ownership::labels(&self.instance)),
                annotations: Some(self.annotations.clone()),
                ..ObjectMeta::default()
            },
            type_: Some(DOCKER_CONFIG_JSON.to_string()),
            data: Some(self.data.clone()),
            ..Secret::default()
        }
    }
}

/// A JSON pointer to `tokens`, each escaped as RFC 6901 says (`/` and `~` in label keys).
fn pointer<'t>(tokens: impl IntoIterator<Item = &'t str>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

/// Tests that the Secret is ours (this instance's) and of the right type, then replaces data and
/// our annotations, atomically: if a test fails the server applies nothing and answers 422.
///
/// Built from typed operations, with no fallible step: a patch that came out empty would be
/// accepted by the server as a no-op, and the run would report "updated" with nothing written.
fn update_patch(
    data: &BTreeMap<String, ByteString>,
    annotations: &BTreeMap<String, String>,
    instance: &str,
) -> json_patch::Patch {
    let test = |path: PointerBuf, value: &str| {
        PatchOperation::Test(TestOperation {
            path,
            value: Value::String(value.to_string()),
        })
    };
    // As the API server stores Secret data: base64 of each value.
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(STANDARD.encode(&v.0))))
        .collect();
    let mut ops = vec![
        test(
            pointer(["metadata", "labels", MANAGED_BY_LABEL]),
            MANAGED_BY_VALUE,
        ),
        test(pointer(["metadata", "labels", INSTANCE_LABEL]), instance),
        test(pointer(["type"]), DOCKER_CONFIG_JSON),
        PatchOperation::Replace(ReplaceOperation {
            path: pointer(["data"]),
            value: Value::Object(data),
        }),
    ];
    for (k, v) in annotations {
        ops.push(PatchOperation::Add(AddOperation {
            path: pointer(["metadata", "annotations", k.as_str()]),
            value: Value::String(v.clone()),
        }));
    }
    json_patch::Patch(ops)
}

/// What was done to the Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// There was none; it was created.
    Created,
    /// Its data was replaced in place by a JSON patch.
    Updated,
    /// It was replaced in place by a full update (it lacked our annotations, or was taken over).
    Replaced,
    /// It was deleted and created again.
    Recreated,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Replaced => "replaced",
            Action::Recreated => "recreated",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error(
        "Secret '{name}' exists but is not managed by ecr-secret-refresher ({MANAGED_BY_LABEL}={owner}); left unchanged. Pass --force to take it over, or pick another --secret-name"
    )]
    Foreign { name: String, owner: String },
    #[error(
        "Secret '{name}' was written by another install of ecr-secret-refresher ({INSTANCE_LABEL}={theirs}, this is {ours}); left unchanged. Give one of them another --secret-name, give both the same --instance if they are one install, or pass --force to take it over"
    )]
    OtherInstance {
        name: String,
        theirs: String,
        ours: String,
    },
    #[error("namespace does not exist: create it, or remove it from --namespaces")]
    NoNamespace,
    #[error("namespace is terminating; skipped")]
    Terminating,
    #[error("the Secret was refreshed, but {0}")]
    ServiceAccount(String),
    /// A termination signal came before the namespace was done; nothing was deleted.
    #[error("the run was stopped by a termination signal")]
    Stopped,
    /// A create answered 409 AlreadyExists: someone else created a Secret of that name first.
    #[error("create Secret '{name}' failed: {message}")]
    AlreadyExists { name: String, message: String },
    #[error("{op} Secret '{name}' failed: {message}")]
    Api {
        op: &'static str,
        name: String,
        message: String,
    },
    #[error(
        "deleted the old Secret but could not create the new one ({create}); the old Secret was put back and still holds the previous password"
    )]
    Restored { create: String },
    #[error(
        "NAMESPACE LEFT WITHOUT ITS SECRET: deleted the old Secret, then could not create the new one ({create}) nor put the old one back ({restore}). Pods here cannot pull from ECR until a run succeeds"
    )]
    LeftWithoutSecret { create: String, restore: String },
}

impl WriteError {
    /// Whether the namespace has no Secret now although it had one before the run.
    pub fn lost_secret(&self) -> bool {
        matches!(self, WriteError::LeftWithoutSecret { .. })
    }
}

/// Writes the Secret into one namespace with the chosen strategy, within `budget`.
pub async fn write(
    client: Client,
    namespace: &str,
    desired: &DesiredSecret,
    strategy: Strategy,
    force: bool,
    budget: &Budget,
) -> Result<Action, WriteError> {
    let writer = Writer {
        api: Api::namespaced(client, namespace),
        namespace,
        desired,
        force,
        budget,
    };
    match strategy {
        Strategy::Update => writer.update().await,
        Strategy::Recreate => writer.recreate().await,
    }
}

struct Writer<'a> {
    api: Api<Secret>,
    namespace: &'a str,
    desired: &'a DesiredSecret,
    force: bool,
    budget: &'a Budget,
}

impl Writer<'_> {
    fn api_error(&self, op: &'static str, err: &kube::Error) -> WriteError {
        if cut_of(err) == Some(Cut::Stopped) {
            return WriteError::Stopped;
        }
        WriteError::Api {
            op,
            name: self.desired.name.clone(),
            message: describe(err),
        }
    }

    async fn get(&self, step: Step) -> Result<Option<Secret>, WriteError> {
        self.budget
            .retrying(step, || self.api.get_opt(&self.desired.name))
            .await
            .map_err(|e| self.api_error("get", &e))
    }

    async fn update(&self) -> Result<Action, WriteError> {
        match self.update_once().await {
            // Created by someone else between our patch and our create: patch it now.
            Err(WriteError::AlreadyExists { .. }) => self.update_once().await,
            other => other,
        }
    }

    async fn update_once(&self) -> Result<Action, WriteError> {
        let params = PatchParams::default();
        let patched = self
            .budget
            .retrying(Step::Normal, || {
                self.api
                    .patch(&self.desired.name, &params, &self.desired.patch)
            })
            .await;
        match patched {
            Ok(_) => return Ok(Action::Updated),
            Err(e) if code_of(&e) == Some(404) => {
                return self.create(Step::Normal).await.map(|()| Action::Created);
            }
            // A failed test (not ours, other type), missing annotations, or an immutable Secret:
            // look at it to decide.
            Err(e) if code_of(&e) == Some(422) => {}
            Err(e) => return Err(self.api_error("patch", &e)),
        }
        let Some(existing) = self.get(Step::Normal).await? else {
            return self.create(Step::Normal).await.map(|()| Action::Created);
        };
        self.check_owner(&existing)?;
        if needs_recreate(&existing) {
            return self.recreate_existing(existing).await;
        }
        self.replace(existing).await
    }

    async fn recreate(&self) -> Result<Action, WriteError> {
        let Some(existing) = self.get(Step::Normal).await? else {
            return self.create(Step::Normal).await.map(|()| Action::Created);
        };
        self.check_owner(&existing)?;
        self.recreate_existing(existing).await
    }

    /// Ours, a legacy Secret of ours (adopted by this write), or taken over with `--force`.
    fn check_owner(&self, existing: &Secret) -> Result<(), WriteError> {
        let labels = existing.metadata.labels.as_ref();
        match ownership::owner(labels, &self.desired.instance) {
            Owner::Us => Ok(()),
            Owner::Legacy => {
                tracing::info!(namespace = self.namespace, secret = %self.desired.name, instance = %self.desired.instance, "adopting a Secret written by an earlier version (adding the instance label)");
                Ok(())
            }
            _ if self.force => {
                tracing::warn!(namespace = self.namespace, secret = %self.desired.name, "taking over a Secret this install did not create (--force)");
                Ok(())
            }
            Owner::OtherInstance(theirs) => Err(WriteError::OtherInstance {
                name: self.desired.name.clone(),
                theirs: theirs.to_string(),
                ours: self.desired.instance.clone(),
            }),
            Owner::Foreign(owner) => Err(WriteError::Foreign {
                name: self.desired.name.clone(),
                owner: owner.unwrap_or("<none>").to_string(),
            }),
        }
    }

    /// A full update that keeps other labels and annotations; retried on a write conflict.
    async fn replace(&self, mut existing: Secret) -> Result<Action, WriteError> {
        for _ in 0..ATTEMPTS {
            let mut secret = existing.clone();
            let meta = &mut secret.metadata;
            meta.labels
                .get_or_insert_with(BTreeMap::new)
                .extend(ownership::labels(&self.desired.instance));
            meta.annotations
                .get_or_insert_with(BTreeMap::new)
                .extend(self.desired.annotations.clone());
            secret.data = Some(self.desired.data.clone());
            secret.string_data = None;
            let params = PostParams::default();
            let replaced = self
                .budget
                .retrying(Step::Normal, || {
                    self.api.replace(&self.desired.name, &params, &secret)
                })
                .await;
            match replaced {
                Ok(_) => return Ok(Action::Replaced),
                Err(e) if code_of(&e) == Some(409) => match self.get(Step::Normal).await? {
                    Some(fresh) => {
                        self.check_owner(&fresh)?;
                        existing = fresh;
                    }
                    None => return self.create(Step::Normal).await.map(|()| Action::Created),
                },
                Err(e) => return Err(self.api_error("update", &e)),
            }
        }
        Err(WriteError::Api {
            op: "update",
            name: self.desired.name.clone(),
            message: "the Secret kept changing under us (409 Conflict on every attempt)".into(),
        })
    }

    /// The one place a Secret is created. It refuses any type but dockerconfigjson, so no path
    /// (a new Secret, a restore) can make the API server mint a ServiceAccount token or store
    /// anything else under the refresher's name, whatever it read from the cluster.
    async fn create_object(&self, object: &Secret, step: Step) -> Result<Secret, CreateError> {
        if object.type_.as_deref() != Some(DOCKER_CONFIG_JSON) {
            return Err(CreateError::Refused(
                object.type_.clone().unwrap_or_else(|| "Opaque".into()),
            ));
        }
        let params = PostParams::default();
        self.budget
            .retrying(step, || self.api.create(&params, object))
            .await
            .map_err(CreateError::Api)
    }

    async fn create(&self, step: Step) -> Result<(), WriteError> {
        let object = self.desired.object(self.namespace);
        let e = match self.create_object(&object, step).await {
            Ok(_) => return Ok(()),
            Err(CreateError::Api(e)) => e,
            // Built by us with our type: unreachable, but never worth a panic.
            Err(refused) => {
                return Err(WriteError::Api {
                    op: "create",
                    name: self.desired.name.clone(),
                    message: refused.to_string(),
                });
            }
        };
        match e {
            // A retried create whose first attempt was saved after all: ours, with our data.
            e if code_of(&e) == Some(409) => match self.get(step).await? {
                Some(s)
                    if ownership::owner(s.metadata.labels.as_ref(), &self.desired.instance)
                        == Owner::Us
                        && s.data.as_ref() == Some(&self.desired.data) =>
                {
                    Ok(())
                }
                _ if is_already_exists(&e) => Err(WriteError::AlreadyExists {
                    name: self.desired.name.clone(),
                    message: describe(&e),
                }),
                _ => Err(self.api_error("create", &e)),
            },
            e if is_namespace_missing(&e) => Err(WriteError::NoNamespace),
            e if is_namespace_terminating(&e) => Err(WriteError::Terminating),
            e => Err(self.api_error("create", &e)),
        }
    }

    /// Deletes `existing` (only if it is still the object we looked at) and creates ours. If the
    /// create fails, puts the old Secret back, so the namespace keeps a Secret either way;
    /// except an old Secret of another type, which the refresher never creates (see
    /// [`restorable`]): that case is reported as the loudest error.
    ///
    /// The delete starts only with enough budget left for both, and never after a signal; from
    /// then on, a second signal names this namespace as possibly without its Secret.
    async fn recreate_existing(&self, existing: Secret) -> Result<Action, WriteError> {
        match self.budget.may_delete() {
            Ok(()) => {}
            Err(Cut::Stopped) => return Err(WriteError::Stopped),
            Err(cut) => {
                return Err(WriteError::Api {
                    op: "delete",
                    name: self.desired.name.clone(),
                    message: format!(
                        "{cut}: too little of it was left to delete and create the Secret safely, so the old one was left in place"
                    ),
                });
            }
        }
        let _exposed = self.budget.exposed(self.namespace);
        let params = exact_delete(&existing.metadata);
        let deleted = self
            .budget
            .retrying(Step::Replace, || {
                self.api.delete(&self.desired.name, &params)
            })
            .await;
        // A delete that got no answer may have been applied: go on as if it was.
        let unanswered = match deleted {
            Ok(_) => None,
            Err(e) if code_of(&e) == Some(404) => None,
            Err(e) if cut_of(&e).is_some() => Some(describe(&e)),
            Err(e) => return Err(self.api_error("delete", &e)),
        };
        let create_err = match self.create(Step::Replace).await {
            Ok(()) => return Ok(Action::Recreated),
            Err(e) => match &unanswered {
                Some(d) => format!("{e}; the delete before it got no answer: {d}"),
                None => e.to_string(),
            },
        };
        let old = restorable(existing);
        match self.create_object(&old, Step::Restore).await {
            Ok(_) => Err(WriteError::Restored { create: create_err }),
            // Someone else created one in the meantime: the namespace is not without a Secret.
            Err(CreateError::Api(e)) if code_of(&e) == Some(409) => Err(WriteError::Api {
                op: "create",
                name: self.desired.name.clone(),
                message: format!(
                    "{create_err}; meanwhile someone else created a Secret of that name"
                ),
            }),
            Err(CreateError::Api(e)) => Err(WriteError::LeftWithoutSecret {
                create: create_err,
                restore: describe(&e),
            }),
            Err(refused) => {
                tracing::error!(namespace = self.namespace, secret = %self.desired.name, "the old Secret was not put back: {refused}");
                Err(WriteError::LeftWithoutSecret {
                    create: create_err,
                    restore: refused.to_string(),
                })
            }
        }
    }
}

/// Why a create was not made or failed.
#[derive(Debug)]
enum CreateError {
    /// The object is of a type the refresher never creates.
    Refused(String),
    Api(kube::Error),
}

impl std::fmt::Display for CreateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CreateError::Refused(ty) => write!(
                f,
                "it was of type '{ty}', and the refresher only ever creates {DOCKER_CONFIG_JSON} Secrets (a Secret of another type could be made into a ServiceAccount token or hold anything); its data is lost, restore it from your own records if it mattered"
            ),
            CreateError::Api(e) => f.write_str(&describe(e)),
        }
    }
}

/// The old Secret as it can be created again: without server-set fields, and without the
/// annotation that would ask the token controller for a ServiceAccount token. Its type is kept:
/// [`Writer::create_object`] refuses it unless it is dockerconfigjson.
fn restorable(mut old: Secret) -> Secret {
    old.metadata.resource_version = None;
    old.metadata.uid = None;
    old.metadata.creation_timestamp = None;
    old.metadata.managed_fields = None;
    old.metadata.deletion_timestamp = None;
    old.metadata.deletion_grace_period_seconds = None;
    if let Some(a) = old.metadata.annotations.as_mut() {
        a.remove(SERVICE_ACCOUNT_NAME_ANNOTATION);
    }
    old
}

/// Asks the token controller to fill a `service-account-token` Secret with that account's token.
const SERVICE_ACCOUNT_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";

/// A Secret's `type` cannot change and an `immutable` one cannot be edited: both need a new object.
fn needs_recreate(existing: &Secret) -> bool {
    existing.type_.as_deref() != Some(DOCKER_CONFIG_JSON) || existing.immutable == Some(true)
}

/// The API server's answer to a create of an object that exists: 409 with reason AlreadyExists
/// (409 Conflict is a write on a stale resourceVersion, which a create never sends).
fn is_already_exists(err: &kube::Error) -> bool {
    status_of(err).is_some_and(|s| s.code == 409 && s.reason == "AlreadyExists")
}

/// The API server refuses new objects in a namespace being deleted with this 403.
fn is_namespace_terminating(err: &kube::Error) -> bool {
    status_of(err)
        .is_some_and(|s| s.code == 403 && s.message.contains("because it is being terminated"))
}

/// The API server answers a create in a missing namespace with 404 on `namespaces`.
fn is_namespace_missing(err: &kube::Error) -> bool {
    status_of(err).is_some_and(|s| {
        s.code == 404 && s.details.as_ref().is_some_and(|d| d.kind == "namespaces")
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn patch_tests_ownership_then_replaces_data() {
        let ann = BTreeMap::from([(
            EXPIRES_AT_ANNOTATION.to_string(),
            "2026-01-01T00:00:00Z".to_string(),
        )]);
        let d = DesiredSecret::new("ecr", b"{}", ann, "team-x");
        let Patch::Json(ops) = &d.patch else {
            panic!("the update patch is a JSON patch")
        };
        let v = serde_json::to_value(ops).unwrap();
        assert_eq!(
            v,
            json!([
                {"op": "test", "path": "/metadata/labels/app.kubernetes.io~1managed-by", "value": "ecr-secret-refresher"},
                {"op": "test", "path": "/metadata/labels/ecr-secret-refresher~1instance", "value": "team-x"},
                {"op": "test", "path": "/type", "value": "kubernetes.io/dockerconfigjson"},
                {"op": "replace", "path": "/data", "value": {".dockerconfigjson": "e30="}},
                {"op": "add", "path": "/metadata/annotations/ecr-secret-refresher~1expires-at", "value": "2026-01-01T00:00:00Z"}
            ])
        );
    }

    #[test]
    fn object_is_labelled_and_typed() {
        let d = DesiredSecret::new("ecr", b"{}", BTreeMap::new(), "team-x");
        let s = d.object("team-a");
        assert_eq!(s.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(
            ownership::owner(s.metadata.labels.as_ref(), "team-x"),
            Owner::Us
        );
        assert_eq!(s.type_.as_deref(), Some(DOCKER_CONFIG_JSON));
        assert!(!needs_recreate(&s));
        let mut immutable = s.clone();
        immutable.immutable = Some(true);
        assert!(needs_recreate(&immutable));
        let mut opaque = s;
        opaque.type_ = Some("Opaque".into());
        assert!(needs_recreate(&opaque));
    }

    #[test]
    fn only_dockerconfigjson_is_ever_restored_as_is() {
        let mut token = Secret {
            type_: Some("kubernetes.io/service-account-token".into()),
            ..Secret::default()
        };
        token.metadata.uid = Some("u".into());
        token.metadata.annotations = Some(BTreeMap::from([(
            SERVICE_ACCOUNT_NAME_ANNOTATION.to_string(),
            "clusterrole-aggregation-controller".to_string(),
        )]));
        let r = restorable(token);
        assert!(r.metadata.uid.is_none());
        assert!(r.metadata.annotations.unwrap().is_empty());
        assert_eq!(
            r.type_.as_deref(),
            Some("kubernetes.io/service-account-token"),
            "kept, so that create_object refuses it"
        );
        let msg = CreateError::Refused("Opaque".into()).to_string();
        assert!(
            msg.contains("'Opaque'") && msg.contains(DOCKER_CONFIG_JSON),
            "{msg}"
        );
    }

    #[test]
    fn already_exists_is_told_by_code_and_reason_not_by_message() {
        let status = |code, reason: &str, message: &str| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                reason: reason.into(),
                message: message.into(),
                ..kube::core::Status::default()
            }))
        };
        assert!(is_already_exists(&status(
            409,
            "AlreadyExists",
            "secrets \"ecr\" already exists"
        )));
        assert!(!is_already_exists(&status(
            409,
            "Conflict",
            "AlreadyExists"
        )));
        assert!(!is_already_exists(&status(
            500,
            "InternalError",
            "AlreadyExists"
        )));
    }

    #[test]
    fn pointer_escaping() {
        assert_eq!(pointer(["x", "a/b~c"]).as_str(), "/x/a~1b~0c");
    }
}
