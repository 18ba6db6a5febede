//! `loadtest run`: merges the scenario file with the flags ([`plan`]), runs a built-in
//! scenario under the runner (or a [`step_up`] series of runs), judges the thresholds and
//! returns a [`Report`] whose exit code follows k6: 0 passed, 99 a threshold failed,
//! 108 aborted by an `abortOnFail` threshold, 1 for setup errors.
//!
//! A run happens in this process, or spread over worker processes ([`workers`]: `--workers
//! N`, the binary's default one per core) or over agents on other machines ([`agent`]:
//! `--agent HOST:PORT`), whose metrics are merged live into the same summary; `--report`
//! adds an HTML file ([`crate::report`]).
//!
//! The binary is a thin shell over [`execute`], so the end-to-end tests run exactly what a
//! user runs, against in-process gateways.

pub mod agent;
pub mod args;
pub mod plan;
pub mod step_up;
pub mod workers;

use std::fmt::Write;
use std::sync::Arc;

use thiserror::Error;

pub use args::RunArgs;
use plan::{PlanError, Resolved, ScenarioName};
use step_up::Step;

use crate::model::executor::Executor;
use crate::model::metrics::Metrics;
use crate::model::scenario::ScenarioFile;
use crate::model::summary::{self, Verdict};
use crate::runner::{self, Failure, Outcome, Plan, Recorder};
use crate::scenarios::churn::Churn;
use crate::scenarios::echo::Echo;
use crate::scenarios::fanout::{Fanout, Route};
use crate::scenarios::peers::{Alone, Peers};
use crate::scenarios::Settings;
use crate::signalr;

/// Every threshold held.
pub const EXIT_PASSED: i32 = 0;
/// The plan or the scenario's setup failed (k6 exits 1 for script errors too).
pub const EXIT_SETUP: i32 = 1;
/// A threshold failed (k6's code).
pub const EXIT_THRESHOLDS_FAILED: i32 = 99;
/// An `abortOnFail` threshold stopped the run (k6's code).
pub const EXIT_ABORTED: i32 = 108;

/// Why `run` could not start or finish writing its results (exit code 1).
#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("--prometheus: {0}")]
    Prometheus(std::io::Error),
    #[error("--summary-export {path}: {reason}")]
    Export { path: String, reason: String },
    #[error("--report {path}: {reason}")]
    Report { path: String, reason: String },
    #[error("worker {index}: {reason}")]
    Worker { index: usize, reason: String },
    #[error("--workers: {0}")]
    Workers(String),
}

/// What a run produced.
#[derive(Debug)]
pub struct Report {
    /// The run's metrics (in step-up mode: the last step's).
    pub metrics: Metrics,
    pub verdicts: Vec<Verdict>,
    pub aborted_by: Option<String>,
    pub setup_failed: Option<Failure>,
    /// Step-up steps, in order; empty otherwise.
    pub steps: Vec<Step>,
    /// k6's summary, the thresholds block and (step-up) the step table.
    pub summary: String,
    pub exit_code: i32,
}

/// Runs `loadtest run` with `args`.
pub async fn execute(args: RunArgs) -> Result<Report, RunError> {
    let file = args.file.as_deref().map(ScenarioFile::load).transpose().map_err(PlanError::from)?;
    let resolved = plan::resolve(file, &args)?;
    let recorder = Recorder::default();
    let exporter = match resolved.prometheus {
        Some(addr) => {
            let (bound, task) = runner::exporter::serve(addr, recorder.clone(), resolved.tags.clone())
                .await
                .map_err(RunError::Prometheus)?;
            eprintln!("metrics at http://{bound}/metrics");
            Some(task)
        }
        None => None,
    };
    let mut engine = Engine::start(&resolved, args.workers, &args.agents, args.agent_token.as_deref()).await?;
    let footprint = matches!(engine, Engine::Local).then(|| {
        let baseline = runner::footprint::rss_kib().unwrap_or(0);
        tokio::spawn(runner::footprint::sample(recorder.clone(), baseline, signalr::open_connections))
    });
    let timeline = args.report.as_ref().map(|_| {
        let timeline = crate::report::Timeline::default();
        (timeline.clone(), tokio::spawn(timeline.sample(recorder.clone())))
    });
    let report = match &resolved.step_up {
        Some((rates, step)) => step_up_run(&resolved, rates, *step, &recorder, &mut engine).await,
        None => single_run(&resolved, &recorder, &mut engine).await,
    };
    if let Some(footprint) = footprint {
        footprint.abort();
    }
    if let Some(task) = exporter {
        task.abort();
    }
    engine.finish().await;
    let report = report?;
    if let (Some(path), Some((timeline, sampler))) = (&args.report, timeline) {
        sampler.abort();
        write_html(path, &resolved, &report, &timeline.samples())?;
    }
    if let Some(path) = &resolved.summary_export {
        write_export(path, &report)?;
    }
    Ok(report)
}

/// Where the scenario runs: in this process, or spread over worker processes.
enum Engine {
    Local,
    Workers(workers::Pool, u32),
}

impl Engine {
    /// `workers` processes (none: this process alone), checked against the open-file limit,
    /// or one worker per agent in `agents`.
    async fn start(
        resolved: &Resolved,
        workers: Option<u32>,
        agents: &[String],
        token: Option<&str>,
    ) -> Result<Self, RunError> {
        let fanout = !matches!(resolved.scenario, ScenarioName::Echo | ScenarioName::Churn);
        let mut executor = resolved.plan.executor.clone();
        if let Some((rates, length)) = &resolved.step_up {
            let fastest = rates.iter().copied().fold(0.0, f64::max);
            executor = step_plan(&resolved.plan, fastest, *length).executor;
        }
        let connections = workers::split::connections(&executor, &resolved.settings, fanout);
        if !agents.is_empty() {
            let token = token.ok_or_else(|| RunError::Workers("--agent needs --agent-token".into()))?;
            let count = u32::try_from(agents.len()).unwrap_or(u32::MAX);
            let each = connections.div_ceil(u64::from(count));
            return Ok(Self::Workers(workers::Pool::connect(agents, token, each).await?, count));
        }
        let count = match workers {
            None | Some(1) => return Ok(Self::Local),
            Some(0) => return Err(RunError::Workers("at least one".into())),
            Some(count) => count,
        };
        let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(_, hard)| hard).unwrap_or(u64::MAX);
        let needed = workers::split::workers_needed(connections, limit);
        if needed > count {
            return Err(RunError::Workers(format!(
                "{connections} connections need at least {needed} workers under the open-file limit of {limit} per process"
            )));
        }
        let each = connections.div_ceil(u64::from(count));
        let exe = std::env::current_exe().map_err(|e| RunError::Workers(format!("cannot find this binary: {e}")))?;
        Ok(Self::Workers(workers::Pool::start(&exe, count, each).await?, count))
    }

    async fn run(&mut self, resolved: &Resolved, plan: Plan, recorder: &Recorder) -> Result<Outcome, RunError> {
        match self {
            Self::Local => {
                let alone: Arc<dyn Peers> = Arc::new(Alone);
                Ok(run_scenario(resolved.scenario, &resolved.settings, plan, recorder, alone).await)
            }
            Self::Workers(pool, count) => {
                let jobs = workers::jobs(resolved, &plan, *count);
                let outcome = pool.run(jobs, &plan, resolved.settings.drain, recorder).await?;
                recorder.take();
                Ok(outcome)
            }
        }
    }

    async fn finish(self) {
        if let Self::Workers(pool, _) = self {
            pool.finish().await;
        }
    }
}

/// The number of workers `loadtest run` uses without `--workers`: one per core, or more when
/// the connections of the plan need them to stay under the open-file limit.
pub fn default_workers(args: &RunArgs) -> Result<u32, RunError> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let cores = u32::try_from(cores).unwrap_or(1);
    let file = args.file.as_deref().map(ScenarioFile::load).transpose().map_err(PlanError::from)?;
    let resolved = plan::resolve(file, args)?;
    let fanout = !matches!(resolved.scenario, ScenarioName::Echo | ScenarioName::Churn);
    let connections = workers::split::connections(&resolved.plan.executor, &resolved.settings, fanout);
    let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(_, hard)| hard).unwrap_or(u64::MAX);
    Ok(cores.max(workers::split::workers_needed(connections, limit)))
}

async fn single_run(resolved: &Resolved, recorder: &Recorder, engine: &mut Engine) -> Result<Report, RunError> {
    let outcome = engine.run(resolved, resolved.plan.clone(), recorder).await?;
    Ok(report(outcome, &resolved.plan, Vec::new()))
}

/// Runs one constant-arrival-rate step per rate until a step fails.
async fn step_up_run(
    resolved: &Resolved,
    rates: &[f64],
    length: std::time::Duration,
    recorder: &Recorder,
    engine: &mut Engine,
) -> Result<Report, RunError> {
    let mut steps = Vec::new();
    let mut last = None;
    for &rate in rates {
        let plan = step_plan(&resolved.plan, rate, length);
        eprintln!("step: {rate} messages/s for {}", humantime::format_duration(length));
        let outcome = engine.run(resolved, plan.clone(), recorder).await?;
        let verdicts = summary::judge(&outcome.metrics, &plan.thresholds);
        let mut step = Step::judge(rate, &outcome.metrics);
        step.passed &= summary::all_passed(&verdicts) && outcome.setup_failed.is_none();
        steps.push(step.clone());
        last = Some((outcome, plan));
        if !step.passed {
            break;
        }
    }
    Ok(match last {
        Some((outcome, plan)) => report(outcome, &plan, steps),
        None => report(empty_outcome(), &resolved.plan, steps),
    })
}

/// A step: the plan's executor replaced by a constant arrival rate (per second) for `length`.
fn step_plan(plan: &Plan, rate: f64, length: std::time::Duration) -> Plan {
    let (pre_allocated_vus, max_vus) = match &plan.executor {
        Executor::ConstantArrivalRate { pre_allocated_vus, max_vus, .. }
        | Executor::RampingArrivalRate { pre_allocated_vus, max_vus, .. } => (*pre_allocated_vus, *max_vus),
        _ => (10, Some(100)),
    };
    let time_unit = std::time::Duration::from_secs(1);
    let executor = Executor::ConstantArrivalRate { rate, time_unit, duration: length, pre_allocated_vus, max_vus };
    Plan { executor, ..plan.clone() }
}

fn empty_outcome() -> Outcome {
    Outcome { metrics: Metrics::default(), elapsed: Default::default(), aborted_by: None, setup_failed: None }
}

/// Runs the named built-in scenario; a fan-out scenario settles its directory and drain with
/// `peers`.
pub(crate) async fn run_scenario(
    name: ScenarioName,
    settings: &Settings,
    plan: Plan,
    recorder: &Recorder,
    peers: Arc<dyn Peers>,
) -> Outcome {
    let settings = Arc::new(settings.clone());
    let recorder = recorder.clone();
    let fanout = |route| Arc::new(Fanout::with_peers(route, settings.clone(), peers.clone()));
    match name {
        ScenarioName::Echo => runner::run_into(Arc::new(Echo::new(settings)), plan, recorder).await,
        ScenarioName::Churn => runner::run_into(Arc::new(Churn::new(settings)), plan, recorder).await,
        ScenarioName::Broadcast => runner::run_into(fanout(Route::All), plan, recorder).await,
        ScenarioName::Group => runner::run_into(fanout(Route::Group), plan, recorder).await,
        ScenarioName::User => runner::run_into(fanout(Route::User), plan, recorder).await,
        ScenarioName::Connection => runner::run_into(fanout(Route::Connection), plan, recorder).await,
    }
}

/// Judges the outcome and writes the summary.
fn report(outcome: Outcome, plan: &Plan, steps: Vec<Step>) -> Report {
    let verdicts = summary::judge(&outcome.metrics, &plan.thresholds);
    let exit_code = exit_code(&outcome, &verdicts, &steps);
    let mut text = summary::render(&outcome.metrics, &verdicts);
    text.push_str(&thresholds_block(&verdicts));
    if let Some(threshold) = &outcome.aborted_by {
        let _ = writeln!(text, "\n     aborted: threshold {threshold} failed (abortOnFail)");
    }
    if let Some(failure) = &outcome.setup_failed {
        let _ = writeln!(text, "\n     setup failed ({}): {}", failure.kind, failure.message);
    }
    if !steps.is_empty() {
        text.push('\n');
        text.push_str(&step_up::table(&steps));
    }
    Report {
        metrics: outcome.metrics,
        verdicts,
        aborted_by: outcome.aborted_by,
        setup_failed: outcome.setup_failed,
        steps,
        summary: text,
        exit_code,
    }
}

/// k6's exit codes. In step-up mode, the run passes when at least one step passed.
pub fn exit_code(outcome: &Outcome, verdicts: &[Verdict], steps: &[Step]) -> i32 {
    if outcome.setup_failed.is_some() && step_up::last_good(steps).is_none() {
        return EXIT_SETUP;
    }
    if !steps.is_empty() {
        return if step_up::last_good(steps).is_some() { EXIT_PASSED } else { EXIT_THRESHOLDS_FAILED };
    }
    // A failed setup without steps returned above.
    if outcome.aborted_by.is_some() {
        EXIT_ABORTED
    } else if !summary::all_passed(verdicts) {
        EXIT_THRESHOLDS_FAILED
    } else {
        EXIT_PASSED
    }
}

/// `thresholds` then one line per threshold: ✓/✗ metric: expression.
fn thresholds_block(verdicts: &[Verdict]) -> String {
    if verdicts.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n     thresholds\n");
    for verdict in verdicts {
        let mark = if verdict.passed() { '✓' } else { '✗' };
        let abort = if verdict.abort_on_fail { " (abortOnFail)" } else { "" };
        let _ = writeln!(out, "       {mark} {}: {}{abort}", verdict.metric, verdict.threshold);
    }
    out
}

fn write_html(
    path: &std::path::Path,
    resolved: &Resolved,
    report: &Report,
    samples: &[crate::report::Sample],
) -> Result<(), RunError> {
    let title = format!("{:?} against {} target(s)", resolved.scenario, resolved.settings.targets.len()).to_lowercase();
    let steps = (!report.steps.is_empty()).then(|| step_up::table(&report.steps));
    let html = crate::report::html::render(&crate::report::html::Report {
        title: &title,
        samples,
        verdicts: &report.verdicts,
        steps: steps.as_deref(),
        summary: &report.summary,
        exit_code: report.exit_code,
    });
    std::fs::write(path, html).map_err(|e| RunError::Report { path: path.display().to_string(), reason: e.to_string() })
}

fn write_export(path: &std::path::Path, report: &Report) -> Result<(), RunError> {
    let mut exported = summary::export(&report.metrics, &report.verdicts);
    if !report.steps.is_empty() {
        exported["stepUp"] = step_up::export(&report.steps);
    }
    exported["exitCode"] = report.exit_code.into();
    if let Some(threshold) = &report.aborted_by {
        exported["abortedBy"] = threshold.as_str().into();
    }
    let text = serde_json::to_string_pretty(&exported).unwrap_or_default();
    std::fs::write(path, text).map_err(|e| RunError::Export { path: path.display().to_string(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(aborted: bool, setup_failed: bool) -> Outcome {
        Outcome {
            aborted_by: aborted.then(|| "m: count==0".to_owned()),
            setup_failed: setup_failed.then(|| Failure { kind: "setup", message: "x".into() }),
            ..empty_outcome()
        }
    }

    fn verdict(ok: bool) -> Verdict {
        Verdict { metric: "m".into(), threshold: "count==0".into(), ok: Some(ok), abort_on_fail: false }
    }

    #[test]
    fn exit_codes_follow_k6() {
        assert_eq!(exit_code(&outcome(false, false), &[verdict(true)], &[]), EXIT_PASSED);
        assert_eq!(exit_code(&outcome(false, false), &[verdict(false)], &[]), EXIT_THRESHOLDS_FAILED);
        assert_eq!(exit_code(&outcome(true, false), &[verdict(false)], &[]), EXIT_ABORTED);
        assert_eq!(exit_code(&outcome(false, true), &[], &[]), EXIT_SETUP);
    }

    #[test]
    fn the_thresholds_block_marks_each_threshold() {
        let block = thresholds_block(&[verdict(true), Verdict { abort_on_fail: true, ..verdict(false) }]);
        assert!(block.contains("✓ m: count==0\n") && block.contains("✗ m: count==0 (abortOnFail)"), "{block}");
        assert_eq!(thresholds_block(&[]), "");
    }
}
