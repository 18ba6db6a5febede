//! `loadtest`: a load harness for SignalR servers that opens many connections from one small
//! process.
//!
//! Each scenario is a subcommand. `idle` answers one question: how much resident memory does
//! the server spend on a connection that does nothing? It connects N clients the way a real
//! SignalR client does (negotiate, WebSocket, JSON handshake), holds them, and compares the
//! server's `VmRSS` before and after.
//!
//! Modules: [`target`] parses the hub URL, [`negotiate`] is a minimal HTTP/1.1 client for the
//! one request SignalR needs before the socket, [`client`] opens one hub connection, [`rss`]
//! reads `/proc`, and [`idle`] runs the scenario and reports.

mod client;
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
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    match cli.command {
        Command::Idle(args) => runtime.block_on(idle::run(args)),
    }
}
