//! The backplane envelope: what one node tells the others about one send.
//!
//! Encoded with MessagePack (rmp-serde, positional). The first field is a version number so a
//! node can refuse an envelope from a newer, incompatible node instead of misreading it. The
//! payload is the hub message already encoded for each protocol, so receivers write the bytes
//! to their clients without decoding them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::Audience;

/// The envelope version this node writes and reads.
pub const VERSION: u8 = 1;

/// One send, as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u8,
    /// The publishing node's id; it ignores its own envelopes.
    pub origin: String,
    /// Lower-case hub name.
    pub hub: String,
    pub audience: Audience,
    /// Connection ids that must not receive the message.
    pub excluded: Vec<String>,
    /// The framed message in the `json` protocol.
    pub json: Bytes,
}

/// Why an envelope could not be read.
#[derive(Debug, Error)]
pub enum EnvelopeError {
    #[error("malformed envelope: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
    #[error("envelope version {0} is not supported (this node reads version {VERSION})")]
    Version(u8),
}

impl Envelope {
    pub fn encode(&self) -> Bytes {
        // Serialising plain owned data into a Vec cannot fail.
        Bytes::from(rmp_serde::to_vec(self).unwrap_or_default())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let envelope: Envelope = rmp_serde::from_slice(bytes)?;
        if envelope.version != VERSION {
            return Err(EnvelopeError::Version(envelope.version));
        }
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(audience: Audience) -> Envelope {
        Envelope {
            version: VERSION,
            origin: "node-a".into(),
            hub: "chat".into(),
            audience,
            excluded: vec!["c1".into()],
            json: Bytes::from_static(b"{\"type\":1,\"target\":\"t\",\"arguments\":[]}\x1e"),
        }
    }

    #[test]
    fn every_audience_round_trips() {
        for audience in
            [Audience::All, Audience::Group("*".into()), Audience::User("é".into()), Audience::Connection("x".into())]
        {
            let envelope = sample(audience);
            assert_eq!(Envelope::decode(&envelope.encode()).unwrap(), envelope);
        }
    }

    #[test]
    fn another_version_is_refused() {
        let mut envelope = sample(Audience::All);
        envelope.version = 2;
        assert!(matches!(Envelope::decode(&envelope.encode()), Err(EnvelopeError::Version(2))));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Envelope::decode(b"\xc1\xc1").is_err());
    }
}
