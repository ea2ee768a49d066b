//! ECR authorization tokens: one GetAuthorizationToken call per token scope (region and FIPS).

use aws_config::Region;
use aws_config::SdkConfig;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;

use crate::aws::registry::TokenScope;
use crate::errors;
use crate::sensitive::Sensitive;

/// Credentials for one registry host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// Bare hostname: some runtimes do not match `https://` keys.
    pub host: String,
    pub username: String,
    pub password: Sensitive,
}

#[derive(Debug, thiserror::Error)]
pub enum EcrError {
    #[error(
        "ECR GetAuthorizationToken in {region} failed: {message}. Check that the credentials allow ecr:GetAuthorizationToken and that the region is right."
    )]
    Call {
        region: String,
        message: String,
        /// The AWS error code, e.g. `AccessDeniedException`, when AWS answered with one.
        code: Option<String>,
        /// No answer, throttling or a server error: a later run may pass.
        transient: bool,
    },
    #[error("ECR GetAuthorizationToken in {region} returned {what}")]
    Malformed { region: String, what: &'static str },
    #[error(
        "ECR Public GetAuthorizationToken (ecr-public, us-east-1) failed: {message}. Check that the credentials allow ecr-public:GetAuthorizationToken and sts:GetServiceBearerToken."
    )]
    PublicCall { message: String, transient: bool },
}

impl EcrError {
    /// The AWS error code of a failed call.
    pub fn code(&self) -> Option<&str> {
        match self {
            EcrError::Call { code, .. } => code.as_deref(),
            EcrError::Malformed { .. } | EcrError::PublicCall { .. } => None,
        }
    }

    /// Whether a later run may pass without anyone changing anything.
    pub fn may_pass_on_retry(&self) -> bool {
        match self {
            EcrError::Call { transient, .. } | EcrError::PublicCall { transient, .. } => *transient,
            EcrError::Malformed { .. } => false,
        }
    }
}

/// A decoded ECR token: the docker username and password, and when they expire.
#[derive(Debug, Clone)]
pub struct Token {
    pub username: String,
    pub password: Sensitive,
    pub expires_at: Option<Timestamp>,
}

/// Decodes `authorizationToken`: base64 of `user:password`.
pub fn decode_token(encoded: &str) -> Option<(String, Sensitive)> {
    let bytes = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    if user.is_empty() || password.is_empty() {
        return None;
    }
    Some((user.to_string(), Sensitive::new(password)))
}

/// Gets one token for a scope.
async fn token_for(sdk: &SdkConfig, scope: &TokenScope) -> Result<Token, EcrError> {
    let conf = aws_sdk_ecr::config::Builder::from(sdk)
        .region(Region::new(scope.region.clone()))
        // An explicit endpoint (AWS_ENDPOINT_URL, a VPC endpoint) is where the user wants the
        // call to go, and the SDK refuses FIPS on top of one: the registry's `-fips` then only
        // names the token scope.
        .use_fips(scope.fips && sdk.endpoint_url().is_none())
        .build();
    let client = aws_sdk_ecr::Client::from_conf(conf);
    let out = client
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| EcrError::Call {
            region: scope.region.clone(),
            message: errors::chain(&e),
            code: aws_sdk_ecr::error::ProvideErrorMetadata::code(&e).map(str::to_string),
            transient: crate::aws::transient::sdk_error(&e),
        })?;
    read_token(
        &scope.region,
        out.authorization_data
            .and_then(|d| d.into_iter().next())
            .map(|d| (d.authorization_token, d.expires_at)),
    )
}

/// Reads the token out of a GetAuthorizationToken answer, which ECR and ECR Public shape alike:
/// `data` is the first authorization data's `(authorizationToken, expiresAt)`, if there is one.
pub(crate) fn read_token(
    region: &str,
    data: Option<(Option<String>, Option<aws_smithy_types::DateTime>)>,
) -> Result<Token, EcrError> {
    let malformed = |what| EcrError::Malformed {
        region: region.to_string(),
        what,
    };
    let (encoded, expires_at) = data.ok_or_else(|| malformed("no authorization data"))?;
    let encoded = encoded.ok_or_else(|| malformed("no authorization token"))?;
    let (username, password) = decode_token(&encoded)
        .ok_or_else(|| malformed("a token that is not base64 of user:password"))?;
    let expires_at =
        expires_at.and_then(|t| Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok());
    Ok(Token {
        username,
        password,
        expires_at,
    })
}

/// The earlier of two expiries, where `None` is "unknown" and loses to any known one.
pub fn earliest_of(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The credentials for every registry, with the earliest expiry among the tokens.
/// Scopes are fetched concurrently; any failure fails the whole set, before the cluster is touched.
pub async fn registry_auths(
    sdk: &SdkConfig,
    scopes: &[TokenScope],
) -> Result<(Vec<RegistryAuth>, Option<Timestamp>), EcrError> {
    let each = registry_auths_each(sdk, scopes).await?;
    let earliest = each.iter().fold(None, |e, (_, t)| earliest_of(e, *t));
    Ok((each.into_iter().map(|(auth, _)| auth).collect(), earliest))
}

/// The credentials for every registry, each with its own token's expiry (for a metric per
/// registry). Scopes are fetched concurrently; any failure fails the whole set.
pub async fn registry_auths_each(
    sdk: &SdkConfig,
    scopes: &[TokenScope],
) -> Result<Vec<(RegistryAuth, Option<Timestamp>)>, EcrError> {
    let tokens = futures::future::join_all(scopes.iter().map(|s| token_for(sdk, s))).await;
    let mut auths = Vec::new();
    for (scope, token) in scopes.iter().zip(tokens) {
        let token = token?;
        tracing::debug!(region = %scope.region, fips = scope.fips, expires_at = ?token.expires_at, "ECR token obtained");
        for registry in &scope.registries {
            let auth = RegistryAuth {
                host: registry.host.clone(),
                username: token.username.clone(),
                password: token.password.clone(),
            };
            auths.push((auth, token.expires_at));
        }
    }
    Ok(auths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_user_and_password() {
        let (user, pw) = decode_token(&STANDARD.encode("AWS:abc:def=")).unwrap();
        assert_eq!(user, "AWS");
        assert_eq!(pw.expose(), "abc:def=");
    }

    #[test]
    fn reads_a_token_or_says_what_the_answer_lacks() {
        let good = STANDARD.encode("AWS:pw");
        let at = aws_smithy_types::DateTime::from_secs(1_800_000_000);
        let t = read_token("eu-west-1", Some((Some(good), Some(at)))).unwrap();
        assert_eq!((t.username.as_str(), t.password.expose()), ("AWS", "pw"));
        assert_eq!(t.expires_at.map(|e| e.as_second()), Some(1_800_000_000));
        for (data, what) in [
            (None, "no authorization data"),
            (Some((None, None)), "no authorization token"),
            (
                Some((Some("!!!".to_string()), None)),
                "a token that is not base64 of user:password",
            ),
        ] {
            let err = read_token("eu-west-1", data).unwrap_err().to_string();
            assert!(err.contains("eu-west-1") && err.ends_with(what), "{err}");
        }
    }

    #[test]
    fn rejects_malformed_tokens() {
        for bad in [
            "",
            "!!!",
            &STANDARD.encode("nocolon"),
            &STANDARD.encode("AWS:"),
            &STANDARD.encode(":pw"),
        ] {
            assert!(decode_token(bad).is_none(), "{bad}");
        }
    }
}
