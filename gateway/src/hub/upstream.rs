//! The upstream hub: a hub whose logic runs in a backend reached over HTTP (see
//! [`crate::upstream`]). Each client invocation becomes a `messages` event whose body is the
//! Invocation as the client sent it, in its protocol, without framing; the backend's answer
//! becomes the Completion. `connected` is sent before any of the connection's messages and
//! `disconnected` after the last, so one connection's events reach the backend one at a time,
//! in order (the session runs an upstream hub's calls in its reader: see
//! [`super::HubLogic::runs_in_order`]). Different connections never wait for each other.

use std::sync::Arc;

use protocol::{CompletionOutcome, HubMessage, Invocation, Protocol};
use tracing::{warn, Instrument};

use super::HubContext;
use crate::metrics::InvocationOutcome;
use crate::upstream::answer::{self, Reply};
use crate::upstream::request::Subject;
use crate::upstream::{Payload, Upstream};

/// The request fields that describe the caller of `context`.
fn subject<'a>(context: &'a HubContext, query: &'a str, category: &'a str, event: &'a str) -> Subject<'a> {
    Subject {
        connection_id: context.connection_id(),
        hub: context.hub_name(),
        category,
        event,
        user_id: context.user_id(),
        claims: context.claims(),
        query: Some(query).filter(|query| !query.is_empty()),
    }
}

/// Sends a client's invocation to the backend and turns the answer into its Completion
/// (`None` for a `send`, whose answer is read and dropped).
pub(crate) async fn invoke(
    upstream: &Upstream,
    context: &HubContext,
    invocation: Invocation,
    has_uploads: bool,
) -> (InvocationOutcome, Option<CompletionOutcome>) {
    let id = invocation.invocation_id.clone();
    if has_uploads {
        let text = "Invocation failed, upload streams are not supported by upstream hubs".to_owned();
        return (InvocationOutcome::WrongKind, id.map(|_| CompletionOutcome::Error(text)));
    }
    let protocol = context.wire_protocol();
    let target = invocation.target.clone();
    let Some(payload) = payload(protocol, invocation) else {
        let text = format!("An unexpected error occurred invoking '{target}' on the server.");
        return (InvocationOutcome::Error, id.map(|_| CompletionOutcome::Error(text)));
    };
    let query = context.query_string();
    let reply = upstream.call(&subject(context, &query, "messages", &target), payload).await;
    let reply = reply.unwrap_or_else(|| Reply::Answered { status: 404, body: Vec::new() });
    let Some(id) = id else { return (InvocationOutcome::Ok, None) };
    let outcome = answer::outcome(reply, protocol, &id);
    let counted = match outcome {
        CompletionOutcome::Error(_) => InvocationOutcome::Error,
        _ => InvocationOutcome::Ok,
    };
    (counted, Some(outcome))
}

/// The body of a `messages` event: the Invocation in the client's protocol, without framing.
fn payload(protocol: Protocol, invocation: Invocation) -> Option<Payload> {
    let framed = protocol.encode(&HubMessage::Invocation(invocation)).ok()?;
    let mut framer = protocol.framer(framed.len(), framed.as_ref().into());
    let record = framer.next_record().ok()??;
    Some(if protocol.is_text() { Payload::json(record.to_vec()) } else { Payload::messagepack(record.to_vec()) })
}

/// After the handshake: joins the groups the connect hook named, then tells the backend
/// (retried; awaited, so it arrives before the connection's first message).
pub(crate) async fn connected(upstream: &Upstream, context: &HubContext) {
    for group in context.admitted_groups() {
        if let Err(error) = context.groups().add(context.connection_id(), group).await {
            warn!(%group, %error, "could not join a group the connect hook named");
        }
    }
    let query = context.query_string();
    upstream.notify(&subject(context, &query, "connections", "connected"), Payload::json(Vec::new())).await;
}

/// Once the connection is gone: tells the backend in the background (retried), with the error
/// that ended the connection, if any, as `{"error": "…"}`.
pub(crate) fn disconnected(upstream: Arc<Upstream>, context: HubContext, error: Option<String>) {
    let body = match error {
        Some(error) => serde_json::to_vec(&serde_json::json!({ "error": error })).unwrap_or_default(),
        None => Vec::new(),
    };
    let task = async move {
        let query = context.query_string();
        upstream.notify(&subject(&context, &query, "connections", "disconnected"), Payload::json(body)).await;
    };
    tokio::spawn(task.in_current_span());
}
