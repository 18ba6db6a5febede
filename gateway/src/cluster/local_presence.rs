//! Presence of a node that shares it with nobody: answered from the hubs' own registries.
//!
//! A single node already knows every connection, user and group in its registries, so keeping a
//! second copy for presence would only cost memory (about 0.4 KiB per connection). Reports are
//! ignored and queries read the registries. Nodes of a cluster use a shared presence instead
//! (`RedisPresence`), given to `Gateway::with_presence`.

use std::sync::Arc;

use async_trait::async_trait;
use backplane::presence::MAX_GROUP_CONNECTIONS;
use backplane::{Presence, PresenceError};

use super::registry::Registry;
use super::{HubLifetime, HubTable};

/// See the [module docs](self). It is the query side only: the node holding the registries
/// does not hold it (a node without shared presence reports to nobody), so no reference
/// cycle needs breaking.
pub(crate) struct RegistryPresence {
    hubs: Arc<HubTable>,
}

impl RegistryPresence {
    /// Answers from the registries of `hubs`.
    pub fn new(hubs: Arc<HubTable>) -> Self {
        Self { hubs }
    }

    /// The hub `name` on this node, if it has one.
    fn hub(&self, name: &str) -> Option<Arc<HubLifetime>> {
        self.hubs.get(name)
    }

    /// Whether `hub` exists here and `check` holds for its registry.
    fn check(&self, hub: &str, check: impl FnOnce(&Registry) -> bool) -> bool {
        self.hub(hub).is_some_and(|lifetime| check(lifetime.registry()))
    }
}

#[async_trait]
impl Presence for RegistryPresence {
    fn connected(&self, _hub: &str, _connection: &str, _user: Option<&str>, _node: &str) {}

    fn disconnected(&self, _hub: &str, _connection: &str) {}

    fn joined(&self, _hub: &str, _group: &str, _connection: &str) {}

    fn left(&self, _hub: &str, _group: &str, _connection: &str) {}

    async fn heartbeat(&self, _node: &str) -> Result<(), PresenceError> {
        Ok(())
    }

    async fn node_stopped(&self, _node: &str) -> Result<(), PresenceError> {
        Ok(())
    }

    async fn connection_exists(&self, hub: &str, connection: &str) -> Result<bool, PresenceError> {
        Ok(self.check(hub, |registry| registry.contains(connection)))
    }

    async fn user_exists(&self, hub: &str, user: &str) -> Result<bool, PresenceError> {
        Ok(self.check(hub, |registry| registry.has_user(user)))
    }

    async fn group_exists(&self, hub: &str, group: &str) -> Result<bool, PresenceError> {
        Ok(self.check(hub, |registry| registry.has_group(group)))
    }

    async fn user_in_group(&self, hub: &str, user: &str, group: &str) -> Result<bool, PresenceError> {
        Ok(self.check(hub, |registry| registry.user_in_group(user, group)))
    }

    async fn group_connections(&self, hub: &str, group: &str) -> Result<Vec<String>, PresenceError> {
        let members = self.hub(hub).map(|lifetime| lifetime.registry().group_members(group, MAX_GROUP_CONNECTIONS));
        Ok(members.unwrap_or_default())
    }

    fn failures(&self) -> u64 {
        0
    }
}
