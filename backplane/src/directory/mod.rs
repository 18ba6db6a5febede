//! The connection directory: which node holds a connection, for nodes that need no sticky
//! routing.
//!
//! With stateless negotiation, a client negotiates on one node and opens its transport on any
//! other. The node that opens it **claims** the connection here — once across the cluster, so
//! two nodes can never both accept the same connection token — and the record then says where
//! the connection lives: nodes route messages for it there (its id names the node that
//! negotiated, which may not be the holder), and forward the requests of the HTTP transports
//! that land elsewhere to the holder's address.
//!
//! ```text
//!  transport opens (any node): claim(id, holder, ttl) ──► record (first claim wins)
//!  holder, while the connection lives: renew(ids, ttl)
//!  routing / forwarding (any node): holder_of(id) ──► "node-id address"
//! ```
//!
//! A record lives for a TTL its holder renews, so a node that dies leaves nothing behind for
//! long; a connection that ends simply stops being renewed (a stale record points at a node
//! that answers "no such connection", which is what the sender must learn anyway). Like the
//! backplane, the directory knows nothing of SignalR: ids and holders are opaque strings.
//! Implementations side by side: [`MemoryDirectory`] (one process, shared by in-process nodes
//! in tests) and [`RedisDirectory`] (one `SET NX PX` per claim).

pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;

pub use memory::MemoryDirectory;
pub use redis::{DirectoryKeys, RedisDirectory};

use crate::BackplaneError;

/// Where connections live, cluster-wide.
///
/// # Guarantees every implementation keeps
/// - **A claim is won once**: of any number of concurrent `claim`s of one id, on any nodes, at
///   most one returns `true` while the record lives.
/// - **Reads see the winner**: once `claim` returned `true`, `holder_of` on any node returns
///   that holder until the record expires.
/// - **Renewing never creates**: `renew` extends only records that exist.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Records `holder` for `connection` for `ttl`, unless a record exists: `true` when this
    /// call made it.
    async fn claim(&self, connection: &str, holder: &str, ttl: Duration) -> Result<bool, BackplaneError>;
    /// The holder recorded for `connection`, if a record lives.
    async fn holder_of(&self, connection: &str) -> Result<Option<String>, BackplaneError>;
    /// Extends the records of `connections` (ones this node holds) to `ttl` from now.
    async fn renew(&self, connections: &[String], ttl: Duration) -> Result<(), BackplaneError>;
}
