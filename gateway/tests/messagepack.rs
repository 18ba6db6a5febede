//! The MessagePack hub protocol over WebSockets: binary frames from the handshake reply on,
//! values outside JSON's data model round-tripping unchanged, and one broadcast reaching JSON
//! and MessagePack clients each in their own protocol, on one node and across nodes.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::Conversation;

use std::sync::Arc;

use backplane::MemoryBus;
use common::{s, TestClient, TestGateway};
use gateway::Config;
use protocol::{HubMessage, Protocol, Value};

const HUB: &str = "/hubs/chat";

#[tokio::test]
async fn a_messagepack_connection_gets_only_binary_frames_including_the_handshake_reply() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::connect_with_protocol(&gateway, HUB, Protocol::MessagePack).await;
    assert_eq!(client.invoke_value("Echo", vec![s("你好，世界！")]).await, s("你好，世界！"));
    assert_eq!((client.text_frames, client.binary_frames), (0, 2), "handshake reply and completion, both binary");
}

#[tokio::test]
async fn a_json_connection_gets_only_text_frames() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::connect_with_protocol(&gateway, HUB, Protocol::Json).await;
    assert_eq!(client.invoke_value("Echo", vec![s("hi")]).await, s("hi"));
    assert_eq!((client.text_frames, client.binary_frames), (2, 0));
}

#[tokio::test]
async fn binary_and_timestamp_values_echo_back_unchanged() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::connect_with_protocol(&gateway, HUB, Protocol::MessagePack).await;
    let timestamp = Value::Ext(-1, vec![0, 0, 0, 0, 0x38, 0x6d, 0x43, 0x80]);
    let complex = Value::Map(vec![
        (s("ByteArray"), Value::Binary(vec![1, 2, 3])),
        (s("DateTime"), timestamp),
        (s("IntArray"), Value::Array(vec![Value::from(1), Value::from(-2), Value::from(u64::MAX)])),
        (s("Nothing"), Value::Nil),
    ]);
    assert_eq!(client.invoke_value("Echo", vec![complex.clone()]).await, complex);
}

async fn group_of_both_protocols(sender_node: &TestGateway, receiver_node: &TestGateway) {
    let mut json = TestClient::connect_with_protocol(receiver_node, HUB, Protocol::Json).await;
    let mut msgpack = TestClient::connect_with_protocol(receiver_node, HUB, Protocol::MessagePack).await;
    let mut sender = TestClient::connect_with_protocol(sender_node, HUB, Protocol::MessagePack).await;
    for client in [&mut json, &mut msgpack] {
        client.invoke_void("JoinGroup", vec![s("room")]).await;
    }
    sender.invoke_void("SendToGroup", vec![s("room"), s("said"), Value::Binary(vec![7]), s("ünï")]).await;
    for client in [&mut json, &mut msgpack] {
        let invocation = client.expect_invocation("said").await;
        let expected_bytes = match client.protocol {
            // JSON has no binary type: bytes are written as base64 text.
            Protocol::Json => s("Bw=="),
            Protocol::MessagePack => Value::Binary(vec![7]),
        };
        assert_eq!(invocation.arguments, vec![expected_bytes, s("ünï")], "{:?}", client.protocol);
    }
    assert!(matches!(sender.take_pending(), None | Some(HubMessage::Ping)));
}

#[tokio::test]
async fn a_group_send_reaches_each_member_in_its_own_protocol() {
    let gateway = TestGateway::start(Config::default()).await;
    group_of_both_protocols(&gateway, &gateway).await;
}

#[tokio::test]
async fn a_group_send_from_another_node_reaches_each_member_in_its_own_protocol() {
    let bus = MemoryBus::new();
    let here = TestGateway::start_on(Config::default(), Arc::new(bus.node()), |g| g.router()).await;
    let there = TestGateway::start_on(Config::default(), Arc::new(bus.node()), |g| g.router()).await;
    group_of_both_protocols(&here, &there).await;
}
