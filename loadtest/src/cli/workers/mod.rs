//! `loadtest run --workers N`: one run spread over N child processes on this machine, each
//! under the per-process open-file limit, merged as if one process had run it.
//!
//! ```text
//! parent: plan ─► split (per worker: its VUs, its share of the rate and of the subscribers,
//!                        its numbering offsets) ─► spawn `loadtest worker` × N (stdin/stdout pipes)
//!   each second: latest snapshot of every worker ─► Metrics::merge ─► progress line,
//!                --prometheus, abortOnFail (→ stop to all)
//!   fan-out:     every worker's subscribers ─► one directory ─► back to every worker
//!                every worker draining and the summed ledgers complete ─► settled to all
//!   the end:     every worker's final metrics merged ─► summary, thresholds, --summary-export
//! ```
//!
//! A worker that exits, closes its stdout or goes silent for [`SILENCE`] fails the run with
//! its exit status and the tail of its stderr. The protocol is in [`wire`], the arithmetic of
//! the split in [`split`], the worker's side in [`child`].

pub mod child;
mod run;
pub mod split;
pub mod wire;

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::run::{ledger_of, RunState};
use self::wire::{FromWorker, Job, ToWorker};
use super::plan::Resolved;
use super::RunError;
use crate::model::metrics::Metrics;
use crate::model::summary;
use crate::model::wire as metrics_wire;
use crate::runner::{self, Outcome, Plan, Recorder};
use crate::scenarios::ledger::Totals;
use crate::scenarios::peers::{self, Member};

/// Longest a worker may take to start and report its open-file limit.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// A worker that sends nothing for this long (it snapshots four times a second) is taken for hung.
pub const SILENCE: Duration = Duration::from_secs(30);
/// Time a run may take beyond its schedule, graceful stop and drain (the subscribers' setup,
/// mostly: tens of thousands of connections take a while).
const SETUP_ALLOWANCE: Duration = Duration::from_secs(600);
/// Lines of a worker's stderr kept for the report of its death.
const STDERR_TAIL: usize = 20;
/// How long the parent waits for workers to exit once their stdin closed.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// The running workers.
pub struct Pool {
    workers: Vec<Worker>,
    events: mpsc::Receiver<(usize, Event)>,
}

struct Worker {
    /// The local worker process; `None` for an agent's.
    child: Option<Child>,
    /// How the reports name it: `pid N`, or `agent HOST:PORT`.
    name: String,
    pid: u32,
    input: Option<mpsc::Sender<ToWorker>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

enum Event {
    Message(FromWorker),
    Garbled(String),
    /// Its stdout closed.
    Gone,
}

impl Pool {
    /// Starts `count` workers of the binary at `exe` and waits until each reported its
    /// open-file limit, which must leave room for `connections_each`.
    pub async fn start(exe: &std::path::Path, count: u32, connections_each: u64) -> Result<Self, RunError> {
        let (sender, events) = mpsc::channel(1024);
        let mut workers = Vec::new();
        for index in 0..count as usize {
            workers.push(spawn(exe, index, sender.clone())?);
        }
        Self { workers, events }.started(connections_each).await
    }

    /// Connects to the agents at `addresses` (`loadtest agent`), one worker each, with the
    /// shared `token`, and waits until each reported its open-file limit.
    pub async fn connect(addresses: &[String], token: &str, connections_each: u64) -> Result<Self, RunError> {
        let (sender, events) = mpsc::channel(1024);
        let mut workers = Vec::new();
        for (index, address) in addresses.iter().enumerate() {
            let failed = |e: std::io::Error| RunError::Worker { index, reason: format!("agent {address}: {e}") };
            let stream = tokio::time::timeout(START_DEADLINE, tokio::net::TcpStream::connect(address))
                .await
                .map_err(|_| failed(std::io::ErrorKind::TimedOut.into()))?
                .map_err(failed)?;
            let _ = stream.set_nodelay(true);
            let (read, mut write) = stream.into_split();
            let hello = wire::line(&wire::Hello::Hello { token: token.to_owned() });
            write.write_all(hello.as_bytes()).await.map_err(failed)?;
            let input = attach(index, read, write, sender.clone());
            let stderr = Arc::new(Mutex::new(VecDeque::new()));
            workers.push(Worker { child: None, name: format!("agent {address}"), pid: 0, input: Some(input), stderr });
        }
        Self { workers, events }.started(connections_each).await
    }

    /// Waits for every worker's `started`, checking its open-file limit.
    async fn started(self, connections_each: u64) -> Result<Self, RunError> {
        let mut pool = self;
        let deadline = Instant::now() + START_DEADLINE;
        let mut started = 0;
        while started < pool.workers.len() {
            let (index, event) = pool.next(deadline).await?;
            match event {
                Event::Message(FromWorker::Started { pid, open_files }) => {
                    let worker = &mut pool.workers[index];
                    worker.pid = pid;
                    if worker.child.is_some() {
                        worker.name = format!("pid {pid}");
                        eprintln!("worker {index}: pid {pid}, open-file limit {open_files}");
                    } else {
                        eprintln!("worker {index}: {}, pid {pid} there, open-file limit {open_files}", worker.name);
                    }
                    if open_files > 0 && connections_each + split::OPEN_FILES_RESERVE > open_files {
                        return Err(RunError::Worker {
                            index,
                            reason: format!(
                                "{connections_each} connections do not fit its open-file limit of {open_files}: use more --workers"
                            ),
                        });
                    }
                    started += 1;
                }
                Event::Message(FromWorker::Refused { reason }) => {
                    let name = &pool.workers[index].name;
                    return Err(RunError::Worker { index, reason: format!("{name} refused: {reason}") });
                }
                other => return Err(pool.died(index, other).await),
            }
        }
        Ok(pool)
    }

    /// Runs one job per worker (`jobs[i]` on worker `i`) and merges their outcomes.
    pub async fn run(
        &mut self,
        jobs: Vec<Job>,
        plan: &Plan,
        drain: Duration,
        recorder: &Recorder,
    ) -> Result<Outcome, RunError> {
        let schedule = jobs.first().map(|j| j.executor.duration()).unwrap_or_default();
        let deadline = Instant::now() + schedule + plan.graceful_stop + drain * 2 + SETUP_ALLOWANCE;
        for (worker, job) in self.workers.iter().zip(jobs) {
            send(worker, ToWorker::Run { job: Box::new(job) }).await;
        }
        let mut run = RunState::new(self.workers.len(), plan);
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        while !run.all_finished() {
            tokio::select! {
                event = self.next(deadline) => {
                    let (index, event) = event?;
                    match event {
                        Event::Message(message) => self.handle(&mut run, index, message).await?,
                        other => return Err(self.died(index, other).await),
                    }
                }
                _ = tick.tick() => self.each_second(&mut run, recorder, started, drain).await?,
            }
        }
        if plan.progress {
            eprintln!();
        }
        Ok(run.outcome())
    }

    /// Closes every worker's stdin and waits for them to exit.
    pub async fn finish(mut self) {
        for worker in &mut self.workers {
            worker.input = None;
        }
        for child in self.workers.iter_mut().filter_map(|w| w.child.as_mut()) {
            if tokio::time::timeout(EXIT_DEADLINE, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }

    async fn next(&mut self, deadline: Instant) -> Result<(usize, Event), RunError> {
        match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Ok(Some(event)) => Ok(event),
            Ok(None) => Err(RunError::Worker { index: 0, reason: "every worker's output closed".into() }),
            Err(_) => Err(RunError::Worker { index: 0, reason: "the run did not end before its deadline".into() }),
        }
    }

    async fn handle(&mut self, run: &mut RunState, index: usize, message: FromWorker) -> Result<(), RunError> {
        run.heard[index] = Instant::now();
        match message {
            FromWorker::Snapshot { metrics } => run.latest[index] = self.decode(index, &metrics)?,
            FromWorker::Members { members } => {
                run.members[index] = Some(members);
                self.share_members(run).await;
            }
            FromWorker::Draining { expected, received } => {
                run.draining[index] = Some(Totals { expected, received, ..Totals::default() });
                run.last_drain_start.get_or_insert_with(Instant::now);
                self.settle_if_done(run, false).await;
            }
            FromWorker::Finished { metrics, elapsed_us, setup_failed } => {
                let metrics = self.decode(index, &metrics)?;
                run.finished[index] =
                    Some((metrics, Duration::from_micros(elapsed_us), setup_failed.map(|f| f.failure())));
                // A finished worker sends no members: the others must not wait for them.
                self.share_members(run).await;
                self.settle_if_done(run, false).await;
            }
            FromWorker::Started { .. } | FromWorker::Refused { .. } => {}
        }
        Ok(())
    }

    fn decode(&self, index: usize, wire: &metrics_wire::WireMetrics) -> Result<Metrics, RunError> {
        metrics_wire::decode(wire).map_err(|e| RunError::Worker { index, reason: format!("unreadable metrics: {e}") })
    }

    /// Sends the run's directory once every worker gave its subscribers (or finished).
    async fn share_members(&self, run: &mut RunState) {
        if run.members_shared || run.members.iter().all(Option::is_none) {
            return;
        }
        let ready = (0..run.members.len()).all(|i| run.members[i].is_some() || run.finished[i].is_some());
        if !ready {
            return;
        }
        let mut all: Vec<Member> = run.members.iter().flatten().flatten().cloned().collect();
        all.sort_by_key(|m| m.index);
        for (index, worker) in self.workers.iter().enumerate() {
            if run.members[index].is_some() && run.finished[index].is_none() {
                send(worker, ToWorker::Members { members: all.clone() }).await;
            }
        }
        run.members_shared = true;
    }

    /// Tells the workers the run settled once every running worker drains and the summed
    /// ledgers hold every expected delivery, or (`force`) the drain's grace is over.
    async fn settle_if_done(&self, run: &mut RunState, force: bool) {
        if run.settled {
            return;
        }
        let running = |i: usize| run.finished[i].is_none();
        let all_draining = (0..self.workers.len()).filter(|&i| running(i)).all(|i| run.draining[i].is_some());
        if !all_draining || run.draining.iter().all(Option::is_none) {
            return;
        }
        let finished_totals: Vec<Totals> = run.finished.iter().flatten().map(|(m, _, _)| ledger_of(m)).collect();
        let complete = peers::settled(run.draining.iter().flatten().chain(finished_totals.iter()));
        if complete || force {
            for (index, worker) in self.workers.iter().enumerate() {
                if running(index) {
                    send(worker, ToWorker::Settled).await;
                }
            }
            run.settled = true;
        }
    }

    async fn each_second(
        &self,
        run: &mut RunState,
        recorder: &Recorder,
        started: Instant,
        drain: Duration,
    ) -> Result<(), RunError> {
        let merged = run.merged();
        if run.plan.progress {
            eprint!(
                "\r[{} workers] {}",
                self.workers.len(),
                runner::progress_line(&merged, started.elapsed(), run.plan.executor.duration())
            );
        }
        if run.aborted_by.is_none() {
            let verdicts = summary::judge(&merged, &run.abort_thresholds);
            if let Some(failed) = verdicts.iter().find(|v| v.ok == Some(false)) {
                run.aborted_by = Some(format!("{}: {}", failed.metric, failed.threshold));
                for worker in &self.workers {
                    send(worker, ToWorker::Stop).await;
                }
            }
        }
        recorder.update(|metrics| *metrics = merged);
        if let Some(since) = run.last_drain_start {
            if since.elapsed() > drain {
                self.settle_if_done(run, true).await;
            }
        }
        for (index, heard) in run.heard.iter().enumerate() {
            if run.finished[index].is_none() && heard.elapsed() > SILENCE {
                return Err(RunError::Worker { index, reason: format!("sent nothing for {}s", SILENCE.as_secs()) });
            }
        }
        Ok(())
    }

    /// The error for worker `index`, which stopped talking (`event` says how), with its
    /// exit status and the tail of its stderr.
    async fn died(&mut self, index: usize, event: Event) -> RunError {
        let worker = &mut self.workers[index];
        let how = match event {
            Event::Garbled(line) => {
                format!("wrote a line that is not the protocol: {}", line.chars().take(200).collect::<String>())
            }
            Event::Message(message) => format!("sent {message:?} out of turn"),
            Event::Gone => match worker.child.as_mut() {
                None => "closed the connection (the agent's worker ended, or the agent did)".to_owned(),
                Some(child) => match tokio::time::timeout(EXIT_DEADLINE, child.wait()).await {
                    Ok(Ok(status)) => format!("exited ({status})"),
                    Ok(Err(error)) => format!("closed its output; waiting for it failed: {error}"),
                    Err(_) => "closed its output but did not exit".to_owned(),
                },
            },
        };
        let tail: Vec<String> = worker.stderr.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default();
        let mut reason = format!("{} {how}", worker.name);
        if !tail.is_empty() {
            reason.push_str("; its stderr ended with:\n");
            reason.push_str(&tail.join("\n"));
        }
        RunError::Worker { index, reason }
    }
}

/// Spawns worker `index`, with tasks that turn its stdout into events and keep its stderr's
/// tail (and echo it, prefixed).
fn spawn(exe: &std::path::Path, index: usize, events: mpsc::Sender<(usize, Event)>) -> Result<Worker, RunError> {
    let mut child = Command::new(exe)
        .arg("worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RunError::Worker { index, reason: format!("cannot start {}: {e}", exe.display()) })?;
    let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(RunError::Worker { index, reason: "no pipes to the worker".into() });
    };
    let input = attach(index, stdout, stdin, events);
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let kept = tail.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[worker {index}] {line}");
            if let Ok(mut tail) = kept.lock() {
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
    });
    let pid = child.id().unwrap_or(0);
    Ok(Worker { child: Some(child), name: format!("pid {pid}"), pid, input: Some(input), stderr: tail })
}

/// Tasks that turn worker `index`'s output into events and write what is sent to it, one
/// line per message; returns where to send.
fn attach(
    index: usize,
    output: impl tokio::io::AsyncRead + Send + Unpin + 'static,
    input: impl tokio::io::AsyncWrite + Send + Unpin + 'static,
    events: mpsc::Sender<(usize, Event)>,
) -> mpsc::Sender<ToWorker> {
    let (sender, mut inbox) = mpsc::channel::<ToWorker>(16);
    tokio::spawn(async move {
        let mut input = input;
        while let Some(message) = inbox.recv().await {
            if input.write_all(wire::line(&message).as_bytes()).await.is_err() || input.flush().await.is_err() {
                return;
            }
        }
        let _ = input.shutdown().await;
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(output).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let event = match serde_json::from_str::<FromWorker>(&line) {
                Ok(message) => Event::Message(message),
                Err(_) => Event::Garbled(line),
            };
            if events.send((index, event)).await.is_err() {
                return;
            }
        }
        let _ = events.send((index, Event::Gone)).await;
    });
    sender
}

async fn send(worker: &Worker, message: ToWorker) {
    if let Some(input) = &worker.input {
        // A worker that stopped reading is reported by its stdout closing; nothing to add here.
        let _ = input.send(message).await;
    }
}

/// The jobs of one run: worker `i`'s part of `plan` and `resolved`, all on one clock origin.
pub fn jobs(resolved: &Resolved, plan: &Plan, workers: u32) -> Vec<Job> {
    let epoch_unix_us = child::unix_now_us();
    (0..workers)
        .map(|worker| Job {
            scenario: resolved.scenario,
            settings: wire::WireSettings::from(&split::settings(&resolved.settings, &plan.executor, worker, workers)),
            executor: split::executor(&plan.executor, worker, workers),
            graceful_stop_ms: u64::try_from(plan.graceful_stop.as_millis()).unwrap_or(u64::MAX),
            epoch_unix_us,
        })
        .collect()
}
