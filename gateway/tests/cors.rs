//! Browsers on another origin (`--cors-allowed-origins`, `--rest-cors-allowed-origins`): the
//! CORS answers of negotiate and the HTTP transports, the origin check of WebSocket upgrades
//! (403 for a foreign origin, counted), the defaults (same origin only; REST without CORS).
//! The same in a real browser: conformance/tests/cors.test.mjs.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;
mod scrape;

use common::{TestGateway, DEADLINE};
use gateway::hub::Hub;
use gateway::Config;
use reqwest::header::HeaderMap;
use reqwest::Method;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const APP: &str = "http://app.example";
const EVIL: &str = "https://evil.example";
/// The headers the official clients send, which a preflight must allow.
const CLIENT_HEADERS: [&str; 4] = ["x-requested-with", "x-signalr-user-agent", "authorization", "content-type"];

fn allowing(origins: &[&str]) -> Config {
    Config { cors_allowed_origins: origins.iter().map(|o| o.to_string()).collect(), ..Config::default() }
}

/// The headers of the answer to `method url` sent with `headers`.
async fn answer(method: Method, url: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap) {
    let mut request = reqwest::Client::new().request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(DEADLINE, request.send()).await.expect("answer in time").expect("request");
    (response.status().as_u16(), response.headers().clone())
}

/// The answer to the preflight a browser on `origin` sends before the official client's negotiate.
async fn preflight(url: &str, origin: &str) -> (u16, HeaderMap) {
    let requested = "x-requested-with,x-signalr-user-agent,authorization,content-type";
    let headers =
        [("Origin", origin), ("Access-Control-Request-Method", "POST"), ("Access-Control-Request-Headers", requested)];
    answer(Method::OPTIONS, url, &headers).await
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|value| value.to_str().unwrap())
}

/// The comma-separated entries of header `name`, in lower case.
fn listed(headers: &HeaderMap, name: &str) -> Vec<String> {
    header(headers, name).unwrap_or_default().split(',').map(|entry| entry.trim().to_lowercase()).collect()
}

/// The status of a WebSocket upgrade to `url` sent with `Origin: origin` (none when `None`).
async fn upgrade_from(url: &str, origin: Option<&str>) -> u16 {
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("Origin", origin.parse().unwrap());
    }
    match tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request)).await.expect("upgrade in time") {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected upgrade error: {other}"),
    }
}

/// Negotiates (version 1) from `origin` and returns the connection token and the answer's headers.
async fn negotiate_from(gateway: &TestGateway, origin: &str) -> (String, HeaderMap) {
    let url = gateway.http("/hubs/chat/negotiate?negotiateVersion=1");
    let response = reqwest::Client::new().post(url).header("Origin", origin).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let body: serde_json::Value = response.json().await.unwrap();
    (body["connectionToken"].as_str().unwrap().to_owned(), headers)
}

fn assert_allows(headers: &HeaderMap, origin: &str, what: &str) {
    assert_eq!(header(headers, "access-control-allow-origin"), Some(origin), "{what}: {headers:?}");
    assert_eq!(header(headers, "access-control-allow-credentials"), Some("true"), "{what}: {headers:?}");
}

#[tokio::test]
async fn a_listed_origin_gets_its_preflights_answered_with_credentials_and_the_clients_headers() {
    let gateway = TestGateway::start(allowing(&[APP, "https://other.example"])).await;
    for path in ["/hubs/chat/negotiate?negotiateVersion=1", "/client/negotiate?hub=chat&negotiateVersion=1"] {
        let (status, headers) = preflight(&gateway.http(path), APP).await;
        assert!(status == 200 || status == 204, "{path}: {status}");
        assert_allows(&headers, APP, path);
        let allowed = listed(&headers, "access-control-allow-headers");
        for name in CLIENT_HEADERS {
            assert!(allowed.contains(&name.to_owned()), "{path}: {name} missing from {allowed:?}");
        }
        let methods = listed(&headers, "access-control-allow-methods");
        for method in ["get", "post", "delete"] {
            assert!(methods.contains(&method.to_owned()), "{path}: {method} missing from {methods:?}");
        }
        assert!(listed(&headers, "vary").contains(&"origin".to_owned()), "caches keep answers per origin: {headers:?}");
    }
    let (_, headers) = preflight(&gateway.http("/hubs/chat/negotiate"), "https://other.example").await;
    assert_allows(&headers, "https://other.example", "the second listed origin");
}

#[tokio::test]
async fn negotiate_and_the_http_transports_carry_the_cors_headers_for_a_listed_origin() {
    let gateway = TestGateway::start(allowing(&[APP])).await;
    let (token, headers) = negotiate_from(&gateway, APP).await;
    assert_allows(&headers, APP, "negotiate");

    // The first long poll answers at once; later ones carry the same headers.
    let poll = gateway.http(&format!("/hubs/chat?id={token}"));
    let (status, headers) = answer(Method::GET, &poll, &[("Origin", APP)]).await;
    assert_eq!(status, 200);
    assert_allows(&headers, APP, "a long poll");
    let (status, headers) = answer(Method::DELETE, &poll, &[("Origin", APP)]).await;
    assert_eq!(status, 202);
    assert_allows(&headers, APP, "the long-polling DELETE");

    let (token, _) = negotiate_from(&gateway, APP).await;
    let stream = gateway.http(&format!("/hubs/chat?id={token}"));
    let (status, headers) = answer(Method::GET, &stream, &[("Origin", APP), ("Accept", "text/event-stream")]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
    assert_allows(&headers, APP, "the event stream");
    let (status, headers) = answer(Method::POST, &stream, &[("Origin", APP), ("Content-Type", "text/plain")]).await;
    assert_eq!(status, 200, "the handshake POST");
    assert_allows(&headers, APP, "a POST of the event-stream connection");
}

#[tokio::test]
async fn an_origin_not_listed_gets_no_cors_headers_and_its_websockets_are_refused() {
    let gateway = TestGateway::start(allowing(&[APP])).await;
    let (status, headers) = preflight(&gateway.http("/hubs/chat/negotiate"), EVIL).await;
    assert!(status < 500, "{status}");
    assert_eq!(header(&headers, "access-control-allow-origin"), None, "{headers:?}");
    let (_, headers) = answer(Method::POST, &gateway.http("/hubs/chat/negotiate"), &[("Origin", EVIL)]).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), None, "{headers:?}");

    let before = scrape::scrape(gateway.addr).await;
    let refused = ("reason", "origin");
    assert!(before.has("hubgate_connections_refused_total", &[refused]), "the series exists before any refusal");
    for path in ["/hubs/chat", "/client/?hub=chat"] {
        assert_eq!(upgrade_from(&gateway.ws(path), Some(EVIL)).await, 403, "{path} from {EVIL}");
        assert_eq!(upgrade_from(&gateway.ws(path), Some(APP)).await, 101, "{path} from {APP}");
        assert_eq!(upgrade_from(&gateway.ws(path), None).await, 101, "{path} without Origin (not a browser)");
    }
    let after = scrape::scrape(gateway.addr).await;
    assert_eq!(after.delta(&before, "hubgate_connections_refused_total", &[refused]), 2.0);

    let url = gateway.http("/hubs/chat");
    let request = reqwest::Client::new()
        .get(url)
        .header("Origin", EVIL)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    let body = request.send().await.unwrap().text().await.unwrap();
    assert_eq!(body, format!("origin {EVIL} is not in --cors-allowed-origins"), "the 403 says why");
}

#[tokio::test]
async fn star_allows_every_origin_without_credentials() {
    let gateway = TestGateway::start(allowing(&["*"])).await;
    let (status, headers) = preflight(&gateway.http("/hubs/chat/negotiate"), EVIL).await;
    assert!(status == 200 || status == 204, "{status}");
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&headers, "access-control-allow-credentials"), None, "* cannot go with credentials");
    let (_, headers) = negotiate_from(&gateway, EVIL).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    assert_eq!(upgrade_from(&gateway.ws("/hubs/chat"), Some(EVIL)).await, 101, "* admits WebSockets from anywhere");
}

#[tokio::test]
async fn by_default_only_the_same_origin_may_connect() {
    let gateway = TestGateway::start(Config::default()).await;
    let port = gateway.addr.port();
    let same = format!("http://127.0.0.1:{port}");
    // Another host name for the same address is another origin, as is another port.
    for foreign in [format!("http://localhost:{port}"), format!("http://127.0.0.1:{}", port + 1), EVIL.to_owned()] {
        assert_eq!(upgrade_from(&gateway.ws("/hubs/chat"), Some(&foreign)).await, 403, "{foreign}");
    }
    assert_eq!(upgrade_from(&gateway.ws("/hubs/chat"), Some(&same)).await, 101);
    assert_eq!(upgrade_from(&gateway.ws("/hubs/chat"), None).await, 101);

    let (_, headers) = preflight(&gateway.http("/hubs/chat/negotiate"), EVIL).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), None, "no CORS by default: {headers:?}");
    let (_, headers) = negotiate_from(&gateway, &same).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), None, "a same-origin page needs none");
}

#[tokio::test]
async fn a_proxy_that_keeps_the_browser_host_in_x_forwarded_host_keeps_same_origin_pages_working() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut request = gateway.ws("/hubs/chat").into_client_request().unwrap();
    request.headers_mut().insert("Origin", "https://chat.example.com".parse().unwrap());
    request.headers_mut().insert("X-Forwarded-Host", "chat.example.com".parse().unwrap());
    let (_, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
}

#[tokio::test]
async fn an_application_hub_mounted_at_its_own_path_has_the_same_rules() {
    let gateway = TestGateway::start_with(allowing(&[APP]), |gateway| {
        axum::Router::new().nest("/chat", gateway.hub_router("chat", Hub::builder().build()))
    })
    .await;
    let (_, headers) = preflight(&gateway.http("/chat/negotiate"), APP).await;
    assert_allows(&headers, APP, "the application hub's negotiate");
    assert_eq!(upgrade_from(&gateway.ws("/chat"), Some(EVIL)).await, 403);
    assert_eq!(upgrade_from(&gateway.ws("/chat"), Some(APP)).await, 101);
}

#[tokio::test]
async fn the_rest_api_has_its_own_switch_off_by_default() {
    let send = "/api/hubs/chat/:send?api-version=2022-06-01";
    let rest_preflight = |url: String| async move {
        let headers = [
            ("Origin", APP),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "authorization,content-type"),
        ];
        answer(Method::OPTIONS, &url, &headers).await
    };
    // The hubs' list does not open the REST API to browsers.
    let gateway = TestGateway::start(Config { access_key: Some("k".into()), ..allowing(&[APP]) }).await;
    let (_, headers) = rest_preflight(gateway.http(send)).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), None, "{headers:?}");

    let config =
        Config { access_key: Some("k".into()), rest_cors_allowed_origins: vec![APP.into()], ..Config::default() };
    let gateway = TestGateway::start(config).await;
    let (status, headers) = rest_preflight(gateway.http(send)).await;
    assert!(status == 200 || status == 204, "a preflight carries no token and is answered: {status}");
    assert_allows(&headers, APP, "the REST preflight");
    let allowed = listed(&headers, "access-control-allow-headers");
    assert!(
        allowed.contains(&"authorization".to_owned()) && allowed.contains(&"content-type".to_owned()),
        "{allowed:?}"
    );
    let (status, headers) = answer(Method::POST, &gateway.http(send), &[("Origin", APP)]).await;
    assert_eq!(status, 401, "the access key is still required");
    assert_allows(&headers, APP, "the refusal, so the page can read it");
    // The REST list does not open the hubs.
    let (_, headers) = preflight(&gateway.http("/hubs/chat/negotiate"), APP).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), None, "{headers:?}");
}

#[test]
fn origin_lists_are_checked_when_the_configuration_loads() {
    let env = std::collections::HashMap::new();
    let load = |args: &[&str]| gateway::config::load(std::iter::once("gateway").chain(args.iter().copied()), &env);
    let loaded = load(&["--cors-allowed-origins", "HTTPS://App.Example:443,http://127.0.0.1:5173"]).unwrap();
    assert_eq!(loaded.config.cors_allowed_origins, ["https://app.example", "http://127.0.0.1:5173"]);

    let error = load(&["--cors-allowed-origins", "https://app.example/"]).unwrap_err().to_string();
    assert!(error.starts_with("--cors-allowed-origins:") && error.contains("scheme://host[:port]"), "{error}");
    let error = load(&["--cors-allowed-origins", "*,https://app.example"]).unwrap_err().to_string();
    assert!(error.starts_with("--cors-allowed-origins:") && error.contains("alone"), "{error}");
    let error = load(&["--rest-cors-allowed-origins", "nope"]).unwrap_err().to_string();
    assert!(error.starts_with("--rest-cors-allowed-origins:"), "{error}");

    let vars = std::collections::HashMap::from([(
        "HUBGATE_CORS_ALLOWED_ORIGINS".to_owned(),
        "https://a.example,https://b.example".to_owned(),
    )]);
    let loaded = gateway::config::load(["gateway"], &vars).unwrap();
    assert_eq!(loaded.config.cors_allowed_origins, ["https://a.example", "https://b.example"]);
}
