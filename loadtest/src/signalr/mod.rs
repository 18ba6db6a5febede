//! A SignalR hub client for the harness, on the `protocol` codec: every transport
//! (WebSockets, Server-Sent Events, long polling) with either hub protocol, negotiate versions
//! 0 and 1, access tokens, and automatic reconnect.
//!
//! How it works:
//!
//! ```text
//! Connection::connect ─► negotiate (POST {hub}/negotiate, follows ≤ 2 redirects)
//!                      ─► transport (WebSocket upgrade | SSE GET | first long poll)
//!                      ─► handshake ({"protocol":..,"version":1}␞ → {}␞)
//!                      ─► one driver task per connection:
//!     socket/stream/poll ─► framer ─► decode ─► Ping: dropped ─► bounded event queue ─► next()
//!     send()/invoke() ─► bounded outbound queue ─► frame / POST (all queued, one flush)
//!     every 15 s: Ping to the server (not on long polling), 30 s of silence = dropped
//!     dropped unexpectedly ─► reconnect with the policy's delays ─► Event::Reconnected
//! ```
//!
//! Memory: the harness holds tens of thousands of these, so a connection is one task, two
//! small bounded queues and the transport's buffers (by default a 512-byte WebSocket read
//! buffer and no write buffer, sizes [`ClientOptions`] can raise; the upgrade is done by
//! hand so tungstenite's 4 KiB handshake buffer is not kept). HTTP transports share one process-wide `reqwest` client and its pool. Measured with
//! `examples/signalr_memory.rs` (client RSS growth, debug build): about 7.4 KB per idle
//! WebSocket connection (15,000 held), 26 KB per SSE and 32 KB per long-polling connection
//! (their cost is mostly the in-flight HTTP request's connection in hyper).
//!
//! Backpressure: when the scenario does not call [`Connection::next`], the event queue fills
//! and the driver stops reading, so a slow scenario shows up as a slow consumer on the server
//! (never as silently dropped messages on the client).

mod connection;
mod http;
mod link;
mod long_polling;
mod negotiate;
mod sse;
mod websocket;

use std::time::Duration;

pub use connection::{open_connections, Connection};
pub use link::Phases;
pub use protocol::Protocol;
use protocol::{HubMessage, ProtocolError};

/// The transports of the SignalR transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    WebSockets,
    ServerSentEvents,
    LongPolling,
}

impl Transport {
    /// The name used in negotiate responses.
    pub fn name(self) -> &'static str {
        match self {
            Self::WebSockets => "WebSockets",
            Self::ServerSentEvents => "ServerSentEvents",
            Self::LongPolling => "LongPolling",
        }
    }
}

/// How one connection is opened.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The hub URL, `http://host:port/path` (TLS is not supported).
    pub url: String,
    pub transport: Transport,
    pub protocol: Protocol,
    /// Bearer token: an `Authorization` header on HTTP requests, the `access_token` query
    /// parameter on the WebSocket and SSE requests, as the official clients send it.
    pub access_token: Option<String>,
    /// Connect the WebSocket directly without negotiating (WebSockets only).
    pub skip_negotiation: bool,
    /// Negotiate version 0 (the connection id is the transport id) or 1 (the token is). Default 1.
    pub negotiate_version: u32,
    /// The version sent in the handshake. Default 1 (2 would ask for stateful reconnect,
    /// which this client does not implement).
    pub handshake_version: u32,
    /// Bounds negotiate + transport + handshake together. Default 15 s.
    pub connect_timeout: Duration,
    /// Reconnect automatically after an unexpected drop. Default none.
    pub reconnect: Option<ReconnectPolicy>,
    /// WebSocket bytes read from the socket per read call. Default 512: held connections
    /// mostly receive 11-byte Pings, and a larger message just takes more reads. A subscriber
    /// that receives a stream of deliveries reads fewer times with a larger buffer.
    pub read_buffer: usize,
    /// WebSocket bytes buffered before a write reaches the socket. Default 0: each message is
    /// written at once. Messages queued together are written together and flushed once, so a
    /// publisher sending many messages at a time saves system calls with a larger buffer.
    pub write_buffer: usize,
    /// Send `Connection: close` with the negotiate request, so its HTTP connection does not
    /// stay in the shared pool (and open on the server) afterwards. Default false. For
    /// measuring the server's memory per hub connection: pooled keep-alive connections would
    /// be counted against the hub connections.
    pub negotiate_connection_close: bool,
    /// Yield every hub message the server sends, its Pings and its Close included (the Close
    /// is then followed by [`Event::Closed`]). Default false: Pings are handled inside and a
    /// Close only ends the connection. For harnesses that account for everything received.
    pub all_messages: bool,
    /// The origins (`host:port`) this connection may reach; a negotiate redirect to any other
    /// is refused (`ClientError::Negotiate`). Default none: any redirect is followed. What a
    /// `loadtest agent` sets, so that no server can point an agent's load elsewhere.
    pub allowed_origins: Option<std::sync::Arc<Vec<String>>>,
}

impl ClientOptions {
    /// WebSockets with JSON, negotiate version 1, no token, no reconnect.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            transport: Transport::WebSockets,
            protocol: Protocol::Json,
            access_token: None,
            skip_negotiation: false,
            negotiate_version: 1,
            handshake_version: 1,
            connect_timeout: Duration::from_secs(15),
            reconnect: None,
            read_buffer: 512,
            write_buffer: 0,
            negotiate_connection_close: false,
            all_messages: false,
            allowed_origins: None,
        }
    }
}

/// Checks a hub URL the way [`Connection::connect`] will, so a command can refuse a bad
/// `--url` once, before opening thousands of connections to it.
pub fn check_hub_url(url: &str) -> Result<(), ClientError> {
    http::parse_hub_url(url).map(drop)
}

/// `host:port` of a hub URL (the port the scheme implies when none is written), or `None`
/// for what is not a hub URL: what [`ClientOptions::allowed_origins`] lists.
pub fn origin_of(url: &str) -> Option<String> {
    let parsed = http::parse_hub_url(url).ok()?;
    Some(format!("{}:{}", parsed.host_str()?, parsed.port_or_known_default()?))
}

/// When to retry after a drop: one attempt after each delay (measured from the previous
/// failure), then give up and report [`Event::Closed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectPolicy {
    pub delays: Vec<Duration>,
}

impl Default for ReconnectPolicy {
    /// The JS client's default: 0, 2, 10 and 30 seconds.
    fn default() -> Self {
        Self { delays: [0, 2, 10, 30].into_iter().map(Duration::from_secs).collect() }
    }
}

/// What [`Connection::next`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A hub message from the server (never a Ping or a Close unless
    /// [`ClientOptions::all_messages`] asks for them).
    Message(HubMessage),
    /// The connection dropped and was opened again (a new connection: groups must be
    /// re-joined). Invocations pending at the drop failed with [`ClientError::Closed`].
    Reconnected,
    /// The connection is over: the server's Close error, or why the transport ended.
    /// Nothing follows it.
    Closed(Option<String>),
}

/// Why a connection could not be opened or used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// Negotiate failed: HTTP error, an `error` response, the transport not offered, too
    /// many redirects.
    #[error("negotiate: {0}")]
    Negotiate(String),
    /// The transport could not be opened, or failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The server refused the handshake; the text is the server's.
    #[error("handshake refused: {0}")]
    HandshakeRefused(String),
    /// The connection is closed; the server's Close error, if it sent one.
    #[error("closed{}", .0.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    Closed(Option<String>),
    /// The server sent something that is not the hub protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Connecting took longer than `connect_timeout`.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl ClientError {
    /// A low-cardinality label for metrics and failure counts (`errors_<kind>`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Negotiate(_) => "negotiate",
            Self::Transport(_) => "transport",
            Self::HandshakeRefused(_) => "handshake",
            Self::Closed(_) => "closed",
            Self::Protocol(_) => "protocol",
            Self::Timeout(_) => "timeout",
        }
    }
}

impl From<ProtocolError> for ClientError {
    fn from(error: ProtocolError) -> Self {
        Self::Protocol(error.to_string())
    }
}
