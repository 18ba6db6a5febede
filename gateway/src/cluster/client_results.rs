//! Client results: the server invokes a method on one client and awaits what it returns.
//!
//! Every awaited invocation has an entry in the node's [`PendingResults`], keyed by the
//! invocation id the client must echo in its Completion. Ids are `{node id}.{counter}`, unique in
//! the whole cluster, so the node hosting the connection can use the origin's id as-is and
//! forward the invocation bytes the origin already encoded.
//!
//! ```text
//! origin node                                      host node (owns the connection)
//! invoke_client ─► pending[id] = waiter
//!   local? push Invocation ───────────────────────────────────────────► client
//!   remote? publish ClientInvoke ─► node channel ─► pending[id] = waiter, push ─► client
//! receipt (≤ group-ack timeout) ◄─ ClientInvokeReceived ◄─┘
//!                                                   client Completion ─► waiter resolves
//! waiter resolves ◄─ ClientResult ◄─ origin's node channel ◄──────────┘
//! ```
//!
//! A remote invocation first waits, up to the group-ack timeout, for the host's receipt (or
//! its answer): Redis may still count the subscription of a host that died or is cut off, and
//! without the receipt such a call would wait out the whole client-result timeout.
//!
//! An entry is removed by whichever comes first: the Completion from the connection it was sent
//! to (a Completion from any other connection is ignored), that connection's disconnect, or the
//! awaiting side's timeout. Connections that never receive such an invocation cost nothing: the
//! per-connection index only holds connections with entries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use protocol::{CompletionOutcome, Value};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::oneshot;

/// Client-result invocations one node awaits at once; beyond it new ones fail at once.
pub const MAX_PENDING_CLIENT_RESULTS: usize = 65_536;

/// Why awaiting a client result failed. The texts are the official server's where it has one.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ClientResultError {
    /// No node has a connection with that id.
    #[error("Connection '{0}' does not exist.")]
    NoSuchConnection(String),
    /// The connection closed before it answered.
    #[error("Connection '{0}' disconnected.")]
    Disconnected(String),
    /// The client answered with an error; the text is the client's, verbatim.
    #[error("{0}")]
    Client(String),
    /// The client's result does not convert to the type the caller asked for.
    #[error("Client result wasn't deserializable to {0}.")]
    NotDeserializable(&'static str),
    /// The client did not answer within the client-result timeout.
    #[error("Connection '{connection}' did not provide a result within {timeout:?}.")]
    Timeout { connection: String, timeout: Duration },
    /// The node that hosts the connection did not confirm it received the invocation within
    /// the group-ack timeout (it died, or is cut off from the backplane).
    #[error("The server of connection '{connection}' did not answer within {timeout:?}.")]
    Unanswered { connection: String, timeout: Duration },
    /// This node already awaits [`MAX_PENDING_CLIENT_RESULTS`] results.
    #[error("Too many client results are pending on this node.")]
    Overloaded,
    /// The invocation could not be encoded.
    #[error("The invocation could not be encoded: {0}")]
    Encode(String),
    /// The invocation could not be published to the connection's node.
    #[error("backplane: {0}")]
    Backplane(String),
}

/// How an awaited invocation ended, as the host node reports it to the origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientOutcome {
    /// The client's result; `Nil` when it sent none.
    Value(Value),
    /// The client's error text.
    Error(String),
    NoSuchConnection,
    Disconnected,
    /// The host node gave up waiting (its own client-result timeout).
    Timeout,
    /// The node awaiting it had no room for another pending result.
    Overloaded,
}

impl From<CompletionOutcome> for ClientOutcome {
    fn from(outcome: CompletionOutcome) -> Self {
        match outcome {
            CompletionOutcome::Void => Self::Value(Value::Nil),
            CompletionOutcome::Value(value) => Self::Value(value),
            CompletionOutcome::Error(text) => Self::Error(text),
        }
    }
}

impl ClientOutcome {
    /// The caller's view: the result converted to `R`, or why there is none.
    pub fn into_result<R: serde::de::DeserializeOwned>(
        self,
        connection: &str,
        timeout: Duration,
    ) -> Result<R, ClientResultError> {
        match self {
            Self::Value(value) => protocol::value::from_value(value)
                .map_err(|_| ClientResultError::NotDeserializable(std::any::type_name::<R>())),
            Self::Error(text) => Err(ClientResultError::Client(text)),
            Self::NoSuchConnection => Err(ClientResultError::NoSuchConnection(connection.to_owned())),
            Self::Disconnected => Err(ClientResultError::Disconnected(connection.to_owned())),
            Self::Timeout => Err(ClientResultError::Timeout { connection: connection.to_owned(), timeout }),
            Self::Overloaded => Err(ClientResultError::Overloaded),
        }
    }
}

struct Pending {
    connection: String,
    answer: oneshot::Sender<ClientOutcome>,
    /// Fired when the host node confirms it queued the invocation (remote invocations).
    receipt: Option<oneshot::Sender<()>>,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<String, Pending>,
    /// Ids awaited per connection, only for connections that have any.
    by_connection: HashMap<String, Vec<String>>,
}

impl Table {
    fn take(&mut self, id: &str) -> Option<Pending> {
        let pending = self.by_id.remove(id)?;
        if let Some(ids) = self.by_connection.get_mut(&pending.connection) {
            ids.retain(|other| other != id);
            if ids.is_empty() {
                self.by_connection.remove(&pending.connection);
            }
        }
        Some(pending)
    }
}

/// The invocations this node awaits a Completion for, node-wide and bounded.
pub(crate) struct PendingResults {
    table: Mutex<Table>,
    next: AtomicU64,
    limit: usize,
}

/// A registered invocation: its id and where its outcome arrives. Dropping it forgets the
/// entry, so a waiter that gives up or is cancelled never leaves it behind.
pub(crate) struct Awaited<'a> {
    results: &'a PendingResults,
    pub id: String,
    outcome: Option<oneshot::Receiver<ClientOutcome>>,
    receipt: Option<oneshot::Receiver<()>>,
}

impl Awaited<'_> {
    /// Where the outcome arrives; `None` once taken.
    pub fn take_outcome(&mut self) -> Option<oneshot::Receiver<ClientOutcome>> {
        self.outcome.take()
    }

    /// Resolves when the host node confirmed the invocation ([`PendingResults::received`]),
    /// and also (closed) once the entry was resolved or forgotten; `None` once taken.
    pub fn take_receipt(&mut self) -> Option<oneshot::Receiver<()>> {
        self.receipt.take()
    }
}

impl Drop for Awaited<'_> {
    fn drop(&mut self) {
        self.results.forget(&self.id);
    }
}

impl PendingResults {
    pub fn new(limit: usize) -> Self {
        Self { table: Mutex::new(Table::default()), next: AtomicU64::new(0), limit }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh invocation id, unique in the cluster because it names this node.
    pub fn new_id(&self, node: &str) -> String {
        format!("{node}.{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Registers an invocation sent to `connection` under `id`; `None` when the table is full
    /// or the id is already awaited.
    pub fn register(&self, id: &str, connection: &str) -> Option<Awaited<'_>> {
        let mut table = self.lock();
        if table.by_id.len() >= self.limit || table.by_id.contains_key(id) {
            return None;
        }
        let (answer, outcome) = oneshot::channel();
        let (receipt, received) = oneshot::channel();
        let pending = Pending { connection: connection.to_owned(), answer, receipt: Some(receipt) };
        table.by_id.insert(id.to_owned(), pending);
        table.by_connection.entry(connection.to_owned()).or_default().push(id.to_owned());
        Some(Awaited { results: self, id: id.to_owned(), outcome: Some(outcome), receipt: Some(received) })
    }

    /// The host node confirmed it queued `id` for its client, if `sent_to` accepts the
    /// connection it was sent to; anything else is ignored. Returns whether a waiter heard it.
    pub fn received(&self, id: &str, sent_to: impl FnOnce(&str) -> bool) -> bool {
        let receipt = match self.lock().by_id.get_mut(id) {
            Some(pending) if sent_to(&pending.connection) => pending.receipt.take(),
            _ => None,
        };
        receipt.is_some_and(|receipt| receipt.send(()).is_ok())
    }

    /// Resolves `id` if `sent_to` accepts the connection it was sent to; anything else is
    /// ignored. Returns whether a waiter was resolved.
    pub fn complete(&self, id: &str, sent_to: impl FnOnce(&str) -> bool, outcome: ClientOutcome) -> bool {
        let pending = {
            let mut table = self.lock();
            match table.by_id.get(id) {
                Some(pending) if sent_to(&pending.connection) => table.take(id),
                _ => None,
            }
        };
        match pending {
            // The waiter may have given up meanwhile; then nobody needs the outcome.
            Some(pending) => pending.answer.send(outcome).is_ok(),
            None => false,
        }
    }

    /// Forgets `id` without resolving it (its waiter gave up); nothing if it is gone already.
    fn forget(&self, id: &str) {
        self.lock().take(id);
    }

    /// Fails every invocation awaited from `connection`: it is gone.
    pub fn disconnected(&self, connection: &str) {
        let pending: Vec<Pending> = {
            let mut table = self.lock();
            if table.by_connection.is_empty() {
                return;
            }
            let ids = table.by_connection.remove(connection).unwrap_or_default();
            ids.iter().filter_map(|id| table.by_id.remove(id)).collect()
        };
        for pending in pending {
            let _ = pending.answer.send(ClientOutcome::Disconnected);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let table = self.lock();
        table.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_connection_it_was_sent_to_can_complete_it() {
        let results = PendingResults::new(8);
        let mut awaited = results.register("n.0", "a").unwrap();
        let mut outcome = awaited.take_outcome().unwrap();
        assert!(!results.complete("n.0", |c| c == "b", ClientOutcome::Value(Value::from(1))));
        assert!(!results.complete("n.1", |c| c == "a", ClientOutcome::Value(Value::from(1))));
        assert!(outcome.try_recv().is_err());
        assert!(results.complete("n.0", |c| c == "a", ClientOutcome::Value(Value::from(2))));
        assert_eq!(outcome.try_recv().unwrap(), ClientOutcome::Value(Value::from(2)));
        assert_eq!(results.len(), 0);
    }

    #[test]
    fn a_disconnect_fails_exactly_that_connections_invocations() {
        let results = PendingResults::new(8);
        let mut outcomes = ["n.0", "n.1"].map(|id| results.register(id, "a").unwrap());
        let mut other = results.register("n.2", "b").unwrap();
        results.disconnected("a");
        for awaited in &mut outcomes {
            assert_eq!(awaited.take_outcome().unwrap().try_recv().unwrap(), ClientOutcome::Disconnected);
        }
        assert!(other.take_outcome().unwrap().try_recv().is_err());
        assert_eq!(results.len(), 1);
        drop(other);
        assert_eq!(results.len(), 0);
        assert!(results.lock().by_connection.is_empty());
    }

    #[test]
    fn a_receipt_counts_only_from_the_connection_it_was_sent_to_and_ends_with_the_entry() {
        let results = PendingResults::new(8);
        let mut awaited = results.register("n.0", "a").unwrap();
        let mut receipt = awaited.take_receipt().unwrap();
        assert!(!results.received("n.0", |c| c == "b"));
        assert!(receipt.try_recv().is_err());
        assert!(results.received("n.0", |c| c == "a"));
        assert_eq!(receipt.try_recv(), Ok(()));
        assert!(!results.received("n.0", |c| c == "a"), "one receipt per invocation");

        let mut unconfirmed = results.register("n.1", "a").unwrap();
        let mut receipt = unconfirmed.take_receipt().unwrap();
        assert!(results.complete("n.1", |c| c == "a", ClientOutcome::NoSuchConnection));
        assert!(receipt.try_recv().is_err_and(|e| e == oneshot::error::TryRecvError::Closed));
    }

    #[test]
    fn the_table_is_bounded_and_ids_are_unique() {
        let results = PendingResults::new(1);
        let _held = results.register("n.0", "a").unwrap();
        assert!(results.register("n.0", "b").is_none());
        assert!(results.register("n.1", "b").is_none());
        assert_ne!(results.new_id("n"), results.new_id("n"));
    }

    #[test]
    fn outcomes_become_the_official_texts() {
        let timeout = Duration::from_secs(1);
        let error = ClientOutcome::Value(Value::from("x")).into_result::<i64>("c", timeout).unwrap_err();
        assert_eq!(error.to_string(), "Client result wasn't deserializable to i64.");
        let error = ClientOutcome::Disconnected.into_result::<i64>("c", timeout).unwrap_err();
        assert_eq!(error.to_string(), "Connection 'c' disconnected.");
        let error = ClientOutcome::NoSuchConnection.into_result::<i64>("c", timeout).unwrap_err();
        assert_eq!(error.to_string(), "Connection 'c' does not exist.");
        let error = ClientOutcome::Error("Error: from callback".into()).into_result::<i64>("c", timeout).unwrap_err();
        assert_eq!(error.to_string(), "Error: from callback");
        assert_eq!(ClientOutcome::from(CompletionOutcome::Void).into_result::<Option<i64>>("c", timeout), Ok(None));
    }
}
