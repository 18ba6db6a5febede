//! One subscriber: a hub connection that joins the benchmark group, then reads every
//! delivery, checks it against what it already has and records its latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use protocol::{CompletionOutcome, HubMessage, Protocol};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::payload::{for_each_record, stamp_of_record, Stamp};
use super::schedule::StepPlan;
use super::tally::{record_latency, Mark, Seen, StepTally};
use crate::client::HubSocket;

/// Longest record a subscriber buffers while waiting for its end.
const MAX_RECORD: usize = 64 * 1024;

/// State every subscriber and the coordinator share.
pub struct Shared {
    /// The clock every timestamp is counted from: publisher and subscribers are in this one
    /// process.
    pub origin: Instant,
    pub steps: Vec<StepPlan>,
    /// One tally per step, indexed like `steps`.
    pub tallies: Vec<StepTally>,
    /// Deliveries whose step or sequence number is not one the publisher sent.
    pub invalid: AtomicU64,
    /// Records that are not benchmark messages (pings, completions, closes).
    pub other_records: AtomicU64,
    /// Close messages the server sent to subscribers.
    pub closes: AtomicU64,
    /// Subscribers whose connection has ended.
    pub disconnected: AtomicU64,
}

impl Shared {
    pub fn new(steps: Vec<StepPlan>, nodes: usize) -> Self {
        let tallies = steps.iter().map(|_| StepTally::new(nodes)).collect();
        Self {
            origin: Instant::now(),
            steps,
            tallies,
            invalid: AtomicU64::new(0),
            other_records: AtomicU64::new(0),
            closes: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
        }
    }

    /// Nanoseconds since the origin.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Invokes `JoinGroup(group)` and waits for its completion.
pub async fn join_group(socket: &mut HubSocket, group: &str, timeout: Duration) -> anyhow::Result<()> {
    let group_json = serde_json::to_string(group)?;
    let request =
        format!("{{\"type\":1,\"invocationId\":\"join\",\"target\":\"JoinGroup\",\"arguments\":[{group_json}]}}\u{1e}");
    socket.send(Message::Text(Utf8Bytes::from(request))).await.context("JoinGroup: send")?;
    tokio::time::timeout(timeout, wait_for_completion(socket, "join"))
        .await
        .context("JoinGroup: no completion in time")?
}

async fn wait_for_completion(socket: &mut HubSocket, id: &str) -> anyhow::Result<()> {
    let mut partial = Vec::new();
    loop {
        let chunk: Bytes = match socket.next().await {
            Some(Ok(Message::Text(text))) => text.into(),
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(frame))) => bail!("JoinGroup: server closed the socket ({frame:?})"),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error).context("JoinGroup: receive"),
            None => bail!("JoinGroup: server closed the connection"),
        };
        let mut outcome = None;
        let framed = for_each_record(&mut partial, &chunk, MAX_RECORD, |record| {
            if let Ok(HubMessage::Completion(completion)) = Protocol::Json.decode(record) {
                if completion.invocation_id == id {
                    outcome = Some(completion.outcome);
                }
            }
        });
        anyhow::ensure!(framed, "JoinGroup: record larger than {MAX_RECORD} bytes");
        match outcome {
            Some(CompletionOutcome::Error(error)) => bail!("JoinGroup failed: {error}"),
            Some(_) => return Ok(()),
            None => {}
        }
    }
}

/// Deliveries of one step seen in one received frame, counted before touching shared state.
struct Pending {
    step: u16,
    first: u64,
    duplicates: u64,
    late: u64,
    latencies_us: Vec<u64>,
}

impl Pending {
    fn flush(&mut self, shared: &Shared, subscriber: usize, node: usize) {
        let Some(tally) = shared.tallies.get(usize::from(self.step)) else { return };
        if self.first > 0 {
            tally.add_received(node, self.first);
        }
        if self.duplicates > 0 {
            tally.add_duplicates(self.duplicates);
        }
        if self.late > 0 {
            tally.add_late(self.late);
        }
        if !self.latencies_us.is_empty() {
            let mut histogram = tally.latency_shard(subscriber);
            for &latency in &self.latencies_us {
                record_latency(&mut histogram, latency);
            }
        }
        self.first = 0;
        self.duplicates = 0;
        self.late = 0;
        self.latencies_us.clear();
    }
}

/// Reads deliveries until the connection ends. `subscriber` is this subscriber's index and
/// `node` the index of the gateway it is connected to.
pub async fn receive(mut socket: HubSocket, subscriber: usize, node: usize, shared: &Shared) {
    let mut seen = Seen::default();
    let mut partial = Vec::new();
    let mut pending = Pending { step: 0, first: 0, duplicates: 0, late: 0, latencies_us: Vec::new() };
    while let Some(message) = socket.next().await {
        let chunk: Bytes = match message {
            Ok(Message::Text(text)) => text.into(),
            Ok(Message::Binary(bytes)) => bytes,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let now_ns = shared.now_ns();
        let framed = for_each_record(&mut partial, &chunk, MAX_RECORD, |record| match stamp_of_record(record) {
            Some(stamp) => count(stamp, now_ns, &mut seen, &mut pending, shared, subscriber, node),
            None => other_record(record, shared),
        });
        pending.flush(shared, subscriber, node);
        if !framed {
            break;
        }
    }
    shared.disconnected.fetch_add(1, Ordering::Relaxed);
}

fn count(
    stamp: Stamp,
    now_ns: u64,
    seen: &mut Seen,
    pending: &mut Pending,
    shared: &Shared,
    subscriber: usize,
    node: usize,
) {
    let Some(plan) = shared.steps.get(usize::from(stamp.step)) else {
        shared.invalid.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if stamp.step != pending.step {
        pending.flush(shared, subscriber, node);
        pending.step = stamp.step;
    }
    match seen.mark(stamp.step, stamp.sequence, plan.messages) {
        Mark::First => {
            pending.first += 1;
            pending.latencies_us.push(now_ns.saturating_sub(stamp.sent_ns) / 1000);
        }
        Mark::Duplicate => pending.duplicates += 1,
        Mark::Late => pending.late += 1,
        Mark::Invalid => {
            shared.invalid.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn other_record(record: &[u8], shared: &Shared) {
    shared.other_records.fetch_add(1, Ordering::Relaxed);
    if let Ok(HubMessage::Close(_)) = Protocol::Json.decode(record) {
        shared.closes.fetch_add(1, Ordering::Relaxed);
    }
}
