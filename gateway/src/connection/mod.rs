//! One client connection, whatever its transport: the outbound queue its writer drains and the
//! hub session that reads its messages.

pub mod outbound;
pub(crate) mod session;
pub(crate) mod stateful;
pub(crate) mod streams;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use rand::RngCore;

use crate::transport::query::QueryParams;

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
    pub headers: HeaderMap,
    pub query: QueryParams,
    /// Whether negotiate granted stateful reconnect to this connection.
    pub stateful_reconnect: bool,
}

impl ConnectionInfo {
    pub fn new(transport: TransportKind, headers: &HeaderMap, query: &QueryParams) -> Self {
        Self { transport, headers: compact_copy(headers), query: query.clone(), stateful_reconnect: false }
    }

    /// A request header as text; `None` when absent or not valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The value of a request cookie.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|line| line.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }
}

/// A fresh random id: 16 bytes from the OS-seeded CSPRNG, base64url without padding (22
/// characters), the shape the official server uses for connection ids and tokens.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A copy of `headers` that owns its bytes. A plain clone would share the buffer the request
/// was parsed from, keeping kilobytes alive for every connection as long as it lasts.
fn compact_copy(headers: &HeaderMap) -> HeaderMap {
    let mut copy = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if is_transport_internal(name) {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_str().as_bytes());
        let value = HeaderValue::from_bytes(value.as_bytes());
        if let (Ok(name), Ok(value)) = (name, value) {
            copy.append(name, value);
        }
    }
    copy
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
    fn ids_are_22_url_safe_characters_and_differ() {
        let (a, b) = (super::random_id(), super::random_id());
        assert_eq!(a.len(), 22);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a, b);
    }
}
