//! Faults on real processes and networks (issue 19 §2): gateway binaries on a real
//! `redis-server`, Redis restarted or slowed mid-broadcast, a node SIGKILLed, a node cut off
//! from Redis by a network partition (network namespaces and veth pairs this test creates), and
//! readers that stop reading on every transport. Each test measures what a user would see —
//! what was delivered, what was reported to the sender, how long recovery took — and fails if
//! it got worse than the documented bound. Every loop has a deadline.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;
#[path = "common/netns.rs"]
mod netns;
#[path = "common/probe.rs"]
mod probe;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use protocol::{CompletionOutcome, HubMessage, Value};
use reqwest::Method;
use tokio::io::AsyncWriteExt;

use common::http::{negotiated, HttpClient};
use common::processes::RedisServer;
use common::rest::RestClient;
use common::{s, Conversation, TestClient};
use probe::{now_us, percentile, Node};

const HUB: &str = "/hubs/chat";
const KEY: &str = "faults-access-key";

/// Short presence timers, so the documented liveness bound (heartbeat + TTL) is 2.5 s here.
const PRESENCE: [&str; 4] = ["--presence-heartbeat-interval", "500ms", "--presence-node-ttl", "2s"];

fn redis_node_args(redis_url: &str, node_id: &str) -> Vec<String> {
    let mut args: Vec<String> = ["--backplane", "redis", "--redis-url", redis_url, "--node-id", node_id, "--access-key", KEY]
        .iter()
        .map(|a| a.to_string())
        .collect();
    args.extend(PRESENCE.iter().map(|a| a.to_string()));
    args
}

async fn redis_node(redis_url: &str, node_id: &str, extra: &[&str]) -> Node {
    let mut args = redis_node_args(redis_url, node_id);
    args.extend(extra.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = Node::start(&refs).await;
    node.wait_ready(200, Duration::from_secs(10)).await;
    node
}

/// The ids the REST API of `node` lists for `group` of the chat hub.
async fn group_members(node: &Node, group: &str) -> Option<BTreeSet<String>> {
    let (status, body) =
        RestClient::new(node.addr, KEY).call(Method::GET, &format!("/api/hubs/chat/groups/{group}/connections"), None).await;
    if status != 200 {
        return None;
    }
    let body: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(body["value"].as_array()?.iter().filter_map(|m| Some(m["connectionId"].as_str()?.to_owned())).collect())
}

/// Every `seq` (first argument) of the `target` invocations received so far, without waiting.
fn seqs(client: &mut TestClient, target: &str) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    let mut keep = std::collections::VecDeque::new();
    while let Some(message) = client.take_pending() {
        match &message {
            HubMessage::Invocation(i) if i.target == target => {
                out.insert(i.arguments[0].as_i64().unwrap());
            }
            _ => keep.push_back(message),
        }
    }
    *client.pending() = keep;
    out
}

/// Receives invocations until one of `target` with seq `last` arrived (kept in pending).
async fn receive_through(client: &mut TestClient, target: &str, last: i64) {
    client
        .expect("the last message", |m| match m {
            HubMessage::Invocation(i) if i.target == target && i.arguments[0].as_i64() == Some(last) => Some(()),
            _ => None,
        })
        .await;
    client.pending().push_back(HubMessage::Invocation(protocol::Invocation::call(target, vec![Value::from(last)])));
}

/// Redis killed and restarted on the same port in the middle of a broadcast: the local
/// receiver gets every message; every message the remote one missed was reported to the sender
/// as an error Completion and counted; cross-node delivery resumes within 5 s of Redis being
/// back; and presence (emptied with Redis) is repaired, as docs/architecture.md promises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_broadcast_loses_nothing_locally_and_reports_every_remote_loss() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let a = redis_node(&redis.url(), "restart-a", &[]).await;
    let b = redis_node(&redis.url(), "restart-b", &[]).await;
    let mut sender = TestClient::connect_at(a.addr, HUB, None).await;
    let mut local = TestClient::connect_at(a.addr, HUB, None).await;
    let mut remote = TestClient::connect_at(b.addr, HUB, None).await;
    remote.invoke_void("JoinGroup", vec![s("room")]).await;
    let remote_id = remote.connection_id.clone().unwrap();
    probe::within("presence lists the remote member", Duration::from_secs(5), || async {
        group_members(&a, "room").await.is_some_and(|m| m.contains(&remote_id))
    })
    .await;

    let mut failed = BTreeSet::new();
    let mut seq = 0i64;
    // Phase 1: healthy. Phase 2: Redis killed, until 5 sends failed. Phase 3: Redis back, until
    // the remote receiver sees a message sent after the restart.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut killed = false;
    let mut back_at: Option<Instant> = None;
    let mut first_after_restart: Option<i64> = None;
    let mut resumed_after = None;
    while Instant::now() < deadline {
        let completion = sender.invoke("SendToAll", vec![s("m"), Value::from(seq)]).await;
        if let CompletionOutcome::Error(text) = &completion.outcome {
            assert!(killed, "send {seq} failed while Redis was up: {text}");
            failed.insert(seq);
        }
        if seq == 20 && !killed {
            redis.kill().await;
            killed = true;
        }
        if killed && back_at.is_none() && failed.len() >= 5 {
            redis = RedisServer::start_on(port).await;
            back_at = Some(Instant::now());
        }
        if back_at.is_some() && first_after_restart.is_none() {
            first_after_restart = Some(seq + 1);
        }
        seq += 1;
        if let (Some(back), Some(first)) = (back_at, first_after_restart) {
            if seqs_peek(&mut remote).iter().any(|s| *s >= first) {
                resumed_after = Some(back.elapsed());
                break;
            }
        }
        // Pace the sends (about 50/s); what is received meanwhile is read by `seqs_peek`.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed_after = resumed_after.expect("cross-node delivery resumed within 30 s");
    assert!(resumed_after < Duration::from_secs(5), "cross-node delivery resumed {resumed_after:?} after Redis was back");
    let last = seq - 1;
    receive_through(&mut local, "m", last).await;
    let local_seen = seqs(&mut local, "m");
    let all: BTreeSet<i64> = (0..=last).collect();
    assert_eq!(local_seen, all, "the local receiver got every message, failed publishes included");
    // Settle: the remote receiver's last message is there (it resumed); read what is queued.
    remote.assert_no_invocation("none").await;
    let remote_seen = seqs(&mut remote, "m");
    let missed: BTreeSet<i64> = all.difference(&remote_seen).copied().collect();
    let silent: Vec<i64> = missed.difference(&failed).copied().collect();
    assert!(silent.is_empty(), "remote losses never reported to the sender: {silent:?} (failed: {failed:?})");
    assert!(!failed.is_empty() && failed.len() as i64 <= last);
    // Counted: publishes attempted minus accepted.
    let attempted = a.metric("hubgate_backplane_publish_duration_seconds_count").await;
    let accepted = a.metric("hubgate_backplane_published_total").await;
    assert!(
        attempted - accepted >= failed.len() as f64,
        "{} failed sends, but the metrics count {attempted} publishes and {accepted} accepted",
        failed.len()
    );
    // Presence lived in the Redis that was lost; the nodes re-register their entries.
    let repaired = probe::within("presence repaired after the restart", Duration::from_secs(10), || async {
        group_members(&a, "room").await.is_some_and(|m| m.contains(&remote_id))
    })
    .await;
    eprintln!(
        "redis restart: {} sent, {} failed (reported), {} missed remotely, 0 missed locally; resumed {resumed_after:?} after restart; presence repaired {repaired:?} after",
        last + 1,
        failed.len(),
        missed.len()
    );
    drop(b);
}

/// The seqs of "m" received so far, reading what has arrived without blocking on more.
fn seqs_peek(client: &mut TestClient) -> BTreeSet<i64> {
    use futures_util::FutureExt;
    // Pull whatever frames are ready now.
    while let Some(Some(message)) = client.receive().now_or_never() {
        client.pending().push_back(message);
    }
    client
        .pending()
        .iter()
        .filter_map(|m| match m {
            HubMessage::Invocation(i) if i.target == "m" => i.arguments[0].as_i64(),
            _ => None,
        })
        .collect()
}

/// A node SIGKILLed: its clients see their connection end at once and reconnect to the
/// survivor within 5 s; presence stops listing the dead node's connections within the
/// documented bound (heartbeat + TTL); a group change and a client-result call aimed at a
/// connection of the dead node fail within `--group-ack-timeout`, not after the client-result
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_forgotten_within_the_bounds() {
    let redis = RedisServer::start().await;
    let ack = ["--group-ack-timeout", "1s", "--client-result-timeout", "30s"];
    let a = redis_node(&redis.url(), "kill-a", &ack).await;
    let mut b = redis_node(&redis.url(), "kill-b", &ack).await;
    let mut victims = Vec::new();
    for _ in 0..5 {
        let mut client = TestClient::connect_at(b.addr, HUB, None).await;
        client.invoke_void("JoinGroup", vec![s("room")]).await;
        victims.push(client);
    }
    let victim_ids: BTreeSet<String> = victims.iter().map(|c| c.connection_id.clone().unwrap()).collect();
    probe::within("presence lists the victims", Duration::from_secs(5), || async {
        group_members(&a, "room").await.is_some_and(|m| m.is_superset(&victim_ids))
    })
    .await;

    b.kill().await;
    let killed = Instant::now();
    // The dead node's clients notice at once and reconnect to the survivor.
    for victim in &mut victims {
        assert!(victim.closed().await.is_none(), "a SIGKILLed node sends no Close");
    }
    let mut survivors = Vec::new();
    for _ in &victims {
        survivors.push(TestClient::connect_at(a.addr, HUB, None).await);
    }
    let mut sender = TestClient::connect_at(a.addr, HUB, None).await;
    sender.invoke_void("SendToAll", vec![s("back"), s("x")]).await;
    for survivor in &mut survivors {
        survivor.expect_invocation("back").await;
    }
    let reconnected = killed.elapsed();
    assert!(reconnected < Duration::from_secs(5), "clients reconnected and received {reconnected:?} after the kill");

    // Aimed at a connection of the dead node before presence forgot it.
    let ghost = victim_ids.iter().next().unwrap().clone();
    let rest = RestClient::new(a.addr, KEY);
    let started = Instant::now();
    let (status, _) = rest.call(Method::PUT, &format!("/api/hubs/chat/groups/team/connections/{ghost}"), None).await;
    let group_change = started.elapsed();
    assert!(!status.is_success(), "adding a dead node's connection to a group answered {status}");
    assert!(group_change < Duration::from_millis(1800), "the group change failed after {group_change:?}");
    let started = Instant::now();
    let payload = r#"{"target":"ask","arguments":[]}"#.to_owned();
    let (status, _) = rest.call(Method::POST, &format!("/api/hubs/chat/connections/{ghost}/:invoke"), Some(payload)).await;
    let client_result = started.elapsed();
    assert!(!status.is_success(), "a client-result call to a dead node's connection answered {status}");
    assert!(client_result < Duration::from_millis(1800), "the client-result call failed after {client_result:?}");

    // Documented bound: heartbeat interval + node TTL (0.5 s + 2 s here), plus a margin.
    let forgotten = probe::within("presence forgets the dead node", Duration::from_secs(10), || async {
        group_members(&a, "room").await.is_some_and(|m| m.is_disjoint(&victim_ids))
    })
    .await;
    let since_kill = killed.elapsed();
    assert!(since_kill < Duration::from_millis(4000), "presence forgot the dead node's connections {since_kill:?} after the kill");
    eprintln!(
        "node SIGKILL: reconnected {reconnected:?}; group change failed in {group_change:?} ({status}); client result failed in {client_result:?}; presence forgot after {since_kill:?} (waited {forgotten:?})"
    );
}

/// A node cut off from Redis by a network partition for 10 s (its veth link down), then
/// healed. While cut off it reports not ready, its own clients still reach each other, and
/// sends that cannot leave it are reported to their sender; once healed, cross-node delivery
/// resumes within 5 s and presence lists its connections again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_partitioned_from_redis_for_10_s_recovers_within_5_s_of_healing() {
    let net = netns::Partitionable::create().await;
    let redis = net.redis().await;
    let a = redis_node(&redis.url_for_host(), "part-a", &[]).await;
    let args = redis_node_args(&redis.url_for_namespace(), "part-b");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = net.node_in_namespace(&refs).await;
    b.wait_ready(200, Duration::from_secs(10)).await;

    let mut sender = TestClient::connect_at(a.addr, HUB, None).await;
    let mut remote = TestClient::connect_at(b.addr, HUB, None).await;
    let mut remote_peer = TestClient::connect_at(b.addr, HUB, None).await;
    remote.invoke_void("JoinGroup", vec![s("room")]).await;
    let remote_id = remote.connection_id.clone().unwrap();
    sender.invoke_void("SendToGroup", vec![s("room"), s("m"), Value::from(-1)]).await;
    remote.expect_invocation("m").await;

    net.cut_redis_link().await;
    let cut = Instant::now();
    let not_ready = b.wait_ready(503, Duration::from_secs(10)).await;
    // Local delivery on the cut-off node goes on; its sends out are reported, not silent.
    let completion = remote_peer.invoke("SendToAll", vec![s("local"), Value::from(1)]).await;
    remote.expect_invocation("local").await;
    assert!(
        matches!(completion.outcome, CompletionOutcome::Error(_)),
        "a send from the partitioned node completed without reporting that other nodes were not reached: {completion:?}"
    );
    // Hold the partition for 10 s from the cut (observing the node meanwhile).
    while cut.elapsed() < Duration::from_secs(10) {
        assert_eq!(b.wait_ready(503, Duration::from_secs(2)).await < Duration::from_secs(2), true);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    net.heal_redis_link().await;
    let healed = Instant::now();
    // Cross-node delivery resumes: keep sending until one arrives.
    let mut seq = 0;
    let resumed = loop {
        sender.invoke("SendToGroup", vec![s("room"), s("m"), Value::from(seq)]).await;
        seq += 1;
        if seqs_peek(&mut remote).iter().any(|s| *s >= 0) {
            break healed.elapsed();
        }
        assert!(healed.elapsed() < Duration::from_secs(20), "no cross-node delivery 20 s after healing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(resumed < Duration::from_secs(5), "cross-node delivery resumed {resumed:?} after the partition healed");
    let ready = b.wait_ready(200, Duration::from_secs(10)).await;
    // The node's own clients never noticed: the one that stayed still receives from A.
    sender.invoke_void("SendToGroup", vec![s("room"), s("after"), Value::from(0)]).await;
    remote.expect_invocation("after").await;
    // Presence after the heal is asserted in gateway/tests/pending/reliability_defects.rs: today
    // the healed node's entries, deleted as dead while its lease had expired, never come back.
    eprintln!("partition 10 s: not ready after {not_ready:?}; resumed {resumed:?} after healing; ready again {ready:?}");
}

/// Redis stalled by `DEBUG SLEEP`: a send completes with an error within the command timeout
/// (1 s) plus a margin, the local recipient gets it at once (fan-out never waits for Redis),
/// and once Redis answers again sends succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_times_publishes_out_and_never_blocks_local_fan_out() {
    let redis = RedisServer::start_with_password("pw", &["--enable-debug-command".into(), "yes".into()]).await;
    let url = format!("redis://:pw@127.0.0.1:{}", redis.port);
    let a = redis_node(&url, "slow-a", &[]).await;
    let mut sender = TestClient::connect_at(a.addr, HUB, None).await;
    let mut local = TestClient::connect_at(a.addr, HUB, None).await;
    sender.invoke_void("SendToAll", vec![s("m"), Value::from(0)]).await;
    local.expect_invocation("m").await;

    let sleeper = tokio::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "-a", "pw", "--no-auth-warning", "DEBUG", "SLEEP", "4"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-cli");
    // DEBUG SLEEP blocks the server: wait until a PING from another client stalls.
    probe::within("Redis is asleep", Duration::from_secs(5), || async {
        let ping = tokio::process::Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "-a", "pw", "--no-auth-warning", "PING"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .status();
        tokio::time::timeout(Duration::from_millis(300), ping).await.is_err()
    })
    .await;
    let started = Instant::now();
    let id = sender.start_invocation("SendToAll", vec![s("m"), Value::from(1)]).await;
    let got = local.expect_invocation("m").await;
    let local_latency = started.elapsed();
    let completion = sender.expect_completion(&id).await;
    let reported = started.elapsed();
    assert_eq!(got.arguments[0], Value::from(1));
    assert!(local_latency < Duration::from_millis(500), "local delivery waited {local_latency:?} for the stalled Redis");
    assert!(
        matches!(completion.outcome, CompletionOutcome::Error(_)),
        "a publish to a stalled Redis was not reported: {completion:?}"
    );
    assert!(reported < Duration::from_millis(2500), "the failed publish was reported after {reported:?}");
    drop(sleeper);
    // Once Redis answers again, sends go through.
    let woke = Instant::now();
    while !matches!(sender.invoke("SendToAll", vec![s("m"), Value::from(2)]).await.outcome, CompletionOutcome::Void) {
        assert!(woke.elapsed() < Duration::from_secs(10), "sends still fail 10 s after Redis woke up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("redis DEBUG SLEEP 4: local delivery {local_latency:?}; publish error reported after {reported:?}");
}

/// The p50 and p99 (ms) of `rounds` broadcasts of `payload` bytes to `receivers`.
async fn broadcast_latency(sender: &mut TestClient, receivers: &mut [TestClient], rounds: usize, payload: usize) -> (f64, f64) {
    let pad = "x".repeat(payload);
    let mut samples = Vec::new();
    for _ in 0..rounds {
        sender.invoke_void("SendToAll", vec![s("lat"), Value::from(now_us()), s(&pad)]).await;
        for receiver in receivers.iter_mut() {
            samples.extend(probe::latencies(receiver, "lat", 1).await);
        }
    }
    (percentile(&mut samples, 50.0), percentile(&mut samples, 99.0))
}

/// Readers that stop reading, one per transport — a WebSocket, a Server-Sent Events response
/// and a long poll never collected — are closed within the configured bounds (outbound queue
/// bound and send timeout; disconnect timeout for the poll), and the other clients of the same
/// broadcast keep their latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_readers_on_every_transport_are_closed_and_harm_no_one() {
    let node = Node::start(&[
        "--outbound-queue-bytes",
        "65536",
        "--send-timeout",
        "1s",
        "--disconnect-timeout",
        "2s",
        "--keep-alive-interval",
        "1s",
    ])
    .await;
    let mut sender = TestClient::connect_at(node.addr, HUB, None).await;
    let mut receivers = Vec::new();
    for _ in 0..10 {
        receivers.push(TestClient::connect_at(node.addr, HUB, None).await);
    }
    const ROUNDS: usize = 150;
    // Large enough that ROUNDS of them (4 MiB) overflow the stuck sockets' kernel buffers.
    const PAYLOAD: usize = 28 * 1024;
    let _ = broadcast_latency(&mut sender, &mut receivers, 20, PAYLOAD).await; // warm up
    let (base_p50, base_p99) = broadcast_latency(&mut sender, &mut receivers, ROUNDS, PAYLOAD).await;
    let connections_before = node.metric("hubgate_connections").await;

    // A WebSocket that completes the handshake, then never reads.
    let (_, token) = negotiated(&HttpClientTarget(node.addr), HUB).await;
    let mut ws = probe::tight_socket(node.addr, 4096).await;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let head = probe::request_head(
        &mut ws,
        &format!("GET {HUB}?id={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // A masked client text frame carrying the handshake.
    let handshake = br#"{"protocol":"json","version":1}"#.iter().copied().chain([0x1e]).collect::<Vec<u8>>();
    let mut frame = vec![0x81, 0x80 | handshake.len() as u8, 0, 0, 0, 0];
    frame.extend(&handshake);
    ws.write_all(&frame).await.unwrap();
    // An SSE response that is never read.
    let (_, sse_token) = negotiated(&HttpClientTarget(node.addr), HUB).await;
    let mut sse = probe::tight_socket(node.addr, 4096).await;
    let head = probe::request_head(
        &mut sse,
        &format!("GET {HUB}?id={sse_token} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let sse_client = HttpClient::new_for_tests(&HttpClientTarget(node.addr), HUB, String::new(), sse_token.clone());
    assert_eq!(sse_client.post(handshake.clone()).await.0, 200);
    // A long-polling connection whose client stops polling after the handshake.
    let poller = HttpClient::long_polling(&HttpClientTarget(node.addr), HUB, protocol::Protocol::Json).await;
    probe::within("the stuck clients are connected", Duration::from_secs(5), || async {
        node.metric("hubgate_connections").await >= connections_before + 3.0
    })
    .await;

    let started = Instant::now();
    let (slow_p50, slow_p99) = broadcast_latency(&mut sender, &mut receivers, ROUNDS, PAYLOAD).await;
    // ROUNDS × 28 KiB is far past the kernel's socket buffers plus the 64 KiB queue bound.
    let closed = probe::within("the stuck readers' connections end", Duration::from_secs(10), || async {
        node.metric("hubgate_connections").await <= connections_before
    })
    .await;
    let connections_closed = started.elapsed();
    let (ws_closed, _) = probe::drain_until_closed(&mut ws, Duration::from_secs(5)).await;
    let poll = poller.poll().await.status().as_u16();
    assert!(poll == 204 || poll == 404, "a poll after the connection ended answered {poll}");
    eprintln!(
        "stuck readers: base p50/p99 {base_p50:.1}/{base_p99:.1} ms, with stuck readers {slow_p50:.1}/{slow_p99:.1} ms; connections ended {connections_closed:?} ({closed:?}); WS socket closed {ws_closed:?} later"
    );
    // That the SSE response's socket is closed too (a write timeout) is asserted in
    // gateway/tests/pending/reliability_defects.rs: today it lingers until the OS drops it.
    drop(sse);
    assert!(
        slow_p99 <= (base_p99 * 1.2).max(base_p99 + 15.0),
        "other clients' p99 went from {base_p99:.1} ms to {slow_p99:.1} ms with stuck readers"
    );
}

/// Lets the HTTP-transport helpers address a process by its address.
struct HttpClientTarget(std::net::SocketAddr);

impl common::Serves for HttpClientTarget {
    fn address(&self) -> std::net::SocketAddr {
        self.0
    }
}
