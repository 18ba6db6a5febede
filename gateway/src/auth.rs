//! Client identity from JWT bearer tokens.
//!
//! A token arrives in the `Authorization: Bearer` header (Node and .NET clients) or in the
//! `access_token` query parameter (browsers cannot set headers on WebSockets). With no key
//! configured every client is anonymous. With a key, a client without a token is refused unless
//! anonymous access is allowed, and a bad or expired token is refused always: it is never
//! downgraded to anonymous, so a client cannot lose its identity silently.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use thiserror::Error;

use crate::query::QueryParams;

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The user id from the configured claim; `None` for anonymous clients and for tokens
    /// without that claim.
    pub user_id: Option<Arc<str>>,
    /// The groups listed in the token's groups claim (`--relay-groups-claim`); `None` when
    /// anonymous or when the claim is absent.
    pub groups: Option<Arc<[Box<str>]>>,
}

/// Why a request was refused. Clients only ever see an empty 401.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no access token and anonymous access is not allowed")]
    MissingToken,
    #[error("invalid access token: {0}")]
    InvalidToken(String),
}

/// Why the token configuration is unusable.
#[derive(Debug, Error)]
pub enum AuthConfigError {
    #[error("--jwt-public-key: cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("--jwt-public-key: not an RSA public key in PEM format: {0}")]
    Key(jsonwebtoken::errors::Error),
}

/// How client tokens are checked. Built from the operator's configuration
/// (`Config::auth_settings`); the defaults are "anonymous, user id in `sub`, groups in `groups`".
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// HS256 secret (`--jwt-secret`).
    pub jwt_secret: Option<String>,
    /// RS256 public key file, PEM (`--jwt-public-key`); used when no secret is set.
    pub jwt_public_key: Option<std::path::PathBuf>,
    /// The claim holding the user id (`--jwt-user-claim`).
    pub user_claim: String,
    /// The claim listing the groups a token allows (`--relay-groups-claim`).
    pub groups_claim: String,
    /// Accept clients without a token when a key is set (`--allow-anonymous`).
    pub allow_anonymous: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_public_key: None,
            user_claim: "sub".into(),
            groups_claim: "groups".into(),
            allow_anonymous: false,
        }
    }
}

/// Checks tokens against the configured key.
pub struct Authenticator {
    verifier: Option<(DecodingKey, Validation)>,
    user_claim: String,
    groups_claim: String,
    allow_anonymous: bool,
}

impl Authenticator {
    /// Builds the verifier (reads the public key file if one is set).
    pub fn new(settings: &AuthSettings) -> Result<Self, AuthConfigError> {
        let verifier = if let Some(secret) = &settings.jwt_secret {
            Some((DecodingKey::from_secret(secret.as_bytes()), Validation::new(Algorithm::HS256)))
        } else if let Some(path) = &settings.jwt_public_key {
            let pem = std::fs::read(path)
                .map_err(|source| AuthConfigError::Read { path: path.display().to_string(), source })?;
            let key = DecodingKey::from_rsa_pem(&pem).map_err(AuthConfigError::Key)?;
            Some((key, Validation::new(Algorithm::RS256)))
        } else {
            None
        };
        Ok(Self {
            verifier: verifier.map(|(key, mut validation)| {
                validation.leeway = 5;
                validation.validate_aud = false;
                (key, validation)
            }),
            user_claim: settings.user_claim.clone(),
            groups_claim: settings.groups_claim.clone(),
            allow_anonymous: settings.allow_anonymous,
        })
    }

    /// Whether tokens are checked at all.
    pub fn is_enabled(&self) -> bool {
        self.verifier.is_some()
    }

    /// The identity of a request, or why it must be refused.
    pub fn authenticate(&self, headers: &HeaderMap, query: &QueryParams) -> Result<Identity, AuthError> {
        let Some((key, validation)) = &self.verifier else {
            return Ok(Identity::default());
        };
        let Some(token) = bearer_token(headers).or_else(|| query.get("access_token")) else {
            return if self.allow_anonymous { Ok(Identity::default()) } else { Err(AuthError::MissingToken) };
        };
        let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, key, validation)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?
            .claims;
        let user_id = match claims.get(&self.user_claim) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(Arc::from(s.as_str())),
            Some(serde_json::Value::Number(n)) => Some(Arc::from(n.to_string())),
            _ => None,
        };
        Ok(Identity { user_id, groups: groups_of(claims.get(&self.groups_claim)) })
    }
}

/// The groups a claim lists: an array of strings (other items ignored) or one string.
fn groups_of(claim: Option<&serde_json::Value>) -> Option<Arc<[Box<str>]>> {
    match claim? {
        serde_json::Value::String(group) => Some(Arc::from([Box::from(group.as_str())])),
        serde_json::Value::Array(items) => {
            Some(items.iter().filter_map(serde_json::Value::as_str).map(Box::from).collect())
        }
        _ => None,
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn future() -> u64 {
        jsonwebtoken::get_current_timestamp() + 3600
    }

    fn authenticator(allow_anonymous: bool) -> Authenticator {
        let settings = AuthSettings { jwt_secret: Some("s3cret".into()), allow_anonymous, ..AuthSettings::default() };
        Authenticator::new(&settings).unwrap()
    }

    fn query(pairs: &str) -> QueryParams {
        QueryParams::parse(Some(pairs))
    }

    #[test]
    fn without_a_key_everyone_is_anonymous() {
        let auth = Authenticator::new(&AuthSettings::default()).unwrap();
        assert_eq!(auth.authenticate(&HeaderMap::new(), &query("")).unwrap(), Identity::default());
    }

    #[test]
    fn the_user_comes_from_the_sub_claim_in_header_or_query() {
        let auth = authenticator(false);
        let jwt = token("s3cret", serde_json::json!({"sub": "alice", "exp": future()}));
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, format!("Bearer {jwt}").parse().unwrap());
        assert_eq!(auth.authenticate(&headers, &query("")).unwrap().user_id.as_deref(), Some("alice"));
        let from_query = auth.authenticate(&HeaderMap::new(), &query(&format!("access_token={jwt}"))).unwrap();
        assert_eq!(from_query.user_id.as_deref(), Some("alice"));
    }

    #[test]
    fn a_missing_token_is_refused_unless_anonymous_is_allowed() {
        assert_eq!(authenticator(false).authenticate(&HeaderMap::new(), &query("")), Err(AuthError::MissingToken));
        assert_eq!(authenticator(true).authenticate(&HeaderMap::new(), &query("")).unwrap(), Identity::default());
    }

    #[test]
    fn bad_or_expired_tokens_are_refused_even_when_anonymous_is_allowed() {
        let auth = authenticator(true);
        let wrong_key = token("other", serde_json::json!({"sub": "a", "exp": future()}));
        let expired = token("s3cret", serde_json::json!({"sub": "a", "exp": 1_000_000}));
        for bad in [wrong_key.as_str(), expired.as_str(), "garbage"] {
            let result = auth.authenticate(&HeaderMap::new(), &query(&format!("access_token={bad}")));
            assert!(matches!(result, Err(AuthError::InvalidToken(_))), "{bad}: {result:?}");
        }
    }

    #[test]
    fn rs256_tokens_are_checked_against_the_public_key() {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let config = AuthSettings {
            jwt_public_key: Some(format!("{fixtures}/rs256-public.pem").into()),
            ..AuthSettings::default()
        };
        let auth = Authenticator::new(&config).unwrap();
        let private = std::fs::read(format!("{fixtures}/rs256-private.pem")).unwrap();
        let claims = serde_json::json!({"sub": "carol", "exp": future()});
        let jwt =
            encode(&Header::new(Algorithm::RS256), &claims, &EncodingKey::from_rsa_pem(&private).unwrap()).unwrap();
        let identity = auth.authenticate(&HeaderMap::new(), &query(&format!("access_token={jwt}"))).unwrap();
        assert_eq!(identity.user_id.as_deref(), Some("carol"));
        // An HS256 token cannot pass as RS256, whatever its secret.
        let forged = token("anything", serde_json::json!({"sub": "carol", "exp": future()}));
        assert!(auth.authenticate(&HeaderMap::new(), &query(&format!("access_token={forged}"))).is_err());
    }

    #[test]
    fn an_unreadable_public_key_is_a_configuration_error() {
        let config = AuthSettings { jwt_public_key: Some("/nonexistent/key.pem".into()), ..AuthSettings::default() };
        let error = Authenticator::new(&config).err().expect("refused");
        assert!(error.to_string().starts_with("--jwt-public-key:"), "{error}");
    }

    #[test]
    fn the_user_claim_is_configurable() {
        let config = AuthSettings { jwt_secret: Some("k".into()), user_claim: "uid".into(), ..AuthSettings::default() };
        let auth = Authenticator::new(&config).unwrap();
        let jwt = token("k", serde_json::json!({"sub": "x", "uid": 42, "exp": future()}));
        let identity = auth.authenticate(&HeaderMap::new(), &query(&format!("access_token={jwt}"))).unwrap();
        assert_eq!(identity.user_id.as_deref(), Some("42"));
    }

    #[test]
    fn groups_come_from_the_configured_claim_as_an_array_or_one_string() {
        let auth = authenticator(false);
        let groups = |claims: serde_json::Value| {
            let jwt = token("s3cret", claims);
            auth.authenticate(&HeaderMap::new(), &query(&format!("access_token={jwt}"))).unwrap().groups
        };
        let listed = groups(serde_json::json!({"sub": "a", "groups": ["x", 1, "y"], "exp": future()}));
        assert_eq!(listed.as_deref(), Some(&[Box::from("x"), Box::from("y")][..]));
        let one = groups(serde_json::json!({"sub": "a", "groups": "x", "exp": future()}));
        assert_eq!(one.as_deref(), Some(&[Box::from("x")][..]));
        assert_eq!(groups(serde_json::json!({"sub": "a", "exp": future()})), None);
        let config =
            AuthSettings { jwt_secret: Some("k".into()), groups_claim: "rooms".into(), ..AuthSettings::default() };
        let jwt = token("k", serde_json::json!({"rooms": ["r"], "groups": ["g"], "exp": future()}));
        let identity = Authenticator::new(&config)
            .unwrap()
            .authenticate(&HeaderMap::new(), &query(&format!("access_token={jwt}")))
            .unwrap();
        assert_eq!(identity.groups.as_deref(), Some(&[Box::from("r")][..]));
    }
}
