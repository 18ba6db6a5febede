//! The Redis backplane on a standalone `redis-server` (started by the test, one per test) passes
//! the conformance suite with plain PUBLISH / SUBSCRIBE, and refuses unusable settings.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;
#[macro_use]
mod conformance;

use std::time::Duration;

use backplane::{Backplane, BackplaneError, Health, RedisBackplane, RedisConfig};
use bytes::Bytes;
use common::{bulk_strings, config, node, query, RedisServer};

conformance_tests!(redis = RedisServer::start().await; async || node(config(vec![redis.url()], false)).await);

#[tokio::test]
async fn subscriptions_are_plain_literal_channels_on_a_standalone_server() {
    let redis = RedisServer::start().await;
    let a = node(config(vec![redis.url()], false)).await;
    a.subscribe("room:*").await.unwrap();

    let channels = bulk_strings(&query(redis.port, &["PUBSUB", "CHANNELS"]).await.unwrap());
    assert_eq!(channels, ["room:*"]);
    let patterns = query(redis.port, &["PUBSUB", "NUMPAT"]).await.unwrap();
    assert!(patterns.starts_with(":0\r\n"), "no pattern subscriptions: {patterns:?}");
}

#[tokio::test]
async fn a_subscription_change_abandoned_by_its_caller_still_completes() {
    let redis = RedisServer::start().await;
    let a = node(config(vec![redis.url()], false)).await;
    let publisher = node(config(vec![redis.url()], false)).await;
    // The caller gives up right after the change started (e.g. its connection task ended): the
    // call is polled once, then dropped.
    let abandoned = tokio::select! {
        biased;
        _ = a.subscribe("abandoned") => false,
        () = std::future::ready(()) => true,
    };
    assert!(abandoned, "the caller stopped waiting before Redis answered");
    a.subscribe("abandoned").await.unwrap();
    assert_eq!(publisher.publish("abandoned", Bytes::new()).await, Ok(1), "two references, one subscription");
    a.unsubscribe("abandoned").await.unwrap();
    assert_eq!(publisher.publish("abandoned", Bytes::new()).await, Ok(1), "one reference left");
}

#[tokio::test]
async fn unusable_settings_are_refused_at_connect() {
    for urls in [vec![], vec!["http://127.0.0.1:6379".to_owned()], vec!["redis://".to_owned()]] {
        let error = RedisBackplane::connect(config(urls.clone(), false)).err();
        assert!(matches!(error, Some(BackplaneError::InvalidConfig(_))), "{urls:?}: {error:?}");
    }
    let zero = RedisConfig { inbound_capacity: 0, ..RedisConfig::default() };
    assert!(matches!(RedisBackplane::connect(zero), Err(BackplaneError::InvalidConfig(_))));
}

#[tokio::test]
async fn a_closed_backplane_is_down_and_refuses_everything() {
    let redis = RedisServer::start().await;
    let a = node(config(vec![redis.url()], false)).await;
    a.close(Duration::from_secs(1)).await;
    assert_eq!(a.health(), Health::Down);
    assert_eq!(a.publish("x", Bytes::new()).await, Err(BackplaneError::Closed));
    assert_eq!(a.subscribe("x").await, Err(BackplaneError::Closed));
    assert_eq!(a.unsubscribe("x").await, Err(BackplaneError::Closed));
}

#[tokio::test]
async fn credentials_in_the_url_authenticate_a_user_and_the_default_user() {
    let acl_user: Vec<String> = ["--user", "hubgate", "on", ">s3cret", "~*", "&*", "+@all"].map(String::from).into();
    let redis = RedisServer::start_with_password("defaultpw", &acl_user).await;
    for url in [
        format!("redis://hubgate:s3cret@127.0.0.1:{}", redis.port),
        format!("redis://:defaultpw@127.0.0.1:{}", redis.port),
    ] {
        let publisher = node(config(vec![url.clone()], false)).await;
        let subscriber = node(config(vec![url.clone()], false)).await;
        let mut inbound = subscriber.take_inbound().unwrap();
        subscriber.subscribe("auth").await.unwrap();
        assert_eq!(publisher.publish("auth", Bytes::from_static(b"ok")).await.unwrap(), 1, "{url}");
        let delivery = tokio::time::timeout(Duration::from_secs(5), inbound.recv()).await.unwrap().unwrap();
        assert_eq!(delivery.payload, "ok");
    }
}

#[tokio::test]
async fn rediss_urls_speak_tls_and_trust_the_configured_authority() {
    let redis = testkit::TlsRedisServer::start().await;
    let tls = |ca: Option<std::path::PathBuf>| RedisConfig { tls_ca_file: ca, ..config(vec![redis.url()], false) };
    let publisher = node(tls(Some(redis.ca_file.clone()))).await;
    let subscriber = node(tls(Some(redis.ca_file.clone()))).await;
    let mut inbound = subscriber.take_inbound().unwrap();
    subscriber.subscribe("secure").await.unwrap();
    assert_eq!(publisher.publish("secure", Bytes::from_static(b"sealed")).await.unwrap(), 1);
    let delivery = tokio::time::timeout(Duration::from_secs(5), inbound.recv()).await.unwrap().unwrap();
    assert_eq!(delivery.payload, "sealed");
    // A CA file only makes sense with TLS, and must hold a certificate.
    let plain =
        RedisConfig { tls_ca_file: Some(redis.ca_file.clone()), ..config(vec!["redis://127.0.0.1:1".into()], false) };
    assert!(matches!(RedisBackplane::connect(plain), Err(BackplaneError::InvalidConfig(_))));
    let empty = RedisConfig { tls_ca_file: Some("/dev/null".into()), ..config(vec![redis.url()], false) };
    assert!(matches!(RedisBackplane::connect(empty), Err(BackplaneError::InvalidConfig(_))));
}
