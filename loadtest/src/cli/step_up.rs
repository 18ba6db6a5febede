//! Step-up mode (the Azure SignalR benchmark's method): constant-arrival-rate steps at rising
//! rates, each judged on its own; the run stops at the first failing step and the last good
//! step is the capacity the run reports.
//!
//! A step passes when fewer than 1 % of its messages were slow (≥ 1 s) or lost, fewer than
//! 1 % of its connections failed, and fewer than 1 % of its messages were never sent because
//! no VU was free (`dropped_iterations`: the harness, or the server's round trips, could not
//! keep the rate — a step that did not happen cannot pass). For fan-out scenarios a "message"
//! is one expected delivery; for echo it is one invocation.

use std::fmt::Write;

use serde_json::{json, Value};

use crate::model::metrics::{Metric, Metrics};
use crate::model::threshold::{Aggregates, Aggregation};
use crate::scenarios::ledger::Totals;

/// Largest share of slow or lost messages a passing step may have.
pub const MAX_SLOW_RATIO: f64 = 0.01;
/// Largest share of failed connections a passing step may have.
pub const MAX_FAILED_RATIO: f64 = 0.01;
/// Largest share of due messages a passing step may leave unsent.
pub const MAX_DROPPED_RATIO: f64 = 0.01;

/// One step's figures and verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Messages per second asked for.
    pub rate: f64,
    pub sent: u64,
    pub received: u64,
    /// 99th percentile of delivery latency (fan-out) or round trip (echo), ms.
    pub p99_ms: f64,
    /// Share of messages slow or lost.
    pub slow_ratio: f64,
    /// Share of connections that failed.
    pub failed_ratio: f64,
    /// Share of due messages not sent for want of a free VU.
    pub dropped_ratio: f64,
    pub passed: bool,
}

impl Step {
    /// Judges a step from its run's metrics.
    pub fn judge(rate: f64, metrics: &Metrics) -> Self {
        let count = |name: &str| match metrics.by_name.get(name) {
            Some(Metric::Counter(counter)) => Some(counter.count),
            _ => None,
        };
        let sent = count("messages_sent").unwrap_or(0);
        let expected = count("deliveries_expected").unwrap_or(sent);
        let received = count("deliveries_received").or(count("messages_received")).unwrap_or(0);
        let slow = count("messages_slow").unwrap_or(0);
        let slow_ratio = Totals { expected, received, slow, ..Totals::default() }.slow_or_lost_ratio();
        let failed_ratio = match metrics.by_name.get("connections_failed") {
            Some(metric) => metric.aggregate(Aggregation::Rate).unwrap_or(0.0),
            None => 0.0,
        };
        let latency = metrics.by_name.get("delivery_latency").or(metrics.by_name.get("invoke_rtt"));
        let p99_ms = latency.and_then(|m| m.aggregate(Aggregation::Percentile(99.0))).unwrap_or(0.0);
        let dropped = count("dropped_iterations").unwrap_or(0);
        let dropped_ratio = if dropped == 0 { 0.0 } else { dropped as f64 / (sent + dropped) as f64 };
        let passed = expected > 0
            && slow_ratio < MAX_SLOW_RATIO
            && failed_ratio < MAX_FAILED_RATIO
            && dropped_ratio < MAX_DROPPED_RATIO;
        Self { rate, sent, received, p99_ms, slow_ratio, failed_ratio, dropped_ratio, passed }
    }
}

/// The last step that passed before the first that failed.
pub fn last_good(steps: &[Step]) -> Option<&Step> {
    steps.iter().take_while(|step| step.passed).last()
}

/// The step table, one line per step, then the verdict.
pub fn table(steps: &[Step]) -> String {
    let mut out = String::from("     rate/s       sent   received     p99 ms   slow %  failed %  dropped %  verdict\n");
    for step in steps {
        let _ = writeln!(
            out,
            "  {:>9.0} {:>10} {:>10} {:>10.2} {:>8.2} {:>9.2} {:>10.2}  {}",
            step.rate,
            step.sent,
            step.received,
            step.p99_ms,
            step.slow_ratio * 100.0,
            step.failed_ratio * 100.0,
            step.dropped_ratio * 100.0,
            if step.passed { "pass" } else { "FAIL" }
        );
    }
    match last_good(steps) {
        Some(step) => {
            let _ = writeln!(out, "  last good step: {} messages/s", step.rate);
        }
        None => out.push_str("  no step passed\n"),
    }
    out
}

/// The steps for the JSON export.
pub fn export(steps: &[Step]) -> Value {
    let rows: Vec<Value> = steps
        .iter()
        .map(|s| {
            json!({ "rate": s.rate, "sent": s.sent, "received": s.received, "p99": s.p99_ms,
                    "slowRatio": s.slow_ratio, "failedRatio": s.failed_ratio, "droppedRatio": s.dropped_ratio,
                    "passed": s.passed })
        })
        .collect();
    json!({ "steps": rows, "lastGoodRate": last_good(steps).map(|s| s.rate) })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::metrics::Counter;

    fn metrics(expected: u64, received: u64, slow: u64, connections: (u64, u64)) -> Metrics {
        let mut metrics = Metrics::default();
        for (name, count) in [
            ("messages_sent", 100),
            ("deliveries_expected", expected),
            ("deliveries_received", received),
            ("messages_slow", slow),
        ] {
            metrics.by_name.insert(name.into(), Metric::Counter(Counter { count, elapsed: Duration::from_secs(1) }));
        }
        let failed = metrics.rate("connections_failed");
        (0..connections.0).for_each(|_| failed.add(true));
        (0..connections.1).for_each(|_| failed.add(false));
        metrics
    }

    #[test]
    fn a_step_passes_under_one_percent_slow_or_lost_and_one_percent_failed_connections() {
        assert!(Step::judge(100.0, &metrics(1000, 1000, 9, (0, 10))).passed);
        let lost = Step::judge(100.0, &metrics(1000, 995, 5, (0, 10)));
        assert!(!lost.passed && (lost.slow_ratio - 0.01).abs() < 1e-9);
        assert!(!Step::judge(100.0, &metrics(1000, 1000, 0, (1, 99))).passed);
        assert!(!Step::judge(100.0, &metrics(0, 0, 0, (0, 10))).passed, "a step that delivered nothing");
    }

    #[test]
    fn a_step_the_harness_could_not_keep_up_with_fails() {
        let mut dropped = metrics(1000, 1000, 0, (0, 10));
        dropped.counter("dropped_iterations").count = 1;
        assert!(Step::judge(100.0, &dropped).passed, "1 of 101 due is under 1 %");
        dropped.counter("dropped_iterations").count = 50;
        let step = Step::judge(100.0, &dropped);
        assert!(!step.passed && (step.dropped_ratio - 50.0 / 150.0).abs() < 1e-9);
    }

    #[test]
    fn echo_steps_count_invocations_as_messages() {
        let mut metrics = Metrics::default();
        metrics.counter("messages_sent").count = 200;
        metrics.counter("messages_received").count = 199;
        let step = Step::judge(20.0, &metrics);
        assert!((step.slow_ratio - 0.005).abs() < 1e-9 && step.passed);
    }

    #[test]
    fn the_last_good_step_is_the_one_before_the_first_failure() {
        let step = |rate, passed| Step {
            rate,
            sent: 0,
            received: 0,
            p99_ms: 0.0,
            slow_ratio: 0.0,
            failed_ratio: 0.0,
            dropped_ratio: 0.0,
            passed,
        };
        let steps = [step(100.0, true), step(200.0, true), step(400.0, false)];
        assert_eq!(last_good(&steps).map(|s| s.rate), Some(200.0));
        assert_eq!(last_good(&[step(100.0, false)]), None);
        let text = table(&steps);
        assert!(text.contains("FAIL") && text.contains("last good step: 200 messages/s"), "{text}");
        assert_eq!(export(&steps)["lastGoodRate"], 200.0);
    }
}
