//! `loadtest run --workers 2`, the real binary and its worker processes, against a real
//! gateway listening on loopback (in this test's process): the merged summary adds up (every
//! worker's connections, zero loss, one latency sample per delivery, across workers), and a
//! worker killed mid-run fails the run with its reason. Every wait has a deadline; nothing
//! sleeps to synchronise.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::node;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const DEADLINE: Duration = Duration::from_secs(60);

fn loadtest(flags: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadtest"));
    command.arg("run").args(flags).arg("--no-progress").stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// Runs `loadtest run FLAGS --summary-export FILE`; returns the exit code, stderr and export.
async fn run_exported(flags: &[&str]) -> (i32, String, Value) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("loadtest-workers-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let export = dir.join("summary.json");
    let mut command = loadtest(flags);
    command.arg("--summary-export").arg(&export);
    let output = tokio::time::timeout(DEADLINE, command.output()).await.expect("the run ends in time").unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let text = std::fs::read_to_string(&export).unwrap_or_else(|e| panic!("no export ({e}); stderr:\n{stderr}"));
    let _ = std::fs::remove_dir_all(&dir);
    (output.status.code().unwrap_or(-1), stderr, serde_json::from_str(&text).unwrap())
}

fn value(export: &Value, metric: &str, field: &str) -> f64 {
    export["metrics"][metric]["values"][field].as_f64().unwrap_or_else(|| panic!("{metric}.{field} in {export:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_merge_into_one_summary_with_every_delivery_accounted_for() {
    let node = node().await;
    let flags = [
        "--workers",
        "2",
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
    let html = std::env::temp_dir().join(format!("loadtest-workers-{}.html", std::process::id()));
    let flags = [&flags[..], &["--report", html.to_str().unwrap()]].concat();
    let (code, stderr, export) = run_exported(&flags).await;
    assert_eq!(code, 0, "{stderr}\n{export:#}");
    assert!(stderr.contains("worker 0: pid ") && stderr.contains("worker 1: pid "), "{stderr}");
    let report = std::fs::read_to_string(&html).unwrap();
    let _ = std::fs::remove_file(&html);
    assert!(report.contains("<td>deliveries_lost</td><td><code>count==0</code></td><td class=\"pass\">"), "{report}");
    assert!(report.contains("data-series=\"connections\""), "the merged figures are plotted: {report}");
    // Three subscribers and one publishing VU per worker: the merged figures are the sums.
    assert_eq!(value(&export, "subscribers", "value"), 6.0, "{export:#}");
    assert_eq!(value(&export, "vus_max", "value"), 2.0);
    assert_eq!(value(&export, "connect_time", "count"), 8.0, "{export:#}");
    let sent = value(&export, "messages_sent", "count");
    assert!((39.0..=42.0).contains(&sent), "both workers' halves of 20/s for 2 s: {sent}");
    // Every subscriber gets both workers' messages, and each worker's expectation names all six.
    let expected = value(&export, "deliveries_expected", "count");
    assert_eq!(expected, 6.0 * sent);
    assert_eq!(value(&export, "deliveries_received", "count"), expected, "{export:#}");
    assert_eq!(value(&export, "deliveries_lost", "count"), 0.0);
    assert_eq!(value(&export, "deliveries_duplicated", "count"), 0.0);
    assert_eq!(value(&export, "delivery_latency", "count"), expected, "one merged histogram sample per delivery");
    assert!(value(&export, "delivery_latency", "p(99)") < 1000.0, "one clock origin for both workers");
    assert!(value(&export, "harness_rss_per_connection_kib", "value") > 0.0, "{export:#}");
    assert_eq!(export["metrics"]["deliveries_lost"]["thresholds"]["count==0"]["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_to_connections_find_subscribers_held_by_the_other_worker() {
    let node = node().await;
    let flags = [
        "--workers",
        "2",
        "--scenario",
        "connection",
        "--url",
        &node.hub,
        "--subscribers",
        "4",
        "--rate",
        "20",
        "--duration",
        "1s",
        "--pre-allocated-vus",
        "2",
    ];
    let (code, stderr, export) = run_exported(&flags).await;
    assert_eq!(code, 0, "{stderr}");
    let sent = value(&export, "messages_sent", "count");
    assert!(sent > 0.0);
    assert_eq!(value(&export, "deliveries_expected", "count"), sent, "{export:#}");
    assert_eq!(value(&export, "deliveries_received", "count"), sent, "{export:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_fails_the_run_with_its_reason() {
    let node = node().await;
    let mut command =
        loadtest(&["--workers", "2", "--scenario", "echo", "--url", &node.hub, "--vus", "2", "--duration", "60s"]);
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let pid = tokio::time::timeout(DEADLINE, async {
        loop {
            let line = lines.next_line().await.unwrap().unwrap_or_else(|| panic!("stderr ended: {seen:?}"));
            if let Some(rest) = line.strip_prefix("worker 1: pid ") {
                return rest.split(',').next().unwrap().to_owned();
            }
            seen.push(line);
        }
    })
    .await
    .expect("the parent names its workers");
    let killed = Command::new("kill").args(["-KILL", &pid]).status().await.unwrap();
    assert!(killed.success());
    let rest = tokio::time::timeout(DEADLINE, async {
        let mut rest = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push(line);
        }
        rest.join("\n")
    })
    .await
    .expect("the parent reports the death");
    let status = tokio::time::timeout(DEADLINE, child.wait()).await.expect("the parent exits").unwrap();
    assert_eq!(status.code(), Some(1), "{rest}");
    assert!(rest.contains(&format!("worker 1: pid {pid} exited (signal: 9")), "{rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_up_runs_each_step_on_every_worker_and_judges_the_merge() {
    let node = node().await;
    let flags = [
        "--workers",
        "2",
        "--scenario",
        "broadcast",
        "--url",
        &node.hub,
        "--subscribers",
        "4",
        "--step-up",
        "20,40",
        "--step-duration",
        "1s",
    ];
    let (code, stderr, export) = run_exported(&flags).await;
    assert_eq!(code, 0, "{stderr}\n{export:#}");
    let steps = export["stepUp"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{export:#}");
    assert!(steps.iter().all(|s| s["passed"] == true && s["droppedRatio"] == 0.0), "{export:#}");
    assert_eq!(steps[1]["sent"], 40, "both workers' halves of the last step: {export:#}");
    // The last step: four subscribers, and one of the two dedicated publishers per worker.
    assert_eq!(value(&export, "connect_time", "count"), 6.0, "{export:#}");
    assert_eq!(value(&export, "deliveries_received", "count"), 4.0 * 40.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_on_fail_threshold_on_the_merged_figures_stops_every_worker() {
    let node = node().await;
    let flags = ["--workers", "2", "--scenario", "echo", "--url", &node.hub, "--vus", "2", "--duration", "60s"];
    let started = std::time::Instant::now();
    let (code, stderr, export) = run_exported(&[&flags[..], &["--threshold", "iterations=count<5!"]].concat()).await;
    assert_eq!(code, 108, "{stderr}\n{export:#}");
    assert_eq!(export["abortedBy"], "iterations: count<5", "{export:#}");
    assert!(started.elapsed() < Duration::from_secs(30), "stopped long before its 60 s: {:?}", started.elapsed());
}
