//! Request logging that never leaks credentials.
//!
//! Browsers cannot set headers on WebSockets and event streams, so SignalR clients send their
//! token in the query (`?access_token=…`), and long-polling clients repeat it on every poll and
//! POST. The connection token (`?id=…`) is a secret too: whoever holds it can post as the
//! connection. Anything that logs a URL or a query goes through [`redact_query`] /
//! [`redact_uri`], which keep the parameter but replace its value with `<redacted>` (for `id`,
//! all but the node part `{node}.`, which says where the request was routed). [`serve`](crate::serve)
//! wraps every route in [`log_requests`], one debug event per request.

use std::borrow::Cow;

use axum::extract::Request;
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::Response;

/// Query parameters whose values are secrets (compared without regard to case, after
/// percent-decoding the name).
const SECRET_PARAMETERS: [&str; 1] = ["access_token"];

/// What a secret's value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// `query` (without the `?`) with the value of every secret parameter replaced by
/// `<redacted>`; other parameters are kept byte for byte, in order. Borrowed when nothing
/// needed replacing.
pub fn redact_query(query: &str) -> Cow<'_, str> {
    let carries_token = |part: &str| part.split_once('=').is_some_and(|(name, _)| is_connection_token(name));
    if !query.split('&').any(|part| is_secret(part) || carries_token(part)) {
        return Cow::Borrowed(query);
    }
    let parts: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|part| match part.split_once('=') {
            Some((name, _)) if is_secret(part) => Cow::Owned(format!("{name}={REDACTED}")),
            Some((name, value)) if is_connection_token(name) => {
                // `{node}.{secret}` keeps `{node}.` (percent-encoded dots are rare; then all goes).
                let node = value.rsplit_once('.').map_or("", |(node, _)| node);
                let dot = if node.is_empty() { "" } else { "." };
                Cow::Owned(format!("{name}={node}{dot}{REDACTED}"))
            }
            _ => Cow::Borrowed(part),
        })
        .collect();
    Cow::Owned(parts.join("&"))
}

/// The path and query of `uri`, the query redacted as by [`redact_query`]. Scheme and
/// authority are left out: a request URI has none, and they never carry secrets here.
pub fn redact_uri(uri: &Uri) -> String {
    match uri.query() {
        Some(query) => format!("{}?{}", uri.path(), redact_query(query)),
        None => uri.path().to_owned(),
    }
}

/// The connection token parameter of the transport requests.
fn is_connection_token(name: &str) -> bool {
    name == "id"
}

fn is_secret(part: &str) -> bool {
    let Some((name, _)) = form_urlencoded::parse(part.as_bytes()).next() else { return false };
    part.contains('=') && SECRET_PARAMETERS.iter().any(|secret| name.eq_ignore_ascii_case(secret))
}

/// Middleware: one debug event per request, with its method, redacted URI and status.
pub async fn log_requests(request: Request, next: Next) -> Response {
    // Most deployments log at info or above: then no request pays for the redacted copy of
    // its URI (a short-lived allocation per request, per WebSocket opened).
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let uri = redact_uri(request.uri());
    let response = next.run(request).await;
    tracing::debug!(%method, %uri, status = response.status().as_u16(), "request");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_token_value_is_replaced_and_everything_else_kept() {
        let query = "id=gw1.abc&access_token=eyJhbGciOi.secret.sig&_=17";
        assert_eq!(redact_query(query), "id=gw1.<redacted>&access_token=<redacted>&_=17");
    }

    #[test]
    fn a_connection_token_keeps_only_its_node() {
        assert_eq!(redact_query("id=node.a.b.SeCrEt"), "id=node.a.b.<redacted>");
        assert_eq!(redact_query("id=SeCrEt&hub=x"), "id=<redacted>&hub=x");
        assert_eq!(redact_query("hub=x&ids=1"), "hub=x&ids=1");
    }

    #[test]
    fn every_occurrence_is_redacted_whatever_the_case_or_encoding_of_the_name() {
        let query = "ACCESS_TOKEN=one&access%5Ftoken=two&access_token=three";
        assert_eq!(redact_query(query), "ACCESS_TOKEN=<redacted>&access%5Ftoken=<redacted>&access_token=<redacted>");
    }

    #[test]
    fn queries_without_a_token_are_borrowed_unchanged() {
        for query in ["", "hub=abc&x=access_token", "access_token", "my_access_token=x", "ids=1"] {
            assert!(matches!(redact_query(query), Cow::Borrowed(q) if q == query), "{query}");
        }
    }

    #[test]
    fn uris_keep_their_path_and_lose_only_the_secrets() {
        let uri: Uri = "/hubs/chat?id=gw2.t0k&access_token=jwt.jwt.jwt&_=5".parse().unwrap();
        assert_eq!(redact_uri(&uri), "/hubs/chat?id=gw2.<redacted>&access_token=<redacted>&_=5");
        let plain: Uri = "/healthz".parse().unwrap();
        assert_eq!(redact_uri(&plain), "/healthz");
    }
}
