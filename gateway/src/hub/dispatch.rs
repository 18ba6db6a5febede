//! Turning one Invocation into at most one Completion.

use protocol::{Completion, CompletionOutcome, Invocation};
use tracing::{debug, warn};

use super::error::unknown_method_text;
use super::{Hub, HubContext, HubError, Reply};

/// Runs the invoked method. Returns the Completion to send, or `None` for a fire-and-forget
/// call (which gets no reply at all, not even on error).
pub(crate) async fn invoke(
    hub: &Hub,
    context: HubContext,
    invocation: Invocation,
    detailed: bool,
) -> Option<Completion> {
    let Invocation { invocation_id, target, arguments, stream_ids, .. } = invocation;
    let outcome = match hub.method(&target) {
        None => CompletionOutcome::Error(unknown_method_text(&target)),
        Some(_) if !stream_ids.is_empty() => {
            let error = HubError::hub(format!("Client sent {} stream(s), Hub method expects 0.", stream_ids.len()));
            CompletionOutcome::Error(error.client_text(&target, detailed))
        }
        Some(method) => match method(context, arguments).await {
            Ok(Reply::Void) => CompletionOutcome::Void,
            Ok(Reply::Value(value)) => CompletionOutcome::Value(value),
            Err(error) => {
                match &error {
                    HubError::Internal(detail) => {
                        warn!(method = %target, error = %detail, "hub method failed")
                    }
                    other => {
                        debug!(method = %target, error = %other, "hub method refused the call")
                    }
                }
                CompletionOutcome::Error(error.client_text(&target, detailed))
            }
        },
    };
    invocation_id.map(|id| Completion::new(id, outcome))
}

/// The reply to a StreamInvocation while no hub method streams.
pub(crate) fn refuse_stream_invocation(hub: &Hub, invocation: &Invocation) -> Option<Completion> {
    let text = match hub.method(&invocation.target) {
        None => unknown_method_text(&invocation.target),
        Some(_) => format!(
            "The client attempted to invoke the non-streaming '{}' method with a streaming invocation.",
            invocation.target
        ),
    };
    let id = invocation.invocation_id.clone()?;
    Some(Completion::new(id, CompletionOutcome::Error(text)))
}
