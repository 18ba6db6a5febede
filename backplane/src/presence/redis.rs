//! Presence in Redis (standalone or Cluster), on its own `fred` client.
//!
//! # Key layout
//! `P` is the channel prefix, `H` is `{len}:{hub}` as in [`channels`](crate::channels), so no
//! user-chosen name can reach another kind's key or another hub's. Every command touches one
//! key, so Redis Cluster needs no hash tags and no key ever has to share a slot with another.
//!
//! | Key | Type | Content |
//! |---|---|---|
//! | `P:presence:lease:{node}#{generation}` | string, `PX` = node TTL | the node is alive |
//! | `P:presence:hub:H:conn` | hash | connection id → lease |
//! | `P:presence:hub:H:user:{user}` | hash | connection id → lease |
//! | `P:presence:hub:H:group:{group}` | hash | connection id → lease |
//!
//! # Liveness
//! Every entry names the **lease** of the node that wrote it; a query counts an entry only when
//! its lease key exists. A node refreshes its lease key on each heartbeat (every
//! [`PresenceTiming::heartbeat_interval`]); a node that dies stops being counted when the key
//! expires: within [`PresenceTiming::node_ttl`] of its last heartbeat (≤ 15 s + 5 s by default).
//!
//! A lease key is written **before** any entry that names it (the writer sets it ahead of a
//! node's first reports, and a repair sets the new lease before re-registering), and a lease
//! that expired or was retired is never written again (a repair takes a new generation). So an
//! entry whose lease key is missing is dead for good.
//!
//! # Cleaning up dead entries
//! Queries clean up lazily: when one meets entries whose lease is dead (in the hash it scanned,
//! or the single entry `connection_exists` read), it deletes them from that hash and from the
//! hub's connection hash — with a small Lua script ([`FORGET_SCRIPT`]) that deletes a field only
//! if it still holds the dead lease, so an entry re-registered meanwhile under a live lease
//! stays. A query deletes at most what it read (≤ [`MAX_GROUP_CONNECTIONS`] entries), in chunks
//! of [`FORGET_CHUNK`]; so dead entries stop crowding out live ones from the read bound after
//! the first queries that meet them. A failed cleanup is logged and does not fail the query.
//! What no query ever meets stays: the connection-hash entry of a dead connection that had no
//! user and no group that anyone asked about (until its id is asked for, or an operator `DEL`s).
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
use fred::interfaces::ClientLike;
use fred::types::config::Options;
use fred::types::{ClusterHash, CustomCommand, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::memory::MemoryPresence;
use super::writer::{Op, Writer};
use super::{Presence, PresenceError, PresenceTiming, MAX_GROUP_CONNECTIONS};
use crate::redis::{eval, unavailable, RedisConfig};
use crate::BackplaneError;

/// Reports that may wait for the writer; beyond that they are dropped, counted and repaired.
pub const QUEUE_CAPACITY: usize = 65_536;
/// Entries asked for per HSCAN call.
const SCAN_COUNT: usize = 1_000;
/// Dead entries deleted per [`FORGET_SCRIPT`] call.
pub const FORGET_CHUNK: usize = 500;

/// Deletes fields of one hash only while they still hold the given (dead) lease.
/// `KEYS[1]`: the hash; `ARGV`: field, lease, field, lease, … Replies the number deleted.
pub const FORGET_SCRIPT: &str = r#"
local deleted = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    deleted = deleted + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return deleted
"#;

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
    /// starts the writer. Keys go under `prefix`; the timing is [`PresenceTiming::default`].
    pub fn connect(config: &RedisConfig, prefix: &str) -> Result<Self, BackplaneError> {
        Self::connect_with_timing(config, prefix, PresenceTiming::default())
    }

    /// Like [`RedisPresence::connect`] with a lease lifetime of `ttl`, for nodes that heartbeat
    /// at least every third of it (tests use a short one).
    pub fn connect_with_ttl(config: &RedisConfig, prefix: &str, ttl: Duration) -> Result<Self, BackplaneError> {
        Self::connect_with_timing(config, prefix, PresenceTiming { heartbeat_interval: ttl / 3, node_ttl: ttl })
    }

    /// Like [`RedisPresence::connect`] with `timing`: a node's lease lives for its `node_ttl`,
    /// and the caller heartbeats every `heartbeat_interval`. Fails with
    /// [`BackplaneError::InvalidConfig`] when the timing is invalid ([`PresenceTiming::validate`]).
    pub fn connect_with_timing(
        config: &RedisConfig,
        prefix: &str,
        timing: PresenceTiming,
    ) -> Result<Self, BackplaneError> {
        timing.validate()?;
        let ttl = timing.node_ttl;
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
        crate::redis::custom(&self.client, &self.options, command(name), args).await
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

    /// The pairs of `key` (a hash of `hub`) whose lease is alive; the others are forgotten.
    async fn live(
        &self,
        hub: &str,
        key: &str,
        pairs: Vec<(String, String)>,
    ) -> Result<Vec<(String, String)>, PresenceError> {
        let alive = self.alive(pairs.iter().map(|(_, lease)| lease.as_str())).await?;
        let (live, dead): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(_, lease)| alive.contains(lease));
        self.forget(hub, key, &dead).await;
        Ok(live)
    }

    /// Deletes the `dead` (connection id, lease) entries from `key` and from the hub's
    /// connection hash, each only while it still holds that lease. Best effort: a failure is
    /// logged, the next query that meets them tries again.
    async fn forget(&self, hub: &str, key: &str, dead: &[(String, String)]) {
        if dead.is_empty() {
            return;
        }
        let connections = self.keys.connections(hub);
        let keys = if key == connections { vec![connections] } else { vec![key.to_owned(), connections] };
        let pipeline = self.client.with_options(&self.options).pipeline();
        for key in &keys {
            for chunk in dead.chunks(FORGET_CHUNK) {
                let mut args = vec![FORGET_SCRIPT.to_owned(), "1".to_owned(), key.clone()];
                args.extend(chunk.iter().flat_map(|(id, lease)| [id.clone(), lease.clone()]));
                let queued: Result<(), _> = pipeline.custom(eval(), args).await;
                if let Err(error) = queued {
                    tracing::debug!(%error, "redis presence: dead entries not queued for removal");
                    return;
                }
            }
        }
        match pipeline.all::<Vec<i64>>().await {
            Ok(deleted) => {
                tracing::debug!(deleted = deleted.iter().sum::<i64>(), "redis presence: dead entries removed")
            }
            Err(error) => tracing::warn!(%error, "redis presence: dead entries not removed; retried by a later query"),
        }
    }

    async fn any_alive(&self, hub: &str, key: &str) -> Result<bool, PresenceError> {
        let pairs = self.scan(key, MAX_GROUP_CONNECTIONS).await?;
        Ok(!self.live(hub, key, pairs).await?.is_empty())
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
        let key = self.keys.connections(hub);
        let lease = self.call("HGET", vec![key.clone(), connection.to_owned()]).await?;
        let Some(lease) = lease.as_string() else { return Ok(false) };
        Ok(!self.live(hub, &key, vec![(connection.to_owned(), lease)]).await?.is_empty())
    }

    async fn user_exists(&self, hub: &str, user: &str) -> Result<bool, PresenceError> {
        self.any_alive(hub, &self.keys.user(hub, user)).await
    }

    async fn group_exists(&self, hub: &str, group: &str) -> Result<bool, PresenceError> {
        self.any_alive(hub, &self.keys.group(hub, group)).await
    }

    async fn user_in_group(&self, hub: &str, user: &str, group: &str) -> Result<bool, PresenceError> {
        let user_key = self.keys.user(hub, user);
        let connections = self.scan(&user_key, MAX_GROUP_CONNECTIONS).await?;
        let connections = self.live(hub, &user_key, connections).await?;
        if connections.is_empty() {
            return Ok(false);
        }
        let group_key = self.keys.group(hub, group);
        let ids: Vec<String> = connections.into_iter().map(|(id, _)| id).collect();
        let mut args = vec![group_key.clone()];
        args.extend(ids.iter().cloned());
        let leases = self.call("HMGET", args).await?.into_array();
        let members = ids.into_iter().zip(leases).filter_map(|(id, lease)| Some((id, lease.as_string()?)));
        Ok(!self.live(hub, &group_key, members.collect()).await?.is_empty())
    }

    async fn group_connections(&self, hub: &str, group: &str) -> Result<Vec<String>, PresenceError> {
        let key = self.keys.group(hub, group);
        let members = self.scan(&key, MAX_GROUP_CONNECTIONS).await?;
        Ok(self.live(hub, &key, members).await?.into_iter().map(|(id, _)| id).collect())
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
