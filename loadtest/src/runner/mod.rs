//! Runs a scenario under an executor, the way k6 runs a script: VUs loop over iterations
//! (`constant-vus`, `ramping-vus`), or iterations start on a schedule and borrow an idle VU
//! (`constant-arrival-rate`, `ramping-arrival-rate`; no idle VU → the iteration is dropped and
//! counted, as k6 does, and one more VU is prepared up to `maxVUs`). A scenario may ask for
//! dedicated senders instead ([`Scenario::dedicated_senders`]): a few VUs, each with its own
//! task running its share of the due iterations back to back, none waiting for a free VU.
//!
//! The runner records the metrics every run has — `iterations`, `iteration_duration`,
//! `dropped_iterations`, `vus`, `vus_max`, `errors` — and a [`Recorder`] lets the scenario add
//! its own (connect time, delivery latency, checks). Thresholds marked `abortOnFail` are
//! checked every second and stop the run early. Everything is timed with `tokio::time`, so the
//! tests run on a paused clock: exact and instant.

pub mod exporter;
pub mod footprint;
mod recorder;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::model::executor::Executor;
use crate::model::metrics::Metrics;
use crate::model::summary;
use crate::model::threshold::Threshold;
pub use recorder::Recorder;

/// How often the VU count is adjusted and arrival-rate starts are released.
const TICK: Duration = Duration::from_millis(10);
/// How often `abortOnFail` thresholds are evaluated.
const ABORT_CHECK: Duration = Duration::from_secs(1);

/// Why an iteration or a VU's setup failed: a kind (a low-cardinality label, e.g. `connect`,
/// `timeout`, `closed`) and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: &'static str,
    pub message: String,
}

/// What the runner drives: VUs that are set up once and run iterations.
pub trait Scenario: Send + Sync + 'static {
    /// A VU's state (its connection).
    type Vu: Send + 'static;

    /// Sets up VU number `index` (e.g. connects it).
    fn start_vu(&self, index: u32, recorder: &Recorder) -> impl Future<Output = Result<Self::Vu, Failure>> + Send;

    /// Runs one iteration on `vu`.
    fn iteration(&self, vu: &mut Self::Vu, recorder: &Recorder) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Runs once before the first VU starts (e.g. connects the subscribers a broadcast is
    /// measured on). A failure skips the schedule: the run ends with `setup_failed`.
    fn setup(&self, _recorder: &Recorder) -> impl Future<Output = Result<(), Failure>> + Send {
        async { Ok(()) }
    }

    /// Dedicated senders for arrival-rate executors (0, the default: iterations borrow idle
    /// VUs, as in k6). With `n` > 0 the runner starts `n` VUs and gives each a task of its own
    /// that runs every `n`-th due iteration on that VU as soon as it is due, all due ones
    /// back to back: no iteration waits for a free VU or a spawned task, so a fast iteration
    /// (a fire-and-forget publish) is paced by the schedule and the connection alone. Due
    /// iterations still unstarted when the schedule ends (the sender was held up, e.g. by a
    /// server that stopped reading) count as `dropped_iterations`.
    fn dedicated_senders(&self) -> u32 {
        0
    }

    /// Runs once after the schedule and the graceful stop, before the metrics are taken
    /// (e.g. waits for in-flight deliveries and records the delivery accounting).
    fn teardown(&self, _recorder: &Recorder) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub metrics: Metrics,
    pub elapsed: Duration,
    /// The `abortOnFail` threshold that stopped the run, if one did.
    pub aborted_by: Option<String>,
    /// Why [`Scenario::setup`] failed; the schedule did not run.
    pub setup_failed: Option<Failure>,
}

/// A run's settings besides the scenario.
#[derive(Debug, Clone)]
pub struct Plan {
    pub executor: Executor,
    /// Thresholds by metric; only those with `abortOnFail` are checked during the run.
    pub thresholds: std::collections::BTreeMap<String, Vec<Threshold>>,
    /// How long running iterations may finish after the schedule ends (k6's `gracefulStop`).
    pub graceful_stop: Duration,
    /// Print a live progress line to stderr every second.
    pub progress: bool,
    /// Stops the schedule early when it turns true, as a failed `abortOnFail` threshold does:
    /// how the parent of `--workers` stops every worker when the merged figures cross one.
    pub stop: Option<watch::Receiver<bool>>,
}

/// Runs `scenario` to the end of `plan` (or until an `abortOnFail` threshold fails).
pub async fn run<S: Scenario>(scenario: Arc<S>, plan: Plan) -> Outcome {
    run_into(scenario, plan, Recorder::default()).await
}

/// [`run`], recording into `recorder` (which e.g. the Prometheus exporter also reads); the
/// metrics are taken out of it at the end.
pub async fn run_into<S: Scenario>(scenario: Arc<S>, plan: Plan, recorder: Recorder) -> Outcome {
    let started = Instant::now();
    if let Err(failure) = scenario.setup(&recorder).await {
        recorder.failure(&failure);
        scenario.teardown(&recorder).await;
        let mut metrics = recorder.take();
        metrics.finish(started.elapsed());
        return Outcome { metrics, elapsed: started.elapsed(), aborted_by: None, setup_failed: Some(failure) };
    }
    let outcome = schedule(&scenario, &plan, &recorder).await;
    scenario.teardown(&recorder).await;
    let elapsed = started.elapsed();
    let mut metrics = recorder.take();
    metrics.finish(elapsed);
    Outcome { metrics, elapsed, aborted_by: outcome, setup_failed: None }
}

/// Runs the executor's schedule, then the graceful stop; returns the `abortOnFail`
/// threshold that stopped it early, if one did.
async fn schedule<S: Scenario>(scenario: &Arc<S>, plan: &Plan, recorder: &Recorder) -> Option<String> {
    let (stop, stopped) = watch::channel(false);
    let started = Instant::now();
    let watchdog = tokio::spawn(watch_abort(recorder.clone(), plan.thresholds.clone(), stop.clone()));
    let outside = plan.stop.clone().map(|mut told| {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !*told.borrow_and_update() {
                if told.changed().await.is_err() {
                    return;
                }
            }
            let _ = stop.send(true);
        })
    });
    let progress = plan.progress.then(|| tokio::spawn(report_progress(recorder.clone(), plan.executor.duration())));
    let mut tasks = JoinSet::new();
    let senders = scenario.dedicated_senders();
    if plan.executor.is_arrival_rate() && senders > 0 {
        dedicated(scenario, &plan.executor, senders, recorder, stopped).await;
    } else if plan.executor.is_arrival_rate() {
        arrival_rate(scenario, &plan.executor, recorder, &mut tasks, stopped).await;
    } else {
        looping_vus(scenario, &plan.executor, recorder, &mut tasks, stopped, started).await;
    }
    let _ = stop.send(true);
    drain(&mut tasks, plan.graceful_stop).await;
    watchdog.abort();
    if let Some(outside) = outside {
        outside.abort();
    }
    if let Some(progress) = progress {
        progress.abort();
        eprintln!();
    }
    watchdog.await.ok().flatten()
}

/// VU executors: keep as many VUs looping as the schedule says, ramping down by asking the
/// newest VUs to stop after their current iteration.
async fn looping_vus<S: Scenario>(
    scenario: &Arc<S>,
    executor: &Executor,
    recorder: &Recorder,
    tasks: &mut JoinSet<()>,
    mut stopped: watch::Receiver<bool>,
    started: Instant,
) {
    let mut active: Vec<watch::Sender<bool>> = Vec::new();
    let mut next_index = 0u32;
    let mut tick = tokio::time::interval(TICK);
    recorder.gauge("vus_max", f64::from(executor.max_vus()));
    while started.elapsed() < executor.duration() && !*stopped.borrow() {
        let wanted = executor.vus_at(started.elapsed()) as usize;
        while active.len() < wanted {
            let (quit, quitting) = watch::channel(false);
            tasks.spawn(vu_loop(scenario.clone(), next_index, recorder.clone(), quitting));
            active.push(quit);
            next_index += 1;
        }
        while active.len() > wanted {
            if let Some(quit) = active.pop() {
                let _ = quit.send(true);
            }
        }
        recorder.gauge("vus", active.len() as f64);
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => {}
        }
    }
    for quit in active {
        let _ = quit.send(true);
    }
}

/// One looping VU: set up, then iterations until told to quit.
async fn vu_loop<S: Scenario>(scenario: Arc<S>, index: u32, recorder: Recorder, quitting: watch::Receiver<bool>) {
    let Some(mut vu) = start_vu(&*scenario, index, &recorder).await else { return };
    while !*quitting.borrow() {
        iterate(&*scenario, &mut vu, &recorder).await;
    }
}

async fn start_vu<S: Scenario>(scenario: &S, index: u32, recorder: &Recorder) -> Option<S::Vu> {
    match scenario.start_vu(index, recorder).await {
        Ok(vu) => Some(vu),
        Err(failure) => {
            recorder.failure(&failure);
            None
        }
    }
}

async fn iterate<S: Scenario>(scenario: &S, vu: &mut S::Vu, recorder: &Recorder) {
    let began = Instant::now();
    let result = scenario.iteration(vu, recorder).await;
    let took = began.elapsed();
    recorder.update(|metrics| {
        metrics.trend("iteration_duration").record(took);
        metrics.counter("iterations").count += 1;
    });
    if let Err(failure) = result {
        recorder.failure(&failure);
        // A failing iteration must not spin: give the server a moment.
        tokio::time::sleep(TICK).await;
    }
}

/// Arrival-rate executors: release the iterations due each tick onto idle VUs.
async fn arrival_rate<S: Scenario>(
    scenario: &Arc<S>,
    executor: &Executor,
    recorder: &Recorder,
    tasks: &mut JoinSet<()>,
    mut stopped: watch::Receiver<bool>,
) {
    let max_vus = executor.max_vus() as usize;
    let (idle_tx, mut idle_rx) = mpsc::channel::<S::Vu>(max_vus.max(1));
    // Pre-allocated VUs are ready before the schedule starts, as in k6.
    let mut allocated = executor.vus_at(Duration::ZERO) as usize;
    let mut setup = JoinSet::new();
    for index in 0..allocated {
        let (scenario, recorder) = (scenario.clone(), recorder.clone());
        setup.spawn(async move { start_vu(&*scenario, index as u32, &recorder).await });
    }
    while let Some(started) = setup.join_next().await {
        if let Ok(Some(vu)) = started {
            let _ = idle_tx.send(vu).await;
        }
    }
    let started = Instant::now();
    recorder.gauge("vus_max", max_vus as f64);
    let mut released = 0u64;
    let mut tick = tokio::time::interval(TICK);
    while started.elapsed() < executor.duration() && !*stopped.borrow() {
        let due = executor.iterations_by(started.elapsed()).unwrap_or(0);
        while released < due {
            released += 1;
            match idle_rx.try_recv() {
                Ok(vu) => {
                    let (scenario, recorder, idle) = (scenario.clone(), recorder.clone(), idle_tx.clone());
                    tasks.spawn(async move {
                        let mut vu = vu;
                        iterate(&*scenario, &mut vu, &recorder).await;
                        let _ = idle.send(vu).await;
                    });
                }
                Err(_) => {
                    recorder.count("dropped_iterations", 1);
                    if allocated < max_vus {
                        allocate(scenario, allocated as u32, recorder, &idle_tx, tasks);
                        allocated += 1;
                    }
                }
            }
        }
        recorder.gauge("vus", allocated as f64);
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => {}
        }
    }
}

/// Arrival-rate executors on dedicated senders (see [`Scenario::dedicated_senders`]).
async fn dedicated<S: Scenario>(
    scenario: &Arc<S>,
    executor: &Executor,
    senders: u32,
    recorder: &Recorder,
    stopped: watch::Receiver<bool>,
) {
    let mut setup = JoinSet::new();
    for index in 0..senders {
        let (scenario, recorder) = (scenario.clone(), recorder.clone());
        setup.spawn(async move { (index, start_vu(&*scenario, index, &recorder).await) });
    }
    let mut vus = Vec::new();
    while let Some(started) = setup.join_next().await {
        if let Ok((index, Some(vu))) = started {
            vus.push((index, vu));
        }
    }
    recorder.gauge("vus", vus.len() as f64);
    recorder.gauge("vus_max", f64::from(senders));
    let started = Instant::now();
    let mut running = JoinSet::new();
    let serving: Vec<u32> = vus.iter().map(|(index, _)| *index).collect();
    for (index, vu) in vus {
        let (scenario, recorder, executor) = (scenario.clone(), recorder.clone(), executor.clone());
        running.spawn(send_due(scenario, vu, index, senders, executor, recorder, started, stopped.clone()));
    }
    let mut unsent = 0;
    while let Some(left) = running.join_next().await {
        unsent += left.unwrap_or(0);
    }
    // The iterations of senders whose VU could not be set up are due and unsent too.
    let total = executor.iterations_by(started.elapsed().min(executor.duration())).unwrap_or(0);
    let covered: u64 = serving.iter().map(|&k| share_of(total, k, senders)).sum();
    recorder.count("dropped_iterations", unsent + total.saturating_sub(covered));
}

/// One dedicated sender: runs iterations `index`, `index + senders`, … each as soon as it is
/// due, until the schedule ends; returns how many were due but not started by then.
#[allow(clippy::too_many_arguments)]
async fn send_due<S: Scenario>(
    scenario: Arc<S>,
    mut vu: S::Vu,
    index: u32,
    senders: u32,
    executor: Executor,
    recorder: Recorder,
    started: Instant,
    mut stopped: watch::Receiver<bool>,
) -> u64 {
    let mut done = 0u64;
    let end = started + executor.duration();
    // Iterations due in the schedule's last tick are started at its end, a tick late at most;
    // one still running a tick after the end is given up, so a stuck connection cannot hold
    // the run (it counts as unsent).
    let give_up = end + TICK;
    let total = share_of(executor.iterations_by(executor.duration()).unwrap_or(0), index, senders);
    let mut next_tick = started;
    loop {
        let now = Instant::now();
        let due = share_of(executor.iterations_by(now - started).unwrap_or(0), index, senders);
        let behind = due.saturating_sub(done);
        if behind > 1 {
            recorder.update(|m| {
                let gauge = m.gauge("publish_backlog_max");
                if behind as f64 > gauge.max {
                    gauge.set(behind as f64);
                }
            });
        }
        while done < due && !*stopped.borrow() {
            if tokio::time::timeout_at(give_up, iterate(&*scenario, &mut vu, &recorder)).await.is_err() {
                return total.saturating_sub(done);
            }
            done += 1;
        }
        if now >= end || *stopped.borrow() {
            return if *stopped.borrow() { 0 } else { total.saturating_sub(done) };
        }
        next_tick = (next_tick + TICK).max(Instant::now()).min(end);
        tokio::select! {
            _ = tokio::time::sleep_until(next_tick) => {}
            _ = stopped.changed() => {}
        }
    }
}

/// How many of the first `total` iterations fall to sender `index` of `senders` (it takes
/// iterations `index`, `index + senders`, …).
fn share_of(total: u64, index: u32, senders: u32) -> u64 {
    let (index, senders) = (u64::from(index), u64::from(senders.max(1)));
    if total > index {
        (total - index).div_ceil(senders)
    } else {
        0
    }
}

/// Sets up one more VU in the background and puts it in the idle pool.
fn allocate<S: Scenario>(
    scenario: &Arc<S>,
    index: u32,
    recorder: &Recorder,
    idle: &mpsc::Sender<S::Vu>,
    tasks: &mut JoinSet<()>,
) {
    let (scenario, recorder, idle) = (scenario.clone(), recorder.clone(), idle.clone());
    tasks.spawn(async move {
        if let Some(vu) = start_vu(&*scenario, index, &recorder).await {
            let _ = idle.send(vu).await;
        }
    });
}

/// Lets running iterations finish for up to `grace`, then stops the rest.
async fn drain(tasks: &mut JoinSet<()>, grace: Duration) {
    let finished = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Rewrites one status line on stderr every second, like k6's progress bar.
async fn report_progress(recorder: Recorder, planned: Duration) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let line = recorder.with(|metrics| progress_line(metrics, started.elapsed(), planned));
        eprint!("\r{line}");
    }
}

/// `running (12.0s/30s), 10/10 VUs, 1234 complete iterations, 0 dropped, 0 errors`.
pub fn progress_line(metrics: &Metrics, elapsed: Duration, planned: Duration) -> String {
    use crate::model::threshold::{Aggregates, Aggregation};
    let read =
        |name: &str, aggregation| metrics.by_name.get(name).and_then(|m| m.aggregate(aggregation)).unwrap_or(0.0);
    format!(
        "running ({:.1}s/{}s), {}/{} VUs, {} complete iterations, {} dropped, {} errors",
        elapsed.as_secs_f64(),
        planned.as_secs(),
        read("vus", Aggregation::Value),
        read("vus_max", Aggregation::Value),
        read("iterations", Aggregation::Count),
        read("dropped_iterations", Aggregation::Count),
        read("errors", Aggregation::Count),
    )
}

/// Checks the `abortOnFail` thresholds every second; stops the run at the first that fails
/// and returns it.
async fn watch_abort(
    recorder: Recorder,
    thresholds: std::collections::BTreeMap<String, Vec<Threshold>>,
    stop: watch::Sender<bool>,
) -> Option<String> {
    let watched: std::collections::BTreeMap<String, Vec<Threshold>> = thresholds
        .into_iter()
        .map(|(metric, list)| (metric, list.into_iter().filter(|t| t.abort_on_fail).collect::<Vec<_>>()))
        .filter(|(_, list)| !list.is_empty())
        .collect();
    if watched.is_empty() {
        return std::future::pending().await;
    }
    let mut tick = tokio::time::interval(ABORT_CHECK);
    tick.tick().await;
    loop {
        tick.tick().await;
        let verdicts = recorder.with(|metrics| summary::judge(metrics, &watched));
        // A metric not recorded yet is not a failure while the run goes on.
        if let Some(failed) = verdicts.iter().find(|v| v.ok == Some(false)) {
            let _ = stop.send(true);
            return Some(format!("{}: {}", failed.metric, failed.threshold));
        }
    }
}

#[cfg(test)]
mod tests;
