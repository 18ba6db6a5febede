//! Client-side memory of idle hub connections: opens N connections with the harness's SignalR
//! client to a gateway running in another process and prints this process's resident memory
//! growth per connection.
//!
//! `cargo run --release -p loadtest --example signalr_memory -- http://127.0.0.1:5000/hubs/mem 20000 ws json`
//! (transport `ws`, `sse` or `lp`; protocol `json` or `msgpack`; a fifth argument `skip` skips
//! negotiation).

use std::sync::Arc;

use anyhow::{bail, Context};
use loadtest::signalr::{ClientOptions, Connection, Protocol, Transport};

fn rss_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    let kib: u64 = line.split_whitespace().nth(1).context("no value")?.parse()?;
    Ok(kib * 1024)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).context("usage: URL N [ws|sse|lp] [json|msgpack] [skip]")?.clone();
    let count: usize = args.get(2).map(|n| n.parse()).transpose()?.unwrap_or(1000);
    let transport = match args.get(3).map(String::as_str).unwrap_or("ws") {
        "ws" => Transport::WebSockets,
        "sse" => Transport::ServerSentEvents,
        "lp" => Transport::LongPolling,
        other => bail!("unknown transport {other}"),
    };
    let protocol = match args.get(4).map(String::as_str).unwrap_or("json") {
        "json" => Protocol::Json,
        "msgpack" => Protocol::MessagePack,
        other => bail!("unknown protocol {other}"),
    };
    let skip_negotiation = args.get(5).is_some_and(|a| a == "skip");
    let options = Arc::new(ClientOptions { transport, protocol, skip_negotiation, ..ClientOptions::new(url) });
    // Warm up: the shared HTTP client, the runtime's threads, first allocations.
    let warm = Connection::connect(options.clone()).await?;
    let before = rss_bytes()?;
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        connections.push(Connection::connect(options.clone()).await?);
    }
    let after = rss_bytes()?;
    let per = after.saturating_sub(before) as f64 / count as f64;
    println!("{count} connections ({transport:?}, {protocol:?}): RSS {before} → {after} bytes, {per:.0} bytes per connection");
    for connection in connections {
        connection.close().await?;
    }
    warm.close().await?;
    Ok(())
}
