//! The pull Secret as the kubelet reads it: whether it can serve a pull from a registry host
//! (ours, the right type, an entry for the host, not expired), and the username and password it
//! holds for that host. Pure: no I/O, and never shows the Secret's values.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use crate::cluster::ownership::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::cluster::secrets::{DOCKER_CONFIG_JSON, DOCKER_CONFIG_KEY, EXPIRES_AT_ANNOTATION};
use crate::sensitive::Sensitive;

/// How to run a refresh at once, for the fixes that need one.
pub const REFRESH_NOW: &str =
    "kubectl -n ecr-secret-refresher create job --from=cronjob/ecr-secret-refresher refresh-now";

/// Whether an `auths` key names `host`: the kubelet also matches `https://host` keys.
fn names_host(key: &str, host: &str) -> bool {
    key.trim_start_matches("https://")
        .trim_end_matches('/')
        .eq_ignore_ascii_case(host)
}

/// The username and password the Secret holds for `host` (`username`/`password`, else `auth`).
pub fn credentials_for(secret: &Secret, host: &str) -> Option<(String, Sensitive)> {
    let config: Value =
        serde_json::from_slice(&secret.data.as_ref()?.get(DOCKER_CONFIG_KEY)?.0).ok()?;
    let (_, entry) = config
        .get("auths")?
        .as_object()?
        .iter()
        .find(|(k, _)| names_host(k, host))?;
    let field = |k: &str| {
        entry
            .get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    if let (Some(user), Some(password)) = (field("username"), field("password")) {
        return Some((user.to_string(), Sensitive::new(password)));
    }
    let decoded = STANDARD.decode(field("auth")?).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), Sensitive::new(password)))
}

/// Whether the Secret can serve a pull from `host`: ours, the right type, an entry for the
/// host, not expired. `Ok(detail)` or `Err((detail, fix))`. Never shows the Secret's values.
pub fn check_secret(
    secret: &Secret,
    host: &str,
    now: jiff::Timestamp,
) -> Result<String, (String, String)> {
    // Any install of the refresher keeps it fresh; which one does not matter to a pull.
    let owner = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .map(String::as_str);
    if owner != Some(MANAGED_BY_VALUE) {
        return Err((
            format!("not written by ecr-secret-refresher ({MANAGED_BY_LABEL}={})", owner.unwrap_or("<none>")),
            "something else manages this Secret and will not refresh its ECR password: pass --force to a refresh to take it over, or pick another --secret-name and point the pods' imagePullSecrets at it".into(),
        ));
    }
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    if type_ != DOCKER_CONFIG_JSON {
        return Err((
            format!("type {type_}, not {DOCKER_CONFIG_JSON}"),
            "the kubelet ignores it for pulls: delete it and run a refresh, which creates it with the right type".into(),
        ));
    }
    let hosts: Vec<String> = secret
        .data
        .as_ref()
        .and_then(|d| d.get(DOCKER_CONFIG_KEY))
        .and_then(|b| serde_json::from_slice::<Value>(&b.0).ok())
        .and_then(|v| {
            v.get("auths")
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
        })
        .unwrap_or_default();
    if !hosts.iter().any(|k| names_host(k, host)) {
        let held = if hosts.is_empty() {
            "no registry at all".to_string()
        } else {
            hosts.join(", ")
        };
        return Err((
            format!("holds {held}, not {host}"),
            format!(
                "add {host} to the refresher's --registries (ECR_REFRESHER_REGISTRIES in the CronJob) and run it"
            ),
        ));
    }
    let expires = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EXPIRES_AT_ANNOTATION));
    match expires.map(|e| (e, e.parse::<jiff::Timestamp>())) {
        Some((_, Ok(t))) if t <= now => Err((
            format!("holds {host}, but its password expired at {t}"),
            format!(
                "the refresher has not refreshed it since: run it now ({REFRESH_NOW}) and check why the CronJob's last runs failed"
            ),
        )),
        Some((_, Ok(t))) => Ok(format!(
            "ours, {DOCKER_CONFIG_JSON}, holds {host}, expires {t}"
        )),
        _ => Ok(format!(
            "ours, {DOCKER_CONFIG_JSON}, holds {host}, expiry unknown (no {EXPIRES_AT_ANNOTATION} annotation)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use serde_json::json;
    use std::collections::BTreeMap;

    const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

    /// A docker config for tests and examples: `{"auths":{host:{...}}}` with a placeholder password.
    fn docker_config(hosts: &[&str]) -> Vec<u8> {
        let auths: serde_json::Map<String, Value> = hosts
            .iter()
            .map(|h| {
                (
                    h.to_string(),
                    json!({"username": "AWS", "password": "x", "auth": STANDARD.encode("AWS:x")}),
                )
            })
            .collect();
        serde_json::to_vec(&json!({ "auths": auths })).unwrap()
    }

    fn secret(owner: Option<&str>, type_: &str, hosts: &[&str], expires: Option<&str>) -> Secret {
        let mut s = Secret::default();
        s.metadata.labels =
            owner.map(|o| BTreeMap::from([(MANAGED_BY_LABEL.to_string(), o.to_string())]));
        s.metadata.annotations =
            expires.map(|e| BTreeMap::from([(EXPIRES_AT_ANNOTATION.to_string(), e.to_string())]));
        s.type_ = Some(type_.into());
        s.data = Some(BTreeMap::from([(
            DOCKER_CONFIG_KEY.to_string(),
            ByteString(docker_config(hosts)),
        )]));
        s
    }

    #[test]
    fn each_secret_problem_names_its_fix() {
        let now: jiff::Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        let good = secret(
            Some(MANAGED_BY_VALUE),
            DOCKER_CONFIG_JSON,
            &[HOST],
            Some("2026-11-23T20:00:00Z"),
        );
        assert!(
            check_secret(&good, HOST, now)
                .unwrap()
                .contains("expires 2026-11-23T20:00:00Z")
        );
        let https = secret(
            Some(MANAGED_BY_VALUE),
            DOCKER_CONFIG_JSON,
            &[&format!("https://{HOST}")],
            None,
        );
        assert!(
            check_secret(&https, HOST, now)
                .unwrap()
                .contains("expiry unknown")
        );
        let cases = [
            (
                secret(Some("helm"), DOCKER_CONFIG_JSON, &[HOST], None),
                "--force",
            ),
            (
                secret(Some(MANAGED_BY_VALUE), "Opaque", &[HOST], None),
                "delete it and run a refresh",
            ),
            (
                secret(
                    Some(MANAGED_BY_VALUE),
                    DOCKER_CONFIG_JSON,
                    &["111111111111.dkr.ecr.eu-west-1.amazonaws.com"],
                    None,
                ),
                "--registries",
            ),
            (
                secret(
                    Some(MANAGED_BY_VALUE),
                    DOCKER_CONFIG_JSON,
                    &[HOST],
                    Some("2026-11-23T11:00:00Z"),
                ),
                "run it now",
            ),
        ];
        for (s, want) in cases {
            let (detail, fix) = check_secret(&s, HOST, now).unwrap_err();
            assert!(fix.contains(want), "{detail}: {fix}");
            assert!(!detail.contains("QVdTOng"), "{detail}");
        }
    }

    #[test]
    fn reads_the_password_the_kubelet_would_send() {
        let s = secret(Some(MANAGED_BY_VALUE), DOCKER_CONFIG_JSON, &[HOST], None);
        let (user, pw) = credentials_for(&s, HOST).unwrap();
        assert_eq!((user.as_str(), pw.expose()), ("AWS", "x"));
        let mut auth_only = s.clone();
        let config = json!({"auths": {format!("https://{HOST}"): {"auth": STANDARD.encode("AWS:from-auth")}}});
        auth_only.data = Some(BTreeMap::from([(
            DOCKER_CONFIG_KEY.to_string(),
            ByteString(config.to_string().into_bytes()),
        )]));
        let (_, pw) = credentials_for(&auth_only, HOST).unwrap();
        assert_eq!(pw.expose(), "from-auth");
        assert!(credentials_for(&s, "111111111111.dkr.ecr.us-east-1.amazonaws.com").is_none());
    }
}
