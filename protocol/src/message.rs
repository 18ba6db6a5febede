//! The hub message model: the nine message types of the SignalR hub protocol, independent of
//! their encoding. Field rules (which properties are required) are enforced by the decoders,
//! so a `HubMessage` that exists is always well formed.

use std::collections::BTreeMap;

use crate::Value;

/// Message headers (types 1–5): string to string, ignored unless a feature needs them.
pub type Headers = BTreeMap<String, String>;

/// One hub protocol message.
#[derive(Debug, Clone, PartialEq)]
pub enum HubMessage {
    /// Type 1: call a method on the peer. No `invocation_id` means "no reply wanted".
    Invocation(Invocation),
    /// Type 2: one item of a stream (server results or a client upload stream).
    StreamItem(StreamItem),
    /// Type 3: the end of an invocation or stream, with a result, nothing, or an error.
    Completion(Completion),
    /// Type 4: call a streaming method; `invocation_id` is always present.
    StreamInvocation(Invocation),
    /// Type 5: stop a stream started by a StreamInvocation.
    CancelInvocation { invocation_id: String, headers: Headers },
    /// Type 6: keep-alive, no payload.
    Ping,
    /// Type 7: the sender is closing the connection.
    Close(Close),
    /// Type 8: stateful reconnect, "every trackable message up to this id was processed".
    Ack { sequence_id: u64 },
    /// Type 9: stateful reconnect, "the next trackable message I send has this id".
    Sequence { sequence_id: u64 },
}

impl HubMessage {
    /// The protocol's number for this message type.
    pub fn type_id(&self) -> u8 {
        match self {
            Self::Invocation(_) => 1,
            Self::StreamItem(_) => 2,
            Self::Completion(_) => 3,
            Self::StreamInvocation(_) => 4,
            Self::CancelInvocation { .. } => 5,
            Self::Ping => 6,
            Self::Close(_) => 7,
            Self::Ack { .. } => 8,
            Self::Sequence { .. } => 9,
        }
    }
}

/// An Invocation or StreamInvocation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Invocation {
    pub headers: Headers,
    /// Absent for fire-and-forget calls; never the empty string.
    pub invocation_id: Option<String>,
    /// The method name; never empty.
    pub target: String,
    pub arguments: Vec<Value>,
    /// Ids of client upload streams that replace stream arguments.
    pub stream_ids: Vec<String>,
}

impl Invocation {
    /// A fire-and-forget call of `target`, as the server sends to clients.
    pub fn call(target: impl Into<String>, arguments: Vec<Value>) -> Self {
        Self { target: target.into(), arguments, ..Self::default() }
    }
}

/// A StreamItem.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamItem {
    pub headers: Headers,
    pub invocation_id: String,
    /// The item; `Value::Nil` is a legitimate item.
    pub item: Value,
}

/// A Completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub headers: Headers,
    pub invocation_id: String,
    pub outcome: CompletionOutcome,
}

impl Completion {
    /// A completion without headers.
    pub fn new(invocation_id: impl Into<String>, outcome: CompletionOutcome) -> Self {
        Self { headers: Headers::new(), invocation_id: invocation_id.into(), outcome }
    }
}

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CompletionOutcome {
    /// The method returned nothing (JSON: no `result` property).
    Void,
    /// The method returned a value, possibly `Nil` (JSON: `"result":null`).
    Value(Value),
    /// The method failed; the text is shown to the caller.
    Error(String),
}

/// A Close message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Close {
    /// Why the connection is closing, when it is an error.
    pub error: Option<String>,
    /// Whether a client with automatic reconnect should reconnect.
    pub allow_reconnect: bool,
}
