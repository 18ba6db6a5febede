//! The single writer of [`RedisPresence`](super::RedisPresence): reports arrive in order on one
//! bounded queue and leave as one pipeline per batch; heartbeats, repair and clean shutdown run
//! here too, so every write of a node keeps the order in which the node reported it.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::Options;
use fred::types::Value;
use tokio::sync::{mpsc, oneshot};

use super::memory::Entry;
use super::redis::{command, Leases, PresenceKeys, Shared};
use super::{Presence, PresenceError};
use crate::redis::unavailable;

/// Most operations taken from the queue into one pipeline.
const BATCH: usize = 1_024;
/// Entries re-registered per pipeline during a repair.
const REPAIR_CHUNK: usize = 1_000;

type Reply = oneshot::Sender<Result<(), PresenceError>>;

/// What the writer is asked to do.
pub(super) enum Op {
    Connected { hub: String, connection: String, user: Option<String>, node: String },
    Disconnected { hub: String, connection: String, entry: Entry },
    Joined { hub: String, group: String, connection: String, node: String },
    Left { hub: String, group: String, connection: String, node: String },
    Heartbeat { node: String, reply: Reply },
    Stopped { node: String, reply: Reply },
}

impl Op {
    pub(super) fn node(&self) -> &str {
        match self {
            Op::Connected { node, .. } | Op::Joined { node, .. } | Op::Left { node, .. } => node,
            Op::Disconnected { entry, .. } => &entry.node,
            Op::Heartbeat { node, .. } | Op::Stopped { node, .. } => node,
        }
    }
}

/// One Redis command: name and arguments.
type Command = (&'static str, Vec<String>);

pub(super) struct Writer {
    client: Client,
    keys: PresenceKeys,
    shared: Shared,
    options: Options,
    ttl: Duration,
    leases: Leases,
    /// Nodes whose lease key was written at least once.
    started: HashSet<String>,
    /// First generation of every lease: differs between runs, so a restarted node never
    /// revives its predecessor's entries.
    base: u64,
}

impl Writer {
    pub(super) fn new(client: Client, keys: PresenceKeys, shared: Shared, options: Options, ttl: Duration) -> Self {
        let base = SystemTime::now().duration_since(UNIX_EPOCH).map(|t| t.as_micros() as u64).unwrap_or(0);
        let (leases, started) = Default::default();
        Self { client, keys, shared, options, ttl, leases, started, base }
    }

    fn lease(&mut self, node: &str) -> String {
        let generation = *self.leases.entry(node.to_owned()).or_insert(self.base);
        format!("{node}#{generation}")
    }

    pub(super) async fn run(mut self, mut ops: mpsc::Receiver<Op>) {
        let mut batch = Vec::with_capacity(BATCH);
        while ops.recv_many(&mut batch, BATCH).await > 0 {
            let mut commands = Vec::new();
            let mut nodes = HashSet::new();
            for op in batch.drain(..) {
                match op {
                    Op::Heartbeat { node, reply } => {
                        self.flush(std::mem::take(&mut commands), std::mem::take(&mut nodes)).await;
                        let _ = reply.send(self.heartbeat(&node).await);
                    }
                    Op::Stopped { node, reply } => {
                        self.flush(std::mem::take(&mut commands), std::mem::take(&mut nodes)).await;
                        let _ = reply.send(self.stopped(&node).await);
                    }
                    report => {
                        nodes.insert(report.node().to_owned());
                        self.commands(report, &mut commands);
                    }
                }
            }
            self.flush(commands, nodes).await;
        }
    }

    /// The Redis commands of one report.
    fn commands(&mut self, op: Op, out: &mut Vec<Command>) {
        let keys = self.keys.clone();
        match op {
            Op::Connected { hub, connection, user, node } => {
                let entry = Entry { node: node.as_str().into(), user, groups: Default::default() };
                let lease = self.lease(&node);
                out.extend(entry_commands(&keys, &hub, &connection, &entry, &lease));
            }
            Op::Disconnected { hub, connection, entry } => {
                out.push(("HDEL", vec![keys.connections(&hub), connection.clone()]));
                if let Some(user) = &entry.user {
                    out.push(("HDEL", vec![keys.user(&hub, user), connection.clone()]));
                }
                for group in &entry.groups {
                    out.push(("HDEL", vec![keys.group(&hub, group), connection.clone()]));
                }
            }
            Op::Joined { hub, group, connection, node } => {
                out.push(("HSET", vec![keys.group(&hub, &group), connection, self.lease(&node)]));
            }
            Op::Left { hub, group, connection, .. } => out.push(("HDEL", vec![keys.group(&hub, &group), connection])),
            Op::Heartbeat { .. } | Op::Stopped { .. } => {}
        }
    }

    /// Sends `commands` as one pipeline; on failure the reporting nodes are marked for repair.
    /// A node that never heartbeated gets its lease key first: a query on another node deletes
    /// entries whose lease key is missing, as dead.
    async fn flush(&mut self, commands: Vec<Command>, nodes: HashSet<String>) {
        if commands.is_empty() {
            return;
        }
        let mut leases = Vec::new();
        for node in nodes.iter().filter(|node| !self.started.contains(*node)).cloned().collect::<Vec<_>>() {
            let lease = self.lease(&node);
            leases.push(self.set_lease(&lease));
            self.started.insert(node);
        }
        let commands = leases.into_iter().chain(commands).collect();
        if let Err(error) = self.pipeline(commands).await {
            self.shared.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, "redis presence: reports not stored; repaired at the next heartbeat");
            for node in nodes {
                self.shared.damaged.mark(&node);
            }
        }
    }

    async fn pipeline(&self, commands: Vec<Command>) -> Result<(), PresenceError> {
        let pipeline = self.client.with_options(&self.options).pipeline();
        for (name, args) in commands {
            let _: () = pipeline.custom(command(name), args).await.map_err(unavailable)?;
        }
        for result in pipeline.try_all::<Value>().await {
            result.map_err(unavailable)?;
        }
        Ok(())
    }

    /// Refreshes the node's lease; repairs when a report was lost or the lease key was gone.
    async fn heartbeat(&mut self, node: &str) -> Result<(), PresenceError> {
        if self.shared.damaged.contains(node) {
            return self.repair(node).await;
        }
        let lease = self.lease(node);
        let key = self.keys.lease(&lease);
        let ttl = self.ttl.as_millis().to_string();
        let args = vec![key, "1".to_owned(), "PX".to_owned(), ttl, "GET".to_owned()];
        let previous: Value =
            self.client.with_options(&self.options).custom(command("SET"), args).await.map_err(unavailable)?;
        let lost = previous.is_null() && !self.started.insert(node.to_owned());
        if lost {
            tracing::warn!(node, "redis presence: lease expired or lost; re-registering this node's entries");
            return self.repair(node).await;
        }
        Ok(())
    }

    /// Re-registers every entry of `node` under a new lease and retires the old lease, so entries
    /// the node failed to remove stop counting.
    async fn repair(&mut self, node: &str) -> Result<(), PresenceError> {
        let old = self.lease(node);
        let generation = self.leases.entry(node.to_owned()).or_insert(self.base);
        *generation += 1;
        let lease = self.lease(node);
        // Cleared before the snapshot: a report lost from now on marks the node again.
        self.shared.damaged.clear(node);
        let entries = self.shared.local.snapshot();
        let mine = entries.iter().filter(|(_, _, entry)| &*entry.node == node);
        let commands: Vec<Command> =
            mine.flat_map(|(hub, id, entry)| entry_commands(&self.keys, hub, id, entry, &lease)).collect();
        let result = self.write_repair(commands, &lease, &old).await;
        match &result {
            Ok(()) => {
                self.started.insert(node.to_owned());
                tracing::info!(node, lease, "redis presence: entries re-registered");
            }
            Err(_) => self.shared.damaged.mark(node),
        }
        result
    }

    /// The new lease key goes first, so no query takes the re-registered entries for dead ones.
    async fn write_repair(&self, commands: Vec<Command>, lease: &str, old: &str) -> Result<(), PresenceError> {
        self.pipeline(vec![self.set_lease(lease)]).await?;
        let mut commands = commands.into_iter().peekable();
        while commands.peek().is_some() {
            self.pipeline(commands.by_ref().take(REPAIR_CHUNK).collect()).await?;
        }
        self.pipeline(vec![("DEL", vec![self.keys.lease(old)])]).await
    }

    /// SET of a lease key for one node TTL.
    fn set_lease(&self, lease: &str) -> Command {
        let ttl = self.ttl.as_millis().to_string();
        ("SET", vec![self.keys.lease(lease), "1".to_owned(), "PX".to_owned(), ttl])
    }

    /// Clean shutdown: the lease key goes first (every entry stops counting at once), then the
    /// entries themselves.
    async fn stopped(&mut self, node: &str) -> Result<(), PresenceError> {
        let lease = self.lease(node);
        let mut commands = vec![("DEL", vec![self.keys.lease(&lease)])];
        for (hub, id, entry) in self.shared.local.snapshot().into_iter().filter(|(_, _, e)| &*e.node == node) {
            let disconnected = Op::Disconnected { hub, connection: id, entry };
            self.commands(disconnected, &mut commands);
        }
        self.shared.local.node_stopped(node).await?;
        self.leases.remove(node);
        self.started.remove(node);
        self.shared.damaged.clear(node);
        let mut commands = commands.into_iter().peekable();
        while commands.peek().is_some() {
            self.pipeline(commands.by_ref().take(REPAIR_CHUNK).collect()).await?;
        }
        Ok(())
    }
}

/// HSET of one connection in its hub's, its user's and its groups' hashes.
fn entry_commands(keys: &PresenceKeys, hub: &str, id: &str, entry: &Entry, lease: &str) -> Vec<Command> {
    let set = |key: String| ("HSET", vec![key, id.to_owned(), lease.to_owned()]);
    let mut commands = vec![set(keys.connections(hub))];
    commands.extend(entry.user.iter().map(|user| set(keys.user(hub, user))));
    commands.extend(entry.groups.iter().map(|group| set(keys.group(hub, group))));
    commands
}
