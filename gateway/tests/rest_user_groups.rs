//! Users in groups through the REST API (`PUT`/`DELETE /api/hubs/{hub}/users/{user}/groups/…`):
//! a user's membership reaches every current connection of the user and, unless `ttl=0`,
//! the connections the user opens later, until removed or expired. On one node here; across
//! three processes in `rest_cluster.rs`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::rest::{error_code, with_version, RestClient};
use common::{Conversation, TestClient, TestGateway};
use gateway::Config;
use protocol::HubMessage;
use reqwest::{Method, StatusCode};

const KEY: &str = "user-groups-access-key";
const SECRET: &str = "user-groups-client-secret";

async fn node() -> (TestGateway, RestClient) {
    let config = Config {
        access_key: Some(KEY.into()),
        jwt_secret: Some(SECRET.into()),
        allow_anonymous: true,
        ..Config::default()
    };
    let gateway = TestGateway::start(config).await;
    let rest = RestClient::new(gateway.addr, KEY);
    (gateway, rest)
}

async fn client(gateway: &TestGateway, user: &str) -> TestClient {
    let token = common::client_token(SECRET, user);
    TestClient::connect_at(gateway.addr, "/hubs/chat", Some(&token)).await
}

async fn put(rest: &RestClient, path: &str) -> StatusCode {
    let (status, body) = rest.call(Method::PUT, &with_version(path), None).await;
    assert!(status != StatusCode::INTERNAL_SERVER_ERROR, "{path}: {body}");
    status
}

async fn delete(rest: &RestClient, path: &str) -> StatusCode {
    rest.call(Method::DELETE, &with_version(path), None).await.0
}

/// Sends `target` to `group`, then a marker to everyone, and tells whether `client` got
/// `target` before the marker.
async fn receives_group_message(rest: &RestClient, client: &mut TestClient, group: &str, target: &str) -> bool {
    rest.send(&format!("/api/hubs/chat/groups/{group}/:send"), target, vec![]).await;
    let marker = format!("{target}-marker");
    rest.send("/api/hubs/chat/:send", &marker, vec![]).await;
    client.expect_invocation(&marker).await;
    client.pending().iter().any(|m| matches!(m, HubMessage::Invocation(i) if i.target == target))
}

#[tokio::test]
async fn adding_a_user_to_a_group_reaches_its_current_and_later_connections() {
    let (gateway, rest) = node().await;
    let mut alice_1 = client(&gateway, "alice").await;
    let mut alice_2 = client(&gateway, "alice").await;
    let mut bob = client(&gateway, "bob").await;

    assert_eq!(put(&rest, "/api/hubs/chat/users/alice/groups/room").await, StatusCode::OK);
    assert!(receives_group_message(&rest, &mut alice_1, "room", "m1").await);
    assert!(receives_group_message(&rest, &mut alice_2, "room", "m2").await);
    assert!(!receives_group_message(&rest, &mut bob, "room", "m3").await);

    let mut alice_later = client(&gateway, "alice").await;
    assert!(receives_group_message(&rest, &mut alice_later, "room", "m4").await);
    assert_eq!(rest.head(&with_version("/api/hubs/chat/users/alice/groups/room")).await, StatusCode::OK);
}

#[tokio::test]
async fn ttl_zero_adds_only_the_connections_that_exist_now() {
    let (gateway, rest) = node().await;
    let mut now = client(&gateway, "alice").await;
    assert_eq!(put(&rest, "/api/hubs/chat/users/alice/groups/room?ttl=0").await, StatusCode::OK);
    assert!(receives_group_message(&rest, &mut now, "room", "m1").await);
    let mut later = client(&gateway, "alice").await;
    assert!(!receives_group_message(&rest, &mut later, "room", "m2").await);
}

#[tokio::test]
async fn a_membership_with_a_ttl_stops_reaching_new_connections_when_it_expires() {
    let (gateway, rest) = node().await;
    assert_eq!(put(&rest, "/api/hubs/chat/users/alice/groups/room?ttl=1").await, StatusCode::OK);
    let mut early = client(&gateway, "alice").await;
    assert!(receives_group_message(&rest, &mut early, "room", "m0").await);
    // Connections opened once the second has passed no longer join.
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    let mut round = 0;
    loop {
        round += 1;
        let mut fresh = client(&gateway, "alice").await;
        if !receives_group_message(&rest, &mut fresh, "room", &format!("m{round}")).await {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a 1 s membership still reaches new connections");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn removing_a_user_from_a_group_removes_it_now_and_for_later_connections() {
    let (gateway, rest) = node().await;
    let mut alice = client(&gateway, "alice").await;
    put(&rest, "/api/hubs/chat/users/alice/groups/room").await;
    put(&rest, "/api/hubs/chat/users/alice/groups/lobby").await;

    assert_eq!(delete(&rest, "/api/hubs/chat/users/alice/groups/room").await, StatusCode::NO_CONTENT);
    assert!(!receives_group_message(&rest, &mut alice, "room", "m1").await);
    assert!(receives_group_message(&rest, &mut alice, "lobby", "m2").await);
    let mut later = client(&gateway, "alice").await;
    assert!(!receives_group_message(&rest, &mut later, "room", "m3").await);
    assert!(receives_group_message(&rest, &mut later, "lobby", "m4").await);
    // Removing a non-member is not an error.
    assert_eq!(delete(&rest, "/api/hubs/chat/users/nobody/groups/room").await, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn removing_a_user_from_all_groups_covers_groups_joined_any_way() {
    let (gateway, rest) = node().await;
    let mut alice = client(&gateway, "alice").await;
    let mut bob = client(&gateway, "bob").await;
    put(&rest, "/api/hubs/chat/users/alice/groups/room").await;
    put(&rest, "/api/hubs/chat/users/bob/groups/room").await;
    alice.invoke_void("JoinGroup", vec![common::s("self-joined")]).await;

    assert_eq!(delete(&rest, "/api/hubs/chat/users/alice/groups").await, StatusCode::NO_CONTENT);
    assert!(!receives_group_message(&rest, &mut alice, "room", "m1").await);
    assert!(!receives_group_message(&rest, &mut alice, "self-joined", "m2").await);
    assert!(receives_group_message(&rest, &mut bob, "room", "m3").await);
    let mut later = client(&gateway, "alice").await;
    assert!(!receives_group_message(&rest, &mut later, "room", "m4").await);
}

#[tokio::test]
async fn bad_ttls_and_names_are_400() {
    let (_gateway, rest) = node().await;
    for path in [
        "/api/hubs/chat/users/alice/groups/room?ttl=soon",
        "/api/hubs/chat/users/alice/groups/room?ttl=-1",
        "/api/hubs/1chat/users/alice/groups/room",
    ] {
        let (status, body) = rest.call(Method::PUT, &with_version(path), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(error_code(&body).starts_with("Error.Request."), "{path}: {body}");
    }
    let long_group = "g".repeat(1025);
    let (status, _) =
        rest.call(Method::PUT, &with_version(&format!("/api/hubs/chat/users/alice/groups/{long_group}")), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Across three processes on Redis: the call goes to node A, the user's connections are on
/// B and C, and a connection opened later on C joins from the membership stored in Redis.
#[tokio::test]
async fn a_users_groups_reach_its_connections_on_every_node_and_later_ones() {
    let cluster = common::rest::RestCluster::start().await;
    let (mut on_b, _) = cluster.client(1, Some("alice")).await;
    let (mut on_c, _) = cluster.client(2, Some("alice")).await;
    let (mut bob, _) = cluster.client(2, Some("bob")).await;
    let rest = cluster.rest(0);

    assert_eq!(put(&rest, "/api/hubs/chat/users/alice/groups/room").await, StatusCode::OK);
    let in_group = with_version("/api/hubs/chat/users/alice/groups/room");
    rest.wait_for_head(&in_group, StatusCode::OK, common::DEADLINE).await;
    // A change applied through the user's channel: wait until both connections are listed.
    wait_for_member_count(&rest, "room", 2).await;
    assert!(receives_group_message(&rest, &mut on_b, "room", "m1").await);
    assert!(receives_group_message(&rest, &mut on_c, "room", "m2").await);
    assert!(!receives_group_message(&rest, &mut bob, "room", "m3").await);

    let (mut later_on_c, _) = cluster.client(2, Some("alice")).await;
    assert!(receives_group_message(&rest, &mut later_on_c, "room", "m4").await);

    assert_eq!(delete(&rest, "/api/hubs/chat/users/alice/groups/room").await, StatusCode::NO_CONTENT);
    rest.wait_for_head(&in_group, StatusCode::NOT_FOUND, common::DEADLINE).await;
    assert!(!receives_group_message(&rest, &mut on_b, "room", "m5").await);
    let (mut after_removal, _) = cluster.client(1, Some("alice")).await;
    assert!(!receives_group_message(&rest, &mut after_removal, "room", "m6").await);

    // Every group at once, from node A, for connections on B and C.
    put(&rest, "/api/hubs/chat/users/alice/groups/lobby").await;
    wait_for_member_count(&rest, "lobby", 4).await;
    assert_eq!(delete(&rest, "/api/hubs/chat/users/alice/groups").await, StatusCode::NO_CONTENT);
    wait_for_member_count(&rest, "lobby", 0).await;
    assert!(!receives_group_message(&rest, &mut later_on_c, "lobby", "m7").await);
    let (mut after_all, _) = cluster.client(2, Some("alice")).await;
    assert!(!receives_group_message(&rest, &mut after_all, "lobby", "m8").await);
}

/// Waits until `group` lists `count` connections cluster-wide.
async fn wait_for_member_count(rest: &RestClient, group: &str, count: usize) {
    let path = with_version(&format!("/api/hubs/chat/groups/{group}/connections"));
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    while rest.listed_connections(&path).await.len() != count {
        assert!(tokio::time::Instant::now() < deadline, "{group} never listed {count} connections");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
