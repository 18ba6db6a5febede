//! The handshake: the first record a client sends (always JSON text, whatever the protocol it
//! asks for) and the server's answer, `{}` on success or `{"error": ...}` on failure.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::{ProtocolError, RECORD_SEPARATOR};

/// What a client asks for: a protocol name and a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeRequest {
    pub protocol: String,
    pub version: u32,
}

impl HandshakeRequest {
    /// Parses a handshake record (separator removed). Unknown properties are ignored; a missing
    /// `protocol` or `version` is an error.
    pub fn parse(record: &[u8]) -> Result<Self, ProtocolError> {
        #[derive(Deserialize)]
        struct Raw {
            protocol: Option<String>,
            version: Option<u32>,
        }
        let raw: Raw = serde_json::from_slice(record)
            .map_err(|e| ProtocolError::Handshake(format!("malformed handshake request: {e}")))?;
        match (raw.protocol, raw.version) {
            (Some(protocol), Some(version)) => Ok(Self { protocol, version }),
            (None, _) => Err(ProtocolError::Handshake("handshake request is missing the 'protocol' property".into())),
            (_, None) => Err(ProtocolError::Handshake("handshake request is missing the 'version' property".into())),
        }
    }

    /// The framed request, as a client writes it.
    pub fn encode(&self) -> Bytes {
        frame(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// The server's answer to a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeResponse {
    /// `{}`: the connection is established.
    Accepted,
    /// `{"error": text}`: the server closes the connection after sending it.
    Refused(String),
}

impl HandshakeResponse {
    /// The framed response. It never has a `type` property: clients would take it for a
    /// hub message.
    pub fn encode(&self) -> Bytes {
        match self {
            Self::Accepted => frame(b"{}".to_vec()),
            Self::Refused(error) => {
                let body = serde_json::json!({ "error": error });
                frame(serde_json::to_vec(&body).unwrap_or_default())
            }
        }
    }

    /// Parses a response record (separator removed), as a client does.
    pub fn parse(record: &[u8]) -> Result<Self, ProtocolError> {
        #[derive(Deserialize)]
        struct Raw {
            error: Option<String>,
            #[serde(rename = "type")]
            kind: Option<serde_json::Value>,
        }
        let raw: Raw = serde_json::from_slice(record)
            .map_err(|e| ProtocolError::Handshake(format!("malformed handshake response: {e}")))?;
        if raw.kind.is_some() {
            return Err(ProtocolError::Handshake("Expected a handshake response from the server.".into()));
        }
        Ok(match raw.error {
            Some(error) => Self::Refused(error),
            None => Self::Accepted,
        })
    }
}

fn frame(mut body: Vec<u8>) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 1);
    body.push(RECORD_SEPARATOR);
    out.put_slice(&body);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_parses_with_extra_properties_in_any_order() {
        let request = HandshakeRequest::parse(br#"{"version":1,"extra":[1],"protocol":"json"}"#).unwrap();
        assert_eq!(request, HandshakeRequest { protocol: "json".into(), version: 1 });
    }

    #[test]
    fn a_request_without_version_or_protocol_is_refused() {
        assert!(HandshakeRequest::parse(br#"{"protocol":"json"}"#).is_err());
        assert!(HandshakeRequest::parse(br#"{"version":1}"#).is_err());
        assert!(HandshakeRequest::parse(b"not json").is_err());
    }

    #[test]
    fn request_round_trips_through_its_encoding() {
        let request = HandshakeRequest { protocol: "json".into(), version: 1 };
        let bytes = request.encode();
        assert_eq!(bytes.last(), Some(&RECORD_SEPARATOR));
        assert_eq!(HandshakeRequest::parse(&bytes[..bytes.len() - 1]).unwrap(), request);
    }

    #[test]
    fn acceptance_is_exactly_an_empty_object() {
        assert_eq!(&HandshakeResponse::Accepted.encode()[..], b"{}\x1e");
    }

    #[test]
    fn refusal_carries_the_error_and_round_trips() {
        let refusal = HandshakeResponse::Refused("The protocol 'x' is not supported.".into());
        let bytes = refusal.encode();
        assert_eq!(&bytes[..], b"{\"error\":\"The protocol 'x' is not supported.\"}\x1e");
        assert_eq!(HandshakeResponse::parse(&bytes[..bytes.len() - 1]).unwrap(), refusal);
    }

    #[test]
    fn a_response_with_a_type_is_not_a_handshake_response() {
        assert!(HandshakeResponse::parse(br#"{"type":6}"#).is_err());
    }
}
