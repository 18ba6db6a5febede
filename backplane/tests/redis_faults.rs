//! The Redis backplane when Redis is missing, goes away, or floods a slow node. Each test runs
//! its own `redis-server`; every wait has a deadline.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;
mod conformance;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backplane::{Backplane, BackplaneError, Health, RedisBackplane, RedisConfig};
use bytes::Bytes;
use common::{config, free_port, node, wait_until, RedisServer};
use conformance::next;
use tokio::time::Instant;

const BACK_WITHIN: Duration = Duration::from_secs(5);

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

#[tokio::test]
async fn a_node_started_without_redis_serves_at_once_and_joins_when_redis_appears() {
    let port = free_port();
    let a = RedisBackplane::connect(config(vec![url(port)], false)).expect("no Redis is not an error");
    let mut inbound = a.take_inbound().unwrap();
    assert_eq!(a.health(), Health::Down);

    // While down, subscribing only counts, and publishing fails at once.
    a.subscribe("early").await.unwrap();
    let started = Instant::now();
    let error = a.publish("early", bytes("lost")).await.unwrap_err();
    assert!(matches!(error, BackplaneError::Unavailable(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_millis(1500), "failed fast: {:?}", started.elapsed());

    let _redis = RedisServer::start_on(port).await;
    wait_until("health turns up", BACK_WITHIN, || async { a.health() == Health::Up }).await;
    assert_eq!(a.publish("early", bytes("made while down")).await, Ok(1));
    assert_eq!(next(&mut inbound).await.payload, "made while down");
}

#[tokio::test]
async fn a_restarted_redis_brings_back_every_subscription() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let receiver = node(config(vec![url(port)], false)).await;
    let publisher = Arc::new(node(config(vec![url(port)], false)).await);
    let mut inbound = receiver.take_inbound().unwrap();
    let channels: Vec<String> = (0..20).map(|i| format!("kept-{i}")).collect();
    for channel in &channels {
        receiver.subscribe(channel).await.unwrap();
    }

    // Traffic on every channel throughout, paced, bounded; failures while down are expected.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn({
        let (publisher, channels, stop) = (publisher.clone(), channels.clone(), stop.clone());
        async move {
            for round in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let _ = publisher.publish(&channels[round % channels.len()], bytes("traffic")).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });

    redis.kill().await;
    wait_until("both nodes report down", BACK_WITHIN, || async {
        receiver.health() == Health::Down && publisher.health() == Health::Down
    })
    .await;
    let _redis = RedisServer::start_on(port).await;
    let back = Instant::now();
    wait_until("both nodes report up", BACK_WITHIN, || async {
        receiver.health() == Health::Up && publisher.health() == Health::Up
    })
    .await;
    for channel in &channels {
        assert_eq!(publisher.publish(channel, bytes("after")).await, Ok(1), "{channel} is subscribed again");
        loop {
            let message = next(&mut inbound).await;
            if message.payload == "after" {
                assert_eq!(&message.channel, channel);
                break;
            }
        }
    }
    assert!(back.elapsed() < BACK_WITHIN, "every channel works {:?} after Redis returned", back.elapsed());
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
}

#[tokio::test]
async fn a_hung_redis_is_noticed_by_the_heartbeat_and_recovered_from() {
    let redis = RedisServer::start().await;
    let quick = RedisConfig {
        heartbeat_interval: Duration::from_millis(100),
        command_timeout: Duration::from_millis(300),
        ..config(vec![redis.url()], false)
    };
    let a = node(quick).await;
    let mut inbound = a.take_inbound().unwrap();
    a.subscribe("alive").await.unwrap();

    redis.pause().await; // connections stay open; only the heartbeat can tell
    wait_until("the heartbeat reports down", BACK_WITHIN, || async { a.health() == Health::Down }).await;
    redis.resume().await;
    wait_until("health turns up", BACK_WITHIN, || async { a.health() == Health::Up }).await;
    assert_eq!(a.publish("alive", bytes("again")).await, Ok(1));
    assert_eq!(next(&mut inbound).await.payload, "again");
}

#[tokio::test]
async fn a_flood_into_a_full_queue_is_dropped_and_counted_without_blocking_the_reader() {
    let redis = RedisServer::start().await;
    let slow = node(RedisConfig { inbound_capacity: 10, ..config(vec![redis.url()], false) }).await;
    let publisher = node(config(vec![redis.url()], false)).await;
    let mut inbound = slow.take_inbound().unwrap();
    slow.subscribe("flood").await.unwrap();

    for i in 0..1000 {
        assert_eq!(publisher.publish("flood", bytes(&i.to_string())).await, Ok(1));
    }
    wait_until("990 drops are counted", BACK_WITHIN, || async { slow.dropped() == 990 }).await;

    for i in 0..10 {
        assert_eq!(next(&mut inbound).await.payload, i.to_string(), "the first ten were kept, in order");
    }
    assert_eq!(publisher.publish("flood", bytes("after")).await, Ok(1));
    assert_eq!(next(&mut inbound).await.payload, "after", "the reader still delivers");
    assert_eq!(slow.dropped(), 990);
}
