//! The `idle` scenario: resident memory a server spends per idle hub connection.
//!
//! Reads the server's RSS, opens N connections (at most `--concurrency` being set up at a
//! time), waits `--hold` with all of them open, reads the RSS again and divides the growth by
//! the number of connections established. Connections stay open, doing nothing but the
//! keep-alive Pings of a SignalR client, until the scenario ends.
//!
//! The connections are the library's client (`loadtest::signalr`, WebSockets and JSON), the
//! same one `loadtest run` uses, with its idle-sized buffers (512-byte read buffer, no write
//! buffer). Its negotiate requests ask for `Connection: close`, so no pooled keep-alive HTTP
//! connection stays open on the server and counts against the hub connections.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::rss::{Process, Rss};
use crate::signalr::{self, ClientOptions, Connection};

/// Distinct failure texts kept for the summary; the rest are counted as "other".
const MAX_ERROR_KINDS: usize = 16;

#[derive(Debug, clap::Args)]
pub struct IdleArgs {
    /// Hub URL, e.g. http://127.0.0.1:8080/hubs/chat
    #[arg(long)]
    url: String,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// How long to hold all connections open before the final measurement (e.g. 10s, 1m).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    hold: Duration,
    /// Give up on one connection attempt after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    connect_timeout: Duration,
    /// The server's process id, to read its resident memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Open the WebSocket without negotiating first (the server then creates the connection).
    #[arg(long)]
    skip_negotiate: bool,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Memory of one process across the run.
#[derive(Debug, Clone, Copy)]
struct Samples {
    baseline: Rss,
    connected: Rss,
    held: Rss,
}

impl Samples {
    fn per_connection_kib(&self, connections: usize) -> Option<(f64, f64)> {
        let n = connections as f64;
        let per = |after: u64, before: u64| (after as f64 - before as f64) / n;
        (connections > 0).then(|| {
            (per(self.held.total_kib, self.baseline.total_kib), per(self.held.anon_kib, self.baseline.anon_kib))
        })
    }

    fn to_json(self, connections: usize) -> serde_json::Value {
        let per = self.per_connection_kib(connections);
        json!({
            "baseline_rss_kib": self.baseline.total_kib,
            "connected_rss_kib": self.connected.total_kib,
            "held_rss_kib": self.held.total_kib,
            "baseline_rss_anon_kib": self.baseline.anon_kib,
            "held_rss_anon_kib": self.held.anon_kib,
            "per_connection_kib": per.map(|p| p.0),
            "per_connection_anon_kib": per.map(|p| p.1),
        })
    }
}

/// What happened to the connection attempts.
#[derive(Debug, Default)]
struct Outcome {
    established: usize,
    failed: usize,
    errors: BTreeMap<String, usize>,
    /// The established connections, held until the scenario ends.
    held: Vec<Connection>,
}

impl Outcome {
    fn record_failure(&mut self, error: String) {
        self.failed += 1;
        let key = if self.errors.len() < MAX_ERROR_KINDS || self.errors.contains_key(&error) {
            error
        } else {
            "other".to_owned()
        };
        *self.errors.entry(key).or_default() += 1;
    }
}

pub async fn run(args: IdleArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    signalr::check_hub_url(&args.url).context("--url")?;
    let options = Arc::new(ClientOptions {
        skip_negotiation: args.skip_negotiate,
        connect_timeout: args.connect_timeout,
        negotiate_connection_close: true,
        ..ClientOptions::new(args.url.clone())
    });
    let server = args.server_pid.map(Process::Pid);
    let read = |process: Option<Process>| process.map(Process::rss).transpose();

    let server_baseline = read(server)?;
    let client_baseline = Process::This.rss()?;
    eprintln!(
        "idle: opening {} connections to {} ({} at a time{})",
        args.connections,
        args.url,
        args.concurrency,
        if args.skip_negotiate { ", no negotiate" } else { "" }
    );

    let started = Instant::now();
    let outcome = open_all(&args, options).await;
    let connect_time = started.elapsed();
    let server_connected = read(server)?;
    let client_connected = Process::This.rss()?;
    eprintln!(
        "idle: {} established, {} failed in {:.1}s; holding for {}",
        outcome.established,
        outcome.failed,
        connect_time.as_secs_f64(),
        humantime::format_duration(args.hold)
    );

    tokio::time::sleep(args.hold).await;
    let server_held = read(server)?;
    let client_held = Process::This.rss()?;
    // Every connection of this process is one of ours; a driver ends when the server ends
    // its connection (there is no reconnect).
    let open_after_hold = signalr::open_connections().min(outcome.established);

    let server = match (server_baseline, server_connected, server_held) {
        (Some(baseline), Some(connected), Some(held)) => Some(Samples { baseline, connected, held }),
        _ => None,
    };
    let client = Samples { baseline: client_baseline, connected: client_connected, held: client_held };
    print_summary(&args, &outcome, open_after_hold, connect_time, server, client);

    if let Some(path) = &args.json {
        let summary = json!({
            "scenario": "idle",
            "url": args.url,
            "connections_requested": args.connections,
            "established": outcome.established,
            "failed": outcome.failed,
            "open_after_hold": open_after_hold,
            "errors": outcome.errors,
            "concurrency": args.concurrency,
            "skip_negotiate": args.skip_negotiate,
            "connect_seconds": connect_time.as_secs_f64(),
            "hold_seconds": args.hold.as_secs_f64(),
            "server_pid": args.server_pid,
            "server": server.map(|s| s.to_json(outcome.established)),
            "client": client.to_json(outcome.established),
        });
        let text = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    drop(outcome.held);
    Ok(())
}

/// Opens every connection, at most `--concurrency` at a time, printing progress once a
/// second. Established connections are kept in the outcome.
async fn open_all(args: &IdleArgs, options: Arc<ClientOptions>) -> Outcome {
    let (results, mut incoming) = mpsc::unbounded_channel::<Result<Connection, String>>();
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let total = args.connections;
    tokio::spawn(async move {
        for _ in 0..total {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let (options, results) = (options.clone(), results.clone());
            tokio::spawn(async move {
                // The connect future's state lives in this short task only; the connection
                // itself is its driver task and the handle sent back.
                let connected = Connection::connect(options).await;
                drop(slot);
                let _ = results.send(connected.map_err(|error| error.to_string()));
            });
        }
    });

    let mut outcome = Outcome { held: Vec::with_capacity(total), ..Outcome::default() };
    let mut progress = tokio::time::interval(Duration::from_secs(1));
    progress.tick().await;
    while outcome.established + outcome.failed < total {
        tokio::select! {
            result = incoming.recv() => match result {
                Some(Ok(connection)) => {
                    outcome.established += 1;
                    outcome.held.push(connection);
                }
                Some(Err(error)) => outcome.record_failure(error),
                None => break,
            },
            _ = progress.tick() => {
                eprintln!("idle: {}/{} established, {} failed", outcome.established, total, outcome.failed);
            }
        }
    }
    outcome
}

fn print_summary(
    args: &IdleArgs,
    outcome: &Outcome,
    open_after_hold: usize,
    connect_time: Duration,
    server: Option<Samples>,
    client: Samples,
) {
    println!("== idle connections: {}", args.url);
    println!("connections requested  {}", args.connections);
    println!("established            {}", outcome.established);
    println!("failed                 {}", outcome.failed);
    for (error, count) in &outcome.errors {
        println!("  {count:>6} x {error}");
    }
    println!("open after hold        {open_after_hold}");
    println!("connect time           {:.1} s", connect_time.as_secs_f64());
    println!("hold                   {}", humantime::format_duration(args.hold));
    match (server, args.server_pid) {
        (Some(server), Some(pid)) => print_samples(&format!("server (pid {pid})"), server, outcome.established),
        _ => println!("server RSS             not measured (pass --server-pid)"),
    }
    print_samples("client (this process)", client, outcome.established);
}

fn print_samples(who: &str, samples: Samples, established: usize) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("{who}:");
    println!("  RSS baseline         {} KiB ({:.1} MiB)", samples.baseline.total_kib, mib(samples.baseline.total_kib));
    println!(
        "  RSS all connected    {} KiB ({:.1} MiB)",
        samples.connected.total_kib,
        mib(samples.connected.total_kib)
    );
    println!("  RSS after hold       {} KiB ({:.1} MiB)", samples.held.total_kib, mib(samples.held.total_kib));
    match samples.per_connection_kib(established) {
        Some((total, anon)) => println!("  per connection       {total:.2} KiB (RssAnon {anon:.2} KiB)"),
        None => println!("  per connection       n/a (no connection established)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_divided_by_established_connections() {
        let rss = |total_kib, anon_kib| Rss { total_kib, anon_kib };
        let samples = Samples { baseline: rss(1000, 500), connected: rss(5000, 4500), held: rss(6000, 5500) };
        assert_eq!(samples.per_connection_kib(1000), Some((5.0, 5.0)));
        assert_eq!(samples.per_connection_kib(0), None);
    }

    #[test]
    fn failure_kinds_are_bounded() {
        let mut outcome = Outcome::default();
        for i in 0..100 {
            outcome.record_failure(format!("error {i}"));
        }
        outcome.record_failure("error 0".into());
        assert_eq!(outcome.failed, 101);
        assert_eq!(outcome.errors.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(outcome.errors["error 0"], 2);
        assert_eq!(outcome.errors["other"], 100 - MAX_ERROR_KINDS);
    }
}
