//! The inbound reader: fred's message stream into the node's bounded inbound queue.
//!
//! It never waits on the queue: a full queue drops the message and counts it, so one slow
//! consumer cannot stall the Redis connection. fred hands messages over a broadcast channel
//! that overwrites the oldest entries when this task falls behind; the gap arrives as
//! `Lagged(n)`, which is counted as `n` drops and logged, and reading goes on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use fred::types::{Message, Value};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::Delivery;

/// Runs until the subscriber client quits (its message stream closes).
pub(super) async fn run(
    mut messages: broadcast::Receiver<Message>,
    inbound: mpsc::Sender<Delivery>,
    dropped: Arc<AtomicU64>,
) {
    // Whether the previous message was dropped: a full queue is logged once per episode.
    let mut dropping = false;
    loop {
        match messages.recv().await {
            Ok(message) => {
                let Some(delivery) = delivery(message) else { continue };
                match inbound.try_send(delivery) {
                    Ok(()) => dropping = false,
                    Err(TrySendError::Full(_)) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        if !dropping {
                            tracing::warn!("redis backplane: inbound queue full, dropping messages");
                        }
                        dropping = true;
                    }
                    // Nobody reads this node's inbound queue any more: nothing to deliver to.
                    Err(TrySendError::Closed(_)) => {}
                }
            }
            Err(RecvError::Lagged(missed)) => {
                dropped.fetch_add(missed, Ordering::Relaxed);
                tracing::warn!(missed, "redis backplane: the reader fell behind, messages dropped");
            }
            Err(RecvError::Closed) => {
                tracing::debug!("redis backplane: message stream closed, reader stops");
                return;
            }
        }
    }
}

/// The payload as published. fred hands bulk strings over as `String` when they are UTF-8 and
/// `Bytes` otherwise; both share the received buffer.
fn delivery(message: Message) -> Option<Delivery> {
    let payload: Bytes = match message.value {
        Value::Bytes(bytes) => bytes,
        Value::String(text) => text.into_inner(),
        other => {
            tracing::warn!(channel = &*message.channel, kind = ?other.kind(), "redis backplane: unexpected message value, ignored");
            return None;
        }
    };
    Some(Delivery { channel: message.channel.to_string(), payload })
}
