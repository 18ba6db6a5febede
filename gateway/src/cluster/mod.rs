//! Delivery across the cluster: who receives a message, locally and on other nodes.
//!
//! Each hub has a [`HubLifetime`]: its local registry of connections, groups and users, plus the
//! node's backplane. A send is encoded once, queued directly for local recipients, then published
//! once as an [`envelope::Envelope`] on the audience's channel. Other nodes subscribed to that
//! channel deliver it to their local recipients; a node ignores envelopes it published itself, so
//! local recipients get each message exactly once and local delivery never waits for the
//! backplane.
//!
//! ```text
//! send ─► encode once ─► registry.deliver (local outbound queues, try-push)
//!                    └─► backplane.publish(channel, envelope) ─► other nodes ─► their registries
//! ```

mod envelope;
mod lifetime;
mod registry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use backplane::{Backplane, BackplaneError, Inbound};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub use lifetime::HubLifetime;
pub(crate) use registry::Member;

use crate::hub::Hub;

/// Who a message is for. Exclusions travel beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Audience {
    /// Every connection of the hub.
    All,
    /// The members of a group.
    Group(String),
    /// The connections of a user.
    User(String),
    /// One connection, by public id.
    Connection(String),
}

/// Why a send failed. Local recipients may already have the message.
#[derive(Debug, Error)]
pub enum SendError {
    #[error("message could not be encoded: {0}")]
    Encode(protocol::ProtocolError),
    #[error("message could not be handed to the backplane: {0}")]
    Backplane(#[from] BackplaneError),
}

/// Why a group change failed.
#[derive(Debug, Error)]
pub enum GroupError {
    #[error("{0}")]
    InvalidName(&'static str),
    #[error("Connection '{0}' does not exist.")]
    NoSuchConnection(String),
    #[error("backplane: {0}")]
    Backplane(#[from] BackplaneError),
}

/// Longest group name accepted, in bytes.
pub const MAX_GROUP_NAME: usize = 1024;

fn check_group_name(group: &str) -> Result<(), GroupError> {
    if group.is_empty() {
        return Err(GroupError::InvalidName("group name must not be empty"));
    }
    if group.len() > MAX_GROUP_NAME {
        return Err(GroupError::InvalidName("group name is longer than 1024 bytes"));
    }
    Ok(())
}

/// Counters of this node, readable by tests and, later, metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections currently registered on this node.
    pub connections: AtomicU64,
    /// Messages queued for local connections.
    pub delivered: AtomicU64,
    /// Connections closed because their outbound queue overflowed.
    pub slow_consumers: AtomicU64,
    /// Envelopes received from the backplane that could not be read.
    pub bad_envelopes: AtomicU64,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// This node: its id and its way to the others.
pub(crate) struct Node {
    pub id: String,
    pub backplane: Arc<dyn Backplane>,
    pub stats: Stats,
}

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

    /// The lifetime of `name`, created with `hub` if new; `None` when the hub limit is reached.
    pub fn get_or_insert(&self, name: &str, hub: &Hub) -> Option<Arc<HubLifetime>> {
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
        let lifetime = Arc::new(HubLifetime::new(name.clone(), hub.clone(), self.node.clone()));
        hubs.insert(name, lifetime.clone());
        Some(lifetime)
    }
}

/// Hands every envelope from the backplane to its hub's local recipients until shutdown.
pub(crate) async fn route_inbound(
    node: Arc<Node>,
    hubs: Arc<HubTable>,
    mut inbound: Inbound,
    shutdown: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => return,
            delivery = inbound.recv() => match delivery {
                Some(delivery) => delivery,
                None => return,
            },
        };
        let envelope = match envelope::Envelope::decode(&delivery.payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                node.stats.bad_envelopes.fetch_add(1, Ordering::Relaxed);
                warn!(channel = %delivery.channel, %error, "unreadable envelope dropped");
                continue;
            }
        };
        if envelope.origin == node.id {
            continue;
        }
        match hubs.get(&envelope.hub) {
            Some(lifetime) => lifetime.deliver_envelope(envelope),
            None => debug!(hub = %envelope.hub, "envelope for a hub with no local connections"),
        }
    }
}
