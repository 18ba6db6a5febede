//! Browsers on another origin: CORS for the HTTP requests of the hubs and of the REST API, and
//! the origin check of WebSocket upgrades.
//!
//! A browser lets a page read a cross-origin answer only when the answer names the page's
//! origin (`Access-Control-Allow-Origin`), and before a request with headers such as
//! `X-Requested-With` it asks first (a preflight `OPTIONS`). WebSockets have no such
//! protection: the browser opens a socket to any server, cookies included, and only tells the
//! server the page's `Origin`. Unless the server checks that header, a page on any site can
//! open a connection in its visitors' names (cross-site WebSocket hijacking).
//!
//! ```text
//! request ─► guard: Origin admitted? ──no──► WebSocket upgrade: 403, logged, counted
//!              │ yes, or no Origin            HTTP request: logged, passed on without CORS headers
//!              ▼
//!            CorsLayer (tower-http): answers preflights, adds the CORS headers ─► routes
//! ```
//!
//! | the option (`--cors-allowed-origins`) | HTTP requests (negotiate, SSE, long polling) | WebSocket upgrades |
//! |---|---|---|
//! | not set (the default) | no CORS headers: only pages of the gateway's own origin may read answers | from the same origin, or without `Origin`; else 403 |
//! | `https://a.example,https://b.example` | a listed origin is echoed, with `Access-Control-Allow-Credentials: true` | from a listed origin, the same origin, or without `Origin`; else 403 |
//! | `*` | `Access-Control-Allow-Origin: *`, without credentials: browser clients must set `withCredentials: false` | from every origin |
//!
//! `*` cannot go with credentials (browsers refuse an answer that has both), and echoing any
//! origin with credentials would let every site act with its visitors' cookies; so a list is
//! the way to allow credentials. The official JavaScript client sends them by default.
//!
//! "The same origin" means the `Origin`'s host and port equal the request's `Host` (or, behind
//! a proxy that rewrites `Host`, `X-Forwarded-Host`); a script cannot set either on a
//! WebSocket, so a foreign page cannot pass for a same-origin one. Requests without `Origin`
//! come from programs, not browsers, and are not this check's concern: a program can send any
//! header it likes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN, UPGRADE};
use axum::http::{request::Parts, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::{info, warn};

use crate::metrics::{ConnectionRefusal, Metrics};

/// The option of the hubs' origins, named in log lines and refusals.
pub const HUBS_OPTION: &str = "--cors-allowed-origins";
/// The option of the REST API's origins.
pub const REST_OPTION: &str = "--rest-cors-allowed-origins";

/// The request headers the official clients send, allowed in preflights of the hubs.
static HUB_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("x-requested-with"),
    HeaderName::from_static("x-signalr-user-agent"),
    AUTHORIZATION,
    CONTENT_TYPE,
];
static HUB_METHODS: [Method; 3] = [Method::GET, Method::POST, Method::DELETE];
/// The REST API takes a bearer token and JSON bodies.
static REST_HEADERS: [HeaderName; 2] = [AUTHORIZATION, CONTENT_TYPE];
static REST_METHODS: [Method; 5] = [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE];
/// How long browsers may reuse a preflight's answer (they cap it: Chromium at 2 h). Long-poll
/// URLs differ at every poll, so this mostly spares repeated negotiates.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Which browser origins may use a set of routes; see the module docs.
#[derive(Debug, Clone, Default)]
pub enum AllowedOrigins {
    /// No option given: pages of the gateway's own origin only.
    #[default]
    SameOrigin,
    /// `*`: every origin, without credentials.
    Any,
    /// These origins (normalised by [`parse_origin`]), with credentials, besides the same origin.
    List(Arc<[String]>),
}

impl AllowedOrigins {
    /// The policy of a list option's values, as [`parse_origin`] returned them: empty is
    /// [`AllowedOrigins::SameOrigin`], `*` (alone, see [`check_list`]) is [`AllowedOrigins::Any`].
    pub fn from_list(origins: &[String]) -> Self {
        if origins.is_empty() {
            Self::SameOrigin
        } else if origins.iter().any(|origin| origin == "*") {
            Self::Any
        } else {
            Self::List(origins.iter().cloned().collect())
        }
    }

    /// Whether `origin` is one of the listed origins (browsers send it in lower case, without a
    /// default port, as [`parse_origin`] keeps the list).
    fn lists(&self, origin: &[u8]) -> bool {
        match self {
            Self::SameOrigin => false,
            Self::Any => true,
            Self::List(origins) => origins.iter().any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin)),
        }
    }

    /// Whether a page of `origin` may use the routes, for a request with these `headers` to
    /// `authority` (the URI's, which HTTP/2 requests carry instead of `Host`).
    fn admits(&self, origin: &HeaderValue, headers: &HeaderMap, authority: Option<&str>) -> bool {
        self.lists(origin.as_bytes()) || same_origin(origin, headers, authority)
    }
}

/// Reads one entry of an origin list option: `*`, or `scheme://host[:port]` without a path,
/// returned in the form browsers send (lower case, no default port). The error says what an
/// origin looks like.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text == "*" {
        return Ok(text.to_owned());
    }
    let refuse = || {
        format!("'{text}' is not an origin: give scheme://host[:port] without a path, e.g. https://app.example.com (or * for any)")
    };
    let (scheme, authority) = text.split_once("://").ok_or_else(refuse)?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let authority_ok = !authority.is_empty()
        && authority.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '/' | '?' | '#' | '@' | '\\'));
    if !scheme_ok || !authority_ok {
        return Err(refuse());
    }
    let (host, port) = split_port(authority);
    let port_ok = port.is_none_or(|port| port.parse::<u16>().is_ok_and(|port| port > 0));
    if host.is_empty() || !port_ok {
        return Err(refuse());
    }
    Ok(format!("{}://{}", scheme.to_ascii_lowercase(), without_default_port(scheme, authority)))
}

/// Refuses a list that names `*` beside other origins (it would allow them all anyway, without
/// the credentials the others may have been listed for).
pub fn check_list(origins: &[String]) -> Result<(), &'static str> {
    if origins.len() > 1 && origins.iter().any(|origin| origin == "*") {
        return Err("* allows every origin: give it alone, or list the origins");
    }
    Ok(())
}

/// `authority`'s host and, if it has one, its port (an IPv6 literal keeps its brackets).
fn split_port(authority: &str) -> (&str, Option<&str>) {
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    }
}

/// `authority` in lower case, without the port when it is `scheme`'s default.
fn without_default_port(scheme: &str, authority: &str) -> String {
    let (host, port) = split_port(authority);
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => Some("80"),
        "https" => Some("443"),
        _ => None,
    };
    match port {
        Some(port) if Some(port) != default => format!("{host}:{port}").to_ascii_lowercase(),
        _ => host.to_ascii_lowercase(),
    }
}

/// Whether `origin`'s host and port are those the request was sent to (see the module docs).
fn same_origin(origin: &HeaderValue, headers: &HeaderMap, authority: Option<&str>) -> bool {
    let Some((scheme, origin_authority)) = origin.to_str().ok().and_then(|origin| origin.split_once("://")) else {
        return false;
    };
    let origin_authority = without_default_port(scheme, origin_authority);
    let forwarded = HeaderName::from_static("x-forwarded-host");
    let named = [HOST, forwarded].into_iter().filter_map(|name| headers.get(name)?.to_str().ok());
    // A proxy chain lists hosts in X-Forwarded-Host; the first is the one the browser used.
    let hosts = named.filter_map(|value| value.split(',').next()).map(str::trim).chain(authority);
    hosts.map(|host| without_default_port(scheme, host)).any(|host| host == origin_authority)
}

/// The CORS and origin rules of one set of routes.
#[derive(Clone)]
pub(crate) struct OriginGuard {
    origins: AllowedOrigins,
    /// The option that configures them, named in log lines.
    option: &'static str,
    /// Counts refused WebSocket upgrades (the hubs; the REST API has none).
    metrics: Option<Arc<Metrics>>,
    methods: &'static [Method],
    headers: &'static [HeaderName],
}

impl OriginGuard {
    /// The rules of the hub routes (negotiate and the transports), set by `--cors-allowed-origins`.
    pub fn hubs(origins: AllowedOrigins, metrics: Arc<Metrics>) -> Self {
        Self { origins, option: HUBS_OPTION, metrics: Some(metrics), methods: &HUB_METHODS, headers: &HUB_HEADERS }
    }

    /// The rules of the REST API, set by `--rest-cors-allowed-origins`.
    pub fn rest(origins: AllowedOrigins) -> Self {
        Self { origins, option: REST_OPTION, metrics: None, methods: &REST_METHODS, headers: &REST_HEADERS }
    }

    /// `router` behind these rules: the guard, then (when origins are allowed) the CORS layer.
    /// Apply it to a router whose routes are all in place (layers wrap the routes they find).
    pub fn protect(self, router: Router) -> Router {
        let router = match self.cors_layer() {
            Some(layer) => router.layer(layer),
            None => router,
        };
        router.layer(middleware::from_fn_with_state(Arc::new(self), guard))
    }

    /// The CORS layer, or none for the same origin only (same-origin requests need no headers).
    fn cors_layer(&self) -> Option<CorsLayer> {
        let layer = CorsLayer::new()
            .allow_methods(self.methods.to_vec())
            .allow_headers(self.headers.to_vec())
            .max_age(PREFLIGHT_MAX_AGE);
        match &self.origins {
            AllowedOrigins::SameOrigin => None,
            AllowedOrigins::Any => Some(layer.allow_origin(tower_http::cors::Any)),
            listed @ AllowedOrigins::List(_) => {
                let listed = listed.clone();
                let admits = move |origin: &HeaderValue, _: &Parts| listed.lists(origin.as_bytes());
                Some(layer.allow_origin(AllowOrigin::predicate(admits)).allow_credentials(true))
            }
        }
    }

    /// Why a page of `origin` may not use the routes, for log lines and the 403.
    fn refusal(&self, origin: &str) -> String {
        match self.origins {
            AllowedOrigins::SameOrigin => format!(
                "origin {origin} is not in {} (not set: only pages from this server's own origin may connect)",
                self.option
            ),
            _ => format!("origin {origin} is not in {}", self.option),
        }
    }
}

/// Refuses WebSocket upgrades from origins the rules do not admit, and says in the log why a
/// cross-origin HTTP request gets no CORS headers (the browser then blocks it: the gateway's
/// log is the only place that can say so).
async fn guard(State(rules): State<Arc<OriginGuard>>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(ORIGIN) else { return next.run(request).await };
    if rules.origins.admits(origin, request.headers(), request.uri().authority().map(|a| a.as_str())) {
        return next.run(request).await;
    }
    let shown = String::from_utf8_lossy(origin.as_bytes()).into_owned();
    let reason = rules.refusal(&shown);
    let path = request.uri().path();
    if is_websocket(&request) {
        warn!(origin = %shown, path, "WebSocket upgrade refused with 403: {reason}");
        if let Some(metrics) = &rules.metrics {
            metrics.connection_refused(ConnectionRefusal::Origin);
        }
        return (StatusCode::FORBIDDEN, [(CONTENT_TYPE, "text/plain")], reason).into_response();
    }
    info!(origin = %shown, path, method = %request.method(), "cross-origin request answered without CORS headers (the browser blocks it): {reason}");
    next.run(request).await
}

/// Whether `request` asks for a WebSocket: an HTTP/1.1 upgrade or an HTTP/2 extended CONNECT.
fn is_websocket(request: &Request) -> bool {
    let upgrade = request.headers().get_all(UPGRADE).iter().filter_map(|value| value.to_str().ok());
    request.method() == Method::CONNECT
        || upgrade.flat_map(|value| value.split(',')).any(|token| token.trim().eq_ignore_ascii_case("websocket"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn origin(text: &str) -> HeaderValue {
        HeaderValue::from_str(text).unwrap()
    }

    #[test]
    fn origins_are_kept_as_browsers_send_them() {
        assert_eq!(parse_origin("HTTPS://App.Example.com:443").unwrap(), "https://app.example.com");
        assert_eq!(parse_origin("http://localhost:80").unwrap(), "http://localhost");
        assert_eq!(parse_origin(" http://127.0.0.1:5173 ").unwrap(), "http://127.0.0.1:5173");
        assert_eq!(parse_origin("http://[::1]:8080").unwrap(), "http://[::1]:8080");
        assert_eq!(parse_origin("capacitor://localhost").unwrap(), "capacitor://localhost");
        assert_eq!(parse_origin("*").unwrap(), "*");
    }

    #[test]
    fn what_is_not_an_origin_is_refused_with_an_example() {
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://a/b",
            "https://",
            "https://a:0",
            "https://a:x",
            "https://u@a",
            "",
        ] {
            let error = parse_origin(bad).unwrap_err();
            assert!(error.contains("scheme://host[:port]"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_star_goes_alone() {
        assert!(check_list(&["*".into()]).is_ok());
        assert!(check_list(&["*".into(), "https://a".into()]).is_err());
        assert!(check_list(&[]).is_ok());
    }

    #[test]
    fn the_same_origin_is_the_host_the_request_went_to() {
        let same = AllowedOrigins::SameOrigin;
        let host = headers(&[("host", "127.0.0.1:8080")]);
        assert!(same.admits(&origin("http://127.0.0.1:8080"), &host, None));
        assert!(!same.admits(&origin("http://localhost:8080"), &host, None), "another host name is another origin");
        assert!(!same.admits(&origin("http://127.0.0.1:8081"), &host, None));
        assert!(!same.admits(&origin("null"), &host, None));
        let default_port = headers(&[("host", "chat.example.com")]);
        assert!(same.admits(&origin("https://chat.example.com"), &default_port, None));
        assert!(same.admits(&origin("https://chat.example.com"), &headers(&[("host", "Chat.Example.com:443")]), None));
        let proxied = headers(&[("host", "gateway:8080"), ("x-forwarded-host", "chat.example.com, lb")]);
        assert!(same.admits(&origin("https://chat.example.com"), &proxied, None));
        assert!(
            same.admits(&origin("https://chat.example.com"), &HeaderMap::new(), Some("chat.example.com")),
            "HTTP/2"
        );
    }

    #[test]
    fn listed_origins_are_admitted_besides_the_same_origin() {
        let list = AllowedOrigins::from_list(&["https://app.example.com".into()]);
        let host = headers(&[("host", "gw.example.com")]);
        assert!(list.admits(&origin("https://app.example.com"), &host, None));
        assert!(list.admits(&origin("https://gw.example.com"), &host, None));
        assert!(!list.admits(&origin("https://evil.example"), &host, None));
        assert!(!list.admits(&origin("http://app.example.com"), &host, None), "the scheme is part of the origin");
        let any = AllowedOrigins::from_list(&["*".into()]);
        assert!(any.admits(&origin("https://evil.example"), &host, None));
    }
}
