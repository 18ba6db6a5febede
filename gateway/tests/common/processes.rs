//! Real processes for scale-out tests: `gateway` binaries, beside the `redis-server` processes
//! that `testkit` starts. Everything started here is killed on drop.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::DEADLINE;

#[allow(unused_imports)] // each test binary uses its own part
pub use testkit::{free_port, RedisCluster, RedisServer};

/// A `gateway` binary serving on a free loopback port.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    child: Child,
}

impl GatewayProcess {
    /// Starts the binary with `args` (plus `--listen 127.0.0.1:0`) and waits for its
    /// `listening on` line.
    pub async fn start(args: &[String]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["--listen", "127.0.0.1:0", "--log", "error"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the gateway binary");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("the gateway prints its address in time")
            .expect("read stdout")
            .expect("a line");
        let addr = line.strip_prefix("listening on http://").expect("the listening line").parse().expect("an address");
        Self { addr, child }
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
