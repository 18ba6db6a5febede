//! The publisher: one hub connection (the library's client) that sends `SendToGroup`
//! invocations on an open-loop schedule, and watches what the server sends back.
//!
//! Messages due at the same moment are handed to the connection together; its driver writes
//! everything queued into a 64 KiB write buffer and flushes once, so a high rate costs one
//! system call per batch rather than per message.

use std::time::{Duration, Instant};

use anyhow::Context;
use protocol::{HubMessage, Protocol};

use super::payload::{publish_arguments, Stamp, PUBLISH_TARGET};
use super::schedule::StepPlan;
use super::subscriber::Shared;
use crate::signalr::{Connection, Event};

/// How one step's publishing went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published {
    pub sent: u64,
    /// From the step's start until the last message was handed to the connection.
    pub elapsed: Duration,
    /// Latest a send happened after its due time (timer granularity, or a server that stopped
    /// reading).
    pub max_lag: Duration,
}

pub struct Publisher {
    connection: Connection,
    group: String,
    payload_bytes: usize,
    /// When the publisher started, for the time stamps of what the server sends it.
    started: Instant,
    /// The server ended the publisher's connection.
    closed: bool,
}

impl Publisher {
    /// Takes an open hub connection.
    pub fn new(connection: Connection, group: String, payload_bytes: usize) -> Self {
        Self { connection, group, payload_bytes, started: Instant::now(), closed: false }
    }

    /// Sends the step's messages, each at its due time or as soon after as possible. Every
    /// message carries the moment it is handed to the connection.
    pub async fn run_step(&mut self, plan: &StepPlan, shared: &Shared) -> anyhow::Result<Published> {
        let start = tokio::time::Instant::now();
        let mut sent = 0u64;
        let mut max_lag = Duration::ZERO;
        while sent < plan.messages {
            let due = start + plan.due(sent);
            tokio::time::sleep_until(due).await;
            let now = tokio::time::Instant::now();
            max_lag = max_lag.max(now - due);
            // Everything due by now goes out together.
            let due_now = plan.due_by(now - start);
            while sent < due_now {
                let stamp = Stamp { step: plan.index, sequence: sent, sent_ns: shared.now_ns() };
                let arguments = publish_arguments(&self.group, stamp.encode(self.payload_bytes));
                self.connection.send(PUBLISH_TARGET, arguments).await.context("publisher: send")?;
                sent += 1;
            }
            self.read_inbox();
            anyhow::ensure!(!self.closed, "the server closed the publisher's connection");
        }
        Ok(Published { sent, elapsed: start.elapsed(), max_lag })
    }

    /// Reports whatever the server sent the publisher. The invocations are fire-and-forget
    /// and the publisher is not in the group, so anything here is an error report (the
    /// client handles keep-alive Pings itself).
    fn read_inbox(&mut self) {
        while let Some(event) = self.connection.try_next() {
            match event {
                Event::Message(message) => self.report(&message),
                Event::Reconnected => {}
                Event::Closed(_) => self.closed = true,
            }
        }
    }

    fn report(&self, message: &HubMessage) {
        let text = Protocol::Json.encode(message).map(|b| String::from_utf8_lossy(&b).into_owned());
        eprintln!(
            "broadcast: the server sent the publisher (after {:.1}s): {}",
            self.started.elapsed().as_secs_f64(),
            text.unwrap_or_else(|_| format!("{message:?}")).chars().take(300).collect::<String>()
        );
    }
}
