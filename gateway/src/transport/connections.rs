//! The table of negotiated connections, keyed by connection token.
//!
//! Negotiate creates an entry; the transport request that presents the token claims it for
//! the life of the connection. Entries nobody claims within the disconnect timeout are reaped,
//! and the table is bounded, so negotiate calls alone cannot grow memory without limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::connection::random_id;

struct Entry {
    connection_id: Arc<str>,
    hub: String,
    negotiated_at: Instant,
    active: bool,
}

/// Why a token cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimError {
    /// No such token (never issued, expired, or its connection ended).
    NotFound,
    /// A transport already holds this connection.
    InUse,
}

/// A negotiated connection: its public id and the secret token its transports present.
#[derive(Debug, Clone)]
pub(crate) struct Negotiated {
    pub connection_id: Arc<str>,
    pub token: String,
}

#[derive(Default)]
struct Table {
    entries: HashMap<String, Entry>,
    /// Entries not yet claimed by a transport.
    pending: usize,
}

pub(crate) struct ConnectionTable {
    table: Mutex<Table>,
    max_pending: usize,
}

impl ConnectionTable {
    pub fn new(max_pending: usize) -> Self {
        Self { table: Mutex::new(Table::default()), max_pending }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a connection for `hub`. With `separate_token` (negotiate version 1) the token
    /// differs from the public id; version 0 uses the id as token. `None` when too many
    /// negotiated connections are waiting.
    pub fn negotiate(&self, hub: &str, separate_token: bool, connection_id: String) -> Option<Negotiated> {
        let mut table = self.table();
        if table.pending >= self.max_pending {
            return None;
        }
        let connection_id: Arc<str> = Arc::from(connection_id);
        let token = if separate_token { random_id() } else { connection_id.to_string() };
        let entry = Entry {
            connection_id: connection_id.clone(),
            hub: hub.to_owned(),
            negotiated_at: Instant::now(),
            active: false,
        };
        table.entries.insert(token.clone(), entry);
        table.pending += 1;
        Some(Negotiated { connection_id, token })
    }

    /// Claims a negotiated connection for a transport.
    pub fn claim(&self, token: &str, hub: &str) -> Result<Arc<str>, ClaimError> {
        let mut table = self.table();
        let entry = table.entries.get_mut(token).filter(|e| e.hub == hub).ok_or(ClaimError::NotFound)?;
        if entry.active {
            return Err(ClaimError::InUse);
        }
        entry.active = true;
        let connection_id = entry.connection_id.clone();
        table.pending -= 1;
        Ok(connection_id)
    }

    /// Whether `token` names a connection of `hub`, and whether a transport holds it.
    pub fn lookup(&self, token: &str, hub: &str) -> Option<bool> {
        self.table().entries.get(token).filter(|e| e.hub == hub).map(|e| e.active)
    }

    /// Forgets a connection whose transport has ended.
    pub fn release(&self, token: &str) {
        let mut table = self.table();
        if let Some(entry) = table.entries.remove(token) {
            if !entry.active {
                table.pending -= 1;
            }
        }
    }

    /// Drops negotiated connections nobody claimed within `timeout`.
    pub fn reap(&self, timeout: Duration) -> usize {
        let mut table = self.table();
        let before = table.entries.len();
        table.entries.retain(|_, e| e.active || e.negotiated_at.elapsed() < timeout);
        let reaped = before - table.entries.len();
        table.pending -= reaped;
        reaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_claimed_once_and_only_for_its_hub() {
        let table = ConnectionTable::new(10);
        let negotiated = table.negotiate("chat", true, random_id()).unwrap();
        assert_ne!(negotiated.token, negotiated.connection_id.as_ref());
        assert_eq!(table.claim(&negotiated.token, "other"), Err(ClaimError::NotFound));
        assert_eq!(table.claim(&negotiated.token, "chat").unwrap(), negotiated.connection_id);
        assert_eq!(table.claim(&negotiated.token, "chat"), Err(ClaimError::InUse));
        table.release(&negotiated.token);
        assert_eq!(table.claim(&negotiated.token, "chat"), Err(ClaimError::NotFound));
    }

    #[test]
    fn version_zero_uses_the_id_as_token() {
        let table = ConnectionTable::new(10);
        let negotiated = table.negotiate("chat", false, random_id()).unwrap();
        assert_eq!(negotiated.token, negotiated.connection_id.as_ref());
    }

    #[test]
    fn unclaimed_connections_are_reaped_and_claimed_ones_kept() {
        let table = ConnectionTable::new(10);
        let idle = table.negotiate("chat", true, random_id()).unwrap();
        let used = table.negotiate("chat", true, random_id()).unwrap();
        table.claim(&used.token, "chat").unwrap();
        assert_eq!(table.reap(Duration::ZERO), 1);
        assert_eq!(table.lookup(&idle.token, "chat"), None);
        assert_eq!(table.lookup(&used.token, "chat"), Some(true));
    }

    #[test]
    fn the_number_of_waiting_connections_is_bounded() {
        let table = ConnectionTable::new(2);
        assert!(table.negotiate("chat", true, random_id()).is_some());
        assert!(table.negotiate("chat", true, random_id()).is_some());
        assert!(table.negotiate("chat", true, random_id()).is_none());
    }
}
