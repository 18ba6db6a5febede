//! `loadtest`: a load harness for SignalR servers that opens many connections from one small
//! process.
//!
//! `run` drives the built-in scenarios of the library (`loadtest::cli`, `loadtest::scenarios`)
//! the k6 way: executors, thresholds, k6's summary and exit codes. The older subcommands below
//! connect with the same client (`loadtest::signalr`), so there is one SignalR client to keep
//! right.
//!
//! Each scenario is a subcommand. `idle` answers one question: how much resident memory does
//! the server spend on a connection that does nothing? It connects N clients the way a real
//! SignalR client does (negotiate, WebSocket, JSON handshake), holds them, and compares the
//! server's `VmRSS` before and after. `broadcast` measures group fan-out across gateway nodes:
//! deliveries per second without loss, end-to-end latency, and the servers' CPU time per
//! delivery, with the publish rate stepped up.
//!
//! Modules: [`idle`] and [`broadcast`] run the scenarios and report; `rss` and `cpu` (in the
//! library, shared with `run`) read `/proc`.

mod broadcast;
mod idle;

use loadtest::{cpu, rss, signalr};

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
    /// Run a built-in scenario (echo, broadcast, group, user, connection, churn) under a k6
    /// executor from a scenario file and/or flags; prints k6's summary. Exit code: 0 passed,
    /// 99 a threshold failed, 108 aborted by an abortOnFail threshold, 1 setup error.
    Run(Box<loadtest::cli::RunArgs>),
    /// A worker process of `run --workers` (speaks JSON lines on stdin/stdout).
    #[command(hide = true)]
    Worker {
        /// Connect only to the origins the job's targets name (how agents run workers).
        #[arg(long)]
        confine: bool,
    },
    /// Run workers for a coordinator on another machine (`loadtest run --agent HOST:PORT`),
    /// who must present the shared token.
    Agent {
        /// Address to listen on, HOST:PORT (port 0 picks a free port; the bound address is
        /// printed on stderr).
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The shared token coordinators must present.
        #[arg(long, env = "LOADTEST_AGENT_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Check a scenario file (TOML, k6 vocabulary) and print its plan without running it.
    Inspect {
        /// The scenario file.
        file: std::path::PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("loadtest: {error:#}");
            std::process::exit(loadtest::cli::EXIT_SETUP);
        }
    }
}

/// Runs the subcommand; returns the process's exit code.
fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Inspect { file } => inspect(&file).map(|()| 0),
        Command::Worker { confine } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(loadtest::cli::workers::child::serve(confine))?;
            Ok(0)
        }
        Command::Agent { listen, token } => {
            anyhow::ensure!(!token.is_empty(), "--token must not be empty");
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                eprintln!("agent listening on {}", listener.local_addr()?);
                loadtest::cli::agent::serve(listener, token).await
            })?;
            Ok(0)
        }
        Command::Run(mut args) => {
            if args.workers.is_none() && args.agents.is_empty() {
                args.workers = Some(loadtest::cli::default_workers(&args)?);
            }
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let report = runtime.block_on(loadtest::cli::execute(*args))?;
            println!("\n{}", report.summary);
            Ok(report.exit_code)
        }
        // Two worker threads are plenty for idle connections and keep the harness's own
        // footprint (and its competition with the server for the CPU) small.
        Command::Idle(args) => runtime(2)?.block_on(idle::run(args)).map(|()| 0),
        Command::Broadcast(args) => runtime(args.threads.max(1))?.block_on(broadcast::run(args)).map(|()| 0),
    }
}

/// A runtime with `threads` workers, for the older subcommands.
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
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
