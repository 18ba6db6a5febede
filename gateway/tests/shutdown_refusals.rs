//! A node that is shutting down admits no new connection: from the moment of SIGTERM,
//! negotiate and every request that would start a connection (a WebSocket upgrade, the first
//! event-stream GET, the first poll, a POST for a connection that has not started) answer 503,
//! so clients reconnect to another node instead of being accepted and closed again at once.
//! Requests of connections that already run go on until those connections end, and a
//! long-polling client still fetches its Close.

mod common;

use common::http::{negotiated, HttpClient};
use common::processes::GatewayProcess;
use common::{s, upgrade_status, Conversation, Serves, TestClient};
use protocol::{Close, HandshakeRequest, Protocol};

const HUB: &str = "/hubs/refusals";

fn args(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}

/// Connections negotiated before the shutdown whose transports have not started.
struct Unstarted {
    polling: HttpClient,
    events: HttpClient,
    posting: HttpClient,
    websocket_token: String,
}

impl Unstarted {
    async fn negotiate(node: &GatewayProcess) -> Self {
        let client = |(id, token): (String, String)| HttpClient::new_for_tests(node, HUB, id, token);
        Self {
            polling: client(negotiated(node, HUB).await),
            events: client(negotiated(node, HUB).await),
            posting: client(negotiated(node, HUB).await),
            websocket_token: negotiated(node, HUB).await.1,
        }
    }
}

async fn status_and_text(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Asserts that every way of starting a connection is refused with 503.
async fn assert_new_connections_refused(node: &GatewayProcess, unstarted: &Unstarted, when: &str) {
    let negotiate = reqwest::Client::new().post(node.http(&format!("{HUB}/negotiate?negotiateVersion=1"))).send();
    let (status, body) = status_and_text(negotiate.await.expect("negotiate request")).await;
    assert_eq!(status, 503, "{when}: negotiate is refused");
    assert!(!body.contains("connectionToken"), "{when}: no connection is handed out: {body}");

    let ws = format!("ws://{}{HUB}", node.addr);
    assert_eq!(upgrade_status(&ws, None).await, 503, "{when}: a WebSocket that skips negotiate");
    let with_token = format!("{ws}?id={}", unstarted.websocket_token);
    assert_eq!(upgrade_status(&with_token, None).await, 503, "{when}: a WebSocket for a negotiated token");

    let first_poll = status_and_text(unstarted.polling.poll().await).await;
    assert_eq!(first_poll.0, 503, "{when}: the first poll of a negotiated connection: {first_poll:?}");
    let first_stream = status_and_text(unstarted.events.event_stream_request().await).await;
    assert_eq!(first_stream.0, 503, "{when}: the first event-stream GET: {first_stream:?}");
    let handshake = HandshakeRequest { protocol: "json".into(), version: 1 }.encode();
    let (status, body) = unstarted.posting.post(handshake).await;
    assert_eq!(status.as_u16(), 503, "{when}: a POST for a connection that has not started: {body}");
}

#[tokio::test]
async fn a_shutting_down_node_refuses_new_connections_and_still_serves_the_ones_it_has() {
    let mut node =
        GatewayProcess::start(&args(&["--drain-delay", "3s", "--poll-timeout", "1s", "--shutdown-timeout", "10s"]))
            .await;
    // A long-polling client that is between polls when the signal comes.
    let mut polling = HttpClient::long_polling(&node, HUB, Protocol::Json).await;
    // Its step-3 Close tells the test when the node has closed its connections.
    let mut websocket = TestClient::connect_at(node.addr, HUB, None).await;
    let during_delay = Unstarted::negotiate(&node).await;
    let after_close = Unstarted::negotiate(&node).await;

    node.terminate();
    node.wait_ready(503).await;

    // During the drain delay the connections that run are served as before...
    assert_eq!(polling.invoke_value("Echo", vec![s("still here")]).await, s("still here"), "a live connection");
    // ...while nothing new is admitted.
    assert_new_connections_refused(&node, &during_delay, "during the drain delay").await;

    let reconnectable = Close { error: None, allow_reconnect: true };
    assert_eq!(websocket.expect_close().await, reconnectable, "the node closes its connections");
    // The long-polling client has not fetched its Close, so the node still answers requests.
    assert_new_connections_refused(&node, &after_close, "after the connections were closed").await;

    assert_eq!(polling.expect_close().await, reconnectable, "the waiting client still gets its Close");
    assert!(node.exit_status(common::DEADLINE).await.success(), "exit status 0");
}
