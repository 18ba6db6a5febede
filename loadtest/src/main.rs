//! `loadtest`: a load harness for SignalR servers that opens many connections from one small
//! process.
//!
//! Each scenario is a subcommand. `idle` answers one question: how much resident memory does
//! the server spend on a connection that does nothing? It connects N clients the way a real
//! SignalR client does (negotiate, WebSocket, JSON handshake), holds them, and compares the
//! server's `VmRSS` before and after. `broadcast` measures group fan-out across gateway nodes:
//! deliveries per second without loss, end-to-end latency, and the servers' CPU time per
//! delivery, with the publish rate stepped up.
//!
//! Modules: [`target`] parses the hub URL, [`negotiate`] is a minimal HTTP/1.1 client for the
//! one request SignalR needs before the socket, [`client`] opens one hub connection, [`rss`]
//! and [`cpu`] read `/proc`, and [`idle`] and [`broadcast`] run the scenarios and report.

mod broadcast;
mod client;
mod cpu;
mod idle;
mod negotiate;
mod rss;
mod target;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about = "Load harness for SignalR servers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open many idle hub connections and measure the server's resident memory per connection.
    Idle(idle::IdleArgs),
    /// Fan a group message out across gateway nodes at stepped publish rates: deliveries/s
    /// without loss, latency, and the servers' CPU time per delivery.
    Broadcast(broadcast::BroadcastArgs),
    /// Check a scenario file (TOML, k6 vocabulary) and print its plan without running it.
    Inspect {
        /// The scenario file.
        file: std::path::PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(error) = run(cli) {
        eprintln!("loadtest: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Inspect { file } = &cli.command {
        return inspect(file);
    }
    // Two worker threads are plenty for idle connections and keep the harness's own footprint
    // (and its competition with the server for the CPU) small.
    let threads = match &cli.command {
        Command::Idle(_) | Command::Inspect { .. } => 2,
        Command::Broadcast(args) => args.threads.max(1),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    match cli.command {
        Command::Idle(args) => runtime.block_on(idle::run(args)),
        Command::Broadcast(args) => runtime.block_on(broadcast::run(args)),
        Command::Inspect { .. } => Ok(()),
    }
}

/// Prints what a scenario file would do: its executor's length, VUs and iterations, and its
/// thresholds.
fn inspect(file: &std::path::Path) -> anyhow::Result<()> {
    let scenario = loadtest::model::scenario::ScenarioFile::load(file)?;
    let executor = &scenario.executor;
    println!("scenario   {} against {} target(s)", scenario.scenario.name, scenario.scenario.targets.len());
    println!("duration   {}", humantime::format_duration(executor.duration()));
    println!("max VUs    {}", executor.max_vus());
    if let Some(iterations) = executor.total_iterations() {
        println!("iterations {iterations} (arrival rate, open model)");
    }
    for (metric, thresholds) in &scenario.thresholds {
        for threshold in thresholds {
            let abort = if threshold.abort_on_fail { " (abortOnFail)" } else { "" };
            println!("threshold  {metric}: {threshold}{abort}");
        }
    }
    Ok(())
}
