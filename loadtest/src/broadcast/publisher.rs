//! The publisher: one hub connection that sends `SendToGroup` invocations on an open-loop
//! schedule, and a reader that watches what the server sends back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::payload::{publish_record, Stamp};
use super::schedule::StepPlan;
use super::subscriber::Shared;
use crate::client::HubSocket;

/// What the server sent the publisher, as seen by its reader task.
#[derive(Debug, Default)]
pub struct PublisherInbox {
    /// Bytes received: the invocations are fire-and-forget, so anything but keep-alive pings
    /// here is an error report.
    pub bytes: AtomicU64,
    pub closed: AtomicBool,
}

/// How one step's publishing went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published {
    pub sent: u64,
    /// From the step's start until the last message was handed to the socket.
    pub elapsed: Duration,
    /// Latest a send happened after its due time (timer granularity, or a server that stopped
    /// reading).
    pub max_lag: Duration,
}

pub struct Publisher {
    sink: SplitSink<HubSocket, Message>,
    group: String,
    payload_bytes: usize,
    pub inbox: Arc<PublisherInbox>,
}

impl Publisher {
    /// Takes an open hub connection; spawns the task that reads its incoming side.
    pub fn new(socket: HubSocket, group: String, payload_bytes: usize) -> Self {
        let (sink, stream) = socket.split();
        let inbox = Arc::new(PublisherInbox::default());
        tokio::spawn(read_inbox(stream, inbox.clone()));
        Self { sink, group, payload_bytes, inbox }
    }

    /// Sends the step's messages, each at its due time or as soon after as possible. Every
    /// message carries the moment it is handed to the socket.
    pub async fn run_step(&mut self, plan: &StepPlan, shared: &Shared) -> anyhow::Result<Published> {
        let start = tokio::time::Instant::now();
        let mut sent = 0u64;
        let mut max_lag = Duration::ZERO;
        while sent < plan.messages {
            let due = start + plan.due(sent);
            tokio::time::sleep_until(due).await;
            let now = tokio::time::Instant::now();
            max_lag = max_lag.max(now - due);
            // Everything due by now goes out together, flushed once.
            let due_now = plan.due_by(now - start);
            while sent < due_now {
                let stamp = Stamp { step: plan.index, sequence: sent, sent_ns: shared.now_ns() };
                let record = publish_record(&self.group, &stamp.encode(self.payload_bytes));
                self.sink.feed(Message::Text(Utf8Bytes::from(record))).await.context("publisher: send")?;
                sent += 1;
            }
            self.sink.flush().await.context("publisher: flush")?;
            anyhow::ensure!(!self.inbox.closed.load(Ordering::Relaxed), "the server closed the publisher's connection");
        }
        Ok(Published { sent, elapsed: start.elapsed(), max_lag })
    }
}

async fn read_inbox(mut stream: SplitStream<HubSocket>, inbox: Arc<PublisherInbox>) {
    let started = Instant::now();
    while let Some(message) = stream.next().await {
        match message {
            Ok(Message::Text(text)) => {
                inbox.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
                if !text.as_str().starts_with("{\"type\":6}") {
                    eprintln!(
                        "broadcast: the server sent the publisher (after {:.1}s): {}",
                        started.elapsed().as_secs_f64(),
                        text.as_str().chars().take(300).collect::<String>()
                    );
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    inbox.closed.store(true, Ordering::Relaxed);
}
