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
//! messages can be written as JSON or as MessagePack.
//! Typed Rust values move in and out of [`Value`] with [`value::to_value`] and
//! [`value::from_value`].
//!
//! The `messagepack` encoding ([`msgpack`]) is framed by [`BinaryFramer`]; the handshake that
//! precedes it is JSON text in both protocols, so a connection starts with a [`TextFramer`] and
//! continues with [`Protocol::framer`].
//!
//! The gateway and the load harness share this crate; it knows nothing of connections, hubs or
//! the backplane.

#![forbid(unsafe_code)]

pub mod error;
pub mod framing;
pub mod handshake;
pub mod json;
mod json_value;
pub mod message;
pub mod msgpack;
pub mod nesting;
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
        for protocol in Protocol::ALL {
            assert_eq!(protocol.encoded_ping(), protocol.encode(&HubMessage::Ping).unwrap());
        }
    }

    #[test]
    fn protocols_are_found_by_their_handshake_names() {
        for protocol in Protocol::ALL {
            assert_eq!(Protocol::from_name(protocol.name()), Some(protocol));
        }
        assert_eq!(Protocol::from_name("JSON"), None);
    }

    #[test]
    fn the_framer_continues_with_the_bytes_after_the_handshake() {
        let ping = Protocol::MessagePack.encode(&HubMessage::Ping).unwrap();
        let mut framer = Protocol::MessagePack.framer(1024, bytes::BytesMut::from(&ping[..2]));
        assert_eq!(framer.next_record().unwrap(), None);
        assert!(framer.has_partial_record());
        framer.push(&ping[2..]);
        let record = framer.next_record().unwrap().unwrap();
        assert_eq!(Protocol::MessagePack.decode(&record).unwrap(), HubMessage::Ping);
        let mut text = Protocol::Json.framer(1024, bytes::BytesMut::from(&b"{\"type\":6}\x1e"[..]));
        assert_eq!(Protocol::Json.decode(&text.next_record().unwrap().unwrap()).unwrap(), HubMessage::Ping);
    }
}

/// The hub protocols a connection can choose in its handshake.
///
/// The set is closed by the SignalR specification, so it is an enum with one codec module per
/// variant rather than a trait object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `json`: UTF-8 JSON objects terminated by 0x1E, carried in text transport frames.
    Json,
    /// `messagepack`: length-prefixed MessagePack arrays, carried in binary transport frames.
    MessagePack,
}

impl Protocol {
    /// The highest handshake version this implementation speaks for any protocol (2 adds the
    /// Ack and Sequence messages of stateful reconnect).
    pub const MAX_VERSION: u32 = 2;

    /// Every protocol, in the order servers usually list them.
    pub const ALL: [Protocol; 2] = [Protocol::Json, Protocol::MessagePack];

    /// Looks a protocol up by the name a client sends in its handshake.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "json" => Some(Self::Json),
            "messagepack" => Some(Self::MessagePack),
            _ => None,
        }
    }

    /// The name used in handshakes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::MessagePack => "messagepack",
        }
    }

    /// Whether this protocol's messages are text (true) or arbitrary bytes.
    pub fn is_text(self) -> bool {
        match self {
            Self::Json => true,
            Self::MessagePack => false,
        }
    }

    /// Encodes one message, framing included, ready to be written to a transport.
    pub fn encode(self, message: &HubMessage) -> Result<bytes::Bytes, ProtocolError> {
        match self {
            Self::Json => json::encode(message),
            Self::MessagePack => msgpack::encode(message),
        }
    }

    /// A Ping, encoded once for the whole process: keep-alives are the most frequent message,
    /// and idle connections should not each hold a copy.
    pub fn encoded_ping(self) -> bytes::Bytes {
        match self {
            Self::Json => bytes::Bytes::from_static(b"{\"type\":6}\x1e"),
            Self::MessagePack => bytes::Bytes::from_static(b"\x02\x91\x06"),
        }
    }

    /// Decodes one framed record (without its separator or length prefix) into a message.
    pub fn decode(self, record: &[u8]) -> Result<HubMessage, ProtocolError> {
        match self {
            Self::Json => json::decode(record),
            Self::MessagePack => msgpack::decode(record),
        }
    }

    /// The framer for this protocol's records, starting with `initial` bytes already received
    /// (what followed the handshake record).
    pub fn framer(self, max_record: usize, initial: bytes::BytesMut) -> Framer {
        match self {
            Self::Json => {
                let mut framer = TextFramer::new(max_record);
                framer.push(&initial);
                Framer::Text(framer)
            }
            Self::MessagePack => Framer::Binary(BinaryFramer::new(max_record, initial)),
        }
    }
}

/// A framer for either record format, chosen by the protocol after the handshake.
#[derive(Debug)]
pub enum Framer {
    Text(TextFramer),
    Binary(BinaryFramer),
}

impl Framer {
    /// Appends bytes received from the transport.
    pub fn push(&mut self, bytes: &[u8]) {
        match self {
            Self::Text(framer) => framer.push(bytes),
            Self::Binary(framer) => framer.push(bytes),
        }
    }

    /// The next complete record, `Ok(None)` when more bytes are needed.
    pub fn next_record(&mut self) -> Result<Option<bytes::Bytes>, ProtocolError> {
        match self {
            Self::Text(framer) => framer.next_record(),
            Self::Binary(framer) => framer.next_record(),
        }
    }

    /// Whether part of a record is waiting for the rest of its bytes.
    pub fn has_partial_record(&self) -> bool {
        match self {
            Self::Text(framer) => framer.has_partial_record(),
            Self::Binary(framer) => framer.has_partial_record(),
        }
    }
}
