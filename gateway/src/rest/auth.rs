//! Who may call the REST API: HS256 bearer tokens signed with an access key, bound to the URL.
//!
//! As Azure SignalR checks them: the token is a JWT signed with the access key (HS256), it must
//! carry `exp` (enforced, with 5 s of leeway for clock skew) and an `aud` equal to the request
//! URL without query and trailing slash, e.g. `https://gw.example.com/api/hubs/chat/:send`, so a
//! token captured for one operation cannot be replayed against another. Two keys may be
//! configured so backends can move to a new key before the old one is dropped.
//!
//! Choices where the reference is silent, to work behind TLS-terminating proxies: the host is
//! the request's `Host` header; the scheme is not compared (`http` and `https` audiences are both
//! accepted) because the gateway cannot see which one the caller used; and a query string in
//! `aud` is ignored (Azure Web PubSub signs it, Azure SignalR does not).

use axum::http::{header, HeaderMap, Uri};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tracing::debug;

use crate::auth::bearer_token;

/// The configured access keys and how tokens are checked against them.
pub(crate) struct AccessKeys {
    keys: Vec<DecodingKey>,
    validation: Validation,
}

#[derive(Deserialize)]
struct Claims {
    aud: Audiences,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audiences {
    One(String),
    Many(Vec<String>),
}

impl AccessKeys {
    /// `None` when no key is configured.
    pub fn new(primary: Option<&str>, secondary: Option<&str>) -> Option<Self> {
        let keys: Vec<DecodingKey> =
            [primary, secondary].into_iter().flatten().map(|k| DecodingKey::from_secret(k.as_bytes())).collect();
        if keys.is_empty() {
            return None;
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.validate_aud = false; // compared below, against the request URL
        validation.set_required_spec_claims(&["exp", "aud"]);
        Some(Self { keys, validation })
    }

    /// Whether the request carries a token signed with one of the keys, unexpired, for its URL.
    pub fn admits(&self, headers: &HeaderMap, uri: &Uri) -> bool {
        let Some(token) = bearer_token(headers) else { return false };
        let Some(claims) = self.verified_claims(token) else { return false };
        let Some(expected) = request_audience(headers, uri) else { return false };
        let matches = |aud: &String| normalize_audience(aud).as_deref() == Some(expected.as_str());
        let admitted = match &claims.aud {
            Audiences::One(aud) => matches(aud),
            Audiences::Many(auds) => auds.iter().any(matches),
        };
        if !admitted {
            debug!(expected = %expected, "REST API token for another URL");
        }
        admitted
    }

    fn verified_claims(&self, token: &str) -> Option<Claims> {
        let mut last_error = None;
        for key in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => return Some(data.claims),
                Err(error) => last_error = Some(error),
            }
        }
        debug!(error = ?last_error, "REST API token refused");
        None
    }
}

/// `host/path` of the request, without scheme, query or trailing slash.
fn request_audience(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| headers.get(header::HOST)?.to_str().ok().map(str::to_owned))?;
    Some(format!("{}{}", host.to_ascii_lowercase(), uri.path().trim_end_matches('/')))
}

/// `host/path` of an `aud` claim: scheme, query and trailing slash dropped; `None` unless it
/// is an http(s) URL.
fn normalize_audience(aud: &str) -> Option<String> {
    let rest = aud.strip_prefix("https://").or_else(|| aud.strip_prefix("http://"))?;
    let without_query = rest.split(['?', '#']).next().unwrap_or(rest);
    let (host, path) = without_query.split_once('/').unwrap_or((without_query, ""));
    Some(format!("{}/{}", host.to_ascii_lowercase(), path).trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_compare_host_and_path_only() {
        assert_eq!(
            normalize_audience("https://GW.example.com/api/hubs/chat/:send?api-version=1").unwrap(),
            "gw.example.com/api/hubs/chat/:send"
        );
        assert_eq!(normalize_audience("http://gw:8080/api/hubs/chat/").unwrap(), "gw:8080/api/hubs/chat");
        assert_eq!(normalize_audience("ftp://gw/api"), None);
        let uri: Uri = "/api/hubs/chat/:send?api-version=2022-06-01".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "gw:8080".parse().unwrap());
        assert_eq!(request_audience(&headers, &uri).unwrap(), "gw:8080/api/hubs/chat/:send");
    }
}
