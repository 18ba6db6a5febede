//! Upstream webhooks against a real HTTP backend (axum on a free loopback port): what a
//! backend written for Azure SignalR's serverless mode receives (headers, signature, bodies in
//! the client's protocol), what its answers become for the client, the order of one
//! connection's events, the connect hook, back-pressure, and Azure's client endpoint.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::{client_token, eventually, s, Conversation, TestClient, TestGateway, DEADLINE};
use gateway::upstream::rules::Rule;
use gateway::Config;
use protocol::{Completion, CompletionOutcome, HubMessage, Invocation, Protocol, Value};

const SECRET: &str = "upstream-jwt-secret";
const KEY: &str = "upstream-access-key";
const KEY_2: &str = "upstream-access-key-2";

/// One request the backend received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn event(&self) -> &str {
        self.header("x-asrs-event").unwrap_or_default()
    }

    fn connection(&self) -> &str {
        self.header("x-asrs-connection-id").unwrap_or_default()
    }

    /// The client's Invocation in the body, read in the protocol its content type names.
    fn invocation(&self) -> Invocation {
        let protocol = protocol_of(&self.headers);
        match protocol.decode(&self.body).expect("the body is one unframed message") {
            HubMessage::Invocation(invocation) => invocation,
            other => panic!("expected an invocation, got {other:?}"),
        }
    }
}

fn protocol_of(headers: &HeaderMap) -> Protocol {
    match headers.get("content-type").and_then(|v| v.to_str().ok()) {
        Some("application/x-msgpack") => Protocol::MessagePack,
        _ => Protocol::Json,
    }
}

/// A backend whose answer depends on the invoked target (see [`answer`]).
#[derive(Clone)]
struct Backend {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Calls answered by `Slow` wait until this many are released.
    running: Arc<AtomicUsize>,
    most_running: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Semaphore>,
}

impl Backend {
    fn new() -> Self {
        Backend {
            seen: Arc::default(),
            running: Arc::default(),
            most_running: Arc::default(),
            release: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }

    async fn start() -> (Self, SocketAddr) {
        let backend = Self::new();
        let app = axum::Router::new().fallback(handle).with_state(backend.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (backend, addr)
    }

    /// The same backend over HTTPS for `localhost`, its certificate signed by a fresh test CA
    /// whose PEM is returned.
    async fn start_tls() -> (Self, SocketAddr, String) {
        let backend = Self::new();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = TlsListener { tcp, acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls)) };
        let app = axum::Router::new().fallback(handle).with_state(backend.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (backend, addr, ca.pem())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn events_of(&self, connection_id: &str) -> Vec<String> {
        self.seen().iter().filter(|s| s.connection() == connection_id).map(|s| s.event().to_owned()).collect()
    }

    async fn wait_for(&self, what: &str, condition: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        eventually(what, || condition(&self.seen.lock().unwrap())).await;
        self.seen()
    }
}

/// Accepts TCP connections and completes their TLS handshake (failed handshakes are skipped).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, peer)) = self.tcp.accept().await else { continue };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

async fn handle(State(backend): State<Backend>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let seen = Seen { path: uri.to_string(), headers, body };
    backend.seen.lock().unwrap().push(seen.clone());
    let running = backend.running.fetch_add(1, Ordering::SeqCst) + 1;
    backend.most_running.fetch_max(running, Ordering::SeqCst);
    let response = answer(&backend, &seen).await;
    backend.running.fetch_sub(1, Ordering::SeqCst);
    response
}

async fn answer(backend: &Backend, seen: &Seen) -> Response {
    if seen.header("x-asrs-category") == Some("connections") {
        return connection_event(backend, seen);
    }
    let invocation = seen.invocation();
    let protocol = protocol_of(&seen.headers);
    let id = invocation.invocation_id.clone().unwrap_or_default();
    let completion =
        |id: &str, outcome| protocol.encode(&HubMessage::Completion(Completion::new(id, outcome))).unwrap();
    match invocation.target.as_str() {
        "Echo" => {
            let value = invocation.arguments.first().cloned().unwrap_or(Value::Nil);
            (StatusCode::OK, completion(&id, CompletionOutcome::Value(value)).to_vec()).into_response()
        }
        "Refuse" => {
            (StatusCode::OK, completion(&id, CompletionOutcome::Error("not allowed".into())).to_vec()).into_response()
        }
        "Empty" => StatusCode::OK.into_response(),
        "Fail" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "Teapot" => StatusCode::IM_A_TEAPOT.into_response(),
        "Wrong" => (StatusCode::OK, completion("not-this-one", CompletionOutcome::Void).to_vec()).into_response(),
        "Big" => (StatusCode::OK, vec![b'x'; 4096]).into_response(),
        "Slow" => {
            let _ = tokio::time::timeout(DEADLINE, backend.release.acquire())
                .await
                .map(|permit| permit.map(|p| p.forget()));
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

/// `connect`: refused with 403 when the query says `deny`, 500 when it says `down`, else
/// admitted as `hooked-user` in group `g1`.
fn connect_answer(seen: &Seen) -> Response {
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    let query = &body["query"];
    if query.get("deny").is_some() {
        return (StatusCode::FORBIDDEN, "go away").into_response();
    }
    if query.get("down").is_some() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    axum::Json(serde_json::json!({"userId": "hooked-user", "groups": ["g1"]})).into_response()
}

/// `connected` / `disconnected` of a client whose query says `flaky` fail twice with 503.
fn connection_event(backend: &Backend, seen: &Seen) -> Response {
    let flaky = seen.header("x-asrs-client-query").is_some_and(|query| query.contains("flaky"));
    let attempts = || {
        let seen_all = backend.seen.lock().unwrap();
        seen_all.iter().filter(|s| s.connection() == seen.connection() && s.event() == seen.event()).count()
    };
    match seen.event() {
        "connect" => connect_answer(seen),
        _ if flaky && attempts() <= 2 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        _ => StatusCode::OK.into_response(),
    }
}

fn rule(spec: &str) -> Rule {
    spec.parse().unwrap()
}

/// A node whose `chat` hub is an upstream hub of `backend` (every event, 2 s timeout), with
/// client tokens and two access keys.
fn config(backend: SocketAddr) -> Config {
    Config {
        upstream: vec![rule(&format!("url=http://{backend}/api/{{hub}}/{{category}}/{{event}};hub=chat;timeout=2s"))],
        jwt_secret: Some(SECRET.into()),
        allow_anonymous: true,
        access_key: Some(KEY.into()),
        access_key_secondary: Some(KEY_2.into()),
        ..common::fast_config()
    }
}

fn hmac_hex(key: &str, text: &str) -> String {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes()), text.as_bytes());
    tag.as_ref().iter().map(|byte| format!("{byte:02x}")).collect()
}

fn token_with_claims(user: &str) -> String {
    let claims = serde_json::json!({"sub": user, "role": "admin", "exp": jsonwebtoken::get_current_timestamp() + 3600});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// Negotiates `path_and_query` (e.g. `/hubs/chat?room=1`) with a bearer token and connects.
async fn connect(
    gateway: &TestGateway,
    path: &str,
    query: &str,
    token: Option<&str>,
    protocol: Protocol,
) -> TestClient {
    let base = path.trim_end_matches('/');
    let mut request =
        reqwest::Client::new().post(format!("http://{}{base}/negotiate?negotiateVersion=1&{query}", gateway.addr));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let negotiated: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
    let id = negotiated["connectionToken"].as_str().expect("a connection token");
    let mut url = format!("ws://{}{path}?id={id}&{query}", gateway.addr);
    if let Some(token) = token {
        url.push_str(&format!("&access_token={token}"));
    }
    let socket = common::open_socket(&url).await;
    let mut client = TestClient::raw(socket);
    client.protocol = protocol;
    let handshake = protocol::HandshakeRequest { protocol: protocol.name().into(), version: 1 }.encode();
    client.send_text(std::str::from_utf8(&handshake).unwrap()).await;
    assert_eq!(client.handshake_response().await, protocol::HandshakeResponse::Accepted);
    client.connection_id = negotiated["connectionId"].as_str().map(str::to_owned);
    client
}

#[tokio::test]
async fn an_invocation_reaches_the_backend_as_azure_sends_it_and_its_answer_is_the_result() {
    let (backend, addr) = Backend::start().await;
    let gateway = TestGateway::start(config(addr)).await;
    let token = token_with_claims("alice");
    let mut client = connect(&gateway, "/hubs/chat", "room=1", Some(&token), Protocol::Json).await;
    let connection_id = client.connection_id.clone().unwrap();

    assert_eq!(client.invoke_value("Echo", vec![s("hello"), Value::from(7)]).await, s("hello"));

    let seen = backend.seen();
    let call = seen.iter().find(|s| s.event() == "Echo").expect("the invocation reached the backend");
    assert_eq!(call.path, "/api/chat/messages/Echo");
    assert_eq!(call.header("x-asrs-connection-id"), Some(connection_id.as_str()));
    assert_eq!(call.header("x-asrs-hub"), Some("chat"));
    assert_eq!(call.header("x-asrs-category"), Some("messages"));
    assert_eq!(call.header("x-asrs-user-id"), Some("alice"));
    let claims = call.header("x-asrs-user-claims").unwrap();
    assert!(claims.contains("sub: alice") && claims.contains("role: admin"), "{claims}");
    assert_eq!(call.header("x-asrs-client-query"), Some("?room=1"), "without id and access_token");
    let signature = format!("sha256={},sha256={}", hmac_hex(KEY, &connection_id), hmac_hex(KEY_2, &connection_id));
    assert_eq!(call.header("x-asrs-signature"), Some(signature.as_str()));
    assert_eq!(call.header("content-type"), Some("application/json"));
    let invocation = call.invocation();
    assert_eq!(invocation.arguments, vec![s("hello"), Value::from(7)]);
    assert!(!call.body.ends_with(&[0x1e]), "the body carries no record separator");

    let first = seen.iter().find(|s| s.connection() == connection_id).unwrap();
    assert_eq!((first.header("x-asrs-category"), first.event()), (Some("connections"), "connected"));
}

#[tokio::test]
async fn every_answer_and_failure_becomes_the_documented_completion() {
    let (_backend, addr) = Backend::start().await;
    let dead = common::processes::free_port();
    let mut config = Config { upstream_max_body: 1024, ..config(addr) };
    config.upstream.insert(0, rule(&format!("url=http://127.0.0.1:{dead}/;hub=dead")));
    config.upstream.insert(0, rule(&format!("url=http://{addr}/;hub=hasty;timeout=200ms")));
    let gateway = TestGateway::start(config).await;
    let mut client = TestClient::connect(&gateway, "/hubs/chat").await;

    assert_eq!(client.invoke("Refuse", vec![]).await.outcome, CompletionOutcome::Error("not allowed".into()));
    assert_eq!(client.invoke("Empty", vec![]).await.outcome, CompletionOutcome::Void);
    assert_eq!(client.invoke("Anything", vec![]).await.outcome, CompletionOutcome::Void, "204");
    assert_eq!(client.invoke_error("Fail", vec![]).await, "Invocation failed, status code 500");
    assert_eq!(client.invoke_error("Teapot", vec![]).await, "Invocation failed, status code 418");
    assert!(client.invoke_error("Wrong", vec![]).await.contains("another invocation"));
    assert!(client.invoke_error("Big", vec![]).await.contains("larger than 1024 bytes"));

    let mut hasty = TestClient::connect(&gateway, "/hubs/hasty").await;
    assert!(hasty.invoke_error("Slow", vec![]).await.contains("did not answer in time"));
    let mut dead = TestClient::connect(&gateway, "/hubs/dead").await;
    assert!(dead.invoke_error("Echo", vec![]).await.contains("unreachable"));
}

#[tokio::test]
async fn a_send_reaches_the_backend_and_gets_no_completion() {
    let (backend, addr) = Backend::start().await;
    let gateway = TestGateway::start(config(addr)).await;
    let mut client = TestClient::connect(&gateway, "/hubs/chat").await;
    client.send_invocation("Fail", vec![s("fire and forget")]).await;
    backend.wait_for("the send", |seen| seen.iter().any(|s| s.event() == "Fail")).await;
    assert_eq!(client.invoke_value("Echo", vec![s("next")]).await, s("next"), "nothing came before this answer");
}

#[tokio::test]
async fn one_connections_events_reach_the_backend_one_at_a_time_in_order() {
    let (backend, addr) = Backend::start().await;
    let config = Config { max_parallel_invocations: 4, ..config(addr) };
    let gateway = TestGateway::start(config).await;
    let mut client = TestClient::connect(&gateway, "/hubs/chat").await;
    let connection_id = client.connection_id.clone().unwrap();
    let mut ids = Vec::new();
    for index in 0..20 {
        ids.push(client.start_invocation(&format!("Step{index}"), vec![]).await);
    }
    for id in ids {
        assert_eq!(client.expect_completion(&id).await.outcome, CompletionOutcome::Void);
    }
    client.send(&HubMessage::Close(Default::default())).await;
    backend.wait_for("disconnected", |seen| seen.iter().any(|s| s.event() == "disconnected")).await;
    let mut expected = vec!["connected".to_owned()];
    expected.extend((0..20).map(|index| format!("Step{index}")));
    expected.push("disconnected".into());
    assert_eq!(backend.events_of(&connection_id), expected);
    assert_eq!(backend.most_running.load(Ordering::SeqCst), 1, "never two events of the connection at once");
}

#[tokio::test]
async fn connections_do_not_wait_for_each_other() {
    let (backend, addr) = Backend::start().await;
    let gateway = TestGateway::start(config(addr)).await;
    let mut waiting = TestClient::connect(&gateway, "/hubs/chat").await;
    let slow = waiting.start_invocation("Slow", vec![]).await;
    backend.wait_for("the slow call", |seen| seen.iter().any(|s| s.event() == "Slow")).await;
    let mut other = TestClient::connect(&gateway, "/hubs/chat").await;
    assert_eq!(other.invoke_value("Echo", vec![s("meanwhile")]).await, s("meanwhile"));
    backend.release.add_permits(1);
    assert_eq!(waiting.expect_completion(&slow).await.outcome, CompletionOutcome::Void);
}

#[tokio::test]
async fn messagepack_clients_send_messagepack_bodies_and_get_messagepack_answers() {
    let (backend, addr) = Backend::start().await;
    let gateway = TestGateway::start(config(addr)).await;
    let mut client = connect(&gateway, "/hubs/chat", "", None, Protocol::MessagePack).await;
    let nested = Value::Map(vec![(s("n"), Value::from(42)), (s("bin"), Value::Binary(vec![0, 1, 2]))]);
    assert_eq!(client.invoke_value("Echo", vec![nested.clone()]).await, nested);
    let call = backend.seen().into_iter().find(|s| s.event() == "Echo").unwrap();
    assert_eq!(call.header("content-type"), Some("application/x-msgpack"));
    assert_eq!(call.invocation().arguments, vec![nested]);
}

#[tokio::test]
async fn the_connect_hook_admits_sets_the_user_and_groups_or_refuses_with_its_status() {
    let (backend, addr) = Backend::start().await;
    let mut config = config(addr);
    config.upstream.insert(0, rule(&format!("url=http://{addr}/hook;hub=chat;category=connections;event=connect")));
    config.allow_anonymous = false;
    let gateway = TestGateway::start(config).await;

    let refused = reqwest::Client::new()
        .post(gateway.http("/hubs/chat/negotiate?negotiateVersion=1&deny=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.text().await.unwrap(), "go away");
    let down = reqwest::Client::new().post(gateway.http("/hubs/chat/negotiate?down=1")).send().await.unwrap();
    assert_eq!(down.status(), 503, "the gate fails closed");
    assert_eq!(common::upgrade_status(&gateway.ws("/hubs/chat?deny=1"), None).await, 403, "skip-negotiation too");

    // No token needed: the hook decides (anonymous access is off).
    let mut client = connect(&gateway, "/hubs/chat", "room=2", None, Protocol::Json).await;
    let connection_id = client.connection_id.clone().unwrap();
    let hook = backend.seen().into_iter().find(|s| s.event() == "connect" && s.connection() == connection_id);
    let hook = hook.expect("the hook was asked with the connection's id");
    let body: serde_json::Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(body["query"]["room"], serde_json::json!(["2"]));
    client.invoke_void("Anything", vec![]).await;
    let call = backend.seen().into_iter().find(|s| s.event() == "Anything").unwrap();
    assert_eq!(call.header("x-asrs-user-id"), Some("hooked-user"));

    let rest = common::rest::RestClient::new(gateway.addr, KEY);
    rest.send("/api/hubs/chat/groups/g1/:send", "inGroup", vec![serde_json::json!("yes")]).await;
    assert_eq!(
        client.expect_invocation("inGroup").await.arguments,
        vec![s("yes")],
        "joined g1 before its first message"
    );
}

#[tokio::test]
async fn a_slow_backend_meets_bounded_calls_in_flight_and_a_failing_one_an_open_circuit() {
    let (backend, addr) = Backend::start().await;
    let config = Config { upstream_max_in_flight: 2, ..config(addr) };
    let gateway = TestGateway::start(config).await;
    let mut first = TestClient::connect(&gateway, "/hubs/chat").await;
    let mut second = TestClient::connect(&gateway, "/hubs/chat").await;
    let mut third = TestClient::connect(&gateway, "/hubs/chat").await;
    // A round trip each: their `connected` calls are over, so nothing else is in flight.
    for client in [&mut first, &mut second, &mut third] {
        client.invoke_void("Warm", vec![]).await;
    }
    let a = first.start_invocation("Slow", vec![]).await;
    let b = second.start_invocation("Slow", vec![]).await;
    let slow = |seen: &[Seen]| seen.iter().filter(|s| s.event() == "Slow").count();
    eventually("two slow calls", || slow(&backend.seen.lock().unwrap()) == 2).await;
    let started = tokio::time::Instant::now();
    assert!(third.invoke_error("Echo", vec![]).await.contains("too many upstream calls"));
    assert!(started.elapsed() < Duration::from_secs(1), "fails fast, does not wait");
    backend.release.add_permits(2);
    first.expect_completion(&a).await;
    second.expect_completion(&b).await;

    for _ in 0..gateway::upstream::client::OPEN_AFTER {
        assert_eq!(third.invoke_error("Fail", vec![]).await, "Invocation failed, status code 500");
    }
    let reached = backend.seen().len();
    assert!(third.invoke_error("Echo", vec![]).await.contains("paused"));
    assert_eq!(backend.seen().len(), reached, "an open circuit sends nothing");
}

#[tokio::test]
async fn azures_client_endpoint_and_tokens_work_as_the_same_hub() {
    let (backend, addr) = Backend::start().await;
    let gateway = TestGateway::start(Config { allow_anonymous: false, ..config(addr) }).await;
    let azure_token = |hub: &str, key: &str| {
        let claims = serde_json::json!({
            "aud": format!("http://{}/client/?hub={hub}", gateway.addr),
            "nameid": "bob",
            "exp": jsonwebtoken::get_current_timestamp() + 3600,
        });
        jsonwebtoken::encode(&Default::default(), &claims, &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()))
            .unwrap()
    };
    let token = azure_token("chat", KEY_2);
    let mut client = connect(&gateway, "/client/", "hub=chat", Some(&token), Protocol::Json).await;
    assert_eq!(client.invoke_value("Echo", vec![s("via /client")]).await, s("via /client"));
    let call = backend.seen().into_iter().find(|s| s.event() == "Echo").unwrap();
    assert_eq!((call.header("x-asrs-hub"), call.header("x-asrs-user-id")), (Some("chat"), Some("bob")));

    let negotiate = |token: String| {
        reqwest::Client::new().post(gateway.http("/client/negotiate?hub=chat")).bearer_auth(token).send()
    };
    assert_eq!(negotiate(azure_token("news", KEY)).await.unwrap().status(), 401, "a token for another hub");
    assert_eq!(negotiate(azure_token("chat", "not-the-key")).await.unwrap().status(), 401);
    assert_eq!(negotiate(client_token(SECRET, "carol")).await.unwrap().status(), 200, "own tokens still work");
    assert_eq!(
        reqwest::Client::new().post(gateway.http("/client/negotiate")).send().await.unwrap().status(),
        404,
        "no hub named"
    );
}

#[tokio::test]
async fn hubs_no_rule_takes_keep_the_relay_hub() {
    let (backend, addr) = Backend::start().await;
    let gateway = TestGateway::start(config(addr)).await;
    let mut relay = TestClient::connect(&gateway, "/hubs/lobby").await;
    relay.invoke_void("JoinGroup", vec![s("g")]).await;
    assert!(backend.seen().iter().all(|s| s.header("x-asrs-hub") != Some("lobby")));
}

#[tokio::test]
async fn connected_and_disconnected_are_retried_until_the_backend_takes_them() {
    let (backend, addr) = Backend::start().await;
    let gateway = TestGateway::start(config(addr)).await;
    let mut client = connect(&gateway, "/hubs/chat", "flaky=1", None, Protocol::Json).await;
    let connection_id = client.connection_id.clone().unwrap();
    client.invoke_void("First", vec![]).await;
    client.send(&HubMessage::Close(Default::default())).await;
    let done = |seen: &[Seen]| {
        seen.iter().filter(|s| s.connection() == connection_id && s.event() == "disconnected").count() == 3
    };
    backend.wait_for("three disconnected attempts", done).await;
    let events = backend.events_of(&connection_id);
    assert_eq!(
        events,
        ["connected", "connected", "connected", "First", "disconnected", "disconnected", "disconnected"],
        "the first message waited for connected to get through"
    );
}

#[tokio::test]
async fn an_https_upstream_is_trusted_through_the_ca_file_and_refused_without_it() {
    let (_backend, addr, ca_pem) = Backend::start_tls().await;
    let ca_file = std::env::temp_dir().join(format!("hubgate-upstream-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_file, ca_pem).unwrap();
    let rule = rule(&format!("url=https://localhost:{}/{{event}};hub=chat", addr.port()));
    let trusting =
        Config { upstream: vec![rule.clone()], upstream_ca_file: Some(ca_file.clone()), ..common::fast_config() };
    let gateway = TestGateway::start(trusting).await;
    let mut client = TestClient::connect(&gateway, "/hubs/chat").await;
    assert_eq!(client.invoke_value("Echo", vec![s("over TLS")]).await, s("over TLS"));

    let untrusting = TestGateway::start(Config { upstream: vec![rule], ..common::fast_config() }).await;
    let mut client = TestClient::connect(&untrusting, "/hubs/chat").await;
    assert!(client.invoke_error("Echo", vec![]).await.contains("unreachable"), "an unknown CA is refused");
    let _ = std::fs::remove_file(ca_file);
}
