//! Turns one client's connection events into its `up` flag.
//!
//! fred reconnects by itself (exponential backoff) and reports what happens on broadcast
//! streams: an error when a connection breaks or a reconnect attempt fails, an event after each
//! (re)connection, a cluster change when the slot map was refreshed. The supervisor marks the
//! link down on errors and, after a (re)connection or cluster change, runs `restore` (a PING for
//! the publisher; every subscription for the subscriber), which marks it up when it succeeds.
//! A failed restore is retried with backoff until it succeeds or a new event comes.
//!
//! fred only notices connections that close. A hung server or a network that silently drops
//! packets is caught by the heartbeat: a PING that times out resets the link.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fred::clients::Client;
use fred::error::Error as FredError;
use fred::interfaces::EventInterface;
use fred::types::config::Server;
use fred::types::ClusterStateChange;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio::time::MissedTickBehavior;

use super::link::Link;

/// A client's event streams, taken before it connects so the first connection is seen.
pub(super) struct Events {
    errors: Receiver<(FredError, Option<Server>)>,
    reconnects: Receiver<Server>,
    cluster_changes: Receiver<Vec<ClusterStateChange>>,
    unresponsive: Receiver<Server>,
}

impl Events {
    pub(super) fn of(client: &Client) -> Self {
        Self {
            errors: client.error_rx(),
            reconnects: client.reconnect_rx(),
            cluster_changes: client.cluster_change_rx(),
            unresponsive: client.unresponsive_rx(),
        }
    }
}

/// The supervisor's clock.
#[derive(Clone, Copy)]
pub(super) struct Timing {
    /// First and longest delay between retries of a failed restore.
    pub(super) retry: (Duration, Duration),
    pub(super) heartbeat: Duration,
}

/// What an event asks of the supervisor.
enum Step {
    Down(String),
    Restore,
    Stop,
}

/// Runs until the client quits (its event streams close).
pub(super) async fn supervise<F, Fut>(link: Arc<Link>, mut events: Events, timing: Timing, mut restore: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), FredError>>,
{
    let (min_delay, max_delay) = timing.retry;
    let mut heartbeat = tokio::time::interval(timing.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pending = false;
    let mut delay = min_delay;
    loop {
        if pending {
            match restore().await {
                Ok(()) => pending = false,
                Err(error) => tracing::warn!(%error, "redis backplane: restoring after a reconnect failed; retrying"),
            }
        }
        // Errors first: when an error and a reconnect are both queued, the later restore decides.
        let step = tokio::select! {
            biased;
            event = events.errors.recv() => on_error(event),
            event = events.unresponsive.recv() => on_error(event.map(|server| (FredError::new_canceled(), Some(server)))),
            event = events.reconnects.recv() => on_connect(event),
            event = events.cluster_changes.recv() => on_connect(event),
            () = tokio::time::sleep(delay), if pending => {
                delay = (delay * 2).min(max_delay);
                continue;
            }
            _ = heartbeat.tick(), if link.is_up() => {
                if let Err(error) = link.ping().await {
                    link.reset(&error);
                }
                continue;
            }
        };
        match step {
            Step::Down(reason) => link.mark_down(&reason),
            Step::Restore => {
                pending = true;
                delay = min_delay;
            }
            Step::Stop => return,
        }
    }
}

fn on_error(event: Result<(FredError, Option<Server>), RecvError>) -> Step {
    match event {
        Ok((error, Some(server))) => Step::Down(format!("{server}: {error}")),
        Ok((error, None)) => Step::Down(error.to_string()),
        // Missed events: assume the worst; a restore follows the next reconnect.
        Err(RecvError::Lagged(missed)) => Step::Down(format!("{missed} connection events missed")),
        Err(RecvError::Closed) => Step::Stop,
    }
}

fn on_connect<T>(event: Result<T, RecvError>) -> Step {
    match event {
        Ok(_) | Err(RecvError::Lagged(_)) => Step::Restore,
        Err(RecvError::Closed) => Step::Stop,
    }
}
