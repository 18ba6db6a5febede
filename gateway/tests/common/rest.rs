//! A backend calling a node's REST API at `/api`, as Azure SignalR's data-plane clients do:
//! a bearer token signed with the access key whose `aud` is the request URL (without query),
//! and an `api-version` in the query.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::DEADLINE;

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
