//! The backplane: how gateway nodes hand each other messages.
//!
//! A backplane moves **opaque bytes on named channels**. It knows nothing of SignalR, hubs,
//! groups or users: the gateway decides which channel a message goes to (names come from
//! [`channels`]) and what the bytes mean. That keeps every implementation small and lets one
//! conformance suite cover them all.
//!
//! ```text
//!  node A: publish("hub:chat:group:room", bytes) ──►  backplane  ──► node B inbound queue
//!                                                                └─► node C inbound queue
//!            (only nodes that subscribed to the channel receive it)
//! ```
//!
//! Implementations live side by side: [`memory::MemoryBackplane`] (one process; the
//! single-node default and the bus for multi-gateway tests) and [`redis::RedisBackplane`]
//! (standalone Redis or Redis Cluster with sharded pub/sub, configured by
//! [`redis::RedisConfig`]: URLs, cluster mode, inbound capacity, timeouts and reconnect
//! backoff, each documented with its unit and default).
//!
//! Two shared stores sit beside the backplane, with the same pair of implementations:
//! [`presence`] (which connections, users and groups exist, cluster-wide) and [`user_groups`]
//! (groups a user belongs to, for the connections the user opens later on any node).

#![forbid(unsafe_code)]

pub mod channels;
pub mod directory;
pub mod memory;
pub mod presence;
pub mod redis;
pub mod user_groups;

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;
use tokio::sync::mpsc;

pub use directory::{Directory, MemoryDirectory, RedisDirectory};
pub use memory::{MemoryBackplane, MemoryBus};
pub use presence::{MemoryPresence, Presence, PresenceError, PresenceTiming, RedisPresence};
pub use redis::{RedisBackplane, RedisConfig};
pub use user_groups::{MemoryUserGroups, RedisUserGroups, UserGroups, UserGroupsError};

/// One message received from the backplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The channel it was published on.
    pub channel: String,
    /// The bytes exactly as published.
    pub payload: Bytes,
}

/// The receiving end of a backplane: every message published on a channel this node is
/// subscribed to, in one bounded queue.
pub type Inbound = mpsc::Receiver<Delivery>;

/// Whether the backplane can currently move messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Connected; publishes and subscriptions take effect.
    Up,
    /// Not connected; publishes fail, subscriptions are restored on reconnect.
    Down,
}

/// Why a backplane operation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BackplaneError {
    /// The backplane is not connected to its server.
    #[error("backplane unavailable: {0}")]
    Unavailable(String),
    /// The backplane was shut down.
    #[error("backplane closed")]
    Closed,
    /// `take_inbound` was called a second time.
    #[error("the inbound stream was already taken")]
    InboundTaken,
    /// The backplane's settings are unusable (a malformed URL, a zero capacity, …).
    #[error("invalid backplane configuration: {0}")]
    InvalidConfig(String),
}

/// Moves opaque bytes between nodes on named channels.
///
/// # Guarantees every implementation keeps
/// - **At most once.** A message is delivered to each subscribed node zero or one time; never
///   twice. Loss is possible while the backplane is down and when a node's inbound queue is full
///   (the message is dropped and counted, the reader is never blocked).
/// - **Ordered per publisher and channel.** Two messages one node publishes on one channel arrive
///   at every receiver in publish order. No order holds across channels or publishers.
/// - **The publisher receives its own messages** if it is subscribed to the channel; callers
///   that deliver locally must recognise and skip their own messages.
/// - **Subscriptions are reference-counted per channel.** N `subscribe` calls need N
///   `unsubscribe` calls before the node stops receiving. While the backplane is up, a
///   subscription is in effect when `subscribe` returns. While it is down, `subscribe` and
///   `unsubscribe` still succeed and only change the count; the subscriptions with a positive
///   count are established when the connection comes back.
/// - **Reconnects are invisible to callers** except as loss: an implementation that loses its
///   connection restores every subscription with a positive count when it comes back, and
///   reports [`Health::Down`] until then.
/// - **Channel names are literal.** No pattern matching: a channel named `*` is just a name.
#[async_trait]
pub trait Backplane: Send + Sync + 'static {
    /// Hands `payload` to every node subscribed to `channel`. Returns once the backplane has
    /// accepted the message, with the number of nodes it reached as far as the backplane can
    /// tell (Redis counts the subscribers of the channel; with sharded pub/sub, those of the
    /// channel's shard). Fails at once, without queueing, while the backplane is down.
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<usize, BackplaneError>;

    /// Adds one reference to this node's subscription of `channel`.
    async fn subscribe(&self, channel: &str) -> Result<(), BackplaneError>;

    /// Removes one reference; the node stops receiving when the count reaches zero. Removing a
    /// reference that does not exist does nothing.
    async fn unsubscribe(&self, channel: &str) -> Result<(), BackplaneError>;

    /// The inbound queue of this node. It can be taken once.
    fn take_inbound(&self) -> Result<Inbound, BackplaneError>;

    /// Current connection state.
    fn health(&self) -> Health;

    /// Messages dropped so far because this node's inbound queue was full.
    fn dropped(&self) -> u64;

    /// Ends this node's use of the backplane at shutdown: connections are closed politely
    /// (Redis: QUIT), bounded by `timeout`. Afterwards operations fail and health is down.
    /// Backplanes without connections of their own do nothing (the default).
    async fn close(&self, timeout: std::time::Duration) {
        let _ = timeout;
    }

    /// Times a lost connection to the backplane's server was re-established so far (for
    /// metrics). Backplanes without a connection to lose report 0.
    fn reconnects(&self) -> u64 {
        0
    }
}
