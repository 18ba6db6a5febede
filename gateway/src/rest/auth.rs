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
//!
//! Behind a proxy in `--trusted-proxies` (and only there: anyone can send these headers), the
//! proxy's `X-Forwarded-Host` replaces the `Host` header, and its `X-Forwarded-Proto` makes the
//! scheme count: an `http://` audience is then refused for a request the client sent over
//! HTTPS. See [`crate::forwarded`].

use axum::http::{header, HeaderMap, Uri};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tracing::debug;

use crate::auth::bearer_token;
use crate::forwarded::Forwarded;

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

    /// Whether the request carries a token signed with one of the keys, unexpired, for its URL
    /// (with the host and scheme a trusted proxy `forwarded`, if any).
    pub fn admits(&self, headers: &HeaderMap, uri: &Uri, forwarded: &Forwarded) -> bool {
        let Some(token) = bearer_token(headers) else { return false };
        let Some(claims) = self.verified_claims(token) else { return false };
        let Some(expected) = request_audience(headers, uri, forwarded) else { return false };
        let scheme_fits = |scheme: &str| forwarded.proto.as_deref().is_none_or(|proto| proto == scheme);
        let matches = |aud: &String| {
            normalize_audience(aud).is_some_and(|(scheme, target)| target == expected && scheme_fits(scheme))
        };
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

/// `host/path` of the request, without scheme, query or trailing slash; the host is the one a
/// trusted proxy forwarded, else the request's own.
fn request_audience(headers: &HeaderMap, uri: &Uri, forwarded: &Forwarded) -> Option<String> {
    let host = forwarded
        .host
        .clone()
        .or_else(|| uri.authority().map(|a| a.as_str().to_owned()))
        .or_else(|| headers.get(header::HOST)?.to_str().ok().map(str::to_owned))?;
    Some(format!("{}{}", host.to_ascii_lowercase(), uri.path().trim_end_matches('/')))
}

/// The scheme and `host/path` of an `aud` claim, query and trailing slash dropped; `None`
/// unless it is an http(s) URL.
fn normalize_audience(aud: &str) -> Option<(&'static str, String)> {
    let (scheme, rest) = match aud.strip_prefix("https://") {
        Some(rest) => ("https", rest),
        None => ("http", aud.strip_prefix("http://")?),
    };
    let without_query = rest.split(['?', '#']).next().unwrap_or(rest);
    let (host, path) = without_query.split_once('/').unwrap_or((without_query, ""));
    Some((scheme, format!("{}/{}", host.to_ascii_lowercase(), path).trim_end_matches('/').to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_compare_host_and_path_only() {
        assert_eq!(
            normalize_audience("https://GW.example.com/api/hubs/chat/:send?api-version=1").unwrap(),
            ("https", "gw.example.com/api/hubs/chat/:send".to_owned())
        );
        assert_eq!(
            normalize_audience("http://gw:8080/api/hubs/chat/").unwrap(),
            ("http", "gw:8080/api/hubs/chat".into())
        );
        assert_eq!(normalize_audience("ftp://gw/api"), None);
        let uri: Uri = "/api/hubs/chat/:send?api-version=2022-06-01".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "gw:8080".parse().unwrap());
        let none = Forwarded::default();
        assert_eq!(request_audience(&headers, &uri, &none).unwrap(), "gw:8080/api/hubs/chat/:send");
        let proxied = Forwarded { host: Some("GW.example.com".into()), proto: Some("https".into()) };
        assert_eq!(request_audience(&headers, &uri, &proxied).unwrap(), "gw.example.com/api/hubs/chat/:send");
    }
}
