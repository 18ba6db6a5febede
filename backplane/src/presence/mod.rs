//! Presence: which connections, users and groups exist, answerable from any node.
//!
//! The backplane moves messages; presence remembers who is there. Each node reports its own
//! connections and group memberships ([`Presence::connected`], [`Presence::joined`], …) and any
//! node can ask about the whole cluster (`*_exists`, [`Presence::group_connections`]). Like the
//! backplane, presence knows nothing of SignalR: hubs, users, groups and connection ids are
//! opaque strings (the gateway passes lower-case hub names).
//!
//! ```text
//!  node A: connected / joined / left / disconnected ─► (non-blocking) ─► shared state
//!  node B: connection_exists / user_exists / group_connections ──────────► shared state
//!  every node: heartbeat(node) every heartbeat interval ─► entries of silent nodes stop counting
//! ```
//!
//! Implementations side by side: [`MemoryPresence`] (in-process maps: the single-node default,
//! shared by several in-process nodes in tests) and [`RedisPresence`] (Redis with per-node
//! heartbeat keys; see its module for the key layout, the liveness bound and the cost).

pub mod memory;
pub mod redis;
mod writer;

use std::time::Duration;

use async_trait::async_trait;

pub use memory::MemoryPresence;
pub use redis::{PresenceKeys, RedisPresence};

use crate::BackplaneError;

/// How often a node should call [`Presence::heartbeat`]. Default of the gateway's heartbeat task.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// How long a node's heartbeat keeps it alive: three intervals, so one or two late heartbeats
/// (a slow Redis, a paused process) do not drop a live node. A node that dies stops being
/// counted at most `NODE_TTL` after its last heartbeat, i.e. within `NODE_TTL + HEARTBEAT_INTERVAL`
/// of its last report (15 s + 5 s by default).
pub const NODE_TTL: Duration = Duration::from_secs(15);

/// How often nodes heartbeat and how long a heartbeat keeps a node alive. The defaults are
/// [`HEARTBEAT_INTERVAL`] and [`NODE_TTL`]; a shorter TTL notices dead nodes sooner at the cost
/// of more heartbeats, and a TTL of at least two or three intervals tolerates late heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceTiming {
    /// How often each node calls [`Presence::heartbeat`]. Default 5 s.
    pub heartbeat_interval: Duration,
    /// How long one heartbeat keeps the node's entries counted; must exceed the interval.
    /// Default 15 s.
    pub node_ttl: Duration,
}

impl Default for PresenceTiming {
    fn default() -> Self {
        Self { heartbeat_interval: HEARTBEAT_INTERVAL, node_ttl: NODE_TTL }
    }
}

impl PresenceTiming {
    /// Fails with [`BackplaneError::InvalidConfig`] unless `0 < heartbeat_interval < node_ttl`:
    /// a TTL not longer than the interval would drop live nodes between two heartbeats.
    pub fn validate(&self) -> Result<(), BackplaneError> {
        if self.heartbeat_interval.is_zero() {
            return Err(BackplaneError::InvalidConfig("the presence heartbeat interval must be longer than 0".into()));
        }
        if self.node_ttl <= self.heartbeat_interval {
            return Err(BackplaneError::InvalidConfig(
                "the presence node TTL must be longer than the heartbeat interval".into(),
            ));
        }
        Ok(())
    }
}

/// Most connection ids [`Presence::group_connections`] returns, and most entries any one query
/// reads from a user's or a group's index.
pub const MAX_GROUP_CONNECTIONS: usize = 10_000;

/// Why a presence operation failed: the same states as the backplane's (not connected, closed,
/// bad settings), so callers handle one error type.
pub type PresenceError = BackplaneError;

/// Who is connected where, cluster-wide.
///
/// # Guarantees every implementation keeps
/// - **Reports never wait.** `connected`, `disconnected`, `joined` and `left` record the change
///   locally and hand it on without awaiting anything: a connection never waits for the shared
///   store. A report that cannot be stored is logged and counted ([`Presence::failures`]) and
///   repaired by a later heartbeat, never returned to the caller.
/// - **A node's reports take effect in the order it made them.**
/// - **Eventually consistent across nodes.** A query on another node sees a report once it was
///   stored (one round trip for Redis); a node that stops heartbeating stops being counted
///   within its node TTL + one heartbeat interval ([`PresenceTiming`]).
/// - **`disconnected` forgets everything about the connection**, its groups included.
/// - **Queries are bounded**: no answer reads or returns more than [`MAX_GROUP_CONNECTIONS`]
///   entries of one index; they fail with [`PresenceError::Unavailable`] while the store is
///   unreachable.
/// - **Names are literal**: any UTF-8, `*` included.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// `connection` of `hub`, hosted by `node`, has connected, authenticated as `user` if any.
    fn connected(&self, hub: &str, connection: &str, user: Option<&str>, node: &str);

    /// `connection` of `hub` is gone, with its user and its group memberships. The user is
    /// not passed: the implementation remembers it from [`Presence::connected`].
    fn disconnected(&self, hub: &str, connection: &str);

    /// `connection` of `hub` joined `group`. Ignored for a connection not reported connected.
    fn joined(&self, hub: &str, group: &str, connection: &str);

    /// `connection` of `hub` left `group`.
    fn left(&self, hub: &str, group: &str, connection: &str);

    /// Keeps `node` alive for another node TTL; call every heartbeat interval
    /// ([`PresenceTiming`], by default [`NODE_TTL`] and [`HEARTBEAT_INTERVAL`]). Also
    /// re-registers the node's entries when the store lost them (a restarted Redis, a node
    /// declared dead during a long partition, reports that failed).
    async fn heartbeat(&self, node: &str) -> Result<(), PresenceError>;

    /// Clean shutdown of `node`: its entries are removed at once rather than expiring.
    async fn node_stopped(&self, node: &str) -> Result<(), PresenceError>;

    /// Whether `connection` of `hub` is connected to a live node.
    async fn connection_exists(&self, hub: &str, connection: &str) -> Result<bool, PresenceError>;

    /// Whether `user` has at least one connection to `hub` on a live node.
    async fn user_exists(&self, hub: &str, user: &str) -> Result<bool, PresenceError>;

    /// Whether `group` of `hub` has at least one member on a live node.
    async fn group_exists(&self, hub: &str, group: &str) -> Result<bool, PresenceError>;

    /// Whether at least one connection of `user` is a member of `group` of `hub`.
    async fn user_in_group(&self, hub: &str, user: &str, group: &str) -> Result<bool, PresenceError>;

    /// The members of `group` of `hub` on live nodes, in no particular order, at most
    /// [`MAX_GROUP_CONNECTIONS`].
    async fn group_connections(&self, hub: &str, group: &str) -> Result<Vec<String>, PresenceError>;

    /// Reports that could not be stored so far (each is repaired by a later heartbeat).
    fn failures(&self) -> u64;
}
