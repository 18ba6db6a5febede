//! Presence conformance: one suite, run against [`MemoryPresence`] (two nodes sharing one
//! in-process state) and [`RedisPresence`] (two nodes on a real `redis-server` the test starts,
//! and on a 3-shard Redis Cluster), plus Redis liveness: a node that stops heartbeating stops being counted within the bound, and
//! a node whose entries Redis lost re-registers them at its next heartbeat.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use backplane::presence::{Presence, MAX_GROUP_CONNECTIONS};
use backplane::{MemoryPresence, RedisPresence};
use common::{config, query, wait_until, RedisServer, DEADLINE};

const HUB: &str = "chat";
const USER: &str = "alice é🎉";
const STAR: &str = "*";
const SALLE: &str = "salle 🎉:group:x";

async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_until(what, DEADLINE, check).await;
}

async fn sorted(presence: &impl Presence, group: &str) -> Vec<String> {
    let mut ids = presence.group_connections(HUB, group).await.unwrap();
    ids.sort();
    ids
}

/// Every query, as seen from node `b` while node `a` reports, and the other way round.
async fn every_query_answers_for_the_whole_cluster(a: &impl Presence, b: &impl Presence) {
    eventually("node a heartbeats", || async { a.heartbeat("na").await.is_ok() }).await;
    eventually("node b heartbeats", || async { b.heartbeat("nb").await.is_ok() }).await;
    a.connected(HUB, "na.1", Some(USER), "na");
    a.connected(HUB, "na.2", None, "na");
    b.connected(HUB, "nb.1", Some(USER), "nb");
    a.joined(HUB, STAR, "na.1");
    b.joined(HUB, STAR, "nb.1");
    a.joined(HUB, SALLE, "na.2");

    eventually("b sees a's members of *", || async { sorted(b, STAR).await == ["na.1", "nb.1"] }).await;
    eventually("b sees a's member of salle", || async { sorted(b, SALLE).await == ["na.2"] }).await;
    assert!(b.connection_exists(HUB, "na.1").await.unwrap());
    assert!(b.connection_exists(HUB, "na.2").await.unwrap());
    assert!(a.connection_exists(HUB, "nb.1").await.unwrap());
    assert!(b.user_exists(HUB, USER).await.unwrap());
    assert!(b.group_exists(HUB, STAR).await.unwrap());
    assert!(b.user_in_group(HUB, USER, STAR).await.unwrap());

    assert!(!b.connection_exists("other", "na.1").await.unwrap(), "hubs are separate");
    assert!(!b.connection_exists(HUB, "na.3").await.unwrap());
    assert!(!b.user_exists(HUB, "bob").await.unwrap());
    assert!(!b.user_exists(HUB, "alice").await.unwrap(), "names are exact");
    assert!(!b.group_exists(HUB, "room").await.unwrap());
    assert!(!b.group_exists(HUB, "salle 🎉").await.unwrap(), "a group name with :group: is literal");
    assert!(!b.user_in_group(HUB, USER, SALLE).await.unwrap(), "na.2 has no user");
    assert!(!b.user_in_group(HUB, "bob", STAR).await.unwrap());
    assert!(b.group_connections(HUB, "room").await.unwrap().is_empty());

    a.left(HUB, STAR, "na.1");
    eventually("a's leave is seen", || async { sorted(b, STAR).await == ["nb.1"] }).await;
    assert!(b.user_in_group(HUB, USER, STAR).await.unwrap(), "through nb.1");
    b.left(HUB, STAR, "nb.1");
    eventually("the empty group is gone", || async { !a.group_exists(HUB, STAR).await.unwrap() }).await;
    assert!(!a.user_in_group(HUB, USER, STAR).await.unwrap());

    a.disconnected(HUB, "na.1");
    eventually("a's disconnect is seen", || async { !b.connection_exists(HUB, "na.1").await.unwrap() }).await;
    assert!(b.user_exists(HUB, USER).await.unwrap(), "through nb.1");
    b.joined(HUB, SALLE, "nb.1");
    b.disconnected(HUB, "nb.1");
    eventually("the user is gone", || async { !a.user_exists(HUB, USER).await.unwrap() }).await;
    assert_eq!(sorted(a, SALLE).await, ["na.2"], "disconnecting leaves the groups");

    a.node_stopped("na").await.unwrap();
    eventually("a stopped node's entries are gone", || async { !b.connection_exists(HUB, "na.2").await.unwrap() })
        .await;
    assert!(!b.group_exists(HUB, SALLE).await.unwrap());
}

async fn reports_for_unknown_connections_are_ignored(p: &impl Presence) {
    eventually("the node heartbeats", || async { p.heartbeat("n").await.is_ok() }).await;
    p.joined(HUB, "g", "n.ghost");
    p.left(HUB, "g", "n.ghost");
    p.disconnected(HUB, "n.ghost");
    p.connected(HUB, "n.real", None, "n");
    eventually("the real connection is seen", || async { p.connection_exists(HUB, "n.real").await.unwrap() }).await;
    assert!(!p.group_exists(HUB, "g").await.unwrap());
    assert!(!p.connection_exists(HUB, "n.ghost").await.unwrap());
}

#[tokio::test]
async fn memory_presence_answers_every_query_for_every_node_sharing_it() {
    let shared = MemoryPresence::new();
    every_query_answers_for_the_whole_cluster(&shared, &shared.clone()).await;
    assert!(shared.is_empty());
}

#[tokio::test]
async fn memory_presence_ignores_reports_for_unknown_connections() {
    reports_for_unknown_connections_are_ignored(&MemoryPresence::new()).await;
}

#[tokio::test]
async fn memory_presence_caps_group_connections() {
    let p = MemoryPresence::new();
    for i in 0..MAX_GROUP_CONNECTIONS + 5 {
        let id = format!("n.{i}");
        p.connected(HUB, &id, None, "n");
        p.joined(HUB, "big", &id);
    }
    assert_eq!(p.group_connections(HUB, "big").await.unwrap().len(), MAX_GROUP_CONNECTIONS);
}

fn redis_node(redis: &RedisServer, ttl: Duration) -> RedisPresence {
    RedisPresence::connect_with_ttl(&config(vec![redis.url()], false), "test", ttl).unwrap()
}

#[tokio::test]
async fn redis_presence_answers_every_query_for_every_node() {
    let redis = RedisServer::start().await;
    let (a, b) = (redis_node(&redis, Duration::from_secs(15)), redis_node(&redis, Duration::from_secs(15)));
    every_query_answers_for_the_whole_cluster(&a, &b).await;
    assert_eq!(a.failures() + b.failures(), 0);
}

#[tokio::test]
async fn redis_presence_ignores_reports_for_unknown_connections() {
    let redis = RedisServer::start().await;
    reports_for_unknown_connections_are_ignored(&redis_node(&redis, Duration::from_secs(15))).await;
}

#[tokio::test]
async fn a_node_that_stops_heartbeating_stops_being_counted_within_its_ttl() {
    let redis = RedisServer::start().await;
    let ttl = Duration::from_millis(500);
    let (dead, observer) = (redis_node(&redis, ttl), redis_node(&redis, Duration::from_secs(15)));
    eventually("the node heartbeats", || async { dead.heartbeat("dead").await.is_ok() }).await;
    eventually("the observer is up", || async { observer.heartbeat("observer").await.is_ok() }).await;
    dead.connected(HUB, "dead.1", Some(USER), "dead");
    dead.joined(HUB, STAR, "dead.1");
    eventually("the node is seen", || async { observer.group_exists(HUB, STAR).await.unwrap() }).await;
    let last_heartbeat = std::time::Instant::now();

    // No more heartbeats: the node is as good as dead (its process is still here).
    eventually("the node stops counting", || async { !observer.connection_exists(HUB, "dead.1").await.unwrap() }).await;
    // The TTL plus slack for a loaded test machine; far below the next bound up (the default TTL).
    assert!(last_heartbeat.elapsed() <= ttl + Duration::from_millis(1_500), "{:?}", last_heartbeat.elapsed());
    assert!(!observer.user_exists(HUB, USER).await.unwrap());
    assert!(!observer.group_exists(HUB, STAR).await.unwrap());
    assert!(!observer.user_in_group(HUB, USER, STAR).await.unwrap());
    assert!(observer.group_connections(HUB, STAR).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_node_re_registers_its_entries_when_redis_lost_them() {
    let redis = RedisServer::start().await;
    let (a, b) = (redis_node(&redis, Duration::from_secs(15)), redis_node(&redis, Duration::from_secs(15)));
    eventually("node a heartbeats", || async { a.heartbeat("na").await.is_ok() }).await;
    eventually("node b heartbeats", || async { b.heartbeat("nb").await.is_ok() }).await;
    a.connected(HUB, "na.1", Some(USER), "na");
    a.joined(HUB, SALLE, "na.1");
    eventually("the entry is seen", || async { b.user_in_group(HUB, USER, SALLE).await.unwrap() }).await;

    query(redis.port, &["FLUSHALL"]).await.unwrap();
    assert!(!b.connection_exists(HUB, "na.1").await.unwrap());
    a.heartbeat("na").await.unwrap();
    assert!(b.connection_exists(HUB, "na.1").await.unwrap(), "repaired by one heartbeat");
    assert!(b.user_in_group(HUB, USER, SALLE).await.unwrap());
    assert_eq!(b.group_connections(HUB, SALLE).await.unwrap(), ["na.1"]);
}

#[tokio::test]
async fn reports_made_while_redis_is_down_are_stored_by_the_first_heartbeat_after_it_returns() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let (a, b) = (redis_node(&redis, Duration::from_secs(15)), redis_node(&redis, Duration::from_secs(15)));
    eventually("node a heartbeats", || async { a.heartbeat("na").await.is_ok() }).await;
    eventually("node b heartbeats", || async { b.heartbeat("nb").await.is_ok() }).await;
    a.connected(HUB, "na.1", Some(USER), "na");
    a.joined(HUB, STAR, "na.1");
    eventually("the first entry is seen", || async { b.connection_exists(HUB, "na.1").await.unwrap() }).await;

    redis.kill().await;
    a.connected(HUB, "na.2", None, "na");
    a.joined(HUB, STAR, "na.2");
    a.left(HUB, STAR, "na.1");
    eventually("the lost reports are counted", || async { a.failures() > 0 }).await;
    let _redis = RedisServer::start_on(port).await;

    eventually("a heartbeat succeeds again", || async { a.heartbeat("na").await.is_ok() }).await;
    eventually("b answers again", || async { b.connection_exists(HUB, "na.2").await.is_ok() }).await;
    assert!(b.connection_exists(HUB, "na.1").await.unwrap());
    assert!(b.connection_exists(HUB, "na.2").await.unwrap());
    assert_eq!(b.group_connections(HUB, STAR).await.unwrap(), ["na.2"]);
}

#[tokio::test]
async fn redis_presence_answers_every_query_on_a_redis_cluster() {
    let redis = common::RedisCluster::start().await;
    let node = || RedisPresence::connect(&config(redis.urls(), true), "test").unwrap();
    let (a, b) = (node(), node());
    every_query_answers_for_the_whole_cluster(&a, &b).await;
    assert_eq!(a.failures() + b.failures(), 0);
}
