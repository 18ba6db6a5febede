//! Several gateway nodes in one process, linked by one in-memory bus: sends reach exactly the
//! intended connections on every node, and group changes for connections on other nodes are
//! acknowledged by the node that applied them.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::sync::Arc;

use axum::Router;
use backplane::MemoryBus;
use common::cluster::{self, SECRET};
use common::TestGateway;
use gateway::Config;

fn config() -> Config {
    Config { jwt_secret: Some(SECRET.into()), allow_anonymous: true, ..Config::default() }
}

async fn relay_cluster(size: usize) -> Vec<TestGateway> {
    let bus = MemoryBus::new();
    let mut nodes = Vec::new();
    for _ in 0..size {
        nodes.push(TestGateway::start_on(config(), Arc::new(bus.node()), |g| g.router()).await);
    }
    nodes
}

async fn app_cluster(size: usize) -> Vec<TestGateway> {
    let bus = MemoryBus::new();
    let mut nodes = Vec::new();
    for _ in 0..size {
        let routes = |g: &Arc<gateway::Gateway>| Router::new().nest("/app", g.hub_router("app", cluster::app_hub()));
        nodes.push(TestGateway::start_on(config(), Arc::new(bus.node()), routes).await);
    }
    nodes
}

#[tokio::test]
async fn relay_sends_reach_exactly_the_intended_connections_across_three_nodes() {
    let nodes = relay_cluster(3).await;
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    cluster::relay_sends_reach_exactly_the_intended_connections(&addrs).await;
}

#[tokio::test]
async fn adding_a_connection_on_another_node_completes_after_that_node_applied_it() {
    let nodes = app_cluster(2).await;
    cluster::remote_group_changes_complete_after_the_remote_node_applied_them(nodes[0].addr, nodes[1].addr).await;
}

#[tokio::test]
async fn a_connection_that_exists_nowhere_fails_within_two_seconds() {
    let nodes = app_cluster(2).await;
    cluster::group_changes_for_missing_connections_fail_fast(nodes[0].addr, nodes[1].addr).await;
}
