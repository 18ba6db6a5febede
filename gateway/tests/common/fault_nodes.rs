//! Gateway nodes on Redis as the fault tests (`faults.rs`) run them, with short presence
//! timers and an access key, and the REST calls they query presence and aim requests with.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::common::rest::RestClient;
use crate::probe::Node;

/// The access key of every node, for the REST API.
pub const KEY: &str = "faults-access-key";

/// Short presence timers, so the documented liveness bound (heartbeat + TTL) is 2.5 s here.
pub const PRESENCE: [&str; 4] = ["--presence-heartbeat-interval", "500ms", "--presence-node-ttl", "2s"];

/// The flags of a node on the Redis at `redis_url`.
pub fn redis_node_args(redis_url: &str, node_id: &str) -> Vec<String> {
    let mut args: Vec<String> =
        ["--backplane", "redis", "--redis-url", redis_url, "--node-id", node_id, "--access-key", KEY]
            .iter()
            .map(|a| a.to_string())
            .collect();
    args.extend(PRESENCE.iter().map(|a| a.to_string()));
    args
}

/// A node on the Redis at `redis_url` with `extra` flags, ready.
pub async fn redis_node(redis_url: &str, node_id: &str, extra: &[&str]) -> Node {
    let mut args = redis_node_args(redis_url, node_id);
    args.extend(extra.iter().map(|a| a.to_string()));
    let node = Node::start(&args).await;
    node.wait_ready(200).await;
    node
}

/// The ids the REST API of `node` lists for `group` of the chat hub.
pub async fn group_members(node: &Node, group: &str) -> Option<BTreeSet<String>> {
    let (status, body) = RestClient::new(node.addr, KEY)
        .call(Method::GET, &format!("/api/hubs/chat/groups/{group}/connections"), None)
        .await;
    if status != 200 {
        return None;
    }
    let body: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(body["value"].as_array()?.iter().filter_map(|m| Some(m["connectionId"].as_str()?.to_owned())).collect())
}

/// A group change (`PUT`) and a client-result call (`:invoke`) for connection `id`, through the
/// REST API: each one's status and how long it took.
pub async fn requests_to(rest: &RestClient, id: &str) -> ((u16, Duration), (u16, Duration)) {
    let started = Instant::now();
    let (status, _) = rest.call(Method::PUT, &format!("/api/hubs/chat/groups/team/connections/{id}"), None).await;
    let group_change = (status.as_u16(), started.elapsed());
    let started = Instant::now();
    let payload = r#"{"target":"ask","arguments":[]}"#.to_owned();
    let (status, _) = rest.call(Method::POST, &format!("/api/hubs/chat/connections/{id}/:invoke"), Some(payload)).await;
    (group_change, (status.as_u16(), started.elapsed()))
}
