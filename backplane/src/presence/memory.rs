//! In-process presence: plain maps behind one mutex. The single-node default, and shared (it is
//! `Clone`) by several in-process nodes in tests, like [`MemoryBus`](crate::MemoryBus). Nodes in
//! one process live and die together, so heartbeats do nothing; [`Presence::node_stopped`]
//! removes a node's entries. [`RedisPresence`](super::RedisPresence) also keeps one, holding only
//! its own node's entries, to re-register them after Redis lost them.
//!
//! Cost per connection: one map entry with the connection id, its node (shared `Arc`), its
//! user and group names, plus one more copy of the id per user and group index it is in —
//! measured ≈ 500 bytes for a connection with its own user, ≈ 400 more per group membership
//! (100 000 connections, release build).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{Presence, PresenceError, MAX_GROUP_CONNECTIONS};

/// A connection as presence knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub node: Arc<str>,
    pub user: Option<String>,
    pub groups: BTreeSet<String>,
}

#[derive(Default)]
struct Hub {
    connections: HashMap<String, Entry>,
    users: HashMap<String, HashSet<String>>,
    groups: HashMap<String, HashSet<String>>,
}

#[derive(Default)]
struct State {
    hubs: HashMap<String, Hub>,
    /// Node ids, shared by their entries.
    nodes: HashSet<Arc<str>>,
}

/// Presence held in this process. See the [module docs](self).
#[derive(Clone, Default)]
pub struct MemoryPresence {
    state: Arc<Mutex<State>>,
}

/// Removes `id` from the index set under `name`, and the set once empty.
fn unindex(index: &mut HashMap<String, HashSet<String>>, name: &str, id: &str) {
    if let Some(ids) = index.get_mut(name) {
        ids.remove(id);
        if ids.is_empty() {
            index.remove(name);
        }
    }
}

impl MemoryPresence {
    /// Empty presence, for one node or for several sharing clones of it.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update of plain maps; still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What is known about one connection.
    pub(crate) fn entry(&self, hub: &str, connection: &str) -> Option<Entry> {
        self.lock().hubs.get(hub)?.connections.get(connection).cloned()
    }

    /// Every connection of every hub: `(hub, connection, entry)`.
    pub(crate) fn snapshot(&self) -> Vec<(String, String, Entry)> {
        let state = self.lock();
        let hubs = state.hubs.iter();
        hubs.flat_map(|(hub, h)| h.connections.iter().map(move |(id, e)| (hub.clone(), id.clone(), e.clone())))
            .collect()
    }

    /// Whether nothing at all is known (every connection gone).
    pub fn is_empty(&self) -> bool {
        self.lock().hubs.is_empty()
    }

    fn remove(state: &mut State, hub_name: &str, connection: &str) -> Option<Entry> {
        let hub = state.hubs.get_mut(hub_name)?;
        let entry = hub.connections.remove(connection)?;
        if let Some(user) = &entry.user {
            unindex(&mut hub.users, user, connection);
        }
        for group in &entry.groups {
            unindex(&mut hub.groups, group, connection);
        }
        if hub.connections.is_empty() {
            state.hubs.remove(hub_name);
        }
        Some(entry)
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    fn connected(&self, hub: &str, connection: &str, user: Option<&str>, node: &str) {
        let mut state = self.lock();
        Self::remove(&mut state, hub, connection);
        let node = match state.nodes.get(node) {
            Some(node) => node.clone(),
            None => {
                let node: Arc<str> = node.into();
                state.nodes.insert(node.clone());
                node
            }
        };
        let hub = state.hubs.entry(hub.to_owned()).or_default();
        if let Some(user) = user {
            hub.users.entry(user.to_owned()).or_default().insert(connection.to_owned());
        }
        let entry = Entry { node, user: user.map(str::to_owned), groups: BTreeSet::new() };
        hub.connections.insert(connection.to_owned(), entry);
    }

    fn disconnected(&self, hub: &str, connection: &str) {
        Self::remove(&mut self.lock(), hub, connection);
    }

    fn joined(&self, hub: &str, group: &str, connection: &str) {
        let mut state = self.lock();
        let Some(hub) = state.hubs.get_mut(hub) else { return };
        let Some(entry) = hub.connections.get_mut(connection) else { return };
        if entry.groups.insert(group.to_owned()) {
            hub.groups.entry(group.to_owned()).or_default().insert(connection.to_owned());
        }
    }

    fn left(&self, hub: &str, group: &str, connection: &str) {
        let mut state = self.lock();
        let Some(hub) = state.hubs.get_mut(hub) else { return };
        let Some(entry) = hub.connections.get_mut(connection) else { return };
        if entry.groups.remove(group) {
            unindex(&mut hub.groups, group, connection);
        }
    }

    async fn heartbeat(&self, _node: &str) -> Result<(), PresenceError> {
        Ok(())
    }

    async fn node_stopped(&self, node: &str) -> Result<(), PresenceError> {
        let mut state = self.lock();
        let mut gone = Vec::new();
        for (hub, h) in &state.hubs {
            let of_node = h.connections.iter().filter(|(_, e)| &*e.node == node);
            gone.extend(of_node.map(|(id, _)| (hub.clone(), id.clone())));
        }
        for (hub, id) in gone {
            Self::remove(&mut state, &hub, &id);
        }
        state.nodes.remove(node);
        Ok(())
    }

    async fn connection_exists(&self, hub: &str, connection: &str) -> Result<bool, PresenceError> {
        Ok(self.entry(hub, connection).is_some())
    }

    async fn user_exists(&self, hub: &str, user: &str) -> Result<bool, PresenceError> {
        Ok(self.lock().hubs.get(hub).is_some_and(|h| h.users.contains_key(user)))
    }

    async fn group_exists(&self, hub: &str, group: &str) -> Result<bool, PresenceError> {
        Ok(self.lock().hubs.get(hub).is_some_and(|h| h.groups.contains_key(group)))
    }

    async fn user_in_group(&self, hub: &str, user: &str, group: &str) -> Result<bool, PresenceError> {
        let state = self.lock();
        let Some(h) = state.hubs.get(hub) else { return Ok(false) };
        let (Some(ids), Some(members)) = (h.users.get(user), h.groups.get(group)) else { return Ok(false) };
        Ok(ids.iter().any(|id| members.contains(id)))
    }

    async fn group_connections(&self, hub: &str, group: &str) -> Result<Vec<String>, PresenceError> {
        let state = self.lock();
        let members = state.hubs.get(hub).and_then(|h| h.groups.get(group));
        Ok(members.map(|ids| ids.iter().take(MAX_GROUP_CONNECTIONS).cloned().collect()).unwrap_or_default())
    }

    fn failures(&self) -> u64 {
        0
    }
}
