//! Limits that protect a node, each tested at its bound: `--max-connections` (503 with
//! `Retry-After`, `/readyz` still 200, running clients unharmed, a slot free again once its
//! connection ends), `--max-connections-per-user` (429 for that user only),
//! `--connection-rate-per-ip` (429 for that address only) with `--trusted-proxies` deciding
//! whether `X-Forwarded-For` is believed, the REST API's audience with `X-Forwarded-Host` /
//! `X-Forwarded-Proto` believed only from trusted proxies, and the refusal metric by reason.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;
mod scrape;

use common::http::{negotiated, HttpClient};
use common::rest::access_token;
use common::{client_token, eventually, negotiate, open_socket, s, Conversation, TestClient, TestGateway};
use gateway::Config;
use reqwest::header::HeaderMap;
use scrape::{scrape, Scrape};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const HUB: &str = "/hubs/limits";
const REFUSED: &str = "hubgate_connections_refused_total";
const SECRET: &str = "limits-test-secret";
const KEY: &str = "limits-test-access-key";

/// The status, `Retry-After` and body of a refused (or admitted) request.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: String,
}

impl Answer {
    fn retry_after(headers: &HeaderMap) -> Option<u64> {
        headers.get("retry-after").map(|value| value.to_str().unwrap().parse().unwrap())
    }
}

/// POSTs to negotiate with `headers` (name, value) and an optional bearer token.
async fn negotiate_with(gateway: &TestGateway, headers: &[(&str, &str)], bearer: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new().post(gateway.http(&format!("{HUB}/negotiate?negotiateVersion=1")));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let (status, retry_after) = (response.status().as_u16(), Answer::retry_after(response.headers()));
    Answer { status, retry_after, body: response.text().await.unwrap() }
}

/// A WebSocket upgrade of `url` with `headers`: 101 when upgraded (the socket is dropped).
async fn upgrade_with(url: &str, headers: &[(&str, &str)], bearer: Option<&str>) -> Answer {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    if let Some(token) = bearer {
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => Answer { status: response.status().as_u16(), retry_after: None, body: String::new() },
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Answer {
            status: response.status().as_u16(),
            retry_after: Answer::retry_after(response.headers()),
            body: String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        },
        Err(other) => panic!("unexpected upgrade error: {other}"),
    }
}

fn refused(scrape: &Scrape, reason: &str) -> f64 {
    scrape.value(REFUSED, &[("reason", reason)])
}

async fn readyz(gateway: &TestGateway) -> u16 {
    reqwest::get(gateway.http("/readyz")).await.unwrap().status().as_u16()
}

/// Every client in `listeners` receives what `sender` sends to all (as method `target`).
async fn still_exchange(sender: &mut TestClient, listeners: &mut [&mut TestClient], target: &str) {
    sender.invoke_void("SendToAll", vec![s(target), s("hello")]).await;
    for listener in listeners {
        let invocation = listener.expect_invocation(target).await;
        assert_eq!(invocation.arguments, vec![s("hello")]);
    }
}

#[tokio::test]
async fn a_full_node_refuses_new_connections_with_503_and_serves_the_ones_it_has() {
    let gateway = TestGateway::start(Config { max_connections: 3, ..Config::default() }).await;
    let before = scrape(gateway.addr).await;
    let mut negotiated = TestClient::connect(&gateway, HUB).await;
    let mut direct = TestClient::connect_direct(&gateway, HUB).await;
    let mut third = TestClient::connect(&gateway, HUB).await;
    assert_eq!(gateway.gateway.admitted_connections(), 3, "the bound is reached, not passed");

    let refused_negotiate = negotiate_with(&gateway, &[], None).await;
    assert_eq!(refused_negotiate.status, 503, "{refused_negotiate:?}");
    assert_eq!(refused_negotiate.retry_after, Some(5), "{refused_negotiate:?}");
    assert!(refused_negotiate.body.contains("connection limit"), "{refused_negotiate:?}");
    let refused_upgrade = upgrade_with(&gateway.ws(HUB), &[], None).await;
    assert_eq!((refused_upgrade.status, refused_upgrade.retry_after), (503, Some(5)), "{refused_upgrade:?}");
    assert_eq!(readyz(&gateway).await, 200, "a full node is still ready");
    still_exchange(&mut negotiated, &mut [&mut direct, &mut third], "unharmed").await;

    let after = scrape(gateway.addr).await;
    assert_eq!(refused(&after, "node_full") - refused(&before, "node_full"), 2.0);
    assert_eq!(refused(&after, "user_limit"), 0.0);

    // A connection that ends gives its slot back...
    direct.socket.close(None).await.unwrap();
    eventually("the closed connection's slot to be free", || gateway.gateway.admitted_connections() == 2).await;
    // ...and a negotiated connection that has not connected yet holds one too.
    let pending = negotiate(&gateway, HUB, Some(1)).await;
    assert_eq!(gateway.gateway.admitted_connections(), 3);
    assert_eq!(negotiate_with(&gateway, &[], None).await.status, 503, "pending negotiations count");
    let token = pending["connectionToken"].as_str().unwrap();
    let socket = open_socket(&gateway.ws(&format!("{HUB}?id={token}"))).await;
    let mut admitted = TestClient::handshaken(socket).await;
    still_exchange(&mut admitted, &mut [&mut negotiated, &mut third], "admitted_after_a_slot_came_free").await;
    assert_eq!(gateway.gateway.admitted_connections(), 3);
}

#[tokio::test]
async fn a_user_at_its_limit_is_refused_with_429_and_other_users_are_not() {
    let config = Config {
        jwt_secret: Some(SECRET.into()),
        allow_anonymous: true,
        max_connections_per_user: 2,
        ..Config::default()
    };
    let gateway = TestGateway::start(config).await;
    let (alice, bob) = (client_token(SECRET, "alice"), client_token(SECRET, "bob"));
    let before = scrape(gateway.addr).await;
    let mut first = TestClient::connect_with_token(&gateway, HUB, Some(&alice)).await;
    let mut second = TestClient::connect_with_token(&gateway, HUB, Some(&alice)).await;

    let third = negotiate_with(&gateway, &[], Some(&alice)).await;
    assert_eq!((third.status, third.retry_after), (429, Some(5)), "{third:?}");
    assert!(third.body.contains("this user"), "{third:?}");
    let direct = upgrade_with(&gateway.ws(HUB), &[], Some(&alice)).await;
    assert_eq!(direct.status, 429, "a WebSocket that skips negotiate: {direct:?}");
    // Negotiating anonymously and starting as alice does not get around the limit.
    let anonymous = negotiate(&gateway, HUB, Some(1)).await;
    let token = anonymous["connectionToken"].as_str().unwrap();
    let as_alice = upgrade_with(&gateway.ws(&format!("{HUB}?id={token}")), &[], Some(&alice)).await;
    assert_eq!(as_alice.status, 429, "{as_alice:?}");

    let mut other = TestClient::connect_with_token(&gateway, HUB, Some(&bob)).await;
    let mut anonymous = TestClient::connect(&gateway, HUB).await;
    still_exchange(&mut other, &mut [&mut first, &mut second, &mut anonymous], "bob_is_unaffected").await;
    let after = scrape(gateway.addr).await;
    assert_eq!(refused(&after, "user_limit") - refused(&before, "user_limit"), 3.0);
    assert_eq!(refused(&after, "node_full"), 0.0);

    drop(first);
    eventually("alice's first connection to end", || gateway.gateway.admitted_connections() == 4).await;
    assert_eq!(negotiate_with(&gateway, &[], Some(&alice)).await.status, 200, "a slot of alice's is free again");
}

#[tokio::test]
async fn an_address_past_its_burst_is_refused_with_429_and_other_addresses_are_not() {
    // Three at once, then one a minute: the test ends long before a token refills.
    let config = Config {
        connection_rate_per_ip: Some("1/m,burst=3".parse().unwrap()),
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..Config::default()
    };
    let gateway = TestGateway::start(config).await;
    let before = scrape(gateway.addr).await;
    let client = [("x-forwarded-for", "203.0.113.5")];
    for attempt in 0..3 {
        assert_eq!(negotiate_with(&gateway, &client, None).await.status, 200, "attempt {attempt} of the burst");
    }
    let refused_negotiate = negotiate_with(&gateway, &client, None).await;
    assert_eq!(refused_negotiate.status, 429, "{refused_negotiate:?}");
    let wait = refused_negotiate.retry_after.unwrap();
    assert!((1..=60).contains(&wait), "until the next token: {wait}");
    assert!(refused_negotiate.body.contains("this address"), "{refused_negotiate:?}");
    assert_eq!(upgrade_with(&gateway.ws(HUB), &client, None).await.status, 429, "a WebSocket that skips negotiate");

    // The proxy forwards another client: its own bucket.
    let other = [("x-forwarded-for", "198.51.100.7, 203.0.113.6")];
    assert_eq!(negotiate_with(&gateway, &other, None).await.status, 200);
    assert_eq!(upgrade_with(&gateway.ws(HUB), &other, None).await.status, 101);
    // The proxy itself (no header) is yet another address.
    assert_eq!(negotiate_with(&gateway, &[], None).await.status, 200);
    let after = scrape(gateway.addr).await;
    assert_eq!(refused(&after, "ip_rate") - refused(&before, "ip_rate"), 2.0);
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let config = Config {
        connection_rate_per_ip: Some("1/m,burst=2".parse().unwrap()),
        trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
        ..Config::default()
    };
    let gateway = TestGateway::start(config).await;
    let spoofed = |ip: &'static str| [("x-forwarded-for", ip)];
    assert_eq!(negotiate_with(&gateway, &spoofed("203.0.113.1"), None).await.status, 200);
    assert_eq!(negotiate_with(&gateway, &spoofed("203.0.113.2"), None).await.status, 200);
    let third = negotiate_with(&gateway, &spoofed("203.0.113.3"), None).await;
    assert_eq!(third.status, 429, "every request counts as the peer's own: {third:?}");
}

#[tokio::test]
async fn negotiated_connections_start_on_the_http_transports_while_the_node_is_full() {
    let gateway = TestGateway::start(Config { max_connections: 2, ..Config::default() }).await;
    let client = |(id, token): (String, String)| HttpClient::new_for_tests(&gateway, HUB, id, token);
    let polling = client(negotiated(&gateway, HUB).await);
    let events = client(negotiated(&gateway, HUB).await);
    assert_eq!(negotiate_with(&gateway, &[], None).await.status, 503, "full");
    // Their slots were taken at negotiate: starting them is not refused.
    assert_eq!(polling.poll().await.status(), 200, "the first poll");
    assert_eq!(events.event_stream_request().await.status(), 200, "the first event-stream GET");
    assert_eq!(gateway.gateway.admitted_connections(), 2);
}

/// `HEAD /api/health` with a token for `aud` and `headers`.
async fn rest_status(gateway: &TestGateway, aud: &str, headers: &[(&str, &str)]) -> u16 {
    let token = access_token(KEY, aud, 3600);
    let mut request =
        reqwest::Client::new().head(gateway.http("/api/health?api-version=2022-06-01")).bearer_auth(token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn the_rest_api_audience_believes_forwarded_host_and_proto_only_from_trusted_proxies() {
    let public = "https://gw.example.com/api/health";
    let forwarded = [("x-forwarded-host", "gw.example.com"), ("x-forwarded-proto", "https")];
    let trusted = Config {
        access_key: Some(KEY.into()),
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..Config::default()
    };
    let behind_proxy = TestGateway::start(trusted).await;
    let direct_url = behind_proxy.http("/api/health");
    assert_eq!(rest_status(&behind_proxy, public, &forwarded).await, 200, "the public URL the proxy forwarded");
    let plain = [("x-forwarded-host", "gw.example.com"), ("x-forwarded-proto", "http")];
    assert_eq!(rest_status(&behind_proxy, public, &plain).await, 401, "the scheme counts");
    assert_eq!(rest_status(&behind_proxy, &direct_url, &forwarded).await, 401, "the forwarded host replaces Host");
    assert_eq!(rest_status(&behind_proxy, &direct_url, &[]).await, 200, "without forwarding headers");

    let untrusted = Config { access_key: Some(KEY.into()), ..Config::default() };
    let exposed = TestGateway::start(untrusted).await;
    assert_eq!(rest_status(&exposed, public, &forwarded).await, 401, "a spoofed host does not count");
    let url = exposed.http("/api/health");
    let spoofed = [("x-forwarded-host", "evil.example"), ("x-forwarded-proto", "https")];
    assert_eq!(rest_status(&exposed, &url, &spoofed).await, 200, "spoofed headers are ignored, not held against");
}
