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
}

fn main() {
    let cli = Cli::parse();
    if let Err(error) = run(cli) {
        eprintln!("loadtest: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Two worker threads are plenty for idle connections and keep the harness's own footprint
    // (and its competition with the server for the CPU) small.
    let threads = match &cli.command {
        Command::Idle(_) => 2,
        Command::Broadcast(args) => args.threads.max(1),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    match cli.command {
        Command::Idle(args) => runtime.block_on(idle::run(args)),
        Command::Broadcast(args) => runtime.block_on(broadcast::run(args)),
    }
}
