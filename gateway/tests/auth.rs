//! Client identity from JWT bearer tokens: who may negotiate and connect (no key, a key, a key
//! with anonymous access), how refusals look (an empty 401), where a token may travel (the
//! `Authorization` header or the `access_token` query), and that the configured claim names
//! the user that `SendToUser` reaches.

mod common;

use common::Conversation;

use common::{s, upgrade_status, TestClient, TestGateway, DEADLINE};
use gateway::Config;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const HUB: &str = "/hubs/chat";
const SECRET: &str = "test-secret";

fn secured(allow_anonymous: bool) -> Config {
    Config { jwt_secret: Some(SECRET.into()), allow_anonymous, ..Config::default() }
}

/// An HS256 token signed with `secret`.
fn sign(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("sign a token")
}

fn in_an_hour() -> u64 {
    jsonwebtoken::get_current_timestamp() + 3600
}

/// A valid token for user `sub`.
fn token_for(sub: &str) -> String {
    sign(SECRET, json!({"sub": sub, "exp": in_an_hour()}))
}

/// POSTs negotiate (version 1), with the token as a bearer header if given.
async fn negotiate_with(gateway: &TestGateway, bearer: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(gateway.http(&format!("{HUB}/negotiate?negotiateVersion=1")));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    tokio::time::timeout(DEADLINE, request.send()).await.expect("reply in time").expect("negotiate request")
}

/// Negotiates with a bearer header and connects with the token in the query, as browsers do.
async fn connect_as(gateway: &TestGateway, token: &str) -> TestClient {
    let response = negotiate_with(gateway, Some(token)).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("negotiate JSON");
    let connection_token = body["connectionToken"].as_str().expect("token");
    let url = gateway.ws(&format!("{HUB}?id={connection_token}&access_token={token}"));
    let mut client = TestClient::handshaken(common::open_socket(&url).await).await;
    client.connection_id = body["connectionId"].as_str().map(str::to_owned);
    client
}

#[tokio::test]
async fn without_a_key_no_token_is_needed() {
    let gateway = TestGateway::start(Config::default()).await;
    assert_eq!(negotiate_with(&gateway, None).await.status(), 200);
    let mut client = TestClient::connect(&gateway, HUB).await;
    assert_eq!(client.invoke_value("Echo", vec![s("anonymous")]).await, s("anonymous"));
}

#[tokio::test]
async fn with_a_key_negotiate_without_a_token_is_401_with_an_empty_body() {
    let gateway = TestGateway::start(secured(false)).await;
    let response = negotiate_with(&gateway, None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.text().await.expect("body"), "", "clients show a non-empty body as the error");
}

#[tokio::test]
async fn with_a_key_a_websocket_without_a_token_is_401() {
    let gateway = TestGateway::start(secured(false)).await;
    assert_eq!(upgrade_status(&gateway.ws(HUB), None).await, 401);
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_401() {
    let gateway = TestGateway::start(secured(false)).await;
    let forged = sign("some-other-secret", json!({"sub": "mallory", "exp": in_an_hour()}));
    assert_eq!(negotiate_with(&gateway, Some(&forged)).await.status(), 401);
    assert_eq!(upgrade_status(&gateway.ws(&format!("{HUB}?access_token={forged}")), None).await, 401);
}

#[tokio::test]
async fn an_expired_token_is_401() {
    let gateway = TestGateway::start(secured(false)).await;
    let expired = sign(SECRET, json!({"sub": "alice", "exp": jsonwebtoken::get_current_timestamp() - 3600}));
    assert_eq!(negotiate_with(&gateway, Some(&expired)).await.status(), 401);
    assert_eq!(upgrade_status(&gateway.ws(HUB), Some(&expired)).await, 401);
}

#[tokio::test]
async fn a_valid_token_is_accepted_in_the_header_on_negotiate_and_in_the_query_on_the_websocket() {
    let gateway = TestGateway::start(secured(false)).await;
    let token = token_for("alice");
    let response = negotiate_with(&gateway, Some(&token)).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("negotiate JSON");
    let connection_token = body["connectionToken"].as_str().expect("token");
    let url = gateway.ws(&format!("{HUB}?id={connection_token}&access_token={token}"));
    assert_eq!(upgrade_status(&url, None).await, 101);
}

#[tokio::test]
async fn a_valid_token_in_the_header_is_accepted_on_the_websocket() {
    let gateway = TestGateway::start(secured(false)).await;
    assert_eq!(upgrade_status(&gateway.ws(HUB), Some(&token_for("alice"))).await, 101);
}

#[tokio::test]
async fn allow_anonymous_admits_clients_without_a_token() {
    let gateway = TestGateway::start(secured(true)).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    assert_eq!(client.invoke_value("Echo", vec![s("guest")]).await, s("guest"));
}

#[tokio::test]
async fn allow_anonymous_still_refuses_a_bad_token() {
    let gateway = TestGateway::start(secured(true)).await;
    let forged = sign("some-other-secret", json!({"sub": "mallory", "exp": in_an_hour()}));
    assert_eq!(negotiate_with(&gateway, Some(&forged)).await.status(), 401);
    assert_eq!(negotiate_with(&gateway, Some("not-a-jwt")).await.status(), 401);
    assert_eq!(upgrade_status(&gateway.ws(&format!("{HUB}?access_token={forged}")), None).await, 401);
}

#[tokio::test]
async fn send_to_user_reaches_every_connection_of_that_user_only() {
    let gateway = TestGateway::start(secured(false)).await;
    let mut alice_laptop = connect_as(&gateway, &token_for("alice")).await;
    let mut alice_phone = connect_as(&gateway, &token_for("alice")).await;
    let mut bob = connect_as(&gateway, &token_for("bob")).await;
    bob.invoke_void("SendToUser", vec![s("alice"), s("note"), s("hi")]).await;
    for alice in [&mut alice_laptop, &mut alice_phone] {
        assert_eq!(alice.expect_invocation("note").await.arguments, vec![s("hi")]);
    }
    bob.assert_no_invocation("note").await;
}

#[tokio::test]
async fn the_user_claim_is_configurable() {
    let config = Config { jwt_user_claim: "uid".into(), ..secured(false) };
    let gateway = TestGateway::start(config).await;
    let carol = sign(SECRET, json!({"sub": "ignored", "uid": "carol", "exp": in_an_hour()}));
    let dave = sign(SECRET, json!({"sub": "carol", "uid": "dave", "exp": in_an_hour()}));
    let mut carol = connect_as(&gateway, &carol).await;
    let mut dave = connect_as(&gateway, &dave).await;
    dave.invoke_void("SendToUser", vec![s("carol"), s("note"), s("by uid")]).await;
    assert_eq!(carol.expect_invocation("note").await.arguments, vec![s("by uid")]);
    dave.assert_no_invocation("note").await;
}
