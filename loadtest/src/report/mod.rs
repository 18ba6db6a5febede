//! `--report report.html`: the run over time and its verdict in one self-contained HTML file.
//!
//! [`Timeline`] samples the run's recorder once a second — in one process the live metrics,
//! with `--workers` the parent's merge of every worker's — into [`Sample`]s: connections open,
//! deliveries per second, the delivery latency percentiles of that second (the difference of
//! two HDR snapshots, so exact for the interval, not smoothed over the run) and errors per
//! second. [`html::render`] draws them as inline SVG (no script, no network) beside the
//! thresholds with their verdicts and the k6 summary.

pub mod html;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::model::metrics::{Metric, Metrics, Trend};
use crate::runner::Recorder;

/// How often the timeline samples.
pub const EVERY: Duration = Duration::from_secs(1);

/// The run's figures during one sampling interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the run started (the end of the interval).
    pub at_s: f64,
    /// Hub connections open (`connections_open`).
    pub connections: f64,
    /// `messages_received` (fan-out deliveries, or echo round trips) per second.
    pub deliveries_per_s: f64,
    /// Percentiles of `delivery_latency` (or `invoke_rtt`) over the interval, ms; 0 without samples.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// `errors` per second.
    pub errors_per_s: f64,
}

/// The samples of a run, shared with the task that takes them.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Timeline {
    /// Samples `recorder` every [`EVERY`] until dropped (abort the task).
    pub async fn sample(self, recorder: Recorder) {
        let started = Instant::now();
        let mut tick = tokio::time::interval(EVERY);
        tick.tick().await;
        let mut last = Previous::default();
        let mut last_at = started;
        loop {
            tick.tick().await;
            let now = Instant::now();
            let interval = (now - last_at).as_secs_f64().max(1e-3);
            let sample = recorder.with(|metrics| last.advance(metrics, (now - started).as_secs_f64(), interval));
            last_at = now;
            if let Ok(mut samples) = self.samples.lock() {
                samples.push(sample);
            }
        }
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// What the previous sample saw, to take differences from.
#[derive(Debug, Default)]
struct Previous {
    delivered: u64,
    errors: u64,
    latency: Trend,
}

impl Previous {
    /// The sample ending now, `interval` seconds after the previous one; counters that went
    /// down (the recorder was emptied between step-up steps) count from zero.
    fn advance(&mut self, metrics: &Metrics, at_s: f64, interval: f64) -> Sample {
        let count = |name: &str| match metrics.by_name.get(name) {
            Some(Metric::Counter(c)) => c.count,
            _ => 0,
        };
        let delta = |now: u64, before: &mut u64| {
            let change = if now >= *before { now - *before } else { now };
            *before = now;
            change as f64 / interval
        };
        let connections = match metrics.by_name.get("connections_open") {
            Some(Metric::Gauge(g)) => g.value,
            _ => 0.0,
        };
        let latency = match metrics.by_name.get("delivery_latency").or(metrics.by_name.get("invoke_rtt")) {
            Some(Metric::Trend(t)) => t.clone(),
            _ => Trend::default(),
        };
        let window = latency.since(&self.latency);
        self.latency = latency;
        Sample {
            at_s,
            connections,
            deliveries_per_s: delta(count("messages_received"), &mut self.delivered),
            p50_ms: window.percentile_ms(50.0),
            p95_ms: window.percentile_ms(95.0),
            p99_ms: window.percentile_ms(99.0),
            errors_per_s: delta(count("errors"), &mut self.errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_the_difference_from_the_previous_one() {
        let mut metrics = Metrics::default();
        let mut previous = Previous::default();
        metrics.counter("messages_received").count = 100;
        metrics.trend("delivery_latency").record(Duration::from_millis(900));
        metrics.gauge("connections_open").set(12.0);
        let first = previous.advance(&metrics, 1.0, 1.0);
        assert_eq!((first.deliveries_per_s, first.connections, first.p99_ms.round()), (100.0, 12.0, 900.0));
        metrics.counter("messages_received").count = 300;
        metrics.counter("errors").count = 1;
        metrics.trend("delivery_latency").record(Duration::from_millis(2));
        let second = previous.advance(&metrics, 3.0, 2.0);
        assert_eq!((second.deliveries_per_s, second.errors_per_s), (100.0, 0.5));
        assert!((second.p99_ms - 2.0).abs() < 0.01, "this interval's latency only: {}", second.p99_ms);
        let restarted = previous.advance(&Metrics::default(), 4.0, 1.0);
        assert_eq!((restarted.deliveries_per_s, restarted.p99_ms), (0.0, 0.0));
    }
}
