//! A backend calling a node's REST API at `/api`, as Azure SignalR's data-plane clients do:
//! a bearer token signed with the access key whose `aud` is the request URL (without query),
//! and an `api-version` in the query.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use protocol::HubMessage;

use super::cluster::{token, SECRET};
use super::processes::{GatewayProcess, RedisServer};
use super::{Conversation, TestClient, DEADLINE};

/// The `api-version` every call made with [`RestClient::call`] carries.
pub const VERSION: &str = "api-version=2022-06-01";

/// An access token for `url` (its query is not part of the audience), signed with `key`,
/// expiring `lifetime_seconds` from now (negative: already expired).
pub fn access_token(key: &str, url: &str, lifetime_seconds: i64) -> String {
    let audience = url.split('?').next().expect("split yields at least one part");
    let exp = jsonwebtoken::get_current_timestamp() as i64 + lifetime_seconds;
    let claims = json!({ "aud": audience, "exp": exp });
    let key = jsonwebtoken::EncodingKey::from_secret(key.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("sign the access token")
}

/// `path` with the `api-version` parameter appended.
pub fn with_version(path: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}{VERSION}")
}

/// The `code` of an Azure-shaped error body (`{"code","level":"Error","message"}`); panics
/// unless the body has that shape.
pub fn error_code(body: &str) -> String {
    let error: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("the error body is not JSON ({e}): {body:?}"));
    assert_eq!(error["level"], "Error", "{body}");
    let message = error["message"].as_str().unwrap_or_else(|| panic!("no message: {body}"));
    assert!(!message.is_empty(), "an empty message: {body}");
    error["code"].as_str().unwrap_or_else(|| panic!("no code: {body}")).to_owned()
}

/// Calls the REST API of the node at `addr`, signing with `key`.
#[derive(Clone)]
pub struct RestClient {
    pub addr: SocketAddr,
    key: String,
    http: reqwest::Client,
}

impl RestClient {
    pub fn new(addr: SocketAddr, key: &str) -> Self {
        Self { addr, key: key.to_owned(), http: reqwest::Client::new() }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// `method` on `path` with `api-version` added and a valid token: (status, body text).
    pub async fn call(&self, method: Method, path: &str, body: Option<String>) -> (StatusCode, String) {
        let url = self.url(&with_version(path));
        let token = access_token(&self.key, &url, 60);
        self.call_with(method, &url, Some(&token), body).await
    }

    /// `method` on the full `url` exactly as given, with `token` if any.
    pub async fn call_with(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, String) {
        let mut request = self.http.request(method.clone(), url).timeout(DEADLINE);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status();
        (status, response.text().await.unwrap_or_else(|e| panic!("{method} {url}: body: {e}")))
    }

    /// POSTs `body` (JSON) to `path`.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (StatusCode, String) {
        self.call(Method::POST, path, Some(body.to_string())).await
    }

    /// POSTs a payload message to a `:send` path and asserts it was accepted (202).
    pub async fn send(&self, path: &str, target: &str, arguments: Vec<serde_json::Value>) {
        let (status, body) = self.post(path, json!({ "target": target, "arguments": arguments })).await;
        assert_eq!(status, StatusCode::ACCEPTED, "POST {path} on {}: {body}", self.addr);
    }

    /// The status `HEAD path` answers.
    pub async fn head(&self, path: &str) -> StatusCode {
        self.call(Method::HEAD, path, None).await.0
    }

    /// Polls `HEAD path` until it answers `expected`; fails after `within`.
    pub async fn wait_for_head(&self, path: &str, expected: StatusCode, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let status = self.head(path).await;
            if status == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "HEAD {path} on {} still answers {status}, not {expected}, after {within:?}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The connection ids `GET path` lists (`{"value": [{"connectionId": …}]}`), sorted.
    pub async fn listed_connections(&self, path: &str) -> Vec<String> {
        let (status, body) = self.call(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        let listed: serde_json::Value = serde_json::from_str(&body).expect("a JSON listing");
        let entries = listed["value"].as_array().unwrap_or_else(|| panic!("no value array: {body}"));
        let mut ids: Vec<String> = entries
            .iter()
            .map(|entry| entry["connectionId"].as_str().unwrap_or_else(|| panic!("no connectionId: {body}")).to_owned())
            .collect();
        ids.sort();
        ids
    }
}

/// The access key of every [`RestCluster`] node.
pub const KEY: &str = "cluster-access-key";
/// The relay hub every [`RestCluster`] client joins unless told otherwise.
pub const HUB_PATH: &str = "/hubs/chat";
/// `--rest-max-body` of every [`RestCluster`] node, small so a 413 is cheap to provoke.
pub const MAX_BODY: usize = 2048;
/// How long presence changes (written asynchronously to Redis) may take to be visible.
pub const PRESENCE_DEADLINE: Duration = DEADLINE;

/// One `redis-server` and three gateway processes on it, with an access key for the REST API
/// and a client JWT secret to identify users.
pub struct RestCluster {
    pub nodes: Vec<GatewayProcess>,
    _redis: RedisServer,
}

impl RestCluster {
    pub async fn start() -> Self {
        let redis = RedisServer::start().await;
        let args: Vec<String> = [
            "--backplane",
            "redis",
            "--redis-url",
            &redis.url(),
            "--access-key",
            KEY,
            "--jwt-secret",
            SECRET,
            "--allow-anonymous",
            "--rest-max-body",
            &MAX_BODY.to_string(),
            // Short presence timing, so a killed node stops counting within seconds.
            "--presence-heartbeat-interval",
            "1s",
            "--presence-node-ttl",
            "3s",
        ]
        .map(str::to_owned)
        .to_vec();
        let (a, b, c) =
            tokio::join!(GatewayProcess::start(&args), GatewayProcess::start(&args), GatewayProcess::start(&args));
        tokio::join!(a.wait_ready(200), b.wait_ready(200), c.wait_ready(200));
        Self { nodes: vec![a, b, c], _redis: redis }
    }

    /// A REST caller of node `index`.
    pub fn rest(&self, index: usize) -> RestClient {
        RestClient::new(self.nodes[index].addr, KEY)
    }

    /// A WebSocket client of the `chat` hub on node `index`, as `user` when given; with its id.
    pub async fn client(&self, index: usize, user: Option<&str>) -> (TestClient, String) {
        self.client_of(HUB_PATH, index, user).await
    }

    /// A WebSocket client of the hub at `hub_path` on node `index`, as `user` when given.
    pub async fn client_of(&self, hub_path: &str, index: usize, user: Option<&str>) -> (TestClient, String) {
        let token = user.map(token);
        let client = TestClient::connect_at(self.nodes[index].addr, hub_path, token.as_deref()).await;
        let id = client.connection_id.clone().expect("negotiate names the connection");
        (client, id)
    }
}

/// The node part of a connection id (`{node}.{local}`).
pub fn node_of(connection_id: &str) -> &str {
    connection_id.split('.').next().expect("split yields at least one part")
}

/// Waits for the invocation of `marker`, then asserts that no invocation of any of `absent`
/// came before it. Both were sent through the same node to the same client afterwards, so a
/// wrongly delivered message would have arrived first.
pub async fn expect_marker_without(client: &mut TestClient, marker: &str, absent: &[&str]) {
    client.expect_invocation(marker).await;
    let received: Vec<String> = client
        .pending()
        .iter()
        .filter_map(|m| match m {
            HubMessage::Invocation(i) => Some(i.target.clone()),
            _ => None,
        })
        .collect();
    for target in absent {
        assert!(
            !received.iter().any(|t| t == target),
            "{target} was delivered; received before {marker}: {received:?}"
        );
    }
}

/// Asserts that `method path` with `body` is refused with `expected` and Azure's error `code`.
pub async fn expect_refusal(
    rest: &RestClient,
    method: Method,
    path: &str,
    body: &str,
    expected: StatusCode,
    code: &str,
) {
    let (status, text) = rest.call(method.clone(), path, Some(body.to_owned())).await;
    assert_eq!(status, expected, "{method} {path} {body:.80}: {text}");
    assert_eq!(error_code(&text), code, "{method} {path} {body:.80}");
}
