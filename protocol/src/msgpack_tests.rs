use super::*;
use crate::framing::BinaryFramer;

fn body(bytes: &Bytes) -> Bytes {
    let mut framer = BinaryFramer::new(1 << 20, BytesMut::from(&bytes[..]));
    let record = framer.next_record().unwrap().expect("one whole record");
    assert!(!framer.has_partial_record(), "exactly one record");
    record
}

fn round_trip(message: HubMessage) {
    assert_eq!(decode(&body(&encode(&message).unwrap())).unwrap(), message);
}

#[test]
fn every_message_type_round_trips() {
    let mut headers = Headers::new();
    headers.insert("k".into(), "v".into());
    let binary = Value::Binary(vec![1, 2, 3]);
    let timestamp = Value::Ext(-1, vec![0, 0, 0, 0, 56, 109, 67, 128]);
    round_trip(HubMessage::Invocation(Invocation {
        headers: headers.clone(),
        invocation_id: Some("0".into()),
        target: "Echo".into(),
        arguments: vec![Value::from("你好"), binary.clone(), timestamp.clone(), Value::Nil],
        stream_ids: vec!["1".into()],
    }));
    round_trip(HubMessage::Invocation(Invocation::call("Notify", vec![])));
    round_trip(HubMessage::StreamItem(StreamItem { headers: Headers::new(), invocation_id: "1".into(), item: binary }));
    round_trip(HubMessage::Completion(Completion::new("2", CompletionOutcome::Void)));
    round_trip(HubMessage::Completion(Completion::new("2", CompletionOutcome::Value(Value::Nil))));
    round_trip(HubMessage::Completion(Completion::new("2", CompletionOutcome::Value(timestamp))));
    round_trip(HubMessage::Completion(Completion::new("2", CompletionOutcome::Error("boom".into()))));
    round_trip(HubMessage::StreamInvocation(Invocation {
        invocation_id: Some("3".into()),
        target: "Stream".into(),
        ..Invocation::default()
    }));
    round_trip(HubMessage::CancelInvocation { invocation_id: "3".into(), headers });
    round_trip(HubMessage::Ping);
    round_trip(HubMessage::Close(Close::default()));
    round_trip(HubMessage::Close(Close { error: Some("bye".into()), allow_reconnect: true }));
    round_trip(HubMessage::Ack { sequence_id: 1 << 40 });
    round_trip(HubMessage::Sequence { sequence_id: 1 });
}

#[test]
fn the_specification_examples_decode_and_encode_byte_for_byte() {
    // [1, {}, "0", "Echo", ["hi"]]: five items, as the JavaScript client writes it.
    let invocation = [0x95, 0x01, 0x80, 0xA1, 0x30, 0xA4, 0x45, 0x63, 0x68, 0x6F, 0x91, 0xA2, 0x68, 0x69];
    let HubMessage::Invocation(decoded) = decode(&invocation).unwrap() else { panic!("an invocation") };
    assert_eq!((decoded.invocation_id.as_deref(), decoded.target.as_str()), (Some("0"), "Echo"));
    assert_eq!(decoded.arguments, vec![Value::from("hi")]);
    // [3, {}, "0", 3, "hi"] with its length prefix.
    let completion = HubMessage::Completion(Completion::new("0", CompletionOutcome::Value(Value::from("hi"))));
    assert_eq!(&encode(&completion).unwrap()[..], [0x09, 0x95, 0x03, 0x80, 0xA1, 0x30, 0x03, 0xA2, 0x68, 0x69]);
    assert_eq!(&encode(&HubMessage::Ping).unwrap()[..], [0x02, 0x91, 0x06]);
}

#[test]
fn lenient_layouts_of_the_official_clients_are_read() {
    // Close as the JavaScript client sends it: [7, nil].
    assert_eq!(decode(&[0x92, 0x07, 0xC0]).unwrap(), HubMessage::Close(Close::default()));
    // An empty invocation id means fire and forget; a wide integer type is still a type.
    let wide = [0x95, 0xCF, 0, 0, 0, 0, 0, 0, 0, 1, 0x80, 0xA0, 0xA1, 0x74, 0x90];
    let HubMessage::Invocation(invocation) = decode(&wide).unwrap() else { panic!("an invocation") };
    assert_eq!(invocation.invocation_id, None);
}

#[test]
fn malformed_messages_are_refused() {
    assert!(matches!(decode(&[0xC1]), Err(ProtocolError::Malformed(_))));
    assert!(matches!(decode(&[0x06]), Err(ProtocolError::Malformed(_))), "not an array");
    assert_eq!(decode(&[0x91, 0x2A]), Err(ProtocolError::UnknownMessageType(42)));
    assert!(matches!(decode(&[0x92, 0x01, 0x80]), Err(ProtocolError::MissingProperty { .. })));
    assert!(matches!(decode(&[0x94, 0x03, 0x80, 0xA1, 0x30, 0x07]), Err(ProtocolError::InvalidProperty { .. })));
    assert!(matches!(decode(&[0x91, 0x06, 0x06]), Err(ProtocolError::Malformed(_))), "trailing bytes");
}

/// An Invocation of Echo whose one argument is `levels` nested one-element arrays around 1.
fn nested_invocation(levels: usize) -> Vec<u8> {
    let mut bytes = vec![0x96, 0x01, 0x80, 0xc0, 0xa4, b'E', b'c', b'h', b'o', 0x91];
    bytes.extend(std::iter::repeat_n(0x91, levels));
    bytes.extend([0x01, 0x90]);
    bytes
}

#[test]
fn nesting_is_bounded_at_the_limit() {
    let limit = crate::nesting::MAX_DEPTH;
    // The message array and its arguments array are two of the levels.
    let at_limit = decode(&nested_invocation(limit - 2));
    assert!(at_limit.is_ok(), "{at_limit:?}");
    assert_eq!(decode(&nested_invocation(limit - 1)), Err(ProtocolError::TooDeep { limit }));
    assert_eq!(decode(&nested_invocation(100_000)), Err(ProtocolError::TooDeep { limit }));
}

#[test]
fn too_deep_values_are_not_encoded() {
    let deep = (0..crate::nesting::MAX_DEPTH - 1).fold(Value::from(1), |inner, _| Value::Array(vec![inner]));
    let message = HubMessage::Invocation(Invocation::call("Echo", vec![deep]));
    assert_eq!(encode(&message), Err(ProtocolError::TooDeep { limit: crate::nesting::MAX_DEPTH }));
}

/// Found by the `msgpack_roundtrip` fuzz target: a string that is not UTF-8 (here the key
/// `76 b5 b5 b5 b5` of a StreamItem's map) was written back as binary, so a relayed value
/// changed type. It is read as text with U+FFFD for each bad byte, as the official server does.
#[test]
fn strings_that_are_not_utf8_are_read_as_text_with_replacement_characters() {
    let record = [0x94, 0x02, 0x80, 0xa1, 0x33, 0x81, 0xa5, 0x76, 0xb5, 0xb5, 0xb5, 0xb5, 0x02];
    let message = decode(&record).unwrap();
    let HubMessage::StreamItem(stream_item) = &message else { panic!("{message:?}") };
    let key = Value::from("v\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}");
    assert_eq!(stream_item.item, Value::Map(vec![(key, Value::from(2))]));
    assert_eq!(decode(&body(&encode(&message).unwrap())).unwrap(), message);
}
