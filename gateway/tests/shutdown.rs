//! Graceful shutdown of the `gateway` binary on SIGTERM, as an orchestrator stops a node:
//! readiness turns false while the process stays alive, every connection on every transport
//! gets a SignalR Close that allows reconnecting, the port closes, and the process exits 0
//! within `--shutdown-timeout` even when a client ignores the Close.

mod common;

use std::time::{Duration, Instant};

use common::http::HttpClient;
use common::processes::GatewayProcess;
use common::{Conversation, Serves, TestClient, DEADLINE};
use protocol::{Close, Protocol};
use tokio::net::TcpStream;

const HUB: &str = "/hubs/shutdown";

fn args(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}

/// The Close every client gets at shutdown: no error, reconnecting allowed.
fn reconnectable() -> Close {
    Close { error: None, allow_reconnect: true }
}

async fn get(node: &GatewayProcess, path: &str) -> (u16, String) {
    let response = reqwest::get(node.http(path)).await.expect("the node answers");
    (response.status().as_u16(), response.text().await.expect("body"))
}

#[tokio::test]
async fn sigterm_turns_readiness_off_then_closes_every_transport_reconnectably_and_exits_zero() {
    let mut node = GatewayProcess::start(&args(&["--drain-delay", "2s", "--poll-timeout", "1s"])).await;
    let mut websocket = TestClient::connect_at(node.addr, HUB, None).await;
    let mut events = HttpClient::server_sent_events(&node, HUB).await;
    let mut polling = HttpClient::long_polling(&node, HUB, Protocol::Json).await;
    assert_eq!(get(&node, "/readyz").await, (200, "ready".into()));

    node.terminate();
    node.wait_ready(503).await;
    assert_eq!(get(&node, "/readyz").await, (503, "shutting down".into()), "not ready the moment shutdown begins");
    assert_eq!(get(&node, "/healthz").await, (200, "ok".into()), "alive while draining");

    assert_eq!(websocket.expect_close().await, reconnectable(), "WebSocket");
    assert_eq!(events.expect_close().await, reconnectable(), "Server-Sent Events: an event");
    assert_eq!(events.next_chunk().await, None, "the event stream ends after the Close");
    assert_eq!(polling.expect_close().await, reconnectable(), "long polling: the answer to a poll");

    assert!(node.exit_status(DEADLINE).await.success(), "exit status 0");
    assert!(TcpStream::connect(node.addr).await.is_err(), "the port no longer accepts connections");
}

#[tokio::test]
async fn a_client_that_ignores_the_close_does_not_keep_the_process_past_the_shutdown_timeout() {
    let timeout = Duration::from_secs(2);
    let mut node = GatewayProcess::start(&args(&["--shutdown-timeout", "2s", "--poll-timeout", "1s"])).await;
    // A long-polling client that never polls again: its Close can only be fetched by a poll,
    // so the node waits for one, but no longer than the shutdown timeout.
    let _silent = HttpClient::long_polling(&node, HUB, Protocol::Json).await;
    let mut websocket = TestClient::connect_at(node.addr, HUB, None).await;

    let signalled = Instant::now();
    node.terminate();
    assert_eq!(websocket.expect_close().await, reconnectable());
    assert!(node.exit_status(timeout + Duration::from_secs(3)).await.success(), "exit status 0 despite the straggler");
    let waited = signalled.elapsed();
    assert!(waited >= timeout - Duration::from_millis(200), "the node gave the straggler its time: {waited:?}");
    assert!(TcpStream::connect(node.addr).await.is_err(), "the port no longer accepts connections");
}
