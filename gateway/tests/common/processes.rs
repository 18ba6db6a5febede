//! Real processes for scale-out tests: `redis-server` (standalone or a 3-shard cluster) on free
//! loopback ports, and `gateway` binaries. Everything started here is killed on drop.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::DEADLINE;

/// A free loopback port (bound and released; good enough for tests on one machine).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// One `redis-server` process without persistence.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    _dir: Option<TempDir>,
}

impl RedisServer {
    /// Starts a standalone server on a free port and waits until it answers PING.
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// Starts a standalone server on `port` (e.g. to bring a killed one back).
    pub async fn start_on(port: u16) -> Self {
        let child = spawn_redis(port, &[]);
        wait_for_pong(port).await;
        Self { port, child: Some(child), _dir: None }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}

/// A 3-shard Redis Cluster made with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub async fn start() -> Self {
        let dir = TempDir::new("redis-cluster");
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let config_file = dir.0.join(format!("nodes-{port}.conf"));
            let args = ["--cluster-enabled", "yes", "--cluster-config-file", config_file.to_str().expect("utf-8 path")];
            let child = spawn_redis(port, &args);
            wait_for_pong(port).await;
            nodes.push(RedisServer { port, child: Some(child), _dir: None });
        }
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .expect("redis-cli is installed (the test command installs redis-tools)");
        assert!(status.success(), "redis-cli --cluster create failed");
        for node in &nodes {
            wait_for(node.port, "CLUSTER INFO", "cluster_state:ok").await;
        }
        nodes[0]._dir = Some(dir);
        Self { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

fn spawn_redis(port: u16, extra: &[&str]) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--daemonize", "no", "--loglevel", "warning"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server is installed (the test command installs it)")
}

async fn wait_for_pong(port: u16) {
    wait_for(port, "PING", "PONG").await;
}

/// Sends an inline command until the reply contains `expected`, within the deadline.
async fn wait_for(port: u16, command: &str, expected: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Ok(reply) = inline_command(port, command).await {
            if reply.contains(expected) {
                return;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "redis on {port} never answered {command} with {expected}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn inline_command(port: u16, command: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(format!("{command}\r\n").as_bytes()).await?;
    let mut buffer = vec![0; 4096];
    let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buffer)).await??;
    Ok(String::from_utf8_lossy(&buffer[..read]).into_owned())
}

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

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!("hubgate-{label}-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&path).expect("create a scratch directory");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
