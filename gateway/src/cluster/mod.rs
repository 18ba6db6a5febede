//! Delivery across the cluster: who receives a message, locally and on other nodes.
//!
//! Each hub has a [`HubLifetime`]: its local registry of connections, groups and users, plus the
//! node's backplane. A send is encoded once per protocol, queued directly for local recipients, then published
//! once as an [`envelope::Envelope`] on the audience's channel. Other nodes subscribed to that
//! channel deliver it to their local recipients; a node ignores envelopes it published itself, so
//! local recipients get each message exactly once and local delivery never waits for the
//! backplane.
//!
//! ```text
//! send ─► encode once per protocol ─► registry.deliver (local outbound queues, try-push)
//!                    └─► backplane.publish(channel, envelope) ─► other nodes ─► their registries
//! ```
//!
//! Requests that need an answer from the node hosting a connection (group changes, client
//! results) go to that node's own channel; the node is named in the connection id, so no
//! directory is needed. See [`client_results`] for invocations awaited from one client.

mod client_results;
mod encoded;
mod envelope;
mod lifetime;
mod local_presence;
mod registry;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use backplane::channels::Channels;
use backplane::{Backplane, BackplaneError, Inbound, Presence, UserGroups, UserGroupsError};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use client_results::{Awaited, ClientOutcome, PendingResults};
pub use client_results::{ClientResultError, MAX_PENDING_CLIENT_RESULTS};
pub(crate) use encoded::Encoded;
use envelope::{Body, Envelope};
pub use lifetime::HubLifetime;
pub(crate) use local_presence::RegistryPresence;
pub(crate) use registry::Member;

use crate::metrics::Metrics;
pub use crate::metrics::Stats;

/// Who a message is for. Exclusions travel beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Audience {
    /// Every connection of the hub.
    All,
    /// The members of a group.
    Group(String),
    /// The connections of a user.
    User(String),
    /// One connection, by public id.
    Connection(String),
}

/// Why a send failed. Local recipients may already have the message.
#[derive(Debug, Error)]
pub enum SendError {
    #[error("message could not be encoded: {0}")]
    Encode(protocol::ProtocolError),
    #[error("message could not be handed to the backplane: {0}")]
    Backplane(#[from] BackplaneError),
}

/// Why a group change failed.
#[derive(Debug, Error)]
pub enum GroupError {
    #[error("{0}")]
    InvalidName(&'static str),
    #[error("Connection '{0}' does not exist.")]
    NoSuchConnection(String),
    /// The node hosting the connection refused the change; the text is its error.
    #[error("{0}")]
    Remote(String),
    /// The node hosting the connection did not acknowledge the change in time.
    #[error("The group change for connection '{0}' was not acknowledged in time.")]
    Timeout(String),
    #[error("backplane: {0}")]
    Backplane(#[from] BackplaneError),
    /// The connection is in as many groups as allowed.
    #[error("joining group '{group}' would exceed the limit of {limit} groups per connection")]
    TooManyGroups { group: String, limit: usize },
    /// A user's membership could not be stored or removed (see [`UserGroups`]).
    #[error("user groups: {0}")]
    UserGroups(#[from] UserGroupsError),
}

/// How long adding a user to a group lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Only the user's connections that exist now join; later ones do not.
    CurrentConnections,
    /// Current connections join, and so do the user's connections opened within this time.
    For(Duration),
}

/// Longest group name accepted, in bytes.
pub const MAX_GROUP_NAME: usize = 1024;

/// Longest hub name served, in bytes (the relay hub's names under `/hubs/` and the REST API's
/// `{hub}`).
pub const MAX_HUB_NAME: usize = 128;

fn check_group_name(group: &str) -> Result<(), GroupError> {
    if group.is_empty() {
        return Err(GroupError::InvalidName("group name must not be empty"));
    }
    if group.len() > MAX_GROUP_NAME {
        return Err(GroupError::InvalidName("group name is longer than 1024 bytes"));
    }
    Ok(())
}

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
    pub channels: Channels,
    /// Shared with the metrics collector, which reads it at each scrape.
    pub stats: Arc<Stats>,
    pub metrics: Arc<Metrics>,
    /// How long a group change for a connection on another node may wait for its ack.
    pub group_ack_timeout: Duration,
    /// How long an invocation awaited from a client may go unanswered.
    pub client_result_timeout: Duration,
    /// Invocations awaited from clients: this node's own, and other nodes' for local clients.
    results: PendingResults,
    acks: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next_request: AtomicU64,
}

impl Node {
    pub fn new(
        id: String,
        backplane: Arc<dyn Backplane>,
        (presence, user_groups): (Option<Arc<dyn Presence>>, Arc<dyn UserGroups>),
        channels: Channels,
        group_ack_timeout: Duration,
        client_result_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            id,
            backplane,
            presence,
            user_groups,
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
    /// without a directory: `{node id}.{22 random characters}`.
    pub fn new_connection_id(&self) -> String {
        crate::ids::connection_id(&self.id)
    }

    async fn publish(&self, channel: &str, body: Body) -> Result<usize, BackplaneError> {
        let started = Instant::now();
        let published = self.backplane.publish(channel, Envelope::new(&self.id, body).encode()).await;
        self.metrics.published(started, published.is_ok());
        published
    }

    /// Asks `node` to add or remove one of its connections to or from a group, and waits for
    /// its answer.
    async fn request_group_change(
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
    async fn request_leave_all_groups(&self, node: &str, hub: &str, connection: &str) -> Result<(), GroupError> {
        let (hub, connection_id) = (hub.to_owned(), connection.to_owned());
        let make = |request| Body::LeaveAllGroups { request, hub, connection: connection_id };
        self.request(node, make).await.into_group_result(connection)
    }

    /// Asks `node` whether it has `connection` in `hub`.
    async fn query_connection(&self, node: &str, hub: &str, connection: &str) -> Result<bool, GroupError> {
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

    fn complete_request(&self, request: u64, reply: Reply) {
        if let Some(answer) = self.lock_acks().remove(&request) {
            let _ = answer.send(reply);
        }
    }

    /// Waits for the outcome of a registered invocation, up to the client-result timeout. The
    /// entry is forgotten however the wait ends, so a late Completion is ignored.
    async fn await_outcome(&self, mut awaited: Awaited<'_>) -> ClientOutcome {
        let Some(outcome) = awaited.take_outcome() else { return ClientOutcome::Disconnected };
        match tokio::time::timeout(self.client_result_timeout, outcome).await {
            Ok(Ok(outcome)) => outcome,
            // The entry is only dropped unanswered when its connection went away.
            Ok(Err(_)) => ClientOutcome::Disconnected,
            Err(_) => ClientOutcome::Timeout,
        }
    }

    /// Sends an invocation to a connection hosted by `host` and awaits its outcome there.
    async fn invoke_remote(
        &self,
        host: &str,
        hub: &str,
        connection: &str,
        invocation_id: &str,
        message: Encoded,
    ) -> Result<ClientOutcome, ClientResultError> {
        let awaited = self.results.register(invocation_id, connection).ok_or(ClientResultError::Overloaded)?;
        let body = Body::ClientInvoke {
            invocation_id: invocation_id.into(),
            hub: hub.into(),
            connection: connection.into(),
            message,
        };
        match self.publish(&self.channels.node(host), body).await {
            Ok(receivers) if receivers > 0 => Ok(self.await_outcome(awaited).await),
            // Nobody listens on that node's channel: the node, and so the connection, is gone.
            Ok(_) => Ok(ClientOutcome::NoSuchConnection),
            Err(error) => Err(ClientResultError::Backplane(error.to_string())),
        }
    }

    /// Resolves an invocation this node sent to `host`, with the outcome `host` reported.
    fn complete_remote(&self, host: &str, invocation_id: &str, outcome: ClientOutcome) {
        let sent_to_host = |connection: &str| crate::ids::host_of(connection) == Some(host);
        if !self.results.complete(invocation_id, sent_to_host, outcome) {
            debug!(invocation_id, host, "client result for nothing awaited (timed out or not ours)");
        }
    }
}

/// What a node answered to a request.
#[derive(Debug)]
enum Reply {
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

/// Hub lifetimes by (lower-case) name.
pub(crate) struct HubTable {
    node: Arc<Node>,
    hubs: RwLock<HashMap<String, Arc<HubLifetime>>>,
    limit: usize,
}

impl HubTable {
    pub fn new(node: Arc<Node>, limit: usize) -> Self {
        Self { node, hubs: RwLock::new(HashMap::new()), limit }
    }

    pub fn get(&self, name: &str) -> Option<Arc<HubLifetime>> {
        self.hubs.read().unwrap_or_else(|p| p.into_inner()).get(&name.to_lowercase()).cloned()
    }

    /// The lifetime of `name` if this node has one, else a detached lifetime that is not
    /// registered (so it counts against no limit): enough to publish to the cluster and to
    /// reach remote connections, e.g. for the server REST API.
    pub fn get_or_detached(&self, name: &str) -> Arc<HubLifetime> {
        self.get(name).unwrap_or_else(|| Arc::new(HubLifetime::new(name.to_lowercase(), self.node.clone())))
    }

    /// The lifetime of `name`, created if new; `None` when the hub limit is reached.
    pub fn get_or_insert(&self, name: &str) -> Option<Arc<HubLifetime>> {
        let name = name.to_lowercase();
        if let Some(existing) = self.get(&name) {
            return Some(existing);
        }
        let mut hubs = self.hubs.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = hubs.get(&name) {
            return Some(existing.clone());
        }
        if hubs.len() >= self.limit {
            return None;
        }
        let lifetime = Arc::new(HubLifetime::new(name.clone(), self.node.clone()));
        hubs.insert(name, lifetime.clone());
        Some(lifetime)
    }
}

/// Acts on every envelope from the backplane until shutdown. Deliveries are handed to local
/// outbound queues without waiting; group changes run in their own tasks.
pub(crate) async fn route_inbound(
    node: Arc<Node>,
    hubs: Arc<HubTable>,
    mut inbound: Inbound,
    shutdown: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => return,
            delivery = inbound.recv() => match delivery {
                Some(delivery) => delivery,
                None => return,
            },
        };
        node.metrics.received();
        let envelope = match Envelope::decode(&delivery.payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                node.stats.bad_envelopes.fetch_add(1, Ordering::Relaxed);
                warn!(channel = %delivery.channel, %error, "unreadable envelope dropped");
                continue;
            }
        };
        match envelope.body {
            Body::Deliver { .. } if envelope.origin == node.id => {}
            Body::Deliver { hub, audience, excluded, message } => match hubs.get(&hub) {
                Some(lifetime) => lifetime.deliver(&audience, &excluded, &message),
                None => debug!(%hub, "delivery for a hub with no local connections"),
            },
            Body::GroupChange { request, hub, connection, group, join } => {
                let hubs = hubs.clone();
                reply_to(&node, envelope.origin, "group change applied but its ack could not be sent", async move {
                    group_reply(request, apply_group_change(&hubs, &hub, &connection, &group, join).await)
                });
            }
            Body::GroupAck { request, error } => node.complete_request(request, Reply::Ack(error)),
            Body::NoSuchConnection { request } => node.complete_request(request, Reply::NoSuchConnection),
            Body::ConnectionQuery { request, hub, connection } => {
                let here = hubs.get(&hub).is_some_and(|lifetime| lifetime.has_local(&connection));
                let ack = Body::GroupAck { request, error: (!here).then(|| "not here".to_owned()) };
                reply_to(&node, envelope.origin, "connection query answer could not be sent", async move { ack });
            }
            Body::ClientInvoke { invocation_id, hub, connection, message } => {
                let hubs = hubs.clone();
                reply_to(
                    &node,
                    envelope.origin,
                    "client result could not be returned to the awaiting node",
                    async move {
                        let outcome = invoke_for_other_node(&hubs, &hub, &connection, &invocation_id, &message).await;
                        Body::ClientResult { invocation_id, outcome }
                    },
                );
            }
            Body::ClientResult { invocation_id, outcome } => {
                node.complete_remote(&envelope.origin, &invocation_id, outcome)
            }
            Body::LeaveAllGroups { request, hub, connection } => {
                let hubs = hubs.clone();
                reply_to(&node, envelope.origin, "group removal applied but its ack could not be sent", async move {
                    let result = match hubs.get(&hub) {
                        Some(lifetime) => lifetime.leave_all_local(&connection).await,
                        None => Err(GroupError::NoSuchConnection(connection)),
                    };
                    group_reply(request, result)
                });
            }
            Body::CloseConnections { .. } | Body::UserGroupChange { .. } if envelope.origin == node.id => {}
            Body::CloseConnections { hub, audience, excluded, reason } => {
                if let Some(lifetime) = hubs.get(&hub) {
                    lifetime.close_audience_local(&audience, &excluded, reason);
                }
            }
            Body::UserGroupChange { hub, user, group, join } => {
                if let Some(lifetime) = hubs.get(&hub) {
                    tokio::spawn(async move { lifetime.apply_user_group_change(&user, group.as_deref(), join).await });
                }
            }
            Body::CloseConnection { hub, connection, reason } => match hubs.get(&hub) {
                Some(lifetime) => {
                    lifetime.close_local(&connection, reason);
                }
                None => debug!(%hub, %connection, "close for a hub with no local connections"),
            },
        }
    }
}

/// Works out, in a task of its own, the answer to a request from node `origin` and publishes
/// it on that node's channel; `failure` is logged if it cannot be sent.
fn reply_to(
    node: &Arc<Node>,
    origin: String,
    failure: &'static str,
    answer: impl Future<Output = Body> + Send + 'static,
) {
    let node = node.clone();
    tokio::spawn(async move {
        let body = answer.await;
        if let Err(error) = node.publish(&node.channels.node(&origin), body).await {
            warn!(%error, "{failure}");
        }
    });
}

/// The answer to a group change asked by another node.
fn group_reply(request: u64, result: Result<(), GroupError>) -> Body {
    match result {
        Ok(()) => Body::GroupAck { request, error: None },
        Err(GroupError::NoSuchConnection(_)) => Body::NoSuchConnection { request },
        Err(error) => Body::GroupAck { request, error: Some(error.to_string()) },
    }
}

/// Invokes a local connection on behalf of the node awaiting its result.
async fn invoke_for_other_node(
    hubs: &HubTable,
    hub: &str,
    connection: &str,
    invocation_id: &str,
    message: &Encoded,
) -> ClientOutcome {
    match hubs.get(hub) {
        Some(lifetime) => lifetime.await_local(connection, invocation_id, message).await,
        None => ClientOutcome::NoSuchConnection,
    }
}

async fn apply_group_change(
    hubs: &HubTable,
    hub: &str,
    connection: &str,
    group: &str,
    join: bool,
) -> Result<(), GroupError> {
    let lifetime = hubs.get(hub).ok_or_else(|| GroupError::NoSuchConnection(connection.into()))?;
    if join {
        lifetime.add_local(connection, group, usize::MAX).await
    } else {
        lifetime.remove_local(connection, group).await
    }
}
