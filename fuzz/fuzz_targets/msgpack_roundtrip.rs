//! The MessagePack hub protocol decoder: arbitrary records never panic, and every record that
//! decodes survives decode → encode → decode unchanged, with a stable encoding. Also, a
//! decoded message encodes as JSON (what a JSON client of the same hub receives) and that JSON
//! decodes.
#![no_main]

use hubgate_fuzz::same_message;
use libfuzzer_sys::fuzz_target;
use protocol::{json, msgpack, BinaryFramer};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = msgpack::decode(data) else { return };
    let encoded = msgpack::encode(&message).expect("a decoded message encodes");
    let mut framer = BinaryFramer::new(usize::MAX, bytes::BytesMut::new());
    framer.push(&encoded);
    let record = framer.next_record().expect("a valid length prefix").expect("one whole record");
    assert!(!framer.has_partial_record(), "the length prefix covers the whole encoding");
    let again = msgpack::decode(&record).unwrap_or_else(|e| panic!("re-decoding {record:?} failed: {e}"));
    assert!(same_message(&message, &again), "MessagePack round trip changed {message:?} into {again:?}");
    assert_eq!(msgpack::encode(&again).expect("encodes again"), encoded, "the MessagePack encoding is stable");

    let text = json::encode(&message).expect("a MessagePack message encodes as JSON");
    json::decode(&text[..text.len() - 1]).unwrap_or_else(|e| panic!("JSON of {message:?} does not decode: {e}"));
});
