//! The harness's SignalR client against a real in-process gateway (relay hub at `/hubs/{hub}`),
//! on every valid transport × protocol. Every wait has a deadline; nothing sleeps to
//! synchronise.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gateway::{Config, Gateway};
use loadtest::signalr::{ClientError, ClientOptions, Connection, Event, Protocol, ReconnectPolicy, Transport};
use protocol::{CompletionOutcome, HubMessage, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(10);

const VALID: [(Transport, Protocol); 5] = [
    (Transport::WebSockets, Protocol::Json),
    (Transport::WebSockets, Protocol::MessagePack),
    (Transport::ServerSentEvents, Protocol::Json),
    (Transport::LongPolling, Protocol::Json),
    (Transport::LongPolling, Protocol::MessagePack),
];

/// A gateway with the relay hub on a loopback port.
struct TestGateway {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestGateway {
    async fn start(config: Config) -> Self {
        Self::start_on(config, "127.0.0.1:0".parse().unwrap()).await
    }

    async fn start_on(config: Config, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let backplane = Arc::new(backplane::MemoryBackplane::standalone());
        let gateway = Gateway::new(config, backplane).await.expect("valid config");
        let router = gateway.router();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            gateway::serve(listener, gateway, router, async move {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        Self { addr, stop: Some(stop), task }
    }

    fn hub(&self, name: &str) -> String {
        format!("http://{}/hubs/{name}", self.addr)
    }

    /// Graceful shutdown: every connection gets a Close with allowReconnect.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(DEADLINE, &mut self.task).await.expect("stops in time").expect("gateway task");
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn config() -> Config {
    Config { shutdown_timeout: Duration::from_secs(2), ..Config::default() }
}

fn options(url: String, transport: Transport, protocol: Protocol) -> ClientOptions {
    ClientOptions { transport, protocol, ..ClientOptions::new(url) }
}

fn text(value: &str) -> Value {
    Value::from(value)
}

async fn connect(options: ClientOptions) -> Connection {
    let label = format!("{:?} {:?}", options.transport, options.protocol);
    match tokio::time::timeout(DEADLINE, Connection::connect(options)).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => panic!("{label}: connect failed: {error}"),
        Err(_) => panic!("{label}: connect timed out"),
    }
}

async fn invoke(connection: &mut Connection, target: &str, args: Vec<Value>) -> CompletionOutcome {
    tokio::time::timeout(DEADLINE, connection.invoke(target, args)).await.expect("completion in time").expect("invoke")
}

/// Waits for an Invocation of `target` (skipping other messages) and returns its arguments.
async fn receive(connection: &mut Connection, target: &str) -> Vec<Value> {
    let wait = async {
        loop {
            match connection.next().await {
                Some(Event::Message(HubMessage::Invocation(invocation))) if invocation.target == target => {
                    return invocation.arguments;
                }
                Some(Event::Message(_)) => {}
                other => panic!("expected {target}, got {other:?}"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait).await.expect("message in time")
}

/// Waits for `Reconnected`, skipping messages.
async fn reconnected(connection: &mut Connection) {
    let wait = async {
        loop {
            match connection.next().await {
                Some(Event::Reconnected) => return,
                Some(Event::Message(_)) => {}
                other => panic!("expected Reconnected, got {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait).await.expect("reconnected in time")
}

#[tokio::test]
async fn every_valid_transport_and_protocol_invokes_receives_and_closes() {
    let gateway = TestGateway::start(config()).await;
    for (transport, protocol) in VALID {
        let label = format!("{transport:?} {protocol:?}");
        let mut listener = connect(options(gateway.hub("chat"), transport, protocol)).await;
        let mut sender = connect(options(gateway.hub("chat"), transport, protocol)).await;
        assert!(listener.connection_id().is_some(), "{label}");
        let echoed = invoke(&mut listener, "Echo", vec![text("hi")]).await;
        assert_eq!(echoed, CompletionOutcome::Value(text("hi")), "{label}");
        assert_eq!(invoke(&mut listener, "JoinGroup", vec![text(&label)]).await, CompletionOutcome::Void, "{label}");
        let outcome = invoke(&mut sender, "SendToGroup", vec![text(&label), text("Hello"), text("x")]).await;
        assert_eq!(outcome, CompletionOutcome::Void, "{label}");
        assert_eq!(receive(&mut listener, "Hello").await, vec![text("x")], "{label}");
        // A fire-and-forget send reaches the hub too.
        sender.send("SendToGroup", vec![text(&label), text("Again"), text("y")]).await.unwrap();
        assert_eq!(receive(&mut listener, "Again").await, vec![text("y")], "{label}");
        let unknown = invoke(&mut sender, "NoSuchMethod", vec![]).await;
        assert!(matches!(unknown, CompletionOutcome::Error(_)), "{label}: {unknown:?}");
        listener.close().await.unwrap_or_else(|e| panic!("{label}: close: {e}"));
        sender.close().await.unwrap_or_else(|e| panic!("{label}: close: {e}"));
    }
}

#[tokio::test]
async fn negotiate_version_zero_and_skipped_negotiation_connect() {
    let gateway = TestGateway::start(config()).await;
    for transport in [Transport::WebSockets, Transport::ServerSentEvents, Transport::LongPolling] {
        let mut v0 =
            connect(ClientOptions { negotiate_version: 0, ..options(gateway.hub("v0"), transport, Protocol::Json) })
                .await;
        let id = v0.connection_id().expect("v0 has an id");
        let own = invoke(&mut v0, "GetConnectionId", vec![]).await;
        assert_eq!(own, CompletionOutcome::Value(text(&id)), "{transport:?}");
        v0.close().await.unwrap();
    }
    let mut direct = connect(ClientOptions {
        skip_negotiation: true,
        ..options(gateway.hub("direct"), Transport::WebSockets, Protocol::MessagePack)
    })
    .await;
    assert_eq!(direct.connection_id(), None);
    assert_eq!(invoke(&mut direct, "Echo", vec![Value::from(7)]).await, CompletionOutcome::Value(Value::from(7)));
    direct.close().await.unwrap();
    let refused = Connection::connect(ClientOptions {
        skip_negotiation: true,
        ..options(gateway.hub("direct"), Transport::LongPolling, Protocol::Json)
    })
    .await;
    assert!(matches!(refused, Err(ClientError::Negotiate(_))), "{refused:?}");
}

fn token(secret: &str, user: &str) -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let claims = serde_json::json!({ "sub": user, "exp": exp });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn an_access_token_makes_the_connection_its_user() {
    let gateway = TestGateway::start(Config { jwt_secret: Some("s3cret".into()), ..config() }).await;
    let mut sender = connect(ClientOptions {
        access_token: Some(token("s3cret", "bob")),
        ..ClientOptions::new(gateway.hub("auth"))
    })
    .await;
    for (transport, protocol) in VALID {
        let user = format!("alice-{transport:?}-{protocol:?}");
        let mut alice = connect(ClientOptions {
            access_token: Some(token("s3cret", &user)),
            ..options(gateway.hub("auth"), transport, protocol)
        })
        .await;
        let outcome = invoke(&mut sender, "SendToUser", vec![text(&user), text("ForYou"), text("z")]).await;
        assert_eq!(outcome, CompletionOutcome::Void);
        assert_eq!(receive(&mut alice, "ForYou").await, vec![text("z")], "{user}");
        alice.close().await.unwrap();
    }
    let anonymous = Connection::connect(ClientOptions::new(gateway.hub("auth"))).await;
    assert!(matches!(anonymous, Err(ClientError::Negotiate(ref e)) if e.contains("401")), "{anonymous:?}");
    sender.close().await.unwrap();
}

#[tokio::test]
async fn a_refused_handshake_is_a_typed_error() {
    let gateway = TestGateway::start(config()).await;
    for (transport, protocol) in VALID {
        let refused = Connection::connect(ClientOptions {
            handshake_version: 99,
            ..options(gateway.hub("h"), transport, protocol)
        })
        .await;
        match refused {
            Err(ClientError::HandshakeRefused(error)) => assert!(error.contains("version 99"), "{error}"),
            other => panic!("{transport:?} {protocol:?}: {other:?}"),
        }
    }
    let not_offered =
        Connection::connect(options(gateway.hub("h"), Transport::ServerSentEvents, Protocol::MessagePack)).await;
    assert!(matches!(not_offered, Err(ClientError::Negotiate(_))), "{not_offered:?}");
}

#[tokio::test]
async fn a_dropped_connection_reconnects_and_messages_flow_again() {
    let first = TestGateway::start(config()).await;
    let addr = first.addr;
    let policy = ReconnectPolicy { delays: vec![Duration::from_millis(50); 100] };
    let mut clients = Vec::new();
    for (transport, protocol) in VALID {
        let options = ClientOptions { reconnect: Some(policy.clone()), ..options(first.hub("r"), transport, protocol) };
        clients.push(connect(options).await);
    }
    first.stop().await;
    let second = TestGateway::start_on(config(), addr).await;
    let mut sender = connect(ClientOptions::new(second.hub("r"))).await;
    for client in &mut clients {
        reconnected(client).await;
        assert_eq!(client.reconnects(), 1);
        // A new connection on the server: groups are joined again.
        assert_eq!(invoke(client, "JoinGroup", vec![text("room")]).await, CompletionOutcome::Void);
    }
    invoke(&mut sender, "SendToGroup", vec![text("room"), text("Back"), text("again")]).await;
    for client in &mut clients {
        assert_eq!(receive(client, "Back").await, vec![text("again")]);
    }
    for client in clients {
        client.close().await.unwrap();
    }
}

#[tokio::test]
async fn without_a_policy_a_server_close_ends_the_connection() {
    let gateway = TestGateway::start(config()).await;
    let mut client = connect(ClientOptions::new(gateway.hub("c"))).await;
    gateway.stop().await;
    let event = tokio::time::timeout(DEADLINE, client.next()).await.expect("event in time");
    assert_eq!(event, Some(Event::Closed(None)));
    assert_eq!(tokio::time::timeout(DEADLINE, client.next()).await.expect("in time"), None);
    let failed = client.invoke("Echo", vec![text("x")]).await;
    assert!(matches!(failed, Err(ClientError::Closed(_))), "{failed:?}");
}

#[tokio::test]
async fn a_server_close_without_allow_reconnect_is_final() {
    let gateway = TestGateway::start(Config { rest_api_open: true, ..config() }).await;
    let policy = ReconnectPolicy { delays: vec![Duration::ZERO; 3] };
    let mut client = connect(ClientOptions { reconnect: Some(policy), ..ClientOptions::new(gateway.hub("k")) }).await;
    let id = client.connection_id().unwrap();
    let url = format!("http://{}/api/hubs/k/connections/{id}?api-version=2022-06-01&reason=bye", gateway.addr);
    let status = reqwest::Client::new().delete(url).send().await.unwrap().status();
    assert!(status.is_success(), "{status}");
    let event = tokio::time::timeout(DEADLINE, client.next()).await.expect("event in time");
    assert!(matches!(event, Some(Event::Closed(Some(ref error))) if error.contains("bye")), "{event:?}");
    assert_eq!(client.reconnects(), 0);
}

/// A loopback TCP proxy whose connections can be cut at once, as a network failure would:
/// no Close message, no close frame.
struct Proxy {
    addr: SocketAddr,
    links: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links = Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let links = links.clone();
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    links.lock().unwrap().push(link.abort_handle());
                }
            }
        });
        Self { addr, links, accept }
    }

    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[tokio::test]
async fn a_transport_cut_without_close_reconnects() {
    let gateway = TestGateway::start(config()).await;
    let proxy = Proxy::start(gateway.addr).await;
    let hub = format!("http://{}/hubs/cut", proxy.addr);
    let policy = ReconnectPolicy { delays: vec![Duration::from_millis(20); 50] };
    let mut clients = Vec::new();
    for (transport, protocol) in VALID {
        let options = ClientOptions { reconnect: Some(policy.clone()), ..options(hub.clone(), transport, protocol) };
        clients.push(connect(options).await);
    }
    let before: Vec<_> = clients.iter().map(|c| c.connection_id()).collect();
    proxy.cut();
    let mut sender = connect(ClientOptions::new(gateway.hub("cut"))).await;
    for (client, before) in clients.iter_mut().zip(before) {
        reconnected(client).await;
        assert_ne!(client.connection_id(), before, "a new connection after the cut");
        assert_eq!(invoke(client, "JoinGroup", vec![text("after")]).await, CompletionOutcome::Void);
    }
    invoke(&mut sender, "SendToGroup", vec![text("after"), text("Flowing"), text("ok")]).await;
    for client in &mut clients {
        assert_eq!(receive(client, "Flowing").await, vec![text("ok")]);
    }
}

#[test]
fn a_connection_can_live_in_a_scenario_vu() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Connection>();
}

/// Answers every HTTP request with one fixed JSON body, as a negotiate redirector would.
async fn redirector(make_body: impl FnOnce(SocketAddr) -> String) -> (SocketAddr, JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = make_body(addr);
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn negotiate_redirects_are_followed_twice_at_most() {
    let gateway = TestGateway::start(Config { jwt_secret: Some("s3cret".into()), ..config() }).await;
    let to_gateway = serde_json::json!({ "url": gateway.hub("moved"), "accessToken": token("s3cret", "carol") });
    let (front, front_task) = redirector(|_| to_gateway.to_string()).await;
    let (outer, outer_task) =
        redirector(|_| serde_json::json!({ "url": format!("http://{front}/hubs/x") }).to_string()).await;
    // outer → front → gateway: two redirects, and the token of the last one is used.
    let mut carol = connect(ClientOptions::new(format!("http://{outer}/hubs/x"))).await;
    let mut sender = connect(ClientOptions {
        access_token: Some(token("s3cret", "dave")),
        ..ClientOptions::new(gateway.hub("moved"))
    })
    .await;
    invoke(&mut sender, "SendToUser", vec![text("carol"), text("Redirected"), text("yes")]).await;
    assert_eq!(receive(&mut carol, "Redirected").await, vec![text("yes")]);
    let (looping, looping_task) =
        redirector(|own| serde_json::json!({ "url": format!("http://{own}/hubs/x") }).to_string()).await;
    let endless = Connection::connect(ClientOptions::new(format!("http://{looping}/hubs/x"))).await;
    assert!(matches!(endless, Err(ClientError::Negotiate(ref e)) if e.contains("redirects")), "{endless:?}");
    for task in [front_task, outer_task, looping_task] {
        task.abort();
    }
}

#[tokio::test]
async fn a_confined_connection_refuses_a_redirect_to_an_origin_it_was_not_given() {
    let gateway = TestGateway::start(config()).await;
    let (front, front_task) = redirector(|_| serde_json::json!({ "url": gateway.hub("moved") }).to_string()).await;
    let url = format!("http://{front}/hubs/x");
    let only_front = Some(std::sync::Arc::new(vec![loadtest::signalr::origin_of(&url).unwrap()]));
    let refused =
        Connection::connect(ClientOptions { allowed_origins: only_front, ..ClientOptions::new(url.clone()) }).await;
    assert!(matches!(refused, Err(ClientError::Negotiate(ref e)) if e.contains("refused")), "{refused:?}");
    let both =
        vec![loadtest::signalr::origin_of(&url).unwrap(), loadtest::signalr::origin_of(&gateway.hub("moved")).unwrap()];
    let allowed = ClientOptions { allowed_origins: Some(std::sync::Arc::new(both)), ..ClientOptions::new(url) };
    connect(allowed).await;
    front_task.abort();
}

#[tokio::test]
async fn try_next_returns_what_has_arrived_without_waiting() {
    let gateway = TestGateway::start(config()).await;
    let mut client = connect(ClientOptions::new(gateway.hub("t"))).await;
    assert_eq!(client.try_next(), None, "nothing has arrived");
    assert_eq!(invoke(&mut client, "JoinGroup", vec![text("t")]).await, CompletionOutcome::Void);
    client.send("SendToGroup", vec![text("t"), text("Hello"), text("x")]).await.unwrap();
    // One invocation at a time: the group message reaches the client before Echo's completion.
    assert_eq!(invoke(&mut client, "Echo", vec![text("e")]).await, CompletionOutcome::Value(text("e")));
    match client.try_next() {
        Some(Event::Message(HubMessage::Invocation(invocation))) => assert_eq!(invocation.target, "Hello"),
        other => panic!("expected the queued Hello, got {other:?}"),
    }
    assert_eq!(client.try_next(), None);
    client.close().await.unwrap();
}

#[tokio::test]
async fn all_messages_yields_pings_and_the_close_before_closed() {
    let gateway = TestGateway::start(Config { keep_alive_interval: Duration::from_millis(100), ..config() }).await;
    let mut client = connect(ClientOptions { all_messages: true, ..ClientOptions::new(gateway.hub("p")) }).await;
    let first = tokio::time::timeout(DEADLINE, client.next()).await.expect("a ping in time");
    assert_eq!(first, Some(Event::Message(HubMessage::Ping)));
    gateway.stop().await;
    let close = async {
        loop {
            match client.next().await {
                Some(Event::Message(HubMessage::Ping)) => continue,
                other => return other,
            }
        }
    };
    let event = tokio::time::timeout(DEADLINE, close).await.expect("the close in time");
    assert!(matches!(event, Some(Event::Message(HubMessage::Close(ref c))) if c.allow_reconnect), "{event:?}");
    assert_eq!(tokio::time::timeout(DEADLINE, client.next()).await.expect("in time"), Some(Event::Closed(None)));
    assert_eq!(client.try_next(), None);
}
