//! What the shared AWS profile files lack, in words a user can act on.
//!
//! aws-config reports a profile without credentials, or no profile files at all, only as "the
//! credential provider was not enabled", and a missing `AWS_PROFILE` only as a missing region.
//! This looks at the same files (`AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE`, or the
//! defaults under `~/.aws`) and says which profile was looked for, where, and what is missing.
//! Only section names and key names are read here; values never reach a message.

use std::path::{Path, PathBuf};

/// Keys that give a profile credentials, directly or through another source.
const CREDENTIAL_KEYS: &[&str] = &[
    "aws_access_key_id",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "role_arn",
    "web_identity_token_file",
    "login_session",
];

/// The two shared files and the profile selected in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileFiles {
    pub config: PathBuf,
    pub credentials: PathBuf,
    /// `AWS_PROFILE`, or `default`.
    pub profile: String,
    /// Whether `AWS_PROFILE` chose the profile (rather than the default).
    pub named: bool,
}

/// What the files hold for the selected profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Neither file exists.
    NoFiles,
    /// The files exist, but neither has the profile.
    MissingProfile,
    /// The profile exists, without any credential setting.
    NoCredentials,
    /// The profile has credential settings (aws-config's own error then says what is wrong).
    HasCredentials,
}

impl ProfileFiles {
    /// The files and profile the SDK uses, from the environment.
    pub fn from_env() -> ProfileFiles {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let path = |var: &str, default: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
                .unwrap_or_else(|| PathBuf::from(format!("~/.aws/{default}")))
        };
        let named = std::env::var("AWS_PROFILE")
            .ok()
            .filter(|p| !p.trim().is_empty());
        ProfileFiles {
            config: path("AWS_CONFIG_FILE", "config"),
            credentials: path("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            profile: named.clone().unwrap_or_else(|| "default".into()),
            named: named.is_some(),
        }
    }

    /// Reads the files and looks for the profile.
    pub fn find(&self) -> Finding {
        let read = |p: &Path| std::fs::read_to_string(p).ok();
        find(
            read(&self.config).as_deref(),
            read(&self.credentials).as_deref(),
            &self.profile,
        )
    }

    /// Where the profile was looked for, for a message.
    pub fn where_looked(&self) -> String {
        format!(
            "[profile {p}] in {} or [{p}] in {}",
            self.config.display(),
            self.credentials.display(),
            p = self.profile
        )
    }

    /// The profile, as the user chose it.
    fn profile_named(&self) -> String {
        if self.named {
            format!("AWS_PROFILE={}", self.profile)
        } else {
            format!("the profile `{}`", self.profile)
        }
    }

    /// Why the profile source had no credentials, or `None` when the profile has credential
    /// settings and aws-config's own message says more.
    pub fn why_no_credentials(&self) -> Option<String> {
        match self.find() {
            Finding::NoFiles => Some(format!(
                "neither {} nor {} exists",
                self.config.display(),
                self.credentials.display()
            )),
            Finding::MissingProfile => Some(format!(
                "{}: no such profile (looked for {})",
                self.profile_named(),
                self.where_looked()
            )),
            Finding::NoCredentials => Some(format!(
                "{} has no credentials: set aws_access_key_id and aws_secret_access_key, credential_process, sso_session or role_arn in it ({})",
                self.profile_named(),
                self.where_looked()
            )),
            Finding::HasCredentials => None,
        }
    }

    /// Whether `AWS_PROFILE` names a profile that is in neither file.
    pub fn named_profile_is_missing(&self) -> bool {
        self.named && matches!(self.find(), Finding::NoFiles | Finding::MissingProfile)
    }
}

/// The section name of a line such as `[profile dev]`, `[ default ]` or `[sso-session x]`,
/// as `(kind, name)`; `None` for other lines.
fn section(line: &str) -> Option<(Option<&str>, &str)> {
    let inner = line.trim().strip_prefix('[')?.split(']').next()?.trim();
    match inner.split_once(char::is_whitespace) {
        Some((kind, name)) => Some((Some(kind), name.trim())),
        None => Some((None, inner)),
    }
}

/// Whether the text has the section for `profile`, and whether that section has a credential
/// key. In the config file a profile is `[profile NAME]` (or `[default]`); in the credentials
/// file it is `[NAME]`.
fn scan(text: &str, profile: &str, config_file: bool) -> (bool, bool) {
    let mut found = false;
    let mut has_credentials = false;
    let mut inside = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some((kind, name)) = section(line) {
            inside = match (config_file, kind) {
                (true, Some("profile")) => name == profile,
                (true, None) => name == profile && profile == "default",
                (false, None) => name == profile,
                _ => false,
            };
            found |= inside;
            continue;
        }
        if inside
            && let Some((key, _)) = line.split_once('=')
            && CREDENTIAL_KEYS.contains(&key.trim().to_ascii_lowercase().as_str())
        {
            has_credentials = true;
        }
    }
    (found, has_credentials)
}

/// What the files (their text, `None` when absent) hold for `profile`.
pub fn find(config: Option<&str>, credentials: Option<&str>, profile: &str) -> Finding {
    if config.is_none() && credentials.is_none() {
        return Finding::NoFiles;
    }
    let (in_config, creds_in_config) = scan(config.unwrap_or_default(), profile, true);
    let (in_credentials, creds_in_credentials) =
        scan(credentials.unwrap_or_default(), profile, false);
    match (
        in_config || in_credentials,
        creds_in_config || creds_in_credentials,
    ) {
        (false, _) => Finding::MissingProfile,
        (true, false) => Finding::NoCredentials,
        (true, true) => Finding::HasCredentials,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_the_files_lack() {
        assert_eq!(find(None, None, "default"), Finding::NoFiles);
        let config = "# mine\n[default]\nregion = eu-west-1\n\n[profile ci]\nregion = us-east-1\ncredential_process = /bin/creds\n[sso-session corp]\nsso_start_url = https://x\n";
        assert_eq!(find(Some(config), None, "ci"), Finding::HasCredentials);
        assert_eq!(find(Some(config), None, "default"), Finding::NoCredentials);
        assert_eq!(find(Some(config), None, "nope"), Finding::MissingProfile);
        // An sso-session section is not a profile, whatever its keys.
        assert_eq!(find(Some(config), None, "corp"), Finding::MissingProfile);
        // In the config file, `[ci]` is not the profile `ci`; in the credentials file it is.
        assert_eq!(
            find(Some("[ci]\naws_access_key_id = A\n"), None, "ci"),
            Finding::MissingProfile
        );
        let creds = "[ci]\naws_access_key_id = AKIA\naws_secret_access_key = s\n";
        assert_eq!(
            find(Some(config), Some(creds), "ci"),
            Finding::HasCredentials
        );
        assert_eq!(find(None, Some(creds), "ci"), Finding::HasCredentials);
        assert_eq!(
            find(None, Some("[dev]\nregion = x\n"), "dev"),
            Finding::NoCredentials
        );
    }

    #[test]
    fn messages_name_the_profile_and_the_files() {
        let files = ProfileFiles {
            config: "/h/.aws/config".into(),
            credentials: "/h/.aws/credentials".into(),
            profile: "nope".into(),
            named: true,
        };
        let msg = files.why_no_credentials().unwrap();
        assert!(
            msg.contains("neither /h/.aws/config nor /h/.aws/credentials"),
            "{msg}"
        );
        assert!(files.named_profile_is_missing());
        let msg = files.where_looked();
        assert!(
            msg.contains("[profile nope] in /h/.aws/config or [nope] in /h/.aws/credentials"),
            "{msg}"
        );
    }
}
