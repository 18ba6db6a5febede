//! One subscriber: a hub connection (the library's client, asked for every message so that
//! Pings and a Close are counted too) that joins the benchmark group, then reads every
//! delivery, checks it against what it already has and records its latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use protocol::{CompletionOutcome, HubMessage, Value};

use super::payload::{stamp_of, Stamp};
use super::schedule::StepPlan;
use super::tally::{record_latency, Mark, Seen, StepTally};
use crate::signalr::{Connection, Event};

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
pub async fn join_group(connection: &mut Connection, group: &str, timeout: Duration) -> anyhow::Result<()> {
    let outcome = tokio::time::timeout(timeout, connection.invoke("JoinGroup", vec![Value::from(group)]))
        .await
        .context("JoinGroup: no completion in time")?
        .context("JoinGroup")?;
    if let CompletionOutcome::Error(error) = outcome {
        bail!("JoinGroup failed: {error}");
    }
    Ok(())
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
/// `node` the index of the gateway it is connected to. Whatever has arrived is handled as
/// one batch before the shared tallies are touched.
pub async fn receive(mut connection: Connection, subscriber: usize, node: usize, shared: &Shared) {
    let mut seen = Seen::default();
    let mut pending = Pending { step: 0, first: 0, duplicates: 0, late: 0, latencies_us: Vec::new() };
    while let Some(event) = connection.next().await {
        let now_ns = shared.now_ns();
        let mut next = Some(event);
        let mut ended = false;
        while let Some(event) = next {
            match event {
                Event::Message(message) => match stamp_of(&message) {
                    Some(stamp) => count(stamp, now_ns, &mut seen, &mut pending, shared, subscriber, node),
                    None => other_record(&message, shared),
                },
                Event::Reconnected => {}
                Event::Closed(_) => ended = true,
            }
            next = connection.try_next();
        }
        pending.flush(shared, subscriber, node);
        if ended {
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

fn other_record(message: &HubMessage, shared: &Shared) {
    shared.other_records.fetch_add(1, Ordering::Relaxed);
    if let HubMessage::Close(_) = message {
        shared.closes.fetch_add(1, Ordering::Relaxed);
    }
}
