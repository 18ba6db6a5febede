//! What a hub method can see and do: who called, and sending to clients or changing groups
//! anywhere in the cluster.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use protocol::Protocol;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::IntoArguments;
use crate::auth::Identity;
use crate::cluster::{Audience, ClientResultError, GroupError, HubLifetime, SendError};
use crate::request::ConnectionInfo;

/// The caller of a hub method and the hub it was called on. Cheap to clone; may be moved into
/// spawned tasks.
#[derive(Clone)]
pub struct HubContext {
    connection_id: Arc<str>,
    identity: Identity,
    lifetime: Arc<HubLifetime>,
    info: Arc<ConnectionInfo>,
    protocol: Protocol,
    /// Set per invocation; `None` in the connection hooks.
    cancellation: Option<CancellationToken>,
}

impl HubContext {
    pub(crate) fn new(
        connection_id: Arc<str>,
        identity: Identity,
        lifetime: Arc<HubLifetime>,
        info: Arc<ConnectionInfo>,
        protocol: Protocol,
    ) -> Self {
        Self { connection_id, identity, lifetime, info, protocol, cancellation: None }
    }

    /// The same caller, with the token [`HubContext::cancellation`] returns.
    pub(crate) fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancellation = Some(token);
        self
    }

    /// Cancelled when the work this context was made for should stop: for a streaming method,
    /// when the client cancels the stream (CancelInvocation) or the connection ends; for other
    /// methods, when the connection ends. In `on_connected` it is never cancelled; in
    /// `on_disconnected` it already is.
    pub fn cancellation(&self) -> CancellationToken {
        self.cancellation.clone().unwrap_or_default()
    }

    /// The caller's transport: `WebSockets`, `ServerSentEvents` or `LongPolling`.
    pub fn transport(&self) -> &'static str {
        self.info.transport.name()
    }

    /// The caller's hub protocol: `json` or `messagepack`.
    pub fn protocol(&self) -> &'static str {
        self.protocol.name()
    }

    /// A header of the request that started the caller's connection.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.info.header(name)
    }

    /// A cookie of the request that started the caller's connection.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.info.cookie(name)
    }

    /// A query parameter of the request that started the caller's connection (keys compared
    /// without regard to case).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.info.query.get(name)
    }

    /// The caller's public connection id (the `connectionId` clients see).
    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }

    /// The caller's user id, from its access token; `None` when anonymous.
    pub fn user_id(&self) -> Option<&str> {
        self.identity.user_id.as_deref()
    }

    /// The groups listed in the caller's access token (claim `--relay-groups-claim`, default
    /// `groups`); empty when anonymous or when the token lists none.
    pub fn token_groups(&self) -> &[Box<str>] {
        self.identity.groups.as_deref().unwrap_or_default()
    }

    /// The caller's token claims as (type, value) pairs; empty unless upstream webhooks are
    /// configured (only they need them).
    pub fn claims(&self) -> &[(Box<str>, Box<str>)] {
        self.identity.claims.as_deref().unwrap_or_default()
    }

    /// The caller's hub protocol itself.
    pub(crate) fn wire_protocol(&self) -> Protocol {
        self.protocol
    }

    /// The query of the request that started the caller's connection, without the
    /// transport's own parameters, as a query string (without `?`).
    pub(crate) fn query_string(&self) -> String {
        self.info.query.encode()
    }

    /// The groups a connect hook had the connection join before its first message.
    pub(crate) fn admitted_groups(&self) -> &[Box<str>] {
        &self.info.admitted_groups
    }

    /// The caller's rate-limit state (see [`super::policy`]), kept with its connection.
    pub(crate) fn rate_cell(&self) -> &AtomicU64 {
        &self.info.relay_rate
    }

    /// The hub's name (lower case).
    pub fn hub_name(&self) -> &str {
        self.lifetime.name()
    }

    /// Sending to connections of this hub.
    pub fn clients(&self) -> Clients<'_> {
        Clients { lifetime: &self.lifetime, caller: Some(&self.connection_id) }
    }

    /// Adding and removing connections to and from groups of this hub.
    pub fn groups(&self) -> Groups<'_> {
        Groups { lifetime: &self.lifetime }
    }

    /// Invokes the client method `target` on one connection of this hub, on any node, and
    /// awaits the value it returns (see [`HubLifetime::invoke_client`] for how it can fail).
    /// The caller itself may be the target: its Completion is read while this method waits.
    pub async fn invoke_client<R: DeserializeOwned>(
        &self,
        connection_id: &str,
        target: &str,
        arguments: impl IntoArguments,
    ) -> Result<R, ClientResultError> {
        let arguments = arguments.into_arguments().map_err(|e| ClientResultError::Encode(e.to_string()))?;
        self.lifetime.invoke_client(connection_id, target, arguments).await
    }

    /// Invokes the client method `target` on the caller and awaits the value it returns.
    pub async fn invoke_caller<R: DeserializeOwned>(
        &self,
        target: &str,
        arguments: impl IntoArguments,
    ) -> Result<R, ClientResultError> {
        self.invoke_client(&self.connection_id, target, arguments).await
    }
}

/// Chooses who receives a message.
pub struct Clients<'a> {
    pub(crate) lifetime: &'a HubLifetime,
    pub(crate) caller: Option<&'a str>,
}

impl<'a> Clients<'a> {
    fn to(&self, audience: Audience, excluded: Vec<String>) -> Recipients<'a> {
        Recipients { lifetime: self.lifetime, audience, excluded }
    }

    fn caller_only(&self) -> Vec<String> {
        self.caller.map(|id| vec![id.to_owned()]).unwrap_or_default()
    }

    /// Every connection of the hub.
    pub fn all(&self) -> Recipients<'a> {
        self.to(Audience::All, Vec::new())
    }

    /// Every connection but the caller.
    pub fn others(&self) -> Recipients<'a> {
        self.to(Audience::All, self.caller_only())
    }

    /// Every connection but the listed ones.
    pub fn all_except(&self, excluded: Vec<String>) -> Recipients<'a> {
        self.to(Audience::All, excluded)
    }

    /// The members of a group.
    pub fn group(&self, group: &str) -> Recipients<'a> {
        self.to(Audience::Group(group.to_owned()), Vec::new())
    }

    /// The members of a group but the caller.
    pub fn others_in_group(&self, group: &str) -> Recipients<'a> {
        self.to(Audience::Group(group.to_owned()), self.caller_only())
    }

    /// The members of a group but the listed connections.
    pub fn group_except(&self, group: &str, excluded: Vec<String>) -> Recipients<'a> {
        self.to(Audience::Group(group.to_owned()), excluded)
    }

    /// Every connection of a user, on every node.
    pub fn user(&self, user_id: &str) -> Recipients<'a> {
        self.to(Audience::User(user_id.to_owned()), Vec::new())
    }

    /// One connection, by its public id.
    pub fn connection(&self, connection_id: &str) -> Recipients<'a> {
        self.to(Audience::Connection(connection_id.to_owned()), Vec::new())
    }

    /// The caller itself.
    pub fn caller(&self) -> Recipients<'a> {
        self.to(Audience::Connection(self.caller.unwrap_or_default().to_owned()), Vec::new())
    }
}

/// A chosen audience, ready to receive a message.
pub struct Recipients<'a> {
    lifetime: &'a HubLifetime,
    audience: Audience,
    excluded: Vec<String>,
}

impl Recipients<'_> {
    /// Makes every recipient receive an invocation of its client method `target`. Returns once
    /// local recipients have the message queued and the backplane has accepted it for the rest
    /// of the cluster.
    pub async fn send(self, target: &str, arguments: impl IntoArguments) -> Result<(), SendError> {
        let arguments = arguments.into_arguments().map_err(SendError::Encode)?;
        self.lifetime.send(self.audience, self.excluded, target, arguments).await
    }
}

/// Group membership changes.
pub struct Groups<'a> {
    lifetime: &'a HubLifetime,
}

impl Groups<'_> {
    /// Adds a connection to a group; returns once the membership is in effect.
    pub async fn add(&self, connection_id: &str, group: &str) -> Result<(), GroupError> {
        self.lifetime.add_to_group(connection_id, group).await
    }

    /// Adds a connection to a group unless that would put it in more than `max_groups` groups
    /// (checked atomically on the connection's node).
    pub async fn add_within(&self, connection_id: &str, group: &str, max_groups: usize) -> Result<(), GroupError> {
        self.lifetime.add_to_group_within(connection_id, group, max_groups).await
    }

    /// Removes a connection from a group; returns once the change is in effect.
    pub async fn remove(&self, connection_id: &str, group: &str) -> Result<(), GroupError> {
        self.lifetime.remove_from_group(connection_id, group).await
    }
}
