//! Presence conformance: one suite, run against [`MemoryPresence`] (two nodes sharing one
//! in-process state) and [`RedisPresence`] (two nodes on a real `redis-server` the test starts,
//! and on a 3-shard Redis Cluster), plus Redis liveness: a node that stops heartbeating stops
//! being counted within the bound, a node whose entries Redis lost re-registers them at its next
//! heartbeat, and queries delete the entries of dead leases they meet.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use backplane::presence::{Presence, PresenceKeys, PresenceTiming, MAX_GROUP_CONNECTIONS};
use backplane::{BackplaneError, MemoryPresence, RedisPresence};
use common::{bulk_strings, config, query, wait_until, RedisServer, DEADLINE};

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

/// Whether `key` exists, asked of Redis directly.
async fn key_exists(redis: &RedisServer, key: &str) -> bool {
    query(redis.port, &["EXISTS", key]).await.unwrap().starts_with(":1")
}

#[tokio::test]
async fn queries_delete_the_entries_of_dead_leases_and_keep_live_ones() {
    let redis = RedisServer::start().await;
    let (dead, observer) = (redis_node(&redis, Duration::from_secs(15)), redis_node(&redis, Duration::from_secs(15)));
    eventually("the node heartbeats", || async { dead.heartbeat("dead").await.is_ok() }).await;
    eventually("the observer is up", || async { observer.heartbeat("observer").await.is_ok() }).await;
    dead.connected(HUB, "dead.1", Some(USER), "dead");
    dead.joined(HUB, STAR, "dead.1");
    dead.connected(HUB, "dead.2", None, "dead");
    dead.joined(HUB, SALLE, "dead.2");
    observer.connected(HUB, "observer.1", Some(USER), "observer");
    observer.joined(HUB, STAR, "observer.1");
    eventually("the node is seen", || async { sorted(&observer, STAR).await == ["dead.1", "observer.1"] }).await;
    eventually("all is seen", || async { observer.group_exists(HUB, SALLE).await.unwrap() }).await;

    // The node dies without a clean stop: its lease key goes, its entries stay behind.
    let keys = PresenceKeys::new("test");
    let leases = query(redis.port, &["KEYS", &keys.lease("dead#*")]).await.unwrap();
    let lease = bulk_strings(&leases).pop().unwrap();
    query(redis.port, &["DEL", &lease]).await.unwrap();
    assert!(key_exists(&redis, &keys.group(HUB, SALLE)).await);

    assert_eq!(sorted(&observer, STAR).await, ["observer.1"]);
    assert!(observer.user_exists(HUB, USER).await.unwrap());
    assert!(!observer.group_exists(HUB, SALLE).await.unwrap());
    assert!(!observer.connection_exists(HUB, "dead.2").await.unwrap());
    let fields =
        |key: String| async move { query(redis.port, &["HKEYS", &key]).await.map(|r| bulk_strings(&r)).unwrap() };
    assert_eq!(fields(keys.group(HUB, STAR)).await, ["observer.1"], "the dead member is deleted");
    assert_eq!(fields(keys.user(HUB, USER)).await, ["observer.1"]);
    assert_eq!(fields(keys.connections(HUB)).await, ["observer.1"], "with its connection entries");
    assert!(!key_exists(&redis, &keys.group(HUB, SALLE)).await, "an all-dead hash disappears");
}

#[tokio::test]
async fn a_dead_entry_is_deleted_only_while_it_still_names_the_dead_lease() {
    let redis = RedisServer::start().await;
    let observer = redis_node(&redis, Duration::from_secs(15));
    eventually("the observer is up", || async { observer.heartbeat("observer").await.is_ok() }).await;
    observer.connected(HUB, "observer.1", None, "observer");
    observer.joined(HUB, STAR, "observer.1");
    eventually("the member is seen", || async { sorted(&observer, STAR).await == ["observer.1"] }).await;
    let keys = PresenceKeys::new("test");
    let group = keys.group(HUB, STAR);
    // An entry under a lease that never existed, then the same entry re-registered under a live
    // lease before the cleanup ran: only a dead value may be deleted.
    query(redis.port, &["HSET", &group, "gone.1", "gone#1"]).await.unwrap();
    assert_eq!(sorted(&observer, STAR).await, ["observer.1"]);
    let left = query(redis.port, &["HEXISTS", &group, "gone.1"]).await.unwrap();
    assert!(left.starts_with(":0"), "deleted: {left}");
    let live_lease = query(redis.port, &["HGET", &group, "observer.1"]).await.unwrap();
    let live_lease = bulk_strings(&live_lease).pop().unwrap();
    let script = backplane::presence::redis::FORGET_SCRIPT;
    query(redis.port, &["EVAL", script, "1", &group, "observer.1", "gone#1"]).await.unwrap();
    assert_eq!(sorted(&observer, STAR).await, ["observer.1"], "a live value is kept");
    query(redis.port, &["EVAL", script, "1", &group, "observer.1", &live_lease]).await.unwrap();
    assert!(sorted(&observer, STAR).await.is_empty(), "the script deletes exact matches");
}

#[tokio::test]
async fn presence_timing_needs_a_ttl_longer_than_the_interval() {
    assert_eq!(PresenceTiming::default().validate(), Ok(()));
    let second = Duration::from_secs(1);
    let equal = PresenceTiming { heartbeat_interval: second, node_ttl: second };
    assert!(matches!(equal.validate(), Err(BackplaneError::InvalidConfig(_))));
    let zero = PresenceTiming { heartbeat_interval: Duration::ZERO, node_ttl: second };
    assert!(matches!(zero.validate(), Err(BackplaneError::InvalidConfig(_))));
    let redis = RedisServer::start().await;
    assert!(RedisPresence::connect_with_timing(&config(vec![redis.url()], false), "test", equal).is_err());
    let short = PresenceTiming { heartbeat_interval: Duration::from_millis(100), node_ttl: Duration::from_millis(500) };
    let node = RedisPresence::connect_with_timing(&config(vec![redis.url()], false), "test", short).unwrap();
    eventually("the node heartbeats", || async { node.heartbeat("n").await.is_ok() }).await;
    let lease = query(redis.port, &["KEYS", &PresenceKeys::new("test").lease("n#*")]).await.unwrap();
    let ttl = query(redis.port, &["PTTL", &bulk_strings(&lease).pop().unwrap()]).await.unwrap();
    let ttl: i64 = ttl.lines().next().unwrap().trim_start_matches(':').parse().unwrap();
    assert!((1..=500).contains(&ttl), "the lease lives for node_ttl: {ttl}");
}

#[tokio::test]
async fn reports_made_before_a_nodes_first_heartbeat_are_not_taken_for_dead() {
    let redis = RedisServer::start().await;
    let (early, observer) = (redis_node(&redis, Duration::from_secs(15)), redis_node(&redis, Duration::from_secs(15)));
    eventually("the observer is up", || async { observer.heartbeat("observer").await.is_ok() }).await;
    eventually("the early node's client is up", || async { early.group_exists(HUB, "x").await.is_ok() }).await;
    early.connected(HUB, "early.1", Some(USER), "early");
    early.joined(HUB, STAR, "early.1");
    eventually("the early node is seen", || async { observer.group_exists(HUB, STAR).await.unwrap() }).await;
    assert!(observer.user_in_group(HUB, USER, STAR).await.unwrap());
    early.heartbeat("early").await.unwrap();
    assert_eq!(sorted(&observer, STAR).await, ["early.1"]);
    assert!(observer.connection_exists(HUB, "early.1").await.unwrap());
}
