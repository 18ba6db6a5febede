//! Real processes for scale-out tests: `gateway` binaries, beside the `redis-server` processes
//! that `testkit` starts. Everything started here is killed on drop.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{Serves, DEADLINE};

#[allow(unused_imports)] // each test binary uses its own part
pub use testkit::{free_port, RedisCluster, RedisServer};

/// A `gateway` binary serving on a free loopback port.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    /// The gateway's own pid (also when started through `ip netns exec`, which execs it).
    pub pid: u32,
    child: Child,
    /// Every stderr line so far, when started with [`GatewayProcess::start_capturing_logs`].
    logs: Arc<Mutex<Vec<String>>>,
    log_reader: Option<tokio::task::JoinHandle<()>>,
}

impl Serves for GatewayProcess {
    fn address(&self) -> SocketAddr {
        self.addr
    }
}

impl GatewayProcess {
    /// Starts the binary with `args` (plus `--listen 127.0.0.1:0`, and `--log error` unless
    /// `args` set `--log`) and waits for its `listening on` line. Its logs go to the test's
    /// stderr.
    pub async fn start(args: &[String]) -> Self {
        Self::spawn(&[], "127.0.0.1:0", args, false).await
    }

    /// Like [`GatewayProcess::start`], keeping the stderr lines for [`GatewayProcess::logs`].
    pub async fn start_capturing_logs(args: &[String]) -> Self {
        Self::spawn(&[], "127.0.0.1:0", args, true).await
    }

    /// Like [`GatewayProcess::start`], listening on `listen` and started through `prefix`
    /// (e.g. `ip netns exec NS`, which execs the gateway in a network namespace).
    pub async fn start_through(prefix: &[&str], listen: &str, args: &[String]) -> Self {
        Self::spawn(prefix, listen, args, false).await
    }

    async fn spawn(prefix: &[&str], listen: &str, args: &[String], capture: bool) -> Self {
        let binary = env!("CARGO_BIN_EXE_gateway");
        let mut command = match prefix.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command.args(["--listen", listen]);
        if !args.iter().any(|arg| arg == "--log") {
            command.args(["--log", "error"]);
        }
        let stderr = if capture { Stdio::piped() } else { Stdio::inherit() };
        let mut child =
            command.args(args).stdout(Stdio::piped()).stderr(stderr).kill_on_drop(true).spawn().expect("start");
        let pid = child.id().expect("a pid");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let log_reader = child.stderr.take().map(|stderr| {
            let logs = logs.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    logs.lock().unwrap().push(line);
                }
            })
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("the gateway prints its address in time")
            .expect("read stdout")
            .expect("a line");
        let addr = line.strip_prefix("listening on http://").expect("the listening line").parse().expect("an address");
        // Keep reading stdout so the gateway never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { addr, pid, child, logs, log_reader }
    }

    /// Sends SIGTERM, as an orchestrator stopping the node does.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("the process runs").to_string();
        let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Waits up to `within` for the process to exit.
    pub async fn exit_status(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the gateway exits within {within:?}"))
            .expect("wait for the gateway")
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// The captured stderr lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Every captured stderr line, once the process has exited and its pipe is read to the end.
    pub async fn all_logs(&mut self) -> Vec<String> {
        if let Some(reader) = self.log_reader.take() {
            tokio::time::timeout(DEADLINE, reader).await.expect("stderr ends").expect("log reader");
        }
        self.logs()
    }

    /// Waits until `/readyz` answers `expected_status`.
    pub async fn wait_ready(&self, expected_status: u16) {
        let url = format!("http://{}/readyz", self.addr);
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Ok(response) = reqwest::get(&url).await {
                if response.status().as_u16() == expected_status {
                    return;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "{url} never answered {expected_status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}
