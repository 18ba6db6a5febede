//! The backplane envelope: what one node tells the others.
//!
//! Encoded with MessagePack (rmp-serde, positional). The first field is a version number so a
//! node can refuse an envelope from a newer, incompatible node instead of misreading it. A
//! delivery carries the hub message already encoded for every protocol, so receivers write the
//! bytes to their clients without decoding them. Group changes for a connection on another node
//! travel as a request to that node and an acknowledgement back; so do invocations awaited
//! from a client ([`Body::ClientInvoke`] there, [`Body::ClientInvokeReceived`] and
//! [`Body::ClientResult`] back). A connection
//! closed through the REST API gets a [`Body::CloseConnection`] on its node's channel; its
//! existence is asked with [`Body::ConnectionQuery`] and answered like a group change. Closing
//! a whole audience ([`Body::CloseConnections`]) and changing a user's groups
//! ([`Body::UserGroupChange`]) go on the audience's own channel, which exactly the nodes with
//! members subscribe to.
//!
//! Versioning: bodies are externally tagged by variant, so adding a variant leaves every
//! existing body's encoding unchanged and the version stays 2. A node that predates a variant
//! counts such an envelope as unreadable and drops it: a client-result invocation sent to an
//! older node then ends with the awaiting node's timeout. A node older than
//! [`Body::ClientInvokeReceived`] never sends it, so during a rolling upgrade a client result
//! awaited from a connection on such a node fails after the group-ack timeout. Changing an existing body's fields
//! needs a new version.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{Audience, ClientOutcome, Encoded};

/// The envelope version this node writes and reads (2: deliveries carry every protocol).
pub const VERSION: u8 = 2;

/// One message between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u8,
    /// The publishing node's id; a node ignores deliveries it published itself.
    pub origin: String,
    pub body: Body,
}

/// What the envelope asks of its receivers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Body {
    /// Deliver a hub message to the local connections of `audience`.
    Deliver {
        /// Lower-case hub name.
        hub: String,
        audience: Audience,
        /// Connection ids that must not receive the message.
        excluded: Vec<String>,
        /// The framed message in every protocol.
        message: Encoded,
    },
    /// Add (`join`) or remove a local connection to or from a group, then acknowledge.
    GroupChange { request: u64, hub: String, connection: String, group: String, join: bool },
    /// The answer to a group change (`error` is `None` when it was applied) or to a
    /// connection query (`None` when the connection is there).
    GroupAck { request: u64, error: Option<String> },
    /// The answer to a group change for a connection the node does not have.
    NoSuchConnection { request: u64 },
    /// Send an invocation to a local connection and report how it ends with a ClientResult.
    ClientInvoke {
        /// Cluster-unique id the client echoes in its Completion (it names the origin node).
        invocation_id: String,
        hub: String,
        connection: String,
        /// The framed Invocation, carrying `invocation_id`, in every protocol.
        message: Encoded,
    },
    /// How an invocation sent with ClientInvoke ended.
    ClientResult { invocation_id: String, outcome: ClientOutcome },
    /// End a local connection with a Close carrying `reason` (server REST API). No answer.
    CloseConnection { hub: String, connection: String, reason: Option<String> },
    /// Whether a local connection exists (server REST API); answered with a GroupAck.
    ConnectionQuery { request: u64, hub: String, connection: String },
    /// End the local connections of `audience` but the excluded ones with a Close carrying
    /// `reason` (server REST API). No answer.
    CloseConnections { hub: String, audience: Audience, excluded: Vec<String>, reason: Option<String> },
    /// Remove a local connection from every group it is in, then acknowledge with a GroupAck.
    LeaveAllGroups { request: u64, hub: String, connection: String },
    /// Add (`join`) or remove the local connections of `user` to or from `group`; with no
    /// group, remove them from every group. No answer: the user's membership is already
    /// stored for connections opened later.
    UserGroupChange { hub: String, user: String, group: Option<String>, join: bool },
    /// The answer to a ClientInvoke whose connection is here: the invocation was queued for
    /// the client. Sent before the ClientResult, so the awaiting node learns within the
    /// group-ack timeout whether the host heard it, not only after the client-result timeout.
    ClientInvokeReceived { invocation_id: String },
}

/// Why an envelope could not be read.
#[derive(Debug, Error)]
pub enum EnvelopeError {
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("envelope version {0} is not supported (this node reads version {VERSION})")]
    Version(u8),
}

impl Envelope {
    pub fn new(origin: &str, body: Body) -> Self {
        Self { version: VERSION, origin: origin.to_owned(), body }
    }

    pub fn encode(&self) -> Bytes {
        // Serialising plain owned data into a Vec cannot fail.
        Bytes::from(rmp_serde::to_vec(self).unwrap_or_default())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        // Read the version alone first, so a newer layout is refused by version, not misread.
        let malformed = |reason: String| EnvelopeError::Malformed(reason);
        let value = rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| malformed(e.to_string()))?;
        let version = value
            .as_array()
            .and_then(|fields| fields.first())
            .and_then(rmpv::Value::as_u64)
            .ok_or_else(|| malformed("no version field".into()))?;
        if version != u64::from(VERSION) {
            return Err(EnvelopeError::Version(u8::try_from(version).unwrap_or(u8::MAX)));
        }
        rmp_serde::from_slice(bytes).map_err(|e| malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(audience: Audience) -> Envelope {
        Envelope::new(
            "node-a",
            Body::Deliver {
                hub: "chat".into(),
                audience,
                excluded: vec!["c1".into()],
                message: Encoded {
                    json: Bytes::from_static(b"{\"type\":1,\"target\":\"t\",\"arguments\":[]}\x1e"),
                    messagepack: Bytes::from_static(b"\x06\x95\x01\x80\xc0\xa1t\x90"),
                },
            },
        )
    }

    fn client_result(outcome: ClientOutcome) -> Envelope {
        Envelope::new("m", Body::ClientResult { invocation_id: "n.0".into(), outcome })
    }

    #[test]
    fn every_body_round_trips() {
        let envelopes = [
            deliver(Audience::All),
            deliver(Audience::Group("*".into())),
            deliver(Audience::User("é".into())),
            deliver(Audience::Connection("n.x".into())),
            Envelope::new(
                "n",
                Body::GroupChange {
                    request: 7,
                    hub: "h".into(),
                    connection: "c".into(),
                    group: "g".into(),
                    join: true,
                },
            ),
            Envelope::new("n", Body::GroupAck { request: 7, error: Some("nope".into()) }),
            Envelope::new("n", Body::GroupAck { request: 8, error: None }),
            Envelope::new("n", Body::NoSuchConnection { request: 8 }),
            Envelope::new(
                "n",
                Body::CloseConnection { hub: "chat".into(), connection: "m.x".into(), reason: Some("bye".into()) },
            ),
            Envelope::new("n", Body::ConnectionQuery { request: 9, hub: "chat".into(), connection: "m.x".into() }),
            Envelope::new(
                "n",
                Body::CloseConnections {
                    hub: "chat".into(),
                    audience: Audience::Group("g".into()),
                    excluded: vec!["m.x".into()],
                    reason: None,
                },
            ),
            Envelope::new("n", Body::LeaveAllGroups { request: 10, hub: "chat".into(), connection: "m.x".into() }),
            Envelope::new(
                "n",
                Body::UserGroupChange { hub: "chat".into(), user: "é".into(), group: Some("*".into()), join: true },
            ),
            Envelope::new(
                "n",
                Body::UserGroupChange { hub: "chat".into(), user: "u".into(), group: None, join: false },
            ),
            Envelope::new(
                "n",
                Body::ClientInvoke {
                    invocation_id: "n.0".into(),
                    hub: "h".into(),
                    connection: "m.c".into(),
                    message: Encoded {
                        json: Bytes::from_static(b"{}\x1e"),
                        messagepack: Bytes::from_static(b"\x01\x90"),
                    },
                },
            ),
            client_result(ClientOutcome::Value(rmpv::Value::Map(vec![(
                rmpv::Value::from("bytes"),
                rmpv::Value::Binary(vec![1, 2, 3]),
            )]))),
            client_result(ClientOutcome::Value(rmpv::Value::Nil)),
            client_result(ClientOutcome::Error("Error: from callback".into())),
            client_result(ClientOutcome::NoSuchConnection),
            client_result(ClientOutcome::Disconnected),
            client_result(ClientOutcome::Timeout),
            Envelope::new("h", Body::ClientInvokeReceived { invocation_id: "n.0".into() }),
        ];
        for envelope in envelopes {
            assert_eq!(Envelope::decode(&envelope.encode()).unwrap(), envelope);
        }
    }

    #[test]
    fn another_version_is_refused_by_version() {
        let mut envelope = deliver(Audience::All);
        envelope.version = 1;
        assert!(matches!(Envelope::decode(&envelope.encode()), Err(EnvelopeError::Version(1))));
        let future_layout = rmp_serde::to_vec(&(3u8, "n", [1, 2, 3], "more")).unwrap();
        assert!(matches!(Envelope::decode(&future_layout), Err(EnvelopeError::Version(3))));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Envelope::decode(b"\xc1\xc1").is_err());
        assert!(Envelope::decode(b"").is_err());
    }
}
