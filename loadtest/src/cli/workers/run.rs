//! What the parent of `--workers` knows of one run in progress, and the merge of the
//! workers' outcomes into one.

use std::time::Duration;

use tokio::time::Instant;

use crate::model::metrics::{Metric, Metrics};
use crate::model::threshold::Threshold;
use crate::runner::{Failure, Outcome, Plan};
use crate::scenarios::ledger::Totals;
use crate::scenarios::peers::Member;

/// What the parent knows of one run in progress.
pub(super) struct RunState {
    pub plan: Plan,
    pub abort_thresholds: std::collections::BTreeMap<String, Vec<Threshold>>,
    pub latest: Vec<Metrics>,
    pub heard: Vec<Instant>,
    pub members: Vec<Option<Vec<Member>>>,
    pub members_shared: bool,
    pub draining: Vec<Option<Totals>>,
    pub last_drain_start: Option<Instant>,
    pub settled: bool,
    pub finished: Vec<Option<(Metrics, Duration, Option<Failure>)>>,
    pub aborted_by: Option<String>,
}

impl RunState {
    pub fn new(workers: usize, plan: &Plan) -> Self {
        let abort_thresholds = plan
            .thresholds
            .iter()
            .map(|(metric, list)| {
                (metric.clone(), list.iter().filter(|t| t.abort_on_fail).cloned().collect::<Vec<_>>())
            })
            .filter(|(_, list)| !list.is_empty())
            .collect();
        Self {
            plan: plan.clone(),
            abort_thresholds,
            latest: vec![Metrics::default(); workers],
            heard: vec![Instant::now(); workers],
            members: vec![None; workers],
            members_shared: false,
            draining: vec![None; workers],
            last_drain_start: None,
            settled: false,
            finished: vec![None; workers],
            aborted_by: None,
        }
    }

    pub fn all_finished(&self) -> bool {
        self.finished.iter().all(Option::is_some)
    }

    /// Every worker's latest figures (final ones for the finished) merged.
    pub fn merged(&self) -> Metrics {
        let mut merged = Metrics::default();
        for (latest, finished) in self.latest.iter().zip(&self.finished) {
            merged.merge(finished.as_ref().map(|(m, _, _)| m).unwrap_or(latest));
        }
        merged
    }

    pub fn outcome(self) -> Outcome {
        let mut metrics = Metrics::default();
        let mut elapsed = Duration::ZERO;
        let mut setup_failed = None;
        for (worker_metrics, took, failed) in self.finished.into_iter().flatten() {
            metrics.merge(&worker_metrics);
            elapsed = elapsed.max(took);
            setup_failed = setup_failed.or(failed);
        }
        recount_loss(&mut metrics);
        metrics.finish(elapsed);
        Outcome { metrics, elapsed, aborted_by: self.aborted_by, setup_failed }
    }
}

/// `deliveries_lost` of the merged run: summed per-worker losses would be wrong, since one
/// worker's publishers expect deliveries on another's subscribers.
fn recount_loss(metrics: &mut Metrics) {
    if !metrics.by_name.contains_key("deliveries_expected") {
        return;
    }
    let totals = ledger_of(metrics);
    metrics.counter("deliveries_lost").count = totals.lost();
}

/// The `deliveries_expected` / `deliveries_received` counters of a finished worker.
pub(super) fn ledger_of(metrics: &Metrics) -> Totals {
    let count = |name: &str| match metrics.by_name.get(name) {
        Some(Metric::Counter(c)) => c.count,
        _ => 0,
    };
    Totals { expected: count("deliveries_expected"), received: count("deliveries_received"), ..Totals::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::executor::Executor;

    fn finished(expected: u64, received: u64, secs: u64) -> Option<(Metrics, Duration, Option<Failure>)> {
        let mut metrics = Metrics::default();
        metrics.counter("deliveries_expected").count = expected;
        metrics.counter("deliveries_received").count = received;
        metrics.counter("deliveries_lost").count = expected.saturating_sub(received);
        Some((metrics, Duration::from_secs(secs), None))
    }

    #[test]
    fn loss_is_judged_on_the_merged_ledger_not_summed_per_worker() {
        let plan = Plan {
            executor: Executor::ConstantVus { vus: 1, duration: Duration::from_secs(1) },
            thresholds: Default::default(),
            graceful_stop: Duration::ZERO,
            progress: false,
            stop: None,
        };
        let mut run = RunState::new(2, &plan);
        // Worker 0 published ten deliveries, four of which reached its own subscribers and
        // six worker 1's: nothing was lost, though worker 0 alone counts six missing.
        run.finished = vec![finished(10, 4, 3), finished(0, 6, 4)];
        assert!(run.all_finished());
        let outcome = run.outcome();
        let count = |name: &str| match &outcome.metrics.by_name[name] {
            Metric::Counter(c) => (c.count, c.elapsed),
            other => panic!("{other:?}"),
        };
        assert_eq!(count("deliveries_lost"), (0, Duration::from_secs(4)), "the longest worker's run length");
        assert_eq!(count("deliveries_received").0, 10);
        assert_eq!(outcome.elapsed, Duration::from_secs(4));
    }
}
