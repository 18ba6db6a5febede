//! Cluster-wide presence through the gateway: two in-process nodes on one real `redis-server`
//! (backplane and presence both on it, as `--backplane redis` sets them up). A client connected
//! to node A, with a user from its token and groups joined through the relay hub, is visible
//! from node B's `presence()`, and disappears when it disconnects or when node A shuts down.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::sync::Arc;

use backplane::{Presence, RedisBackplane, RedisPresence};
use common::cluster::{token, SECRET};
use common::processes::RedisServer;
use common::{s, Conversation, TestClient, TestGateway, DEADLINE};
use gateway::Config;

const HUB: &str = "chat";
const USER: &str = "zoë 🎉";
const GROUP: &str = "salle-é-🎉 *";

async fn node_on(redis: &RedisServer) -> TestGateway {
    let config = Config { jwt_secret: Some(SECRET.into()), allow_anonymous: true, ..Config::default() };
    let redis_config = backplane::RedisConfig { urls: vec![redis.url()], ..Default::default() };
    let backplane = Arc::new(RedisBackplane::connect(redis_config.clone()).unwrap());
    let presence = Arc::new(RedisPresence::connect(&redis_config, &config.channel_prefix).unwrap());
    let node = TestGateway::start_with_presence(config, backplane, presence, |g| g.router()).await;
    common::eventually("the node to be ready", || node.gateway.readiness().is_ok()).await;
    node
}

/// Polls `check` until it holds; fails the test after [`DEADLINE`].
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Waits until `presence` answers (its Redis client is connected).
async fn answering(presence: &Arc<dyn Presence>) {
    until("presence answers", async || presence.connection_exists(HUB, "none").await.is_ok()).await;
}

#[tokio::test]
async fn a_client_on_one_node_is_visible_with_its_user_and_groups_from_another_until_it_disconnects() {
    let redis = RedisServer::start().await;
    let (a, b) = (node_on(&redis).await, node_on(&redis).await);
    let seen_from_b = b.gateway.presence();
    answering(&seen_from_b).await;

    let mut client = TestClient::connect_at(a.addr, "/hubs/chat", Some(&token(USER))).await;
    let id = client.connection_id.clone().unwrap();
    client.invoke_void("JoinGroup", vec![s(GROUP)]).await;

    until("B sees the group member", async || seen_from_b.group_connections(HUB, GROUP).await.unwrap() == [id.clone()])
        .await;
    assert!(seen_from_b.connection_exists(HUB, &id).await.unwrap());
    assert!(seen_from_b.user_exists(HUB, USER).await.unwrap());
    assert!(seen_from_b.group_exists(HUB, GROUP).await.unwrap());
    assert!(seen_from_b.user_in_group(HUB, USER, GROUP).await.unwrap());
    assert!(!seen_from_b.user_exists("other", USER).await.unwrap(), "presence is per hub");

    client.invoke_void("LeaveGroup", vec![s(GROUP)]).await;
    until("B sees the leave", async || !seen_from_b.group_exists(HUB, GROUP).await.unwrap()).await;
    assert!(seen_from_b.user_exists(HUB, USER).await.unwrap(), "still connected");

    client.drop_socket_abruptly().await;
    until("B sees the disconnect", async || !seen_from_b.connection_exists(HUB, &id).await.unwrap()).await;
    assert!(!seen_from_b.user_exists(HUB, USER).await.unwrap());
}

#[tokio::test]
async fn a_node_that_shuts_down_cleanly_removes_its_clients_at_once() {
    let redis = RedisServer::start().await;
    let (a, b) = (node_on(&redis).await, node_on(&redis).await);
    let seen_from_b = b.gateway.presence();
    answering(&seen_from_b).await;
    let mut client = TestClient::connect_at(a.addr, "/hubs/chat", Some(&token(USER))).await;
    client.invoke_void("JoinGroup", vec![s(GROUP)]).await;
    until("B sees the user", async || seen_from_b.user_in_group(HUB, USER, GROUP).await.unwrap()).await;

    a.stop().await;
    // Well before the lease expires: the entries go with the shutdown.
    until("B stops counting A's client", async || !seen_from_b.user_exists(HUB, USER).await.unwrap()).await;
    assert!(!seen_from_b.group_exists(HUB, GROUP).await.unwrap());
}

#[tokio::test]
async fn a_single_node_answers_from_memory() {
    let node = TestGateway::start(Config { jwt_secret: Some(SECRET.into()), ..Config::default() }).await;
    let mut client = TestClient::connect_with_token(&node, "/hubs/chat", Some(&token(USER))).await;
    let id = client.connection_id.clone().unwrap();
    client.invoke_void("JoinGroup", vec![s(GROUP)]).await;
    let presence = node.gateway.presence();
    assert!(presence.connection_exists(HUB, &id).await.unwrap());
    assert!(presence.user_in_group(HUB, USER, GROUP).await.unwrap());
    assert_eq!(presence.group_connections(HUB, GROUP).await.unwrap(), [id]);
}
