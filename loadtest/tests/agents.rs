//! `loadtest agent` and `loadtest run --agent`: two agents on loopback run one worker each for
//! a coordinator, whose merged summary adds up; a wrong token is refused with its reason; and
//! an agent's connections refuse a negotiate redirect to an origin the scenario does not name.
//! The gateway listens on loopback in this test's process; the agents and the coordinator are
//! the real binary. Every wait has a deadline.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::node;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

const DEADLINE: Duration = Duration::from_secs(60);
const TOKEN: &str = "s3cret-agent-token";

/// A `loadtest agent` on a free loopback port, killed on drop.
struct Agent {
    addr: String,
    _child: Child,
}

async fn agent() -> Agent {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["agent", "--listen", "127.0.0.1:0", "--token", TOKEN])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(DEADLINE, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("the agent says where it listens");
            if let Some(addr) = line.strip_prefix("agent listening on ") {
                return addr.to_owned();
            }
        }
    })
    .await
    .expect("the agent starts in time");
    // Keep reading its log, so the agent never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Agent { addr, _child: child }
}

/// `loadtest run FLAGS --no-progress --summary-export FILE`: exit code, stderr, export (if any).
async fn coordinate(flags: &[&str]) -> (i32, String, Option<Value>) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let export = std::env::temp_dir().join(format!("loadtest-agents-{}-{run}.json", std::process::id()));
    let _ = std::fs::remove_file(&export);
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadtest"));
    command.arg("run").args(flags).arg("--no-progress").arg("--summary-export").arg(&export);
    command.stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(DEADLINE, command.output()).await.expect("the run ends in time").unwrap();
    let exported = std::fs::read_to_string(&export).ok().map(|text| serde_json::from_str(&text).unwrap());
    let _ = std::fs::remove_file(&export);
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned(), exported)
}

fn value(export: &Value, metric: &str, field: &str) -> f64 {
    export["metrics"][metric]["values"][field].as_f64().unwrap_or_else(|| panic!("{metric}.{field} in {export:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_run_one_scenario_merged_into_one_summary() {
    let node = node().await;
    let (a, b) = (agent().await, agent().await);
    let flags = [
        "--agent",
        &a.addr,
        "--agent",
        &b.addr,
        "--agent-token",
        TOKEN,
        "--scenario",
        "broadcast",
        "--url",
        &node.hub,
        "--subscribers",
        "6",
        "--rate",
        "20",
        "--duration",
        "2s",
        "--pre-allocated-vus",
        "2",
        "--threshold",
        "deliveries_lost=count==0",
    ];
    let (code, stderr, export) = coordinate(&flags).await;
    let export = export.unwrap_or_else(|| panic!("no export; stderr:\n{stderr}"));
    assert_eq!(code, 0, "{stderr}\n{export:#}");
    assert!(stderr.contains(&format!("agent {}", a.addr)) && stderr.contains(&format!("agent {}", b.addr)), "{stderr}");
    assert_eq!(value(&export, "subscribers", "value"), 6.0, "{export:#}");
    assert_eq!(value(&export, "connect_time", "count"), 8.0, "{export:#}");
    let sent = value(&export, "messages_sent", "count");
    assert!((39.0..=42.0).contains(&sent), "{sent}");
    assert_eq!(value(&export, "deliveries_received", "count"), 6.0 * sent, "{export:#}");
    assert_eq!(value(&export, "deliveries_lost", "count"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_refuses_a_coordinator_with_the_wrong_token() {
    let node = node().await;
    let a = agent().await;
    let flags = ["--agent", &a.addr, "--agent-token", "guess", "--scenario", "echo", "--url", &node.hub, "--vus", "1"];
    let (code, stderr, export) = coordinate(&flags).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("agent {} refused: bad token", a.addr)), "{stderr}");
    assert!(export.is_none(), "nothing ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_does_not_follow_a_redirect_to_a_target_the_scenario_does_not_name() {
    let node = node().await;
    let front = redirect_to(&node.hub).await;
    let a = agent().await;
    let flags = ["--scenario", "broadcast", "--url", &front, "--subscribers", "2", "--rate", "5", "--duration", "1s"];
    // Run here, the redirect is followed; through the agent it is refused.
    let (code, stderr, _) = coordinate(&[&flags[..], &["--workers", "1"]].concat()).await;
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr, export) =
        coordinate(&[&flags[..], &["--agent", &a.addr, "--agent-token", TOKEN]].concat()).await;
    assert_eq!(code, 1, "{stderr}");
    let export = export.unwrap_or_else(|| panic!("no export; stderr:\n{stderr}"));
    assert_eq!(value(&export, "errors_negotiate", "count"), 2.0, "both subscribers refused: {export:#}");
    assert_eq!(value(&export, "subscribers", "value"), 0.0);
}

/// A negotiate endpoint that redirects every client to `hub`; returns its own hub URL.
async fn redirect_to(hub: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let body = serde_json::json!({ "url": hub }).to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/hubs/bench")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_named_twice_runs_two_workers() {
    let node = node().await;
    let a = agent().await;
    let flags =
        ["--agent", &a.addr, "--agent", &a.addr, "--agent-token", TOKEN, "--scenario", "echo", "--url", &node.hub];
    let (code, stderr, export) = coordinate(&[&flags[..], &["--vus", "4", "--duration", "1s"]].concat()).await;
    let export = export.unwrap_or_else(|| panic!("no export; stderr:\n{stderr}"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("worker 1: agent "), "{stderr}");
    assert_eq!(value(&export, "connect_time", "count"), 4.0, "two VUs on each of the agent's workers: {export:#}");
    assert_eq!(value(&export, "vus_max", "value"), 4.0);
}
