//! The runner on a paused clock: iterations take exactly what the fake scenario sleeps, so
//! counts are exact.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::model::metrics::Metric;
use crate::model::threshold::Aggregates;
use crate::model::threshold::Aggregation;

/// Iterations that sleep `work`; VU setup fails for the indexes in `broken`.
struct Sleeper {
    work: Duration,
    broken: Vec<u32>,
    started: AtomicU32,
}

impl Sleeper {
    fn new(work_ms: u64) -> Arc<Self> {
        Arc::new(Self { work: Duration::from_millis(work_ms), broken: Vec::new(), started: AtomicU32::new(0) })
    }
}

impl Scenario for Sleeper {
    type Vu = u32;

    async fn start_vu(&self, index: u32, _: &Recorder) -> Result<u32, Failure> {
        self.started.fetch_add(1, Ordering::Relaxed);
        if self.broken.contains(&index) {
            return Err(Failure { kind: "connect", message: "refused".into() });
        }
        Ok(index)
    }

    async fn iteration(&self, _: &mut u32, recorder: &Recorder) -> Result<(), Failure> {
        tokio::time::sleep(self.work).await;
        recorder.trend("work", self.work);
        Ok(())
    }
}

fn plan(executor: Executor) -> Plan {
    Plan { executor, thresholds: BTreeMap::new(), graceful_stop: Duration::from_secs(30), progress: false, stop: None }
}

fn count(metrics: &Metrics, name: &str) -> f64 {
    metrics.by_name.get(name).and_then(|m| m.aggregate(Aggregation::Count)).unwrap_or(0.0)
}

#[tokio::test(start_paused = true)]
async fn constant_vus_loop_iterations_for_the_duration() {
    let executor = Executor::ConstantVus { vus: 5, duration: Duration::from_secs(1) };
    let outcome = run(Sleeper::new(10), plan(executor)).await;
    // 5 VUs × 100 iterations of 10 ms, plus at most one finishing iteration each.
    let iterations = count(&outcome.metrics, "iterations");
    assert!((500.0..=505.0).contains(&iterations), "{iterations}");
    assert_eq!(count(&outcome.metrics, "errors"), 0.0);
    assert!(outcome.aborted_by.is_none());
}

#[tokio::test(start_paused = true)]
async fn ramping_vus_follow_the_stages() {
    let executor = Executor::RampingVus {
        start_vus: 0,
        stages: vec![
            crate::model::executor::Stage { duration: Duration::from_secs(1), target: 10.0 },
            crate::model::executor::Stage { duration: Duration::from_secs(1), target: 0.0 },
        ],
    };
    let scenario = Sleeper::new(10);
    let outcome = run(scenario.clone(), plan(executor)).await;
    // The average VU count is 5 over 2 s, so about 5 × 200 iterations of 10 ms.
    let iterations = count(&outcome.metrics, "iterations");
    assert!((900.0..=1100.0).contains(&iterations), "{iterations}");
    assert_eq!(scenario.started.load(Ordering::Relaxed), 10, "one VU per step up, none restarted");
    let Some(Metric::Gauge(vus)) = outcome.metrics.by_name.get("vus") else { panic!("no vus gauge") };
    assert_eq!((vus.max, vus.value), (10.0, 0.0));
}

#[tokio::test(start_paused = true)]
async fn an_arrival_rate_starts_iterations_on_schedule_whatever_they_take() {
    let executor = Executor::ConstantArrivalRate {
        rate: 100.0,
        time_unit: Duration::from_secs(1),
        duration: Duration::from_secs(2),
        pre_allocated_vus: 20,
        max_vus: None,
    };
    let outcome = run(Sleeper::new(50), plan(executor)).await;
    assert_eq!(count(&outcome.metrics, "iterations"), 200.0);
    assert_eq!(count(&outcome.metrics, "dropped_iterations"), 0.0);
}

#[tokio::test(start_paused = true)]
async fn without_an_idle_vu_an_iteration_is_dropped_and_counted() {
    // 100/s of 50 ms iterations need 5 VUs; one VU (and no room to add) takes the first slot
    // after each iteration: one every 60 ms.
    let executor = Executor::ConstantArrivalRate {
        rate: 100.0,
        time_unit: Duration::from_secs(1),
        duration: Duration::from_secs(2),
        pre_allocated_vus: 1,
        max_vus: Some(1),
    };
    let outcome = run(Sleeper::new(50), plan(executor)).await;
    let (done, dropped) = (count(&outcome.metrics, "iterations"), count(&outcome.metrics, "dropped_iterations"));
    assert_eq!(done + dropped, 200.0, "every scheduled iteration is either run or dropped");
    assert!((30.0..=40.0).contains(&done), "{done}");
}

#[tokio::test(start_paused = true)]
async fn failed_vu_setups_are_counted_by_kind() {
    let scenario =
        Arc::new(Sleeper { work: Duration::from_millis(10), broken: vec![1, 3], started: AtomicU32::new(0) });
    let executor = Executor::ConstantVus { vus: 4, duration: Duration::from_millis(100) };
    let outcome = run(scenario, plan(executor)).await;
    assert_eq!(count(&outcome.metrics, "errors"), 2.0);
    assert_eq!(count(&outcome.metrics, "errors_connect"), 2.0);
}

#[tokio::test(start_paused = true)]
async fn an_abort_on_fail_threshold_stops_the_run_early() {
    let executor = Executor::ConstantVus { vus: 2, duration: Duration::from_secs(60) };
    let mut threshold: Threshold = "p(95)<5".parse().expect("a valid threshold");
    threshold.abort_on_fail = true;
    let mut thresholds = BTreeMap::new();
    thresholds.insert("work".to_owned(), vec![threshold]);
    let outcome = run(Sleeper::new(10), Plan { thresholds, ..plan(executor) }).await;
    assert_eq!(outcome.aborted_by.as_deref(), Some("work: p(95)<5"));
    assert!(outcome.elapsed < Duration::from_secs(3), "{:?}", outcome.elapsed);
}

#[test]
fn the_progress_line_reads_like_k6s() {
    let mut metrics = Metrics::default();
    metrics.gauge("vus").set(8.0);
    metrics.gauge("vus_max").set(10.0);
    metrics.counter("iterations").count = 1234;
    let line = progress_line(&metrics, Duration::from_millis(12_340), Duration::from_secs(30));
    assert_eq!(line, "running (12.3s/30s), 8/10 VUs, 1234 complete iterations, 0 dropped, 0 errors");
}

#[tokio::test(start_paused = true)]
async fn a_stop_from_outside_ends_the_schedule_early() {
    let (stop, stopped) = watch::channel(false);
    let executor = Executor::ConstantVus { vus: 2, duration: Duration::from_secs(60) };
    let running = tokio::spawn(run(Sleeper::new(10), Plan { stop: Some(stopped), ..plan(executor) }));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop.send(true);
    let outcome = running.await.unwrap();
    assert!(outcome.elapsed < Duration::from_secs(3), "{:?}", outcome.elapsed);
    assert!(outcome.aborted_by.is_none(), "an outside stop is not a threshold of this run");
}

/// A scenario on dedicated senders: iterations take `work`, counting the VUs it starts.
struct Senders {
    inner: Arc<Sleeper>,
    senders: u32,
}

impl Scenario for Senders {
    type Vu = u32;

    async fn start_vu(&self, index: u32, recorder: &Recorder) -> Result<u32, Failure> {
        self.inner.start_vu(index, recorder).await
    }

    async fn iteration(&self, vu: &mut u32, recorder: &Recorder) -> Result<(), Failure> {
        self.inner.iteration(vu, recorder).await
    }

    fn dedicated_senders(&self) -> u32 {
        self.senders
    }
}

fn arrival(rate: f64, pre_allocated_vus: u32) -> Executor {
    Executor::ConstantArrivalRate {
        rate,
        time_unit: Duration::from_secs(1),
        duration: Duration::from_secs(1),
        pre_allocated_vus,
        max_vus: Some(pre_allocated_vus),
    }
}

#[tokio::test(start_paused = true)]
async fn dedicated_senders_start_every_due_iteration_where_borrowed_vus_drop_them() {
    // 1,000 iterations/s of 1 ms each: two VUs borrowed per iteration cannot keep up (ten
    // are due per 10 ms tick, and a VU is back in the pool only when its iteration's task
    // ends), two dedicated senders run everything due back to back.
    let borrowed = run(Sleeper::new(1), plan(arrival(1000.0, 2))).await;
    assert!(count(&borrowed.metrics, "dropped_iterations") > 100.0, "{:?}", borrowed.metrics.by_name.keys());
    let scenario = Arc::new(Senders { inner: Sleeper::new(1), senders: 2 });
    let dedicated = run(scenario.clone(), plan(arrival(1000.0, 50))).await;
    let iterations = count(&dedicated.metrics, "iterations");
    assert!(iterations >= 995.0, "{iterations}");
    assert_eq!(iterations + count(&dedicated.metrics, "dropped_iterations"), 1000.0);
    assert_eq!(scenario.inner.started.load(Ordering::Relaxed), 2, "one VU per sender, whatever the pool says");
}

#[tokio::test(start_paused = true)]
async fn a_held_up_sender_counts_what_it_could_not_send() {
    // Iterations of 100 ms on one sender at 100/s: ten get through, the rest are unsent.
    let scenario = Arc::new(Senders { inner: Sleeper::new(100), senders: 1 });
    let outcome = run(scenario, plan(arrival(100.0, 1))).await;
    let (iterations, dropped) = (count(&outcome.metrics, "iterations"), count(&outcome.metrics, "dropped_iterations"));
    assert!((9.0..=10.0).contains(&iterations), "{iterations}");
    assert_eq!(iterations + dropped, 100.0);
    assert!(
        outcome.elapsed < Duration::from_millis(1200),
        "a held-up sender does not hold the run: {:?}",
        outcome.elapsed
    );
}
