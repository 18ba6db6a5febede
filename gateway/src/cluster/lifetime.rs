//! One hub's view of the cluster: local registry plus backplane channels.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use protocol::{Close, Completion, HubMessage, Invocation, Value};
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;
use tracing::{debug, warn};

use super::envelope::Body;
use super::registry::{Delivered, Join, Member, Registry};
use super::{
    check_group_name, Audience, Awaited, ClientOutcome, ClientResultError, Encoded, GroupError, Membership, Node,
    SendError,
};

/// A hub on this node: its local connections and its channels. It knows no hub definition:
/// what a connection's calls do is decided above, by the hub its endpoint serves.
pub struct HubLifetime {
    name: String,
    node: Arc<Node>,
    registry: Registry,
    all_channel: OnceCell<()>,
}

impl HubLifetime {
    pub(crate) fn new(name: String, node: Arc<Node>) -> Self {
        Self { name, node, registry: Registry::default(), all_channel: OnceCell::new() }
    }

    /// The hub's lower-case name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Who is connected to this hub on this node.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Connections of this hub on this node.
    pub fn local_connections(&self) -> usize {
        self.registry.len()
    }

    /// Registers a connection that completed its handshake.
    pub(crate) async fn connect(&self, id: Arc<str>, member: Member) {
        self.ensure_all_channel().await;
        if let Some(user) = &member.user {
            self.subscribe(&self.node.channels.hub_user(&self.name, user)).await;
        }
        if let Some(presence) = &self.node.presence {
            presence.connected(&self.name, &id, member.user.as_deref(), &self.node.id);
        }
        let user = member.user.clone();
        self.registry.insert(id.clone(), member);
        self.node.stats.connections.fetch_add(1, Ordering::Relaxed);
        if let Some(user) = user {
            self.join_user_groups(&id, &user).await;
        }
    }

    /// Puts a new connection of `user` in the groups the user was added to (server REST API).
    /// Registered first: a membership added meanwhile reaches it through the user's channel.
    async fn join_user_groups(&self, id: &str, user: &str) {
        let groups = match self.node.user_groups.groups_of(&self.name, user).await {
            Ok(groups) => groups,
            Err(error) => {
                warn!(hub = %self.name, %error, "the user's groups could not be read; the connection starts without them");
                return;
            }
        };
        for group in groups {
            if let Err(error) = self.add_local(id, &group, usize::MAX).await {
                debug!(hub = %self.name, connection = id, %group, %error, "user group not joined");
            }
        }
    }

    /// Forgets a connection: it leaves its groups and its user.
    pub(crate) async fn disconnect(&self, id: &str) {
        let Some((groups, user)) = self.registry.remove(id) else { return };
        if let Some(presence) = &self.node.presence {
            presence.disconnected(&self.name, id);
        }
        // After the removal: an invocation registered from now on finds no connection.
        self.node.results.disconnected(id);
        self.node.stats.connections.fetch_sub(1, Ordering::Relaxed);
        for group in groups {
            self.unsubscribe(&self.node.channels.hub_group(&self.name, &group)).await;
        }
        if let Some(user) = user {
            self.unsubscribe(&self.node.channels.hub_user(&self.name, &user)).await;
        }
    }

    /// Sends an invocation of `target` to `audience` on every node: local recipients get it
    /// queued at once, the rest of the cluster through one publish.
    pub async fn send(
        &self,
        audience: Audience,
        excluded: Vec<String>,
        target: &str,
        arguments: Vec<Value>,
    ) -> Result<(), SendError> {
        let message = HubMessage::Invocation(Invocation::call(target, arguments));
        let message = Encoded::new(&message).map_err(SendError::Encode)?;
        self.deliver(&audience, &excluded, &message);
        // None: a local connection (delivered above) or not a connection any node issued.
        let Some(channel) = self.channel_of(&audience).await else { return Ok(()) };
        let body = Body::Deliver { hub: self.name.clone(), audience, excluded, message };
        self.node.publish(&channel, body).await?;
        Ok(())
    }

    /// The channel other nodes with members of `audience` listen on; `None` for a connection
    /// on this node or with an id no node issued.
    async fn channel_of(&self, audience: &Audience) -> Option<String> {
        let channels = &self.node.channels;
        Some(match audience {
            Audience::All => channels.hub_all(&self.name),
            Audience::Group(group) => channels.hub_group(&self.name, group),
            Audience::User(user) => channels.hub_user(&self.name, user),
            Audience::Connection(id) => channels.node(&self.remote_host(id).await?),
        })
    }

    /// Ends every connection of `audience` on every node, but the excluded ones, with a Close
    /// (no reconnect) carrying `reason`: local ones at once, the rest through one publish.
    pub async fn close_connections(
        &self,
        audience: Audience,
        excluded: Vec<String>,
        reason: Option<String>,
    ) -> Result<(), SendError> {
        let close = close_message(reason.clone()).map_err(SendError::Encode)?;
        self.registry.close_audience(&audience, &excluded, &close);
        let Some(channel) = self.channel_of(&audience).await else { return Ok(()) };
        let body = Body::CloseConnections { hub: self.name.clone(), audience, excluded, reason };
        self.node.publish(&channel, body).await?;
        Ok(())
    }

    /// Ends the local connections of `audience` but the excluded ones (asked by another node).
    pub(crate) fn close_audience_local(&self, audience: &Audience, excluded: &[String], reason: Option<String>) {
        match close_message(reason) {
            Ok(close) => {
                self.registry.close_audience(audience, excluded, &close);
            }
            Err(error) => warn!(%error, "close message could not be encoded"),
        }
    }

    /// Removes a connection on any node from every group it is in. Returns once the change is
    /// in effect on the connection's node.
    pub async fn remove_from_all_groups(&self, connection_id: &str) -> Result<(), GroupError> {
        match self.remote_host(connection_id).await {
            Some(host) => self.node.request_leave_all_groups(&host, &self.name, connection_id).await,
            None => self.leave_all_local(connection_id).await,
        }
    }

    /// Adds `user` to `group`: every current connection of the user on every node joins, and
    /// unless `membership` is [`Membership::CurrentConnections`], so do the connections the
    /// user opens later until the membership expires. Local connections have joined when this
    /// returns; remote ones join as the nodes receive the change.
    pub async fn add_user_to_group(&self, user: &str, group: &str, membership: Membership) -> Result<(), GroupError> {
        check_group_name(group)?;
        if let Membership::For(ttl) = membership {
            // Stored first: a connection starting from now on reads it.
            self.node.user_groups.add(&self.name, user, group, Some(ttl)).await?;
        }
        self.change_user_groups(user, Some(group), true).await
    }

    /// Removes `user` from `group`: its stored membership and every current connection.
    pub async fn remove_user_from_group(&self, user: &str, group: &str) -> Result<(), GroupError> {
        check_group_name(group)?;
        self.node.user_groups.remove(&self.name, user, group).await?;
        self.change_user_groups(user, Some(group), false).await
    }

    /// Removes `user` from every group: its stored memberships and every current connection
    /// from every group it is in.
    pub async fn remove_user_from_all_groups(&self, user: &str) -> Result<(), GroupError> {
        self.node.user_groups.remove_all(&self.name, user).await?;
        self.change_user_groups(user, None, false).await
    }

    /// Applies a user group change here and tells the nodes with the user's connections.
    async fn change_user_groups(&self, user: &str, group: Option<&str>, join: bool) -> Result<(), GroupError> {
        self.apply_user_group_change(user, group, join).await;
        let body =
            Body::UserGroupChange { hub: self.name.clone(), user: user.into(), group: group.map(Into::into), join };
        self.node.publish(&self.node.channels.hub_user(&self.name, user), body).await?;
        Ok(())
    }

    /// Adds (`join`) or removes the local connections of `user` to or from `group`; with no
    /// group, removes them from every group. A connection that left meanwhile is skipped.
    pub(crate) async fn apply_user_group_change(&self, user: &str, group: Option<&str>, join: bool) {
        for connection in self.registry.connections_of(user) {
            let result = match (group, join) {
                (Some(group), true) => self.add_local(&connection, group, usize::MAX).await,
                (Some(group), false) => self.remove_local(&connection, group).await,
                (None, _) => self.leave_all_local(&connection).await,
            };
            match result {
                Ok(()) | Err(GroupError::NoSuchConnection(_)) => {}
                Err(error) => warn!(hub = %self.name, %connection, %error, "user group change not applied"),
            }
        }
    }

    /// Removes a local connection from every group it is in.
    pub(crate) async fn leave_all_local(&self, connection_id: &str) -> Result<(), GroupError> {
        let groups =
            self.registry.groups_of(connection_id).ok_or_else(|| GroupError::NoSuchConnection(connection_id.into()))?;
        for group in groups {
            match self.remove_local(connection_id, &group).await {
                // It disconnected meanwhile, which removed it from everything.
                Ok(()) | Err(GroupError::NoSuchConnection(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Invokes the client method `target` on one connection, on any node, and awaits the
    /// value the client returns, converted to `R`.
    ///
    /// Fails at once when no node has the connection; with the client's error text when its
    /// handler failed; when the connection closes first; and after the client-result timeout
    /// (`--client-result-timeout`, 30 s by default), after which a late answer is ignored.
    pub async fn invoke_client<R: DeserializeOwned>(
        &self,
        connection_id: &str,
        target: &str,
        arguments: Vec<protocol::Value>,
    ) -> Result<R, ClientResultError> {
        let invocation_id = self.node.results.new_id(&self.node.id);
        let invocation = Invocation {
            invocation_id: Some(invocation_id.clone()),
            target: target.to_owned(),
            arguments,
            ..Invocation::default()
        };
        let message =
            Encoded::new(&HubMessage::Invocation(invocation)).map_err(|e| ClientResultError::Encode(e.to_string()))?;
        let outcome = match self.remote_host(connection_id).await {
            None => self.await_local(connection_id, &invocation_id, &message).await,
            Some(host) => self.node.invoke_remote(&host, &self.name, connection_id, &invocation_id, message).await?,
        };
        outcome.into_result(connection_id, self.node.client_result_timeout)
    }

    /// Registers an awaited invocation and queues it for a local connection; the outcome is
    /// already known (`Err`) when the connection is not here or the node awaits too many.
    pub(crate) fn invoke_local(
        &self,
        connection_id: &str,
        invocation_id: &str,
        message: &Encoded,
    ) -> Result<Awaited<'_>, ClientOutcome> {
        let awaited = self.node.results.register(invocation_id, connection_id).ok_or(ClientOutcome::Overloaded)?;
        // Registered before queueing: the Completion may come back before this returns.
        let delivered = self.registry.deliver_to(connection_id, message).ok_or(ClientOutcome::NoSuchConnection)?;
        self.count(delivered);
        Ok(awaited)
    }

    /// Invokes a local connection (see [`HubLifetime::invoke_local`]) and awaits its outcome,
    /// up to the client-result timeout.
    pub(crate) async fn await_local(
        &self,
        connection_id: &str,
        invocation_id: &str,
        message: &Encoded,
    ) -> ClientOutcome {
        match self.invoke_local(connection_id, invocation_id, message) {
            Ok(awaited) => self.node.await_outcome(awaited).await,
            Err(outcome) => outcome,
        }
    }

    /// Hands a client's Completion to the invocation awaiting it. Ignored unless that
    /// invocation was sent to `connection_id` and is still awaited.
    pub(crate) fn complete_client_result(&self, connection_id: &str, completion: Completion) {
        let id = completion.invocation_id;
        if !self.node.results.complete(&id, |sent_to| sent_to == connection_id, completion.outcome.into()) {
            debug!(invocation_id = %id, "completion for no invocation awaited from this connection; ignored");
        }
    }

    /// Adds a connection on any node to a group. Returns once the change is in effect on the
    /// connection's node.
    pub async fn add_to_group(&self, connection_id: &str, group: &str) -> Result<(), GroupError> {
        self.add_to_group_within(connection_id, group, usize::MAX).await
    }

    /// Like [`HubLifetime::add_to_group`], failing with [`GroupError::TooManyGroups`] when the
    /// connection is in `max_groups` groups already. The limit holds for local connections
    /// (a hub method's caller always is); a change on another node is not limited.
    pub async fn add_to_group_within(
        &self,
        connection_id: &str,
        group: &str,
        max_groups: usize,
    ) -> Result<(), GroupError> {
        check_group_name(group)?;
        match self.remote_host(connection_id).await {
            Some(host) => self.node.request_group_change(&host, &self.name, connection_id, group, true).await,
            None => self.add_local(connection_id, group, max_groups).await,
        }
    }

    /// Removes a connection on any node from a group. Removing a non-member does nothing.
    pub async fn remove_from_group(&self, connection_id: &str, group: &str) -> Result<(), GroupError> {
        check_group_name(group)?;
        match self.remote_host(connection_id).await {
            Some(host) => self.node.request_group_change(&host, &self.name, connection_id, group, false).await,
            None => self.remove_local(connection_id, group).await,
        }
    }

    /// The node holding `connection_id` when it is not this one (see [`Node::holder_of`]).
    async fn remote_host(&self, connection_id: &str) -> Option<String> {
        if self.registry.contains(connection_id) {
            return None;
        }
        self.node.holder_of(connection_id).await.filter(|host| *host != self.node.id)
    }

    /// Adds a local connection to a group; the node receives the group's messages from then on.
    pub(crate) async fn add_local(
        &self,
        connection_id: &str,
        group: &str,
        max_groups: usize,
    ) -> Result<(), GroupError> {
        let channel = self.node.channels.hub_group(&self.name, group);
        // Subscribe first: the reference is dropped again below or when the connection leaves,
        // so the count can never go below the number of memberships.
        self.node.backplane.subscribe(&channel).await?;
        match self.registry.join(connection_id, group, max_groups) {
            Some(Join::Joined) => {
                if let Some(presence) = &self.node.presence {
                    presence.joined(&self.name, group, connection_id);
                }
                Ok(())
            }
            Some(Join::AlreadyMember) => {
                self.unsubscribe(&channel).await;
                Ok(())
            }
            Some(Join::Full) => {
                self.unsubscribe(&channel).await;
                Err(GroupError::TooManyGroups { group: group.to_owned(), limit: max_groups })
            }
            None => {
                self.unsubscribe(&channel).await;
                Err(GroupError::NoSuchConnection(connection_id.to_owned()))
            }
        }
    }

    pub(crate) async fn remove_local(&self, connection_id: &str, group: &str) -> Result<(), GroupError> {
        match self.registry.leave(connection_id, group) {
            Some(true) => {
                if let Some(presence) = &self.node.presence {
                    presence.left(&self.name, group, connection_id);
                }
                self.unsubscribe(&self.node.channels.hub_group(&self.name, group)).await;
                Ok(())
            }
            Some(false) => Ok(()),
            None => Err(GroupError::NoSuchConnection(connection_id.to_owned())),
        }
    }

    /// Ends a connection on any node with a Close (no reconnect) carrying `reason`. Returns
    /// whether a node may have it: `false` when it is not here and no node listens for it.
    pub async fn close_connection(&self, connection_id: &str, reason: Option<String>) -> Result<bool, SendError> {
        match self.remote_host(connection_id).await {
            Some(host) => {
                let body = Body::CloseConnection { hub: self.name.clone(), connection: connection_id.into(), reason };
                Ok(self.node.publish(&self.node.channels.node(&host), body).await? > 0)
            }
            None => Ok(self.close_local(connection_id, reason)),
        }
    }

    /// Whether a connection exists on any node: asked of the node its id names (connection ids
    /// carry their node), so no directory is needed. Fails when that node does not answer
    /// within the group-ack timeout.
    pub async fn connection_exists(&self, connection_id: &str) -> Result<bool, GroupError> {
        match self.remote_host(connection_id).await {
            Some(host) => self.node.query_connection(&host, &self.name, connection_id).await,
            None => Ok(self.has_local(connection_id)),
        }
    }

    /// Whether a connection of this hub is on this node.
    pub(crate) fn has_local(&self, connection_id: &str) -> bool {
        self.registry.contains(connection_id)
    }

    /// Ends a local connection with a Close carrying `reason`; `false` when it is not here.
    pub(crate) fn close_local(&self, connection_id: &str, reason: Option<String>) -> bool {
        match close_message(reason) {
            Ok(close) => self.registry.close(connection_id, &close),
            Err(error) => {
                warn!(%error, "close message could not be encoded");
                false
            }
        }
    }

    /// Queues an encoded message for the local connections of `audience`.
    pub(crate) fn deliver(&self, audience: &Audience, excluded: &[String], message: &Encoded) {
        let started = std::time::Instant::now();
        let delivered = self.registry.deliver(audience, excluded, message);
        self.node.metrics.fanned_out(started);
        self.count(delivered);
    }

    fn count(&self, delivered: Delivered) {
        let stats = &self.node.stats;
        if delivered.slow_consumers > 0 {
            stats.slow_consumers.fetch_add(delivered.slow_consumers, Ordering::Relaxed);
            warn!(hub = %self.name, count = delivered.slow_consumers, "slow consumers disconnected");
        }
    }

    async fn ensure_all_channel(&self) {
        let channel = self.node.channels.hub_all(&self.name);
        let result = self.all_channel.get_or_try_init(|| async { self.node.backplane.subscribe(&channel).await }).await;
        if let Err(error) = result {
            warn!(hub = %self.name, %error, "cannot subscribe to the hub channel; will retry on the next connection");
        }
    }

    async fn subscribe(&self, channel: &str) {
        if let Err(error) = self.node.backplane.subscribe(channel).await {
            warn!(channel, %error, "backplane subscribe failed; remote messages for it are missed");
        }
    }

    async fn unsubscribe(&self, channel: &str) {
        if let Err(error) = self.node.backplane.unsubscribe(channel).await {
            warn!(channel, %error, "backplane unsubscribe failed");
        }
    }
}

/// A Close without reconnect carrying `reason`, in every protocol.
fn close_message(reason: Option<String>) -> Result<Encoded, protocol::ProtocolError> {
    Encoded::new(&HubMessage::Close(Close { error: reason, allow_reconnect: false }))
}
