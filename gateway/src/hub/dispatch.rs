//! Turning one Invocation into at most one Completion, and one StreamInvocation into
//! StreamItems and a Completion.
//!
//! The session decides where calls run and feeds upload streams; this module decides what is
//! sent back, with the official server's texts.

use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt;
use protocol::{Completion, CompletionOutcome, HubMessage, Invocation, StreamItem, Value};
use thiserror::Error;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::error::unknown_method_text;
use super::{Hub, HubContext, HubError, ItemStream, Method, Reply, UploadReceiver};
use crate::metrics::InvocationOutcome;
use crate::upstream::Upstream;

/// Why a message of a stream could not be sent.
#[derive(Debug, Error)]
pub(crate) enum StreamSendError {
    /// The message could not be encoded in the connection's protocol.
    #[error("could not encode: {0}")]
    Encode(String),
    /// The connection is closing; nothing more reaches the client.
    #[error("the connection is closing")]
    Closed,
}

/// What runs a hub's calls: the seam between a connection's session and the logic behind its
/// hub. The session reads messages, schedules calls and writes what comes back; this decides
/// what a call does. An enum rather than a trait object, like the protocol crate's codecs: the
/// kinds are few and known to the gateway, and a match costs no allocation per call (every
/// relayed message is a call): the Rust method table, and a backend reached over HTTP.
#[derive(Clone)]
pub(crate) enum HubLogic {
    /// Typed Rust methods and hooks ([`Hub`]).
    Methods(Hub),
    /// An upstream backend ([`super::upstream`]).
    Upstream(Arc<Upstream>),
}

impl From<Hub> for HubLogic {
    fn from(hub: Hub) -> Self {
        Self::Methods(hub)
    }
}

impl HubLogic {
    /// Runs after a connection's handshake, before its first message is handled.
    pub async fn connected(&self, context: HubContext) {
        match self {
            Self::Methods(hub) => hub.connected(context).await,
            Self::Upstream(upstream) => super::upstream::connected(upstream, &context).await,
        }
    }

    /// Runs once a connection is gone; `error` says why when it ended with one.
    pub async fn disconnected(&self, context: HubContext, error: Option<String>) {
        match self {
            Self::Methods(hub) => hub.disconnected(context).await,
            Self::Upstream(upstream) => super::upstream::disconnected(upstream.clone(), context, error),
        }
    }

    /// Whether calls of `method` must take effect in the order they were sent (the session
    /// then runs them in its reader; see `HubBuilder::ordered_method`). Every call of an
    /// upstream hub does: one connection's events reach its backend one at a time, in order.
    pub fn runs_in_order(&self, method: &str) -> bool {
        match self {
            Self::Methods(hub) => hub.runs_in_order(method),
            Self::Upstream(_) => true,
        }
    }
}

/// Where a stream's items go.
pub(crate) trait StreamSink: Send {
    /// Sends one message, waiting while the client is behind.
    fn send(&mut self, message: HubMessage) -> impl Future<Output = Result<(), StreamSendError>> + Send;
}

/// Runs the invoked method. Returns how it ended (for metrics) and the Completion to send, or
/// `None` for a fire-and-forget call (which gets no reply at all, not even on error).
pub(crate) async fn invoke(
    logic: &HubLogic,
    context: HubContext,
    invocation: Invocation,
    uploads: Vec<UploadReceiver>,
    detailed: bool,
) -> (InvocationOutcome, Option<Completion>) {
    let id = invocation.invocation_id.clone();
    let (counted, outcome) = match logic {
        HubLogic::Methods(hub) => {
            let Invocation { target, arguments, .. } = invocation;
            let (counted, outcome) = call_method(hub, context, &target, arguments, uploads, detailed).await;
            (counted, Some(outcome))
        }
        HubLogic::Upstream(upstream) => {
            super::upstream::invoke(upstream, &context, invocation, !uploads.is_empty()).await
        }
    };
    (counted, id.zip(outcome).map(|(id, outcome)| Completion::new(id, outcome)))
}

/// Runs a plain method of a Rust method table.
async fn call_method(
    hub: &Hub,
    context: HubContext,
    target: &str,
    arguments: Vec<Value>,
    uploads: Vec<UploadReceiver>,
    detailed: bool,
) -> (InvocationOutcome, CompletionOutcome) {
    match hub.method(target) {
        None => (InvocationOutcome::UnknownMethod, CompletionOutcome::Error(unknown_method_text(target))),
        Some(Method::Streaming(_)) => (
            InvocationOutcome::WrongKind,
            CompletionOutcome::Error(format!(
                "The client attempted to invoke the streaming '{target}' method with a non-streaming invocation."
            )),
        ),
        Some(Method::Plain(call) | Method::InOrder(call)) => match call(context, arguments, uploads).await {
            Ok(Reply::Void) => (InvocationOutcome::Ok, CompletionOutcome::Void),
            Ok(Reply::Value(value)) => (InvocationOutcome::Ok, CompletionOutcome::Value(value)),
            Err(error) => {
                log_failure(target, &error);
                (InvocationOutcome::Error, CompletionOutcome::Error(error.client_text(target, detailed)))
            }
        },
    }
}

/// Runs a StreamInvocation to its end: starts the method, sends each item through `send`, and
/// returns the Completion that ends the call. `cancel` (the context's token) stops it at any
/// point; the Completion is then sent without an error, as the official server does.
/// `start_slot` (an invocation slot) is released once the stream has started. Also returns how
/// the call ended, for metrics (a cancelled stream ended normally).
pub(crate) async fn stream(
    logic: &HubLogic,
    context: HubContext,
    invocation: Invocation,
    uploads: Vec<UploadReceiver>,
    start_slot: OwnedSemaphorePermit,
    detailed: bool,
    sink: &mut impl StreamSink,
) -> (InvocationOutcome, Completion) {
    let Invocation { invocation_id, target, arguments, .. } = invocation;
    let id = invocation_id.unwrap_or_default();
    let cancel = context.cancellation();
    let started = tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        started = start_stream(logic, context, &target, arguments, uploads, detailed) => Some(started),
    };
    drop(start_slot);
    let (counted, outcome) = match started {
        None => (InvocationOutcome::Ok, CompletionOutcome::Void),
        Some(Err((counted, text))) => (counted, CompletionOutcome::Error(text)),
        Some(Ok(items)) => match send_items(items, &id, &target, &cancel, detailed, sink).await {
            error @ CompletionOutcome::Error(_) => (InvocationOutcome::Error, error),
            ended => (InvocationOutcome::Ok, ended),
        },
    };
    (counted, Completion::new(id, outcome))
}

/// Starts a streaming method: its items, or why and with which text the call ends at once.
async fn start_stream(
    logic: &HubLogic,
    context: HubContext,
    target: &str,
    arguments: Vec<Value>,
    uploads: Vec<UploadReceiver>,
    detailed: bool,
) -> Result<ItemStream, (InvocationOutcome, String)> {
    let hub = match logic {
        HubLogic::Methods(hub) => hub,
        HubLogic::Upstream(_) => {
            let text = format!("The client attempted to stream '{target}', and upstream hubs do not stream.");
            return Err((InvocationOutcome::WrongKind, text));
        }
    };
    let call = match hub.method(target) {
        None => return Err((InvocationOutcome::UnknownMethod, unknown_method_text(target))),
        Some(Method::Plain(_) | Method::InOrder(_)) => {
            return Err((
                InvocationOutcome::WrongKind,
                format!(
                    "The client attempted to invoke the non-streaming '{target}' method with a streaming invocation."
                ),
            ))
        }
        Some(Method::Streaming(call)) => call,
    };
    call(context, arguments, uploads).await.map_err(|error| {
        log_failure(target, &error);
        (InvocationOutcome::Error, error.client_text(target, detailed))
    })
}

/// Sends items until the stream ends, fails or is cancelled.
async fn send_items(
    mut items: ItemStream,
    id: &str,
    target: &str,
    cancel: &CancellationToken,
    detailed: bool,
    sink: &mut impl StreamSink,
) -> CompletionOutcome {
    loop {
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => return CompletionOutcome::Void,
            next = items.next() => next,
        };
        let error = match next {
            None => return CompletionOutcome::Void,
            Some(Ok(item)) => match sink.send(stream_item(id, item)).await {
                Ok(()) => continue,
                Err(StreamSendError::Closed) => return CompletionOutcome::Void,
                Err(error @ StreamSendError::Encode(_)) => HubError::internal(error),
            },
            Some(Err(error)) => error,
        };
        log_failure(target, &error);
        return CompletionOutcome::Error(error.streaming_text(detailed));
    }
}

fn stream_item(id: &str, item: Value) -> HubMessage {
    HubMessage::StreamItem(StreamItem { headers: Default::default(), invocation_id: id.to_owned(), item })
}

fn log_failure(method: &str, error: &HubError) {
    match error {
        HubError::Internal(detail) => warn!(%method, error = %detail, "hub method failed"),
        other => debug!(%method, error = %other, "hub method refused the call"),
    }
}
