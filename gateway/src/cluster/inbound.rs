//! What a node does with each envelope from the backplane: one handler per envelope body.
//! Deliveries are handed to local outbound queues without waiting; requests from other nodes
//! (group changes, queries, client invocations) are answered from tasks of their own, so the
//! reader of the inbound queue never waits on anything.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use backplane::Inbound;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::client_results::ClientOutcome;
use super::envelope::{Body, Envelope};
use super::node::Reply;
use super::{Encoded, GroupError, HubTable, Node};

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
        handle(&node, &hubs, envelope);
    }
}

/// Acts on one envelope: one handler per body. Bodies this node published itself are skipped
/// where they would otherwise apply twice (deliveries and closes already happened locally).
fn handle(node: &Arc<Node>, hubs: &Arc<HubTable>, envelope: Envelope) {
    let Envelope { origin, body, .. } = envelope;
    let own = origin == node.id;
    match body {
        Body::Deliver { hub, audience, excluded, message } if !own => match hubs.get(&hub) {
            Some(lifetime) => lifetime.deliver(&audience, &excluded, &message),
            None => debug!(%hub, "delivery for a hub with no local connections"),
        },
        Body::GroupChange { request, hub, connection, group, join } => {
            group_change(node, hubs, origin, request, (hub, connection, group), join)
        }
        Body::GroupAck { request, error } => node.complete_request(request, Reply::Ack(error)),
        Body::NoSuchConnection { request } => node.complete_request(request, Reply::NoSuchConnection),
        Body::ConnectionQuery { request, hub, connection } => {
            connection_query(node, hubs, origin, request, &hub, &connection)
        }
        Body::ClientInvoke { invocation_id, hub, connection, message } => {
            client_invoke(node, hubs, origin, invocation_id, (hub, connection), message)
        }
        Body::ClientResult { invocation_id, outcome } => node.complete_remote(&origin, &invocation_id, outcome),
        Body::ClientInvokeReceived { invocation_id } => node.receipt_remote(&origin, &invocation_id),
        Body::LeaveAllGroups { request, hub, connection } => {
            leave_all_groups(node, hubs, origin, request, hub, connection)
        }
        Body::CloseConnections { hub, audience, excluded, reason } if !own => {
            if let Some(lifetime) = hubs.get(&hub) {
                lifetime.close_audience_local(&audience, &excluded, reason);
            }
        }
        Body::UserGroupChange { hub, user, group, join } if !own => {
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
        Body::Deliver { .. } | Body::CloseConnections { .. } | Body::UserGroupChange { .. } => {}
    }
}

/// Another node asks to add or remove one of this node's connections to or from a group.
fn group_change(
    node: &Arc<Node>,
    hubs: &Arc<HubTable>,
    origin: String,
    request: u64,
    (hub, connection, group): (String, String, String),
    join: bool,
) {
    let hubs = hubs.clone();
    reply_to(node, origin, "group change applied but its ack could not be sent", async move {
        group_reply(request, apply_group_change(&hubs, &hub, &connection, &group, join).await)
    });
}

/// Another node asks whether this node has a connection.
fn connection_query(node: &Arc<Node>, hubs: &HubTable, origin: String, request: u64, hub: &str, connection: &str) {
    let here = hubs.get(hub).is_some_and(|lifetime| lifetime.has_local(connection));
    let ack = Body::GroupAck { request, error: (!here).then(|| "not here".to_owned()) };
    reply_to(node, origin, "connection query answer could not be sent", async move { ack });
}

/// Another node awaits a client result from one of this node's connections.
fn client_invoke(
    node: &Arc<Node>,
    hubs: &Arc<HubTable>,
    origin: String,
    invocation_id: String,
    (hub, connection): (String, String),
    message: Encoded,
) {
    let (hubs, host) = (hubs.clone(), node.clone());
    let reply = node.channels.node(&origin);
    reply_to(node, origin, "client result could not be returned to the awaiting node", async move {
        let Some(lifetime) = hubs.get(&hub) else {
            return Body::ClientResult { invocation_id, outcome: ClientOutcome::NoSuchConnection };
        };
        let awaited = match lifetime.invoke_local(&connection, &invocation_id, &message) {
            Ok(awaited) => awaited,
            Err(outcome) => return Body::ClientResult { invocation_id, outcome },
        };
        // The awaiting node gives up after the group-ack timeout unless it hears this.
        let receipt = Body::ClientInvokeReceived { invocation_id: invocation_id.clone() };
        if let Err(error) = host.publish(&reply, receipt).await {
            warn!(%error, "client-result receipt could not be sent to the awaiting node");
        }
        let outcome = host.await_outcome(awaited).await;
        Body::ClientResult { invocation_id, outcome }
    });
}

/// Another node asks to remove one of this node's connections from every group.
fn leave_all_groups(
    node: &Arc<Node>,
    hubs: &Arc<HubTable>,
    origin: String,
    request: u64,
    hub: String,
    connection: String,
) {
    let hubs = hubs.clone();
    reply_to(node, origin, "group removal applied but its ack could not be sent", async move {
        let result = match hubs.get(&hub) {
            Some(lifetime) => lifetime.leave_all_local(&connection).await,
            None => Err(GroupError::NoSuchConnection(connection)),
        };
        group_reply(request, result)
    });
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
