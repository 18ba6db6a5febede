//! The hub session over a WebSocket: handshake, invocations and completions, keep-alive,
//! client timeout and Close, as the official clients expect them.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::Conversation;

use std::time::Duration;

use common::{fast_config, s, TestClient, TestGateway};
use gateway::Config;
use protocol::{Close, HubMessage, Invocation, Value};

const HUB: &str = "/hubs/chat";

#[tokio::test]
async fn handshake_is_answered_with_an_empty_object() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::raw(common::open_socket(&gateway.ws(HUB)).await);
    client.send_text("{\"protocol\":\"json\",\"version\":1}\u{1e}").await;
    let frame = tokio::time::timeout(common::DEADLINE, futures_util::StreamExt::next(&mut client.socket))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(frame.into_text().unwrap().as_str(), "{}\u{1e}", "exactly {{}} + 0x1E, in a text frame");
}

#[tokio::test]
async fn messages_sent_with_the_handshake_are_processed_after_it() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::raw(common::open_socket(&gateway.ws(HUB)).await);
    client
        .send_text(concat!(
            "{\"protocol\":\"json\",\"version\":1}\u{1e}",
            "{\"type\":1,\"invocationId\":\"0\",\"target\":\"Echo\",\"arguments\":[\"early\"]}\u{1e}"
        ))
        .await;
    assert_eq!(client.handshake_response().await, protocol::HandshakeResponse::Accepted);
    let completion = client.expect("completion", |m| matches!(m, HubMessage::Completion(_)).then(|| m.clone())).await;
    let HubMessage::Completion(completion) = completion else { unreachable!() };
    assert_eq!(completion.outcome, protocol::CompletionOutcome::Value(s("early")));
}

#[tokio::test]
async fn invocation_id_zero_is_an_id_like_any_other() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    let completion = client.invoke("Echo", vec![Value::from(1)]).await;
    assert_eq!(completion.invocation_id, "0");
}

#[tokio::test]
async fn void_methods_complete_without_a_result() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    client.invoke_void("JoinGroup", vec![s("g")]).await;
}

#[tokio::test]
async fn the_official_error_texts_are_sent() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    assert_eq!(client.invoke_error("Nope", vec![]).await, "Unknown hub method 'Nope'");
    assert_eq!(client.invoke_error("Echo", vec![]).await, "Failed to invoke 'Echo' due to an error on the server.");
    assert_eq!(
        client.invoke_error("Echo", vec![s("a"), s("b")]).await,
        "Failed to invoke 'Echo' due to an error on the server."
    );
    assert_eq!(
        client.invoke_error("JoinGroup", vec![s("")]).await,
        "An unexpected error occurred invoking 'JoinGroup' on the server. HubException: group name must not be empty"
    );
    assert_eq!(client.invoke_value("Echo", vec![s("still up")]).await, s("still up"));
}

#[tokio::test]
async fn detailed_errors_add_the_reason() {
    let gateway = TestGateway::start(Config { detailed_errors: true, ..Config::default() }).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    assert_eq!(
        client.invoke_error("Echo", vec![]).await,
        "Failed to invoke 'Echo' due to an error on the server. InvalidDataException: Invocation provides 0 argument(s) but target expects 1."
    );
}

#[tokio::test]
async fn a_streaming_invocation_of_a_plain_method_is_refused_with_the_official_text() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    let invocation = Invocation {
        invocation_id: Some("s1".into()),
        target: "Echo".into(),
        arguments: vec![s("x")],
        ..Default::default()
    };
    client.send(&HubMessage::StreamInvocation(invocation)).await;
    let text = client
        .expect("completion", |m| match m {
            HubMessage::Completion(c) if c.invocation_id == "s1" => Some(c.outcome.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        text,
        protocol::CompletionOutcome::Error(
            "The client attempted to invoke the non-streaming 'Echo' method with a streaming invocation.".into()
        )
    );
}

#[tokio::test]
async fn an_invocation_without_id_gets_no_reply_even_when_it_fails() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    client.send_invocation("Echo", vec![s("ignored")]).await;
    client.send_invocation("NoSuchMethod", vec![]).await;
    client.send_invocation("Echo", vec![]).await;
    // The next reply the client sees is the one for its own later invocation.
    let completion = client.invoke("Echo", vec![s("after")]).await;
    assert_eq!(completion.outcome, protocol::CompletionOutcome::Value(s("after")));
    let next = tokio::time::timeout(Duration::from_millis(200), client.next_message()).await;
    assert!(next.is_err(), "nothing else was sent: {next:?}");
}

#[tokio::test]
async fn the_server_pings_after_a_quiet_keep_alive_interval() {
    let gateway = TestGateway::start(fast_config()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    let started = tokio::time::Instant::now();
    let message = client.next_message().await.expect("a message");
    assert_eq!(message, HubMessage::Ping);
    assert!(started.elapsed() >= Duration::from_millis(250), "not before the interval: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_client_that_stops_pinging_is_closed_with_allow_reconnect() {
    let gateway = TestGateway::start(fast_config()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    client.send(&HubMessage::Ping).await;
    let close = client.closed().await.expect("a Close message before the socket closes");
    assert_eq!(close, Close { error: Some("Connection closed with an error.".into()), allow_reconnect: true });
}

#[tokio::test]
async fn a_client_that_never_pinged_is_not_timed_out() {
    let gateway = TestGateway::start(fast_config()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    // Three client-timeout periods of silence from the client: only server pings arrive.
    for _ in 0..9 {
        assert_eq!(client.next_message().await, Some(HubMessage::Ping));
    }
    assert_eq!(client.invoke_value("Echo", vec![s("alive")]).await, s("alive"));
}

#[tokio::test]
async fn a_pinging_client_stays_connected_past_the_client_timeout() {
    let gateway = TestGateway::start(fast_config()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    // Answer each server ping with a ping, for several client-timeout periods.
    for _ in 0..9 {
        client.send(&HubMessage::Ping).await;
        assert_eq!(client.next_message().await, Some(HubMessage::Ping));
    }
    assert_eq!(client.invoke_value("Echo", vec![s("alive")]).await, s("alive"));
}

#[tokio::test]
async fn a_client_close_is_answered_with_a_plain_close() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    client.send(&HubMessage::Close(Close::default())).await;
    assert_eq!(client.closed().await, Some(Close::default()));
}

#[tokio::test]
async fn shutdown_closes_connections_with_allow_reconnect() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    let stopping = tokio::spawn(gateway.stop());
    assert_eq!(client.closed().await, Some(Close { error: None, allow_reconnect: true }));
    tokio::time::timeout(common::DEADLINE, stopping).await.unwrap().unwrap();
}

#[tokio::test]
async fn health_and_readiness_are_served_in_plain_text() {
    let gateway = TestGateway::start(Config::default()).await;
    let health = reqwest::get(gateway.http("/healthz")).await.unwrap();
    assert_eq!((health.status().as_u16(), health.text().await.unwrap()), (200, "ok".to_string()));
    let ready = reqwest::get(gateway.http("/readyz")).await.unwrap();
    assert_eq!((ready.status().as_u16(), ready.text().await.unwrap()), (200, "ready".to_string()));
    let node = gateway.gateway.clone();
    gateway.stop().await;
    assert_eq!(node.readiness(), Err("shutting down"), "a stopping node is not ready");
}

#[tokio::test]
async fn replies_to_a_clients_own_calls_are_never_held_for_coalescing() {
    // The longest flush delay allowed; held replies would take a second each.
    let config = Config { flush_delay: Duration::from_secs(1), ..Config::default() };
    let gateway = TestGateway::start(config).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    let began = std::time::Instant::now();
    for i in 0..3 {
        let completion = client.invoke("Echo", vec![Value::from(i)]).await;
        assert_eq!(completion.outcome, protocol::CompletionOutcome::Value(Value::from(i)));
    }
    let took = began.elapsed();
    assert!(took < Duration::from_millis(2500), "three round trips took {took:?}: a reply waited for the delay");
    gateway.stop().await;
}

#[tokio::test]
async fn dense_traffic_shares_frames_in_order_while_a_quiet_start_is_written_at_once() {
    let config = Config { flush_delay: Duration::from_secs(1), ..Config::default() };
    let gateway = TestGateway::start(config).await;
    let mut sender = TestClient::connect(&gateway, HUB).await;
    let mut receiver = TestClient::connect(&gateway, HUB).await;
    // Twenty sends one after the other, each awaited (its completion is never held): well
    // within the one-second hold that begins once the receiver's writes come close together.
    for i in 0..20 {
        sender.invoke_void("SendToOthers", vec![s("burst"), Value::from(i)]).await;
    }
    let mut frames = Vec::new();
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let frame = tokio::time::timeout(common::DEADLINE, futures_util::StreamExt::next(&mut receiver.socket))
            .await
            .expect("a frame in time")
            .expect("the socket stays open")
            .expect("a frame");
        let text = frame.into_text().expect("text").to_string();
        for record in text.split('\u{1e}').filter(|r| r.contains("\"burst\"")) {
            let message: serde_json::Value = serde_json::from_str(record).expect("JSON");
            seen.push(message["arguments"][0].as_i64().expect("a number"));
        }
        frames.push(text);
    }
    assert_eq!(seen, (0..20).collect::<Vec<_>>(), "every message, in order");
    assert!(frames.len() <= 4, "dense traffic shares frames: {} frames for 20 messages", frames.len());
    assert_eq!(frames[0].matches("\"burst\"").count(), 1, "the first message after a quiet spell goes at once");
}
