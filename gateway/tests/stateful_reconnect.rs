//! Stateful reconnect over WebSockets: a client that negotiated it and shook hands with
//! version 2 survives a network drop. It reconnects with the same token within the disconnect
//! timeout, the server announces the first unacknowledged message with Sequence and writes every
//! unacknowledged message again, nothing is lost or repeated, and the hub never sees a
//! disconnect. Without a return in time, or after a clean close, the connection ends.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::Conversation;

use std::time::Duration;

use common::{eventually, open_socket, s, upgrade_status, TestClient, TestGateway};
use gateway::cluster::Stats;
use gateway::Config;
use protocol::{HandshakeRequest, HandshakeResponse, HubMessage, Protocol};

const HUB: &str = "/hubs/chat";

fn config(disconnect_timeout: Duration) -> Config {
    Config { disconnect_timeout, ..Config::default() }
}

async fn negotiate_stateful(gateway: &TestGateway, ask: bool) -> serde_json::Value {
    let query = if ask { "negotiateVersion=1&useStatefulReconnect=true" } else { "negotiateVersion=1" };
    let url = gateway.http(&format!("{HUB}/negotiate?{query}"));
    reqwest::Client::new().post(url).send().await.unwrap().json().await.unwrap()
}

/// Negotiates stateful reconnect and shakes hands with version 2; returns the client and the
/// URL to reconnect to.
async fn stateful_client(gateway: &TestGateway, protocol: Protocol) -> (TestClient, String) {
    let negotiated = negotiate_stateful(gateway, true).await;
    assert_eq!(negotiated["useStatefulReconnect"], true);
    let url = gateway.ws(&format!("{HUB}?id={}", negotiated["connectionToken"].as_str().unwrap()));
    let mut client = TestClient::raw(open_socket(&url).await);
    client.protocol = protocol;
    let request = HandshakeRequest { protocol: protocol.name().into(), version: 2 }.encode();
    client.send_text(std::str::from_utf8(&request).unwrap()).await;
    assert_eq!(client.handshake_response().await, HandshakeResponse::Accepted);
    client.connection_id = negotiated["connectionId"].as_str().map(str::to_owned);
    (client, url)
}

fn connections(gateway: &TestGateway) -> u64 {
    Stats::get(&gateway.gateway.stats().connections)
}

#[tokio::test]
async fn negotiate_grants_stateful_reconnect_only_to_clients_that_ask() {
    let gateway = TestGateway::start(Config::default()).await;
    assert_eq!(negotiate_stateful(&gateway, true).await["useStatefulReconnect"], true);
    assert!(negotiate_stateful(&gateway, false).await.get("useStatefulReconnect").is_none());
    let disabled = TestGateway::start(Config { stateful_reconnect: false, ..Config::default() }).await;
    assert!(negotiate_stateful(&disabled, true).await.get("useStatefulReconnect").is_none());
}

#[tokio::test]
async fn the_server_acknowledges_what_it_processed() {
    let gateway = TestGateway::start(Config::default()).await;
    let (mut client, _) = stateful_client(&gateway, Protocol::Json).await;
    client.invoke_value("Echo", vec![s("a")]).await;
    client.invoke_value("Echo", vec![s("b")]).await;
    let acked = client
        .expect("an Ack for both invocations", |m| match m {
            HubMessage::Ack { sequence_id } if *sequence_id == 2 => Some(*sequence_id),
            _ => None,
        })
        .await;
    assert_eq!(acked, 2);
}

async fn messages_sent_during_a_drop_arrive_once_after_resuming(protocol: Protocol) {
    let gateway = TestGateway::start(config(Duration::from_secs(10))).await;
    let (mut away, url) = stateful_client(&gateway, protocol).await;
    let mut sender = TestClient::connect(&gateway, HUB).await;
    away.invoke_void("JoinGroup", vec![s("room")]).await; // server's message 1: its Completion
    away.send(&HubMessage::Ack { sequence_id: 1 }).await;
    sender.invoke_void("SendToGroup", vec![s("room"), s("said"), s("before")]).await;
    away.expect_invocation("said").await; // message 2, received but not acknowledged

    away.drop_socket_abruptly().await;
    for text in ["during 1", "during 2"] {
        sender.invoke_void("SendToGroup", vec![s("room"), s("said"), s(text)]).await;
        // 3, 4
    }
    assert_eq!(connections(&gateway), 2, "the hub sees no disconnect while the client is away");

    away.resume_on(open_socket(&url).await);
    assert_eq!(away.next_message().await, Some(HubMessage::Sequence { sequence_id: 2 }));
    let mut replayed = Vec::new();
    for _ in 0..3 {
        let invocation = away.expect_invocation("said").await;
        replayed.push(invocation.arguments[0].clone());
    }
    assert_eq!(replayed, vec![s("before"), s("during 1"), s("during 2")], "unacknowledged messages, in order");

    // The client resumes its own numbering: its next message is its second trackable one.
    away.send(&HubMessage::Sequence { sequence_id: 2 }).await;
    assert_eq!(away.invoke_value("Echo", vec![s("back")]).await, s("back"));
    sender.invoke_void("SendToGroup", vec![s("room"), s("said"), s("after")]).await;
    assert_eq!(away.expect_invocation("said").await.arguments, vec![s("after")], "still in its group");
    away.assert_no_invocation("said").await;
    assert_eq!(connections(&gateway), 2);
}

#[tokio::test]
async fn json_messages_sent_during_a_drop_arrive_once_after_resuming() {
    messages_sent_during_a_drop_arrive_once_after_resuming(Protocol::Json).await;
}

#[tokio::test]
async fn messagepack_messages_sent_during_a_drop_arrive_once_after_resuming() {
    messages_sent_during_a_drop_arrive_once_after_resuming(Protocol::MessagePack).await;
}

#[tokio::test]
async fn messages_the_client_sends_again_are_processed_once() {
    let gateway = TestGateway::start(config(Duration::from_secs(10))).await;
    let (mut client, url) = stateful_client(&gateway, Protocol::Json).await;
    let mut watcher = TestClient::connect(&gateway, HUB).await;
    watcher.invoke_void("JoinGroup", vec![s("watch")]).await;
    client.send_invocation("SendToGroup", vec![s("watch"), s("seen"), s("once")]).await; // client's 1
    watcher.expect_invocation("seen").await;

    client.drop_socket_abruptly().await;
    client.resume_on(open_socket(&url).await);
    client.expect("the server's Sequence", |m| matches!(m, HubMessage::Sequence { .. }).then_some(())).await;
    // The client never saw an Ack, so it sends its message 1 again, then a new one.
    client.send(&HubMessage::Sequence { sequence_id: 1 }).await;
    client.send_invocation("SendToGroup", vec![s("watch"), s("seen"), s("once")]).await;
    client.send_invocation("SendToGroup", vec![s("watch"), s("seen"), s("new")]).await;
    assert_eq!(watcher.expect_invocation("seen").await.arguments, vec![s("new")], "the repeat was dropped");
    watcher.assert_no_invocation("seen").await;
}

#[tokio::test]
async fn a_sequence_beyond_what_the_server_received_ends_the_connection() {
    let gateway = TestGateway::start(Config { detailed_errors: true, ..Config::default() }).await;
    let (mut client, _) = stateful_client(&gateway, Protocol::Json).await;
    client.send(&HubMessage::Sequence { sequence_id: 5 }).await;
    let close = client.expect_close().await;
    assert!(close.error.unwrap().contains("Sequence ID greater than amount of messages we've received."));
}

#[tokio::test]
async fn a_client_that_does_not_return_in_time_is_disconnected() {
    let gateway = TestGateway::start(config(Duration::from_millis(300))).await;
    let (mut client, url) = stateful_client(&gateway, Protocol::Json).await;
    assert_eq!(connections(&gateway), 1);
    client.drop_socket_abruptly().await;
    eventually("the connection to end after the disconnect timeout", || connections(&gateway) == 0).await;
    assert_eq!(upgrade_status(&url, None).await, 404);
}

#[tokio::test]
async fn a_clean_close_ends_the_connection_at_once() {
    let gateway = TestGateway::start(config(Duration::from_secs(30))).await;
    let (mut client, url) = stateful_client(&gateway, Protocol::Json).await;
    client.socket.close(None).await.unwrap();
    eventually("the connection to end", || connections(&gateway) == 0).await;
    assert_eq!(upgrade_status(&url, None).await, 404);
}

#[tokio::test]
async fn handshake_version_one_turns_stateful_reconnect_off() {
    let gateway = TestGateway::start(config(Duration::from_secs(30))).await;
    let negotiated = negotiate_stateful(&gateway, true).await;
    let url = gateway.ws(&format!("{HUB}?id={}", negotiated["connectionToken"].as_str().unwrap()));
    let mut client = TestClient::handshaken(open_socket(&url).await).await;
    client.invoke_value("Echo", vec![s("x")]).await;
    client.drop_socket_abruptly().await;
    eventually("the connection to end at once", || connections(&gateway) == 0).await;
    assert!(!matches!(client.take_pending(), Some(HubMessage::Ack { .. })), "no Acks without version 2");
}
