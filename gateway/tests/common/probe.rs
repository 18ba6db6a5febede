//! What the fault tests (`faults.rs`) measure a gateway process with: its Prometheus metrics,
//! readiness, RSS and open files; broadcast latency percentiles; what clients received; and raw
//! sockets that misbehave on purpose. Everything started here is killed on drop; every wait
//! has a deadline.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use protocol::{CompletionOutcome, HubMessage, Value};

use crate::common::http::{negotiated, HttpClient};
use crate::common::processes::GatewayProcess;
use crate::common::{s, Conversation, Serves, TestClient, DEADLINE};

/// The fault tests' name for a gateway process.
pub type Node = GatewayProcess;

/// What the fault tests read of a gateway process besides what [`GatewayProcess`] offers.
impl GatewayProcess {
    /// Resident memory in KiB.
    pub fn rss_kb(&self) -> u64 {
        status_field(self.pid, "VmRSS")
    }

    /// Open file descriptors (sockets included).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map(|dir| dir.count()).unwrap_or(0)
    }

    /// The sum of every sample of metric `name` (all label sets) at `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        metric_at(self.addr, name, "").await
    }

    /// The sum of the samples of metric `name` whose labels mention `label` (e.g. a value).
    pub async fn metric_where(&self, name: &str, label: &str) -> f64 {
        metric_at(self.addr, name, label).await
    }

    /// What `/readyz` answers now (`None`: no answer within a second).
    pub async fn ready_status(&self) -> Option<u16> {
        let answer = reqwest::Client::new().get(self.http("/readyz")).timeout(Duration::from_secs(1)).send().await;
        answer.ok().map(|response| response.status().as_u16())
    }

    /// Waits until `/readyz` answers `status`; returns how long that took.
    pub async fn ready_within(&self, status: u16, limit: Duration) -> Duration {
        within(&format!("{}/readyz answers {status}", self.addr), limit, || async {
            self.ready_status().await == Some(status)
        })
        .await
    }
}

/// `args` as owned strings, as [`GatewayProcess::start`] takes them.
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The sum of the samples of metric `name` at `http://addr/metrics` whose line holds `label`.
pub async fn metric_at(addr: SocketAddr, name: &str, label: &str) -> f64 {
    let body = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .timeout(DEADLINE)
        .send()
        .await
        .expect("scrape /metrics")
        .text()
        .await
        .expect("metrics text");
    body.lines()
        .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter(|line| line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `check` every 20 ms until it holds; panics after `within`. Returns the time it took.
pub async fn within<F, Fut>(what: &str, within: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// `redis-cli` for the server on `port` with `password`, running `args`; output discarded.
pub fn redis_cli(port: u16, password: &str, args: &[&str]) -> Command {
    let mut command = Command::new("redis-cli");
    command
        .args(["-p", &port.to_string(), "-a", password, "--no-auth-warning"])
        .args(args)
        .stdout(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Microseconds since a process-wide epoch: senders stamp it, receivers in the same test
/// process subtract it.
pub fn now_us() -> i64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as i64
}

/// Percentile `p` (0–100) of `samples` (sorted here).
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    assert!(!samples.is_empty(), "no samples");
    samples.sort_by(f64::total_cmp);
    let index = ((samples.len() as f64 * p / 100.0).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[index]
}

/// Receives `count` invocations of `target` whose first argument is a [`now_us`] stamp and
/// returns their latencies in ms.
pub async fn latencies(client: &mut TestClient, target: &str, count: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let invocation = client.expect_invocation(target).await;
        let sent = invocation.arguments[0].as_i64().expect("a timestamp");
        out.push((now_us() - sent) as f64 / 1000.0);
    }
    out
}

/// Opens a TCP connection whose receive buffer is `rcvbuf` bytes (small: the socket fills fast
/// once the reader stops).
pub async fn tight_socket(addr: SocketAddr, rcvbuf: u32) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
    tokio::time::timeout(DEADLINE, socket.connect(addr)).await.expect("connect in time").expect("connect")
}

/// Writes `request` and reads until the end of the response head; returns the head.
pub async fn request_head(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.expect("write the request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n =
            tokio::time::timeout(DEADLINE, stream.read(&mut byte)).await.expect("a response in time").expect("read");
        assert!(n == 1, "the connection closed in the response head: {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Reads and discards until the peer closes; panics unless that happens within `within`.
/// Returns the time it took and the bytes read.
pub async fn drain_until_closed(stream: &mut TcpStream, within: Duration) -> (Duration, usize) {
    let started = Instant::now();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let left = within.checked_sub(started.elapsed()).unwrap_or_default();
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), total),
            Ok(Ok(n)) => total += n,
            Err(_) => panic!("the server kept the connection open for {within:?} ({total} bytes read)"),
        }
    }
}

/// Whether the peer closed the connection within `within`, reading (and dropping) what comes.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let started = Instant::now();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let left = within.checked_sub(started.elapsed()).unwrap_or_default();
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// The first arguments (`seq`) of the `target` invocations received so far, reading what has
/// already arrived without waiting for more; the messages stay pending.
pub fn seqs_so_far(client: &mut TestClient, target: &str) -> BTreeSet<i64> {
    use futures_util::FutureExt;
    // `receive` is cancel-safe before a frame is read whole, so polling it once loses nothing.
    while let Some(Some(message)) = client.receive().now_or_never() {
        client.pending().push_back(message);
    }
    seqs_pending(client, target)
}

/// Waits for the `target` invocation whose seq is `last`, then takes every `target`
/// invocation received and returns their seqs.
pub async fn seqs_through(client: &mut TestClient, target: &str, last: i64) -> BTreeSet<i64> {
    let mut seqs = BTreeSet::new();
    while !seqs.contains(&last) {
        let invocation = client.expect_invocation(target).await;
        seqs.insert(invocation.arguments[0].as_i64().expect("a seq"));
    }
    seqs.extend(seqs_pending(client, target));
    client.pending().retain(|m| !matches!(m, HubMessage::Invocation(i) if i.target == target));
    seqs
}

/// The seqs of the `target` invocations received but not consumed yet.
pub fn seqs_pending(client: &mut TestClient, target: &str) -> BTreeSet<i64> {
    client
        .pending()
        .iter()
        .filter_map(|m| match m {
            HubMessage::Invocation(i) if i.target == target => i.arguments[0].as_i64(),
            _ => None,
        })
        .collect()
}

/// Lets the HTTP-transport clients address a process by its address.
pub struct At(pub SocketAddr);

impl crate::common::Serves for At {
    fn address(&self) -> SocketAddr {
        self.0
    }
}

/// A broadcast the slow-reader tests keep running: one sender, three receivers that read.
pub struct Broadcast {
    sender: TestClient,
    receivers: Vec<TestClient>,
    pad: String,
}

impl Broadcast {
    /// Bytes of padding in every message: large, so that the kernel's socket buffers of a
    /// stuck reader (megabytes on loopback) fill within a second.
    const PAYLOAD: usize = 64 * 1024;

    pub async fn start(addr: SocketAddr, hub: &str) -> Self {
        let sender = TestClient::connect_at(addr, hub, None).await;
        let mut receivers = Vec::new();
        for _ in 0..3 {
            receivers.push(TestClient::connect_at(addr, hub, None).await);
        }
        Self { sender, receivers, pad: "x".repeat(Self::PAYLOAD) }
    }

    /// One `SendToOthers` received by every receiver; their latencies in ms.
    pub async fn round(&mut self) -> Vec<f64> {
        let arguments = vec![Value::from("lat"), Value::from(now_us()), Value::from(self.pad.as_str())];
        self.sender.invoke_void("SendToOthers", arguments).await;
        let mut samples = Vec::with_capacity(self.receivers.len());
        for receiver in &mut self.receivers {
            samples.extend(latencies(receiver, "lat", 1).await);
        }
        samples
    }

    pub async fn rounds(&mut self, rounds: usize) -> Vec<f64> {
        let mut samples = Vec::new();
        for _ in 0..rounds {
            samples.extend(self.round().await);
        }
        samples
    }

    /// Runs rounds until the node no longer holds `stuck`'s connection open, and at least 100;
    /// gives up `within` after the first round.
    pub async fn until_closed(&mut self, node: &Node, stuck: &Stuck, within: Duration) -> StuckOutcome {
        let slow_before = node.metric("hubgate_slow_consumer_disconnects_total").await;
        let started = Instant::now();
        let mut outcome =
            StuckOutcome { ended: None, last_progress: Duration::ZERO, closed: None, samples: Vec::new() };
        let (mut rounds, mut queued) = (0, None);
        while outcome.closed.is_none() || rounds < 100 {
            outcome.samples.extend(self.round().await);
            rounds += 1;
            if outcome.ended.is_none() && node.metric("hubgate_slow_consumer_disconnects_total").await > slow_before {
                outcome.ended = Some(started.elapsed());
            }
            if outcome.closed.is_none() {
                match server_send_queue(node.addr, stuck.local) {
                    None => outcome.closed = Some(started.elapsed()),
                    Some(bytes) if queued != Some(bytes) => {
                        queued = Some(bytes);
                        outcome.last_progress = started.elapsed();
                    }
                    Some(_) => {}
                }
            }
            if outcome.closed.is_none() && started.elapsed() > within {
                break;
            }
        }
        outcome
    }
}

/// What became of a stuck reader, counted from the first message it did not read.
pub struct StuckOutcome {
    /// When its session ended as a slow consumer (its outbound queue overflowed), if it did.
    pub ended: Option<Duration>,
    /// When the node last put bytes into its socket: the socket's buffers were full after that.
    pub last_progress: Duration,
    /// When the node stopped holding its TCP connection open.
    pub closed: Option<Duration>,
    /// The latencies (ms) of the other receivers meanwhile.
    pub samples: Vec<f64>,
}

/// A client connection that stopped reading: its socket (kept open) and its local address.
pub struct Stuck {
    pub stream: TcpStream,
    pub local: SocketAddr,
}

/// A WebSocket that completes the SignalR handshake, then never reads again.
pub async fn stuck_websocket(addr: SocketAddr, hub: &str) -> Stuck {
    let (_, token) = negotiated(&At(addr), hub).await;
    let mut stream = tight_socket(addr, 4096).await;
    let request = format!(
        "GET {hub}?id={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let head = request_head(&mut stream, &request).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // One masked (with a zero mask) text frame carrying the handshake.
    let handshake = HANDSHAKE;
    let mut frame = vec![0x81, 0x80 | handshake.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(handshake);
    stream.write_all(&frame).await.expect("send the handshake");
    let local = stream.local_addr().expect("a local address");
    Stuck { stream, local }
}

/// A Server-Sent Events connection whose event stream is never read after its head.
pub async fn stuck_event_stream(addr: SocketAddr, hub: &str) -> Stuck {
    let (id, token) = negotiated(&At(addr), hub).await;
    let mut stream = tight_socket(addr, 4096).await;
    let request = format!("GET {hub}?id={token} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n");
    let head = request_head(&mut stream, &request).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let poster = HttpClient::new_for_tests(&At(addr), hub, id, token);
    assert_eq!(poster.post(HANDSHAKE.to_vec()).await.0, 200, "the handshake POST");
    let local = stream.local_addr().expect("a local address");
    Stuck { stream, local }
}

const HANDSHAKE: &[u8] = b"{\"protocol\":\"json\",\"version\":1}\x1e";

/// The bytes queued in the server's socket for the TCP connection from `client` to `server`
/// (sent and unacknowledged, or not sent yet), while that connection is established; read
/// from `/proc/net/tcp` (IPv4). `None` once the server closed it.
pub fn server_send_queue(server: SocketAddr, client: SocketAddr) -> Option<u64> {
    let hex = |addr: SocketAddr| match addr {
        SocketAddr::V4(v4) => format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port()),
        SocketAddr::V6(_) => panic!("IPv4 only"),
    };
    let (local, remote) = (hex(server), hex(client));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).find_map(|line| {
        // sl, local_address, rem_address, st (01 = ESTABLISHED), tx_queue:rx_queue
        let fields: Vec<&str> = line.split_whitespace().collect();
        let ours = fields.len() > 4 && fields[1] == local && fields[2] == remote && fields[3] == "01";
        ours.then(|| fields[4].split(':').next().and_then(|tx| u64::from_str_radix(tx, 16).ok()))?
    })
}

/// A numbered broadcast: `SendToAll("m", seq)` with seq 0, 1, …, and the seqs whose
/// Completion was an error.
#[derive(Debug, Default)]
pub struct Sends {
    next: i64,
    pub failed: BTreeSet<i64>,
}

impl Sends {
    pub async fn send(&mut self, sender: &mut TestClient) {
        let completion = sender.invoke("SendToAll", vec![s("m"), Value::from(self.next)]).await;
        if let CompletionOutcome::Error(_) = completion.outcome {
            self.failed.insert(self.next);
        }
        self.next += 1;
    }

    pub fn count(&self) -> i64 {
        self.next
    }
}
