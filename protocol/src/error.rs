//! Errors of the codec. Each one says what was wrong with the bytes, in words that can be sent
//! back to the peer in a Close message.

use thiserror::Error;

/// Why a record could not be read or a message could not be written.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The record is not valid JSON, or a property has the wrong JSON type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The record is valid JSON but has no `type`.
    #[error("missing required property 'type'")]
    MissingType,
    /// The `type` number is not one of the SignalR message types 1–9.
    #[error("unknown message type: {0}")]
    UnknownMessageType(i64),
    /// A property the message type requires is absent.
    #[error("missing required property '{property}' in a message of type {message_type}")]
    MissingProperty { message_type: u8, property: &'static str },
    /// A property is present but its value breaks the protocol's rules.
    #[error("invalid property '{property}': {reason}")]
    InvalidProperty { property: &'static str, reason: &'static str },
    /// A message (or a partial one still waiting for its end) exceeds the configured limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge { size: usize, limit: usize },
    /// The handshake record is unusable; the text is what the server answers.
    #[error("{0}")]
    Handshake(String),
    /// A message nests arrays and maps deeper than the limit (see [`crate::nesting`]).
    #[error("message nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    /// A value could not be converted to or from a Rust type.
    #[error("value conversion failed: {0}")]
    Value(String),
}
