//! One connection's outbound queue: bounded in bytes, filled without waiting, drained by the
//! connection's single writer task.
//!
//! Fan-out calls [`Outbound::push`], which never waits: a client that stops reading fills its
//! queue, the next push finds it over the limit, and the connection is marked as a slow consumer
//! and closed. The rest of the fan-out goes on at full speed. The writer takes everything
//! queued at once ([`Outbound::next_batch`]) so it can write many messages and flush once.
//!
//! Replies to the client's own requests (the handshake answer, completions) and the end of the
//! connection are *urgent* ([`Outbound::push_reply`]): a writer holding back to coalesce
//! ([`Outbound::hold_until`]) writes at once when one arrives, so request/response traffic never
//! waits for a coalescing window. Fan-out pushes only leave a wake-up for the writer, which
//! costs nothing while the writer holds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use protocol::{HubMessage, Protocol};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::stateful::ReplayBuffer;
use crate::metrics::OutboundMetrics;

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue would exceed its byte limit; the connection is now being closed.
    SlowConsumer,
    /// The connection is already closing.
    Closed,
}

/// How the connection ends, as the writer should carry it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// A last message (an encoded Close) written after everything already queued.
    pub last: Option<Bytes>,
    /// What the transport reports as it closes.
    pub status: EndStatus,
}

/// How a transport reports the end of a connection (on WebSockets: the close code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndStatus {
    /// An orderly end (1000), whatever the Close message says.
    Normal,
    /// The transport or the server failed (1011).
    Error,
    /// The client sent a message over the size limit (1009).
    MessageTooBig,
}

impl EndStatus {
    /// The WebSocket close code.
    pub fn websocket_code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::Error => 1011,
            Self::MessageTooBig => 1009,
        }
    }
}

/// What the writer should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Write the batch that was just filled.
    Write,
    /// Write the batch, then end the connection.
    End(Ending),
    /// A newer transport writes this connection now (stateful reconnect); this writer stops
    /// without having taken anything.
    Superseded,
}

/// Queued bytes that end a writer's hold at most (one coalesced WebSocket frame).
const FULL_BATCH: usize = 64 * 1024;

/// How [`Outbound::enqueue`] treats a message.
#[derive(Clone, Copy)]
struct Push {
    /// Kept for a replay with stateful reconnect.
    trackable: bool,
    /// Ends a writer's hold ([`Outbound::hold_until`]).
    urgent: bool,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Bytes>,
    queued_bytes: usize,
    ending: Option<Ending>,
    slow_consumer: bool,
    /// A reply is queued: a writer holding back to coalesce writes at once.
    urgent: bool,
    keep_alive: Option<Bytes>,
    protocol: Option<Protocol>,
    /// With stateful reconnect: sent messages kept until the client acknowledges them. Boxed so
    /// connections without it pay one pointer.
    replay: Option<Box<ReplayBuffer>>,
    /// Bumped whenever a new transport takes over writing; a writer of an older generation
    /// stops.
    writer_generation: u64,
    /// Where queued messages and bytes are counted, once the session has set it.
    metrics: Option<Arc<OutboundMetrics>>,
}

impl State {
    /// Forgets the queued byte count (the queue was drained or cleared), keeping the
    /// node-wide gauge in step.
    fn forget_queued(&mut self) {
        if let Some(metrics) = &self.metrics {
            metrics.queue_bytes.sub(self.queued_bytes as i64);
        }
        self.queued_bytes = 0;
    }

    /// Whether the writer of `generation` (none: a transport that is never replaced) has been
    /// replaced by a newer one.
    fn superseded(&self, generation: Option<u64>) -> bool {
        generation.is_some_and(|generation| generation != self.writer_generation)
    }

    fn retained_bytes(&self) -> usize {
        self.queued_bytes + self.replay.as_ref().map_or(0, |replay| replay.bytes())
    }
}

/// The bounded byte queue between fan-out and one connection's writer.
pub struct Outbound {
    state: Mutex<State>,
    wake_writer: Notify,
    /// Ends a writer's [`Outbound::hold_until`] early: a reply or the end was queued.
    wake_urgent: Notify,
    limit: usize,
    /// Cancelled when the connection is over for whatever reason; the reader watches it.
    closed: CancellationToken,
}

impl Outbound {
    /// A queue that holds at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            wake_writer: Notify::new(),
            wake_urgent: Notify::new(),
            limit,
            closed: CancellationToken::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues one encoded message. Never waits. With stateful reconnect, the message is also
    /// kept for a replay until the client acknowledges it; every message pushed after the
    /// handshake is a trackable one (pings, acks and the Close bypass this method).
    pub fn push(&self, message: Bytes) -> Result<(), PushError> {
        self.enqueue(message, Push { trackable: true, urgent: false })
    }

    /// Queues a reply to the client's own request (handshake answer, completion): like
    /// [`Outbound::push`], and a writer holding back to coalesce writes at once.
    pub fn push_reply(&self, message: Bytes) -> Result<(), PushError> {
        self.enqueue(message, Push { trackable: true, urgent: true })
    }

    /// Waits until `until` resolves (a tick of the writers' clock, a deadline), or less once
    /// something urgent is waiting (a reply, the end of the connection, a newer writer than
    /// `generation`, a full batch of queued bytes). Messages pushed meanwhile wait in the
    /// queue, and the writer takes them all at once afterwards.
    pub async fn hold_until(&self, generation: Option<u64>, until: impl std::future::Future<Output = ()>) {
        let urgent = self.wake_urgent.notified();
        let mut urgent = std::pin::pin!(urgent);
        // Registered before the check, so an urgent push between the two still wakes us.
        urgent.as_mut().enable();
        {
            let state = self.state();
            if state.urgent || state.ending.is_some() || state.superseded(generation) {
                return;
            }
        }
        tokio::select! {
            () = until => {}
            () = urgent => {}
        }
    }

    /// Queues a message that is never replayed (Ack, Sequence).
    pub fn push_untracked(&self, message: Bytes) -> Result<(), PushError> {
        self.enqueue(message, Push { trackable: false, urgent: false })
    }

    /// Queued bytes that end a writer's hold: a quarter of the queue's bound, at most
    /// [`FULL_BATCH`].
    fn full_batch(&self) -> usize {
        (self.limit / 4).min(FULL_BATCH)
    }

    fn enqueue(&self, message: Bytes, push: Push) -> Result<(), PushError> {
        let mut state = self.state();
        if state.ending.is_some() {
            return Err(PushError::Closed);
        }
        if state.retained_bytes() + message.len() > self.limit {
            state.queue.clear();
            state.forget_queued();
            state.replay = None;
            state.slow_consumer = true;
            state.ending = Some(Ending { last: None, status: EndStatus::Error });
            drop(state);
            self.closed.cancel();
            self.wake_writer.notify_one();
            self.wake_urgent.notify_waiters();
            return Err(PushError::SlowConsumer);
        }
        if push.trackable {
            if let Some(replay) = state.replay.as_mut() {
                replay.record(message.clone());
            }
        }
        state.queued_bytes += message.len();
        if let Some(metrics) = &state.metrics {
            metrics.messages.inc();
            metrics.bytes.inc_by(message.len() as u64);
            metrics.queue_bytes.add(message.len() as i64);
        }
        state.queue.push_back(message);
        // A full batch gains nothing from waiting longer, and a hold must never make a
        // reading client look slow: enough queued bytes end it like a reply does.
        let urgent = push.urgent || state.queued_bytes >= self.full_batch();
        state.urgent |= urgent;
        drop(state);
        self.wake_writer.notify_one();
        if urgent {
            self.wake_urgent.notify_waiters();
        }
        Ok(())
    }

    /// Counts what is queued from now on in `metrics` (messages, bytes, queue size).
    pub(crate) fn count_in(&self, metrics: Arc<OutboundMetrics>) {
        self.state().metrics = Some(metrics);
    }

    /// Whether the server ended the connection with a Close of its own (rather than the
    /// transport failing or the queue overflowing).
    pub fn ended_by_server(&self) -> bool {
        self.state().ending.as_ref().is_some_and(|ending| ending.last.is_some() && ending.status != EndStatus::Error)
    }

    /// Starts keeping sent messages for stateful reconnect.
    pub fn enable_replay(&self) {
        self.state().replay = Some(Box::default());
    }

    /// Whether sent messages are kept for stateful reconnect.
    pub fn replays(&self) -> bool {
        self.state().replay.is_some()
    }

    /// The client acknowledged every message up to `sequence_id`.
    pub fn acknowledge(&self, sequence_id: u64) {
        if let Some(replay) = self.state().replay.as_mut() {
            replay.acknowledge(sequence_id);
        }
    }

    /// A new transport takes over after a reconnect: returns its writer generation and what it
    /// writes first — a Sequence announcing the first unacknowledged message, then every
    /// unacknowledged message. Whatever was queued but not yet written is among those.
    pub fn resume(&self) -> (u64, Vec<Bytes>) {
        let resumed = self.take_over();
        // The older writer may be waiting for messages; it must wake up to learn it is done.
        self.wake_writer.notify_waiters();
        self.wake_urgent.notify_waiters();
        resumed
    }

    fn take_over(&self) -> (u64, Vec<Bytes>) {
        let mut state = self.state();
        state.writer_generation += 1;
        state.queue.clear();
        state.forget_queued();
        let protocol = state.protocol.unwrap_or(Protocol::Json);
        let Some(replay) = state.replay.as_ref() else { return (state.writer_generation, Vec::new()) };
        let sequence = HubMessage::Sequence { sequence_id: replay.first_unacknowledged() };
        let mut first = Vec::with_capacity(1 + replay.unacknowledged().count());
        first.extend(protocol.encode(&sequence).ok());
        first.extend(replay.unacknowledged().cloned());
        (state.writer_generation, first)
    }

    /// A superseded writer received a wake-up meant for the current one: passes it on.
    pub fn pass_wake_up(&self) {
        self.wake_writer.notify_one();
    }

    /// The generation of the transport currently allowed to write.
    pub fn writer_generation(&self) -> u64 {
        self.state().writer_generation
    }

    /// Ends the connection after what is queued, optionally with a last message. Later pushes
    /// are refused. The first ending wins.
    pub fn finish(&self, last: Option<Bytes>, status: EndStatus) {
        let mut state = self.state();
        if state.ending.is_none() {
            state.ending = Some(Ending { last, status });
        }
        drop(state);
        self.closed.cancel();
        self.wake_writer.notify_one();
        self.wake_urgent.notify_waiters();
    }

    /// Marks the connection over without writing anything more (the transport failed).
    pub fn abort(&self) {
        self.finish(None, EndStatus::Error);
    }

    /// Sets the message the writer sends after a quiet keep-alive interval. Until it is set
    /// (before the handshake completes) the writer sends no keep-alives.
    pub fn set_keep_alive(&self, message: Bytes) {
        self.state().keep_alive = Some(message);
    }

    /// Sets the connection's hub protocol: its messages are binary (MessagePack) or text, for
    /// transports that distinguish the two (WebSocket frame types).
    pub fn set_protocol(&self, protocol: Protocol) {
        self.state().protocol = Some(protocol);
    }

    /// Whether the connection's messages are binary.
    pub fn is_binary(&self) -> bool {
        self.state().protocol.is_some_and(|protocol| !protocol.is_text())
    }

    /// The keep-alive message, once the handshake has completed.
    pub fn keep_alive(&self) -> Option<Bytes> {
        self.state().keep_alive.clone()
    }

    /// Whether the connection was closed because it could not keep up.
    pub fn was_slow_consumer(&self) -> bool {
        self.state().slow_consumer
    }

    /// Bytes currently waiting, plus those kept for a replay.
    pub fn queued_bytes(&self) -> usize {
        self.state().retained_bytes()
    }

    /// A token cancelled when the connection is ending.
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    /// Waits until there is something to do; moves every queued message into `batch`.
    pub async fn next_batch(&self, batch: &mut Vec<Bytes>) -> Next {
        self.next_batch_as(None, batch).await
    }

    /// Like [`Outbound::next_batch`], for the writer of `generation` (of a transport that can be
    /// replaced): once a newer writer exists it gets [`Next::Superseded`] and takes nothing.
    pub async fn next_batch_as(&self, generation: Option<u64>, batch: &mut Vec<Bytes>) -> Next {
        loop {
            let notified = self.wake_writer.notified();
            if let Some(next) = self.take_queued_as(generation, batch) {
                return next;
            }
            notified.await;
        }
    }

    /// Moves every queued message into `batch` without waiting; `None` when there is nothing
    /// to do.
    pub fn take_queued(&self, batch: &mut Vec<Bytes>) -> Option<Next> {
        self.take_queued_as(None, batch)
    }

    /// Like [`Outbound::take_queued`], for the writer of `generation`.
    pub fn take_queued_as(&self, generation: Option<u64>, batch: &mut Vec<Bytes>) -> Option<Next> {
        let mut state = self.state();
        if state.superseded(generation) {
            return Some(Next::Superseded);
        }
        if state.queue.is_empty() && state.ending.is_none() {
            return None;
        }
        batch.extend(state.queue.drain(..));
        state.forget_queued();
        state.urgent = false;
        // A connection that only sees a few messages at a time keeps no queue allocation
        // while idle.
        if state.queue.capacity() > 64 {
            state.queue.shrink_to(16);
        } else if batch.len() <= 4 {
            state.queue = VecDeque::new();
        }
        Some(match &state.ending {
            Some(ending) => Next::End(ending.clone()),
            None => Next::Write,
        })
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        // A connection dropped with messages still queued no longer holds them.
        self.state().forget_queued();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_writer_gets_everything_queued_in_one_batch() {
        let outbound = Outbound::new(100);
        outbound.push(Bytes::from_static(b"a")).unwrap();
        outbound.push(Bytes::from_static(b"b")).unwrap();
        let mut batch = Vec::new();
        assert_eq!(outbound.next_batch(&mut batch).await, Next::Write);
        assert_eq!(batch, vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        assert_eq!(outbound.queued_bytes(), 0);
    }

    /// A writer's hold of `length` from now, running as its own task (already waiting when
    /// this returns).
    async fn hold_in_background(outbound: &Arc<Outbound>, length: Duration) -> tokio::task::JoinHandle<()> {
        let deadline = tokio::time::Instant::now() + length;
        let outbound = outbound.clone();
        let holder = tokio::spawn(async move { outbound.hold_until(None, tokio::time::sleep_until(deadline)).await });
        tokio::task::yield_now().await;
        holder
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_lasts_its_time_while_fan_out_messages_queue_up() {
        let outbound = Arc::new(Outbound::new(100));
        let began = tokio::time::Instant::now();
        let holder = hold_in_background(&outbound, Duration::from_millis(20)).await;
        outbound.push(Bytes::from_static(b"a")).unwrap();
        outbound.push(Bytes::from_static(b"b")).unwrap();
        holder.await.unwrap();
        assert_eq!(began.elapsed(), Duration::from_millis(20), "pushes do not end a hold");
        let mut batch = Vec::new();
        assert_eq!(outbound.take_queued(&mut batch), Some(Next::Write));
        assert_eq!(batch.len(), 2, "both wait for the one write after the hold");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_or_the_end_cuts_a_hold_short() {
        for urgent in [
            |outbound: &Outbound| outbound.push_reply(Bytes::from_static(b"completion")).unwrap(),
            |outbound: &Outbound| outbound.finish(None, EndStatus::Normal),
        ] {
            let outbound = Arc::new(Outbound::new(100));
            let began = tokio::time::Instant::now();
            let holder = hold_in_background(&outbound, Duration::from_secs(60)).await;
            urgent(&outbound);
            holder.await.unwrap();
            assert_eq!(began.elapsed(), Duration::ZERO, "the hold ends at once");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_ends_a_hold_so_a_reading_client_never_looks_slow() {
        // A quarter of the bound is a full batch here (25 bytes).
        let outbound = Arc::new(Outbound::new(100));
        let began = tokio::time::Instant::now();
        let holder = hold_in_background(&outbound, Duration::from_secs(60)).await;
        outbound.push(Bytes::from_static(b"0123456789")).unwrap();
        outbound.push(Bytes::from_static(b"0123456789")).unwrap();
        tokio::task::yield_now().await;
        assert!(!holder.is_finished(), "20 bytes do not end the hold");
        outbound.push(Bytes::from_static(b"0123456789")).unwrap();
        holder.await.unwrap();
        assert_eq!(began.elapsed(), Duration::ZERO, "30 bytes end it at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_taken_before_the_hold_does_not_shorten_the_next_one() {
        let outbound = Outbound::new(100);
        outbound.push_reply(Bytes::from_static(b"completion")).unwrap();
        let mut batch = Vec::new();
        assert_eq!(outbound.take_queued(&mut batch), Some(Next::Write));
        let began = tokio::time::Instant::now();
        outbound.hold_until(None, tokio::time::sleep_until(began + Duration::from_millis(20))).await;
        assert_eq!(began.elapsed(), Duration::from_millis(20));
        // A reply still waiting when the hold begins ends it before it starts.
        outbound.push_reply(Bytes::from_static(b"completion")).unwrap();
        outbound.hold_until(None, tokio::time::sleep(Duration::from_secs(60))).await;
        assert_eq!(began.elapsed(), Duration::from_millis(20));
    }

    #[tokio::test]
    async fn going_over_the_byte_limit_closes_as_slow_consumer() {
        let outbound = Outbound::new(10);
        outbound.push(Bytes::from_static(b"12345678")).unwrap();
        assert_eq!(outbound.push(Bytes::from_static(b"123")), Err(PushError::SlowConsumer));
        assert!(outbound.was_slow_consumer());
        assert!(outbound.closed().is_cancelled());
        assert_eq!(outbound.push(Bytes::from_static(b"1")), Err(PushError::Closed));
        let mut batch = Vec::new();
        assert_eq!(outbound.next_batch(&mut batch).await, Next::End(Ending { last: None, status: EndStatus::Error }));
        assert!(batch.is_empty(), "a slow consumer's backlog is dropped");
    }

    #[tokio::test]
    async fn finish_writes_the_backlog_then_the_last_message() {
        let outbound = Outbound::new(100);
        outbound.push(Bytes::from_static(b"m")).unwrap();
        outbound.finish(Some(Bytes::from_static(b"close")), EndStatus::Normal);
        let mut batch = Vec::new();
        let next = outbound.next_batch(&mut batch).await;
        assert_eq!(batch, vec![Bytes::from_static(b"m")]);
        assert_eq!(next, Next::End(Ending { last: Some(Bytes::from_static(b"close")), status: EndStatus::Normal }));
    }

    #[tokio::test]
    async fn a_replaced_writer_stops_without_taking_what_the_new_one_must_write() {
        let outbound = std::sync::Arc::new(Outbound::new(100));
        outbound.enable_replay();
        let old = outbound.writer_generation();
        let old_writer = {
            let outbound = outbound.clone();
            tokio::spawn(async move {
                let mut batch = Vec::new();
                let next = outbound.next_batch_as(Some(old), &mut batch).await;
                (next, batch)
            })
        };
        tokio::task::yield_now().await;
        let (new, _) = outbound.resume();
        let (next, batch) = tokio::time::timeout(std::time::Duration::from_secs(5), old_writer).await.unwrap().unwrap();
        assert_eq!(next, Next::Superseded);
        assert!(batch.is_empty());
        outbound.push(Bytes::from_static(b"for the new socket")).unwrap();
        let mut batch = Vec::new();
        assert_eq!(outbound.take_queued_as(Some(old), &mut batch), Some(Next::Superseded));
        assert_eq!(outbound.take_queued_as(Some(new), &mut batch), Some(Next::Write));
        assert_eq!(batch, vec![Bytes::from_static(b"for the new socket")]);
    }

    fn counted(limit: usize) -> (Outbound, Arc<OutboundMetrics>) {
        let metrics = Arc::new(OutboundMetrics {
            messages: prometheus::IntCounter::new("m", "m").unwrap(),
            bytes: prometheus::IntCounter::new("b", "b").unwrap(),
            queue_bytes: prometheus::IntGauge::new("q", "q").unwrap(),
        });
        let outbound = Outbound::new(limit);
        outbound.count_in(metrics.clone());
        (outbound, metrics)
    }

    #[test]
    fn the_shared_queue_gauge_follows_pushes_takes_and_drops() {
        let (outbound, metrics) = counted(100);
        outbound.push(Bytes::from_static(b"abc")).unwrap();
        outbound.push(Bytes::from_static(b"de")).unwrap();
        assert_eq!((metrics.messages.get(), metrics.bytes.get(), metrics.queue_bytes.get()), (2, 5, 5));
        outbound.take_queued(&mut Vec::new());
        assert_eq!(metrics.queue_bytes.get(), 0, "taken by the writer");
        outbound.push(Bytes::from_static(b"fgh")).unwrap();
        drop(outbound);
        assert_eq!(metrics.queue_bytes.get(), 0, "a dropped connection holds nothing");
        assert_eq!(metrics.bytes.get(), 8, "the byte counter only grows");
    }

    #[test]
    fn a_slow_consumers_backlog_leaves_the_queue_gauge() {
        let (outbound, metrics) = counted(10);
        outbound.push(Bytes::from_static(b"12345678")).unwrap();
        assert_eq!(outbound.push(Bytes::from_static(b"123")), Err(PushError::SlowConsumer));
        assert_eq!(metrics.queue_bytes.get(), 0);
        assert!(!outbound.ended_by_server());
    }

    #[test]
    fn a_close_from_the_server_is_told_apart_from_a_failed_transport() {
        let closed_by_server = Outbound::new(10);
        closed_by_server.finish(Some(Bytes::from_static(b"close")), EndStatus::Normal);
        assert!(closed_by_server.ended_by_server());
        let failed = Outbound::new(10);
        failed.abort();
        assert!(!failed.ended_by_server());
    }

    #[tokio::test]
    async fn a_waiting_writer_is_woken_by_a_push() {
        let outbound = std::sync::Arc::new(Outbound::new(100));
        let writer = {
            let outbound = outbound.clone();
            tokio::spawn(async move {
                let mut batch = Vec::new();
                outbound.next_batch(&mut batch).await;
                batch
            })
        };
        tokio::task::yield_now().await;
        outbound.push(Bytes::from_static(b"x")).unwrap();
        let batch = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await.unwrap().unwrap();
        assert_eq!(batch, vec![Bytes::from_static(b"x")]);
    }
}
