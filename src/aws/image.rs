//! Container image references (`HOST/REPOSITORY[:TAG][@DIGEST]`), split into the parts that
//! decide where a pull goes: the registry host, the repository, and the tag or digest.
//!
//! Pure, and shared by the kubelet credential provider (which is sent an image) and
//! `doctor --image` (which is given one). Follows the distribution reference grammar: the first
//! component is a host only when it has a `.` or a `:` or is `localhost`, otherwise the image
//! is on Docker Hub, which is never an ECR registry.

use std::fmt;
use std::str::FromStr;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host, lower-cased, with its port if one was given.
    pub host: String,
    /// The repository path inside the registry, e.g. `team/app`.
    pub repository: String,
    pub tag: Option<String>,
    /// `algorithm:hex`, e.g. `sha256:…`.
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("'{0}' is not an image reference: it is empty")]
    Empty(String),
    #[error(
        "'{image}' names no registry host, so it is on Docker Hub, not ECR: write it as ACCOUNT.dkr.ecr.REGION.amazonaws.com/{image}"
    )]
    NoHost { image: String },
    #[error(
        "'{image}': the repository '{repository}' is not valid (lower-case letters, digits, and '.', '_', '-' or '/' between them)"
    )]
    Repository { image: String, repository: String },
    #[error(
        "'{image}': the tag '{tag}' is not valid (letters, digits, '_', '.', '-', at most 128)"
    )]
    Tag { image: String, tag: String },
    #[error("'{image}': the digest '{digest}' is not valid (expected sha256: and 64 hex digits)")]
    Digest { image: String, digest: String },
}

/// What a pull fetches, as the registry API names it: the digest if there is one (it pins the
/// image, whatever the tag says), else the tag, else `latest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference<'a> {
    Digest(&'a str),
    Tag(&'a str),
}

impl<'a> Reference<'a> {
    pub fn of(tag: Option<&'a str>, digest: Option<&'a str>) -> Reference<'a> {
        match (digest, tag) {
            (Some(d), _) => Reference::Digest(d),
            (None, t) => Reference::Tag(t.unwrap_or("latest")),
        }
    }

    pub fn as_str(&self) -> &'a str {
        match self {
            Reference::Digest(s) | Reference::Tag(s) => s,
        }
    }
}

impl ImageRef {
    /// What the kubelet and the registry call the thing to fetch.
    pub fn reference(&self) -> Reference<'_> {
        Reference::of(self.tag.as_deref(), self.digest.as_deref())
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ImageError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let image = input.trim();
        if image.is_empty() {
            return Err(ImageError::Empty(input.to_string()));
        }
        let (name, digest) = match image.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (image, None),
        };
        let (host, path) = match name.split_once('/') {
            Some((h, p)) if h.contains('.') || h.contains(':') || h == "localhost" => (h, p),
            _ => {
                return Err(ImageError::NoHost {
                    image: image.to_string(),
                });
            }
        };
        // A tag is a `:` in the last path component; a `:` in the host is its port.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t)),
            _ => (path, None),
        };
        if !is_repository(repository) {
            return Err(ImageError::Repository {
                image: image.to_string(),
                repository: repository.to_string(),
            });
        }
        if let Some(t) = tag
            && !is_tag(t)
        {
            return Err(ImageError::Tag {
                image: image.to_string(),
                tag: t.to_string(),
            });
        }
        if let Some(d) = digest
            && !is_digest(d)
        {
            return Err(ImageError::Digest {
                image: image.to_string(),
                digest: d.to_string(),
            });
        }
        Ok(ImageRef {
            host: host.to_ascii_lowercase(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        })
    }
}

/// Path components of lower-case alphanumerics joined by `.`, `_`, `__` or runs of `-`.
fn is_repository(repository: &str) -> bool {
    !repository.is_empty()
        && repository.len() <= 256
        && repository.split('/').all(|component| {
            let bytes = component.as_bytes();
            let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            !bytes.is_empty()
                && bytes.first().is_some_and(alnum)
                && bytes.last().is_some_and(alnum)
                && bytes.iter().all(|b| alnum(b) || b"._-".contains(b))
                && !component.contains("..")
                && !component.contains("___")
        })
}

fn is_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes
            .first()
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b))
}

fn is_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn splits_host_repository_tag_and_digest() {
        let i: ImageRef = "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/team/app:v1.2"
            .parse()
            .unwrap();
        assert_eq!(i.host, "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn");
        assert_eq!(i.repository, "team/app");
        assert_eq!(i.tag.as_deref(), Some("v1.2"));
        assert_eq!(i.reference(), Reference::Tag("v1.2"));

        let with_digest = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/app@{DIGEST}");
        let i: ImageRef = with_digest.parse().unwrap();
        assert_eq!(
            (i.tag.as_deref(), i.digest.as_deref()),
            (None, Some(DIGEST))
        );
        assert_eq!(i.reference(), Reference::Digest(DIGEST));
        assert_eq!(i.reference().as_str(), DIGEST);
        assert_eq!(i.to_string(), with_digest);

        let both = format!("public.ecr.aws/docker/library/busybox:1.36@{DIGEST}");
        let i: ImageRef = both.parse().unwrap();
        assert_eq!(i.repository, "docker/library/busybox");
        assert_eq!(i.tag.as_deref(), Some("1.36"));
        assert_eq!(i.to_string(), both);
    }

    #[test]
    fn no_tag_means_latest_and_a_port_is_not_a_tag() {
        let i: ImageRef = "localhost:5000/app".parse().unwrap();
        assert_eq!(i.host, "localhost:5000");
        assert_eq!(i.tag, None);
        assert_eq!(i.reference(), Reference::Tag("latest"));
    }

    #[test]
    fn docker_hub_and_malformed_references_are_refused_by_name() {
        let cases = [
            ("nginx:1.25", "Docker Hub"),
            ("library/nginx", "Docker Hub"),
            ("", "empty"),
            ("example.com/App", "repository 'App'"),
            ("example.com/app:", "tag ''"),
            ("example.com/app:-x", "tag '-x'"),
            ("example.com/app@sha256:12", "digest 'sha256:12'"),
            ("example.com/", "repository ''"),
        ];
        for (input, want) in cases {
            let err = input.parse::<ImageRef>().unwrap_err().to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
    }
}
