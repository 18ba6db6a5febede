//! Counting deliveries: what every subscriber received in each step, duplicates caught per
//! subscriber, latencies in HDR histograms, and the per-step accounting derived from them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use hdrhistogram::Histogram;

/// Histogram shards per step: subscriber tasks on different threads rarely share one.
const LATENCY_SHARDS: usize = 16;
/// Highest latency recorded exactly, in µs (larger values are clamped to it).
const MAX_LATENCY_US: u64 = 60_000_000;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("3 significant figures"))
}

/// What all subscribers received during one step. Shared by every subscriber task.
pub struct StepTally {
    /// First deliveries of a message to a subscriber, by the node the subscriber is on.
    received: Vec<AtomicU64>,
    /// Deliveries of a message a subscriber already had.
    duplicates: AtomicU64,
    /// Deliveries that arrived after the subscriber had seen the next step (not checked for
    /// duplicates).
    late: AtomicU64,
    latency: Vec<Mutex<Histogram<u64>>>,
}

impl StepTally {
    pub fn new(nodes: usize) -> Self {
        Self {
            received: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            duplicates: AtomicU64::new(0),
            late: AtomicU64::new(0),
            latency: (0..LATENCY_SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
        }
    }

    /// Counts `count` first deliveries on `node`.
    pub fn add_received(&self, node: usize, count: u64) {
        if let Some(counter) = self.received.get(node) {
            counter.fetch_add(count, Ordering::Relaxed);
        }
    }

    pub fn add_duplicates(&self, count: u64) {
        self.duplicates.fetch_add(count, Ordering::Relaxed);
    }

    pub fn add_late(&self, count: u64) {
        self.late.fetch_add(count, Ordering::Relaxed);
    }

    /// The histogram shard a subscriber records into.
    pub fn latency_shard(&self, subscriber: usize) -> MutexGuard<'_, Histogram<u64>> {
        let shard = &self.latency[subscriber % self.latency.len()];
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// First deliveries so far, per node.
    pub fn received_by_node(&self) -> Vec<u64> {
        self.received.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    pub fn received(&self) -> u64 {
        self.received_by_node().iter().sum()
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    pub fn late(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// All shards merged.
    pub fn latency(&self) -> Histogram<u64> {
        let mut merged = new_histogram();
        for shard in &self.latency {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            // Same bounds everywhere, so adding cannot fail.
            let _ = merged.add(&*shard);
        }
        merged
    }
}

/// How one delivery to one subscriber counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The first time this subscriber got this message.
    First,
    /// The subscriber already had it.
    Duplicate,
    /// It belongs to a step before the one the subscriber is in.
    Late,
    /// Its sequence number is outside the step (a corrupted or foreign message).
    Invalid,
}

/// Which messages of the current step one subscriber has seen: one bit per message.
/// Delivery order is not assumed (the gateway runs a connection's invocations in parallel).
#[derive(Debug, Default)]
pub struct Seen {
    step: Option<u16>,
    bits: Vec<u64>,
}

impl Seen {
    /// Marks message `sequence` of step `step`, which has `messages` messages.
    pub fn mark(&mut self, step: u16, sequence: u64, messages: u64) -> Mark {
        match self.step {
            Some(current) if step < current => return Mark::Late,
            Some(current) if step == current => {}
            _ => {
                self.step = Some(step);
                self.bits.clear();
                self.bits.resize(messages.div_ceil(64) as usize, 0);
            }
        }
        if sequence >= messages {
            return Mark::Invalid;
        }
        let (word, bit) = ((sequence / 64) as usize, 1u64 << (sequence % 64));
        let Some(slot) = self.bits.get_mut(word) else { return Mark::Invalid };
        if *slot & bit != 0 {
            return Mark::Duplicate;
        }
        *slot |= bit;
        Mark::First
    }
}

/// Delivery accounting of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accounting {
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
}

impl Accounting {
    /// `subscribers` each expected every one of `sent` messages; `received` counts first
    /// deliveries only.
    pub fn new(subscribers: u64, sent: u64, received: u64, duplicates: u64) -> Self {
        let expected = subscribers * sent;
        Self { expected, received, lost: expected.saturating_sub(received), duplicates }
    }

    pub fn is_lossless(&self) -> bool {
        self.lost == 0
    }
}

/// Latency percentiles of a step, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}

/// Records one latency in µs, clamped to the histogram's range.
pub fn record_latency(histogram: &mut Histogram<u64>, micros: u64) {
    histogram.saturating_record(micros.clamp(1, MAX_LATENCY_US));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_counts_once_per_subscriber_in_any_order() {
        let mut seen = Seen::default();
        assert_eq!(seen.mark(1, 5, 100), Mark::First);
        assert_eq!(seen.mark(1, 0, 100), Mark::First);
        assert_eq!(seen.mark(1, 99, 100), Mark::First);
        assert_eq!(seen.mark(1, 5, 100), Mark::Duplicate);
        assert_eq!(seen.mark(1, 100, 100), Mark::Invalid);
    }

    #[test]
    fn a_new_step_starts_a_fresh_record_and_old_steps_are_late() {
        let mut seen = Seen::default();
        assert_eq!(seen.mark(1, 3, 10), Mark::First);
        assert_eq!(seen.mark(2, 3, 1000), Mark::First);
        assert_eq!(seen.mark(2, 999, 1000), Mark::First);
        assert_eq!(seen.mark(1, 4, 10), Mark::Late);
        assert_eq!(seen.mark(2, 3, 1000), Mark::Duplicate);
    }

    #[test]
    fn loss_is_what_was_expected_and_never_arrived() {
        let full = Accounting::new(1000, 500, 500_000, 0);
        assert_eq!(full.expected, 500_000);
        assert!(full.is_lossless());
        let short = Accounting::new(1000, 500, 499_990, 3);
        assert_eq!((short.lost, short.duplicates), (10, 3));
        assert!(!short.is_lossless());
        // Duplicates are not first deliveries, so they cannot hide a loss.
        assert_eq!(Accounting::new(2, 2, 5, 1).lost, 0);
    }

    #[test]
    fn tallies_count_per_node_and_merge_latency_shards() {
        let tally = StepTally::new(2);
        tally.add_received(0, 3);
        tally.add_received(1, 4);
        tally.add_received(7, 100);
        tally.add_duplicates(2);
        for subscriber in 0..100 {
            record_latency(&mut tally.latency_shard(subscriber), 1000 + subscriber as u64 * 10);
        }
        record_latency(&mut tally.latency_shard(0), u64::MAX);
        assert_eq!(tally.received_by_node(), vec![3, 4]);
        assert_eq!((tally.received(), tally.duplicates(), tally.late()), (7, 2, 0));
        let p = Percentiles::of(&tally.latency());
        assert_eq!(p.count, 101);
        assert!((1490..=1510).contains(&p.p50), "p50 {}", p.p50);
        assert!((1980..=2000).contains(&p.p99), "p99 {}", p.p99);
        assert!(p.max >= MAX_LATENCY_US && p.max <= MAX_LATENCY_US + MAX_LATENCY_US / 1000);
    }

    #[test]
    fn an_empty_histogram_summarizes_to_zeros() {
        assert_eq!(Percentiles::of(&new_histogram()), Percentiles::default());
    }
}
