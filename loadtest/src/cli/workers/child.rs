//! The worker side of `--workers`: the hidden `loadtest worker` subcommand. It raises its
//! open-file limit to the hard limit, says so, then runs each job the parent sends on its own
//! recorder, streaming snapshots, and trades the fan-out directory and the drain's end with the
//! parent through its `Pipe` (a [`Peers`]). It ends when its stdin closes (the parent finished, or died).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use super::wire::{self, FromWorker, Job, ToWorker, WireFailure};
use crate::model::wire as metrics_wire;
use crate::runner::{footprint, Plan, Recorder};
use crate::scenarios::ledger::{Ledger, Totals};
use crate::scenarios::peers::{Member, Peers};
use crate::scenarios::stamp;
use crate::signalr;

/// How often a worker sends its metrics. The parent merges once a second; four snapshots a
/// second keep each worker's part of a merge at most a quarter second old, where one a second
/// out of phase with the parent's tick put a worker's second into the next one (a report's
/// deliveries/s then zigzagged between nothing and double). A snapshot is a few tens of KiB.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(250);
/// How often a draining worker reports its ledger when it moved.
const DRAIN_REPORT_EVERY: Duration = Duration::from_millis(50);
/// Longest wait for the parent's directory: far beyond any setup, only there so that no wait
/// is unbounded (the parent's own deadlines end the run long before).
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(3600);
/// How long past its own drain a worker waits for the parent's word that the run settled.
const SETTLE_MARGIN: Duration = Duration::from_secs(5);

/// Runs the worker until its stdin closes; with `confine`, its connections reach only the
/// origins each job's targets name (see `Settings::confine`). Errors are about the pipes.
pub async fn serve(confine: bool) -> std::io::Result<()> {
    let open_files = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let (out, outbox) = mpsc::channel::<FromWorker>(64);
    let writer = tokio::spawn(write_lines(outbox));
    let _ = out.send(FromWorker::Started { pid: std::process::id(), open_files }).await;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut link: Option<Arc<Link>> = None;
    let mut running: Option<tokio::task::JoinHandle<()>> = None;
    while let Some(text) = lines.next_line().await? {
        let message: ToWorker = match serde_json::from_str(&text) {
            Ok(message) => message,
            Err(error) => {
                eprintln!("worker: unreadable line from the parent: {error}");
                continue;
            }
        };
        match message {
            ToWorker::Run { job } => {
                let (fresh, peers) = Link::new(out.clone());
                link = Some(fresh.clone());
                running = Some(tokio::spawn(run_job(*job, confine, fresh, peers, out.clone())));
            }
            ToWorker::Members { members } => {
                if let Some(sender) = link.as_ref().and_then(|l| l.members.lock().ok()?.take()) {
                    let _ = sender.send(members);
                }
            }
            ToWorker::Settled => {
                if let Some(link) = &link {
                    let _ = link.settled.send(true);
                }
            }
            ToWorker::Stop => {
                if let Some(link) = &link {
                    let _ = link.stop.send(true);
                }
            }
        }
    }
    if let Some(running) = running {
        running.abort();
    }
    drop(out);
    let _ = writer.await;
    Ok(())
}

/// Writes each message as one line and flushes it.
async fn write_lines(mut outbox: mpsc::Receiver<FromWorker>) {
    let mut stdout = tokio::io::stdout();
    while let Some(message) = outbox.recv().await {
        let text = wire::line(&message);
        if stdout.write_all(text.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
            return;
        }
    }
}

/// One run's channels from the stdin reader to the scenario.
struct Link {
    members: Mutex<Option<oneshot::Sender<Vec<Member>>>>,
    settled: watch::Sender<bool>,
    stop: watch::Sender<bool>,
}

impl Link {
    fn new(out: mpsc::Sender<FromWorker>) -> (Arc<Self>, Arc<Pipe>) {
        let (members, incoming) = oneshot::channel();
        let (settled, settled_rx) = watch::channel(false);
        let link = Arc::new(Self { members: Mutex::new(Some(members)), settled, stop: watch::channel(false).0 });
        (link, Arc::new(Pipe { out, incoming: tokio::sync::Mutex::new(Some(incoming)), settled: settled_rx }))
    }
}

/// [`Peers`] through the parent.
struct Pipe {
    out: mpsc::Sender<FromWorker>,
    incoming: tokio::sync::Mutex<Option<oneshot::Receiver<Vec<Member>>>>,
    settled: watch::Receiver<bool>,
}

impl Peers for Pipe {
    fn exchange(&self, mine: Vec<Member>) -> BoxFuture<'_, Vec<Member>> {
        Box::pin(async move {
            let Some(incoming) = self.incoming.lock().await.take() else { return mine };
            if self.out.send(FromWorker::Members { members: mine.clone() }).await.is_err() {
                return mine;
            }
            match tokio::time::timeout(EXCHANGE_DEADLINE, incoming).await {
                Ok(Ok(all)) => all,
                _ => mine,
            }
        })
    }

    fn settle<'a>(&'a self, ledger: &'a Ledger, grace: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + grace + SETTLE_MARGIN;
            let mut settled = self.settled.clone();
            let mut told: Option<Totals> = None;
            let mut tick = tokio::time::interval(DRAIN_REPORT_EVERY);
            while !*settled.borrow_and_update() {
                let totals = ledger.totals();
                if told != Some(totals) {
                    let report = FromWorker::Draining { expected: totals.expected, received: totals.received };
                    if self.out.send(report).await.is_err() {
                        return;
                    }
                    told = Some(totals);
                }
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = settled.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep_until(deadline) => return,
                }
            }
        })
    }
}

/// Runs one job and reports it.
async fn run_job(job: Job, confine: bool, link: Arc<Link>, peers: Arc<Pipe>, out: mpsc::Sender<FromWorker>) {
    stamp::align_epoch(UNIX_EPOCH + Duration::from_micros(job.epoch_unix_us));
    let settings = match job.settings.settings() {
        Ok(settings) => crate::scenarios::Settings { confine, ..settings },
        Err(error) => {
            let failure = WireFailure { kind: "setup".into(), message: error.to_string() };
            let _ = out
                .send(FromWorker::Finished { metrics: Default::default(), elapsed_us: 0, setup_failed: Some(failure) })
                .await;
            return;
        }
    };
    let recorder = Recorder::default();
    let baseline = footprint::rss_kib().unwrap_or(0);
    let sampler = tokio::spawn(footprint::sample(recorder.clone(), baseline, signalr::open_connections));
    let snapshots = tokio::spawn(send_snapshots(recorder.clone(), out.clone()));
    let plan = Plan {
        executor: job.executor,
        thresholds: Default::default(),
        graceful_stop: Duration::from_millis(job.graceful_stop_ms),
        progress: false,
        stop: Some(link.stop.subscribe()),
    };
    let outcome = crate::cli::run_scenario(job.scenario, &settings, plan, &recorder, peers).await;
    sampler.abort();
    snapshots.abort();
    let finished = FromWorker::Finished {
        metrics: metrics_wire::encode(&outcome.metrics),
        elapsed_us: u64::try_from(outcome.elapsed.as_micros()).unwrap_or(u64::MAX),
        setup_failed: outcome.setup_failed.as_ref().map(WireFailure::from),
    };
    let _ = out.send(finished).await;
}

async fn send_snapshots(recorder: Recorder, out: mpsc::Sender<FromWorker>) {
    let mut tick = tokio::time::interval(SNAPSHOT_EVERY);
    loop {
        tick.tick().await;
        let metrics = recorder.with(metrics_wire::encode);
        if out.send(FromWorker::Snapshot { metrics }).await.is_err() {
            return;
        }
    }
}

/// Now, µs since the Unix epoch: the origin the parent hands its workers.
pub fn unix_now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)).unwrap_or(0)
}
