//! User-groups conformance: one suite, run against [`MemoryUserGroups`] and [`RedisUserGroups`]
//! (two stores — two nodes — on a real `redis-server` the test starts, and on a 3-shard Redis
//! Cluster), plus what only Redis has: the user's key expires when every membership does, and
//! the memory a membership costs.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use backplane::user_groups::{UserGroupKeys, MAX_GROUPS_PER_USER};
use backplane::{MemoryUserGroups, RedisUserGroups, UserGroups, UserGroupsError};
use common::{config, query, wait_until, RedisServer, DEADLINE};

const HUB: &str = "chat";
const USER: &str = "alice é🎉";
const STAR: &str = "*";
const SALLE: &str = "salle 🎉:user:x";
const SHORT: Duration = Duration::from_millis(300);

async fn sorted(store: &impl UserGroups, hub: &str, user: &str) -> Vec<String> {
    let mut groups = store.groups_of(hub, user).await.unwrap();
    groups.sort();
    groups
}

/// Waits until `store` answers (a Redis store connects in the background).
async fn answering(store: &impl UserGroups) {
    wait_until("the store answers", DEADLINE, || async { store.groups_of(HUB, USER).await.is_ok() }).await;
}

/// Waits until `group` is no longer listed for `user`.
async fn until_gone(store: &impl UserGroups, user: &str, group: &str) {
    let listed = || async { store.groups_of(HUB, user).await.unwrap().iter().any(|g| g == group) };
    wait_until(&format!("{group} expires"), DEADLINE, || async { !listed().await }).await;
}

/// What one store writes, another (the same, or another node's) reads.
async fn adds_removes_and_lists(a: &impl UserGroups, b: &impl UserGroups) {
    assert!(b.groups_of(HUB, USER).await.unwrap().is_empty());
    a.add(HUB, USER, STAR, None).await.unwrap();
    a.add(HUB, USER, SALLE, None).await.unwrap();
    a.add(HUB, USER, "room", Some(Duration::from_secs(60))).await.unwrap();
    a.add(HUB, USER, STAR, None).await.unwrap();
    assert_eq!(sorted(b, HUB, USER).await, ["*", "room", SALLE], "re-adding does not duplicate");

    b.remove(HUB, USER, "room").await.unwrap();
    b.remove(HUB, USER, "never-joined").await.unwrap();
    b.remove(HUB, "nobody", "room").await.unwrap();
    assert_eq!(sorted(a, HUB, USER).await, ["*", SALLE]);

    b.remove_all(HUB, USER).await.unwrap();
    assert!(a.groups_of(HUB, USER).await.unwrap().is_empty());
    b.remove_all(HUB, USER).await.unwrap();
}

async fn hubs_and_users_are_isolated(store: &impl UserGroups) {
    let pairs = [(HUB, USER), (HUB, "alice"), ("other", USER), ("chat:user:alice é🎉", "x"), (HUB, "*"), ("*", USER)];
    for (i, (hub, user)) in pairs.iter().enumerate() {
        store.add(hub, user, &format!("g{i}"), None).await.unwrap();
    }
    for (i, (hub, user)) in pairs.iter().enumerate() {
        assert_eq!(sorted(store, hub, user).await, [format!("g{i}")], "{hub} / {user}");
    }
    store.remove_all(HUB, "*").await.unwrap();
    assert_eq!(sorted(store, HUB, USER).await, ["g0"], "a user named * is no pattern");
    for (hub, user) in pairs {
        store.remove_all(hub, user).await.unwrap();
    }
}

async fn memberships_with_a_ttl_expire(store: &impl UserGroups) {
    store.add(HUB, USER, "brief", Some(SHORT)).await.unwrap();
    store.add(HUB, USER, "forever", None).await.unwrap();
    assert_eq!(sorted(store, HUB, USER).await, ["brief", "forever"]);
    until_gone(store, USER, "brief").await;
    assert_eq!(sorted(store, HUB, USER).await, ["forever"]);

    store.add(HUB, USER, "zero", Some(Duration::ZERO)).await.unwrap();
    until_gone(store, USER, "zero").await;
    store.remove_all(HUB, USER).await.unwrap();
}

async fn re_adding_replaces_the_expiry(store: &impl UserGroups) {
    store.add(HUB, USER, "kept", Some(SHORT)).await.unwrap();
    store.add(HUB, USER, "kept", None).await.unwrap();
    store.add(HUB, USER, "marker", Some(SHORT)).await.unwrap();
    until_gone(store, USER, "marker").await;
    assert_eq!(sorted(store, HUB, USER).await, ["kept"], "re-added without a TTL: permanent");

    store.add(HUB, USER, "kept", Some(SHORT)).await.unwrap();
    until_gone(store, USER, "kept").await;
    store.remove_all(HUB, USER).await.unwrap();
}

async fn a_user_has_at_most_the_limit(store: &impl UserGroups) {
    for i in 0..MAX_GROUPS_PER_USER - 1 {
        store.add(HUB, USER, &format!("g{i}"), None).await.unwrap();
    }
    store.add(HUB, USER, "brief", Some(SHORT)).await.unwrap();
    let full = store.add(HUB, USER, "one-more", None).await;
    assert_eq!(full, Err(UserGroupsError::TooManyGroups { user: USER.into(), limit: MAX_GROUPS_PER_USER }));
    store.add(HUB, USER, "g0", Some(Duration::from_secs(60))).await.unwrap();
    store.add(HUB, "bob", "one-more", None).await.unwrap();
    assert_eq!(store.groups_of(HUB, USER).await.unwrap().len(), MAX_GROUPS_PER_USER);

    until_gone(store, USER, "brief").await;
    store.add(HUB, USER, "one-more", None).await.unwrap();
    assert_eq!(store.groups_of(HUB, USER).await.unwrap().len(), MAX_GROUPS_PER_USER, "expired ones do not count");
    store.remove_all(HUB, USER).await.unwrap();
    store.remove_all(HUB, "bob").await.unwrap();
}

/// Every conformance case against stores `a` and `b` sharing one state.
async fn conformance(a: &impl UserGroups, b: &impl UserGroups) {
    answering(a).await;
    answering(b).await;
    adds_removes_and_lists(a, b).await;
    hubs_and_users_are_isolated(a).await;
    memberships_with_a_ttl_expire(b).await;
    re_adding_replaces_the_expiry(a).await;
    a_user_has_at_most_the_limit(b).await;
}

#[tokio::test]
async fn memory_user_groups_keep_every_guarantee() {
    let store = MemoryUserGroups::new();
    conformance(&store, &store.clone()).await;
    assert!(store.is_empty(), "nothing lingers");
}

fn redis_store(urls: Vec<String>, cluster: bool) -> RedisUserGroups {
    RedisUserGroups::connect(&config(urls, cluster), "test").unwrap()
}

#[tokio::test]
async fn redis_user_groups_keep_every_guarantee() {
    let redis = RedisServer::start().await;
    let (a, b) = (redis_store(vec![redis.url()], false), redis_store(vec![redis.url()], false));
    conformance(&a, &b).await;
    assert!(query(redis.port, &["DBSIZE"]).await.unwrap().starts_with(":0\r\n"), "nothing lingers");
}

#[tokio::test]
async fn an_operation_made_while_connecting_waits_for_the_connection() {
    let redis = RedisServer::start().await;
    // No wait between connecting and the first operations: a gateway answers REST calls as
    // soon as it is ready, which does not wait for this store's own client.
    let store = redis_store(vec![redis.url()], false);
    store.add("chat", "alice", "room", None).await.expect("the first call waits for the connection");
    assert_eq!(store.groups_of("chat", "alice").await.unwrap(), ["room"]);
}

#[tokio::test]
async fn redis_user_groups_keep_every_guarantee_on_a_redis_cluster() {
    let redis = common::RedisCluster::start().await;
    let (a, b) = (redis_store(redis.urls(), true), redis_store(redis.urls(), true));
    conformance(&a, &b).await;
}

/// The user's key's remaining lifetime in milliseconds (`-1`: none, `-2`: no key).
async fn key_ttl(redis: &RedisServer, user: &str) -> i64 {
    let reply = query(redis.port, &["PTTL", &UserGroupKeys::new("test").user(HUB, user)]).await.unwrap();
    reply.lines().next().unwrap().trim_start_matches(':').parse().unwrap()
}

#[tokio::test]
async fn the_redis_key_expires_with_its_last_membership_and_never_while_one_is_permanent() {
    let redis = RedisServer::start().await;
    let store = redis_store(vec![redis.url()], false);
    answering(&store).await;

    store.add(HUB, USER, "a", Some(Duration::from_secs(60))).await.unwrap();
    store.add(HUB, USER, "b", Some(Duration::from_secs(120))).await.unwrap();
    let ttl = key_ttl(&redis, USER).await;
    assert!((60_000..=120_000).contains(&ttl) && ttl > 100_000, "the latest expiry: {ttl}");

    store.add(HUB, USER, "c", None).await.unwrap();
    assert_eq!(key_ttl(&redis, USER).await, -1, "a permanent membership keeps the key");
    store.remove(HUB, USER, "c").await.unwrap();
    assert!(key_ttl(&redis, USER).await > 100_000, "expires again once the permanent one is gone");

    store.remove(HUB, USER, "b").await.unwrap();
    assert!(key_ttl(&redis, USER).await <= 60_000, "follows the latest remaining expiry");

    store.add(HUB, USER, "brief", Some(SHORT)).await.unwrap();
    store.remove(HUB, USER, "a").await.unwrap();
    wait_until("the abandoned key expires by itself", DEADLINE, || async { key_ttl(&redis, USER).await == -2 }).await;

    store.add(HUB, USER, "c", None).await.unwrap();
    store.remove_all(HUB, USER).await.unwrap();
    assert_eq!(key_ttl(&redis, USER).await, -2, "remove_all deletes the key");
}

async fn used_memory(redis: &RedisServer) -> i64 {
    let info = query(redis.port, &["INFO", "memory"]).await.unwrap();
    let line = info.lines().find_map(|line| line.strip_prefix("used_memory:")).unwrap();
    line.trim().parse().unwrap()
}

/// Bytes of Redis memory per membership, after `users` users got `groups` groups each.
async fn bytes_per_membership(users: usize, groups: usize) -> i64 {
    let redis = RedisServer::start().await;
    let store = redis_store(vec![redis.url()], false);
    answering(&store).await;
    let before = used_memory(&redis).await;
    for user in 0..users {
        for group in 0..groups {
            let (user, group) = (format!("user-{user}"), format!("group-{group}"));
            store.add(HUB, &user, &group, Some(Duration::from_secs(3600))).await.unwrap();
        }
    }
    (used_memory(&redis).await - before) / (users * groups) as i64
}

#[tokio::test]
async fn redis_memory_per_membership_is_small() {
    let spread = bytes_per_membership(5_000, 1).await;
    let packed = bytes_per_membership(5, 1_000).await;
    eprintln!("used_memory per membership: {spread} B (5 000 users × 1 group), {packed} B (5 users × 1 000 groups)");
    assert!(spread < 300, "{spread}");
    assert!(packed < 100, "{packed}");
}
