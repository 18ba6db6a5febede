//! What the HTTP request that opened a connection said, kept for the connection's life: the
//! transport it chose, its headers and query (hub methods read them), and per-connection state
//! that hub code keeps beside it. A leaf: it knows no other module of the gateway, so the
//! transports, the session, hub code and the fan-out layer can all share it.

use std::sync::atomic::AtomicU64;

use axum::http::{header, HeaderMap, HeaderName};

use crate::query::QueryParams;

/// The transports a connection can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum TransportKind {
    #[value(name = "websockets")]
    WebSockets,
    #[value(alias = "sse")]
    ServerSentEvents,
    LongPolling,
}

impl TransportKind {
    /// Every transport, in the order negotiate lists them (clients try them in this order).
    pub const ALL: [Self; 3] = [Self::WebSockets, Self::ServerSentEvents, Self::LongPolling];

    /// The transfer formats negotiate lists for the transport.
    pub fn transfer_formats(self) -> &'static [&'static str] {
        if self.carries_binary() {
            &["Text", "Binary"]
        } else {
            &["Text"]
        }
    }

    /// The name negotiate lists and clients report.
    pub fn name(self) -> &'static str {
        match self {
            Self::WebSockets => "WebSockets",
            Self::ServerSentEvents => "ServerSentEvents",
            Self::LongPolling => "LongPolling",
        }
    }

    /// Whether the transport carries arbitrary bytes (MessagePack), not only text.
    pub fn carries_binary(self) -> bool {
        !matches!(self, Self::ServerSentEvents)
    }

    /// Whether the server sends keep-alive Pings and enforces the client timeout. Long polling
    /// keeps itself alive with its polls, and its clients never ping.
    pub fn uses_keep_alive(self) -> bool {
        !matches!(self, Self::LongPolling)
    }
}

/// What the request that started a connection said: the transport it chose, its headers and
/// its query string. Hub methods read it (e.g. a header, a cookie, a query parameter).
#[derive(Debug)]
pub struct ConnectionInfo {
    pub transport: TransportKind,
    pub headers: PackedHeaders,
    /// The query, minus the transport's own parameters (`id`, `access_token`, `_`).
    pub query: QueryParams,
    /// Whether negotiate granted stateful reconnect to this connection.
    pub stateful_reconnect: bool,
    /// The relay hub's rate-limit state for this connection (see `hub::policy`): eight bytes,
    /// read and updated without any lock.
    pub(crate) relay_rate: AtomicU64,
    /// The groups a connect hook named, joined before the first message (empty otherwise).
    pub(crate) admitted_groups: Box<[Box<str>]>,
}

impl ConnectionInfo {
    pub fn new(transport: TransportKind, headers: &HeaderMap, query: &QueryParams) -> Self {
        let query = query.without(&["id", "access_token", "_"]);
        Self {
            transport,
            headers: PackedHeaders::new(headers),
            query,
            stateful_reconnect: false,
            relay_rate: AtomicU64::new(0),
            admitted_groups: Box::default(),
        }
    }

    /// A request header as text; `None` when absent or not valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The value of a request cookie.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(header::COOKIE.as_str())
            .flat_map(|line| line.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }
}

/// The text headers of a request, packed into one allocation as `name:value` lines. A
/// connection keeps the headers of the request that started it for as long as it lasts, so
/// they are stored compactly (a `HeaderMap` costs several allocations per header) and without
/// the headers that only served the WebSocket handshake.
#[derive(Debug, Default)]
pub struct PackedHeaders {
    lines: Box<str>,
}

impl PackedHeaders {
    pub fn new(headers: &HeaderMap) -> Self {
        let mut lines = String::new();
        for (name, value) in headers {
            let Ok(value) = value.to_str() else { continue };
            if is_transport_internal(name) {
                continue;
            }
            // Names are lower case without ':'; values never hold a line break.
            lines.push_str(name.as_str());
            lines.push(':');
            lines.push_str(value);
            lines.push('\n');
        }
        Self { lines: lines.into_boxed_str() }
    }

    /// The first value of header `name` (compared without regard to case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// Every value of header `name`, in request order.
    pub fn get_all<'a: 'n, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + 'n {
        self.lines
            .lines()
            .filter_map(|line| line.split_once(':'))
            .filter(move |(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }
}

/// Headers that only matter to the transport handshake itself; hub code has no use for them.
fn is_transport_internal(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.starts_with("sec-websocket-") || name == "upgrade" || name == "connection"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_in_any_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1; testCookie=testValue".parse().unwrap());
        headers.append(header::COOKIE, "b=2".parse().unwrap());
        let info = ConnectionInfo::new(TransportKind::LongPolling, &headers, &QueryParams::default());
        assert_eq!(info.cookie("testCookie"), Some("testValue"));
        assert_eq!(info.cookie("b"), Some("2"));
        assert_eq!(info.cookie("missing"), None);
        assert_eq!(info.header("cookie"), Some("a=1; testCookie=testValue"));
    }

    #[test]
    fn hub_code_sees_request_headers_and_query_but_not_the_transports_own() {
        let mut headers = HeaderMap::new();
        headers.append("X-Header", "Value".parse().unwrap());
        headers.append("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap());
        headers.append(header::UPGRADE, "websocket".parse().unwrap());
        let query = QueryParams::parse(Some("id=secret-token&access_token=jwt&room=blue&_=123"));
        let info = ConnectionInfo::new(TransportKind::WebSockets, &headers, &query);
        assert_eq!(info.header("x-header"), Some("Value"));
        assert_eq!(info.header("X-HEADER"), Some("Value"));
        assert_eq!(info.header("sec-websocket-key"), None);
        assert_eq!(info.header("upgrade"), None);
        assert_eq!(info.query.get("room"), Some("blue"));
        assert_eq!((info.query.get("id"), info.query.get("access_token"), info.query.get("_")), (None, None, None));
    }
}
