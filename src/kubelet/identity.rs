//! Whose identity asks ECR for the token: the role the pod's ServiceAccount names (KEP-4412),
//! or the node's own.

use crate::aws::registry::partition;
use crate::aws::settings::is_role_arn;
use crate::kubelet::protocol::Request;
use crate::sensitive::Sensitive;

/// The identity for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The node's credentials, from the same sources as the refresh mode.
    Node,
    /// The ServiceAccount's role, assumed with its token.
    Role { arn: String, token: Sensitive },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "the ServiceAccount annotation {key} is '{value}', which is not an IAM role ARN such as arn:aws:iam::123456789012:role/ecr-pull: fix the annotation on the pod's ServiceAccount"
    )]
    BadRole { key: String, value: String },
    #[error(
        "the ServiceAccount names a role ({key}) but the kubelet sent no ServiceAccount token: set tokenAttributes.serviceAccountTokenAudience in the kubelet's CredentialProviderConfig"
    )]
    NoToken { key: String },
    #[error(
        "refusing to pull with the node's identity (--require-role): the pod's ServiceAccount has no {key} annotation. Annotate the ServiceAccount with the role to pull with, and list {key} in the kubelet config's tokenAttributes annotation keys"
    )]
    RoleRequired { key: String },
    #[error(
        "the ServiceAccount's role {arn} is in the AWS partition {role_partition}, but the image's registry {registry} is in {registry_partition}: a role is only known in its own partition, so it cannot pull from there. Annotate the ServiceAccount with a role of the registry's partition ({registry_partition})"
    )]
    Partition {
        arn: String,
        role_partition: String,
        registry: String,
        registry_partition: &'static str,
    },
}

/// Refuses a ServiceAccount role from another partition than the registry's (an `arn:aws-cn:`
/// role for a us-east-1 image): STS in the registry's partition does not know the role, and
/// its refusal would read like a trust-policy problem.
pub fn check_partition(
    who: &Identity,
    registry: &str,
    registry_region: &str,
) -> Result<(), IdentityError> {
    let Identity::Role { arn, .. } = who else {
        return Ok(());
    };
    let role_partition = arn.split(':').nth(1).unwrap_or_default();
    let registry_partition = partition(registry_region);
    if role_partition == registry_partition {
        return Ok(());
    }
    Err(IdentityError::Partition {
        arn: arn.clone(),
        role_partition: role_partition.to_string(),
        registry: registry.to_string(),
        registry_partition,
    })
}

/// Chooses the identity: the role in annotation `key` when the ServiceAccount names one,
/// otherwise the node, unless `require_role`.
pub fn choose(request: &Request, key: &str, require_role: bool) -> Result<Identity, IdentityError> {
    let role = request
        .service_account_annotations
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty());
    match (role, &request.service_account_token) {
        (Some(arn), _) if !is_role_arn(arn) => Err(IdentityError::BadRole {
            key: key.to_string(),
            value: arn.to_string(),
        }),
        (Some(arn), Some(token)) => Ok(Identity::Role {
            arn: arn.to_string(),
            token: token.clone(),
        }),
        (Some(_), None) => Err(IdentityError::NoToken {
            key: key.to_string(),
        }),
        (None, _) if require_role => Err(IdentityError::RoleRequired {
            key: key.to_string(),
        }),
        (None, _) => Ok(Identity::Node),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::protocol::ApiVersion;

    const KEY: &str = "eks.amazonaws.com/ecr-role-arn";
    const ROLE: &str = "arn:aws:iam::210987654321:role/team-a-pull";

    fn request(token: Option<&str>, annotations: &[(&str, &str)]) -> Request {
        Request {
            api_version: ApiVersion::V1,
            image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/app".into(),
            service_account_token: token.map(Sensitive::new),
            service_account_annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_annotated_role_with_the_token() {
        let got = choose(&request(Some("t"), &[(KEY, ROLE)]), KEY, false).unwrap();
        assert_eq!(
            got,
            Identity::Role {
                arn: ROLE.into(),
                token: Sensitive::new("t")
            }
        );
        // Another key is configured: this annotation is not ours.
        assert_eq!(
            choose(
                &request(Some("t"), &[(KEY, ROLE)]),
                "example.com/role",
                false
            ),
            Ok(Identity::Node)
        );
    }

    #[test]
    fn the_node_when_no_role_is_named_unless_one_is_required() {
        for r in [
            request(None, &[]),
            request(Some("t"), &[]),
            request(Some("t"), &[(KEY, " ")]),
        ] {
            assert_eq!(choose(&r, KEY, false), Ok(Identity::Node));
            let err = choose(&r, KEY, true).unwrap_err().to_string();
            assert!(err.contains("--require-role") && err.contains(KEY), "{err}");
        }
    }

    #[test]
    fn a_role_pulls_only_in_its_own_partition() {
        let role = |arn: &str| Identity::Role {
            arn: arn.into(),
            token: Sensitive::new("t"),
        };
        let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        let err = check_partition(
            &role("arn:aws-cn:iam::123456789012:role/r"),
            host,
            "us-east-1",
        )
        .unwrap_err()
        .to_string();
        for want in [
            "arn:aws-cn:iam::123456789012:role/r",
            "aws-cn",
            host,
            "partition aws",
        ] {
            assert!(err.contains(want), "{want}: {err}");
        }
        assert!(check_partition(&role(ROLE), host, "us-east-1").is_ok());
        assert!(check_partition(&role("arn:aws-cn:iam::1:role/r"), "h", "cn-northwest-1").is_ok());
        assert!(check_partition(&role(ROLE), "h", "us-gov-west-1").is_err());
        assert!(check_partition(&Identity::Node, "h", "cn-north-1").is_ok());
    }

    #[test]
    fn a_bad_annotation_or_a_missing_token_is_an_error() {
        let err = choose(&request(Some("t"), &[(KEY, "team-a-pull")]), KEY, false).unwrap_err();
        assert!(err.to_string().contains("'team-a-pull'"), "{err}");
        let err = choose(&request(None, &[(KEY, ROLE)]), KEY, false).unwrap_err();
        assert!(
            err.to_string().contains("serviceAccountTokenAudience"),
            "{err}"
        );
    }
}
