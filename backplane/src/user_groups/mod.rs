//! User groups: group memberships that belong to a **user**, not to a connection.
//!
//! The REST API can add a user to a group ("add user to group", optionally with a TTL). The
//! gateway applies that at once to the user's current connections, but a user also opens
//! connections later, on any node: those must join the user's groups too. So the membership
//! itself has to live somewhere every node can read when a connection starts — this store.
//!
//! ```text
//!  REST API (any node): add / remove / remove_all ──► store (one record per hub and user)
//!  a connection of the user starts (any node): groups_of ──► join each group locally
//! ```
//!
//! Like the backplane and presence, the store knows nothing of SignalR: hubs, users and groups
//! are opaque strings. Implementations side by side: [`MemoryUserGroups`] (one process: the
//! single-node default and the test double that is not a mock) and [`RedisUserGroups`] (shared
//! by every node; see its module for the key layout, the expiry rules and the cost).

pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

pub use memory::MemoryUserGroups;
pub use redis::{RedisUserGroups, UserGroupKeys};

use crate::BackplaneError;

/// Most groups one user may be a member of through the store; `add` beyond it fails with UserGroupsError::TooManyGroups.
pub const MAX_GROUPS_PER_USER: usize = 1_000;

/// Longest TTL honoured (about 100 years): keeps expiry instants representable everywhere.
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Why a user-groups operation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UserGroupsError {
    /// The user already has [`MAX_GROUPS_PER_USER`] unexpired groups in the hub; nothing changed.
    #[error("user '{user}' is already in {limit} groups")]
    TooManyGroups { user: String, limit: usize },
    /// The store could not be reached or answered unexpectedly (see [`BackplaneError`]).
    #[error(transparent)]
    Store(#[from] BackplaneError),
}

/// Cluster-wide user → group memberships, per hub.
///
/// # Guarantees every implementation keeps
/// - **Each operation is atomic and reads its own writes**: once `add` returns, `groups_of` on
///   any node lists the group (until it is removed or expires).
/// - **Expiry is exact to the store's clock**: a group added with a TTL is never listed after
///   it expired; expired memberships are dropped lazily, on the next operation on that user,
///   and never count against [`MAX_GROUPS_PER_USER`].
/// - **Re-adding replaces**: the latest `add` decides the expiry (`None` makes it permanent).
/// - **Bounded**: at most [`MAX_GROUPS_PER_USER`] groups per hub and user.
/// - **Names are literal**: any UTF-8, `:` and `*` included; hubs and users never share entries.
/// - A TTL of zero expires at once; one longer than [`MAX_TTL`] counts as [`MAX_TTL`].
#[async_trait]
pub trait UserGroups: Send + Sync + 'static {
    /// `user` of `hub` is a member of `group` until removed, or for `ttl` when given (re-adding replaces the expiry).
    async fn add(&self, hub: &str, user: &str, group: &str, ttl: Option<Duration>) -> Result<(), UserGroupsError>;
    /// Removes one membership; removing a non-member is not an error.
    async fn remove(&self, hub: &str, user: &str, group: &str) -> Result<(), UserGroupsError>;
    /// Removes every membership of `user` in `hub`.
    async fn remove_all(&self, hub: &str, user: &str) -> Result<(), UserGroupsError>;
    /// The unexpired groups of `user` in `hub` (no order), at most MAX_GROUPS_PER_USER.
    async fn groups_of(&self, hub: &str, user: &str) -> Result<Vec<String>, UserGroupsError>;
}

/// `ttl` within the bound every implementation honours.
fn bounded(ttl: Duration) -> Duration {
    ttl.min(MAX_TTL)
}

impl UserGroupsError {
    fn too_many(user: &str) -> Self {
        Self::TooManyGroups { user: user.to_owned(), limit: MAX_GROUPS_PER_USER }
    }
}
