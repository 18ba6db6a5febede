//! `loadtest run` end to end, through the same `loadtest::cli::execute` the binary calls,
//! against real in-process gateways: the summary's numbers agree with each other on a healthy
//! node, and loss is reported (exit code 99) when the subscribers' node dies mid-run. Waits
//! are on observable conditions with deadlines; nothing sleeps to synchronise.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gateway::{Config, Gateway};
use loadtest::cli::{self, Report, RunArgs, EXIT_PASSED, EXIT_THRESHOLDS_FAILED};
use loadtest::model::metrics::Metric;
use loadtest::signalr::{ClientOptions, Connection, Event};
use protocol::HubMessage;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(30);

/// A gateway node serving the relay hub at `/hubs/{hub}`.
struct Node {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Node {
    async fn start(backplane: Arc<dyn backplane::Backplane>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Config { shutdown_timeout: Duration::from_secs(2), ..Config::default() };
        let gateway = Gateway::new(config, backplane).await.expect("valid config");
        let router = gateway.router();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            gateway::serve(listener, gateway, router, shutdown).await.expect("serve");
        });
        Self { addr, stop: Some(stop), task }
    }

    /// A single node on its own memory backplane.
    async fn standalone() -> Self {
        Self::start(Arc::new(backplane::MemoryBackplane::standalone())).await
    }

    fn hub(&self) -> String {
        format!("http://{}/hubs/bench", self.addr)
    }

    /// Tells the node to shut down (once).
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts the node down and waits until it is gone.
    async fn kill(mut self) {
        self.stop();
        tokio::time::timeout(DEADLINE, &mut self.task).await.expect("the node stops in time").unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run(flags: &[&str]) -> Report {
    let mut all = flags.to_vec();
    all.push("--no-progress");
    let args = RunArgs::from_flags(all).unwrap();
    tokio::time::timeout(DEADLINE, cli::execute(args)).await.expect("the run ends in time").unwrap()
}

fn count(report: &Report, name: &str) -> u64 {
    match report.metrics.by_name.get(name) {
        Some(Metric::Counter(counter)) => counter.count,
        Some(Metric::Trend(trend)) => trend.count(),
        Some(other) => panic!("{name} is not a counter or trend: {other:?}"),
        None => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_counts_one_successful_round_trip_per_iteration() {
    let node = Node::standalone().await;
    let hub = node.hub();
    let report = run(&["--scenario", "echo", "--url", &hub, "--vus", "2", "--duration", "1s"]).await;
    let iterations = count(&report, "iterations");
    assert!(iterations > 0, "{}", report.summary);
    assert_eq!(count(&report, "invoke_rtt"), iterations, "{}", report.summary);
    assert_eq!(count(&report, "errors"), 0, "{}", report.summary);
    assert_eq!(count(&report, "connect_time"), 2, "{}", report.summary);
    assert_eq!(count(&report, "handshake_time"), 2, "{}", report.summary);
    assert_eq!(report.exit_code, EXIT_PASSED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_times_every_connection_it_opens() {
    let node = Node::standalone().await;
    let hub = node.hub();
    let flags = ["--scenario", "churn", "--url", &hub, "--vus", "2", "--duration", "1s"];
    let report = run(&[&flags[..], &["--threshold", "connections_failed=rate==0"]].concat()).await;
    let iterations = count(&report, "iterations");
    assert!(iterations > 0, "{}", report.summary);
    assert_eq!(count(&report, "connect_time"), iterations, "{}", report.summary);
    assert_eq!(count(&report, "handshake_time"), iterations);
    assert_eq!(count(&report, "errors"), 0, "{}", report.summary);
    assert_eq!(report.exit_code, EXIT_PASSED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_on_a_healthy_node_delivers_every_message_to_every_subscriber() {
    let node = Node::standalone().await;
    let hub = node.hub();
    let flags = ["--scenario", "broadcast", "--url", &hub, "--subscribers", "5", "--rate", "20", "--duration", "1s"];
    let mut flags = flags.to_vec();
    flags.extend(["--pre-allocated-vus", "2", "--threshold", "deliveries_lost=count==0"]);
    let report = run(&flags).await;
    let expected = count(&report, "deliveries_expected");
    assert_eq!(expected, 5 * count(&report, "iterations"), "{}", report.summary);
    assert!(expected > 0);
    assert_eq!(count(&report, "deliveries_received"), expected, "{}", report.summary);
    assert_eq!(count(&report, "deliveries_lost"), 0);
    assert_eq!(count(&report, "deliveries_duplicated"), 0);
    assert_eq!(count(&report, "delivery_latency"), expected);
    assert_eq!(report.exit_code, EXIT_PASSED, "{}", report.summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_is_reported_when_the_subscribers_node_dies_mid_run() {
    let bus = backplane::MemoryBus::new();
    let publisher_node = Node::start(Arc::new(bus.node())).await;
    let subscriber_node = Node::start(Arc::new(bus.node())).await;
    let (publisher_hub, subscriber_hub) = (publisher_node.hub(), subscriber_node.hub());
    // An observer on the subscribers' node: its first broadcast proves the run is delivering
    // through the backplane, which is when the node is killed.
    let mut observer = Connection::connect(ClientOptions::new(subscriber_hub.clone())).await.unwrap();
    let flags = [
        "--scenario",
        "broadcast",
        "--url",
        &publisher_hub,
        "--subscriber-url",
        &subscriber_hub,
        "--subscribers",
        "4",
        "--rate",
        "20",
        "--duration",
        "3s",
        "--pre-allocated-vus",
        "2",
        "--drain",
        "1s",
        "--threshold",
        "deliveries_lost=count==0",
    ]
    .map(str::to_owned);
    let running = tokio::spawn(async move { run(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await });
    first_broadcast(&mut observer).await;
    subscriber_node.kill().await;
    let report = running.await.unwrap();
    let (expected, received) = (count(&report, "deliveries_expected"), count(&report, "deliveries_received"));
    assert!(received > 0, "some deliveries before the kill\n{}", report.summary);
    assert!(count(&report, "deliveries_lost") > 0, "{}", report.summary);
    assert_eq!(count(&report, "deliveries_lost"), expected - received);
    assert_eq!(count(&report, "errors_subscriber_dropped"), 4, "{}", report.summary);
    assert!(report.summary.contains("✗ deliveries_lost: count==0"), "{}", report.summary);
    assert_eq!(report.exit_code, EXIT_THRESHOLDS_FAILED);
}

/// Waits for the observer's first `tick`.
async fn first_broadcast(observer: &mut Connection) {
    let wait = async {
        loop {
            match observer.next().await {
                Some(Event::Message(HubMessage::Invocation(invocation))) if invocation.target == "tick" => return,
                Some(Event::Message(_)) => {}
                other => panic!("the observer got {other:?} before any broadcast"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait).await.expect("a broadcast reaches the subscribers' node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_churn_leaves_the_stable_members_accounting_exact() {
    let node = Node::standalone().await;
    let hub = node.hub();
    let flags = [
        "--scenario",
        "group",
        "--url",
        &hub,
        "--subscribers",
        "8",
        "--group-size",
        "4",
        "--group-churn",
        "0.5",
        "--rate",
        "20",
        "--duration",
        "2500ms",
        "--pre-allocated-vus",
        "2",
        "--threshold",
        "deliveries_lost=count==0",
    ];
    let report = run(&flags).await;
    // Two groups of four, two of each churning: every message expects its group's two stable members.
    assert_eq!(count(&report, "deliveries_expected"), 2 * count(&report, "iterations"), "{}", report.summary);
    assert_eq!(count(&report, "deliveries_received"), count(&report, "deliveries_expected"));
    assert!(count(&report, "group_rejoins") >= 4, "{}", report.summary);
    assert!(count(&report, "deliveries_churning") > 0, "{}", report.summary);
    assert_eq!(report.exit_code, EXIT_PASSED, "{}", report.summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_up_broadcast_publishes_from_dedicated_publishers() {
    let node = Node::standalone().await;
    let hub = node.hub();
    let flags = ["--scenario", "broadcast", "--url", &hub, "--subscribers", "5", "--step-up", "20,40"];
    let report = run(&[&flags[..], &["--step-duration", "1s", "--pre-allocated-vus", "30"]].concat()).await;
    assert_eq!(report.steps.len(), 2, "{}", report.summary);
    assert!(report.steps.iter().all(|s| s.passed && s.dropped_ratio == 0.0), "{}", report.summary);
    // The last step's connections: five subscribers and the two dedicated publishers, not
    // the thirty pre-allocated VUs an arrival rate would prepare.
    assert_eq!(count(&report, "connect_time"), 7, "{}", report.summary);
    assert_eq!(count(&report, "iterations"), 40, "every due message sent: {}", report.summary);
    assert_eq!(count(&report, "dropped_iterations"), 0);
    assert_eq!(count(&report, "deliveries_received"), 5 * 40);
    assert_eq!(report.exit_code, EXIT_PASSED, "{}", report.summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_can_be_asked_for_outside_step_up_too() {
    let node = Node::standalone().await;
    let hub = node.hub();
    let flags = ["--scenario", "group", "--url", &hub, "--subscribers", "4", "--group-size", "2", "--rate", "30"];
    let report =
        run(&[&flags[..], &["--duration", "1s", "--publishers", "1", "--pre-allocated-vus", "5"]].concat()).await;
    assert_eq!(count(&report, "connect_time"), 5, "{}", report.summary);
    assert_eq!(count(&report, "iterations"), 30, "{}", report.summary);
    assert_eq!(count(&report, "deliveries_received"), 2 * 30, "{}", report.summary);
    assert_eq!(count(&report, "deliveries_lost"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_is_one_self_contained_file_that_chromium_renders() {
    let node = Node::standalone().await;
    let hub = node.hub();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("loadtest-report");
    std::fs::create_dir_all(&dir).unwrap();
    let (html_path, png_path) = (dir.join("report.html"), dir.join("report.png"));
    let _ = std::fs::remove_file(&png_path);
    let flags = ["--scenario", "broadcast", "--url", &hub, "--subscribers", "5", "--rate", "20", "--duration", "3s"];
    let more = ["--pre-allocated-vus", "2", "--threshold", "deliveries_lost=count==0"];
    let report_flag = ["--threshold", "delivery_latency=p(99)<5000", "--report", html_path.to_str().unwrap()];
    let report = run(&[&flags[..], &more, &report_flag].concat()).await;
    assert_eq!(report.exit_code, EXIT_PASSED, "{}", report.summary);
    let html = std::fs::read_to_string(&html_path).unwrap();
    for needle in [
        "passed (exit code 0)",
        "<td>deliveries_lost</td><td><code>count==0</code></td><td class=\"pass\">✓ passed</td>",
        "<td>delivery_latency</td><td><code>p(99)&lt;5000</code></td><td class=\"pass\">✓ passed</td>",
        "data-series=\"connections\"",
        "data-series=\"deliveries/s\"",
        "data-series=\"p(50),p(95),p(99)\"",
        "data-series=\"errors/s\"",
        "deliveries_received",
    ] {
        assert!(html.contains(needle), "{needle} in\n{html}");
    }
    let plotted =
        html.split("points=\"").skip(1).filter(|rest| rest.split('"').next().is_some_and(|p| p.contains(' ')));
    assert!(plotted.count() >= 6, "every series has at least two points:\n{html}");
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("src="), "self-contained");

    // Opened in headless Chromium (Debian's, which scripts/test-all installs) without a
    // network: the screenshot stays in the test's target directory.
    let chromium = std::env::var("HUBGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut shot = tokio::process::Command::new(&chromium);
    shot.args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=840,1500"])
        .arg(format!("--screenshot={}", png_path.display()))
        .arg(format!("file://{}", html_path.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let status = tokio::time::timeout(DEADLINE, shot.status()).await.expect("chromium ends in time").unwrap();
    assert!(status.success(), "{chromium}: {status}");
    let png = std::fs::read(&png_path).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a screenshot with content: {} bytes", png.len());
}
