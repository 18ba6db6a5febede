//! Presence in Redis (standalone or Cluster), on its own `fred` client.
//!
//! # Key layout
//! `P` is the channel prefix, `H` is `{len}:{hub}` as in [`channels`](crate::channels), so no
//! user-chosen name can reach another kind's key or another hub's. Every command touches one
//! key, so Redis Cluster needs no hash tags and no key ever has to share a slot with another.
//!
//! | Key | Type | Content |
//! |---|---|---|
//! | `P:presence:lease:{node}#{generation}` | string, `PX` = [`NODE_TTL`] | the node is alive |
//! | `P:presence:hub:H:conn` | hash | connection id → lease |
//! | `P:presence:hub:H:user:{user}` | hash | connection id → lease |
//! | `P:presence:hub:H:group:{group}` | hash | connection id → lease |
//!
//! # Liveness
//! Every entry names the **lease** of the node that wrote it; a query counts an entry only when
//! its lease key exists. A node refreshes its lease key on each heartbeat
//! ([`HEARTBEAT_INTERVAL`](super::HEARTBEAT_INTERVAL)); a node that dies stops being counted
//! when the key expires: within [`NODE_TTL`] of its last heartbeat (≤ 15 s + 5 s by default).
//! Entries of dead leases stay in their hashes until the hub's names are reused by live
//! connections or removed by an operator (`DEL`); they are skipped by every query, but they do
//! count against the per-query read bound. Cleaning them up lazily is left to do.
//!
//! # Writes and repair
//! Reports never wait: they update this node's [`MemoryPresence`] mirror and go on a bounded
//! queue ([`QUEUE_CAPACITY`]) to one writer task, which sends everything queued as one pipeline
//! (one round trip) in report order. When a pipeline fails or the queue is full, the failure is
//! logged and counted and the node is marked for **repair**: at its next heartbeat it takes a
//! new lease generation, writes every live entry of its mirror under the new lease and deletes
//! the old lease key — entries it failed to remove die with the old lease. The same repair runs
//! when the heartbeat finds its lease key gone (Redis restarted or flushed, or the node was
//! partitioned for longer than the TTL). So after Redis comes back, a node is fully visible again
//! within one heartbeat interval.
//!
//! # Cost per connection
//! Measured with 5 000 connections, each with its own user: ≈ 330 bytes of Redis `used_memory`
//! (a field in the hub's connection hash, a user hash with one field) and ≈ 140 bytes per group
//! membership. In the gateway, the mirror entry ([`MemoryPresence`], ≈ 500 bytes + ≈ 400 per
//! group); no task and no timer per connection.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use fred::clients::Client;
use fred::error::Error as FredError;
use fred::interfaces::ClientLike;
use fred::types::config::Options;
use fred::types::{ClusterHash, CustomCommand, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::memory::MemoryPresence;
use super::writer::{Op, Writer};
use super::{Presence, PresenceError, MAX_GROUP_CONNECTIONS, NODE_TTL};
use crate::redis::RedisConfig;
use crate::BackplaneError;

/// Reports that may wait for the writer; beyond that they are dropped, counted and repaired.
pub const QUEUE_CAPACITY: usize = 65_536;
/// Entries asked for per HSCAN call.
const SCAN_COUNT: usize = 1_000;

/// Every presence key, in one place. See the [module docs](self) for the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceKeys {
    prefix: String,
}

impl PresenceKeys {
    /// Keys under `prefix` (the channel prefix).
    pub fn new(prefix: &str) -> Self {
        Self { prefix: format!("{prefix}:presence") }
    }

    /// The liveness key of a node's lease (`{node}#{generation}`).
    pub fn lease(&self, lease: &str) -> String {
        format!("{}:lease:{lease}", self.prefix)
    }

    fn hub(&self, hub: &str) -> String {
        crate::channels::hub_scope(&self.prefix, hub)
    }

    /// Connection id → lease, for every connection of `hub`.
    pub fn connections(&self, hub: &str) -> String {
        self.hub(hub) + ":conn"
    }

    /// Connection id → lease, for the connections of `user`.
    pub fn user(&self, hub: &str, user: &str) -> String {
        format!("{}:user:{user}", self.hub(hub))
    }

    /// Connection id → lease, for the members of `group`.
    pub fn group(&self, hub: &str, group: &str) -> String {
        format!("{}:group:{group}", self.hub(hub))
    }
}

pub(super) fn command(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

fn unavailable(error: FredError) -> BackplaneError {
    BackplaneError::Unavailable(error.to_string())
}

/// Presence in Redis. See the [module docs](self).
pub struct RedisPresence {
    client: Client,
    keys: PresenceKeys,
    local: MemoryPresence,
    queue: mpsc::Sender<Op>,
    /// Held while a report updates the mirror and is queued, so reports about one connection
    /// made concurrently (a remote group change racing a disconnect) are queued in the order
    /// they changed the mirror. Never held across an await.
    order: Mutex<()>,
    /// Nodes with a lost report, repaired at their next heartbeat (shared with the writer).
    damaged: Damaged,
    failures: Arc<AtomicU64>,
    options: Options,
    tasks: Vec<AbortHandle>,
}

impl RedisPresence {
    /// Validates `config`, starts connecting in the background (never waits for Redis) and
    /// starts the writer. Keys go under `prefix`; a node's lease lives for [`NODE_TTL`].
    pub fn connect(config: &RedisConfig, prefix: &str) -> Result<Self, BackplaneError> {
        Self::connect_with_ttl(config, prefix, NODE_TTL)
    }

    /// Like [`RedisPresence::connect`] with another lease lifetime (tests use a short one).
    pub fn connect_with_ttl(config: &RedisConfig, prefix: &str, ttl: Duration) -> Result<Self, BackplaneError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BackplaneError::Unavailable("Redis presence needs a Tokio runtime".to_owned()));
        }
        let builder = config.builder(32)?;
        let client = builder.build().map_err(|error| BackplaneError::InvalidConfig(error.to_string()))?;
        let connection = client.connect().abort_handle();
        let keys = PresenceKeys::new(prefix);
        let local = MemoryPresence::new();
        let failures = Arc::new(AtomicU64::new(0));
        let options = Options { timeout: Some(config.command_timeout), fail_fast: true, ..Options::default() };
        let (queue, ops) = mpsc::channel(QUEUE_CAPACITY);
        let damaged = Damaged::default();
        let shared = Shared { local: local.clone(), damaged: damaged.clone(), failures: failures.clone() };
        let writer = Writer::new(client.clone(), keys.clone(), shared, options.clone(), ttl);
        let writer = tokio::spawn(writer.run(ops)).abort_handle();
        let tasks = vec![connection, writer];
        Ok(Self { client, keys, local, queue, order: Mutex::new(()), damaged, failures, options, tasks })
    }

    fn ordered(&self) -> MutexGuard<'_, ()> {
        self.order.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a report whose change is already in the mirror. When the queue is full, the node
    /// is marked damaged: its next heartbeat re-registers it from the mirror, so nothing is lost
    /// for longer than one heartbeat interval.
    fn enqueue(&self, op: Op) {
        if let Err(error) = self.queue.try_send(op) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            let (mpsc::error::TrySendError::Full(op) | mpsc::error::TrySendError::Closed(op)) = &error;
            self.damaged.mark(op.node());
            tracing::warn!("redis presence: report queue full or closed; repaired at the next heartbeat");
        }
    }

    async fn call(&self, name: &'static str, args: Vec<String>) -> Result<Value, PresenceError> {
        self.client.with_options(&self.options).custom(command(name), args).await.map_err(unavailable)
    }

    /// Up to `limit` (connection id, lease) pairs of a hash, by HSCAN.
    async fn scan(&self, key: &str, limit: usize) -> Result<Vec<(String, String)>, PresenceError> {
        let mut pairs = Vec::new();
        let mut cursor = "0".to_owned();
        loop {
            let reply = self.call("HSCAN", vec![key.to_owned(), cursor, "COUNT".into(), SCAN_COUNT.to_string()]);
            let (next, page) = parse_scan(reply.await?)?;
            pairs.extend(page);
            if next == "0" || pairs.len() >= limit {
                pairs.truncate(limit);
                return Ok(pairs);
            }
            cursor = next;
        }
    }

    /// The leases among `leases` whose key exists: one pipelined EXISTS per distinct lease.
    async fn alive<'a>(&self, leases: impl IntoIterator<Item = &'a str>) -> Result<HashSet<String>, PresenceError> {
        let distinct: Vec<&str> = leases.into_iter().collect::<HashSet<_>>().into_iter().collect();
        if distinct.is_empty() {
            return Ok(HashSet::new());
        }
        let pipeline = self.client.with_options(&self.options).pipeline();
        for lease in &distinct {
            let _: () = pipeline.custom(command("EXISTS"), vec![self.keys.lease(lease)]).await.map_err(unavailable)?;
        }
        let replies: Vec<i64> = pipeline.all().await.map_err(unavailable)?;
        Ok(distinct.iter().zip(replies).filter(|(_, n)| *n > 0).map(|(lease, _)| (*lease).to_owned()).collect())
    }

    async fn any_alive(&self, key: &str) -> Result<bool, PresenceError> {
        let pairs = self.scan(key, MAX_GROUP_CONNECTIONS).await?;
        Ok(!self.alive(pairs.iter().map(|(_, lease)| lease.as_str())).await?.is_empty())
    }
}

/// An HSCAN reply: the next cursor and the page's (field, value) pairs.
fn parse_scan(reply: Value) -> Result<(String, Vec<(String, String)>), PresenceError> {
    let bad = || BackplaneError::Unavailable("unexpected HSCAN reply".to_owned());
    let Value::Array(mut parts) = reply else { return Err(bad()) };
    if parts.len() != 2 {
        return Err(bad());
    }
    let page = parts.pop().ok_or_else(bad)?;
    let cursor = parts.pop().and_then(|c| c.as_string()).ok_or_else(bad)?;
    let flat: Vec<String> = match page {
        Value::Array(items) => items.into_iter().filter_map(|v| v.as_string()).collect(),
        Value::Map(_) => page.into_array().into_iter().filter_map(|v| v.as_string()).collect(),
        Value::Null => Vec::new(),
        _ => return Err(bad()),
    };
    let pairs = flat.chunks_exact(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
    Ok((cursor, pairs))
}

impl Drop for RedisPresence {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[async_trait]
impl Presence for RedisPresence {
    fn connected(&self, hub: &str, connection: &str, user: Option<&str>, node: &str) {
        let _order = self.ordered();
        self.local.connected(hub, connection, user, node);
        let op = Op::Connected {
            hub: hub.into(),
            connection: connection.into(),
            user: user.map(Into::into),
            node: node.into(),
        };
        self.enqueue(op);
    }

    fn disconnected(&self, hub: &str, connection: &str) {
        let _order = self.ordered();
        let Some(entry) = self.local.entry(hub, connection) else { return };
        self.local.disconnected(hub, connection);
        self.enqueue(Op::Disconnected { hub: hub.into(), connection: connection.into(), entry });
    }

    fn joined(&self, hub: &str, group: &str, connection: &str) {
        let _order = self.ordered();
        let Some(entry) = self.local.entry(hub, connection) else { return };
        if entry.groups.contains(group) {
            return;
        }
        self.local.joined(hub, group, connection);
        let node = entry.node.to_string();
        self.enqueue(Op::Joined { hub: hub.into(), group: group.into(), connection: connection.into(), node });
    }

    fn left(&self, hub: &str, group: &str, connection: &str) {
        let _order = self.ordered();
        let Some(entry) = self.local.entry(hub, connection) else { return };
        if !entry.groups.contains(group) {
            return;
        }
        self.local.left(hub, group, connection);
        let node = entry.node.to_string();
        self.enqueue(Op::Left { hub: hub.into(), group: group.into(), connection: connection.into(), node });
    }

    async fn heartbeat(&self, node: &str) -> Result<(), PresenceError> {
        let (reply, replied) = oneshot::channel();
        self.queue
            .try_send(Op::Heartbeat { node: node.into(), reply })
            .map_err(|_| BackplaneError::Unavailable("presence writer is busy or stopped".to_owned()))?;
        replied.await.map_err(|_| BackplaneError::Closed)?
    }

    async fn node_stopped(&self, node: &str) -> Result<(), PresenceError> {
        let (reply, replied) = oneshot::channel();
        self.queue.send(Op::Stopped { node: node.into(), reply }).await.map_err(|_| BackplaneError::Closed)?;
        replied.await.map_err(|_| BackplaneError::Closed)?
    }

    async fn connection_exists(&self, hub: &str, connection: &str) -> Result<bool, PresenceError> {
        let lease = self.call("HGET", vec![self.keys.connections(hub), connection.to_owned()]).await?;
        let Some(lease) = lease.as_string() else { return Ok(false) };
        Ok(!self.alive([lease.as_str()]).await?.is_empty())
    }

    async fn user_exists(&self, hub: &str, user: &str) -> Result<bool, PresenceError> {
        self.any_alive(&self.keys.user(hub, user)).await
    }

    async fn group_exists(&self, hub: &str, group: &str) -> Result<bool, PresenceError> {
        self.any_alive(&self.keys.group(hub, group)).await
    }

    async fn user_in_group(&self, hub: &str, user: &str, group: &str) -> Result<bool, PresenceError> {
        let connections = self.scan(&self.keys.user(hub, user), MAX_GROUP_CONNECTIONS).await?;
        if connections.is_empty() {
            return Ok(false);
        }
        let mut args = vec![self.keys.group(hub, group)];
        args.extend(connections.into_iter().map(|(id, _)| id));
        let leases = self.call("HMGET", args).await?.into_array();
        let leases: Vec<String> = leases.into_iter().filter_map(|lease| lease.as_string()).collect();
        Ok(!self.alive(leases.iter().map(String::as_str)).await?.is_empty())
    }

    async fn group_connections(&self, hub: &str, group: &str) -> Result<Vec<String>, PresenceError> {
        let members = self.scan(&self.keys.group(hub, group), MAX_GROUP_CONNECTIONS).await?;
        let alive = self.alive(members.iter().map(|(_, lease)| lease.as_str())).await?;
        Ok(members.into_iter().filter(|(_, lease)| alive.contains(lease)).map(|(id, _)| id).collect())
    }

    fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// Lease generations per node, owned by the writer.
pub(super) type Leases = HashMap<String, u64>;

/// Nodes with a lost report, to repair at their next heartbeat.
#[derive(Clone, Default)]
pub(super) struct Damaged(Arc<Mutex<HashSet<String>>>);

impl Damaged {
    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn mark(&self, node: &str) {
        self.lock().insert(node.to_owned());
    }

    pub(super) fn contains(&self, node: &str) -> bool {
        self.lock().contains(node)
    }

    pub(super) fn clear(&self, node: &str) {
        self.lock().remove(node);
    }
}

/// What the writer shares with [`RedisPresence`].
pub(super) struct Shared {
    pub local: MemoryPresence,
    pub damaged: Damaged,
    pub failures: Arc<AtomicU64>,
}
