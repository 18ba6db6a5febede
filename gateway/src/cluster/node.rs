//! This node: its id, its way to the other nodes (requests published on a node's own channel
//! and answered on the asker's), and the invocations it awaits from clients.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backplane::channels::Channels;
use backplane::{Backplane, BackplaneError, Directory, Presence, UserGroups};
use tokio::sync::oneshot;
use tracing::debug;

use super::client_results::{Awaited, ClientOutcome, PendingResults};
use super::envelope::{Body, Envelope};
use super::{ClientResultError, Encoded, GroupError, MAX_PENDING_CLIENT_RESULTS};
use crate::metrics::{Metrics, Stats};

/// This node: its id, its way to the others, and its outstanding requests to them.
pub(crate) struct Node {
    pub id: String,
    pub backplane: Arc<dyn Backplane>,
    /// Where this node reports its connections and group memberships (never waits); `None`
    /// for a node that shares presence with nobody (its registries answer queries, see
    /// [`RegistryPresence`]).
    pub presence: Option<Arc<dyn Presence>>,
    /// Group memberships of users, read when a user's connection starts.
    pub user_groups: Arc<dyn UserGroups>,
    /// Where connections live when nodes are stateless (`--cluster-secret`): a connection may
    /// be held by another node than the one its id names. `None`: ids name their holder.
    pub directory: Option<Arc<dyn Directory>>,
    /// Holders read from the directory (connections never move), bounded.
    holders: Mutex<HashMap<String, String>>,
    pub channels: Channels,
    /// Shared with the metrics collector, which reads it at each scrape.
    pub stats: Arc<Stats>,
    pub metrics: Arc<Metrics>,
    /// How long a group change for a connection on another node may wait for its ack.
    pub group_ack_timeout: Duration,
    /// How long an invocation awaited from a client may go unanswered.
    pub client_result_timeout: Duration,
    /// Invocations awaited from clients: this node's own, and other nodes' for local clients.
    pub(super) results: PendingResults,
    acks: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next_request: AtomicU64,
}

impl Node {
    pub fn new(
        id: String,
        backplane: Arc<dyn Backplane>,
        stores: Stores,
        channels: Channels,
        group_ack_timeout: Duration,
        client_result_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let Stores { presence, user_groups, directory } = stores;
        Self {
            id,
            backplane,
            presence,
            user_groups,
            directory,
            holders: Mutex::new(HashMap::new()),
            channels,
            stats: Arc::new(Stats::default()),
            metrics,
            group_ack_timeout,
            client_result_timeout,
            results: PendingResults::new(MAX_PENDING_CLIENT_RESULTS),
            acks: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(0),
        }
    }

    /// A fresh connection id. It names this node, so any node can route to the connection
    /// without a directory: `{node id}.{22 random characters}`. (With stateless nodes another
    /// node may open it; that node records itself in the [`Node::directory`].)
    pub fn new_connection_id(&self) -> String {
        crate::ids::connection_id(&self.id)
    }

    /// The node that holds `connection`, asked of the directory when nodes are stateless and
    /// otherwise read from the id. Directory answers are cached; a failed read falls back to
    /// the id (the node that negotiated it).
    pub async fn holder_of(&self, connection: &str) -> Option<String> {
        let named = crate::ids::host_of(connection).map(str::to_owned);
        let Some(directory) = &self.directory else { return named };
        if let Some(holder) = self.cached_holder(connection) {
            return Some(holder);
        }
        match directory.holder_of(connection).await {
            Ok(Some(record)) => {
                let holder = holder_node(&record).to_owned();
                let mut holders = self.holders.lock().unwrap_or_else(|p| p.into_inner());
                if holders.len() >= MAX_CACHED_HOLDERS {
                    holders.clear();
                }
                holders.insert(connection.to_owned(), holder.clone());
                Some(holder)
            }
            Ok(None) => named,
            Err(error) => {
                debug!(connection, %error, "directory unavailable; routing by the connection id");
                named
            }
        }
    }

    fn cached_holder(&self, connection: &str) -> Option<String> {
        self.holders.lock().unwrap_or_else(|p| p.into_inner()).get(connection).cloned()
    }

    /// Whether requests for `connection` go to `host` (see [`Node::holder_of`]).
    fn routes_to(&self, connection: &str, host: &str) -> bool {
        match self.cached_holder(connection) {
            Some(holder) => holder == host,
            None => crate::ids::host_of(connection) == Some(host),
        }
    }

    pub(super) async fn publish(&self, channel: &str, body: Body) -> Result<usize, BackplaneError> {
        let started = Instant::now();
        let published = self.backplane.publish(channel, Envelope::new(&self.id, body).encode()).await;
        self.metrics.published(started, published.is_ok());
        published
    }

    /// Asks `node` to add or remove one of its connections to or from a group, and waits for
    /// its answer.
    pub(super) async fn request_group_change(
        &self,
        node: &str,
        hub: &str,
        connection: &str,
        group: &str,
        join: bool,
    ) -> Result<(), GroupError> {
        let (hub, connection_id, group) = (hub.to_owned(), connection.to_owned(), group.to_owned());
        let make = |request| Body::GroupChange { request, hub, connection: connection_id, group, join };
        self.request(node, make).await.into_group_result(connection)
    }

    /// Asks `node` to remove one of its connections from every group, and waits for its answer.
    pub(super) async fn request_leave_all_groups(
        &self,
        node: &str,
        hub: &str,
        connection: &str,
    ) -> Result<(), GroupError> {
        let (hub, connection_id) = (hub.to_owned(), connection.to_owned());
        let make = |request| Body::LeaveAllGroups { request, hub, connection: connection_id };
        self.request(node, make).await.into_group_result(connection)
    }

    /// Asks `node` whether it has `connection` in `hub`.
    pub(super) async fn query_connection(&self, node: &str, hub: &str, connection: &str) -> Result<bool, GroupError> {
        let (hub, connection_id) = (hub.to_owned(), connection.to_owned());
        let make = |request| Body::ConnectionQuery { request, hub, connection: connection_id };
        match self.request(node, make).await {
            Answer::Ack(None) => Ok(true),
            Answer::Ack(Some(_)) | Answer::NoListener => Ok(false),
            Answer::TimedOut => Err(GroupError::Timeout(connection.into())),
            Answer::Failed(error) => Err(GroupError::Backplane(error)),
        }
    }

    /// Publishes the request `make` builds on `node`'s channel and waits (up to the group-ack
    /// timeout) for the node's ack.
    async fn request(&self, node: &str, make: impl FnOnce(u64) -> Body) -> Answer {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        self.lock_acks().insert(request, answer);
        let outcome = match self.publish(&self.channels.node(node), make(request)).await {
            Err(error) => Answer::Failed(error),
            // Nobody listens on that node's channel: the node, and so the connection, is gone.
            Ok(0) => Answer::NoListener,
            Ok(_) => match tokio::time::timeout(self.group_ack_timeout, answered).await {
                Ok(Ok(Reply::Ack(error))) => Answer::Ack(error),
                Ok(Ok(Reply::NoSuchConnection)) => Answer::NoListener,
                Ok(Err(_)) | Err(_) => Answer::TimedOut,
            },
        };
        self.lock_acks().remove(&request);
        outcome
    }

    fn lock_acks(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Reply>>> {
        self.acks.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn complete_request(&self, request: u64, reply: Reply) {
        if let Some(answer) = self.lock_acks().remove(&request) {
            let _ = answer.send(reply);
        }
    }

    /// Waits for the outcome of a registered invocation, up to the client-result timeout. The
    /// entry is forgotten however the wait ends, so a late Completion is ignored.
    pub(super) async fn await_outcome(&self, mut awaited: Awaited<'_>) -> ClientOutcome {
        let Some(outcome) = awaited.take_outcome() else { return ClientOutcome::Disconnected };
        match tokio::time::timeout(self.client_result_timeout, outcome).await {
            Ok(Ok(outcome)) => outcome,
            // The entry is only dropped unanswered when its connection went away.
            Ok(Err(_)) => ClientOutcome::Disconnected,
            Err(_) => ClientOutcome::Timeout,
        }
    }

    /// Sends an invocation to a connection hosted by `host` and awaits its outcome there.
    pub(super) async fn invoke_remote(
        &self,
        host: &str,
        hub: &str,
        connection: &str,
        invocation_id: &str,
        message: Encoded,
    ) -> Result<ClientOutcome, ClientResultError> {
        let mut awaited = self.results.register(invocation_id, connection).ok_or(ClientResultError::Overloaded)?;
        let body = Body::ClientInvoke {
            invocation_id: invocation_id.into(),
            hub: hub.into(),
            connection: connection.into(),
            message,
        };
        match self.publish(&self.channels.node(host), body).await {
            Ok(receivers) if receivers > 0 => {
                // Heard on the node's channel is not heard by the node: the subscription of a
                // node that died or is cut off may outlive it in Redis. A live host confirms
                // within the group-ack timeout (or answers at once).
                if !self.confirmed(&mut awaited).await {
                    let timeout = self.group_ack_timeout;
                    return Err(ClientResultError::Unanswered { connection: connection.into(), timeout });
                }
                Ok(self.await_outcome(awaited).await)
            }
            // Nobody listens on that node's channel: the node, and so the connection, is gone.
            Ok(_) => Ok(ClientOutcome::NoSuchConnection),
            Err(error) => Err(ClientResultError::Backplane(error.to_string())),
        }
    }

    /// Whether the host confirmed `awaited` (or already answered it) within the group-ack
    /// timeout.
    async fn confirmed(&self, awaited: &mut Awaited<'_>) -> bool {
        let Some(receipt) = awaited.take_receipt() else { return true };
        // Closed without a receipt: the entry was resolved meanwhile, its outcome is waiting.
        tokio::time::timeout(self.group_ack_timeout, receipt).await.is_ok()
    }

    /// Records that `host` queued an invocation this node sent it for its client.
    pub(super) fn receipt_remote(&self, host: &str, invocation_id: &str) {
        if !self.results.received(invocation_id, |connection| self.routes_to(connection, host)) {
            debug!(invocation_id, host, "client-result receipt for nothing awaited (answered, timed out or not ours)");
        }
    }

    /// Resolves an invocation this node sent to `host`, with the outcome `host` reported.
    pub(super) fn complete_remote(&self, host: &str, invocation_id: &str, outcome: ClientOutcome) {
        let sent_to_host = |connection: &str| self.routes_to(connection, host);
        if !self.results.complete(invocation_id, sent_to_host, outcome) {
            debug!(invocation_id, host, "client result for nothing awaited (timed out or not ours)");
        }
    }
}

/// Holders [`Node::holder_of`] remembers at most; the cache is emptied when full.
const MAX_CACHED_HOLDERS: usize = 65_536;

/// The stores a node shares with the others.
pub(crate) struct Stores {
    /// Presence reports; `None` for a node that shares presence with nobody.
    pub presence: Option<Arc<dyn Presence>>,
    pub user_groups: Arc<dyn UserGroups>,
    /// See [`Node::directory`].
    pub directory: Option<Arc<dyn Directory>>,
}

/// The node id of a directory record (`node-id address`).
pub(crate) fn holder_node(record: &str) -> &str {
    record.split_once(' ').map_or(record, |(node, _)| node)
}

/// The address of a directory record, where the holder takes forwarded requests.
pub(crate) fn holder_address(record: &str) -> Option<&str> {
    record.split_once(' ').map(|(_, address)| address).filter(|address| !address.is_empty())
}

/// What a node answered to a request.
#[derive(Debug)]
pub(super) enum Reply {
    /// Applied (`None`) or refused with the error text.
    Ack(Option<String>),
    /// The node does not have the connection.
    NoSuchConnection,
}

/// How a request to another node ended.
enum Answer {
    /// The node acknowledged: `None`, or `Some(error text)`.
    Ack(Option<String>),
    /// Nobody listens on the node's channel, or the node does not have the connection.
    NoListener,
    TimedOut,
    Failed(BackplaneError),
}

impl Answer {
    /// How a group change for `connection` ended, as seen by the node that asked.
    fn into_group_result(self, connection: &str) -> Result<(), GroupError> {
        match self {
            Answer::Ack(None) => Ok(()),
            Answer::Ack(Some(error)) => Err(GroupError::Remote(error)),
            Answer::NoListener => Err(GroupError::NoSuchConnection(connection.into())),
            Answer::TimedOut => Err(GroupError::Timeout(connection.into())),
            Answer::Failed(error) => Err(GroupError::Backplane(error)),
        }
    }
}
