//! The hubs this node serves, by (lower-case) name, bounded by `--max-hubs`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{HubLifetime, Node};

/// Hub lifetimes by (lower-case) name.
pub(crate) struct HubTable {
    node: Arc<Node>,
    hubs: RwLock<HashMap<String, Arc<HubLifetime>>>,
    limit: usize,
}

impl HubTable {
    pub fn new(node: Arc<Node>, limit: usize) -> Self {
        Self { node, hubs: RwLock::new(HashMap::new()), limit }
    }

    pub fn get(&self, name: &str) -> Option<Arc<HubLifetime>> {
        self.hubs.read().unwrap_or_else(|p| p.into_inner()).get(&name.to_lowercase()).cloned()
    }

    /// The lifetime of `name` if this node has one, else a detached lifetime that is not
    /// registered (so it counts against no limit): enough to publish to the cluster and to
    /// reach remote connections, e.g. for the server REST API.
    pub fn get_or_detached(&self, name: &str) -> Arc<HubLifetime> {
        self.get(name).unwrap_or_else(|| Arc::new(HubLifetime::new(name.to_lowercase(), self.node.clone())))
    }

    /// The lifetime of `name`, created if new; `None` when the hub limit is reached.
    pub fn get_or_insert(&self, name: &str) -> Option<Arc<HubLifetime>> {
        let name = name.to_lowercase();
        if let Some(existing) = self.get(&name) {
            return Some(existing);
        }
        let mut hubs = self.hubs.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = hubs.get(&name) {
            return Some(existing.clone());
        }
        if hubs.len() >= self.limit {
            return None;
        }
        let lifetime = Arc::new(HubLifetime::new(name.clone(), self.node.clone()));
        hubs.insert(name, lifetime.clone());
        Some(lifetime)
    }
}
