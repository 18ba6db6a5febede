//! Connection-directory conformance: one suite, run against [`MemoryDirectory`] and
//! [`RedisDirectory`] (two clients — two nodes — on a real `redis-server` the test starts, and
//! on a 3-shard Redis Cluster).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use backplane::{Directory, MemoryDirectory, RedisDirectory};
use common::{config, wait_until, RedisServer, DEADLINE};

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(300);

/// What one node claims, every node reads; a second claim, from anywhere, loses.
async fn a_claim_is_won_once_and_read_everywhere(a: &impl Directory, b: &impl Directory) {
    assert_eq!(b.holder_of("n1.x").await.unwrap(), None);
    assert!(a.claim("n1.x", "node-a http://a", LONG).await.unwrap());
    assert!(!b.claim("n1.x", "node-b http://b", LONG).await.unwrap(), "the second node loses");
    assert!(!a.claim("n1.x", "node-a http://a", LONG).await.unwrap(), "a repeated claim loses too");
    assert_eq!(b.holder_of("n1.x").await.unwrap().as_deref(), Some("node-a http://a"));
    assert_eq!(a.holder_of("n1.y").await.unwrap(), None, "ids are literal");
}

/// Of many simultaneous claims of one id, exactly one wins.
async fn concurrent_claims_have_one_winner<D: Directory + Clone>(a: &D, b: &D) {
    let mut claims = tokio::task::JoinSet::new();
    for i in 0..16 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        claims.spawn(async move { store.claim("n1.race", &format!("node-{i}"), LONG).await.unwrap() });
    }
    let mut won = 0;
    while let Some(claim) = claims.join_next().await {
        won += usize::from(claim.unwrap());
    }
    assert_eq!(won, 1);
}

/// A record lives for its TTL; renewing extends only records that exist.
async fn records_expire_unless_renewed(a: &impl Directory, b: &impl Directory) {
    assert!(a.claim("n1.kept", "node-a", SHORT).await.unwrap());
    assert!(a.claim("n1.dropped", "node-a", SHORT).await.unwrap());
    a.renew(&["n1.kept".to_owned(), "n1.never".to_owned()], LONG).await.unwrap();
    wait_until("the unrenewed record expires", DEADLINE, || async {
        b.holder_of("n1.dropped").await.unwrap().is_none()
    })
    .await;
    assert_eq!(b.holder_of("n1.kept").await.unwrap().as_deref(), Some("node-a"), "renewed");
    assert_eq!(b.holder_of("n1.never").await.unwrap(), None, "renewing creates nothing");
    assert!(b.claim("n1.dropped", "node-b", LONG).await.unwrap(), "an expired record can be claimed again");
}

async fn conformance<D: Directory + Clone>(a: &D, b: &D) {
    a_claim_is_won_once_and_read_everywhere(a, b).await;
    concurrent_claims_have_one_winner(a, b).await;
    records_expire_unless_renewed(a, b).await;
}

#[tokio::test]
async fn memory_directory_keeps_every_guarantee() {
    let store = MemoryDirectory::new();
    conformance(&store, &store.clone()).await;
}

/// Two Redis directories behind `Arc`s, so the suite can clone them into tasks.
#[derive(Clone)]
struct Shared(std::sync::Arc<RedisDirectory>);

#[async_trait::async_trait]
impl Directory for Shared {
    async fn claim(&self, connection: &str, holder: &str, ttl: Duration) -> Result<bool, backplane::BackplaneError> {
        self.0.claim(connection, holder, ttl).await
    }
    async fn holder_of(&self, connection: &str) -> Result<Option<String>, backplane::BackplaneError> {
        self.0.holder_of(connection).await
    }
    async fn renew(&self, connections: &[String], ttl: Duration) -> Result<(), backplane::BackplaneError> {
        self.0.renew(connections, ttl).await
    }
}

fn redis_store(urls: Vec<String>, cluster: bool) -> Shared {
    Shared(std::sync::Arc::new(RedisDirectory::connect(&config(urls, cluster), "test").unwrap()))
}

#[tokio::test]
async fn redis_directory_keeps_every_guarantee() {
    let redis = RedisServer::start().await;
    let (a, b) = (redis_store(vec![redis.url()], false), redis_store(vec![redis.url()], false));
    conformance(&a, &b).await;
}

#[tokio::test]
async fn redis_directory_keeps_every_guarantee_on_a_redis_cluster() {
    let redis = common::RedisCluster::start().await;
    let (a, b) = (redis_store(redis.urls(), true), redis_store(redis.urls(), true));
    conformance(&a, &b).await;
}
