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

/// Bytes of the payload that carry data; the rest is filler.
pub const HEADER_LEN: usize = 4 + 12 + 16;
/// Where the payload starts in a delivered record: right after this.
const ARGUMENTS_MARKER: &[u8] = b"\"arguments\":[\"";

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

/// The stamp of a delivered `tick` record (separator already removed), found without a full
/// JSON parse: the first argument's string. `None` for any other record.
pub fn stamp_of_record(record: &[u8]) -> Option<Stamp> {
    let start = record.windows(ARGUMENTS_MARKER.len()).position(|w| w == ARGUMENTS_MARKER)? + ARGUMENTS_MARKER.len();
    Stamp::decode(&record[start..])
}

/// The invocation the publisher sends: fire-and-forget (no invocation id), framed.
pub fn publish_record(group: &str, payload: &str) -> String {
    format!("{{\"type\":1,\"target\":\"SendToGroup\",\"arguments\":[\"{group}\",\"tick\",\"{payload}\"]}}\u{1e}")
}

/// Splits `chunk` into 0x1E-terminated records, calling `each` on every complete one
/// (without the separator). A record split across chunks is kept in `partial` until its end
/// arrives. Returns `false`, dropping the partial data, if it grows beyond `max_partial`.
pub fn for_each_record(partial: &mut Vec<u8>, chunk: &[u8], max_partial: usize, mut each: impl FnMut(&[u8])) -> bool {
    let mut rest = chunk;
    if !partial.is_empty() {
        match rest.iter().position(|&b| b == protocol::RECORD_SEPARATOR) {
            Some(end) => {
                partial.extend_from_slice(&rest[..end]);
                each(partial);
                partial.clear();
                rest = &rest[end + 1..];
            }
            None => {
                partial.extend_from_slice(rest);
                if partial.len() > max_partial {
                    partial.clear();
                    return false;
                }
                return true;
            }
        }
    }
    let mut records = rest.split(|&b| b == protocol::RECORD_SEPARATOR);
    // `split` yields the piece after the last separator too: empty when the chunk ends with
    // one, otherwise the start of the next record.
    let mut current = records.next();
    while let Some(record) = current {
        let next = records.next();
        match next {
            Some(_) => each(record),
            None if !record.is_empty() => {
                if record.len() > max_partial {
                    return false;
                }
                partial.extend_from_slice(record);
            }
            None => {}
        }
        current = next;
    }
    true
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
        assert_eq!(stamp_of_record(record.as_bytes()), Some(stamp));
        let decoded = protocol::Protocol::Json.decode(record.as_bytes()).unwrap();
        assert!(matches!(decoded, protocol::HubMessage::Invocation(ref i) if i.target == "tick"));
        assert_eq!(stamp_of_record(b"{\"type\":6}"), None);
        assert_eq!(stamp_of_record(b"{\"type\":3,\"invocationId\":\"1\"}"), None);
    }

    #[test]
    fn the_published_invocation_is_a_valid_fire_and_forget_call() {
        let record = publish_record("bench", "abc");
        assert!(record.ends_with('\u{1e}'));
        let message = protocol::Protocol::Json.decode(&record.as_bytes()[..record.len() - 1]).unwrap();
        let protocol::HubMessage::Invocation(invocation) = message else { panic!("not an invocation") };
        assert_eq!(invocation.target, "SendToGroup");
        assert_eq!(invocation.invocation_id, None);
        assert_eq!(invocation.arguments.len(), 3);
    }

    #[test]
    fn records_are_split_across_and_within_chunks() {
        let mut partial = Vec::new();
        let mut seen = Vec::new();
        assert!(for_each_record(&mut partial, b"a\x1ebb\x1ec", 100, |r| seen.push(r.to_vec())));
        assert_eq!(seen, vec![b"a".to_vec(), b"bb".to_vec()]);
        assert_eq!(partial, b"c");
        assert!(for_each_record(&mut partial, b"cc", 100, |r| seen.push(r.to_vec())));
        assert!(for_each_record(&mut partial, b"c\x1e", 100, |r| seen.push(r.to_vec())));
        assert_eq!(seen.last().unwrap(), b"cccc");
        assert!(partial.is_empty());
        assert!(for_each_record(&mut partial, b"\x1e\x1e", 100, |r| seen.push(r.to_vec())));
        assert_eq!(seen.len(), 5, "empty records are passed on as they are");
    }

    #[test]
    fn an_endless_partial_record_is_refused() {
        let mut partial = Vec::new();
        assert!(for_each_record(&mut partial, &[b'a'; 8], 10, |_| {}));
        assert!(!for_each_record(&mut partial, &[b'a'; 8], 10, |_| {}));
        assert!(partial.is_empty());
        assert!(!for_each_record(&mut partial, &[b'a'; 11], 10, |_| {}));
    }
}
