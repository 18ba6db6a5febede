//! The Redis backplane on a 3-shard Redis Cluster (started by the test) passes the conformance
//! suite with sharded pub/sub, and its channels spread over the shards.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;
mod conformance;

use backplane::{Backplane, Health};
use bytes::Bytes;
use common::{bulk_strings, config, node, query, wait_until, RedisCluster};
use std::time::Duration;

/// One cluster for the whole suite: creating one takes seconds.
#[tokio::test]
async fn a_redis_cluster_passes_the_conformance_suite() {
    let cluster = RedisCluster::start().await;
    conformance::all(async || node(config(cluster.urls(), true)).await).await;
}

#[tokio::test]
async fn channels_live_on_the_shard_that_owns_them_and_spread_over_all_shards() {
    let cluster = RedisCluster::start().await;
    // One seed is enough: the other shards are discovered.
    let receiver = node(config(vec![cluster.urls()[0].clone()], true)).await;
    let mut inbound = receiver.take_inbound().unwrap();
    let publisher = node(config(cluster.urls(), true)).await;
    let channels: Vec<String> = (0..30).map(|i| format!("spread-{i}")).collect();
    for channel in &channels {
        receiver.subscribe(channel).await.unwrap();
    }

    let mut held = Vec::new();
    for shard in &cluster.nodes {
        let sharded = bulk_strings(&query(shard.port, &["PUBSUB", "SHARDCHANNELS"]).await.unwrap());
        let plain = bulk_strings(&query(shard.port, &["PUBSUB", "CHANNELS"]).await.unwrap());
        assert!(!sharded.is_empty(), "shard {} holds some of the channels", shard.port);
        assert!(plain.is_empty(), "no plain SUBSCRIBE on shard {}: {plain:?}", shard.port);
        held.extend(sharded);
    }
    held.sort();
    let mut expected = channels.clone();
    expected.sort();
    assert_eq!(held, expected, "each channel on exactly one shard");

    for channel in &channels {
        assert_eq!(publisher.publish(channel, Bytes::from(channel.clone())).await, Ok(1));
    }
    for _ in &channels {
        let message = conformance::next(&mut inbound).await;
        assert_eq!(message.payload, message.channel.as_bytes());
    }
}

#[tokio::test]
async fn a_restarted_shard_gets_its_subscriptions_back() {
    let mut cluster = RedisCluster::start().await;
    let receiver = node(config(cluster.urls(), true)).await;
    let mut inbound = receiver.take_inbound().unwrap();
    let publisher = node(config(cluster.urls(), true)).await;
    let channels: Vec<String> = (0..12).map(|i| format!("shard-{i}")).collect();
    for channel in &channels {
        receiver.subscribe(channel).await.unwrap();
    }

    cluster.kill(0).await;
    wait_until("the nodes report down", Duration::from_secs(5), || async {
        receiver.health() == Health::Down && publisher.health() == Health::Down
    })
    .await;
    cluster.revive(0).await;
    wait_until("the nodes report up", Duration::from_secs(5), || async {
        receiver.health() == Health::Up && publisher.health() == Health::Up
    })
    .await;
    for channel in &channels {
        assert_eq!(publisher.publish(channel, Bytes::from(channel.clone())).await, Ok(1), "{channel}");
        assert_eq!(conformance::next(&mut inbound).await.channel, *channel);
    }
}
