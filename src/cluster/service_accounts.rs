//! Adding the pull Secret to ServiceAccounts' `imagePullSecrets`, so pods that name no pull
//! secret still get it. Idempotent: no write when the entry is there, other entries kept.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::cluster::budget::{Budget, Step};
use crate::cluster::calls::{code_of, describe};

/// What happened to one ServiceAccount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaOutcome {
    /// The Secret was already listed: nothing written.
    AlreadyListed,
    /// The Secret was appended.
    Added,
    /// There is no ServiceAccount of that name in the namespace.
    Missing,
}

/// The JSON patch that appends `secret`, guarded by the resourceVersion we read: a concurrent
/// edit makes the `test` fail (422) instead of being overwritten.
fn append_patch(sa: &ServiceAccount, secret: &str) -> Result<json_patch::Patch, serde_json::Error> {
    let rv = sa.metadata.resource_version.clone().unwrap_or_default();
    let add = match &sa.image_pull_secrets {
        Some(_) => json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": secret}}),
        None => json!({"op": "add", "path": "/imagePullSecrets", "value": [{"name": secret}]}),
    };
    serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        add,
    ]))
}

/// Makes sure ServiceAccount `name` in `namespace` lists `secret` in `imagePullSecrets`,
/// within the namespace's `budget`.
pub async fn ensure(
    client: Client,
    namespace: &str,
    name: &str,
    secret: &str,
    budget: &Budget,
) -> Result<SaOutcome, String> {
    let api: Api<ServiceAccount> = Api::namespaced(client, namespace);
    for _ in 0..3 {
        let sa = match budget.retrying(Step::Normal, || api.get_opt(name)).await {
            Ok(Some(sa)) => sa,
            Ok(None) => return Ok(SaOutcome::Missing),
            Err(e) => {
                return Err(format!(
                    "get ServiceAccount '{name}' failed: {}",
                    describe(&e)
                ));
            }
        };
        let listed = sa
            .image_pull_secrets
            .as_ref()
            .is_some_and(|l| l.iter().any(|r| r.name == secret));
        if listed {
            return Ok(SaOutcome::AlreadyListed);
        }
        let patch = append_patch(&sa, secret).map_err(|e| e.to_string())?;
        let patch = Patch::Json::<()>(patch);
        let params = PatchParams::default();
        match budget
            .retrying(Step::Normal, || api.patch(name, &params, &patch))
            .await
        {
            Ok(_) => return Ok(SaOutcome::Added),
            // Changed since we read it: read again.
            Err(e) if code_of(&e) == Some(422) || code_of(&e) == Some(409) => continue,
            Err(e) if code_of(&e) == Some(404) => return Ok(SaOutcome::Missing),
            Err(e) => {
                return Err(format!(
                    "patch ServiceAccount '{name}' failed: {}",
                    describe(&e)
                ));
            }
        }
    }
    Err(format!(
        "ServiceAccount '{name}' kept changing under us; not patched"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::LocalObjectReference;

    #[test]
    fn appends_or_creates_the_list_under_a_version_test() {
        let mut sa = ServiceAccount::default();
        sa.metadata.resource_version = Some("42".into());
        let v = serde_json::to_value(append_patch(&sa, "ecr").unwrap()).unwrap();
        assert_eq!(
            v[0],
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": "42"})
        );
        assert_eq!(
            v[1],
            json!({"op": "add", "path": "/imagePullSecrets", "value": [{"name": "ecr"}]})
        );
        sa.image_pull_secrets = Some(vec![LocalObjectReference {
            name: "other".into(),
        }]);
        let v = serde_json::to_value(append_patch(&sa, "ecr").unwrap()).unwrap();
        assert_eq!(
            v[1],
            json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "ecr"}})
        );
    }
}
