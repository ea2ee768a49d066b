//! Building the `.dockerconfigjson` document that a `kubernetes.io/dockerconfigjson` Secret holds.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::aws::ecr::RegistryAuth;
use crate::sensitive::Sensitive;

#[derive(Serialize)]
struct DockerConfig<'a> {
    auths: BTreeMap<&'a str, Entry<'a>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    username: &'a str,
    password: &'a str,
    auth: String,
}

/// The `.dockerconfigjson` bytes: `{"auths":{host:{username,password,auth}}}`, hosts sorted so
/// that the same tokens always give the same bytes.
pub fn docker_config_json(auths: &[RegistryAuth]) -> Sensitive {
    render(auths, false)
}

/// The same document with `password` and `auth` replaced by `<redacted>`, for `--dry-run`.
pub fn redacted_docker_config_json(auths: &[RegistryAuth]) -> String {
    render(auths, true).expose().to_string()
}

fn render(auths: &[RegistryAuth], redact: bool) -> Sensitive {
    let entries = auths
        .iter()
        .map(|a| {
            let entry = if redact {
                Entry {
                    username: &a.username,
                    password: "<redacted>",
                    auth: "<redacted>".to_string(),
                }
            } else {
                Entry {
                    username: &a.username,
                    password: a.password.expose(),
                    auth: STANDARD.encode(format!("{}:{}", a.username, a.password.expose())),
                }
            };
            (a.host.as_str(), entry)
        })
        .collect();
    let doc = DockerConfig { auths: entries };
    // Serializing a map of strings into a String cannot fail.
    Sensitive::new(serde_json::to_string(&doc).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(host: &str, password: &str) -> RegistryAuth {
        RegistryAuth {
            host: host.into(),
            username: "AWS".into(),
            password: Sensitive::new(password),
        }
    }

    #[test]
    fn exact_bytes() {
        let json = docker_config_json(&[
            auth("222222222222.dkr.ecr.us-east-1.amazonaws.com", "pw2"),
            auth("111111111111.dkr.ecr.cn-north-1.amazonaws.com.cn", "pw1"),
        ]);
        assert_eq!(
            json.expose(),
            concat!(
                r#"{"auths":{"111111111111.dkr.ecr.cn-north-1.amazonaws.com.cn":{"username":"AWS","password":"pw1","auth":"QVdTOnB3MQ=="},"#,
                r#""222222222222.dkr.ecr.us-east-1.amazonaws.com":{"username":"AWS","password":"pw2","auth":"QVdTOnB3Mg=="}}}"#
            )
        );
    }

    #[test]
    fn escapes_and_redacts() {
        let json = docker_config_json(&[auth("h", "a\"b\\c")]);
        let v: serde_json::Value = serde_json::from_str(json.expose()).unwrap();
        assert_eq!(v["auths"]["h"]["password"], "a\"b\\c");
        let red = redacted_docker_config_json(&[auth("h", "secret-pw")]);
        assert!(!red.contains("secret-pw"));
        assert!(!red.contains(&STANDARD.encode("AWS:secret-pw")));
        assert!(red.contains(r#""password":"<redacted>""#));
    }
}
