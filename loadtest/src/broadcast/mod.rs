//! The `broadcast` scenario: cross-node fan-out throughput, latency and CPU cost.
//!
//! Subscribers connect round-robin to the given gateway URLs and each invokes
//! `JoinGroup(group)`. One publisher connection on the first URL invokes
//! `SendToGroup(group, "tick", payload)` fire-and-forget at an open-loop rate; it is not in
//! the group, so only subscribers receive. With two gateways on one Redis, half the
//! subscribers get each message from the publisher's node directly and half through Redis.
//!
//! The rate is stepped up. Each step publishes `rate × step-duration` messages, then drains
//! (until every expected delivery arrived, deliveries stopped for a second, or the drain
//! timeout), and reports: deliveries expected, received, lost and duplicated, deliveries per
//! second, end-to-end latency percentiles, and the CPU time each given process used during
//! the step divided by the deliveries. Stepping stops at the first step with a loss or a p99
//! above `--max-p99`.
//!
//! Publisher and subscribers are the library's client (`loadtest::signalr`, WebSockets and
//! JSON), the one `loadtest run` uses too. Subscribers read with a `--read-buffer` (16 KiB)
//! buffer, the publisher writes through a 64 KiB one.

mod payload;
mod publisher;
mod schedule;
mod subscriber;
mod tally;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::cpu::{self, MachineTicks};
use crate::rss::Process;
use crate::signalr::{self, ClientOptions, Connection};
use publisher::{Published, Publisher};
use schedule::StepPlan;
use subscriber::Shared;
use tally::{Accounting, Percentiles};

#[derive(Debug, clap::Args)]
pub struct BroadcastArgs {
    /// Hub URL of a gateway node; repeat for each node. Subscribers are spread round-robin;
    /// the publisher connects to the first.
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Subscriber connections, all in the group.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Size of each message's payload string, in bytes (at least 32).
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// Publish rates to step through, in messages per second, comma-separated.
    #[arg(long, default_value = "100,250,500,750,1000,1250,1500,2000,2500,3000,4000,5000")]
    rates: String,
    /// How long each rate is held.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    step_duration: Duration,
    /// A first step at the first rate that is reported but not judged (0s: none).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    warmup: Duration,
    /// Stop stepping once a step's p99 latency exceeds this.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "500ms")]
    max_p99: Duration,
    /// Keep stepping through every rate even after a loss or a p99 over the limit.
    #[arg(long)]
    no_stop: bool,
    /// After a step's last message, wait at most this long for deliveries to arrive.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    drain_timeout: Duration,
    /// Idle time between steps (after the drain), outside every measurement.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pause: Duration,
    /// Group the subscribers join.
    #[arg(long, default_value = "bench")]
    group: String,
    /// A gateway's process id, in the order of the --url flags, for its CPU time.
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// The Redis server's process id, for its CPU time.
    #[arg(long)]
    redis_pid: Option<u32>,
    /// Connection attempts in flight at once while setting up.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Give up on one connection attempt (negotiate, WebSocket, handshake, JoinGroup) after
    /// this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    connect_timeout: Duration,
    /// Bytes each subscriber reads from its socket per read call.
    #[arg(long, default_value_t = 16 * 1024)]
    read_buffer: usize,
    /// Open the WebSockets without negotiating first.
    #[arg(long)]
    skip_negotiate: bool,
    /// Worker threads of the harness's runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// CPU counters of everything measured, at one moment.
#[derive(Debug, Clone)]
struct CpuSample {
    at: Instant,
    gateways: Vec<u64>,
    redis: Option<u64>,
    harness: u64,
    machine: MachineTicks,
}

impl CpuSample {
    fn take(gateways: &[u32], redis: Option<u32>) -> anyhow::Result<Self> {
        Ok(Self {
            at: Instant::now(),
            gateways: gateways.iter().map(|&pid| Process::Pid(pid).cpu_ticks()).collect::<Result<_, _>>()?,
            redis: redis.map(|pid| Process::Pid(pid).cpu_ticks()).transpose()?,
            harness: Process::This.cpu_ticks()?,
            machine: MachineTicks::read()?,
        })
    }
}

/// CPU used during a step's window, in seconds.
#[derive(Debug, Clone)]
struct CpuUse {
    window: Duration,
    gateways: Vec<f64>,
    redis: Option<f64>,
    harness: f64,
    machine_busy: f64,
}

impl CpuUse {
    fn between(before: &CpuSample, after: &CpuSample, ticks_per_second: u64) -> Self {
        let seconds = |a: u64, b: u64| cpu::ticks_to_duration(a.saturating_sub(b), ticks_per_second).as_secs_f64();
        Self {
            window: after.at - before.at,
            gateways: after.gateways.iter().zip(&before.gateways).map(|(&a, &b)| seconds(a, b)).collect(),
            redis: after.redis.zip(before.redis).map(|(a, b)| seconds(a, b)),
            harness: seconds(after.harness, before.harness),
            machine_busy: seconds(after.machine.busy, before.machine.busy),
        }
    }

    /// Busy CPU time of the machine not used by any measured process (other work on the
    /// machine, kernel threads): what competed with the benchmark.
    fn unaccounted(&self) -> f64 {
        let measured = self.gateways.iter().sum::<f64>() + self.redis.unwrap_or(0.0) + self.harness;
        (self.machine_busy - measured).max(0.0)
    }

    /// Cores' worth of `cpu_seconds` over the window.
    fn cores(&self, cpu_seconds: f64) -> f64 {
        cpu_seconds / self.window.as_secs_f64().max(f64::EPSILON)
    }
}

/// Microseconds of CPU per delivery; `None` without deliveries.
fn micros_per(cpu_seconds: f64, deliveries: u64) -> Option<f64> {
    (deliveries > 0).then(|| cpu_seconds * 1e6 / deliveries as f64)
}

/// Everything measured in one step.
#[derive(Debug, Clone)]
struct StepResult {
    plan: StepPlan,
    published: Published,
    /// From the end of publishing until the last expected delivery (or the drain's end).
    drain: Duration,
    accounting: Accounting,
    received_by_node: Vec<u64>,
    late: u64,
    latency: Percentiles,
    cpu: CpuUse,
    disconnected: u64,
}

impl StepResult {
    /// First deliveries over the step's scheduled duration, or over the time publishing
    /// actually took if it fell behind.
    fn deliveries_per_second(&self) -> f64 {
        let seconds = self.plan.duration().max(self.published.elapsed).as_secs_f64();
        self.accounting.received as f64 / seconds.max(f64::EPSILON)
    }

    fn gateway_cpu(&self) -> f64 {
        self.cpu.gateways.iter().sum()
    }

    /// Why stepping should stop after this step, if it should.
    fn verdict(&self, max_p99: Duration) -> Option<String> {
        if !self.accounting.is_lossless() {
            return Some(format!("{} deliveries lost", self.accounting.lost));
        }
        if Duration::from_micros(self.latency.p99) > max_p99 {
            return Some(format!("p99 {:.1} ms over {} ms", ms(self.latency.p99), max_p99.as_millis()));
        }
        None
    }

    fn to_json(&self, server_pids: &[u32], redis_pid: Option<u32>) -> serde_json::Value {
        let gateways: Vec<_> = self
            .cpu
            .gateways
            .iter()
            .enumerate()
            .map(|(node, &seconds)| {
                let local = self.received_by_node.get(node).copied().unwrap_or(0);
                json!({
                    "pid": server_pids.get(node),
                    "cpu_seconds": seconds,
                    "cores": self.cpu.cores(seconds),
                    "us_per_delivery": micros_per(seconds, self.accounting.received),
                    "us_per_local_delivery": micros_per(seconds, local),
                })
            })
            .collect();
        let latency_ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
        json!({
            "step": self.plan.index,
            "warmup": self.plan.warmup,
            "rate": self.plan.rate,
            "messages_sent": self.published.sent,
            "publish_seconds": self.published.elapsed.as_secs_f64(),
            "publisher_max_lag_ms": self.published.max_lag.as_secs_f64() * 1000.0,
            "drain_seconds": self.drain.as_secs_f64(),
            "deliveries_expected": self.accounting.expected,
            "deliveries_received": self.accounting.received,
            "deliveries_received_by_node": self.received_by_node,
            "deliveries_lost": self.accounting.lost,
            "deliveries_duplicated": self.accounting.duplicates,
            "deliveries_late": self.late,
            "deliveries_per_second": self.deliveries_per_second(),
            "latency_ms": {
                "p50": latency_ms(self.latency.p50),
                "p90": latency_ms(self.latency.p90),
                "p99": latency_ms(self.latency.p99),
                "p99_9": latency_ms(self.latency.p999),
                "max": latency_ms(self.latency.max),
            },
            "subscribers_disconnected": self.disconnected,
            "cpu": {
                "window_seconds": self.cpu.window.as_secs_f64(),
                "gateways": gateways,
                "gateways_us_per_delivery": micros_per(self.gateway_cpu(), self.accounting.received),
                "gateways_cores": self.cpu.cores(self.gateway_cpu()),
                "redis": self.cpu.redis.map(|seconds| json!({
                    "pid": redis_pid,
                    "cpu_seconds": seconds,
                    "cores": self.cpu.cores(seconds),
                    "us_per_delivery": micros_per(seconds, self.accounting.received),
                })),
                "harness": {
                    "cpu_seconds": self.cpu.harness,
                    "cores": self.cpu.cores(self.cpu.harness),
                    "us_per_delivery": micros_per(self.cpu.harness, self.accounting.received),
                },
                "machine_busy_cores": self.cpu.cores(self.cpu.machine_busy),
                "unaccounted_busy_cores": self.cpu.cores(self.cpu.unaccounted()),
            },
        })
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub async fn run(args: BroadcastArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.subscribers > 0, "--subscribers must be at least 1");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(
        args.payload_bytes >= payload::HEADER_LEN,
        "--payload-bytes must be at least {}",
        payload::HEADER_LEN
    );
    anyhow::ensure!(
        args.server_pids.is_empty() || args.server_pids.len() == args.urls.len(),
        "give one --server-pid per --url, in the same order"
    );
    let rates = schedule::parse_rates(&args.rates).map_err(|e| anyhow::anyhow!("--rates: {e}"))?;
    anyhow::ensure!(rates.len() < usize::from(u16::MAX), "too many rates");
    let mut targets = Vec::new();
    for url in &args.urls {
        signalr::check_hub_url(url).context("--url")?;
        targets.push(Arc::new(ClientOptions {
            skip_negotiation: args.skip_negotiate,
            connect_timeout: args.connect_timeout,
            read_buffer: args.read_buffer,
            all_messages: true,
            ..ClientOptions::new(url.clone())
        }));
    }
    let ticks_per_second = cpu::clock_ticks_per_second();
    let shared = Arc::new(Shared::new(schedule::plan(&rates, args.step_duration, args.warmup), targets.len()));

    eprintln!(
        "broadcast: {} subscribers over {} node(s), joining group {:?}; payload {} bytes",
        args.subscribers,
        targets.len(),
        args.group,
        args.payload_bytes
    );
    let started = Instant::now();
    let joined = open_subscribers(&args, &targets, shared.clone()).await?;
    eprintln!("broadcast: {joined} subscribers joined in {:.1}s", started.elapsed().as_secs_f64());
    let publisher_options =
        ClientOptions { read_buffer: 4096, write_buffer: 64 * 1024, all_messages: false, ..(*targets[0]).clone() };
    let publisher_connection = Connection::connect(publisher_options).await.context("publisher")?;
    let mut publisher = Publisher::new(publisher_connection, args.group.clone(), args.payload_bytes);
    tokio::time::sleep(Duration::from_secs(1)).await;

    print_header(&args);
    let mut results: Vec<StepResult> = Vec::new();
    let mut stopped = None;
    for plan in shared.steps.clone() {
        let result = run_step(&args, &plan, &mut publisher, &shared, joined as u64, ticks_per_second).await?;
        print_step(&result);
        let verdict = result.verdict(args.max_p99);
        results.push(result);
        if let Some(reason) = verdict {
            if !args.no_stop {
                stopped = Some(format!("step {} ({} msg/s): {reason}", plan.index, plan.rate));
                break;
            }
        }
        tokio::time::sleep(args.pause).await;
    }

    let best = results
        .iter()
        .filter(|r| !r.plan.warmup && r.verdict(args.max_p99).is_none())
        .max_by(|a, b| a.deliveries_per_second().total_cmp(&b.deliveries_per_second()));
    print_summary(&args, &results, best, stopped.as_deref(), &shared);

    if let Some(path) = &args.json {
        let summary = json!({
            "scenario": "broadcast",
            "urls": args.urls,
            "subscribers_requested": args.subscribers,
            "subscribers_joined": joined,
            "payload_bytes": args.payload_bytes,
            "group": args.group,
            "step_seconds": args.step_duration.as_secs_f64(),
            "max_p99_ms": args.max_p99.as_secs_f64() * 1000.0,
            "server_pids": args.server_pids,
            "redis_pid": args.redis_pid,
            "harness_threads": args.threads,
            "clock_ticks_per_second": ticks_per_second,
            "stopped": stopped,
            "best": best.map(|r| json!({
                "rate": r.plan.rate,
                "deliveries_per_second": r.deliveries_per_second(),
            })),
            "invalid_deliveries": shared.invalid.load(Ordering::Relaxed),
            "other_records": shared.other_records.load(Ordering::Relaxed),
            "steps": results.iter().map(|r| r.to_json(&args.server_pids, args.redis_pid)).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Connects every subscriber and has it join the group; returns how many did. Fails if any
/// could not: a benchmark with fewer subscribers than asked for is not the one requested.
async fn open_subscribers(
    args: &BroadcastArgs,
    targets: &[Arc<ClientOptions>],
    shared: Arc<Shared>,
) -> anyhow::Result<usize> {
    let (results, mut incoming) = mpsc::unbounded_channel::<Result<(), String>>();
    let slots = Arc::new(Semaphore::new(args.concurrency));
    for index in 0..args.subscribers {
        let node = index % targets.len();
        let slot = slots.clone().acquire_owned().await?;
        let (target, results, shared) = (targets[node].clone(), results.clone(), shared.clone());
        let (timeout, group) = (args.connect_timeout, args.group.clone());
        tokio::spawn(async move {
            // Boxed and freed once joined: inline, the connect future's state would size every
            // subscriber's task.
            let connected = Box::pin(async {
                let mut connection = Connection::connect(target).await?;
                subscriber::join_group(&mut connection, &group, timeout).await?;
                anyhow::Ok(connection)
            })
            .await;
            drop(slot);
            match connected {
                Ok(connection) => {
                    let _ = results.send(Ok(()));
                    drop((results, group));
                    subscriber::receive(connection, index, node, &shared).await;
                }
                Err(error) => {
                    let _ = results.send(Err(format!("{error:#}")));
                }
            }
        });
    }
    drop(results);
    let (mut joined, mut failed, mut first_error) = (0, 0, None);
    while let Some(result) = incoming.recv().await {
        match result {
            Ok(()) => joined += 1,
            Err(error) => {
                failed += 1;
                first_error.get_or_insert(error);
            }
        }
        if joined + failed == args.subscribers {
            break;
        }
    }
    if let Some(error) = first_error {
        anyhow::bail!("{failed} of {} subscribers could not connect and join; first error: {error}", args.subscribers);
    }
    Ok(joined)
}

async fn run_step(
    args: &BroadcastArgs,
    plan: &StepPlan,
    publisher: &mut Publisher,
    shared: &Shared,
    subscribers: u64,
    ticks_per_second: u64,
) -> anyhow::Result<StepResult> {
    let tally = &shared.tallies[usize::from(plan.index)];
    let disconnected_before = shared.disconnected.load(Ordering::Relaxed);
    let before = CpuSample::take(&args.server_pids, args.redis_pid)?;
    let published = publisher.run_step(plan, shared).await?;
    let expected = subscribers * published.sent;

    // Drain: until everything arrived, nothing arrived for a second, or the timeout.
    let drain_start = Instant::now();
    let mut last_growth = drain_start;
    let mut last_received = tally.received();
    let mut drain = Duration::ZERO;
    loop {
        let received = tally.received();
        if received >= expected {
            drain = drain_start.elapsed();
            break;
        }
        if received > last_received {
            last_received = received;
            last_growth = Instant::now();
        }
        if last_growth.elapsed() >= Duration::from_secs(1) || drain_start.elapsed() >= args.drain_timeout {
            drain = drain.max(last_growth - drain_start);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = CpuSample::take(&args.server_pids, args.redis_pid)?;

    Ok(StepResult {
        plan: *plan,
        published,
        drain,
        accounting: Accounting::new(subscribers, published.sent, tally.received(), tally.duplicates()),
        received_by_node: tally.received_by_node(),
        late: tally.late(),
        latency: Percentiles::of(&tally.latency()),
        cpu: CpuUse::between(&before, &after, ticks_per_second),
        disconnected: shared.disconnected.load(Ordering::Relaxed) - disconnected_before,
    })
}

fn print_header(args: &BroadcastArgs) {
    println!(
        "== broadcast: {} subscribers, {}-byte payloads, via {}",
        args.subscribers,
        args.payload_bytes,
        args.urls.join(" + ")
    );
    let gateways: String = (0..args.server_pids.len()).map(|n| format!(" gw{}µs", n + 1)).collect();
    println!(
        "{:>5} {:>7} {:>7} {:>9} {:>6} {:>4} {:>9} {:>7} {:>7} {:>7} {:>7} {:>6}{} {:>6} {:>6} {:>6} {:>6} {:>6}",
        "step",
        "msg/s",
        "sent",
        "received",
        "lost",
        "dup",
        "deliv/s",
        "p50ms",
        "p90ms",
        "p99ms",
        "maxms",
        "gwµs",
        gateways,
        "gwcore",
        "redis%",
        "harn%",
        "busy%",
        "other%"
    );
}

fn print_step(r: &StepResult) {
    let us = |seconds: f64| micros_per(seconds, r.accounting.received).map_or("-".to_owned(), |v| format!("{v:.2}"));
    let local: String = r
        .cpu
        .gateways
        .iter()
        .enumerate()
        .map(|(node, &seconds)| {
            let per = micros_per(seconds, r.received_by_node.get(node).copied().unwrap_or(0));
            format!(" {:>6}", per.map_or("-".to_owned(), |v| format!("{v:.2}")))
        })
        .collect();
    let percent = |seconds: f64| format!("{:.0}", r.cpu.cores(seconds) * 100.0);
    println!(
        "{:>5} {:>7} {:>7} {:>9} {:>6} {:>4} {:>9.0} {:>7.2} {:>7.2} {:>7.2} {:>7.1} {:>6}{} {:>6.2} {:>6} {:>6} {:>6} {:>6}",
        if r.plan.warmup { "warm".to_owned() } else { r.plan.index.to_string() },
        r.plan.rate,
        r.published.sent,
        r.accounting.received,
        r.accounting.lost,
        r.accounting.duplicates,
        r.deliveries_per_second(),
        ms(r.latency.p50),
        ms(r.latency.p90),
        ms(r.latency.p99),
        ms(r.latency.max),
        us(r.gateway_cpu()),
        local,
        r.cpu.cores(r.gateway_cpu()),
        r.cpu.redis.map_or("-".to_owned(), percent),
        percent(r.cpu.harness),
        percent(r.cpu.machine_busy),
        percent(r.cpu.unaccounted()),
    );
    if r.disconnected > 0 || r.late > 0 || r.published.max_lag > Duration::from_millis(50) {
        println!(
            "      note: {} subscribers disconnected, {} late deliveries, publisher lag up to {:.0} ms",
            r.disconnected,
            r.late,
            r.published.max_lag.as_secs_f64() * 1000.0
        );
    }
}

fn print_summary(
    args: &BroadcastArgs,
    results: &[StepResult],
    best: Option<&StepResult>,
    stopped: Option<&str>,
    shared: &Shared,
) {
    println!("--");
    println!("gwµs: all gateways' CPU per delivery; gwNµs: node N's CPU per delivery to its own subscribers;");
    println!("gwcore: gateways' cores used; busy%: whole machine; other%: busy time of processes not measured");
    match stopped {
        Some(reason) => println!("stopped at {reason}"),
        None => println!("all rates passed (no loss, p99 ≤ {} ms)", args.max_p99.as_millis()),
    }
    match best {
        Some(r) => println!(
            "highest zero-loss step: {} msg/s = {:.0} deliveries/s, p50 {:.2} ms, p99 {:.2} ms",
            r.plan.rate,
            r.deliveries_per_second(),
            ms(r.latency.p50),
            ms(r.latency.p99)
        ),
        None => println!("no step without loss"),
    }
    for rate in [100.0, 500.0] {
        if let Some(r) = results.iter().find(|r| !r.plan.warmup && r.plan.rate == rate) {
            let per = micros_per(r.gateway_cpu(), r.accounting.received);
            println!(
                "at {rate} msg/s: gateways {} µs CPU per delivery, p99 {:.2} ms",
                per.map_or("-".to_owned(), |v| format!("{v:.2}")),
                ms(r.latency.p99)
            );
        }
    }
    let (invalid, other) = (shared.invalid.load(Ordering::Relaxed), shared.other_records.load(Ordering::Relaxed));
    let closes = shared.closes.load(Ordering::Relaxed);
    if invalid > 0 || closes > 0 {
        println!("warning: {invalid} invalid deliveries, {closes} Close messages received");
    }
    println!("other records received by subscribers (pings, join completions): {other}");
}
