//! What waits to be written to one client: the outbound queue (bounded in bytes, never waits on
//! a push, closes slow consumers) and, with stateful reconnect, the messages kept until the
//! client acknowledges them, and the clock writers hold on to when they coalesce writes. Below the fan-out layer and the transports, which both use it;
//! it knows nothing of hubs, sessions or sockets.

pub mod flush_clock;
pub mod outbound;
pub(crate) mod stateful;
