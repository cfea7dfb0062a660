//! ServiceAccount token validation behind a small trait: [`KubeTokenReviewer`] asks the
//! API server with a `TokenReview`; tests use a fake.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::{Api, Client, api::PostParams};
use std::future::Future;

/// The ServiceAccount a token was issued to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSubject {
    /// Namespace of the ServiceAccount.
    pub namespace: String,
    /// ServiceAccount name.
    pub service_account: String,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The API server did not authenticate the token (forged, expired, wrong audience...).
    #[error("token not authenticated: {0}")]
    Unauthenticated(String),
    /// The token authenticated a user that is not a ServiceAccount.
    #[error("token belongs to {0:?}, not to a ServiceAccount")]
    NotServiceAccount(String),
    /// The review could not be made.
    #[error("TokenReview failed: {0}; check the API server and the tokenreviews create permission")]
    Unavailable(String),
}

/// Validates a ServiceAccount token for an audience.
pub trait TokenReviewer: Send + Sync + 'static {
    /// Returns the token's ServiceAccount, or why it is refused.
    fn review(
        &self,
        token: &str,
        audience: &str,
    ) -> impl Future<Output = Result<TokenSubject, TokenError>> + Send;
}

/// Parses `system:serviceaccount:<ns>:<sa>`.
pub fn parse_username(username: &str) -> Result<TokenSubject, TokenError> {
    let rest = username
        .strip_prefix("system:serviceaccount:")
        .ok_or_else(|| TokenError::NotServiceAccount(username.to_string()))?;
    match rest.split_once(':') {
        Some((ns, sa)) if !ns.is_empty() && !sa.is_empty() && !sa.contains(':') => {
            Ok(TokenSubject {
                namespace: ns.to_string(),
                service_account: sa.to_string(),
            })
        }
        _ => Err(TokenError::NotServiceAccount(username.to_string())),
    }
}

/// A [`TokenReviewer`] that creates `TokenReview`s on the API server.
#[derive(Clone)]
pub struct KubeTokenReviewer {
    api: Api<TokenReview>,
}

impl std::fmt::Debug for KubeTokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeTokenReviewer")
    }
}

impl KubeTokenReviewer {
    /// A reviewer using `client`.
    pub fn new(client: Client) -> Self {
        Self {
            api: Api::all(client),
        }
    }
}

impl TokenReviewer for KubeTokenReviewer {
    async fn review(&self, token: &str, audience: &str) -> Result<TokenSubject, TokenError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![audience.to_string()]),
            },
            ..Default::default()
        };
        let out = self
            .api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| TokenError::Unavailable(e.to_string()))?;
        let status = out
            .status
            .ok_or_else(|| TokenError::Unavailable("TokenReview has no status".into()))?;
        if let Some(err) = status.error.filter(|e| !e.is_empty()) {
            return Err(TokenError::Unauthenticated(err));
        }
        if status.authenticated != Some(true) {
            return Err(TokenError::Unauthenticated("authenticated=false".into()));
        }
        if !status
            .audiences
            .unwrap_or_default()
            .iter()
            .any(|a| a == audience)
        {
            return Err(TokenError::Unauthenticated(format!(
                "token audience is not {audience}"
            )));
        }
        let username = status.user.and_then(|u| u.username).unwrap_or_default();
        parse_username(&username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        let s = parse_username("system:serviceaccount:shop:web").unwrap();
        assert_eq!(
            (s.namespace.as_str(), s.service_account.as_str()),
            ("shop", "web")
        );
        for bad in [
            "admin",
            "system:serviceaccount:shop",
            "system:serviceaccount::web",
            "system:node:n1",
        ] {
            assert!(parse_username(bad).is_err(), "{bad}");
        }
    }
}
