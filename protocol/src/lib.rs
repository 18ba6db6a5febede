//! The SignalR hub protocol as a pure codec: no sockets, no tasks, no clocks.
//!
//! How it works:
//!
//! ```text
//!  bytes from a transport ──► framing::TextFramer ──► one record at a time
//!                                  (0x1E separated, size-limited, incremental)
//!        first record ──► handshake::HandshakeRequest::parse
//!        later records ──► Protocol::decode ──► HubMessage
//!  HubMessage ──► Protocol::encode ──► framed bytes, ready to write as they are
//! ```
//!
//! The message model ([`HubMessage`]) is independent of the wire encoding: argument, item and
//! result values are [`Value`]s (the MessagePack data model, a superset of JSON's), so the same
//! messages can be written as JSON today and as MessagePack when that encoding is added.
//! Typed Rust values move in and out of [`Value`] with [`value::to_value`] and
//! [`value::from_value`].
//!
//! The `messagepack` encoding ([`msgpack`], framed by [`BinaryFramer`]) is implemented and
//! tested here; it joins [`Protocol`] when the gateway's transports carry binary frames.
//!
//! The gateway and the load harness share this crate; it knows nothing of connections, hubs or
//! the backplane.

#![forbid(unsafe_code)]

pub mod error;
pub mod framing;
pub mod handshake;
pub mod json;
pub mod message;
pub mod msgpack;
pub mod value;

pub use error::ProtocolError;
pub use framing::{BinaryFramer, TextFramer, RECORD_SEPARATOR};
pub use handshake::{HandshakeRequest, HandshakeResponse};
pub use message::{Close, Completion, CompletionOutcome, Headers, HubMessage, Invocation, StreamItem};
pub use value::Value;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_ping_is_the_encoded_ping() {
        assert_eq!(Protocol::Json.encoded_ping(), Protocol::Json.encode(&HubMessage::Ping).unwrap());
    }
}

/// The hub protocols a connection can choose in its handshake.
///
/// The set is closed by the SignalR specification; adding MessagePack means adding a variant
/// and its codec module, not a new trait object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `json`: UTF-8 JSON objects terminated by 0x1E, carried in text transport frames.
    Json,
}

impl Protocol {
    /// The highest handshake version this implementation speaks for any protocol.
    pub const MAX_VERSION: u32 = 1;

    /// Looks a protocol up by the name a client sends in its handshake.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    /// The name used in handshakes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
        }
    }

    /// Whether this protocol's messages are text (true) or arbitrary bytes.
    pub fn is_text(self) -> bool {
        match self {
            Self::Json => true,
        }
    }

    /// Encodes one message, framing included, ready to be written to a transport.
    pub fn encode(self, message: &HubMessage) -> Result<bytes::Bytes, ProtocolError> {
        match self {
            Self::Json => json::encode(message),
        }
    }

    /// A Ping, encoded once for the whole process: keep-alives are the most frequent message,
    /// and idle connections should not each hold a copy.
    pub fn encoded_ping(self) -> bytes::Bytes {
        match self {
            Self::Json => bytes::Bytes::from_static(b"{\"type\":6}\x1e"),
        }
    }

    /// Decodes one framed record (without its separator) into a message.
    pub fn decode(self, record: &[u8]) -> Result<HubMessage, ProtocolError> {
        match self {
            Self::Json => json::decode(record),
        }
    }
}
