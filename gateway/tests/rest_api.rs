//! The server REST API at `/api`, as a backend calls it: Azure SignalR data-plane paths and
//! bodies, access-key tokens bound to the request URL, delivery to WebSocket clients of the
//! relay hub on this node and on other nodes (memory bus and a real Redis).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use backplane::MemoryBus;
use common::processes::RedisServer;
use common::{s, Conversation, TestClient, TestGateway};
use gateway::Config;
use protocol::{CompletionOutcome, Value};
use reqwest::StatusCode;
use serde_json::json;

const KEY: &str = "primary-access-key";
const SECONDARY: &str = "secondary-access-key";
const CLIENT_SECRET: &str = "client-jwt-secret";
const VERSION: &str = "api-version=2022-06-01";

fn config() -> Config {
    Config {
        access_key: Some(KEY.into()),
        access_key_secondary: Some(SECONDARY.into()),
        jwt_secret: Some(CLIENT_SECRET.into()),
        allow_anonymous: true,
        ..Config::default()
    }
}

/// An access token for `url` (its query is not part of the audience), signed with `key`,
/// expiring `lifetime_seconds` from now (negative: already expired).
fn access_token(key: &str, url: &str, lifetime_seconds: i64) -> String {
    let audience = url.split('?').next().unwrap();
    let exp = jsonwebtoken::get_current_timestamp() as i64 + lifetime_seconds;
    let claims = json!({ "aud": audience, "exp": exp });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

/// A REST call to the node at `addr` with a valid token for its URL.
struct Rest {
    addr: SocketAddr,
    http: reqwest::Client,
}

impl Rest {
    fn to(addr: SocketAddr) -> Self {
        Self { addr, http: reqwest::Client::new() }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    async fn call(&self, method: reqwest::Method, path_and_query: &str, body: Option<String>) -> (StatusCode, String) {
        let url = self.url(path_and_query);
        let token = access_token(KEY, &url, 60);
        self.call_with(method, &url, Some(&token), body).await
    }

    async fn call_with(
        &self,
        method: reqwest::Method,
        url: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, String) {
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn post(&self, path_and_query: &str, body: serde_json::Value) -> (StatusCode, String) {
        self.call(reqwest::Method::POST, path_and_query, Some(body.to_string())).await
    }

    async fn send(&self, path: &str, target: &str, arguments: Vec<serde_json::Value>) {
        let (status, body) = self.post(&with_version(path), json!({ "target": target, "arguments": arguments })).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}: {body}");
    }
}

impl Rest {
    /// The status of `HEAD` on a connection of the `chat` hub.
    async fn connection_status(&self, id: &str) -> StatusCode {
        let path = with_version(&format!("/api/hubs/chat/connections/{id}"));
        self.call(reqwest::Method::HEAD, &path, None).await.0
    }

    async fn wait_for_connection_status(&self, id: &str, expected: StatusCode) {
        let deadline = tokio::time::Instant::now() + common::DEADLINE;
        while self.connection_status(id).await != expected {
            assert!(tokio::time::Instant::now() < deadline, "HEAD {id} never answered {expected}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

fn with_version(path: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}{VERSION}")
}

async fn client(at: SocketAddr, token: Option<&str>) -> (TestClient, String) {
    let client = TestClient::connect_at(at, "/hubs/chat", token).await;
    let id = client.connection_id.clone().unwrap();
    (client, id)
}

async fn expect_arguments(client: &mut TestClient, target: &str) -> Vec<Value> {
    client.expect_invocation(target).await.arguments
}

#[tokio::test]
async fn health_answers_200_to_head() {
    let gateway = TestGateway::start(config()).await;
    let rest = Rest::to(gateway.addr);
    let (status, _) = rest.call(reqwest::Method::HEAD, &with_version("/api/health"), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_broadcast_reaches_every_client_of_the_hub_but_the_excluded() {
    let gateway = TestGateway::start(config()).await;
    let rest = Rest::to(gateway.addr);
    let (mut a, _) = client(gateway.addr, None).await;
    let (mut b, b_id) = client(gateway.addr, None).await;
    rest.send(&format!("/api/hubs/chat/:send?excluded={b_id}"), "news", vec![json!("hello"), json!(7)]).await;
    assert_eq!(expect_arguments(&mut a, "news").await, vec![s("hello"), Value::from(7)]);
    rest.send("/api/hubs/chat/:send", "last", vec![]).await;
    b.expect_invocation("last").await;
    assert!(b.take_pending().is_none(), "the excluded connection got the broadcast");
}

#[tokio::test]
async fn refused_tokens_get_401_and_deliver_nothing() {
    let gateway = TestGateway::start(config()).await;
    let rest = Rest::to(gateway.addr);
    let (mut a, _) = client(gateway.addr, None).await;
    let url = rest.url(&with_version("/api/hubs/chat/:send"));
    let body = Some(json!({ "target": "secret", "arguments": [] }).to_string());
    let other_url = rest.url("/api/hubs/other/:send");
    let refused = [
        None,
        Some(access_token("wrong-key", &url, 60)),
        Some(access_token(KEY, &url, -60)),
        Some(access_token(KEY, &other_url, 60)),
        Some("not-a-jwt".to_owned()),
    ];
    for token in refused {
        let (status, text) = rest.call_with(reqwest::Method::POST, &url, token.as_deref(), body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        let error: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["code"], "Error.Request.Unauthorized");
    }
    rest.send("/api/hubs/chat/:send", "after", vec![]).await;
    a.expect_invocation("after").await;
    assert!(a.take_pending().is_none(), "a refused request delivered something");
}

#[tokio::test]
async fn the_secondary_key_is_accepted_for_rotation() {
    let gateway = TestGateway::start(config()).await;
    let rest = Rest::to(gateway.addr);
    let (mut a, _) = client(gateway.addr, None).await;
    let url = rest.url(&with_version("/api/hubs/chat/:send"));
    let token = access_token(SECONDARY, &url, 60);
    let body = Some(json!({ "target": "rotated" }).to_string());
    let (status, text) = rest.call_with(reqwest::Method::POST, &url, Some(&token), body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    a.expect_invocation("rotated").await;
}

#[tokio::test]
async fn without_an_access_key_the_api_is_closed_unless_explicitly_opened() {
    let closed = TestGateway::start(Config::default()).await;
    let rest = Rest::to(closed.addr);
    let (status, _) = rest.post(&with_version("/api/hubs/chat/:send"), json!({ "target": "t" })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let open = TestGateway::start(Config { rest_api_open: true, ..Config::default() }).await;
    let (mut a, _) = client(open.addr, None).await;
    let url = format!("http://{}/api/hubs/chat/:send?{VERSION}", open.addr);
    let body = Some(json!({ "target": "open" }).to_string());
    let (status, _) = Rest::to(open.addr).call_with(reqwest::Method::POST, &url, None, body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    a.expect_invocation("open").await;
}

#[tokio::test]
async fn group_user_and_connection_sends_reach_exactly_their_audience() {
    let gateway = TestGateway::start(config()).await;
    let rest = Rest::to(gateway.addr);
    let alice_token = common::client_token(CLIENT_SECRET, "alice");
    let (mut alice, alice_id) = client(gateway.addr, Some(&alice_token)).await;
    let (mut other, other_id) = client(gateway.addr, None).await;

    let membership = |id: &str| with_version(&format!("/api/hubs/chat/groups/room/connections/{id}"));
    for id in [&alice_id, &other_id] {
        let (status, body) = rest.call(reqwest::Method::PUT, &membership(id), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    rest.send(&format!("/api/hubs/chat/groups/room/:send?excluded={alice_id}"), "to_room", vec![json!(1)]).await;
    other.expect_invocation("to_room").await;
    rest.send("/api/hubs/chat/users/alice/:send", "to_alice", vec![]).await;
    rest.send(&format!("/api/hubs/chat/connections/{other_id}/:send"), "to_other", vec![]).await;
    alice.expect_invocation("to_alice").await;
    other.expect_invocation("to_other").await;

    let (status, _) = rest.call(reqwest::Method::DELETE, &membership(&other_id), None).await;
    assert_eq!(status, StatusCode::OK);
    rest.send("/api/hubs/chat/groups/room/:send", "room_again", vec![]).await;
    alice.expect_invocation("room_again").await;
    rest.send("/api/hubs/chat/:send", "barrier", vec![]).await;
    other.expect_invocation("barrier").await;
    assert!(other.take_pending().is_none(), "a removed member or a non-user got a message");
    alice.expect_invocation("barrier").await;
    assert!(alice.take_pending().is_none(), "the excluded member got the group send");
}

#[tokio::test]
async fn group_changes_for_unknown_connections_are_404() {
    let gateway = TestGateway::start(config()).await;
    let rest = Rest::to(gateway.addr);
    let unknown = format!("{}.nosuchconnection", gateway.gateway.node_id());
    let path = with_version(&format!("/api/hubs/chat/groups/room/connections/{unknown}"));
    let (status, body) = rest.call(reqwest::Method::PUT, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["code"], "Error.Connection.NotExisted");
}

#[tokio::test]
async fn closing_a_connection_sends_it_a_close_with_the_reason() {
    let gateway = TestGateway::start(config()).await;
    let rest = Rest::to(gateway.addr);
    let (mut a, a_id) = client(gateway.addr, None).await;
    let path = with_version(&format!("/api/hubs/chat/connections/{a_id}?reason=maintenance"));
    let (status, body) = rest.call(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let close = a.expect_close().await;
    assert_eq!(close.error.as_deref(), Some("maintenance"));
    assert!(!close.allow_reconnect);
}

#[tokio::test]
async fn closing_the_hub_closes_every_connection_but_the_excluded_and_other_hubs() {
    let gateway = TestGateway::start(config()).await;
    let rest = Rest::to(gateway.addr);
    let alice_token = common::client_token(CLIENT_SECRET, "alice");
    let (mut alice, _) = client(gateway.addr, Some(&alice_token)).await;
    let (mut anonymous, _) = client(gateway.addr, None).await;
    let (mut spared, spared_id) = client(gateway.addr, None).await;
    let (mut also_spared, also_spared_id) = client(gateway.addr, None).await;
    let mut other_hub = TestClient::connect_at(gateway.addr, "/hubs/other", None).await;

    let path = with_version(&format!(
        "/api/hubs/chat/:closeConnections?excluded={spared_id}&excluded={also_spared_id}&reason=maintenance"
    ));
    let (status, body) = rest.call(reqwest::Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for closed in [&mut alice, &mut anonymous] {
        let close = closed.expect_close().await;
        assert_eq!(close.error.as_deref(), Some("maintenance"));
        assert!(!close.allow_reconnect, "a connection closed by the server API must not reconnect");
        assert!(closed.closed().await.is_none(), "nothing but the end of the socket follows the Close");
    }

    rest.send("/api/hubs/chat/:send", "still_open", vec![]).await;
    spared.expect_invocation("still_open").await;
    also_spared.expect_invocation("still_open").await;
    rest.send("/api/hubs/other/:send", "other_still_open", vec![]).await;
    other_hub.expect_invocation("other_still_open").await;
    rest.wait_for_head("/users/alice", StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn head_on_a_connection_tells_whether_it_exists() {
    let gateway = TestGateway::start(config()).await;
    let rest = Rest::to(gateway.addr);
    let (_a, a_id) = client(gateway.addr, None).await;
    assert_eq!(rest.connection_status(&a_id).await, StatusCode::OK);
    let absent_here = format!("{}.nosuchconnection", gateway.gateway.node_id());
    assert_eq!(rest.connection_status(&absent_here).await, StatusCode::NOT_FOUND);
    assert_eq!(rest.connection_status("gone-node.nosuchconnection").await, StatusCode::NOT_FOUND);
    assert_eq!(rest.connection_status("no-node-in-this-id").await, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invoke_returns_the_clients_result() {
    let gateway = TestGateway::start(config()).await;
    let (mut a, a_id) = client(gateway.addr, None).await;
    let path = with_version(&format!("/api/hubs/chat/connections/{a_id}/:invoke"));
    let rest = Rest::to(gateway.addr);
    let call = tokio::spawn(async move { rest.post(&path, json!({ "target": "Ask", "arguments": [2] })).await });
    let invocation = a.expect_invocation("Ask").await;
    assert_eq!(invocation.arguments, vec![Value::from(2)]);
    a.answer(&invocation, CompletionOutcome::Value(s("forty-two"))).await;
    let (status, body) = call.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap(), json!({ "result": "forty-two" }));
}

#[tokio::test]
async fn a_generated_token_identifies_the_client_as_the_user() {
    let gateway = TestGateway::start(Config { allow_anonymous: false, ..config() }).await;
    let rest = Rest::to(gateway.addr);
    let (status, body) =
        rest.post(&with_version("/api/hubs/chat/:generateToken?userId=carol&minutesToExpire=5"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"].as_str().unwrap().to_owned();
    let (mut carol, _) = client(gateway.addr, Some(&token)).await;
    rest.send("/api/hubs/chat/users/carol/:send", "for_carol", vec![json!("hi")]).await;
    assert_eq!(expect_arguments(&mut carol, "for_carol").await, vec![s("hi")]);
}

#[tokio::test]
async fn generate_token_without_a_client_secret_is_an_error() {
    let gateway = TestGateway::start(Config { jwt_secret: None, ..config() }).await;
    let (status, body) =
        Rest::to(gateway.addr).post(&with_version("/api/hubs/chat/:generateToken?userId=x"), json!({})).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["code"], "Error.Request.NoClientTokenKey");
}

#[tokio::test]
async fn malformed_requests_are_400_with_an_azure_shaped_error() {
    let gateway = TestGateway::start(config()).await;
    let rest = Rest::to(gateway.addr);
    let send = with_version("/api/hubs/chat/:send");
    for (path, body) in [
        (send.as_str(), "{not json".to_owned()),
        (send.as_str(), json!({ "arguments": [1] }).to_string()),
        (send.as_str(), json!({ "target": "" }).to_string()),
        (&*with_version("/api/hubs/1bad/:send"), json!({ "target": "t" }).to_string()),
        (&*with_version("/api/hubs/bad-name/:send"), json!({ "target": "t" }).to_string()),
        // A path segment that does not decode to UTF-8 (found by the rest_router fuzz target:
        // axum's own rejection answered it in plain text).
        (&*with_version("/api/hubs/chat/groups/%FF/:send"), json!({ "target": "t" }).to_string()),
    ] {
        let (status, text) = rest.call(reqwest::Method::POST, path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {text}");
        let error: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["level"], "Error");
        assert!(error["code"].as_str().unwrap().starts_with("Error.Request."), "{text}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let gateway = TestGateway::start(Config { rest_max_body: 1024, ..config() }).await;
    let big = "x".repeat(2048);
    let (status, text) = Rest::to(gateway.addr)
        .post(&with_version("/api/hubs/chat/:send"), json!({ "target": "t", "arguments": [big] }))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap()["code"], "Error.Request.PayloadTooLarge");
}

#[tokio::test]
async fn api_version_is_required_and_must_be_known() {
    let gateway = TestGateway::start(config()).await;
    let rest = Rest::to(gateway.addr);
    let body = json!({ "target": "t" });
    let (missing, text) = rest.post("/api/hubs/chat/:send", body.clone()).await;
    assert_eq!(missing, StatusCode::BAD_REQUEST);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap()["code"], "ApiVersionUnspecified");
    let (unknown, text) = rest.post("/api/hubs/chat/:send?api-version=1999-01-01", body.clone()).await;
    assert_eq!(unknown, StatusCode::BAD_REQUEST);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap()["code"], "UnsupportedApiVersion");
    let (latest, _) = rest.post("/api/hubs/chat/:send?api-version=2024-12-01", body).await;
    assert_eq!(latest, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn an_unknown_operation_is_404() {
    let gateway = TestGateway::start(config()).await;
    let (status, _) = Rest::to(gateway.addr).post(&with_version("/api/hubs/chat/:explode"), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Checks every kind of REST delivery from `api` (a node with no clients of the hub) to
/// clients on `clients_at`.
async fn rest_calls_reach_clients_on_another_node(api: SocketAddr, clients_at: SocketAddr) {
    let rest = Rest::to(api);
    let dave_token = common::client_token(CLIENT_SECRET, "dave");
    let (mut dave, dave_id) = client(clients_at, Some(&dave_token)).await;
    let (mut other, other_id) = client(clients_at, None).await;

    rest.send(&format!("/api/hubs/chat/:send?excluded={other_id}"), "all", vec![json!(1)]).await;
    dave.expect_invocation("all").await;
    rest.send("/api/hubs/chat/users/dave/:send", "user", vec![]).await;
    dave.expect_invocation("user").await;
    rest.send(&format!("/api/hubs/chat/connections/{other_id}/:send"), "one", vec![]).await;
    other.expect_invocation("one").await;

    let membership = with_version(&format!("/api/hubs/chat/groups/team/connections/{dave_id}"));
    let (status, body) = rest.call(reqwest::Method::PUT, &membership, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    rest.send("/api/hubs/chat/groups/team/:send", "group", vec![]).await;
    dave.expect_invocation("group").await;

    let invoke = with_version(&format!("/api/hubs/chat/connections/{other_id}/:invoke"));
    let call = tokio::spawn(async move { Rest::to(api).post(&invoke, json!({ "target": "Ask" })).await });
    let question = other.expect_invocation("Ask").await;
    other.answer(&question, CompletionOutcome::Value(Value::from(5))).await;
    let (status, body) = call.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"result":5}"#));

    assert_eq!(rest.connection_status(&dave_id).await, StatusCode::OK);
    let close = with_version(&format!("/api/hubs/chat/connections/{dave_id}?reason=bye"));
    let (status, _) = rest.call(reqwest::Method::DELETE, &close, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dave.expect_close().await.error.as_deref(), Some("bye"));
    rest.wait_for_connection_status(&dave_id, StatusCode::NOT_FOUND).await;

    rest.send("/api/hubs/chat/:send", "barrier", vec![]).await;
    other.expect_invocation("barrier").await;
    assert!(other.take_pending().is_none(), "the excluded connection got the broadcast");
}

#[tokio::test]
async fn rest_calls_on_one_node_reach_clients_on_another_over_the_memory_bus() {
    let bus = MemoryBus::new();
    let api = TestGateway::start_on(config(), Arc::new(bus.node()), |g| g.router()).await;
    let clients = TestGateway::start_on(config(), Arc::new(bus.node()), |g| g.router()).await;
    rest_calls_reach_clients_on_another_node(api.addr, clients.addr).await;
    assert!(api.gateway.hub("chat").is_none(), "the REST API registered a hub on a node without its clients");
}

#[tokio::test]
async fn rest_calls_on_one_node_reach_clients_on_another_over_redis() {
    let redis = RedisServer::start().await;
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let settings = backplane::RedisConfig { urls: vec![redis.url()], ..Default::default() };
        let backplane = Arc::new(backplane::RedisBackplane::connect(settings).unwrap());
        let node = TestGateway::start_on(config(), backplane, |g| g.router()).await;
        common::eventually("the node to be ready", || node.gateway.readiness().is_ok()).await;
        nodes.push(node);
    }
    rest_calls_reach_clients_on_another_node(nodes[0].addr, nodes[1].addr).await;
}

impl Rest {
    /// The status of `HEAD` on `path` (a path under `/api/hubs/chat`).
    async fn head_status(&self, path: &str) -> StatusCode {
        self.call(reqwest::Method::HEAD, &with_version(&format!("/api/hubs/chat{path}")), None).await.0
    }

    async fn wait_for_head(&self, path: &str, expected: StatusCode) {
        let deadline = tokio::time::Instant::now() + common::DEADLINE;
        while self.head_status(path).await != expected {
            assert!(tokio::time::Instant::now() < deadline, "HEAD {path} never answered {expected}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The connection ids `GET …/groups/{group}/connections` lists.
    async fn group_connection_ids(&self, group: &str) -> Vec<String> {
        let path = with_version(&format!("/api/hubs/chat/groups/{group}/connections"));
        let (status, body) = self.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
        let value = listed["value"].as_array().unwrap();
        value.iter().map(|entry| entry["connectionId"].as_str().unwrap().to_owned()).collect()
    }
}

/// A user's client joins a group on the `clients` node; the REST API of the `api` node sees the user, the
/// group and the membership, then sees them go when the client leaves.
async fn presence_is_answered_by_the_rest_api(api: &TestGateway, clients: &TestGateway) {
    let rest = Rest::to(api.addr);
    let token_url = with_version("/api/hubs/chat/:generateToken?userId=dave");
    let (status, body) = rest.post(&token_url, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"].as_str().unwrap().to_owned();
    let (mut dave, dave_id) = client(clients.addr, Some(&token)).await;
    dave.invoke_void("JoinGroup", vec![s("room-1")]).await;

    rest.wait_for_head("/users/dave", StatusCode::OK).await;
    rest.wait_for_head("/groups/room-1", StatusCode::OK).await;
    rest.wait_for_head("/users/dave/groups/room-1", StatusCode::OK).await;
    assert_eq!(rest.group_connection_ids("room-1").await, vec![dave_id]);
    assert_eq!(rest.head_status("/users/nobody").await, StatusCode::NOT_FOUND);
    assert_eq!(rest.head_status("/groups/empty-room").await, StatusCode::NOT_FOUND);
    assert_eq!(rest.head_status("/users/dave/groups/empty-room").await, StatusCode::NOT_FOUND);
    assert!(rest.group_connection_ids("empty-room").await.is_empty());

    dave.invoke_void("LeaveGroup", vec![s("room-1")]).await;
    rest.wait_for_head("/groups/room-1", StatusCode::NOT_FOUND).await;
    rest.wait_for_head("/users/dave/groups/room-1", StatusCode::NOT_FOUND).await;
    drop(dave);
    rest.wait_for_head("/users/dave", StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn users_and_groups_are_answered_from_presence_on_a_single_node() {
    let gateway = TestGateway::start(config()).await;
    presence_is_answered_by_the_rest_api(&gateway, &gateway).await;
}

#[tokio::test]
async fn users_and_groups_on_one_node_are_answered_by_another_over_redis() {
    let redis = RedisServer::start().await;
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let settings = backplane::RedisConfig { urls: vec![redis.url()], ..Default::default() };
        let backplane = Arc::new(backplane::RedisBackplane::connect(settings.clone()).unwrap());
        let presence = Arc::new(backplane::RedisPresence::connect(&settings, &config().channel_prefix).unwrap());
        let node = TestGateway::start_with_presence(config(), backplane, presence, |g| g.router()).await;
        common::eventually("the node to be ready", || node.gateway.readiness().is_ok()).await;
        nodes.push(node);
    }
    presence_is_answered_by_the_rest_api(&nodes[0], &nodes[1]).await;
}
