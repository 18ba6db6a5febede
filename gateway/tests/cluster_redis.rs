//! Scale-out over a real Redis: `gateway` processes share a `redis-server` (or a 3-shard Redis
//! Cluster) that the test starts itself, and every send reaches exactly the intended
//! connections on every node. Also what happens when Redis is missing or goes away.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::Conversation;

use std::time::Duration;

use common::cluster::{self, SECRET};
use common::processes::{GatewayProcess, RedisCluster, RedisServer};
use common::{s, TestClient};
use protocol::Value;

fn args(redis_urls: &[String], cluster: bool) -> Vec<String> {
    let mut args =
        vec!["--backplane".into(), "redis".into(), "--jwt-secret".into(), SECRET.into(), "--allow-anonymous".into()];
    for url in redis_urls {
        args.extend(["--redis-url".into(), url.clone()]);
    }
    if cluster {
        args.push("--redis-cluster".into());
    }
    args
}

async fn start_nodes(count: usize, redis_urls: &[String], cluster: bool) -> Vec<GatewayProcess> {
    let mut nodes = Vec::new();
    for _ in 0..count {
        let node = GatewayProcess::start(&args(redis_urls, cluster)).await;
        node.wait_ready(200).await;
        nodes.push(node);
    }
    nodes
}

#[tokio::test]
async fn three_gateway_processes_on_one_redis_deliver_exactly_once() {
    let redis = RedisServer::start().await;
    let nodes = start_nodes(3, &[redis.url()], false).await;
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    cluster::relay_sends_reach_exactly_the_intended_connections(&addrs).await;
}

#[tokio::test]
async fn three_gateway_processes_on_a_redis_cluster_deliver_exactly_once() {
    let redis = RedisCluster::start().await;
    let nodes = start_nodes(3, &redis.urls(), true).await;
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    cluster::relay_sends_reach_exactly_the_intended_connections(&addrs).await;
}

/// Two in-process gateways with the app hub, each on its own Redis connection.
async fn app_nodes_on(redis_urls: Vec<String>, cluster: bool) -> Vec<common::TestGateway> {
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let redis = backplane::RedisConfig { urls: redis_urls.clone(), cluster, ..Default::default() };
        let backplane = std::sync::Arc::new(backplane::RedisBackplane::connect(redis).unwrap());
        let routes = |g: &std::sync::Arc<gateway::Gateway>| {
            axum::Router::new().nest("/app", g.hub_router("app", cluster::app_hub())).merge(g.health_router())
        };
        let node = common::TestGateway::start_on(gateway::Config::default(), backplane, routes).await;
        common::eventually("the node to be ready", || node.gateway.readiness().is_ok()).await;
        nodes.push(node);
    }
    nodes
}

#[tokio::test]
async fn group_changes_for_a_connection_on_another_node_are_acknowledged_over_redis() {
    let redis = RedisServer::start().await;
    let nodes = app_nodes_on(vec![redis.url()], false).await;
    cluster::remote_group_changes_complete_after_the_remote_node_applied_them(nodes[0].addr, nodes[1].addr).await;
    cluster::group_changes_for_missing_connections_fail_fast(nodes[0].addr, nodes[1].addr).await;
}

#[tokio::test]
async fn group_changes_for_a_connection_on_another_node_are_acknowledged_over_a_redis_cluster() {
    let redis = RedisCluster::start().await;
    let nodes = app_nodes_on(redis.urls(), true).await;
    cluster::remote_group_changes_complete_after_the_remote_node_applied_them(nodes[0].addr, nodes[1].addr).await;
    cluster::group_changes_for_missing_connections_fail_fast(nodes[0].addr, nodes[1].addr).await;
}

/// Sends from `sender` to everyone until `receiver` (on another node) gets one, within `within`.
async fn cross_node_flows(sender: &mut TestClient, receiver: &mut TestClient, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let _ = sender.invoke("SendToAll", vec![s("probe"), Value::from(attempt)]).await;
        let got = tokio::time::timeout(Duration::from_millis(200), receiver.expect_invocation("probe")).await;
        if got.is_ok() {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no cross-node delivery within {within:?}");
    }
}

#[tokio::test]
async fn a_gateway_started_without_redis_serves_locally_and_joins_when_redis_appears() {
    let port = common::processes::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let lonely = GatewayProcess::start(&args(std::slice::from_ref(&url), false)).await;
    lonely.wait_ready(503).await;
    let mut a = TestClient::connect_at(lonely.addr, "/hubs/chat", None).await;
    let mut b = TestClient::connect_at(lonely.addr, "/hubs/chat", None).await;
    a.invoke_void("JoinGroup", vec![s("room")]).await;
    b.invoke_void("JoinGroup", vec![s("room")]).await;
    // Local recipients get the message even though it cannot reach Redis; the caller is told.
    let error = a.invoke_error("SendToGroup", vec![s("room"), s("local"), s("x")]).await;
    assert_eq!(error, "An unexpected error occurred invoking 'SendToGroup' on the server.");
    assert_eq!(b.expect_invocation("local").await.arguments, vec![s("x")]);

    let _redis = RedisServer::start_on(port).await;
    lonely.wait_ready(200).await;
    let other = GatewayProcess::start(&args(&[url], false)).await;
    other.wait_ready(200).await;
    let mut c = TestClient::connect_at(other.addr, "/hubs/chat", None).await;
    cross_node_flows(&mut c, &mut b, Duration::from_secs(5)).await;
    // The group subscription made while Redis was down is in effect now.
    c.invoke_void("SendToGroup", vec![s("room"), s("joined"), s("y")]).await;
    assert_eq!(a.expect_invocation("joined").await.arguments, vec![s("y")]);
}

#[tokio::test]
async fn cross_node_traffic_resumes_within_five_seconds_of_redis_returning() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let nodes = start_nodes(2, &[redis.url()], false).await;
    let mut a = TestClient::connect_at(nodes[0].addr, "/hubs/chat", None).await;
    let mut b = TestClient::connect_at(nodes[1].addr, "/hubs/chat", None).await;
    b.invoke_void("JoinGroup", vec![s("room")]).await;
    cross_node_flows(&mut a, &mut b, Duration::from_secs(5)).await;

    redis.kill().await;
    nodes[0].wait_ready(503).await;
    let error = a.invoke_error("SendToAll", vec![s("lost")]).await;
    assert_eq!(error, "An unexpected error occurred invoking 'SendToAll' on the server.", "never a silent success");

    let _redis = RedisServer::start_on(port).await;
    cross_node_flows(&mut a, &mut b, Duration::from_secs(5)).await;
    a.invoke_void("SendToGroup", vec![s("room"), s("group_again"), s("z")]).await;
    assert_eq!(b.expect_invocation("group_again").await.arguments, vec![s("z")], "group channel resubscribed");
}
