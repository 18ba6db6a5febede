use super::*;

fn decode_str(text: &str) -> Result<HubMessage, ProtocolError> {
    decode(text.as_bytes())
}

fn encode_str(message: &HubMessage) -> String {
    let bytes = encode(message).unwrap();
    assert_eq!(bytes.last(), Some(&RECORD_SEPARATOR));
    String::from_utf8(bytes[..bytes.len() - 1].to_vec()).unwrap()
}

fn round_trip(message: HubMessage) {
    let bytes = encode(&message).unwrap();
    assert_eq!(decode(&bytes[..bytes.len() - 1]).unwrap(), message);
}

#[test]
fn every_message_type_round_trips() {
    let mut headers = Headers::new();
    headers.insert("k".into(), "v".into());
    round_trip(HubMessage::Invocation(Invocation {
        headers: headers.clone(),
        invocation_id: Some("0".into()),
        target: "Echo".into(),
        arguments: vec![Value::from("你好"), Value::Nil, Value::from(1.5)],
        stream_ids: vec!["1".into()],
    }));
    round_trip(HubMessage::Invocation(Invocation::call("Notify", vec![])));
    round_trip(HubMessage::StreamItem(StreamItem {
        headers: Headers::new(),
        invocation_id: "1".into(),
        item: Value::Nil,
    }));
    round_trip(HubMessage::Completion(Completion::new("2", CompletionOutcome::Void)));
    round_trip(HubMessage::Completion(Completion::new("2", CompletionOutcome::Value(Value::Nil))));
    round_trip(HubMessage::Completion(Completion::new("2", CompletionOutcome::Value(Value::from(7)))));
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
    round_trip(HubMessage::Ack { sequence_id: 42 });
    round_trip(HubMessage::Sequence { sequence_id: 1 });
}

#[test]
fn type_may_come_last_and_unknown_properties_are_ignored() {
    let message =
        decode_str(r#"{"target":"Echo","arguments":["hi"],"invocationId":"0","future":{"x":1},"type":1}"#).unwrap();
    let HubMessage::Invocation(invocation) = message else { panic!("not an invocation") };
    assert_eq!(invocation.target, "Echo");
    assert_eq!(invocation.invocation_id.as_deref(), Some("0"));
    assert_eq!(invocation.arguments, vec![Value::from("hi")]);
}

#[test]
fn void_null_and_value_completions_are_written_as_the_official_server_does() {
    assert_eq!(
        encode_str(&HubMessage::Completion(Completion::new("7", CompletionOutcome::Void))),
        r#"{"type":3,"invocationId":"7"}"#
    );
    assert_eq!(
        encode_str(&HubMessage::Completion(Completion::new("7", CompletionOutcome::Value(Value::Nil)))),
        r#"{"type":3,"invocationId":"7","result":null}"#
    );
    assert_eq!(
        encode_str(&HubMessage::Completion(Completion::new("7", CompletionOutcome::Error("e".into())))),
        r#"{"type":3,"invocationId":"7","error":"e"}"#
    );
}

#[test]
fn close_writes_allow_reconnect_only_when_true() {
    assert_eq!(encode_str(&HubMessage::Close(Close::default())), r#"{"type":7}"#);
    assert_eq!(
        encode_str(&HubMessage::Close(Close { error: Some("x".into()), allow_reconnect: true })),
        r#"{"type":7,"error":"x","allowReconnect":true}"#
    );
}

#[test]
fn server_invocation_has_no_id_and_no_stream_ids() {
    let text = encode_str(&HubMessage::Invocation(Invocation::call("msg", vec![Value::from(1)])));
    assert_eq!(text, r#"{"type":1,"target":"msg","arguments":[1]}"#);
}

#[test]
fn ping_is_the_minimal_object() {
    assert_eq!(encode_str(&HubMessage::Ping), r#"{"type":6}"#);
}

#[test]
fn stream_item_with_null_item_keeps_the_property() {
    let text = encode_str(&HubMessage::StreamItem(StreamItem {
        headers: Headers::new(),
        invocation_id: "1".into(),
        item: Value::Nil,
    }));
    assert_eq!(text, r#"{"type":2,"invocationId":"1","item":null}"#);
}

#[test]
fn malformed_json_is_reported() {
    assert!(matches!(decode_str("{\"type\":1,"), Err(ProtocolError::Malformed(_))));
    assert!(matches!(decode_str("[1,2]"), Err(ProtocolError::Malformed(_))));
    assert!(matches!(decode_str(r#"{"type":"1"}"#), Err(ProtocolError::Malformed(_))));
    assert!(matches!(decode_str(r#"{"type":1,"target":5,"arguments":[]}"#), Err(ProtocolError::Malformed(_))));
}

#[test]
fn missing_or_unknown_type_is_reported() {
    assert_eq!(decode_str("{}"), Err(ProtocolError::MissingType));
    assert_eq!(decode_str(r#"{"type":42}"#), Err(ProtocolError::UnknownMessageType(42)));
    assert_eq!(decode_str(r#"{"type":0}"#), Err(ProtocolError::UnknownMessageType(0)));
    assert_eq!(decode_str(r#"{"type":-1}"#), Err(ProtocolError::UnknownMessageType(-1)));
}

#[test]
fn required_properties_are_enforced() {
    let missing = |text: &str, property: &str| match decode_str(text) {
        Err(ProtocolError::MissingProperty { property: p, .. }) => {
            assert_eq!(p, property, "{text}")
        }
        other => panic!("{text}: expected missing {property}, got {other:?}"),
    };
    missing(r#"{"type":1,"arguments":[]}"#, "target");
    missing(r#"{"type":1,"target":"x"}"#, "arguments");
    missing(r#"{"type":2,"invocationId":"1"}"#, "item");
    missing(r#"{"type":2,"item":1}"#, "invocationId");
    missing(r#"{"type":3}"#, "invocationId");
    missing(r#"{"type":4,"target":"x","arguments":[]}"#, "invocationId");
    missing(r#"{"type":5}"#, "invocationId");
    missing(r#"{"type":8}"#, "sequenceId");
    missing(r#"{"type":9}"#, "sequenceId");
}

#[test]
fn invalid_values_are_refused() {
    assert!(matches!(
        decode_str(r#"{"type":1,"target":"","arguments":[]}"#),
        Err(ProtocolError::InvalidProperty { property: "target", .. })
    ));
    assert!(matches!(
        decode_str(r#"{"type":1,"invocationId":"","target":"x","arguments":[]}"#),
        Err(ProtocolError::InvalidProperty { property: "invocationId", .. })
    ));
    assert!(matches!(
        decode_str(r#"{"type":3,"invocationId":"1","result":1,"error":"e"}"#),
        Err(ProtocolError::InvalidProperty { property: "error", .. })
    ));
}

#[test]
fn null_result_is_a_value_and_absent_result_is_void() {
    let with_null = decode_str(r#"{"type":3,"invocationId":"1","result":null}"#).unwrap();
    assert_eq!(with_null, HubMessage::Completion(Completion::new("1", CompletionOutcome::Value(Value::Nil))));
    let void = decode_str(r#"{"type":3,"invocationId":"1"}"#).unwrap();
    assert_eq!(void, HubMessage::Completion(Completion::new("1", CompletionOutcome::Void)));
}

#[test]
fn nested_values_survive_a_round_trip_unchanged() {
    let text = r#"{"type":1,"target":"t","arguments":[{"a":[1,-2,3.5,null,true,"é"],"b":{}}]}"#;
    let message = decode_str(text).unwrap();
    assert_eq!(encode_str(&message), text);
}

#[test]
fn invalid_utf8_is_malformed() {
    assert!(matches!(decode(b"{\"type\":1,\"target\":\"\xff\",\"arguments\":[]}"), Err(ProtocolError::Malformed(_))));
}

/// `[[…[1]…]]` with `levels` arrays, as JSON text.
fn nested_json(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

fn invocation_with_argument(argument: &str) -> String {
    format!(r#"{{"type":1,"target":"Echo","arguments":[{argument}]}}"#)
}

#[test]
fn nesting_is_bounded_at_the_limit() {
    // The message object and its arguments array are two of the levels.
    let at_limit = invocation_with_argument(&nested_json(crate::nesting::MAX_DEPTH - 2));
    assert!(decode_str(&at_limit).is_ok());
    let over = invocation_with_argument(&nested_json(crate::nesting::MAX_DEPTH - 1));
    assert_eq!(decode_str(&over), Err(ProtocolError::TooDeep { limit: crate::nesting::MAX_DEPTH }));
    let far_over = invocation_with_argument(&nested_json(100_000));
    assert_eq!(decode_str(&far_over), Err(ProtocolError::TooDeep { limit: crate::nesting::MAX_DEPTH }));
}

#[test]
fn too_deep_values_are_not_encoded() {
    let deep = (0..crate::nesting::MAX_DEPTH).fold(Value::from(1), |inner, _| Value::Array(vec![inner]));
    let message = HubMessage::Completion(Completion::new("1", CompletionOutcome::Value(deep)));
    assert_eq!(encode(&message), Err(ProtocolError::TooDeep { limit: crate::nesting::MAX_DEPTH }));
}

/// Found by the `json_roundtrip` fuzz target: without serde_json's `float_roundtrip` feature the
/// parser could round -7.0e301 to a neighbour of the nearest double, so every decode → encode
/// hop moved the value by one unit in the last place.
#[test]
fn numbers_are_read_as_the_nearest_double_and_survive_a_round_trip() {
    let message = decode_str(r#"{"type":1,"target":"Echo","arguments":[-7.0e+301]}"#).unwrap();
    let HubMessage::Invocation(invocation) = &message else { panic!("{message:?}") };
    assert_eq!(invocation.arguments, vec![Value::F64(-7.0e301)]);
    let bytes = encode(&message).unwrap();
    assert_eq!(decode(&bytes[..bytes.len() - 1]).unwrap(), message);
}
