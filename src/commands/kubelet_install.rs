//! `kubelet-credential-provider install`: puts the plugin on a node, for cloud-init, user data
//! or a one-off DaemonSet. Copies the running binary into the kubelet's bin dir and puts our
//! provider into its CredentialProviderConfig, each through a temporary file in the same
//! directory, fsync and rename, so a kubelet starting at that moment sees the old file or the
//! new one, never half of one. A file that is already as it should be is not written at all,
//! so running it at every boot changes nothing.
//!
//! Everything that can be refused (flags, the config file) is checked before anything is
//! written.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::ValueEnum;

use crate::aws::settings::CredentialsSource;
use crate::commands::kubelet_credential_provider::{self, KubeletError};
use crate::config::{Cli, KubeletInstallArgs};
use crate::kubelet::provider_config::{
    self, Change, Entry, FIRST_CACHE_TYPE_MINOR, FIRST_TOKEN_MINOR, PROVIDER_NAME,
    ServiceAccountRoles,
};
use crate::kubelet::yaml::{self, Format};

/// Larger than any credential provider config; a bound so a wrong path (a log, a disk image)
/// is refused instead of read whole.
const MAX_CONFIG: u64 = 1024 * 1024;
const BINARY_MODE: u32 = 0o755;
const CONFIG_MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Settings(#[from] KubeletError),
    #[error(
        "--require-role only applies with --service-account-roles: without ServiceAccount tokens every pull would be refused"
    )]
    RequireRoleAlone,
    #[error(
        "--token-audience: '{0}' is not an audience: give the one the role's trust policy expects, e.g. sts.amazonaws.com"
    )]
    Audience(String),
    #[error("--kubelet-version: '{0}' is not a Kubernetes version such as 1.33 or v1.34.2")]
    KubeletVersion(String),
    #[error(
        "--kubelet-version {0}: per-ServiceAccount roles need a kubelet of 1.33 or later (KEP-4412); drop --service-account-roles for this node"
    )]
    KubeletTooOld(String),
    #[error("cannot find this program's own file to install: {0}")]
    OwnExecutable(String),
    #[error("cannot read the current directory to resolve relative paths: {0}")]
    CurrentDir(String),
    #[error("--bin-dir {dir}: {why}")]
    BinDir { dir: String, why: String },
    #[error("--config {path}: {why}")]
    ConfigPath { path: String, why: String },
    /// The file does not parse, or is not a CredentialProviderConfig (the error says which).
    #[error(
        "--config {path}: {error}, so it was left alone and nothing was installed. Fix the file, or move it away to have a new one written"
    )]
    ConfigRefused { path: String, error: String },
    #[error("cannot write {path}: {why}{after}")]
    Write {
        path: String,
        why: String,
        /// What had already been done before the failure.
        after: String,
    },
}

/// The environment variables of the node's identity this command carries into the provider's
/// `env`, by flag id: the flags' own twins, so the plugin reads them as if given.
pub const CARRIED_ENV: [(&str, &str); 15] = [
    ("ra_certificate", "ECR_REFRESHER_RA_CERTIFICATE"),
    ("ra_private_key", "ECR_REFRESHER_RA_PRIVATE_KEY"),
    ("ra_intermediates", "ECR_REFRESHER_RA_INTERMEDIATES"),
    ("ra_trust_anchor_arn", "ECR_REFRESHER_RA_TRUST_ANCHOR_ARN"),
    ("ra_profile_arn", "ECR_REFRESHER_RA_PROFILE_ARN"),
    ("ra_role_arn", "ECR_REFRESHER_RA_ROLE_ARN"),
    ("ra_session_duration", "ECR_REFRESHER_RA_SESSION_DURATION"),
    ("ra_role_session_name", "ECR_REFRESHER_RA_ROLE_SESSION_NAME"),
    ("ra_endpoint", "ECR_REFRESHER_RA_ENDPOINT"),
    (
        "ra_private_key_passphrase_env",
        "ECR_REFRESHER_RA_PRIVATE_KEY_PASSPHRASE_ENV",
    ),
    (
        "ra_private_key_passphrase_file",
        "ECR_REFRESHER_RA_PRIVATE_KEY_PASSPHRASE_FILE",
    ),
    ("region", "ECR_REFRESHER_REGION"),
    ("credentials_source", "ECR_REFRESHER_CREDENTIALS_SOURCE"),
    ("assume_role_arn", "ECR_REFRESHER_ASSUME_ROLE_ARN"),
    ("external_id", "ECR_REFRESHER_EXTERNAL_ID"),
];

/// The per-ServiceAccount settings, carried the same way.
pub const ROLE_ANNOTATION_ENV: &str = "ECR_REFRESHER_ROLE_ANNOTATION";
pub const REQUIRE_ROLE_ENV: &str = "ECR_REFRESHER_REQUIRE_ROLE";
const ROLE_SESSION_NAME_ENV: &str = "ECR_REFRESHER_ROLE_SESSION_NAME";

/// Installs, and returns what to print.
pub fn run(cli: &Cli, args: &KubeletInstallArgs) -> Result<String, InstallError> {
    let settings = kubelet_credential_provider::settings(cli)?;
    if settings.require_role && !args.service_account_roles {
        return Err(InstallError::RequireRoleAlone);
    }
    let audience = args.token_audience.trim();
    if audience.is_empty() || audience.contains(char::is_whitespace) {
        return Err(InstallError::Audience(args.token_audience.clone()));
    }
    let cwd = std::env::current_dir().map_err(|e| InstallError::CurrentDir(e.to_string()))?;
    let minor = match &args.kubelet_version {
        Some(v) => Some(
            provider_config::kubelet_minor(v)
                .ok_or_else(|| InstallError::KubeletVersion(v.clone()))?,
        ),
        None => None,
    };
    if let (Some(m), Some(v)) = (minor, &args.kubelet_version)
        && m < FIRST_TOKEN_MINOR
    {
        return Err(InstallError::KubeletTooOld(v.clone()));
    }
    let service_account_roles = args.service_account_roles.then(|| ServiceAccountRoles {
        audience: args.token_audience.trim().to_string(),
        annotation: settings.role_annotation.clone(),
        cache_type: minor.is_none_or(|m| m >= FIRST_CACHE_TYPE_MINOR),
    });
    let mut env = Vec::new();
    if args.service_account_roles {
        env.push((
            ROLE_ANNOTATION_ENV.to_string(),
            settings.role_annotation.clone(),
        ));
        env.push((
            REQUIRE_ROLE_ENV.to_string(),
            settings.require_role.to_string(),
        ));
    }
    env.extend(node_env(cli, &cwd));
    let entry = Entry {
        service_account_roles,
        env,
    };

    let bin_dir = cwd.join(&args.bin_dir);
    let config_path = resolve_config(&cwd.join(&args.config))?;
    // The config first: a file we would refuse must stop the install before the binary lands.
    let (config_text, config_change, had_comments) = plan_config(&config_path, &entry)?;
    check_dir(&bin_dir).map_err(|why| InstallError::BinDir {
        dir: bin_dir.display().to_string(),
        why,
    })?;
    let target = bin_dir.join(PROVIDER_NAME);
    let binary = install_binary(&target)?;
    if let Some(text) = &config_text {
        let mode = fs::metadata(&config_path).map_or(CONFIG_MODE, |m| m.permissions().mode());
        write_atomically(&config_path, text.as_bytes(), mode & 0o7777).map_err(|e| {
            InstallError::Write {
                path: config_path.display().to_string(),
                why: e.to_string(),
                after: match binary {
                    BinaryChange::Unchanged => String::new(),
                    _ => format!(" ({} was installed)", target.display()),
                },
            }
        })?;
    }
    Ok(report(
        &target,
        binary,
        &config_path,
        config_change,
        had_comments,
        args,
        minor,
    ))
}

/// The node-identity flags that were set, as `env` entries; paths made absolute, since the
/// kubelet runs the plugin from a directory of its own.
fn node_env(cli: &Cli, cwd: &Path) -> Vec<(String, String)> {
    let ra = &cli.roles_anywhere;
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| cwd.join(p).display().to_string());
    let source = (cli.credentials_source != CredentialsSource::Auto)
        .then(|| cli.credentials_source.to_possible_value())
        .flatten()
        .map(|v| v.get_name().to_string());
    let session_duration =
        (ra.ra_session_duration != 3600).then(|| ra.ra_session_duration.to_string());
    let values: [Option<String>; 15] = [
        path(&ra.ra_certificate),
        path(&ra.ra_private_key),
        path(&ra.ra_intermediates),
        ra.ra_trust_anchor_arn.clone(),
        ra.ra_profile_arn.clone(),
        ra.ra_role_arn.clone(),
        session_duration,
        ra.ra_role_session_name.clone(),
        ra.ra_endpoint.clone(),
        ra.ra_private_key_passphrase_env.clone(),
        path(&ra.ra_private_key_passphrase_file),
        cli.region.clone(),
        source,
        cli.assume_role_arn.clone(),
        cli.assume_role_arn.as_ref().and(cli.external_id.clone()),
    ];
    let mut env: Vec<(String, String)> = CARRIED_ENV
        .iter()
        .zip(values)
        .filter_map(|((_, name), value)| value.map(|v| (name.to_string(), v)))
        .collect();
    if cli.assume_role_arn.is_some() && cli.role_session_name != "ecr-secret-refresher" {
        env.push((
            ROLE_SESSION_NAME_ENV.to_string(),
            cli.role_session_name.clone(),
        ));
    }
    env
}

/// The file to write: a symlink's target, so the link stays a link.
fn resolve_config(path: &Path) -> Result<PathBuf, InstallError> {
    let err = |why: String| InstallError::ConfigPath {
        path: path.display().to_string(),
        why,
    };
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => match fs::canonicalize(path) {
            Ok(target) => Ok(target),
            Err(e) => Err(err(format!("a symlink whose target cannot be read: {e}"))),
        },
        Ok(m) if m.is_dir() => Err(err(
            "is a directory: name the config file itself, e.g. /etc/kubernetes/image-credential-provider-config.yaml".into(),
        )),
        Ok(_) => Ok(path.to_path_buf()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = path.parent().unwrap_or(Path::new("/"));
            check_dir(parent).map_err(|why| err(format!("its directory: {why}")))?;
            Ok(path.to_path_buf())
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// The config file's next text (`None`: already as it should be), what changes, and whether
/// the old text had comments (which a rewrite does not keep).
fn plan_config(path: &Path, entry: &Entry) -> Result<(Option<String>, Change, bool), InstallError> {
    let shown = path.display().to_string();
    let unreadable = |why: String| InstallError::ConfigPath {
        path: shown.clone(),
        why,
    };
    let (config, format, had_comments) = match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let format = if path.extension().is_some_and(|e| e == "json") {
                Format::Json
            } else {
                Format::Yaml
            };
            (provider_config::empty_config(), format, false)
        }
        Err(e) => return Err(unreadable(e.to_string())),
        Ok(m) if m.len() > MAX_CONFIG => {
            return Err(unreadable(format!(
                "{} bytes is not a credential provider config (at most {MAX_CONFIG})",
                m.len()
            )));
        }
        Ok(_) => {
            let text = fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
            let node = yaml::parse(&text).map_err(|e| InstallError::ConfigRefused {
                path: shown.clone(),
                error: e.to_string(),
            })?;
            let comments = text
                .lines()
                .any(|l| l.trim_start().starts_with('#') || l.contains(" #"));
            (node, yaml::format_of(&text), comments)
        }
    };
    let (next, change) =
        provider_config::merge(config, entry).map_err(|e| InstallError::ConfigRefused {
            path: shown.clone(),
            error: e.to_string(),
        })?;
    let text = (change != Change::Unchanged).then(|| yaml::render(&next, format));
    let dropped_comments = had_comments && text.is_some();
    Ok((text, change, dropped_comments))
}

fn check_dir(dir: &Path) -> Result<(), String> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err("is not a directory".into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
            "does not exist: create it first (mkdir -p {})",
            dir.display()
        )),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            Err("a part of the path is a file, not a directory".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinaryChange {
    Installed,
    Unchanged,
    /// The same bytes, but the mode was not 0755.
    ModeFixed,
}

fn install_binary(target: &Path) -> Result<BinaryChange, InstallError> {
    let exe = std::env::current_exe().map_err(|e| InstallError::OwnExecutable(e.to_string()))?;
    let bytes = fs::read(&exe)
        .map_err(|e| InstallError::OwnExecutable(format!("{}: {e}", exe.display())))?;
    let write_err = |e: io::Error| InstallError::Write {
        path: target.display().to_string(),
        why: e.to_string(),
        after: String::new(),
    };
    if let Ok(m) = fs::metadata(target)
        && m.is_file()
        && m.len() == bytes.len() as u64
        && fs::read(target).is_ok_and(|old| old == bytes)
    {
        if m.permissions().mode() & 0o7777 == BINARY_MODE {
            return Ok(BinaryChange::Unchanged);
        }
        fs::set_permissions(target, fs::Permissions::from_mode(BINARY_MODE)).map_err(write_err)?;
        return Ok(BinaryChange::ModeFixed);
    }
    write_atomically(target, &bytes, BINARY_MODE).map_err(write_err)?;
    Ok(BinaryChange::Installed)
}

/// Writes `bytes` to `path` through a temporary file in the same directory: written, given
/// `mode`, fsynced, renamed over `path`, and the directory fsynced so the rename survives a
/// crash. On any failure the temporary file is removed.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The process id alone could repeat after a crash at boot (cloud-init runs get low, equal
    // ids), and create_new would then refuse every later install: add the time too.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        // Set after creation: the umask does not apply, and nobody reads a half-written file.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn report(
    target: &Path,
    binary: BinaryChange,
    config: &Path,
    change: Change,
    had_comments: bool,
    args: &KubeletInstallArgs,
    minor: Option<u32>,
) -> String {
    let mut out = String::new();
    if binary == BinaryChange::Unchanged && change == Change::Unchanged {
        out.push_str("Nothing to change: ");
        out.push_str(&format!(
            "{} is already this binary and {} already has this provider entry; nothing was written.\n",
            target.display(),
            config.display()
        ));
    } else {
        out.push_str(&match binary {
            BinaryChange::Installed => format!("Installed {}.\n", target.display()),
            BinaryChange::ModeFixed => format!(
                "{} is already this binary; set its mode to 0755.\n",
                target.display()
            ),
            BinaryChange::Unchanged => format!(
                "{} is already this binary; not written.\n",
                target.display()
            ),
        });
        out.push_str(&match change {
            Change::Added => format!(
                "Added the {PROVIDER_NAME} provider to {}.\n",
                config.display()
            ),
            Change::Replaced => format!(
                "Replaced the {PROVIDER_NAME} provider in {}; the other providers are kept.\n",
                config.display()
            ),
            Change::Unchanged => format!(
                "{} already has this provider entry; not written.\n",
                config.display()
            ),
        });
        if had_comments {
            out.push_str(&format!(
                "The comments that were in {} are not kept.\n",
                config.display()
            ));
        }
    }
    let dir = target.parent().unwrap_or(Path::new("/"));
    out.push_str("The kubelet needs these flags (restart it after adding them):\n");
    out.push_str(&format!(
        "  --image-credential-provider-bin-dir={}\n",
        dir.display()
    ));
    out.push_str(&format!(
        "  --image-credential-provider-config={}\n",
        config.display()
    ));
    if args.service_account_roles {
        if minor == Some(FIRST_TOKEN_MINOR) {
            out.push_str(
                "  --feature-gates=KubeletServiceAccountTokenForCredentialProviders=true\n",
            );
        }
        out.push_str(&format!(
            "The nodes must be allowed to request ServiceAccount tokens for the audience {}: see manifests/kubelet/audience-rbac.yaml.\n",
            args.token_audience.trim()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_carried_names_are_the_flags_own_variables() {
        let cmd = Cli::command();
        let mut all: Vec<(&str, &str)> = CARRIED_ENV.to_vec();
        all.push(("role_annotation", ROLE_ANNOTATION_ENV));
        all.push(("require_role", REQUIRE_ROLE_ENV));
        all.push(("role_session_name", ROLE_SESSION_NAME_ENV));
        for (id, name) in all {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_id() == id)
                .unwrap_or_else(|| panic!("no flag {id}"));
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(name), "{id}");
        }
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        // A directory where the file should go: the rename fails after the temp file exists.
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), "k").unwrap();
        assert!(write_atomically(&target, b"new", 0o644).is_err());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x"]);
        write_atomically(&dir.path().join("y"), b"new", 0o640).unwrap();
        let m = fs::metadata(dir.path().join("y")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o640);
        assert_eq!(fs::read(dir.path().join("y")).unwrap(), b"new");
    }
}
