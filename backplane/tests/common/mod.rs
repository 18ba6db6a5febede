//! Backplane test helpers on top of `testkit`'s real `redis-server` processes.

#![allow(dead_code, unused_imports)] // each test binary uses its own part

use backplane::{Backplane, Health, RedisBackplane, RedisConfig};
pub use testkit::{bulk_strings, free_port, query, wait_until, RedisCluster, RedisServer, DEADLINE};

/// Settings for these tests: the defaults, with `urls`.
pub fn config(urls: Vec<String>, cluster: bool) -> RedisConfig {
    RedisConfig { urls, cluster, ..RedisConfig::default() }
}

/// A node that is up.
pub async fn node(config: RedisConfig) -> RedisBackplane {
    let node = RedisBackplane::connect(config).expect("valid settings");
    wait_until("the node connects", DEADLINE, || async { node.health() == Health::Up }).await;
    node
}
