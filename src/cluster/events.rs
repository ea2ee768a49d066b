//! Kubernetes Events for operators: a `RefreshFailed` Warning on the Secret, or on the
//! namespace's default ServiceAccount when there is no Secret, so `kubectl get events` in the
//! namespace shows why its pull secret is stale.
//!
//! The Event counts against the namespace's budget: a namespace that used it all up (a hung API
//! server) gets no Event, rather than more requests to a server that does not answer.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::cluster::budget::{Budget, Step};

pub const REASON: &str = "RefreshFailed";
const COMPONENT: &str = "ecr-secret-refresher";

/// Records the failure within what is left of `budget`; a failure to record it is only logged.
pub async fn refresh_failed(
    client: Client,
    namespace: &str,
    secret: &str,
    message: &str,
    budget: &Budget,
) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let found = budget
        .retrying(Step::Normal, || secrets.get_opt(secret))
        .await;
    let involved = match found {
        Ok(Some(s)) => ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Secret".into()),
            name: Some(secret.into()),
            namespace: Some(namespace.into()),
            uid: s.metadata.uid,
            ..ObjectReference::default()
        },
        // No Secret to hang it on. The uid is optional, and reading it would need `get` on
        // ServiceAccounts, which the refresher otherwise does not use.
        _ => ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ServiceAccount".into()),
            name: Some("default".into()),
            namespace: Some(namespace.into()),
            ..ObjectReference::default()
        },
    };
    warning(client, namespace, involved, REASON, message, budget).await;
}

/// Records a Warning Event about `involved` in `namespace`, within what is left of `budget`; a
/// failure to record it is only logged.
pub async fn warning(
    client: Client,
    namespace: &str,
    involved: ObjectReference,
    reason: &str,
    message: &str,
    budget: &Budget,
) {
    let now = Timestamp::now();
    let name = involved
        .name
        .clone()
        .unwrap_or_else(|| COMPONENT.to_string());
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        involved_object: involved,
        reason: Some(reason.into()),
        message: Some(message.chars().take(1024).collect()),
        type_: Some("Warning".into()),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: None,
        }),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: Some(COMPONENT.into()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Event::default()
    };
    let events: Api<Event> = Api::namespaced(client, namespace);
    let params = PostParams::default();
    let created = budget
        .retrying(Step::Normal, || events.create(&params, &event))
        .await;
    if let Err(e) = created {
        tracing::warn!(namespace = %namespace, "could not record a {reason} Event: {}", crate::cluster::calls::describe(&e));
    }
}
