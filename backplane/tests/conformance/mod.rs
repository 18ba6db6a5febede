//! The conformance suite: every guarantee written on `backplane::Backplane`, as one async
//! function each, generic over the implementation. `make` attaches a new, connected node to one
//! shared cluster (a memory bus, one Redis, one Redis Cluster).
//!
//! Absence is never waited for: it is proven by the receiver count `publish` reports (0 means
//! nobody got it), then confirmed by an empty queue.
//!
//! `conformance_tests!` makes one `#[tokio::test]` per guarantee; [`all`] runs them in sequence
//! on one cluster (for backends that are slow to set up).

#![allow(dead_code)] // each test binary uses its own part

use std::sync::Arc;
use std::time::Duration;

use backplane::{Backplane, BackplaneError, Delivery, Inbound};
use bytes::Bytes;
use tokio::task::JoinSet;

/// Makes one `#[tokio::test]` per guarantee: `conformance_tests!(env = setup; make)`, where
/// `setup` is evaluated per test and `make` (an async closure using `env`) returns a node.
#[allow(unused_macros)] // binaries that run `all` instead
macro_rules! conformance_tests {
    ($env:ident = $setup:expr; $make:expr) => {
        conformance_tests!(@each $env = $setup; $make;
            only_subscribed_nodes_receive,
            the_publisher_receives_its_own_messages,
            subscriptions_are_reference_counted,
            unsubscribing_without_a_subscription_is_harmless,
            a_subscription_is_in_effect_when_subscribe_returns,
            concurrent_subscribes_and_unsubscribes_keep_the_count,
            order_is_kept_per_publisher_and_channel,
            channel_names_are_literal,
            publish_reports_the_nodes_it_reached,
            payloads_arrive_byte_for_byte,
            the_inbound_queue_can_be_taken_once,
        );
    };
    (@each $env:ident = $setup:expr; $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let $env = $setup;
                conformance::$name($make).await;
            }
        )*
    };
}

/// Every guarantee in sequence, on nodes of one cluster.
pub async fn all<B: Backplane>(make: impl AsyncFn() -> B) {
    only_subscribed_nodes_receive(&make).await;
    the_publisher_receives_its_own_messages(&make).await;
    subscriptions_are_reference_counted(&make).await;
    unsubscribing_without_a_subscription_is_harmless(&make).await;
    a_subscription_is_in_effect_when_subscribe_returns(&make).await;
    concurrent_subscribes_and_unsubscribes_keep_the_count(&make).await;
    order_is_kept_per_publisher_and_channel(&make).await;
    channel_names_are_literal(&make).await;
    publish_reports_the_nodes_it_reached(&make).await;
    payloads_arrive_byte_for_byte(&make).await;
    the_inbound_queue_can_be_taken_once(&make).await;
}

const DEADLINE: Duration = Duration::from_secs(5);

/// The next delivery, within the deadline.
pub async fn next(inbound: &mut Inbound) -> Delivery {
    tokio::time::timeout(DEADLINE, inbound.recv())
        .await
        .expect("a delivery within the deadline")
        .expect("the inbound queue is open")
}

fn delivery(channel: &str, payload: &str) -> Delivery {
    Delivery { channel: channel.to_owned(), payload: Bytes::copy_from_slice(payload.as_bytes()) }
}

async fn publish(node: &impl Backplane, channel: &str, payload: &str) -> usize {
    node.publish(channel, Bytes::copy_from_slice(payload.as_bytes())).await.expect("publish")
}

async fn node_with_inbound<B: Backplane>(make: &impl AsyncFn() -> B) -> (B, Inbound) {
    let node = make().await;
    let inbound = node.take_inbound().expect("a fresh node's inbound queue");
    (node, inbound)
}

pub async fn only_subscribed_nodes_receive<B: Backplane>(make: impl AsyncFn() -> B) {
    let (a, mut in_a) = node_with_inbound(&make).await;
    let (b, mut in_b) = node_with_inbound(&make).await;
    let (c, mut in_c) = node_with_inbound(&make).await;
    a.subscribe("news").await.unwrap();
    b.subscribe("news").await.unwrap();
    c.subscribe("sports").await.unwrap();

    assert_eq!(publish(&c, "news", "hello").await, 2, "a and b, not c");
    assert_eq!(next(&mut in_a).await, delivery("news", "hello"));
    assert_eq!(next(&mut in_b).await, delivery("news", "hello"));
    assert!(in_c.try_recv().is_err());
}

pub async fn the_publisher_receives_its_own_messages<B: Backplane>(make: impl AsyncFn() -> B) {
    let (a, mut inbound) = node_with_inbound(&make).await;
    a.subscribe("echo").await.unwrap();
    assert_eq!(publish(&a, "echo", "mine").await, 1);
    assert_eq!(next(&mut inbound).await, delivery("echo", "mine"));
}

pub async fn subscriptions_are_reference_counted<B: Backplane>(make: impl AsyncFn() -> B) {
    let (a, mut inbound) = node_with_inbound(&make).await;
    let publisher = make().await;
    a.subscribe("counted").await.unwrap();
    a.subscribe("counted").await.unwrap();
    a.unsubscribe("counted").await.unwrap();

    assert_eq!(publish(&publisher, "counted", "still").await, 1, "one reference left");
    assert_eq!(next(&mut inbound).await, delivery("counted", "still"));

    a.unsubscribe("counted").await.unwrap();
    assert_eq!(publish(&publisher, "counted", "gone").await, 0, "the last reference is gone");
    a.unsubscribe("counted").await.unwrap(); // one too many: harmless
    assert_eq!(publish(&publisher, "counted", "gone").await, 0);
    assert!(inbound.try_recv().is_err());
}

pub async fn unsubscribing_without_a_subscription_is_harmless<B: Backplane>(make: impl AsyncFn() -> B) {
    let (a, mut inbound) = node_with_inbound(&make).await;
    a.unsubscribe("never").await.unwrap();
    a.subscribe("never").await.unwrap();
    assert_eq!(publish(&a, "never", "now").await, 1, "the count did not go below zero");
    assert_eq!(next(&mut inbound).await, delivery("never", "now"));
}

pub async fn a_subscription_is_in_effect_when_subscribe_returns<B: Backplane>(make: impl AsyncFn() -> B) {
    let (a, mut inbound) = node_with_inbound(&make).await;
    let publisher = make().await;
    for i in 0..50 {
        let channel = format!("fresh-{i}");
        a.subscribe(&channel).await.unwrap();
        assert_eq!(publish(&publisher, &channel, "in").await, 1, "{channel}: subscribed on return");
        assert_eq!(next(&mut inbound).await, delivery(&channel, "in"));
        a.unsubscribe(&channel).await.unwrap();
        assert_eq!(publish(&publisher, &channel, "out").await, 0, "{channel}: unsubscribed on return");
    }
    assert!(inbound.try_recv().is_err());
}

pub async fn concurrent_subscribes_and_unsubscribes_keep_the_count<B: Backplane>(make: impl AsyncFn() -> B) {
    let (a, mut inbound) = node_with_inbound(&make).await;
    let a = Arc::new(a);
    let publisher = make().await;

    // Many callers each take a reference and give it back at once: the count goes 0→1→0
    // over and over with Redis calls in flight, and must end at zero with Redis agreeing.
    let mut calls = JoinSet::new();
    for _ in 0..20 {
        let a = a.clone();
        calls.spawn(async move {
            a.subscribe("busy").await.unwrap();
            a.unsubscribe("busy").await.unwrap();
        });
    }
    calls.join_all().await;
    assert_eq!(publish(&publisher, "busy", "nobody").await, 0, "no subscription left behind");

    let mut calls = JoinSet::new();
    for _ in 0..20 {
        let a = a.clone();
        calls.spawn(async move { a.subscribe("busy").await.unwrap() });
    }
    calls.join_all().await;
    let mut calls = JoinSet::new();
    for _ in 0..19 {
        let a = a.clone();
        calls.spawn(async move { a.unsubscribe("busy").await.unwrap() });
    }
    calls.join_all().await;
    assert_eq!(publish(&publisher, "busy", "one left").await, 1, "20 references minus 19");
    assert_eq!(next(&mut inbound).await, delivery("busy", "one left"));
    a.unsubscribe("busy").await.unwrap();
    assert_eq!(publish(&publisher, "busy", "none left").await, 0);
}

pub async fn order_is_kept_per_publisher_and_channel<B: Backplane>(make: impl AsyncFn() -> B) {
    const COUNT: usize = 1000;
    let (receiver, mut inbound) = node_with_inbound(&make).await;
    let (p, q) = (make().await, make().await);
    receiver.subscribe("ordered").await.unwrap();

    let send = |node: B, name: &'static str| async move {
        for i in 0..COUNT {
            assert_eq!(publish(&node, "ordered", &format!("{name}:{i}")).await, 1);
        }
    };
    tokio::join!(send(p, "p"), send(q, "q"));

    let mut expected = [("p", 0), ("q", 0)];
    for _ in 0..2 * COUNT {
        let message = next(&mut inbound).await;
        let text = String::from_utf8(message.payload.to_vec()).unwrap();
        let (name, seq) = text.split_once(':').unwrap();
        let slot = expected.iter_mut().find(|(n, _)| *n == name).unwrap();
        assert_eq!(seq.parse::<usize>().unwrap(), slot.1, "publisher {name} out of order");
        slot.1 += 1;
    }
    assert_eq!(expected, [("p", COUNT), ("q", COUNT)]);
}

pub async fn channel_names_are_literal<B: Backplane>(make: impl AsyncFn() -> B) {
    const NAMES: [&str; 8] = ["*", "a:*", "a:b", "h?llo", "[ab]", "é🎉", "a channel with spaces", "{tag}x"];
    let (receiver, mut inbound) = node_with_inbound(&make).await;
    let publisher = make().await;
    for name in NAMES {
        receiver.subscribe(name).await.unwrap();
    }
    for name in NAMES {
        // A pattern subscription would make `*` (and `a:*`, `h?llo`, `[ab]`) match here too.
        assert_eq!(publish(&publisher, name, name).await, 1, "{name:?} reaches exactly one subscription");
    }
    for name in ["b", "a:c", "hello", "a"] {
        assert_eq!(publish(&publisher, name, name).await, 0, "{name:?} matches no pattern");
    }
    let mut received: Vec<Delivery> = Vec::new();
    for _ in NAMES {
        received.push(next(&mut inbound).await);
    }
    for message in &received {
        assert_eq!(message.payload, message.channel.as_bytes(), "no cross-talk between channels");
    }
    let mut channels: Vec<&str> = received.iter().map(|m| m.channel.as_str()).collect();
    channels.sort_unstable();
    let mut names = NAMES.to_vec();
    names.sort_unstable();
    assert_eq!(channels, names);
    assert!(inbound.try_recv().is_err());
}

pub async fn publish_reports_the_nodes_it_reached<B: Backplane>(make: impl AsyncFn() -> B) {
    let (a, b, c) = (make().await, make().await, make().await);
    assert_eq!(publish(&a, "counting", "x").await, 0);
    a.subscribe("counting").await.unwrap();
    assert_eq!(publish(&a, "counting", "x").await, 1);
    a.subscribe("counting").await.unwrap();
    assert_eq!(publish(&a, "counting", "x").await, 1, "a node counts once, however many references");
    b.subscribe("counting").await.unwrap();
    c.subscribe("counting").await.unwrap();
    assert_eq!(publish(&a, "counting", "x").await, 3);
    b.unsubscribe("counting").await.unwrap();
    assert_eq!(publish(&a, "counting", "x").await, 2);
}

pub async fn payloads_arrive_byte_for_byte<B: Backplane>(make: impl AsyncFn() -> B) {
    let (receiver, mut inbound) = node_with_inbound(&make).await;
    let publisher = make().await;
    receiver.subscribe("bytes").await.unwrap();
    let large: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let payloads = [
        Bytes::new(),
        Bytes::from_static(&[0, 255, 128, 13, 10, 0]),
        Bytes::from_static("unicode é🎉".as_bytes()),
        Bytes::from(large),
    ];
    for payload in &payloads {
        assert_eq!(publisher.publish("bytes", payload.clone()).await, Ok(1));
    }
    for payload in payloads {
        assert_eq!(next(&mut inbound).await, Delivery { channel: "bytes".into(), payload });
    }
}

pub async fn the_inbound_queue_can_be_taken_once<B: Backplane>(make: impl AsyncFn() -> B) {
    let node = make().await;
    assert!(node.take_inbound().is_ok());
    assert_eq!(node.take_inbound().unwrap_err(), BackplaneError::InboundTaken);
}
