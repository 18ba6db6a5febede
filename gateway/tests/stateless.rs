//! Stateless nodes (`--cluster-secret`): three gateway processes on one real `redis-server`,
//! and every request of a connection may land on any of them — negotiate on one, the
//! transport on another, each later poll or POST on a third — as behind a balancer without
//! affinity. A token opens one connection cluster-wide, and the connection id stays routable.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::cluster::SECRET;
use common::http::{negotiated, HttpClient};
use common::processes::{GatewayProcess, RedisServer};
use common::{open_socket, s, upgrade_status, Conversation, TestClient};
use protocol::Protocol;

const HUB: &str = "/hubs/chat";
const CLUSTER_SECRET: &str = "stateless-test-cluster-secret";

async fn stateless_nodes(redis: &RedisServer, count: usize) -> Vec<GatewayProcess> {
    let mut nodes = Vec::new();
    for _ in 0..count {
        nodes.push(stateless_node(redis, &[]).await);
    }
    nodes
}

async fn stateless_node(redis: &RedisServer, extra: &[&str]) -> GatewayProcess {
    let args: Vec<String> = [
        "--backplane",
        "redis",
        "--redis-url",
        &redis.url(),
        "--jwt-secret",
        SECRET,
        "--allow-anonymous",
        "--cluster-secret",
        CLUSTER_SECRET,
    ]
    .iter()
    .chain(extra)
    .map(|arg| arg.to_string())
    .collect();
    let node = GatewayProcess::start(&args).await;
    node.wait_ready(200).await;
    node
}

fn hub_url(node: &GatewayProcess, scheme: &str, token: &str) -> String {
    format!("{scheme}://{}{HUB}?id={token}", node.addr)
}

#[tokio::test]
async fn a_websocket_opens_on_any_node_once_and_stays_reachable_by_its_id() {
    let redis = RedisServer::start().await;
    let nodes = stateless_nodes(&redis, 3).await;
    let (id, token) = negotiated(&nodes[0], HUB).await;

    let mut opened = TestClient::handshaken(open_socket(&hub_url(&nodes[1], "ws", &token)).await).await;
    // A token opens one connection: the holder says it is in use, the others know no such one.
    let statuses = [
        upgrade_status(&hub_url(&nodes[0], "ws", &token), None).await,
        upgrade_status(&hub_url(&nodes[1], "ws", &token), None).await,
        upgrade_status(&hub_url(&nodes[2], "ws", &token), None).await,
    ];
    assert_eq!(statuses, [404, 409, 404]);

    // The id names node 0, which does not hold the connection: node 2 finds the holder.
    let mut sender = TestClient::connect_at(nodes[2].addr, HUB, None).await;
    sender.invoke_void("SendToConnection", vec![s(&id), s("direct"), s("hello")]).await;
    let received = opened.expect_invocation("direct").await;
    assert_eq!(received.arguments, vec![s("hello")]);
    sender.invoke_void("JoinGroup", vec![s("room")]).await;
    opened.invoke_void("JoinGroup", vec![s("room")]).await;
    sender.invoke_void("SendToGroup", vec![s("room"), s("grouped"), s("hi")]).await;
    assert_eq!(opened.expect_invocation("grouped").await.arguments, vec![s("hi")]);
}

#[tokio::test]
async fn forged_and_foreign_tokens_open_nothing() {
    let redis = RedisServer::start().await;
    let nodes = stateless_nodes(&redis, 2).await;
    let (_, token) = negotiated(&nodes[0], HUB).await;
    let (node, rest) = token.split_once('.').unwrap();
    let (payload, _) = rest.rsplit_once('.').unwrap();
    let forged = format!("{node}.{payload}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(upgrade_status(&hub_url(&nodes[1], "ws", &forged), None).await, 404);
    let other_hub = format!("ws://{}/hubs/other?id={token}", nodes[1].addr);
    assert_eq!(upgrade_status(&other_hub, None).await, 404, "a token is for its hub only");
    assert_eq!(upgrade_status(&hub_url(&nodes[1], "ws", &token), None).await, 101, "the real one works");
}

#[tokio::test]
async fn long_polling_requests_may_each_land_on_another_node() {
    let redis = RedisServer::start().await;
    let nodes = stateless_nodes(&redis, 3).await;
    let (id, token) = negotiated(&nodes[0], HUB).await;
    let mut client = HttpClient::new_for_tests(&nodes[1], HUB, id.clone(), token.clone());
    let first = client.poll().await;
    assert_eq!(first.status(), 200, "the first poll, on node 1, claims the connection");
    // From now on every poll and POST goes to node 2, which forwards them to node 1.
    client.url = hub_url(&nodes[2], "http", &token);
    client.handshake(Protocol::Json).await;
    client.invoke_void("JoinGroup", vec![s("lp")]).await;
    let mut sender = TestClient::connect_at(nodes[0].addr, HUB, None).await;
    for n in 0..20 {
        sender.invoke_void("SendToGroup", vec![s("lp"), s("tick"), protocol::Value::from(n)]).await;
    }
    for n in 0..20 {
        let tick = client.expect_invocation("tick").await;
        assert_eq!(tick.arguments, vec![protocol::Value::from(n)], "in order, none lost or repeated");
    }
    sender.invoke_void("SendToConnection", vec![s(&id), s("direct"), s("x")]).await;
    client.expect_invocation("direct").await;

    client.url = hub_url(&nodes[0], "http", &token);
    assert_eq!(client.delete().await, 202, "a DELETE on node 0 ends the connection held by node 1");
    for node in &nodes {
        client.url = hub_url(node, "http", &token);
        assert_eq!(client.poll().await.status(), 404, "the connection is gone on every node");
    }
}

#[tokio::test]
async fn server_sent_events_take_posts_through_any_node() {
    let redis = RedisServer::start().await;
    let nodes = stateless_nodes(&redis, 3).await;
    let (id, token) = negotiated(&nodes[0], HUB).await;
    let mut client = HttpClient::open_event_stream(&nodes[1], HUB, id, token.clone()).await;
    client.url = hub_url(&nodes[2], "http", &token);
    client.handshake(Protocol::Json).await;
    assert_eq!(client.invoke_value("Echo", vec![s("via node 2")]).await, s("via node 2"));
    let second = client.http.get(hub_url(&nodes[0], "http", &token)).header("Accept", "text/event-stream").send();
    assert_eq!(second.await.unwrap().status(), 409, "a second event stream is refused wherever it lands");
}

#[tokio::test]
async fn a_full_node_claims_nothing_new_but_passes_on_requests_for_connections_held_elsewhere() {
    let redis = RedisServer::start().await;
    let full = stateless_node(&redis, &["--max-connections", "1"]).await;
    let spare = stateless_node(&redis, &[]).await;
    let (id, token) = negotiated(&spare, HUB).await;
    let filler = HttpClient::new_for_tests(&full, HUB, id, token);
    assert_eq!(filler.poll().await.status(), 200, "the first claim takes the full node's one slot");

    let (id, token) = negotiated(&spare, HUB).await;
    let mut client = HttpClient::new_for_tests(&full, HUB, id, token.clone());
    let refused = client.poll().await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.text().await.unwrap(), "The server has reached its connection limit");
    client.url = hub_url(&spare, "http", &token);
    assert_eq!(client.poll().await.status(), 200, "the refused token is still good on a node with room");

    // Its later requests may land on the full node, which passes them on to the holder.
    client.url = hub_url(&full, "http", &token);
    client.handshake(Protocol::Json).await;
    assert_eq!(client.invoke_value("Echo", vec![s("through a full node")]).await, s("through a full node"));
    let negotiate = reqwest::Client::new().post(format!("http://{}{HUB}/negotiate?negotiateVersion=1", full.addr));
    assert_eq!(negotiate.send().await.unwrap().status(), 503, "negotiate on the full node is refused early");
}
