//! The built-in relay hub, over real sockets: what each method does and who receives what.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::Conversation;

use common::{s, TestClient, TestGateway};
use gateway::Config;
use protocol::Value;

const HUB: &str = "/hubs/chat";

#[tokio::test]
async fn echo_returns_unicode_unchanged() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    assert_eq!(client.invoke_value("Echo", vec![s("你好，世界！ 🚀")]).await, s("你好，世界！ 🚀"));
    assert_eq!(client.invoke_value("echo", vec![Value::Nil]).await, Value::Nil, "names ignore case; null is a value");
}

#[tokio::test]
async fn get_connection_id_matches_negotiate() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    let id = client.connection_id.clone().expect("negotiated id");
    assert_eq!(client.invoke_value("GetConnectionId", vec![]).await, s(&id));
}

#[tokio::test]
async fn send_to_all_reaches_every_connection_including_the_caller() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut a = TestClient::connect(&gateway, HUB).await;
    let mut b = TestClient::connect(&gateway, HUB).await;
    a.invoke_void("SendToAll", vec![s("news"), s("hello"), Value::from(42)]).await;
    for client in [&mut a, &mut b] {
        let invocation = client.expect_invocation("news").await;
        assert_eq!(invocation.arguments, vec![s("hello"), Value::from(42)]);
        assert_eq!(invocation.invocation_id, None, "server sends carry no invocation id");
    }
}

#[tokio::test]
async fn send_to_others_skips_the_caller() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut a = TestClient::connect(&gateway, HUB).await;
    let mut b = TestClient::connect(&gateway, HUB).await;
    a.invoke_void("SendToOthers", vec![s("t"), Value::from(1)]).await;
    assert_eq!(b.expect_invocation("t").await.arguments, vec![Value::from(1)]);
    a.assert_no_invocation("t").await;
}

#[tokio::test]
async fn groups_reach_members_only_and_leaving_stops_delivery() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut a = TestClient::connect(&gateway, HUB).await;
    let mut b = TestClient::connect(&gateway, HUB).await;
    let mut c = TestClient::connect(&gateway, HUB).await;
    a.invoke_void("JoinGroup", vec![s("room")]).await;
    b.invoke_void("JoinGroup", vec![s("room")]).await;
    c.invoke_void("SendToGroup", vec![s("room"), s("msg"), s("first")]).await;
    assert_eq!(a.expect_invocation("msg").await.arguments, vec![s("first")]);
    assert_eq!(b.expect_invocation("msg").await.arguments, vec![s("first")]);
    c.assert_no_invocation("msg").await;

    a.invoke_void("SendToOthersInGroup", vec![s("room"), s("msg"), s("second")]).await;
    assert_eq!(b.expect_invocation("msg").await.arguments, vec![s("second")]);
    a.assert_no_invocation("msg").await;

    b.invoke_void("LeaveGroup", vec![s("room")]).await;
    c.invoke_void("SendToGroup", vec![s("room"), s("msg"), s("third")]).await;
    assert_eq!(a.expect_invocation("msg").await.arguments, vec![s("third")]);
    b.assert_no_invocation("msg").await;
}

#[tokio::test]
async fn group_names_are_literal_including_star_and_unicode() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut star = TestClient::connect(&gateway, HUB).await;
    let mut unicode = TestClient::connect(&gateway, HUB).await;
    let mut sender = TestClient::connect(&gateway, HUB).await;
    star.invoke_void("JoinGroup", vec![s("*")]).await;
    unicode.invoke_void("JoinGroup", vec![s("salle-é-🎉")]).await;
    sender.invoke_void("SendToGroup", vec![s("salle-é-🎉"), s("m"), s("u")]).await;
    sender.invoke_void("SendToGroup", vec![s("*"), s("m"), s("star")]).await;
    assert_eq!(unicode.expect_invocation("m").await.arguments, vec![s("u")]);
    assert_eq!(star.expect_invocation("m").await.arguments, vec![s("star")]);
    unicode.assert_no_invocation("m").await;
    star.assert_no_invocation("m").await;
}

#[tokio::test]
async fn send_to_connection_reaches_only_that_connection() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut a = TestClient::connect(&gateway, HUB).await;
    let mut b = TestClient::connect(&gateway, HUB).await;
    let b_id = b.connection_id.clone().unwrap();
    a.invoke_void("SendToConnection", vec![s(&b_id), s("direct"), s("x")]).await;
    assert_eq!(b.expect_invocation("direct").await.arguments, vec![s("x")]);
    a.assert_no_invocation("direct").await;
}

#[tokio::test]
async fn hubs_are_separate_namespaces() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut chat = TestClient::connect(&gateway, "/hubs/chat").await;
    let mut other = TestClient::connect(&gateway, "/hubs/other").await;
    chat.invoke_void("SendToAll", vec![s("t")]).await;
    chat.expect_invocation("t").await;
    other.assert_no_invocation("t").await;
}

#[tokio::test]
async fn variadic_methods_check_their_leading_arguments() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    let failed = "Failed to invoke 'SendToGroup' due to an error on the server.";
    assert_eq!(client.invoke_error("SendToGroup", vec![s("room")]).await, failed);
    assert_eq!(client.invoke_error("SendToGroup", vec![Value::from(1), s("t")]).await, failed);
    assert_eq!(
        client.invoke_error("SendToAll", vec![]).await,
        "Failed to invoke 'SendToAll' due to an error on the server."
    );
}

#[tokio::test]
async fn a_stalled_reader_is_disconnected_and_does_not_hold_up_the_others() {
    const MESSAGES: usize = 1500;
    let config = Config { outbound_queue_bytes: 256 * 1024, ..Config::default() };
    let gateway = TestGateway::start(config).await;
    let stalled = stalled_client(&gateway).await;
    let mut readers = Vec::new();
    for _ in 0..3 {
        let mut client = TestClient::connect(&gateway, HUB).await;
        readers.push(tokio::spawn(async move {
            for expected in 0..MESSAGES {
                let invocation = client.expect_invocation("tick").await;
                assert_eq!(invocation.arguments[0], Value::from(expected), "in order, none lost");
            }
            // Kept open: the count below must tell the stalled connection's end from theirs.
            client
        }));
    }
    let mut sender = TestClient::connect(&gateway, HUB).await;
    let payload = "x".repeat(16 * 1024);
    for i in 0..MESSAGES {
        sender.invoke_void("SendToOthers", vec![s("tick"), Value::from(i), s(&payload)]).await;
    }
    let mut finished = Vec::new();
    for reader in readers {
        finished
            .push(tokio::time::timeout(common::DEADLINE * 3, reader).await.expect("readers finish").expect("reader"));
    }
    let stats = gateway.gateway.stats();
    common::eventually("the stalled client to be counted as a slow consumer", || {
        gateway::cluster::Stats::get(&stats.slow_consumers) == 1
    })
    .await;
    common::eventually("the stalled client to be disconnected", || {
        gateway::cluster::Stats::get(&stats.connections) == 4
    })
    .await;
    drop((stalled, finished, sender));
}

/// A client whose socket has a tiny receive buffer and that never reads after its handshake.
async fn stalled_client(gateway: &TestGateway) -> common::Socket {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(gateway.addr).await.unwrap();
    let url = gateway.ws(HUB);
    let (ws, _) = tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream)).await.unwrap();
    let client = TestClient::handshaken(ws).await;
    client.socket
}
