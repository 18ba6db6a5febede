//! The REST API's OpenAPI document at `/api/openapi.json`: it lists every operation of the
//! Azure SignalR data-plane API that hubgate serves, and every route it lists exists.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::TestGateway;
use gateway::Config;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const KEY: &str = "openapi-access-key";

/// Every operation the issue and Azure's reference (2022-06-01, 2024-12-01) call for.
const OPERATIONS: &[(&str, &str)] = &[
    ("head", "/api/health"),
    ("post", "/api/hubs/{hub}/:send"),
    ("post", "/api/hubs/{hub}/:closeConnections"),
    ("post", "/api/hubs/{hub}/:generateToken"),
    ("post", "/api/hubs/{hub}/groups/{group}/:send"),
    ("post", "/api/hubs/{hub}/groups/{group}/:closeConnections"),
    ("head", "/api/hubs/{hub}/groups/{group}"),
    ("get", "/api/hubs/{hub}/groups/{group}/connections"),
    ("put", "/api/hubs/{hub}/groups/{group}/connections/{connectionId}"),
    ("delete", "/api/hubs/{hub}/groups/{group}/connections/{connectionId}"),
    ("post", "/api/hubs/{hub}/users/{user}/:send"),
    ("post", "/api/hubs/{hub}/users/{user}/:closeConnections"),
    ("head", "/api/hubs/{hub}/users/{user}"),
    ("head", "/api/hubs/{hub}/users/{user}/groups/{group}"),
    ("put", "/api/hubs/{hub}/users/{user}/groups/{group}"),
    ("delete", "/api/hubs/{hub}/users/{user}/groups/{group}"),
    ("delete", "/api/hubs/{hub}/users/{user}/groups"),
    ("post", "/api/hubs/{hub}/connections/{connectionId}/:send"),
    ("post", "/api/hubs/{hub}/connections/{connectionId}/:invoke"),
    ("head", "/api/hubs/{hub}/connections/{connectionId}"),
    ("delete", "/api/hubs/{hub}/connections/{connectionId}"),
    ("delete", "/api/hubs/{hub}/connections/{connectionId}/groups"),
];

fn token(url: &str) -> String {
    let audience = url.split('?').next().unwrap();
    let claims = json!({ "aud": audience, "exp": jsonwebtoken::get_current_timestamp() + 60 });
    let key = jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

async fn gateway() -> TestGateway {
    TestGateway::start(Config { access_key: Some(KEY.into()), ..Config::default() }).await
}

async fn document(gateway: &TestGateway) -> Value {
    // No token: the document holds no data and is served to anyone.
    let response = reqwest::get(format!("http://{}/api/openapi.json", gateway.addr)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// `(method, path)` of every operation in the document.
fn documented(doc: &Value) -> Vec<(String, String)> {
    let paths = doc["paths"].as_object().expect("a paths object");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            operations.push((method.clone(), path.clone()));
        }
    }
    operations
}

#[tokio::test]
async fn the_document_is_openapi_3_and_lists_every_operation() {
    let gateway = gateway().await;
    let doc = document(&gateway).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let listed = documented(&doc);
    for (method, path) in OPERATIONS {
        assert!(listed.contains(&(method.to_string(), path.to_string())), "{method} {path} is not documented");
    }
    assert_eq!(listed.len(), OPERATIONS.len(), "documented operations: {listed:?}");
}

#[tokio::test]
async fn every_documented_operation_names_its_parameters_responses_and_security() {
    let gateway = gateway().await;
    let doc = document(&gateway).await;
    assert_eq!(doc["security"], json!([{ "AccessKey": [] }]));
    assert_eq!(doc["components"]["securitySchemes"]["AccessKey"]["scheme"], "bearer");
    for (method, path) in documented(&doc) {
        let operation = &doc["paths"][&path][&method];
        let parameters: Vec<&str> =
            operation["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert!(parameters.contains(&"api-version"), "{method} {path}: {parameters:?}");
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_matches(|c| c == '{' || c == '}');
            assert!(parameters.contains(&name), "{method} {path} does not describe {name}: {parameters:?}");
        }
        assert!(!operation["responses"].as_object().unwrap().is_empty(), "{method} {path} has no responses");
        assert!(operation["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path} has no summary");
    }
}

/// The path with placeholder values, as a backend would call it.
fn concrete(path: &str) -> String {
    path.replace("{hub}", "docs")
        .replace("{group}", "room")
        .replace("{user}", "alice")
        .replace("{connectionId}", "nobody.nothing")
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let gateway = gateway().await;
    let doc = document(&gateway).await;
    let http = reqwest::Client::new();
    for (method, path) in documented(&doc) {
        let url = format!("http://{}{}?api-version=2022-06-01", gateway.addr, concrete(&path));
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = http
            .request(method.clone(), &url)
            .bearer_auth(token(&url))
            .header("content-type", "application/json")
            .body(r#"{"target":"t","arguments":[]}"#)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(!body.contains("No such API"), "{method} {path} is documented but not routed: {status} {body}");
    }
}

#[tokio::test]
async fn an_undocumented_path_is_an_azure_shaped_404() {
    let gateway = gateway().await;
    let url = format!("http://{}/api/hubs/docs/:explode?api-version=2022-06-01", gateway.addr);
    let response = reqwest::Client::new().post(&url).bearer_auth(token(&url)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "Error.Request.NotFound");
    assert!(body["message"].as_str().unwrap().contains("POST /api/hubs/docs/:explode"), "{body}");
}
