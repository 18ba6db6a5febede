//! A hub message encoded once for every protocol.
//!
//! Fan-out writes the same message to many connections that may speak different protocols.
//! Encoding it once per protocol up front, rather than once per recipient, keeps the cost of a
//! delivery a reference-count increment; the same pair travels in the backplane envelope, so
//! receiving nodes write the bytes without decoding them.

use bytes::Bytes;
use protocol::{HubMessage, Protocol, ProtocolError};
use serde::{Deserialize, Serialize};

/// One message, framed and ready to write in each protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encoded {
    pub json: Bytes,
    pub messagepack: Bytes,
}

impl Encoded {
    /// Encodes `message` in every protocol.
    pub fn new(message: &HubMessage) -> Result<Self, ProtocolError> {
        Ok(Self { json: Protocol::Json.encode(message)?, messagepack: Protocol::MessagePack.encode(message)? })
    }

    /// The bytes for a connection speaking `protocol`.
    pub fn for_protocol(&self, protocol: Protocol) -> &Bytes {
        match protocol {
            Protocol::Json => &self.json,
            Protocol::MessagePack => &self.messagepack,
        }
    }
}

#[cfg(test)]
mod tests {
    use protocol::{Invocation, Value};

    use super::*;

    #[test]
    fn each_protocol_gets_its_own_framing_of_the_same_message() {
        let message = HubMessage::Invocation(Invocation::call("t", vec![Value::from("é")]));
        let encoded = Encoded::new(&message).unwrap();
        assert_eq!(encoded.for_protocol(Protocol::Json).last(), Some(&0x1E));
        for protocol in Protocol::ALL {
            let mut framer = protocol.framer(1024, encoded.for_protocol(protocol)[..].into());
            let record = framer.next_record().unwrap().unwrap();
            assert_eq!(protocol.decode(&record).unwrap(), message);
        }
    }
}
