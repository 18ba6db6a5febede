//! The benchmark message: a fixed-size ASCII string that says which step and sequence number
//! it is and when it was sent, and the one record the gateway delivers for it.
//!
//! Layout of the payload string (hex digits, so JSON never escapes it):
//!
//! ```text
//! SSSS QQQQQQQQQQQQ TTTTTTTTTTTTTTTT xxxx…
//! step  sequence     sent, ns since the harness's clock origin, then filler
//! ```
//!
//! The publisher invokes `SendToGroup("bench", "tick", payload)`; every subscriber then
//! receives `{"type":1,"target":"tick","arguments":["<payload>"]}` followed by 0x1E.

use protocol::{HubMessage, Value};

/// Bytes of the payload that carry data; the rest is filler.
pub const HEADER_LEN: usize = 4 + 12 + 16;
/// The hub method the publisher invokes.
pub const PUBLISH_TARGET: &str = "SendToGroup";
/// The client method every subscriber receives the payload on.
const DELIVERY_TARGET: &str = "tick";

/// What a payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub step: u16,
    pub sequence: u64,
    pub sent_ns: u64,
}

impl Stamp {
    /// The payload string of exactly `len` bytes (at least [`HEADER_LEN`]).
    pub fn encode(self, len: usize) -> String {
        let mut payload = format!("{:04x}{:012x}{:016x}", self.step, self.sequence, self.sent_ns);
        payload.truncate(HEADER_LEN);
        let filler = len.saturating_sub(payload.len());
        payload.extend(std::iter::repeat_n('x', filler));
        payload
    }

    /// Reads the header of a payload string.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        let header = payload.get(..HEADER_LEN)?;
        Some(Self {
            step: u16::try_from(hex(&header[..4])?).ok()?,
            sequence: hex(&header[4..16])?,
            sent_ns: hex(&header[16..32])?,
        })
    }
}

fn hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |value, &digit| {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        Some(value << 4 | u64::from(nibble))
    })
}

/// The stamp of a delivered `tick` invocation: its first argument's string. `None` for any
/// other message.
pub fn stamp_of(message: &HubMessage) -> Option<Stamp> {
    let HubMessage::Invocation(invocation) = message else { return None };
    if invocation.target != DELIVERY_TARGET {
        return None;
    }
    Stamp::decode(invocation.arguments.first()?.as_str()?.as_bytes())
}

/// The arguments of the publisher's `SendToGroup` invocation (sent without an invocation id:
/// fire-and-forget).
pub fn publish_arguments(group: &str, payload: String) -> Vec<Value> {
    vec![Value::from(group), Value::from(DELIVERY_TARGET), Value::from(payload)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_has_the_requested_size_and_reads_back() {
        let stamp = Stamp { step: 3, sequence: 123_456, sent_ns: 987_654_321_000 };
        let payload = stamp.encode(64);
        assert_eq!(payload.len(), 64);
        assert!(payload.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(Stamp::decode(payload.as_bytes()), Some(stamp));
        assert_eq!(Stamp::decode(b"0003zz"), None);
        assert_eq!(Stamp::decode(&[b'g'; 64]), None);
    }

    #[test]
    fn the_stamp_is_found_in_a_record_as_the_gateway_encodes_it() {
        let stamp = Stamp { step: 1, sequence: 7, sent_ns: 42 };
        let record = format!("{{\"type\":1,\"target\":\"tick\",\"arguments\":[\"{}\"]}}", stamp.encode(64));
        let decoded = protocol::Protocol::Json.decode(record.as_bytes()).unwrap();
        assert!(matches!(decoded, protocol::HubMessage::Invocation(ref i) if i.target == "tick"));
        assert_eq!(stamp_of(&decoded), Some(stamp));
        let decode = |record: &[u8]| protocol::Protocol::Json.decode(record).unwrap();
        assert_eq!(stamp_of(&decode(b"{\"type\":6}")), None);
        assert_eq!(stamp_of(&decode(b"{\"type\":3,\"invocationId\":\"1\"}")), None);
    }

    #[test]
    fn the_published_invocation_is_a_valid_fire_and_forget_call() {
        let invocation = protocol::Invocation {
            target: PUBLISH_TARGET.into(),
            arguments: publish_arguments("bench", "abc".into()),
            ..protocol::Invocation::default()
        };
        let record = protocol::Protocol::Json.encode(&HubMessage::Invocation(invocation)).unwrap();
        assert!(record.ends_with(&[protocol::RECORD_SEPARATOR]));
        let message = protocol::Protocol::Json.decode(&record[..record.len() - 1]).unwrap();
        let protocol::HubMessage::Invocation(invocation) = message else { panic!("not an invocation") };
        assert_eq!(invocation.target, "SendToGroup");
        assert_eq!(invocation.invocation_id, None);
        assert_eq!(invocation.arguments.len(), 3);
    }
}
