//! What the shared AWS profile files lack, in words a user can act on.
//!
//! aws-config reports a profile without credentials, or no profile files at all, only as "the
//! credential provider was not enabled", a broken file as "could not parse profile file"
//! without the file or line, and a missing `AWS_PROFILE` only as a missing region. This loads
//! the same files with aws-config's own parser and says which profile was looked for, where,
//! and what is missing. Messages carry file names, line numbers, profile and key names, never
//! a value or a line of a file: the parser's errors hold only the file, the line and what was
//! expected there.

use std::path::PathBuf;

use aws_config::profile::ProfileSet;
use aws_types::os_shim_internal::{Env, Fs};

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
#[derive(Debug, Clone)]
pub struct ProfileFiles {
    pub config: PathBuf,
    pub credentials: PathBuf,
    /// `AWS_PROFILE`, or `default`.
    pub profile: String,
    /// Whether `AWS_PROFILE` chose the profile (rather than the default).
    pub named: bool,
    fs: Fs,
    env: Env,
}

/// What the files hold for the selected profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Neither file exists.
    NoFiles,
    /// A file does not parse: the parser's message, with the file and the line.
    Broken(String),
    /// The files exist, but neither has the profile.
    MissingProfile,
    /// The profile exists, without any credential setting.
    NoCredentials,
    /// The profile has credential settings (aws-config's own error then says what is wrong).
    HasCredentials,
}

impl ProfileFiles {
    /// The files and profile the SDK uses, from the process's environment.
    pub fn from_env() -> ProfileFiles {
        ProfileFiles::with(Fs::real(), Env::real())
    }

    /// The files and profile that `env` selects, read through `fs`.
    pub fn with(fs: Fs, env: Env) -> ProfileFiles {
        let home = env.get("HOME").ok().map(PathBuf::from);
        let path = |var: &str, default: &str| {
            env.get(var)
                .ok()
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
                .unwrap_or_else(|| PathBuf::from(format!("~/.aws/{default}")))
        };
        let named = env.get("AWS_PROFILE").ok().filter(|p| !p.trim().is_empty());
        ProfileFiles {
            config: path("AWS_CONFIG_FILE", "config"),
            credentials: path("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            profile: named.clone().unwrap_or_else(|| "default".into()),
            named: named.is_some(),
            fs,
            env,
        }
    }

    /// Loads the files with aws-config's parser and looks for the profile.
    pub async fn find(&self) -> Finding {
        let config = self.fs.read_to_end(&self.config).await.is_ok();
        let credentials = self.fs.read_to_end(&self.credentials).await.is_ok();
        if !config && !credentials {
            return Finding::NoFiles;
        }
        let files = aws_runtime::env_config::file::EnvConfigFiles::default();
        match aws_config::profile::load(&self.fs, &self.env, &files, None).await {
            Err(e) => Finding::Broken(one_line(&crate::errors::chain(&e))),
            Ok(set) => profile_finding(&set, &self.profile),
        }
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

    /// What to tell the user about a finding; `None` when the profile has credential settings
    /// and aws-config's own message says more.
    pub fn explain(&self, finding: &Finding) -> Option<String> {
        match finding {
            Finding::NoFiles => Some(format!(
                "neither {} nor {} exists",
                self.config.display(),
                self.credentials.display()
            )),
            Finding::Broken(message) => Some(message.clone()),
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
}

/// Whether the profile is in the set, and has credential settings.
fn profile_finding(set: &ProfileSet, profile: &str) -> Finding {
    match set.get_profile(profile) {
        None => Finding::MissingProfile,
        Some(p) if CREDENTIAL_KEYS.iter().any(|k| p.get(k).is_some()) => Finding::HasCredentials,
        Some(_) => Finding::NoCredentials,
    }
}

/// The parser's message on one line: it puts the reason under the location.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI-unit-test-secret";

    async fn finding(files: &[(&str, &str)], profile: Option<&str>) -> (Finding, ProfileFiles) {
        let mut vars = vec![("HOME", "/h")];
        if let Some(p) = profile {
            vars.push(("AWS_PROFILE", p));
        }
        let files = ProfileFiles::with(Fs::from_slice(files), Env::from_slice(&vars));
        (files.find().await, files)
    }

    #[tokio::test]
    async fn finds_what_the_files_lack() {
        let config = "# mine\n[default]\nregion = eu-west-1\n\n[profile ci]\nregion = us-east-1\ncredential_process = /bin/creds\n[sso-session corp]\nsso_start_url = https://x\n";
        let with = |c| vec![("/h/.aws/config", c)];
        assert_eq!(finding(&[], None).await.0, Finding::NoFiles);
        assert_eq!(
            finding(&with(config), Some("ci")).await.0,
            Finding::HasCredentials
        );
        assert_eq!(finding(&with(config), None).await.0, Finding::NoCredentials);
        assert_eq!(
            finding(&with(config), Some("nope")).await.0,
            Finding::MissingProfile
        );
        // An sso-session section is not a profile.
        assert_eq!(
            finding(&with(config), Some("corp")).await.0,
            Finding::MissingProfile
        );
        let creds = "[ci]\naws_access_key_id = AKIA\naws_secret_access_key = s\n";
        let both = [("/h/.aws/credentials", creds)];
        assert_eq!(finding(&both, Some("ci")).await.0, Finding::HasCredentials);
    }

    #[tokio::test]
    async fn a_broken_file_is_named_by_file_and_line_only() {
        let broken = format!("[profile dev]\nregion = eu-west-1\naws_secret_access_key {SECRET}\n");
        let (found, files) = finding(&[("/h/.aws/config", &broken)], Some("dev")).await;
        let Finding::Broken(message) = &found else {
            panic!("{found:?}");
        };
        assert!(message.contains("/h/.aws/config on line 3"), "{message}");
        assert!(!message.contains("FMI"), "{message}");
        assert_eq!(files.explain(&found).as_deref(), Some(message.as_str()));
    }

    #[tokio::test]
    async fn messages_name_the_profile_and_the_files() {
        let (found, files) = finding(&[], Some("nope")).await;
        let msg = files.explain(&found).unwrap();
        assert!(
            msg.contains("neither /h/.aws/config nor /h/.aws/credentials"),
            "{msg}"
        );
        let (found, files) = finding(&[("/h/.aws/config", "[default]\n")], Some("nope")).await;
        let msg = files.explain(&found).unwrap();
        assert!(
            msg.contains("AWS_PROFILE=nope: no such profile")
                && msg
                    .contains("[profile nope] in /h/.aws/config or [nope] in /h/.aws/credentials"),
            "{msg}"
        );
    }
}
