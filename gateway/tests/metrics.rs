//! `/metrics`: every metric the gateway exports moves when the thing it counts happens. Each
//! test scrapes over HTTP before and after an action and compares parsed sample values.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;
mod scrape;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::http::HttpClient;
use common::processes::RedisServer;
use common::{fast_config, open_socket, s, Conversation, TestClient, TestGateway, DEADLINE};
use gateway::Config;
use protocol::{Close, HandshakeResponse, HubMessage, Protocol};
use scrape::{scrape, scrape_until, Scrape};
use tokio::io::{AsyncBufReadExt, BufReader};

const HUB: &str = "/hubs/chat";
const CONNECTIONS: &str = "hubgate_connections";
const DISCONNECTS: &str = "hubgate_disconnects_total";
const HANDSHAKE_FAILURES: &str = "hubgate_handshake_failures_total";
const INVOCATIONS: &str = "hubgate_invocations_total";
/// Long-polling clients that do not poll keep their messages queued: the config must not reap
/// them while a test looks.
fn patient_config() -> Config {
    Config { rest_api_open: true, ..Config::default() }
}

fn reason(reason: &str) -> [(&'static str, &str); 1] {
    [("reason", reason)]
}

async fn until(gateway: &TestGateway, what: &str, condition: impl Fn(&Scrape) -> bool) -> Scrape {
    scrape_until(gateway.addr, what, DEADLINE, condition).await
}

#[tokio::test]
async fn the_exported_metrics_are_exactly_the_documented_list() {
    let gateway = TestGateway::start(patient_config()).await;
    // The REST counter has no sample until the first request.
    reqwest::get(gateway.http("/api/health?api-version=2022-06-01")).await.unwrap();
    let scraped = scrape(gateway.addr).await;
    let listed: BTreeSet<String> = gateway::metrics::METRIC_NAMES.iter().map(|name| name.to_string()).collect();
    assert_eq!(scraped.families, listed);
    assert!(listed.iter().all(|name| name.starts_with("hubgate_")));
}

#[tokio::test]
async fn a_registry_passed_in_is_served_with_the_applications_own_metrics() {
    let registry = prometheus::Registry::new();
    let own = prometheus::IntCounter::new("app_orders_total", "The application's own counter.").unwrap();
    registry.register(Box::new(own.clone())).unwrap();
    own.inc();
    let backplane = Arc::new(backplane::MemoryBackplane::standalone());
    let gateway = gateway::Gateway::with_registry(patient_config(), backplane, None, registry.clone()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gateway::serve(listener, gateway.clone(), gateway.router(), std::future::pending()));
    let scraped = scrape(addr).await;
    assert_eq!(scraped.value("app_orders_total", &[]), 1.0);
    assert!(scraped.has("hubgate_connects_total", &[]));

    let second = gateway::Gateway::with_registry(
        patient_config(),
        Arc::new(backplane::MemoryBackplane::standalone()),
        None,
        registry,
    );
    assert!(second.await.is_err(), "two gateways cannot share one registry");
}

#[tokio::test]
async fn connections_are_counted_by_transport_and_protocol_while_they_last() {
    let gateway = TestGateway::start(patient_config()).await;
    let before = scrape(gateway.addr).await;
    let mut json = TestClient::connect(&gateway, HUB).await;
    let mut messagepack = TestClient::connect_with_protocol(&gateway, HUB, Protocol::MessagePack).await;
    let _sse = HttpClient::server_sent_events(&gateway, HUB).await;
    let _polling = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;

    let open = scrape(gateway.addr).await;
    assert_eq!(open.delta(&before, "hubgate_connects_total", &[]), 4.0);
    for (transport, protocol) in [
        ("websockets", "json"),
        ("websockets", "messagepack"),
        ("server_sent_events", "json"),
        ("long_polling", "json"),
    ] {
        let labels = [("transport", transport), ("protocol", protocol)];
        assert_eq!(open.delta(&before, CONNECTIONS, &labels), 1.0, "{transport}/{protocol}");
    }

    json.send(&HubMessage::Close(Close::default())).await;
    messagepack.drop_socket_abruptly().await;
    let closed = until(&gateway, "both WebSocket connections to end", |now| {
        now.value(CONNECTIONS, &[("transport", "websockets")]) == 0.0
    })
    .await;
    assert_eq!(closed.delta(&open, DISCONNECTS, &reason("client_closed")), 1.0);
    assert_eq!(closed.delta(&open, DISCONNECTS, &reason("transport_closed")), 1.0);
    assert_eq!(closed.value(CONNECTIONS, &[("transport", "server_sent_events")]), 1.0);
}

#[tokio::test]
async fn a_client_that_stops_sending_is_counted_as_timed_out() {
    let gateway = TestGateway::start(fast_config()).await;
    let before = scrape(gateway.addr).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    // The client timeout starts with the client's first Ping.
    client.send(&HubMessage::Ping).await;
    let after =
        until(&gateway, "the client timeout", |now| now.delta(&before, DISCONNECTS, &reason("timeout")) == 1.0).await;
    assert_eq!(after.value(CONNECTIONS, &[]), 0.0);
}

#[tokio::test]
async fn handshake_failures_are_counted_by_reason() {
    let gateway = TestGateway::start(fast_config()).await;
    let before = scrape(gateway.addr).await;
    for (handshake, expected) in [
        ("{\"protocol\":\"carrier-pigeon\",\"version\":1}\u{1e}", "unsupported_protocol"),
        ("{\"version\":1}\u{1e}", "malformed"),
    ] {
        let mut raw = TestClient::raw(open_socket(&gateway.ws(HUB)).await);
        raw.send_text(handshake).await;
        assert!(matches!(raw.handshake_response().await, HandshakeResponse::Refused(_)), "{handshake}");
        let after = scrape(gateway.addr).await;
        assert_eq!(after.delta(&before, HANDSHAKE_FAILURES, &reason(expected)), 1.0, "{expected}");
    }
    // Silent until the handshake timeout (500 ms here).
    let _silent = open_socket(&gateway.ws(HUB)).await;
    until(&gateway, "the handshake timeout", |now| now.delta(&before, HANDSHAKE_FAILURES, &reason("timeout")) == 1.0)
        .await;
    let after = scrape(gateway.addr).await;
    assert_eq!(after.delta(&before, "hubgate_connects_total", &[]), 0.0, "no failed handshake connected");
}

#[tokio::test]
async fn messages_and_bytes_are_counted_per_direction_and_invocations_by_outcome() {
    let gateway = TestGateway::start(patient_config()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    let before = scrape(gateway.addr).await;
    let invocation = "{\"type\":1,\"invocationId\":\"m1\",\"target\":\"Echo\",\"arguments\":[\"hi\"]}\u{1e}";
    client.send_text(invocation).await;
    client.expect_completion("m1").await;
    let after = scrape(gateway.addr).await;
    let inbound = [("direction", "inbound")];
    let outbound = [("direction", "outbound")];
    assert_eq!(after.delta(&before, "hubgate_messages_total", &inbound), 1.0);
    assert_eq!(after.delta(&before, "hubgate_message_bytes_total", &inbound), invocation.len() as f64);
    assert_eq!(after.delta(&before, "hubgate_messages_total", &outbound), 1.0, "the Completion");
    assert!(after.delta(&before, "hubgate_message_bytes_total", &outbound) > 20.0);
    assert_eq!(after.delta(&before, INVOCATIONS, &[("outcome", "ok")]), 1.0);

    client.invoke_error("NoSuchMethod", vec![]).await;
    client.invoke_error("Echo", vec![]).await; // wrong number of arguments: the call fails
                                               // A StreamInvocation of a plain method.
    client.send_text("{\"type\":4,\"invocationId\":\"s1\",\"target\":\"Echo\",\"arguments\":[\"x\"]}\u{1e}").await;
    client.expect_completion("s1").await;
    let after = scrape(gateway.addr).await;
    assert_eq!(after.delta(&before, INVOCATIONS, &[("outcome", "wrong_kind")]), 1.0);
    assert_eq!(after.delta(&before, INVOCATIONS, &[("outcome", "unknown_method")]), 1.0);
    assert_eq!(after.delta(&before, INVOCATIONS, &[("outcome", "error")]), 1.0);
    assert_eq!(after.delta(&before, INVOCATIONS, &[("outcome", "ok")]), 1.0);
}

#[tokio::test]
async fn a_send_is_timed_published_received_and_its_bytes_wait_in_a_queue_until_polled() {
    let gateway = TestGateway::start(patient_config()).await;
    let polling = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    let mut sender = TestClient::connect(&gateway, HUB).await;
    let before = scrape(gateway.addr).await;
    assert_eq!(before.value("hubgate_outbound_queue_bytes", &[]), 0.0);

    sender.invoke_void("SendToAll", vec![s("news"), s("x")]).await;
    let queued = until(&gateway, "the poller's message to be queued and the envelope to come back", |now| {
        now.value("hubgate_outbound_queue_bytes", &[]) > 0.0
            && now.delta(&before, "hubgate_backplane_received_total", &[]) >= 1.0
    })
    .await;
    assert_eq!(queued.delta(&before, "hubgate_fanout_duration_seconds_count", &[]), 1.0);
    assert!(queued.delta(&before, "hubgate_fanout_duration_seconds_sum", &[]) > 0.0);
    assert_eq!(queued.delta(&before, "hubgate_backplane_published_total", &[]), 1.0);
    assert_eq!(queued.delta(&before, "hubgate_backplane_publish_duration_seconds_count", &[]), 1.0);
    assert_eq!(queued.value("hubgate_backplane_up", &[]), 1.0, "the memory backplane is always up");

    let poll = polling.poll().await;
    assert!(String::from_utf8_lossy(&poll.bytes().await.unwrap()).contains("news"));
    until(&gateway, "the queue to drain", |now| now.value("hubgate_outbound_queue_bytes", &[]) == 0.0).await;
}

#[tokio::test]
async fn a_client_that_does_not_keep_up_is_counted_as_a_slow_consumer() {
    let gateway = TestGateway::start(Config { outbound_queue_bytes: 1024, ..patient_config() }).await;
    let _not_polling = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    let mut sender = TestClient::connect(&gateway, HUB).await;
    let before = scrape(gateway.addr).await;
    let big = "x".repeat(600);
    sender.invoke_void("SendToAll", vec![s("big"), s(&big)]).await;
    sender.invoke_void("SendToAll", vec![s("big"), s(&big)]).await;
    let after = until(&gateway, "the slow consumer's disconnect", |now| {
        now.delta(&before, DISCONNECTS, &reason("slow_consumer")) == 1.0
    })
    .await;
    assert_eq!(after.delta(&before, "hubgate_slow_consumer_disconnects_total", &[]), 1.0);
    assert_eq!(after.value(CONNECTIONS, &[("transport", "long_polling")]), 0.0);
    assert_eq!(after.value("hubgate_outbound_queue_bytes", &[]), 0.0, "its backlog is forgotten");
}

#[tokio::test]
async fn rest_requests_are_counted_by_route_template_and_status() {
    let gateway = TestGateway::start(patient_config()).await;
    let client = TestClient::connect(&gateway, HUB).await;
    let id = client.connection_id.clone().unwrap();
    let http = reqwest::Client::new();
    let before = scrape(gateway.addr).await;

    let send = gateway.http("/api/hubs/chat/:send?api-version=2022-06-01");
    let sent = http.post(send).json(&serde_json::json!({"target": "t", "arguments": []})).send().await.unwrap();
    let close = gateway.http(&format!("/api/hubs/chat/connections/{id}?api-version=2022-06-01"));
    let closed = http.delete(close).send().await.unwrap();
    let missing = http.get(gateway.http("/api/nothing/here?api-version=2022-06-01")).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    let after = until(&gateway, "the closed connection's disconnect", |now| {
        now.delta(&before, DISCONNECTS, &reason("server_closed")) == 1.0
    })
    .await;
    let count = |route: &str, status: u16| {
        after.delta(&before, "hubgate_rest_requests_total", &[("route", route), ("status", &status.to_string())])
    };
    assert_eq!(count("/api/hubs/{hub}/:send", sent.status().as_u16()), 1.0);
    assert_eq!(count("/api/hubs/{hub}/connections/{connectionId}", closed.status().as_u16()), 1.0);
    assert_eq!(count("unmatched", 404), 1.0);
    assert!(!after.text.contains(&id), "a connection id is never a label");
}

#[tokio::test]
async fn envelopes_that_cannot_be_read_are_refused_and_counted() {
    let bus = backplane::MemoryBus::new();
    let node = Config { node_id: Some("strict".into()), ..patient_config() };
    let gateway = TestGateway::start_on(node, Arc::new(bus.node()), |gateway| gateway.router()).await;
    let before = scrape(gateway.addr).await;
    let other = bus.node();
    let channel = backplane::channels::Channels::new(backplane::channels::DEFAULT_PREFIX).node("strict");
    for _ in 0..3 {
        backplane::Backplane::publish(&other, &channel, Bytes::from_static(b"not an envelope")).await.unwrap();
    }
    let after = until(&gateway, "three refused envelopes", |now| {
        now.delta(&before, "hubgate_backplane_refused_envelopes_total", &[]) >= 3.0
    })
    .await;
    assert_eq!(after.delta(&before, "hubgate_backplane_refused_envelopes_total", &[]), 3.0);
    assert_eq!(after.delta(&before, "hubgate_backplane_received_total", &[]), 3.0);
}

#[tokio::test]
async fn envelopes_dropped_by_a_full_inbound_queue_are_counted() {
    let bus = backplane::MemoryBus::new();
    let node = Config { node_id: Some("tight".into()), ..patient_config() };
    let backplane = Arc::new(bus.node_with_capacity(1));
    let gateway = TestGateway::start_on(node, backplane, |gateway| gateway.router()).await;
    let before = scrape(gateway.addr).await;
    let other = bus.node();
    let channel = backplane::channels::Channels::new(backplane::channels::DEFAULT_PREFIX).node("tight");
    for _ in 0..200 {
        backplane::Backplane::publish(&other, &channel, Bytes::from_static(b"not an envelope")).await.unwrap();
    }
    let after = until(&gateway, "drops and receipts", |now| {
        now.delta(&before, "hubgate_backplane_dropped_total", &[]) > 0.0
            && now.delta(&before, "hubgate_backplane_received_total", &[]) > 0.0
    })
    .await;
    let (dropped, received) = (
        after.delta(&before, "hubgate_backplane_dropped_total", &[]),
        after.delta(&before, "hubgate_backplane_received_total", &[]),
    );
    assert!(dropped + received <= 200.0, "{dropped} dropped + {received} received");
}

#[tokio::test]
async fn the_redis_backplane_reports_up_down_and_its_reconnects() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let config = backplane::RedisConfig { urls: vec![redis.url()], ..Default::default() };
    let backplane = Arc::new(backplane::RedisBackplane::connect(config).unwrap());
    let gateway = TestGateway::start_on(patient_config(), backplane, |gateway| gateway.router()).await;
    let within = Duration::from_secs(30);
    let up =
        scrape_until(gateway.addr, "the backplane up", within, |now| now.value("hubgate_backplane_up", &[]) == 1.0)
            .await;

    let mut client = TestClient::connect(&gateway, HUB).await;
    client.invoke_void("SendToAll", vec![s("over_redis"), s("x")]).await;
    client.expect_invocation("over_redis").await;
    let sent = until(&gateway, "the envelope back from Redis", |now| {
        now.delta(&up, "hubgate_backplane_received_total", &[]) >= 1.0
    })
    .await;
    assert!(sent.delta(&up, "hubgate_backplane_published_total", &[]) >= 1.0);
    assert!(sent.delta(&up, "hubgate_backplane_publish_duration_seconds_count", &[]) >= 1.0);

    redis.kill().await;
    scrape_until(gateway.addr, "the backplane down", within, |now| now.value("hubgate_backplane_up", &[]) == 0.0).await;
    let _redis = RedisServer::start_on(port).await;
    let back = scrape_until(gateway.addr, "the backplane back up", within, |now| {
        now.value("hubgate_backplane_up", &[]) == 1.0
    })
    .await;
    assert!(back.delta(&up, "hubgate_backplane_reconnects_total", &[]) >= 1.0, "{}", back.text);
}

#[tokio::test]
async fn the_admin_port_serves_metrics_and_health_and_the_main_port_can_leave_metrics_out() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-on-main-port", "false"])
        .args(["--log", "error"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the gateway binary");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let main = read_address(&mut lines, "listening on http://").await;
    let admin = read_address(&mut lines, "admin listening on http://").await;

    let scraped = scrape(admin).await;
    assert!(scraped.has("hubgate_connects_total", &[]));
    assert_eq!(reqwest::get(format!("http://{admin}/healthz")).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(format!("http://{admin}/readyz")).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(format!("http://{main}/metrics")).await.unwrap().status(), 404);
    assert_eq!(reqwest::get(format!("http://{main}/healthz")).await.unwrap().status(), 200);
    let _ = child.kill().await;
}

async fn read_address(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    prefix: &str,
) -> std::net::SocketAddr {
    let line = tokio::time::timeout(DEADLINE, lines.next_line()).await.expect("in time").unwrap().expect("a line");
    line.strip_prefix(prefix).unwrap_or_else(|| panic!("expected {prefix}…, got {line}")).parse().unwrap()
}
