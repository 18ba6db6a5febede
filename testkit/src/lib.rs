//! Test support shared by hubgate's crates: real `redis-server` processes (standalone or a
//! 3-shard Redis Cluster) on free loopback ports, without persistence, killed on drop, and
//! polling with deadlines. A missing `redis-server` fails the test: the project's test command
//! installs it.

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long anything in these tests may take to happen.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A free loopback port whose cluster bus port (+10000) is free too.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Polls `check` until it holds; fails the test after `within`.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One `redis-server`.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// A standalone server on a free port, answering PING.
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// A standalone server on `port` (e.g. to bring back a killed one).
    pub async fn start_on(port: u16) -> Self {
        Self::spawn(port, &[]).await
    }

    /// A standalone server on a free port that requires `password` for its default user, with
    /// extra settings (e.g. `--user` lines); ready once AUTH succeeds.
    pub async fn start_with_password(password: &str, extra: &[String]) -> Self {
        let port = free_port();
        let mut args = vec!["--requirepass".to_owned(), password.to_owned()];
        args.extend_from_slice(extra);
        let child = Self::command(port, &args).spawn().expect("redis-server is on PATH");
        wait_for_reply(port, &["AUTH", password], "+OK").await;
        Self { port, child: Some(child) }
    }

    fn command(port: u16, extra: &[String]) -> Command {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        command
    }

    async fn spawn(port: u16, extra: &[String]) -> Self {
        let child = Self::command(port, extra)
            .spawn()
            .expect("redis-server is on PATH (the test command installs redis-server)");
        wait_for_reply(port, &["PING"], "PONG").await;
        Self { port, child: Some(child) }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Freezes the server (SIGSTOP): its connections stay open but nothing is answered.
    pub async fn pause(&self) {
        self.signal("-STOP").await;
    }

    /// Thaws a paused server (SIGCONT).
    pub async fn resume(&self) {
        self.signal("-CONT").await;
    }

    async fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().and_then(Child::id).expect("a running server");
        let status = Command::new("kill").args([signal, &pid.to_string()]).status().await.expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Kills the server and waits until it has exited.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// A 3-shard Redis Cluster without replicas.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    dir: PathBuf,
}

impl RedisCluster {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("hubgate-backplane-cluster-{}", free_port()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            nodes.push(RedisServer::spawn(port, &cluster_args(&dir, port)).await);
        }
        let cluster = Self { nodes, dir };
        let addresses: Vec<String> = cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .expect("redis-cli is on PATH (the test command installs redis-tools)");
        assert!(created.success(), "redis-cli --cluster create failed");
        cluster.wait_ok().await;
        cluster
    }

    /// Kills shard `index`; its slots are unreachable until [`Self::revive`].
    pub async fn kill(&mut self, index: usize) {
        self.nodes[index].kill().await;
    }

    /// Starts shard `index` again on its port with its cluster state file (same id, same slots)
    /// and waits until the cluster is whole.
    pub async fn revive(&mut self, index: usize) {
        let port = self.nodes[index].port;
        self.nodes[index] = RedisServer::spawn(port, &cluster_args(&self.dir, port)).await;
        self.wait_ok().await;
    }

    async fn wait_ok(&self) {
        for node in &self.nodes {
            wait_for_reply(node.port, &["CLUSTER", "INFO"], "cluster_state:ok").await;
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

fn cluster_args(dir: &std::path::Path, port: u16) -> [String; 4] {
    let conf = dir.join(format!("nodes-{port}.conf"));
    let conf = conf.to_str().expect("a UTF-8 temp path").to_owned();
    ["--cluster-enabled".into(), "yes".into(), "--cluster-config-file".into(), conf]
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `command` until the reply contains `expected`, within the deadline.
async fn wait_for_reply(port: u16, command: &[&str], expected: &str) {
    let what = format!("redis on port {port} answers {command:?} with {expected}");
    wait_until(&what, DEADLINE, || async { query(port, command).await.is_ok_and(|reply| reply.contains(expected)) })
        .await;
}

/// One command on a fresh connection, followed by QUIT so the whole reply is read; the raw RESP
/// reply as text.
pub async fn query(port: u16, command: &[&str]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut request = format!("*{}\r\n", command.len());
    for part in command {
        request.push_str(&format!("${}\r\n{part}\r\n", part.len()));
    }
    stream.write_all(request.as_bytes()).await?;
    stream.write_all(b"QUIT\r\n").await?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut reply)).await??;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// The bulk strings of a RESP reply from [`query`] (e.g. the channels of `PUBSUB SHARDCHANNELS`).
pub fn bulk_strings(reply: &str) -> Vec<String> {
    let mut lines = reply.split("\r\n");
    let mut strings = Vec::new();
    while let Some(line) = lines.next() {
        if line.starts_with('$') && line != "$-1" {
            strings.extend(lines.next().map(str::to_owned));
        }
    }
    strings
}

/// A standalone server that only speaks TLS, with a certificate for `127.0.0.1` signed by a
/// private authority made for the test.
pub struct TlsRedisServer {
    pub server: RedisServer,
    /// The authority's certificate (PEM): what a client must trust.
    pub ca_file: PathBuf,
    dir: PathBuf,
}

impl TlsRedisServer {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("hubgate-redis-tls-{}", free_port()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let files = write_certificates(&dir);
        let port = free_port();
        let path = |name: &str| dir.join(name).to_str().expect("a UTF-8 temp path").to_owned();
        let args = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--tls-cert-file",
            &path("server.crt"),
            "--tls-key-file",
            &path("server.key"),
            "--tls-ca-cert-file",
            &path("ca.crt"),
            "--tls-auth-clients",
            "no",
            "--loglevel",
            "warning",
        ];
        let child = Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is on PATH (the test command installs redis-server)");
        let ca = files.clone();
        wait_until(&format!("TLS redis on {port} answers PING"), DEADLINE, || {
            let ca = ca.clone();
            async move {
                let reply = Command::new("redis-cli")
                    .args(["--tls", "--cacert", ca.to_str().unwrap_or_default(), "-p", &port.to_string(), "PING"])
                    .output()
                    .await;
                reply.is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("PONG"))
            }
        })
        .await;
        Self { server: RedisServer { port, child: Some(child) }, ca_file: files, dir }
    }

    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.server.port)
    }
}

impl Drop for TlsRedisServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes `ca.crt`, `server.crt` and `server.key` into `dir`; returns the path of `ca.crt`.
fn write_certificates(dir: &std::path::Path) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
    let named = |name: &str| {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: a certificate whose issuer equals its subject would pass for self-signed.
    ca_params.distinguished_name = named("hubgate test authority");
    let ca_key = KeyPair::generate().expect("a CA key");
    let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
    let server_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("parameters");
    let server_key = KeyPair::generate().expect("a server key");
    let server = server_params.signed_by(&server_key, &ca, &ca_key).expect("a server certificate");
    let write = |name: &str, pem: String| std::fs::write(dir.join(name), pem).expect("write a certificate");
    write("ca.crt", ca.pem());
    write("server.crt", server.pem());
    write("server.key", server_key.serialize_pem());
    dir.join("ca.crt")
}
