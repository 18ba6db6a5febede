//! The HTTP surface of a hub: negotiate (versions, query keys, methods), the WebSocket
//! connect (unknown, reused, reaped and released tokens; skipNegotiation), the transports this
//! gateway does not offer, and the official status codes and texts for each of them.

mod common;

use common::Conversation;

use common::{negotiate, s, upgrade_status, TestClient, TestGateway, DEADLINE};
use gateway::connection::TransportKind;
use gateway::Config;
use reqwest::Method;

const HUB: &str = "/hubs/chat";

/// Status, content type and body of a plain HTTP request.
struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

async fn request(method: Method, url: &str, accept: Option<&str>) -> Reply {
    let mut builder = reqwest::Client::new().request(method, url);
    if let Some(accept) = accept {
        builder = builder.header("Accept", accept);
    }
    let response = tokio::time::timeout(DEADLINE, builder.send()).await.expect("reply in time").expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().expect("ASCII content type").to_owned())
        .unwrap_or_default();
    let body = response.text().await.expect("body");
    Reply { status, content_type, body }
}

/// Negotiates with version 1 and returns (connectionId, connectionToken).
async fn negotiate_token(gateway: &TestGateway) -> (String, String) {
    let body = negotiate(gateway, HUB, Some(1)).await;
    (body["connectionId"].as_str().expect("id").to_owned(), body["connectionToken"].as_str().expect("token").to_owned())
}

/// Opens a socket for `token` and completes the handshake.
async fn connect_with(gateway: &TestGateway, token: &str) -> TestClient {
    TestClient::handshaken(common::open_socket(&gateway.ws(&format!("{HUB}?id={token}"))).await).await
}

/// Polls the upgrade status for `url` until it is `expected`, within the deadline.
async fn eventually_upgrade_status(url: &str, expected: u16) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let status = upgrade_status(url, None).await;
        if status == expected {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "upgrade status still {status}, expected {expected}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn negotiate_v1_returns_an_id_a_separate_token_and_every_transport() {
    let gateway = TestGateway::start(Config::default()).await;
    let reply = request(Method::POST, &gateway.http(&format!("{HUB}/negotiate?negotiateVersion=1")), None).await;
    assert_eq!(reply.status, 200);
    assert!(reply.content_type.starts_with("application/json"), "content type {}", reply.content_type);
    let body: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON body");
    assert!(body["negotiateVersion"].is_u64(), "an integer version: {body}");
    assert_eq!(body["negotiateVersion"], 1);
    let id = body["connectionId"].as_str().expect("connectionId");
    let token = body["connectionToken"].as_str().expect("connectionToken");
    let (node, random) = id.split_once('.').expect("connection ids name their node: {id}");
    assert!(!node.is_empty() && random.len() == 22, "{id}");
    // The token names the node that issued it (it is valid only there), so a load balancer
    // can route by it; its secret part is as long as the id's random part and unrelated to it.
    let (token_node, secret) = token.split_once('.').expect("the token names its node: {token}");
    assert_eq!(token_node, node, "{token}");
    assert_eq!(secret.len(), 22, "{token}");
    assert_ne!(secret, random, "the token's secret is not the public id's random part");
    assert_eq!(
        body["availableTransports"],
        serde_json::json!([
            {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
            {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
            {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]},
        ])
    );
}

#[tokio::test]
async fn negotiate_without_a_version_is_v0_and_the_id_connects() {
    let gateway = TestGateway::start(Config::default()).await;
    let body = negotiate(&gateway, HUB, None).await;
    assert_eq!(body["negotiateVersion"], 0);
    assert!(body.get("connectionToken").is_none(), "v0 has no token: {body}");
    let id = body["connectionId"].as_str().expect("connectionId");
    let mut client = connect_with(&gateway, id).await;
    assert_eq!(client.invoke_value("GetConnectionId", vec![]).await, s(id));
}

#[tokio::test]
async fn negotiate_answers_higher_versions_with_1_and_refuses_non_integers_with_an_error_body() {
    let gateway = TestGateway::start(Config::default()).await;
    assert_eq!(negotiate(&gateway, HUB, Some(5)).await["negotiateVersion"], 1);

    let reply = request(Method::POST, &gateway.http(&format!("{HUB}/negotiate?negotiateVersion=abc")), None).await;
    assert_eq!(reply.status, 200, "the official server reports version errors in the body");
    let body: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON body");
    let object = body.as_object().expect("an object");
    assert_eq!(object.len(), 1, "only an error property: {body}");
    assert!(object["error"].is_string(), "{body}");
}

#[tokio::test]
async fn negotiate_query_keys_ignore_case() {
    let gateway = TestGateway::start(Config::default()).await;
    let reply = request(Method::POST, &gateway.http(&format!("{HUB}/negotiate?NegotiateVersion=1")), None).await;
    assert_eq!(reply.status, 200);
    let body: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON body");
    assert_eq!(body["negotiateVersion"], 1);
    assert!(body["connectionToken"].is_string(), "{body}");
}

#[tokio::test]
async fn negotiate_only_accepts_post() {
    let gateway = TestGateway::start(Config::default()).await;
    for method in [Method::GET, Method::PUT] {
        let reply = request(method.clone(), &gateway.http(&format!("{HUB}/negotiate?negotiateVersion=1")), None).await;
        assert_eq!(reply.status, 405, "{method}");
    }
}

#[tokio::test]
async fn hub_names_ignore_case() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut upper = TestClient::connect(&gateway, "/hubs/CHAT").await;
    let mut lower = TestClient::connect(&gateway, "/hubs/chat").await;
    upper.invoke_void("JoinGroup", vec![s("room")]).await;
    lower.invoke_void("SendToGroup", vec![s("room"), s("hello"), s("across cases")]).await;
    assert_eq!(upper.expect_invocation("hello").await.arguments, vec![s("across cases")]);
}

#[tokio::test]
async fn websocket_with_an_unknown_id_is_404() {
    let gateway = TestGateway::start(Config::default()).await;
    assert_eq!(upgrade_status(&gateway.ws(&format!("{HUB}?id=nosuchconnection")), None).await, 404);
}

#[tokio::test]
async fn a_second_websocket_for_a_connected_id_is_409() {
    let gateway = TestGateway::start(Config::default()).await;
    let (_, token) = negotiate_token(&gateway).await;
    let mut first = connect_with(&gateway, &token).await;
    assert_eq!(upgrade_status(&gateway.ws(&format!("{HUB}?id={token}")), None).await, 409);
    assert_eq!(first.invoke_value("Echo", vec![s("still here")]).await, s("still here"));
}

#[tokio::test]
async fn skip_negotiation_upgrades_without_an_id() {
    let gateway = TestGateway::start(Config::default()).await;
    assert_eq!(upgrade_status(&gateway.ws(HUB), None).await, 101);
    let mut client = TestClient::connect_direct(&gateway, HUB).await;
    assert_eq!(client.invoke_value("Echo", vec![s("direct")]).await, s("direct"));
}

#[tokio::test]
async fn a_negotiated_token_not_used_within_the_disconnect_timeout_is_forgotten() {
    let gateway = TestGateway::start(common::fast_config()).await;
    let (_, token) = negotiate_token(&gateway).await;
    // Probe with POST, which looks the token up without claiming it: a WebSocket probe that
    // came too early would claim the token, and closing that socket would release it.
    let probe = gateway.http(&format!("{HUB}?id={token}"));
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let reply = request(Method::POST, &probe, None).await;
        if reply.body.contains("No Connection with that ID") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "token never reaped: {} {}", reply.status, reply.body);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(upgrade_status(&gateway.ws(&format!("{HUB}?id={token}")), None).await, 404);
}

#[tokio::test]
async fn switched_off_transports_are_not_offered_and_their_requests_get_404() {
    let config = Config { transports: vec![TransportKind::WebSockets], ..Config::default() };
    let gateway = TestGateway::start(config).await;
    let body = negotiate(&gateway, HUB, Some(1)).await;
    assert_eq!(
        body["availableTransports"],
        serde_json::json!([{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}])
    );
    let token = body["connectionToken"].as_str().expect("token");
    let url = gateway.http(&format!("{HUB}?id={token}"));
    let sse = request(Method::GET, &url, Some("text/event-stream")).await;
    assert_eq!(
        (sse.status, sse.body.as_str()),
        (404, "ServerSentEvents transport not supported by this end point type")
    );
    let long_polling = request(Method::GET, &url, None).await;
    assert_eq!(
        (long_polling.status, long_polling.body.as_str()),
        (404, "LongPolling transport not supported by this end point type")
    );
    let mut client = connect_with(&gateway, token).await;
    assert_eq!(client.invoke_value("Echo", vec![s("still fine")]).await, s("still fine"));

    let no_websockets = Config { transports: vec![TransportKind::LongPolling], ..Config::default() };
    let gateway = TestGateway::start(no_websockets).await;
    let (_, token) = negotiate_token(&gateway).await;
    assert_eq!(upgrade_status(&gateway.ws(&format!("{HUB}?id={token}")), None).await, 404);
}

#[tokio::test]
async fn post_requires_an_id_of_a_known_non_websocket_connection() {
    let gateway = TestGateway::start(Config::default()).await;
    let missing = request(Method::POST, &gateway.http(HUB), None).await;
    assert_eq!((missing.status, missing.body.as_str()), (400, "Connection ID required"));
    assert!(missing.content_type.starts_with("text/plain"), "{}", missing.content_type);

    let unknown = request(Method::POST, &gateway.http(&format!("{HUB}?id=unknown")), None).await;
    assert_eq!((unknown.status, unknown.body.as_str()), (404, "No Connection with that ID"));

    let (_, token) = negotiate_token(&gateway).await;
    let _client = connect_with(&gateway, &token).await;
    let websocket = request(Method::POST, &gateway.http(&format!("{HUB}?id={token}")), None).await;
    assert_eq!(
        (websocket.status, websocket.body.as_str()),
        (405, "POST requests are not allowed for WebSocket connections.")
    );
}

#[tokio::test]
async fn delete_cannot_end_a_websocket_connection() {
    let gateway = TestGateway::start(Config::default()).await;
    let (_, token) = negotiate_token(&gateway).await;
    let mut client = connect_with(&gateway, &token).await;
    let reply = request(Method::DELETE, &gateway.http(&format!("{HUB}?id={token}")), None).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (400, "Cannot terminate this connection using the DELETE endpoint.")
    );
    assert_eq!(client.invoke_value("Echo", vec![s("alive")]).await, s("alive"), "the connection is untouched");
}

#[tokio::test]
async fn other_methods_on_the_hub_url_are_405() {
    let gateway = TestGateway::start(Config::default()).await;
    assert_eq!(request(Method::PATCH, &gateway.http(HUB), None).await.status, 405);
}

#[tokio::test]
async fn a_disconnected_clients_token_is_forgotten() {
    let gateway = TestGateway::start(Config::default()).await;
    let (_, token) = negotiate_token(&gateway).await;
    let mut client = connect_with(&gateway, &token).await;
    client.socket.close(None).await.expect("close the socket");
    // While the server still holds the connection it answers 409; once released, 404.
    eventually_upgrade_status(&gateway.ws(&format!("{HUB}?id={token}")), 404).await;
}
