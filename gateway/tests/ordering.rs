//! One sender's messages reach their recipients in the order it sent them: by default a
//! connection runs one call at a time (as the official server does), and the relay hub's sends
//! keep their order even when a connection may run several calls at once.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::http::HttpClient;
use common::{s, Conversation, TestClient, TestGateway};
use gateway::Config;
use protocol::{HubMessage, Invocation, Protocol, Value};

const HUB: &str = "/hubs/chat";
const MESSAGES: i64 = 300;

/// Sends `MESSAGES` numbered relay calls of `method` (with `address` first) without waiting
/// for any of them, then waits for every Completion.
async fn send_numbered(sender: &mut impl Conversation, method: &str, address: &str) {
    let mut ids = Vec::new();
    for n in 1..=MESSAGES {
        let id = sender.new_invocation_id();
        let invocation = Invocation {
            invocation_id: Some(id.clone()),
            target: method.into(),
            arguments: vec![s(address), s("numbered"), Value::from(n)],
            ..Invocation::default()
        };
        sender.send(&HubMessage::Invocation(invocation)).await;
        ids.push(id);
    }
    for id in ids {
        sender.expect_completion(&id).await;
    }
}

/// The numbers `receiver` got, in arrival order.
async fn received_numbers(receiver: &mut TestClient) -> Vec<i64> {
    let mut numbers = Vec::new();
    for _ in 0..MESSAGES {
        let invocation = receiver.expect_invocation("numbered").await;
        numbers.push(invocation.arguments[0].as_i64().unwrap());
    }
    numbers
}

fn in_order() -> Vec<i64> {
    (1..=MESSAGES).collect()
}

async fn group_and_connection_sends_keep_order(config: Config) {
    let gateway = TestGateway::start(config).await;
    let mut member = TestClient::connect(&gateway, HUB).await;
    member.invoke_void("JoinGroup", vec![s("room")]).await;
    let member_id = member.connection_id.clone().unwrap();

    let mut sender = TestClient::connect(&gateway, HUB).await;
    send_numbered(&mut sender, "SendToGroup", "room").await;
    assert_eq!(received_numbers(&mut member).await, in_order(), "SendToGroup over WebSockets");
    send_numbered(&mut sender, "SendToConnection", &member_id).await;
    assert_eq!(received_numbers(&mut member).await, in_order(), "SendToConnection over WebSockets");

    let mut polling = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    send_numbered(&mut polling, "SendToGroup", "room").await;
    assert_eq!(received_numbers(&mut member).await, in_order(), "SendToGroup over long polling");

    let mut events = HttpClient::server_sent_events(&gateway, HUB).await;
    send_numbered(&mut events, "SendToConnection", &member_id).await;
    assert_eq!(received_numbers(&mut member).await, in_order(), "SendToConnection over server-sent events");
}

#[test]
fn a_connection_runs_one_call_at_a_time_by_default() {
    assert_eq!(Config::default().max_parallel_invocations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_keep_the_senders_order_by_default() {
    group_and_connection_sends_keep_order(Config::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_sends_keep_the_senders_order_with_parallel_invocations() {
    group_and_connection_sends_keep_order(Config { max_parallel_invocations: 16, ..Config::default() }).await;
}
