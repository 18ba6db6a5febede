//! The clock a node's WebSocket writers hold on to coalesce writes (`--flush-delay`).
//!
//! A writer that just wrote waits for the clock's next tick before it writes again (see
//! `transport::websocket`). One clock per node, ticking every `--flush-delay`, wakes every
//! waiting writer at once: the writers of one broadcast then run together in one pass of a
//! worker thread, and no writer arms a timer of its own. Measured on this project's benchmark
//! (1,000 subscribers, 100 msg/s), a timer per writer halved the writes but cost more CPU in
//! timer and thread wake-ups than the halved writes saved.

use std::sync::{Arc, Once, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;

/// Ticks every `period` once something waits on it; stops when the last handle is dropped.
pub struct FlushClock {
    period: Duration,
    tick: Notify,
    started: Once,
}

impl std::fmt::Debug for FlushClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushClock").field("period", &self.period).finish_non_exhaustive()
    }
}

impl FlushClock {
    /// A clock ticking every `period`; `None` for a zero period (no coalescing).
    pub fn new(period: Duration) -> Option<Arc<Self>> {
        (!period.is_zero()).then(|| Arc::new(Self { period, tick: Notify::new(), started: Once::new() }))
    }

    /// How often it ticks.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Resolves at the next tick, at most one period from now. The ticking task starts with
    /// the first wait, on the runtime of the waiter.
    pub async fn next_tick(self: &Arc<Self>) {
        let tick = self.tick.notified();
        self.started.call_once(|| {
            tokio::spawn(run(Arc::downgrade(self), self.period));
        });
        tick.await;
    }
}

async fn run(clock: Weak<FlushClock>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        let Some(clock) = clock.upgrade() else { return };
        clock.tick.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn every_waiter_wakes_on_the_same_tick_at_most_one_period_away() {
        let clock = FlushClock::new(Duration::from_millis(20)).expect("a clock");
        clock.next_tick().await; // the first tick comes at once
        let began = tokio::time::Instant::now();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let clock = clock.clone();
                tokio::spawn(async move {
                    clock.next_tick().await;
                    tokio::time::Instant::now()
                })
            })
            .collect();
        let mut woke = Vec::new();
        for waiter in waiters {
            woke.push(waiter.await.unwrap());
        }
        assert!(woke.iter().all(|at| *at == woke[0]), "one tick for all: {woke:?}");
        assert!(woke[0] - began <= Duration::from_millis(20));
    }

    #[test]
    fn no_clock_without_a_period() {
        assert!(FlushClock::new(Duration::ZERO).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_ticking_task_ends_with_the_last_handle() {
        let clock = FlushClock::new(Duration::from_millis(20)).expect("a clock");
        clock.next_tick().await;
        let weak = Arc::downgrade(&clock);
        drop(clock);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(weak.upgrade().is_none(), "nothing keeps the clock alive");
    }
}
