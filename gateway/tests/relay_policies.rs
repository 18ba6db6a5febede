//! Client-side policies of the relay hub (`--relay-*`): each option allowing and denying, the
//! texts of denied calls, groups from the token's claim, and that a denied call changes nothing
//! and reaches no one. The defaults are covered by `relay.rs`, which runs unchanged.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::{s, Conversation, TestClient, TestGateway};
use gateway::hub::RelayPolicyConfig;
use gateway::Config;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use protocol::{HubMessage, Invocation, Value};
use serde_json::json;

const HUB: &str = "/hubs/chat";
const SECRET: &str = "policy-secret";

fn with_policy(relay: RelayPolicyConfig) -> Config {
    Config { relay, ..Config::default() }
}

/// Token-checking gateway config (anonymous clients allowed) with `relay` as the policy.
fn secured(relay: RelayPolicyConfig) -> Config {
    Config { jwt_secret: Some(SECRET.into()), allow_anonymous: true, relay, ..Config::default() }
}

fn token(claims: serde_json::Value) -> String {
    let mut claims = claims;
    claims["exp"] = json!(jsonwebtoken::get_current_timestamp() + 3600);
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

/// The Completion error of a call of `method` denied for `reason`.
fn denied(method: &str, reason: &str) -> String {
    format!("An unexpected error occurred invoking '{method}' on the server. HubException: {reason}")
}

#[tokio::test]
async fn only_listed_methods_may_be_called_in_any_case() {
    let relay = RelayPolicyConfig { methods: vec!["echo".into(), "JoinGroup".into()], ..Default::default() };
    let gateway = TestGateway::start(with_policy(relay)).await;
    let mut caller = TestClient::connect(&gateway, HUB).await;
    let mut other = TestClient::connect(&gateway, HUB).await;
    assert_eq!(caller.invoke_value("ECHO", vec![s("hi")]).await, s("hi"));
    caller.invoke_void("JoinGroup", vec![s("room")]).await;
    assert_eq!(
        caller.invoke_error("sendToAll", vec![s("news"), s("x")]).await,
        denied("sendToAll", "calling 'SendToAll' is not allowed")
    );
    assert_eq!(
        caller.invoke_error("GetConnectionId", vec![]).await,
        denied("GetConnectionId", "calling 'GetConnectionId' is not allowed")
    );
    other.assert_no_invocation("news").await;
}

#[tokio::test]
async fn groups_outside_the_join_patterns_can_be_neither_joined_nor_sent_to() {
    let relay = RelayPolicyConfig { join_groups: vec!["room-*".into(), "lobby".into()], ..Default::default() };
    let gateway = TestGateway::start(with_policy(relay)).await;
    let mut member = TestClient::connect(&gateway, HUB).await;
    let mut sender = TestClient::connect(&gateway, HUB).await;
    member.invoke_void("JoinGroup", vec![s("room-1")]).await;
    member.invoke_void("JoinGroup", vec![s("lobby")]).await;
    assert_eq!(
        member.invoke_error("JoinGroup", vec![s("admin")]).await,
        denied("JoinGroup", "joining group 'admin' is not allowed")
    );
    assert_eq!(
        member.invoke_error("JoinGroup", vec![s("lobby-2")]).await,
        denied("JoinGroup", "joining group 'lobby-2' is not allowed")
    );
    sender.invoke_void("SendToGroup", vec![s("room-1"), s("m"), s("allowed")]).await;
    assert_eq!(member.expect_invocation("m").await.arguments, vec![s("allowed")]);
    assert_eq!(
        sender.invoke_error("SendToGroup", vec![s("admin"), s("m"), s("x")]).await,
        denied("SendToGroup", "sending to group 'admin' is not allowed")
    );
    assert_eq!(
        sender.invoke_error("SendToOthersInGroup", vec![s("admin"), s("m"), s("x")]).await,
        denied("SendToOthersInGroup", "sending to group 'admin' is not allowed")
    );
    // Leaving is always allowed, even a group the client could not have joined.
    member.invoke_void("LeaveGroup", vec![s("admin")]).await;
    member.assert_no_invocation("m").await;
}

#[tokio::test]
async fn with_token_groups_a_client_joins_only_the_groups_its_token_lists() {
    let gateway =
        TestGateway::start(secured(RelayPolicyConfig { join_groups: vec!["token".into()], ..Default::default() }))
            .await;
    let alice_token = token(json!({"sub": "alice", "groups": ["team-a", "all-hands"]}));
    let mut alice = TestClient::connect_with_token(&gateway, HUB, Some(&alice_token)).await;
    let bob_token = token(json!({"sub": "bob", "groups": ["team-b"]}));
    let mut bob = TestClient::connect_with_token(&gateway, HUB, Some(&bob_token)).await;
    let mut anonymous = TestClient::connect(&gateway, HUB).await;

    alice.invoke_void("JoinGroup", vec![s("team-a")]).await;
    assert_eq!(
        alice.invoke_error("JoinGroup", vec![s("team-b")]).await,
        denied("JoinGroup", "joining group 'team-b' is not allowed")
    );
    assert_eq!(
        anonymous.invoke_error("JoinGroup", vec![s("team-a")]).await,
        denied("JoinGroup", "joining group 'team-a' is not allowed")
    );
    // A denied send reaches no one: bob may not write into team-a.
    assert_eq!(
        bob.invoke_error("SendToGroup", vec![s("team-a"), s("m"), s("intruder")]).await,
        denied("SendToGroup", "sending to group 'team-a' is not allowed")
    );
    alice.assert_no_invocation("m").await;
    alice.invoke_void("SendToGroup", vec![s("team-a"), s("m"), s("hello team")]).await;
    assert_eq!(alice.expect_invocation("m").await.arguments, vec![s("hello team")]);
}

#[tokio::test]
async fn the_groups_claim_is_configurable_and_mixes_with_patterns() {
    let relay = RelayPolicyConfig {
        join_groups: vec!["public-*".into(), "token".into()],
        groups_claim: "rooms".into(),
        ..Default::default()
    };
    let gateway = TestGateway::start(secured(relay)).await;
    let jwt = token(json!({"sub": "carol", "rooms": "vip", "groups": ["ignored"]}));
    let mut carol = TestClient::connect_with_token(&gateway, HUB, Some(&jwt)).await;
    carol.invoke_void("JoinGroup", vec![s("vip")]).await;
    carol.invoke_void("JoinGroup", vec![s("public-1")]).await;
    assert_eq!(
        carol.invoke_error("JoinGroup", vec![s("ignored")]).await,
        denied("JoinGroup", "joining group 'ignored' is not allowed")
    );
}

#[tokio::test]
async fn sending_to_users_and_connections_can_be_switched_off() {
    let relay = RelayPolicyConfig { send_to_users: false, send_to_connections: false, ..Default::default() };
    let gateway = TestGateway::start(secured(relay)).await;
    let jwt = token(json!({"sub": "dave"}));
    let mut dave = TestClient::connect_with_token(&gateway, HUB, Some(&jwt)).await;
    let dave_id = dave.connection_id.clone().unwrap();
    let mut sender = TestClient::connect(&gateway, HUB).await;
    assert_eq!(
        sender.invoke_error("SendToUser", vec![s("dave"), s("direct"), s("x")]).await,
        denied("SendToUser", "sending to users is not allowed")
    );
    assert_eq!(
        sender.invoke_error("SendToConnection", vec![s(&dave_id), s("direct"), s("x")]).await,
        denied("SendToConnection", "sending to connections is not allowed")
    );
    dave.assert_no_invocation("direct").await;
    sender.invoke_void("SendToOthers", vec![s("direct"), s("still works")]).await;
    assert_eq!(dave.expect_invocation("direct").await.arguments, vec![s("still works")]);
}

#[tokio::test]
async fn sending_to_users_and_connections_is_allowed_by_default() {
    let gateway = TestGateway::start(secured(RelayPolicyConfig::default())).await;
    let jwt = token(json!({"sub": "erin"}));
    let mut erin = TestClient::connect_with_token(&gateway, HUB, Some(&jwt)).await;
    let erin_id = erin.connection_id.clone().unwrap();
    let mut sender = TestClient::connect(&gateway, HUB).await;
    sender.invoke_void("SendToUser", vec![s("erin"), s("u"), s("1")]).await;
    sender.invoke_void("SendToConnection", vec![s(&erin_id), s("c"), s("2")]).await;
    assert_eq!(erin.expect_invocation("u").await.arguments, vec![s("1")]);
    assert_eq!(erin.expect_invocation("c").await.arguments, vec![s("2")]);
}

#[tokio::test]
async fn a_connection_joins_at_most_the_configured_number_of_groups() {
    let relay = RelayPolicyConfig { max_groups_per_connection: 2, ..Default::default() };
    let gateway = TestGateway::start(with_policy(relay)).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    let mut sender = TestClient::connect(&gateway, HUB).await;
    client.invoke_void("JoinGroup", vec![s("a")]).await;
    client.invoke_void("JoinGroup", vec![s("b")]).await;
    client.invoke_void("JoinGroup", vec![s("a")]).await; // already a member: no new group
    let full = denied("JoinGroup", "joining group 'c' would exceed the limit of 2 groups per connection");
    assert_eq!(client.invoke_error("JoinGroup", vec![s("c")]).await, full);
    sender.invoke_void("SendToGroup", vec![s("c"), s("m"), s("not a member")]).await;
    client.assert_no_invocation("m").await;

    client.invoke_void("LeaveGroup", vec![s("a")]).await;
    client.invoke_void("JoinGroup", vec![s("c")]).await;
    sender.invoke_void("SendToGroup", vec![s("c"), s("m"), s("member")]).await;
    assert_eq!(client.expect_invocation("m").await.arguments, vec![s("member")]);
}

#[tokio::test]
async fn calls_beyond_the_rate_fail_without_closing_the_connection() {
    let relay = RelayPolicyConfig { max_messages_per_second: 2, ..Default::default() };
    let gateway = TestGateway::start(with_policy(relay)).await;
    let mut sender = TestClient::connect(&gateway, HUB).await;
    let mut receiver = TestClient::connect(&gateway, HUB).await;
    // Five calls in one frame: the burst of two passes, the other three are refused. The
    // bucket refills one call per 500 ms, far longer than handling one frame takes.
    let ids = send_in_one_frame(&mut sender, 5, |i| ("SendToOthers", vec![s("tick"), Value::from(i)])).await;
    let mut refused = 0;
    for id in &ids {
        match sender.expect_completion(id).await.outcome {
            protocol::CompletionOutcome::Error(text) => {
                assert_eq!(text, denied("SendToOthers", "rate limit exceeded: at most 2 messages per second"));
                refused += 1;
            }
            other => assert_eq!(other, protocol::CompletionOutcome::Void),
        }
    }
    assert_eq!(refused, 3);
    for _ in 0..2 {
        receiver.expect_invocation("tick").await;
    }
    receiver.assert_no_invocation("tick").await;
    // Unknown methods are not relay calls and still answer: the connection is open.
    let unknown = sender.invoke_error("NoSuchMethod", vec![]).await;
    assert_eq!(unknown, "Unknown hub method 'NoSuchMethod'");
}

/// Sends `count` invocations built by `call` in a single WebSocket frame; returns their ids.
async fn send_in_one_frame(
    client: &mut TestClient,
    count: i64,
    call: impl Fn(i64) -> (&'static str, Vec<Value>),
) -> Vec<String> {
    let mut frame = Vec::new();
    let mut ids = Vec::new();
    for i in 0..count {
        let (target, arguments) = call(i);
        let id = client.new_invocation_id();
        let invocation =
            Invocation { invocation_id: Some(id.clone()), target: target.into(), arguments, ..Invocation::default() };
        frame.extend_from_slice(&client.protocol.encode(&HubMessage::Invocation(invocation)).unwrap());
        ids.push(id);
    }
    client.send_bytes(&frame).await;
    ids
}
