//! The JSON hub protocol decoder: arbitrary records never panic, and every record that decodes
//! survives decode → encode → decode unchanged (and the encoding is stable). A decoded message
//! also survives the MessagePack encoding, since the gateway relays JSON clients' values to
//! MessagePack clients.
#![no_main]

use hubgate_fuzz::same_message;
use libfuzzer_sys::fuzz_target;
use protocol::{json, msgpack, Protocol, RECORD_SEPARATOR};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = json::decode(data) else { return };
    let encoded = json::encode(&message).expect("a decoded message encodes");
    assert_eq!(encoded.last(), Some(&RECORD_SEPARATOR), "an encoded record ends with its separator");
    let body = &encoded[..encoded.len() - 1];
    assert!(!body.contains(&RECORD_SEPARATOR), "the separator appears only at the end");
    let again = json::decode(body).unwrap_or_else(|e| panic!("re-decoding {body:?} failed: {e}"));
    assert!(same_message(&message, &again), "JSON round trip changed {message:?} into {again:?}");
    assert_eq!(json::encode(&again).expect("encodes again"), encoded, "the JSON encoding is stable");
    assert_eq!(Protocol::Json.decode(body).ok().as_ref().map(|m| same_message(m, &message)), Some(true));

    let packed = msgpack::encode(&message).expect("a JSON message encodes as MessagePack");
    let mut framer = Protocol::MessagePack.framer(usize::MAX, bytes::BytesMut::from(&packed[..]));
    let record = framer.next_record().expect("framed").expect("one whole record");
    let crossed = msgpack::decode(&record).unwrap_or_else(|e| panic!("MessagePack of {message:?} failed: {e}"));
    assert!(same_message(&message, &crossed), "JSON → MessagePack changed {message:?} into {crossed:?}");
});
