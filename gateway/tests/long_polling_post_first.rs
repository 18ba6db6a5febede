//! Long polling with a client that POSTs before its first poll (signalrcore sends its
//! handshake that way): the POST is accepted for a negotiated connection that has not started,
//! waits in the connection's bounded inbound channel, and is read by the session the first
//! poll starts; that poll carries the answer. The connection-lifetime rules still hold: a
//! token nobody negotiated is 404, an oversized body 413, another user's request 403, and a
//! connection that never starts is reaped, which ends a POST waiting for room.

mod common;

use std::time::Duration;

use common::http::{negotiated, HttpClient};
use common::{client_token, s, Conversation, TestGateway, DEADLINE};
use gateway::Config;
use protocol::{HandshakeRequest, HandshakeResponse, HubMessage, Invocation, Protocol};
use reqwest::StatusCode;

const HUB: &str = "/hubs/postfirst";

fn config() -> Config {
    Config { poll_timeout: Duration::from_secs(2), ..Config::default() }
}

fn handshake(protocol: Protocol) -> Vec<u8> {
    HandshakeRequest { protocol: protocol.name().into(), version: 1 }.encode().to_vec()
}

fn echo(id: &str, text: &str) -> Vec<u8> {
    let invocation = Invocation {
        invocation_id: Some(id.into()),
        target: "Echo".into(),
        arguments: vec![s(text)],
        ..Invocation::default()
    };
    Protocol::Json.encode(&HubMessage::Invocation(invocation)).expect("encode").to_vec()
}

/// A connection negotiated at `hub_path` whose transport has not started.
async fn unstarted(gateway: &TestGateway, hub_path: &str) -> HttpClient {
    let (id, token) = negotiated(gateway, hub_path).await;
    HttpClient::new_for_tests(gateway, hub_path, id, token)
}

async fn body_of(response: reqwest::Response) -> (StatusCode, Vec<u8>) {
    let status = response.status();
    (status, response.bytes().await.expect("body").to_vec())
}

#[tokio::test]
async fn a_handshake_posted_before_the_first_poll_is_answered_by_that_poll() {
    let gateway = TestGateway::start(config()).await;
    let mut client = unstarted(&gateway, HUB).await;

    let posted = client.post(handshake(Protocol::Json)).await;
    assert_eq!(posted, (StatusCode::OK, String::new()), "a POST before the first poll is accepted");
    let first = body_of(client.poll().await).await;
    assert_eq!(first, (StatusCode::OK, b"{}\x1e".to_vec()), "the first poll carries the handshake response");

    assert_eq!(client.invoke_value("Echo", vec![s("after the handshake")]).await, s("after the handshake"));
    assert_eq!(client.delete().await, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn messagepack_handshake_and_invocation_posted_before_the_first_poll() {
    let gateway = TestGateway::start(config()).await;
    let mut client = unstarted(&gateway, HUB).await;
    assert_eq!(client.post(handshake(Protocol::MessagePack)).await.0, StatusCode::OK);
    client.protocol = Protocol::MessagePack;
    let id = client.start_invocation("Echo", vec![s("early")]).await;

    assert_eq!(client.handshake_response().await, HandshakeResponse::Accepted);
    let completion = client.expect_completion(&id).await;
    assert_eq!(completion.outcome, protocol::CompletionOutcome::Value(s("early")));
    assert_eq!(client.invoke_value("Echo", vec![s("later")]).await, s("later"));
}

#[tokio::test]
async fn posts_beyond_the_inbound_channel_wait_for_the_connection_to_start() {
    let gateway = TestGateway::start(config()).await;
    let mut client = unstarted(&gateway, HUB).await;
    // The handshake and five invocations: the channel holds four bodies, so the fifth POST
    // waits until the first poll starts the session.
    let mut bodies = vec![handshake(Protocol::Json)];
    bodies.extend((0..5).map(|i| echo(&format!("e{i}"), &format!("message {i}"))));
    let (answered, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let (http, url) = (client.http.clone(), client.url.clone());
    let poster = tokio::spawn(async move {
        for body in bodies {
            let status = http.post(&url).body(body).send().await.expect("POST").status();
            answered.send(status).expect("the test listens");
        }
    });
    for n in 0..4 {
        let status = tokio::time::timeout(DEADLINE, answers.recv()).await.expect("answered in time");
        assert_eq!(status, Some(StatusCode::OK), "POST {n} fits the channel");
    }

    assert_eq!(client.handshake_response().await, HandshakeResponse::Accepted);
    for i in 0..5 {
        let completion = client.expect_completion(&format!("e{i}")).await;
        assert_eq!(completion.outcome, protocol::CompletionOutcome::Value(s(&format!("message {i}"))), "in order");
    }
    tokio::time::timeout(DEADLINE, poster).await.expect("every POST answered").expect("poster");
    for n in 4..6 {
        assert_eq!(answers.recv().await, Some(StatusCode::OK), "POST {n} went through once the session read");
    }
}

#[tokio::test]
async fn a_post_waiting_for_a_connection_that_never_starts_ends_when_it_is_reaped() {
    let quick = Config { disconnect_timeout: Duration::from_millis(300), ..config() };
    let gateway = TestGateway::start(quick).await;
    let client = unstarted(&gateway, HUB).await;
    for i in 0..4 {
        assert_eq!(client.post(echo(&i.to_string(), "x")).await.0, StatusCode::OK, "POST {i} fits the channel");
    }
    let waiting = tokio::time::timeout(DEADLINE, client.post(echo("4", "x"))).await.expect("answered once reaped");
    assert_eq!(waiting.0, StatusCode::NOT_FOUND, "the connection is gone: {waiting:?}");
    assert_eq!(client.poll().await.status(), StatusCode::NOT_FOUND, "and cannot be started any more");
}

#[tokio::test]
async fn lifetime_rules_still_hold_for_posts_before_the_first_poll() {
    let small = Config { max_post_body: 128, max_message_size: 128, ..config() };
    let gateway = TestGateway::start(small).await;

    let stranger = HttpClient::new_for_tests(&gateway, HUB, "nobody".into(), "never-negotiated".into());
    assert_eq!(stranger.post(handshake(Protocol::Json)).await.0, StatusCode::NOT_FOUND, "a token nobody negotiated");

    let mut client = unstarted(&gateway, HUB).await;
    let (status, text) = client.post(vec![b'x'; 129]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "the POST body limit applies before the start: {text}");
    assert_eq!(client.post(handshake(Protocol::Json)).await.0, StatusCode::OK, "the connection is unharmed");
    let first = body_of(client.poll().await).await;
    assert_eq!(first, (StatusCode::OK, b"{}\x1e".to_vec()));
    assert_eq!(client.invoke_value("Echo", vec![s("fine")]).await, s("fine"));
}

#[tokio::test]
async fn only_the_user_who_posted_first_can_start_the_connection() {
    const SECRET: &str = "post-first-secret";
    let gateway = TestGateway::start(Config { jwt_secret: Some(SECRET.into()), ..config() }).await;
    let alice = format!("{HUB}?access_token={}", client_token(SECRET, "alice"));
    let bob = format!("{HUB}?access_token={}", client_token(SECRET, "bob"));
    let mut as_alice = unstarted(&gateway, &alice).await;
    let as_bob = HttpClient::new_for_tests(&gateway, &bob, as_alice.connection_id.clone(), as_alice.token.clone());

    assert_eq!(as_alice.post(handshake(Protocol::Json)).await.0, StatusCode::OK);
    assert_eq!(as_bob.post(echo("b", "intruder")).await.0, StatusCode::FORBIDDEN, "another user's POST");
    assert_eq!(as_bob.poll().await.status(), StatusCode::FORBIDDEN, "another user's first poll");

    let first = body_of(as_alice.poll().await).await;
    assert_eq!(first, (StatusCode::OK, b"{}\x1e".to_vec()), "alice's poll starts it");
    assert_eq!(as_alice.invoke_value("Echo", vec![s("mine")]).await, s("mine"));
    assert_eq!(as_bob.post(echo("b", "intruder")).await.0, StatusCode::FORBIDDEN, "still not bob's");
}
