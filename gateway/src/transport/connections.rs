//! The table of negotiated connections, keyed by connection token.
//!
//! Negotiate creates an entry; the first transport request that presents the token binds it
//! to that transport for the life of the connection. A WebSocket holds its connection in the
//! upgrade task; the HTTP transports (Server-Sent Events, long polling) keep theirs here, since
//! every poll and every POST is a separate request that must find it again. Entries nobody
//! binds within the disconnect timeout are reaped, and so are long-polling connections whose
//! client stopped polling; the table is bounded, so negotiate calls alone cannot grow memory
//! without limit.
//!
//! Each entry holds its connection's [`Permit`] under the node's limits (from negotiate on), so
//! the slot is given back whenever the entry goes: when its transport ends, or when it is
//! reaped or released.
//!
//! A POST may come before the first GET: its body waits in a bounded channel kept with the
//! entry (as many bodies as a running connection holds; further POSTs wait for room), for the
//! session that the first GET of the same user starts. A WebSocket claiming the token, or the
//! entry being reaped or released, drops what waits, and the waiting POSTs answer 404.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::http::{HttpConnection, Inbound};
use super::token::Ticket;
use crate::ids::random_id;
use crate::limits::Permit;
use crate::request::TransportKind;
use crate::upstream::admission::Admission;

struct Entry {
    connection_id: Arc<str>,
    hub: String,
    negotiated_at: Instant,
    binding: Binding,
    /// POST bodies that came before any transport started (only while `Unbound`).
    early: Option<Early>,
    /// What a connect hook set at negotiate (user, groups), applied when the connection starts.
    admission: Option<Arc<Admission>>,
    /// Claimed in the cluster's directory (stateless nodes): its record is renewed while the
    /// entry lives.
    claimed: bool,
    /// The connection's place under the node's limits, given back with the entry.
    permit: Option<Permit>,
}

/// What POSTs sent to a connection that has not started, and who sent them.
struct Early {
    user_id: Option<Arc<str>>,
    inbound: Inbound,
}

/// Which transport holds a connection.
#[derive(Clone)]
pub(crate) enum Binding {
    /// Negotiated; no transport has presented the token yet.
    Unbound,
    WebSocket,
    Http(Arc<HttpConnection>),
}

impl Binding {
    fn is_bound(&self) -> bool {
        !matches!(self, Self::Unbound)
    }
}

/// Why a token cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimError {
    /// No such token (never issued, expired, or its connection ended).
    NotFound,
    /// A transport of the same kind already holds this connection.
    InUse,
    /// Another kind of transport holds this connection.
    OtherTransport,
}

/// Why an HTTP-transport request cannot start or join a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindError {
    /// No such token (never issued, expired, or its connection ended).
    NotFound,
    /// Another kind of transport holds this connection.
    OtherTransport,
    /// The connection has not started, and the node admits no new connections (it is
    /// shutting down).
    NotAdmitted,
    /// POSTs that came before the start were another user's.
    OtherUser,
}

/// How a GET found its HTTP-transport connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Joined {
    /// The connection runs already.
    Running,
    /// This request started it.
    Started,
    /// This request started it, and POSTs came before: their answers are due.
    StartedAfterPosts,
}

/// Where a POST's body goes.
pub(crate) enum PostTarget {
    /// A WebSocket holds the connection: POSTs are not for it.
    WebSocket,
    /// A running HTTP-transport connection.
    Http(Arc<HttpConnection>),
    /// A connection that has not started: the channel its session will read.
    Unstarted(mpsc::Sender<Bytes>),
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
    ///
    /// A separate token starts with the node part of the connection id (`{node}.{secret}`),
    /// as the id does: a token is only valid on the node that issued it, so a load balancer
    /// can route every transport request of a connection to that node by reading the `id`
    /// query parameter, without sticky sessions. The secret part is as long as before.
    pub fn negotiate(
        &self,
        hub: &str,
        separate_token: bool,
        connection_id: String,
        admission: Option<Arc<Admission>>,
        permit: Option<Permit>,
    ) -> Option<Negotiated> {
        let mut table = self.table();
        if table.pending >= self.max_pending {
            return None;
        }
        let connection_id: Arc<str> = Arc::from(connection_id);
        let token = match (separate_token, crate::ids::host_of(&connection_id)) {
            (false, _) => connection_id.to_string(),
            (true, Some(node)) => format!("{node}.{}", random_id()),
            (true, None) => random_id(),
        };
        let entry = Entry {
            connection_id: connection_id.clone(),
            hub: hub.to_owned(),
            negotiated_at: Instant::now(),
            binding: Binding::Unbound,
            early: None,
            admission,
            claimed: false,
            permit,
        };
        table.entries.insert(token.clone(), entry);
        table.pending += 1;
        Some(Negotiated { connection_id, token })
    }

    /// Takes in a connection negotiated on any node of a stateless cluster, which this node
    /// has just claimed: from now on `token` works here as if negotiated here. `false` when
    /// too many negotiated connections are waiting. The entry holds `permit` from now on.
    pub fn adopt(&self, token: &str, ticket: Ticket, permit: Permit) -> bool {
        let mut table = self.table();
        if table.entries.contains_key(token) {
            return true;
        }
        if table.pending >= self.max_pending {
            return false;
        }
        let entry = Entry {
            connection_id: Arc::from(ticket.connection_id),
            hub: ticket.hub,
            negotiated_at: Instant::now(),
            binding: Binding::Unbound,
            early: None,
            admission: ticket.admission.map(Arc::new),
            claimed: true,
            permit: Some(permit),
        };
        table.entries.insert(token.to_owned(), entry);
        table.pending += 1;
        true
    }

    /// The ids of the connections this node claimed in the directory and still holds.
    pub fn claimed_ids(&self) -> Vec<String> {
        self.table().entries.values().filter(|e| e.claimed).map(|e| e.connection_id.to_string()).collect()
    }

    /// Claims a negotiated connection for a WebSocket.
    pub fn claim(&self, token: &str, hub: &str) -> Result<Arc<str>, ClaimError> {
        let mut table = self.table();
        let entry = table.entries.get_mut(token).filter(|e| e.hub == hub).ok_or(ClaimError::NotFound)?;
        match entry.binding {
            Binding::Unbound => {}
            Binding::WebSocket => return Err(ClaimError::InUse),
            Binding::Http(_) => return Err(ClaimError::OtherTransport),
        }
        entry.binding = Binding::WebSocket;
        // A WebSocket reads no POSTs: any that came early are dropped (waiting ones get 404).
        entry.early = None;
        let connection_id = entry.connection_id.clone();
        table.pending -= 1;
        Ok(connection_id)
    }

    /// The HTTP-transport connection behind `token`: the one already running on `transport`,
    /// or, when `admit_new`, a new one that `start` creates for the connection id, handing it
    /// the channel of any POSTs that came first (those must be `user_id`'s).
    pub fn bind_http(
        &self,
        token: &str,
        hub: &str,
        transport: TransportKind,
        user_id: &Option<Arc<str>>,
        admit_new: bool,
        start: impl FnOnce(Arc<str>, Option<Inbound>) -> Arc<HttpConnection>,
    ) -> Result<(Arc<HttpConnection>, Joined), BindError> {
        let mut table = self.table();
        let entry = table.entries.get_mut(token).filter(|e| e.hub == hub).ok_or(BindError::NotFound)?;
        match &entry.binding {
            Binding::Unbound if !admit_new => return Err(BindError::NotAdmitted),
            Binding::Unbound => {}
            Binding::Http(running) if running.transport == transport => return Ok((running.clone(), Joined::Running)),
            Binding::Http(_) | Binding::WebSocket => return Err(BindError::OtherTransport),
        }
        if entry.early.as_ref().is_some_and(|early| &early.user_id != user_id) {
            return Err(BindError::OtherUser);
        }
        let early = entry.early.take().map(|early| early.inbound);
        let joined = if early.is_some() { Joined::StartedAfterPosts } else { Joined::Started };
        let connection = start(entry.connection_id.clone(), early);
        entry.binding = Binding::Http(connection.clone());
        table.pending -= 1;
        Ok((connection, joined))
    }

    /// Where a POST by `user_id` to `token`'s connection of `hub` goes. For a connection that
    /// has not started (and only when `admit_new`), the channel its session will read, made on
    /// the first such POST; later ones must be the same user's.
    pub fn post_target(
        &self,
        token: &str,
        hub: &str,
        user_id: &Option<Arc<str>>,
        admit_new: bool,
    ) -> Result<PostTarget, BindError> {
        let mut table = self.table();
        let entry = table.entries.get_mut(token).filter(|e| e.hub == hub).ok_or(BindError::NotFound)?;
        match &entry.binding {
            Binding::WebSocket => return Ok(PostTarget::WebSocket),
            Binding::Http(connection) => return Ok(PostTarget::Http(connection.clone())),
            Binding::Unbound if !admit_new => return Err(BindError::NotAdmitted),
            Binding::Unbound => {}
        }
        let early = entry.early.get_or_insert_with(|| Early { user_id: user_id.clone(), inbound: Inbound::new() });
        if &early.user_id != user_id {
            return Err(BindError::OtherUser);
        }
        Ok(PostTarget::Unstarted(early.inbound.sender()))
    }

    /// Runs `change` on the permit of `token`'s connection of `hub` if the connection has not
    /// started (to move it to the user who starts it); `None` otherwise.
    pub fn with_unstarted_permit<R>(&self, token: &str, hub: &str, change: impl FnOnce(&mut Permit) -> R) -> Option<R> {
        let mut table = self.table();
        let entry = table.entries.get_mut(token).filter(|e| e.hub == hub && !e.binding.is_bound())?;
        entry.permit.as_mut().map(change)
    }

    /// What a connect hook set for `token`'s connection of `hub` at negotiate, if anything.
    pub fn admission(&self, token: &str, hub: &str) -> Option<Arc<Admission>> {
        self.table().entries.get(token).filter(|e| e.hub == hub).and_then(|e| e.admission.clone())
    }

    /// How `token`'s connection of `hub` is held; `None` when there is no such connection.
    pub fn lookup(&self, token: &str, hub: &str) -> Option<Binding> {
        self.table().entries.get(token).filter(|e| e.hub == hub).map(|e| e.binding.clone())
    }

    /// Forgets a connection whose transport has ended.
    pub fn release(&self, token: &str) {
        let mut table = self.table();
        if let Some(entry) = table.entries.remove(token) {
            if !entry.binding.is_bound() {
                table.pending -= 1;
            }
        }
    }

    /// Long-polling connections whose end (their Close) no poll has fetched yet, not counting
    /// those whose client has not polled for `gone_after` (it went away). At shutdown the node
    /// keeps accepting requests until this is zero (or the deadline passes), since such a
    /// client can only learn of the Close from its next poll.
    pub fn undelivered_long_poll_ends(&self, gone_after: Duration) -> usize {
        let table = self.table();
        let waiting = |e: &&Entry| match &e.binding {
            Binding::Http(c) => {
                c.transport == TransportKind::LongPolling && !c.end_delivered() && !c.abandoned_for(gone_after)
            }
            _ => false,
        };
        table.entries.values().filter(waiting).count()
    }

    /// Drops negotiated connections nobody bound within `timeout`, and ends long-polling
    /// connections whose client has not polled for that long.
    pub fn reap(&self, timeout: Duration) -> usize {
        let mut table = self.table();
        let before = table.entries.len();
        let mut unbound_reaped = 0;
        table.entries.retain(|_, e| match &e.binding {
            Binding::Unbound if e.negotiated_at.elapsed() >= timeout => {
                unbound_reaped += 1;
                false
            }
            Binding::Http(connection) if connection.abandoned_for(timeout) => {
                connection.outbound.abort();
                false
            }
            _ => true,
        });
        table.pending -= unbound_reaped;
        before - table.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_claimed_once_and_only_for_its_hub() {
        let table = ConnectionTable::new(10);
        let negotiated = table.negotiate("chat", true, random_id(), None, None).unwrap();
        assert_ne!(negotiated.token, negotiated.connection_id.as_ref());
        assert_eq!(table.claim(&negotiated.token, "other"), Err(ClaimError::NotFound));
        assert_eq!(table.claim(&negotiated.token, "chat").unwrap(), negotiated.connection_id);
        assert_eq!(table.claim(&negotiated.token, "chat"), Err(ClaimError::InUse));
        assert!(matches!(table.lookup(&negotiated.token, "chat"), Some(Binding::WebSocket)));
        table.release(&negotiated.token);
        assert_eq!(table.claim(&negotiated.token, "chat"), Err(ClaimError::NotFound));
    }

    #[test]
    fn a_separate_token_names_the_node_that_issued_it() {
        let table = ConnectionTable::new(10);
        let negotiated = table.negotiate("chat", true, "node-7.abcdefghijklmnopqrstuv".to_owned(), None, None).unwrap();
        let (node, secret) = negotiated.token.split_once('.').unwrap();
        assert_eq!(node, "node-7");
        assert_eq!(secret.len(), 22, "the secret part keeps its full length");
        assert_ne!(secret, "abcdefghijklmnopqrstuv", "the secret is not the public id");
    }

    #[test]
    fn version_zero_uses_the_id_as_token() {
        let table = ConnectionTable::new(10);
        let negotiated = table.negotiate("chat", false, random_id(), None, None).unwrap();
        assert_eq!(negotiated.token, negotiated.connection_id.as_ref());
    }

    #[test]
    fn unclaimed_connections_are_reaped_and_claimed_ones_kept() {
        let table = ConnectionTable::new(10);
        let idle = table.negotiate("chat", true, random_id(), None, None).unwrap();
        let used = table.negotiate("chat", true, random_id(), None, None).unwrap();
        table.claim(&used.token, "chat").unwrap();
        assert_eq!(table.reap(Duration::ZERO), 1);
        assert!(table.lookup(&idle.token, "chat").is_none());
        assert!(matches!(table.lookup(&used.token, "chat"), Some(Binding::WebSocket)));
    }

    #[test]
    fn posts_before_the_start_wait_for_the_same_users_session_and_a_websocket_drops_them() {
        let table = ConnectionTable::new(10);
        let alice: Option<Arc<str>> = Some("alice".into());
        let negotiated = table.negotiate("chat", true, random_id(), None, None).unwrap();
        let Ok(PostTarget::Unstarted(inbound)) = table.post_target(&negotiated.token, "chat", &alice, true) else {
            panic!("a POST before the start gets the channel");
        };
        inbound.try_send(Bytes::from_static(b"handshake")).unwrap();
        let bob = Some("bob".into());
        assert!(matches!(table.post_target(&negotiated.token, "chat", &bob, true), Err(BindError::OtherUser)));
        assert!(matches!(table.post_target(&negotiated.token, "chat", &alice, false), Err(BindError::NotAdmitted)));
        assert!(matches!(table.post_target("nobody", "chat", &alice, true), Err(BindError::NotFound)));

        table.claim(&negotiated.token, "chat").unwrap();
        assert!(inbound.try_send(Bytes::from_static(b"more")).is_err(), "a WebSocket reads no POSTs");
        assert!(matches!(table.post_target(&negotiated.token, "chat", &alice, true), Ok(PostTarget::WebSocket)));
    }

    #[test]
    fn the_number_of_waiting_connections_is_bounded() {
        let table = ConnectionTable::new(2);
        assert!(table.negotiate("chat", true, random_id(), None, None).is_some());
        assert!(table.negotiate("chat", true, random_id(), None, None).is_some());
        assert!(table.negotiate("chat", true, random_id(), None, None).is_none());
    }
}
