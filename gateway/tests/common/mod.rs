//! Test harness: a real gateway on a loopback port and a raw SignalR client over a real
//! WebSocket. Every wait has a deadline; nothing sleeps to synchronise.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

pub mod cluster;
mod conversation;
pub mod http;

pub use conversation::Conversation;
pub mod processes;
pub mod rest;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use futures_util::{SinkExt, StreamExt};
use gateway::{Config, Gateway};
use protocol::{Framer, HandshakeRequest, HandshakeResponse, HubMessage, Protocol, TextFramer, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expected event may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A gateway serving on 127.0.0.1 with a free port; shut down on drop.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestGateway {
    /// The relay hub at `/hubs/{hub}`, as the binary serves it.
    pub async fn start(config: Config) -> Self {
        Self::start_with(config, |gateway| gateway.router()).await
    }

    /// Routes built by `routes` from the gateway (for application hubs).
    pub async fn start_with(config: Config, routes: impl FnOnce(&Arc<Gateway>) -> Router) -> Self {
        Self::start_on(config, Arc::new(backplane::MemoryBackplane::standalone()), routes).await
    }

    /// A node on the given backplane, e.g. one node of a `MemoryBus` shared with others.
    pub async fn start_on(
        config: Config,
        backplane: Arc<dyn backplane::Backplane>,
        routes: impl FnOnce(&Arc<Gateway>) -> Router,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let gateway = Gateway::new(config, backplane).await.expect("valid config");
        Self::serve(listener, gateway, routes)
    }

    /// A node on the given backplane reporting to the given presence.
    pub async fn start_with_presence(
        config: Config,
        backplane: Arc<dyn backplane::Backplane>,
        presence: Arc<dyn backplane::Presence>,
        routes: impl FnOnce(&Arc<Gateway>) -> Router,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let gateway = Gateway::with_presence(config, backplane, presence).await.expect("valid config");
        Self::serve(listener, gateway, routes)
    }

    /// Serves `gateway` on `listener` with the routes built by `routes`.
    fn serve(listener: TcpListener, gateway: Arc<Gateway>, routes: impl FnOnce(&Arc<Gateway>) -> Router) -> Self {
        let addr = listener.local_addr().expect("local address");
        let router = routes(&gateway);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let gateway = gateway.clone();
            async move {
                gateway::serve(listener, gateway, router, async move {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
            }
        });
        Self { addr, gateway, stop: Some(stop), task: Some(task) }
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Stops the gateway and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task).await.expect("gateway stops in time").expect("gateway task");
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Something serving the gateway's routes at an address: an in-process [`TestGateway`] or a
/// [`processes::GatewayProcess`]. The HTTP-transport clients connect to either.
pub trait Serves {
    fn address(&self) -> SocketAddr;

    fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.address(), path)
    }
}

impl Serves for TestGateway {
    fn address(&self) -> SocketAddr {
        self.addr
    }
}

/// Config with short timers, for tests that wait on them.
pub fn fast_config() -> Config {
    Config {
        keep_alive_interval: Duration::from_millis(300),
        client_timeout: Duration::from_millis(900),
        handshake_timeout: Duration::from_millis(500),
        disconnect_timeout: Duration::from_millis(300),
        shutdown_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

/// POSTs to negotiate and returns the parsed JSON body.
pub async fn negotiate(gateway: &TestGateway, hub_path: &str, version: Option<u32>) -> serde_json::Value {
    negotiate_at(gateway.addr, hub_path, version, None).await
}

/// POSTs to negotiate on any node, optionally with a bearer token.
pub async fn negotiate_at(
    addr: SocketAddr,
    hub_path: &str,
    version: Option<u32>,
    token: Option<&str>,
) -> serde_json::Value {
    let query = version.map(|v| format!("?negotiateVersion={v}")).unwrap_or_default();
    let mut request = reqwest::Client::new().post(format!("http://{addr}{hub_path}/negotiate{query}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("negotiate request");
    assert_eq!(response.status(), 200);
    response.json().await.expect("negotiate JSON")
}

/// Opens a WebSocket; panics unless the server upgrades.
pub async fn open_socket(url: &str) -> Socket {
    let request = url.into_client_request().expect("request");
    let (socket, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request))
        .await
        .expect("connect in time")
        .expect("websocket upgrade");
    socket
}

/// The HTTP status a WebSocket upgrade attempt gets (101 on success).
pub async fn upgrade_status(url: &str, bearer: Option<&str>) -> u16 {
    let mut request = url.into_client_request().expect("request");
    if let Some(token) = bearer {
        request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().expect("header"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected upgrade error: {other}"),
    }
}

/// A SignalR JSON client speaking through a raw WebSocket.
pub struct TestClient {
    pub socket: Socket,
    /// The hub protocol after the handshake (the handshake itself is JSON text).
    pub protocol: Protocol,
    framer: Framer,
    /// How many text and binary frames the server sent.
    pub text_frames: usize,
    pub binary_frames: usize,
    /// Messages received but not yet consumed by an expectation.
    pending: VecDeque<HubMessage>,
    next_id: u64,
    pub connection_id: Option<String>,
}

impl TestClient {
    /// Negotiates (version 1), connects and completes the JSON handshake.
    pub async fn connect(gateway: &TestGateway, hub_path: &str) -> Self {
        Self::connect_with_token(gateway, hub_path, None).await
    }

    pub async fn connect_with_token(gateway: &TestGateway, hub_path: &str, token: Option<&str>) -> Self {
        Self::connect_at(gateway.addr, hub_path, token).await
    }

    /// Negotiates and connects to the node at `addr`, optionally with an access token.
    pub async fn connect_at(addr: SocketAddr, hub_path: &str, token: Option<&str>) -> Self {
        let negotiated = negotiate_at(addr, hub_path, Some(1), token).await;
        let connection_token = negotiated["connectionToken"].as_str().expect("token");
        let mut url = format!("ws://{addr}{hub_path}?id={connection_token}");
        if let Some(token) = token {
            url.push_str(&format!("&access_token={token}"));
        }
        let mut client = Self::handshaken(open_socket(&url).await).await;
        client.connection_id = negotiated["connectionId"].as_str().map(str::to_owned);
        client
    }

    /// Connects without negotiating (skipNegotiation).
    pub async fn connect_direct(gateway: &TestGateway, hub_path: &str) -> Self {
        Self::handshaken(open_socket(&gateway.ws(hub_path)).await).await
    }

    /// Negotiates and connects to `hub_path` speaking `protocol`; like the official client, the
    /// handshake goes in a text frame whatever the protocol.
    pub async fn connect_with_protocol(gateway: &TestGateway, hub_path: &str, protocol: Protocol) -> Self {
        let negotiated = negotiate_at(gateway.addr, hub_path, Some(1), None).await;
        let connection_token = negotiated["connectionToken"].as_str().expect("token");
        let socket = open_socket(&format!("ws://{}{hub_path}?id={connection_token}", gateway.addr)).await;
        let mut client = Self::raw(socket);
        client.protocol = protocol;
        let request = HandshakeRequest { protocol: protocol.name().into(), version: 1 }.encode();
        client.send_text(std::str::from_utf8(&request).expect("handshake is text")).await;
        assert_eq!(client.handshake_response().await, HandshakeResponse::Accepted);
        client.connection_id = negotiated["connectionId"].as_str().map(str::to_owned);
        client
    }

    /// Completes the handshake on an open socket.
    pub async fn handshaken(socket: Socket) -> Self {
        let mut client = Self::raw(socket);
        client.send_bytes(&HandshakeRequest { protocol: "json".into(), version: 1 }.encode()).await;
        assert_eq!(client.handshake_response().await, HandshakeResponse::Accepted);
        client
    }

    /// Wraps a socket without doing the handshake.
    pub fn raw(socket: Socket) -> Self {
        Self {
            socket,
            protocol: Protocol::Json,
            framer: Framer::Text(TextFramer::new(1 << 20)),
            text_frames: 0,
            binary_frames: 0,
            pending: VecDeque::new(),
            next_id: 0,
            connection_id: None,
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.expect("send");
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.socket.send(Message::binary(bytes.to_vec())).await.expect("send");
    }

    /// The next record from the server, or `None` when the socket closed.
    async fn next_record(&mut self) -> Option<bytes::Bytes> {
        loop {
            if let Some(record) = self.framer.next_record().expect("server record") {
                return Some(record);
            }
            let frame = tokio::time::timeout(DEADLINE, self.socket.next()).await.expect("a frame before the deadline");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    self.text_frames += 1;
                    self.framer.push(text.as_bytes())
                }
                Some(Ok(Message::Binary(bytes))) => {
                    self.binary_frames += 1;
                    self.framer.push(&bytes)
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    pub async fn handshake_response(&mut self) -> HandshakeResponse {
        let record = self.next_record().await.expect("a handshake response");
        accept_handshake_response(&record, &mut self.framer, self.protocol)
    }

    /// Ends the TCP connection without a WebSocket close handshake, as a network drop would.
    pub async fn drop_socket_abruptly(&mut self) {
        use tokio::io::AsyncWriteExt;
        if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = self.socket.get_mut() {
            let _ = tcp.shutdown().await;
        }
    }

    /// Continues on a new socket (stateful reconnect): no handshake; pending messages stay.
    pub fn resume_on(&mut self, socket: Socket) {
        self.socket = socket;
        self.framer = self.protocol.framer(1 << 20, Default::default());
    }
}

impl Conversation for TestClient {
    fn pending(&mut self) -> &mut VecDeque<HubMessage> {
        &mut self.pending
    }

    async fn receive(&mut self) -> Option<HubMessage> {
        let record = self.next_record().await?;
        Some(decode(self.protocol, &record))
    }

    async fn send(&mut self, message: &HubMessage) {
        let bytes = self.protocol.encode(message).expect("encode");
        self.send_bytes(&bytes).await;
    }

    fn new_invocation_id(&mut self) -> String {
        next_invocation_id(&mut self.next_id)
    }
}

// What the WebSocket client here and the HTTP clients (`http`) share.

/// Parses the handshake response in `record`; what follows it is framed by `protocol`, so
/// `framer` switches to that, keeping what it read past the response.
fn accept_handshake_response(record: &[u8], framer: &mut Framer, protocol: Protocol) -> HandshakeResponse {
    let response = HandshakeResponse::parse(record).expect("valid handshake response");
    let placeholder = Framer::Text(TextFramer::new(0));
    if let Framer::Text(text) = std::mem::replace(framer, placeholder) {
        *framer = protocol.framer(1 << 20, text.into_remaining());
    }
    response
}

fn decode(protocol: Protocol, record: &[u8]) -> HubMessage {
    protocol.decode(record).expect("valid server message")
}

/// A client's invocation ids: "0", "1", … counted in `next_id`.
fn next_invocation_id(next_id: &mut u64) -> String {
    *next_id += 1;
    (*next_id - 1).to_string()
}

/// Polls `condition` until it holds or the deadline passes.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A client token for `user` (claim `sub`) signed HS256 with `secret`, valid for an hour.
pub fn client_token(secret: &str, user: &str) -> String {
    let claims = serde_json::json!({ "sub": user, "exp": jsonwebtoken::get_current_timestamp() + 3600 });
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("sign")
}

pub fn s(text: &str) -> Value {
    Value::from(text)
}
