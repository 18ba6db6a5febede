//! Several gateway nodes in one process, linked by one in-memory bus: sends reach exactly the
//! intended connections on every node, and group changes for connections on other nodes are
//! acknowledged by the node that applied them.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use backplane::MemoryBus;
use common::cluster::{self, SECRET};
use common::{s, TestClient, TestGateway};
use gateway::hub::{Hub, HubContext, HubError};
use gateway::Config;

fn config() -> Config {
    Config { jwt_secret: Some(SECRET.into()), allow_anonymous: true, ..Config::default() }
}

/// `Enlist`/`Discharge` change another connection's groups; `Shout` sends to a group.
fn hub() -> Hub {
    Hub::builder()
        .method("Enlist", |ctx: HubContext, (connection, group): (String, String)| async move {
            ctx.groups().add(&connection, &group).await?;
            Ok::<_, HubError>(())
        })
        .method("Discharge", |ctx: HubContext, (connection, group): (String, String)| async move {
            ctx.groups().remove(&connection, &group).await?;
            Ok::<_, HubError>(())
        })
        .method("Shout", |ctx: HubContext, (group, text): (String, String)| async move {
            ctx.clients().group(&group).send("shout", (text,)).await?;
            Ok::<_, HubError>(())
        })
        .build()
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
        let routes = |g: &Arc<gateway::Gateway>| Router::new().nest("/app", g.hub_router("app", hub()));
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
    let mut here = TestClient::connect_at(nodes[0].addr, "/app", None).await;
    let mut there = TestClient::connect_at(nodes[1].addr, "/app", None).await;
    let there_id = there.connection_id.clone().unwrap();
    here.invoke_void("Enlist", vec![s(&there_id), s("team")]).await;
    // The add is in effect on the remote node as soon as the call returned.
    here.invoke_void("Shout", vec![s("team"), s("hello")]).await;
    assert_eq!(there.expect_invocation("shout").await.arguments, vec![s("hello")]);

    here.invoke_void("Discharge", vec![s(&there_id), s("team")]).await;
    here.invoke_void("Enlist", vec![s(here.connection_id.as_deref().unwrap()), s("team")]).await;
    here.invoke_void("Shout", vec![s("team"), s("after")]).await;
    assert_eq!(here.expect_invocation("shout").await.arguments, vec![s("after")]);
    there.invoke_void("Enlist", vec![s(&there_id), s("marker")]).await;
    here.invoke_void("Shout", vec![s("marker"), s("m")]).await;
    there.expect_invocation("shout").await;
    there.assert_no_invocation("shout").await;
}

#[tokio::test]
async fn a_connection_that_exists_nowhere_fails_within_two_seconds() {
    let nodes = app_cluster(2).await;
    let mut here = TestClient::connect_at(nodes[0].addr, "/app", None).await;
    let there = TestClient::connect_at(nodes[1].addr, "/app", None).await;
    let there_node = there.connection_id.clone().unwrap().split('.').next().unwrap().to_owned();
    for ghost in [format!("{there_node}.ghost"), "gone-node.ghost".to_owned(), "no-node-at-all".to_owned()] {
        let started = Instant::now();
        let error = here.invoke_error("Enlist", vec![s(&ghost), s("team")]).await;
        assert!(started.elapsed() < Duration::from_secs(2), "{ghost}: took {:?}", started.elapsed());
        assert_eq!(
            error,
            format!("An unexpected error occurred invoking 'Enlist' on the server. HubException: Connection '{ghost}' does not exist."),
        );
    }
}
