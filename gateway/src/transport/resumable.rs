//! Connections granted stateful reconnect, by token: where a later WebSocket upgrade that
//! presents the token of a live connection hands its socket over, instead of being refused as
//! a second transport.
//!
//! Kept beside the negotiated-connection table rather than inside it because only the
//! WebSocket transport resumes, and only for clients that asked for it; everyone else pays
//! nothing.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::websocket::SocketSwaps;

enum Grant {
    /// Negotiated with stateful reconnect; no socket yet.
    Negotiated(Instant),
    /// Running; replacement sockets go here.
    Live(SocketSwaps),
}

/// Tokens granted stateful reconnect.
#[derive(Default)]
pub(crate) struct Resumable {
    grants: Mutex<HashMap<String, Grant>>,
}

impl Resumable {
    fn grants(&self) -> MutexGuard<'_, HashMap<String, Grant>> {
        self.grants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Negotiate granted stateful reconnect to the connection with `token`.
    pub fn grant(&self, token: &str) {
        self.grants().insert(token.to_owned(), Grant::Negotiated(Instant::now()));
    }

    /// Whether `token` was granted stateful reconnect.
    pub fn is_granted(&self, token: &str) -> bool {
        self.grants().contains_key(token)
    }

    /// The connection's first socket is up; later ones go to `swaps`.
    pub fn go_live(&self, token: &str, swaps: SocketSwaps) {
        if let Some(grant) = self.grants().get_mut(token) {
            *grant = Grant::Live(swaps);
        }
    }

    /// Where a replacement socket for `token` goes, when its connection is live.
    pub fn swaps(&self, token: &str) -> Option<SocketSwaps> {
        match self.grants().get(token) {
            Some(Grant::Live(swaps)) if !swaps.is_closed() => Some(swaps.clone()),
            _ => None,
        }
    }

    /// Forgets a connection that ended.
    pub fn forget(&self, token: &str) {
        self.grants().remove(token);
    }

    /// Forgets grants whose connection never started within `timeout`.
    pub fn reap(&self, timeout: Duration) {
        self.grants().retain(|_, grant| match grant {
            Grant::Negotiated(at) => at.elapsed() < timeout,
            Grant::Live(swaps) => !swaps.is_closed(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_connection_takes_replacement_sockets_until_it_ends() {
        let resumable = Resumable::default();
        resumable.grant("t");
        assert!(resumable.is_granted("t"));
        assert!(resumable.swaps("t").is_none(), "not live yet");
        let (swaps, receiver) = tokio::sync::mpsc::channel(1);
        resumable.go_live("t", swaps);
        assert!(resumable.swaps("t").is_some());
        drop(receiver);
        assert!(resumable.swaps("t").is_none(), "the connection ended");
        resumable.reap(Duration::from_secs(60));
        assert!(!resumable.is_granted("t"));
    }

    #[test]
    fn unused_grants_are_reaped() {
        let resumable = Resumable::default();
        resumable.grant("t");
        resumable.reap(Duration::ZERO);
        assert!(!resumable.is_granted("t"));
    }
}
