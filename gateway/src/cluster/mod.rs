//! Delivery across the cluster: who receives a message, locally and on other nodes.
//!
//! Each hub has a [`HubLifetime`]: its local registry of connections, groups and users, plus the
//! node's backplane. A send is encoded once per protocol, queued directly for local recipients, then published
//! once as an [`envelope::Envelope`] on the audience's channel. Other nodes subscribed to that
//! channel deliver it to their local recipients; a node ignores envelopes it published itself, so
//! local recipients get each message exactly once and local delivery never waits for the
//! backplane.
//!
//! ```text
//! send ─► encode once per protocol ─► registry.deliver (local outbound queues, try-push)
//!                    └─► backplane.publish(channel, envelope) ─► other nodes ─► their registries
//! ```
//!
//! Requests that need an answer from the node hosting a connection (group changes, client
//! results) go to that node's own channel; the node is named in the connection id, so no
//! directory is needed. See [`client_results`] for invocations awaited from one client.

mod client_results;
mod encoded;
pub mod envelope;
mod hubs;
mod inbound;
mod lifetime;
mod local_presence;
mod node;
mod registry;

use std::time::Duration;

use backplane::{BackplaneError, UserGroupsError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use client_results::{Awaited, ClientOutcome};
pub use client_results::{ClientResultError, MAX_PENDING_CLIENT_RESULTS};
pub use encoded::Encoded;
pub(crate) use hubs::HubTable;
pub(crate) use inbound::route_inbound;
pub use lifetime::HubLifetime;
pub(crate) use local_presence::RegistryPresence;
pub(crate) use node::{holder_address, holder_node, Node, Stores};
pub(crate) use registry::Member;

pub use crate::metrics::Stats;

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
    /// The node hosting the connection refused the change; the text is its error.
    #[error("{0}")]
    Remote(String),
    /// The node hosting the connection did not acknowledge the change in time.
    #[error("The group change for connection '{0}' was not acknowledged in time.")]
    Timeout(String),
    #[error("backplane: {0}")]
    Backplane(#[from] BackplaneError),
    /// The connection is in as many groups as allowed.
    #[error("joining group '{group}' would exceed the limit of {limit} groups per connection")]
    TooManyGroups { group: String, limit: usize },
    /// A user's membership could not be stored or removed (see [`backplane::UserGroups`]).
    #[error("user groups: {0}")]
    UserGroups(#[from] UserGroupsError),
}

/// How long adding a user to a group lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Only the user's connections that exist now join; later ones do not.
    CurrentConnections,
    /// Current connections join, and so do the user's connections opened within this time.
    For(Duration),
}

/// Longest group name accepted, in bytes.
pub const MAX_GROUP_NAME: usize = 1024;

/// Longest hub name served, in bytes (the relay hub's names under `/hubs/` and the REST API's
/// `{hub}`).
pub const MAX_HUB_NAME: usize = 128;

fn check_group_name(group: &str) -> Result<(), GroupError> {
    if group.is_empty() {
        return Err(GroupError::InvalidName("group name must not be empty"));
    }
    if group.len() > MAX_GROUP_NAME {
        return Err(GroupError::InvalidName("group name is longer than 1024 bytes"));
    }
    Ok(())
}
