//! Delivery accounting for the fan-out scenarios: what was expected, received, lost and
//! duplicated, and how many deliveries were slow.
//!
//! The rules, written down because the verdict depends on them:
//! - a message counts as published once its invocation completed without error; it then
//!   expects one delivery per subscriber it addresses among those set up before the run
//!   (every subscriber for `broadcast`, the group's members for `group`, one for `user` and
//!   `connection`). A subscriber the server dropped still counts: its missing deliveries are
//!   the loss the run must report;
//! - a subscriber's first delivery of a sequence number is `received`, any further one
//!   `duplicated` (order is not assumed);
//! - `lost` = expected − received, never below zero (a message whose invocation failed may
//!   still be delivered; it is received but not expected).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::SLOW;
use crate::runner::Recorder;

/// Which sequence numbers one subscriber has seen: one bit per message published in the
/// run (1 M messages cost 125 KB per subscriber).
#[derive(Debug, Default)]
pub struct Seen {
    bits: Vec<u64>,
}

impl Seen {
    /// Marks `sequence`; true the first time.
    pub fn first(&mut self, sequence: u64) -> bool {
        let (word, bit) = ((sequence / 64) as usize, sequence % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let fresh = self.bits[word] & (1 << bit) == 0;
        self.bits[word] |= 1 << bit;
        fresh
    }
}

/// The run's delivery counts, shared by the publisher VUs and every subscriber's reader.
#[derive(Debug, Default)]
pub struct Ledger {
    published: AtomicU64,
    expected: AtomicU64,
    received: AtomicU64,
    duplicated: AtomicU64,
    slow: AtomicU64,
    arrived: Notify,
}

/// A snapshot of the [`Ledger`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub published: u64,
    pub expected: u64,
    pub received: u64,
    pub duplicated: u64,
    /// First deliveries that took [`SLOW`] or longer.
    pub slow: u64,
}

impl Ledger {
    /// A message was published to `recipients` subscribers.
    pub fn published(&self, recipients: u64) {
        self.published.fetch_add(1, Ordering::Relaxed);
        self.expected.fetch_add(recipients, Ordering::Relaxed);
        self.arrived.notify_waiters();
    }

    /// A subscriber got a message: `first` unless it had it already.
    pub fn delivered(&self, first: bool, latency: Duration) {
        if !first {
            self.duplicated.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        if latency >= SLOW {
            self.slow.fetch_add(1, Ordering::Relaxed);
        }
        self.arrived.notify_waiters();
    }

    pub fn totals(&self) -> Totals {
        Totals {
            published: self.published.load(Ordering::Relaxed),
            expected: self.expected.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            duplicated: self.duplicated.load(Ordering::Relaxed),
            slow: self.slow.load(Ordering::Relaxed),
        }
    }

    /// Waits until every expected delivery arrived, or `grace` passed.
    pub async fn settle(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let totals = self.totals();
            if totals.received >= totals.expected {
                return;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return;
            }
        }
    }
}

impl Totals {
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    /// Share of expected deliveries that were lost or slow (0 when nothing was expected).
    pub fn slow_or_lost_ratio(&self) -> f64 {
        if self.expected == 0 {
            return 0.0;
        }
        (self.lost() + self.slow.min(self.received)) as f64 / self.expected as f64
    }

    /// Records the `deliveries_*` counters (zeros included, so thresholds find them).
    pub fn record(&self, recorder: &Recorder) {
        recorder.count("deliveries_expected", self.expected);
        recorder.count("deliveries_received", self.received);
        recorder.count("deliveries_lost", self.lost());
        recorder.count("deliveries_duplicated", self.duplicated);
        recorder.count("messages_slow", self.slow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_counts_each_sequence_once_in_any_order() {
        let mut seen = Seen::default();
        let marks: Vec<bool> = [5, 1, 5, 200, 1, 0].into_iter().map(|s| seen.first(s)).collect();
        assert_eq!(marks, [true, true, false, true, false, true]);
    }

    #[test]
    fn expected_deliveries_are_recipients_at_publish_time_summed() {
        let ledger = Ledger::default();
        ledger.published(10);
        ledger.published(10);
        ledger.published(3);
        let totals = ledger.totals();
        assert_eq!((totals.published, totals.expected), (3, 23));
    }

    #[test]
    fn loss_is_what_was_expected_but_never_received_and_duplicates_are_apart() {
        let ledger = Ledger::default();
        ledger.published(3);
        ledger.delivered(true, Duration::from_millis(1));
        ledger.delivered(true, Duration::from_millis(2));
        ledger.delivered(false, Duration::from_millis(3));
        let totals = ledger.totals();
        assert_eq!((totals.received, totals.duplicated, totals.lost()), (2, 1, 1));
    }

    #[test]
    fn receiving_more_than_expected_is_no_negative_loss() {
        let ledger = Ledger::default();
        ledger.delivered(true, Duration::ZERO);
        assert_eq!(ledger.totals().lost(), 0);
    }

    #[test]
    fn slow_and_lost_deliveries_make_up_the_step_ratio() {
        let totals = Totals { published: 10, expected: 100, received: 98, duplicated: 0, slow: 1 };
        assert!((totals.slow_or_lost_ratio() - 0.03).abs() < 1e-9);
        assert_eq!(Totals::default().slow_or_lost_ratio(), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn settling_ends_when_everything_arrived_or_at_the_grace_period() {
        let ledger = std::sync::Arc::new(Ledger::default());
        ledger.published(1);
        let began = tokio::time::Instant::now();
        ledger.settle(Duration::from_secs(3)).await;
        assert_eq!(began.elapsed(), Duration::from_secs(3));
        let waiting = tokio::spawn({
            let ledger = ledger.clone();
            async move { ledger.settle(Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        ledger.delivered(true, Duration::ZERO);
        waiting.await.unwrap();
        assert!(began.elapsed() < Duration::from_secs(60));
    }
}
