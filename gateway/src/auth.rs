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
    /// Every claim of the token as (type, value) pairs, kept only when upstream webhooks
    /// need them (`X-ASRS-User-Claims`); `None` otherwise, so connections pay nothing.
    pub claims: Option<Arc<[Claim]>>,
}

/// One token claim: its type and one value.
pub type Claim = (Box<str>, Box<str>);

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
    /// Keep every claim of a token in the identity (upstream webhooks send them on).
    pub keep_claims: bool,
    /// Access keys (`--access-key`, `--access-key-secondary`): tokens signed HS256 with one
    /// of them for `<endpoint>/client/?hub=<hub>` are accepted as Azure SignalR issues them,
    /// the user in `nameid`.
    pub access_keys: Vec<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_public_key: None,
            user_claim: "sub".into(),
            groups_claim: "groups".into(),
            allow_anonymous: false,
            keep_claims: false,
            access_keys: Vec::new(),
        }
    }
}

/// Checks tokens against the configured key.
pub struct Authenticator {
    verifier: Option<(DecodingKey, Validation)>,
    /// The access keys, for tokens issued as Azure SignalR issues them (see [`AuthSettings`]).
    access_keys: Vec<DecodingKey>,
    user_claim: String,
    groups_claim: String,
    allow_anonymous: bool,
    keep_claims: bool,
}

/// The claim Azure SignalR's tokens carry the user id in (.NET's name identifier, shortened).
const AZURE_USER_CLAIM: &str = "nameid";

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
            access_keys: settings.access_keys.iter().map(|key| DecodingKey::from_secret(key.as_bytes())).collect(),
            user_claim: settings.user_claim.clone(),
            groups_claim: settings.groups_claim.clone(),
            allow_anonymous: settings.allow_anonymous,
            keep_claims: settings.keep_claims,
        })
    }

    /// Whether tokens are checked at all.
    pub fn is_enabled(&self) -> bool {
        self.verifier.is_some()
    }

    /// The identity of a request, or why it must be refused.
    pub fn authenticate(&self, headers: &HeaderMap, query: &QueryParams) -> Result<Identity, AuthError> {
        self.authenticate_for(None, headers, query, false)
    }

    /// The identity of a request for `hub`. A token issued for Azure SignalR's client endpoint
    /// (its `aud` names `/client/?hub=`) is checked against the access keys and must name this
    /// hub; other tokens against the configured key. `token_optional`: a request without a
    /// token is anonymous even when anonymous access is off (a connect hook decides instead).
    pub fn authenticate_for(
        &self,
        hub: Option<&str>,
        headers: &HeaderMap,
        query: &QueryParams,
        token_optional: bool,
    ) -> Result<Identity, AuthError> {
        let token = bearer_token(headers).or_else(|| query.get("access_token"));
        if let Some(audience) = token.and_then(azure_audience).filter(|_| !self.access_keys.is_empty()) {
            return self.azure_identity(token.unwrap_or_default(), &audience, hub);
        }
        let Some((key, validation)) = &self.verifier else {
            return Ok(Identity::default());
        };
        let Some(token) = token else {
            return if self.allow_anonymous || token_optional {
                Ok(Identity::default())
            } else {
                Err(AuthError::MissingToken)
            };
        };
        let claims = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?
            .claims;
        Ok(self.identity(&claims, &self.user_claim))
    }

    /// The identity in a token signed by an access key for Azure's client endpoint of `hub`.
    fn azure_identity(&self, token: &str, audience: &str, hub: Option<&str>) -> Result<Identity, AuthError> {
        if let Some(hub) = hub {
            if !audience_names_hub(audience, hub) {
                return Err(AuthError::InvalidToken(format!("the token is for another hub ({audience})")));
            }
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.validate_aud = false;
        let mut last = None;
        for key in &self.access_keys {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(decoded) => return Ok(self.identity(&decoded.claims, AZURE_USER_CLAIM)),
                Err(error) => last = Some(error.to_string()),
            }
        }
        Err(AuthError::InvalidToken(last.unwrap_or_default()))
    }

    fn identity(&self, claims: &Claims, user_claim: &str) -> Identity {
        let user_id = match claims.get(user_claim) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(Arc::from(s.as_str())),
            Some(serde_json::Value::Number(n)) => Some(Arc::from(n.to_string())),
            _ => None,
        };
        let claims_kept = self.keep_claims.then(|| claim_pairs(claims));
        Identity { user_id, groups: groups_of(claims.get(&self.groups_claim)), claims: claims_kept }
    }
}

type Claims = serde_json::Map<String, serde_json::Value>;

/// Every claim as (type, value) pairs: one pair per item of an array, other values as text.
fn claim_pairs(claims: &Claims) -> Arc<[Claim]> {
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(text) => Box::from(text.as_str()),
        other => Box::from(other.to_string()),
    };
    let mut pairs = Vec::new();
    for (kind, value) in claims {
        match value {
            serde_json::Value::Array(items) => {
                pairs.extend(items.iter().map(|item| (Box::from(kind.as_str()), text(item))))
            }
            value => pairs.push((Box::from(kind.as_str()), text(value))),
        }
    }
    pairs.into()
}

/// The `aud` of an unverified token when it is for Azure SignalR's client endpoint.
fn azure_audience(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    let audience = match claims.get("aud")? {
        serde_json::Value::String(audience) => audience.clone(),
        serde_json::Value::Array(items) => {
            items.iter().filter_map(serde_json::Value::as_str).find(|a| is_client_url(a))?.to_owned()
        }
        _ => return None,
    };
    is_client_url(&audience).then_some(audience)
}

fn is_client_url(url: &str) -> bool {
    url.contains("/client/?") || url.contains("/client?")
}

/// Whether a client endpoint URL's `hub` parameter is `hub` (without regard to case).
fn audience_names_hub(audience: &str, hub: &str) -> bool {
    let query = audience.split_once('?').map(|(_, query)| query).unwrap_or_default();
    QueryParams::parse(Some(query)).get("hub").is_some_and(|named| named.eq_ignore_ascii_case(hub))
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

    fn azure(keep_claims: bool) -> Authenticator {
        let settings = AuthSettings {
            access_keys: vec!["primary".into(), "secondary".into()],
            keep_claims,
            ..AuthSettings::default()
        };
        Authenticator::new(&settings).unwrap()
    }

    fn azure_token(key: &str, hub: &str) -> String {
        let aud = format!("http://gw.example:8080/client/?hub={hub}");
        token(key, serde_json::json!({"aud": aud, "nameid": "alice", "role": ["a", "b"], "exp": future()}))
    }

    #[test]
    fn tokens_for_azures_client_endpoint_are_checked_with_the_access_keys_and_name_the_hub() {
        let auth = azure(true);
        let on = |hub: &str, token: &str| {
            auth.authenticate_for(Some(hub), &HeaderMap::new(), &query(&format!("access_token={token}")), false)
        };
        let alice = on("Chat", &azure_token("secondary", "chat")).unwrap();
        assert_eq!(alice.user_id.as_deref(), Some("alice"));
        let claims = alice.claims.expect("kept");
        assert!(
            claims.contains(&(Box::from("role"), Box::from("b")))
                && claims.contains(&(Box::from("nameid"), Box::from("alice")))
        );
        assert!(matches!(on("chat", &azure_token("wrong", "chat")), Err(AuthError::InvalidToken(_))));
        assert!(
            matches!(on("news", &azure_token("primary", "chat")), Err(AuthError::InvalidToken(t)) if t.contains("another hub"))
        );
        assert_eq!(
            azure(false)
                .authenticate_for(
                    Some("chat"),
                    &HeaderMap::new(),
                    &query(&format!("access_token={}", azure_token("primary", "chat"))),
                    false
                )
                .unwrap()
                .claims,
            None
        );
    }

    #[test]
    fn a_hub_with_a_connect_hook_takes_requests_without_a_token() {
        let auth = authenticator(false);
        assert_eq!(
            auth.authenticate_for(Some("chat"), &HeaderMap::new(), &query(""), true).unwrap(),
            Identity::default()
        );
        assert!(auth.authenticate_for(Some("chat"), &HeaderMap::new(), &query("access_token=garbage"), true).is_err());
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
