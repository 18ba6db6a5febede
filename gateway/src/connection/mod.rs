//! One client connection, whatever its transport: the outbound queue its writer drains and the
//! hub session that reads its messages.

pub(crate) mod session;
pub(crate) mod streams;

use crate::auth::Identity;
pub use crate::queue::outbound;
pub use crate::request::{ConnectionInfo, PackedHeaders, TransportKind};

/// The span every event of one connection is logged in (its session, its writer, its hub
/// method calls): `conn_id`, `hub`, `transport`, `user` (absent when anonymous) and `protocol`,
/// which the session records once the handshake chose it.
pub(crate) fn span(connection_id: &str, hub: &str, transport: TransportKind, identity: &Identity) -> tracing::Span {
    tracing::info_span!(
        "connection",
        conn_id = connection_id,
        hub,
        transport = transport.name(),
        protocol = tracing::field::Empty,
        user = identity.user_id.as_deref(),
    )
}
