//! Bad input from one client: malformed or deeply nested messages, refused handshakes, oversized
//! messages, frames of the wrong type and frames that never complete. Each closes only the
//! offending client, with a clear error (a Close message, or a handshake error response), while
//! the other clients keep working. Messages of unknown types are ignored, as the protocol asks.

mod common;
mod scrape;

use common::Conversation;

use common::{fast_config, s, TestClient, TestGateway, DEADLINE};
use futures_util::{SinkExt, StreamExt};
use gateway::Config;
use protocol::{Close, CompletionOutcome, HandshakeResponse, HubMessage, Invocation, Protocol, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const HUB: &str = "/hubs/chat";
const CLOSED_WITH_ERROR: &str = "Connection closed with an error.";

/// Detailed errors on, so that Close texts name the problem.
fn detailed() -> Config {
    Config { detailed_errors: true, ..Config::default() }
}

/// Sends `bad` from a fresh client and returns the error Close it got, after checking that
/// the socket closed and that a client connected beforehand still gets answers.
async fn close_for_bad_message(bad: &str) -> Close {
    let gateway = TestGateway::start(detailed()).await;
    let mut healthy = TestClient::connect(&gateway, HUB).await;
    let mut bad_client = TestClient::connect(&gateway, HUB).await;
    bad_client.send_text(bad).await;
    let close = bad_client.expect_close().await;
    assert_eq!(bad_client.closed().await, None, "the socket closes after the Close message");
    assert_eq!(healthy.invoke_value("Echo", vec![s("still fine")]).await, s("still fine"));
    let error = close.error.clone().unwrap_or_else(|| panic!("an error Close for {bad:?}, got {close:?}"));
    assert!(error.starts_with(CLOSED_WITH_ERROR), "{error}");
    assert!(!close.allow_reconnect, "a client that broke the protocol should not reconnect: {close:?}");
    close
}

/// Sends `request` as the handshake and returns the refusal text, after checking that the
/// socket closed.
async fn handshake_refusal(gateway: &TestGateway, request: &str) -> String {
    let mut client = TestClient::raw(common::open_socket(&gateway.ws(HUB)).await);
    client.send_text(request).await;
    let HandshakeResponse::Refused(text) = client.handshake_response().await else {
        panic!("handshake {request:?} was accepted");
    };
    assert_eq!(client.closed().await, None, "the socket closes after the refusal");
    text
}

#[tokio::test]
async fn malformed_json_closes_with_an_error() {
    let close = close_for_bad_message("{\"type\":1,\u{1e}").await;
    assert!(close.error.expect("error").contains("malformed"), "names the problem");
}

#[tokio::test]
async fn without_detailed_errors_a_bad_message_gets_the_generic_text() {
    let gateway = TestGateway::start(Config::default()).await;
    for bad in ["{1}\u{1e}", "{\"type\":1,\u{1e}", "{\"type\":1,\"invocationId\":\"1\",\"arguments\":[]}\u{1e}"] {
        let mut client = TestClient::connect(&gateway, HUB).await;
        client.send_text(bad).await;
        let close = client.expect_close().await;
        assert_eq!(close.error.as_deref(), Some(CLOSED_WITH_ERROR), "no parser details for {bad:?}");
        assert!(!close.allow_reconnect);
    }
}

#[tokio::test]
async fn messages_of_unknown_types_are_ignored_and_counted() {
    let gateway = TestGateway::start(Config::default()).await;
    let before = scrape::scrape(gateway.addr).await;
    let mut json = TestClient::connect(&gateway, HUB).await;
    json.send_text("{\"type\":99,\"future\":[1,2]}\u{1e}").await;
    json.send_text("{\"type\":42}\u{1e}").await;
    assert_eq!(json.invoke_value("Echo", vec![s("still here")]).await, s("still here"));
    let mut binary = TestClient::connect_with_protocol(&gateway, HUB, Protocol::MessagePack).await;
    // A length prefix of 4, then [99, "x"], in two frames.
    binary.send_bytes(&[0x04, 0x92, 99, 0xa1]).await;
    binary.send_bytes(b"x").await;
    assert_eq!(binary.invoke_value("Echo", vec![s("still here")]).await, s("still here"));
    let after = scrape::scrape(gateway.addr).await;
    assert_eq!(after.delta(&before, "hubgate_unknown_messages_total", &[]), 3.0);
}

/// `[[…[1]…]]` with `levels` arrays, as JSON text.
fn nested_json(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

/// A framed MessagePack Invocation of Echo (id "1") whose argument is `levels` nested arrays.
fn nested_messagepack(levels: usize) -> Vec<u8> {
    let mut body = vec![0x96, 0x01, 0x80, 0xa1, b'1', 0xa4, b'E', b'c', b'h', b'o', 0x91];
    body.extend(std::iter::repeat_n(0x91, levels));
    body.extend([0x01, 0x90]);
    let mut framed = Vec::new();
    let mut length = body.len();
    loop {
        let low = (length & 0x7f) as u8;
        length >>= 7;
        if length == 0 {
            framed.push(low);
            break;
        }
        framed.push(low | 0x80);
    }
    framed.extend(body);
    framed
}

fn nested_value(levels: usize) -> Value {
    (0..levels).fold(Value::from(1), |inner, _| Value::Array(vec![inner]))
}

/// Room for 100,000 levels: the limit under test is the nesting, not the size.
fn roomy() -> Config {
    Config { max_message_size: 1 << 20, max_websocket_message: 2 << 20, ..detailed() }
}

/// The deepest argument allowed: the message and its arguments array are two of the 64 levels.
const DEEPEST_ARGUMENT: usize = protocol::nesting::MAX_DEPTH - 2;

/// A JSON Invocation of Echo (id "1") whose argument is `levels` nested arrays, as sent.
fn nested_json_invocation(levels: usize) -> Vec<u8> {
    let argument = nested_json(levels);
    format!("{{\"type\":1,\"invocationId\":\"1\",\"target\":\"Echo\",\"arguments\":[{argument}]}}\u{1e}").into_bytes()
}

/// Echo works with the deepest argument allowed; one level more, and 100,000 levels, close the
/// sender with an error naming the bound; a client connected meanwhile is unaffected.
async fn nesting_is_bounded(protocol: Protocol, invocation: fn(usize) -> Vec<u8>) {
    let gateway = TestGateway::start(roomy()).await;
    let mut healthy = TestClient::connect_with_protocol(&gateway, HUB, protocol).await;
    let mut client = TestClient::connect_with_protocol(&gateway, HUB, protocol).await;
    send_frame(&mut client, &invocation(DEEPEST_ARGUMENT)).await;
    let completion = client
        .expect("the echo at the limit", |m| match m {
            HubMessage::Completion(c) => Some(c.clone()),
            _ => None,
        })
        .await;
    assert_eq!(completion.outcome, CompletionOutcome::Value(nested_value(DEEPEST_ARGUMENT)));
    for levels in [DEEPEST_ARGUMENT + 1, 100_000] {
        let mut client = TestClient::connect_with_protocol(&gateway, HUB, protocol).await;
        send_frame(&mut client, &invocation(levels)).await;
        let error = client.expect_close().await.error.expect("an error Close");
        assert!(error.contains("nested deeper than 64 levels"), "{levels} levels: {error}");
    }
    assert_eq!(healthy.invoke_value("Echo", vec![s("still fine")]).await, s("still fine"));
}

/// Sends `bytes` in the frame type of the client's protocol.
async fn send_frame(client: &mut TestClient, bytes: &[u8]) {
    match client.protocol {
        Protocol::Json => client.send_text(std::str::from_utf8(bytes).expect("JSON is UTF-8")).await,
        Protocol::MessagePack => client.send_bytes(bytes).await,
    }
}

#[tokio::test]
async fn json_nesting_is_bounded_at_the_limit_and_far_beyond_it() {
    nesting_is_bounded(Protocol::Json, nested_json_invocation).await;
}

#[tokio::test]
async fn messagepack_nesting_is_bounded_at_the_limit_and_far_beyond_it() {
    nesting_is_bounded(Protocol::MessagePack, nested_messagepack).await;
}

#[tokio::test]
async fn a_text_frame_on_a_messagepack_connection_closes_it_with_an_error() {
    let gateway = TestGateway::start(detailed()).await;
    let mut client = TestClient::connect_with_protocol(&gateway, HUB, Protocol::MessagePack).await;
    client.send_text("{\"type\":1,\"invocationId\":\"1\",\"target\":\"Echo\",\"arguments\":[1]}\u{1e}").await;
    let close = client.expect_close().await;
    let error = close.error.expect("an error Close");
    assert!(error.starts_with(CLOSED_WITH_ERROR) && error.contains("text frame"), "{error}");
    assert_eq!(client.closed().await, None, "the socket closes after the Close message");
}

#[tokio::test]
async fn a_binary_frame_on_a_json_connection_is_read_as_json() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    client.send_bytes(b"{\"type\":1,\"invocationId\":\"b1\",\"target\":\"Echo\",\"arguments\":[\"bin\"]}\x1e").await;
    let completion = client
        .expect("the completion", |m| match m {
            HubMessage::Completion(c) if c.invocation_id == "b1" => Some(c.clone()),
            _ => None,
        })
        .await;
    assert_eq!(completion.outcome, CompletionOutcome::Value(s("bin")));
}

#[tokio::test]
async fn a_websocket_message_over_its_limit_gets_a_close_and_code_1009() {
    let config = Config { max_websocket_message: 64 * 1024, ..detailed() };
    let gateway = TestGateway::start(config).await;
    let mut healthy = TestClient::connect(&gateway, HUB).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    client.send_text(&"x".repeat(64 * 1024 + 1)).await;
    let close = client.expect_close().await;
    let error = close.error.expect("an error Close");
    assert!(error.starts_with(CLOSED_WITH_ERROR) && error.contains("exceeds the limit of 65536 bytes"), "{error}");
    let code = tokio::time::timeout(DEADLINE, async {
        loop {
            match client.socket.next().await {
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("a close frame before the deadline");
    assert_eq!(code, Some(1009));
    let _ = client.socket.send(Message::Close(None)).await;
    assert_eq!(healthy.invoke_value("Echo", vec![s("still fine")]).await, s("still fine"));
}

#[tokio::test]
async fn an_invocation_without_a_target_closes_with_an_error() {
    let close = close_for_bad_message("{\"type\":1,\"invocationId\":\"1\",\"arguments\":[]}\u{1e}").await;
    let error = close.error.expect("error");
    assert!(error.contains("target"), "{error}");
}

#[tokio::test]
async fn a_handshake_that_is_not_json_is_refused() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut healthy = TestClient::connect(&gateway, HUB).await;
    let text = handshake_refusal(&gateway, "this is not json\u{1e}").await;
    assert!(text.starts_with("An unexpected error occurred during connection handshake."), "{text}");
    assert_eq!(healthy.invoke_value("Echo", vec![s("ok")]).await, s("ok"));
}

#[tokio::test]
async fn a_handshake_for_an_unknown_protocol_is_refused() {
    let gateway = TestGateway::start(Config::default()).await;
    let text = handshake_refusal(&gateway, "{\"protocol\":\"xml\",\"version\":1}\u{1e}").await;
    assert_eq!(text, "The protocol 'xml' is not supported.");
}

#[tokio::test]
async fn a_handshake_for_an_unsupported_version_is_refused() {
    let gateway = TestGateway::start(Config::default()).await;
    let text = handshake_refusal(&gateway, "{\"protocol\":\"json\",\"version\":99}\u{1e}").await;
    assert_eq!(text, "The server does not support version 99 of the 'json' protocol.");
}

#[tokio::test]
async fn a_handshake_never_sent_is_canceled_after_the_handshake_timeout() {
    let gateway = TestGateway::start(fast_config()).await;
    let mut client = TestClient::raw(common::open_socket(&gateway.ws(HUB)).await);
    assert_eq!(client.handshake_response().await, HandshakeResponse::Refused("Handshake was canceled.".into()));
    assert_eq!(client.closed().await, None);
}

#[tokio::test]
async fn a_message_over_the_size_limit_closes_with_an_error() {
    let close = close_for_bad_message(&format!(
        "{{\"type\":1,\"invocationId\":\"1\",\"target\":\"Echo\",\"arguments\":[\"{}\"]}}\u{1e}",
        "x".repeat(40_000)
    ))
    .await;
    let error = close.error.expect("error");
    assert!(error.contains("exceeds the limit"), "{error}");
}

#[tokio::test]
async fn many_small_messages_in_one_frame_may_exceed_the_limit_together() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    let payload = "y".repeat(500);
    let mut frame = Vec::new();
    for id in 0..100 {
        let invocation = Invocation {
            invocation_id: Some(format!("batch-{id}")),
            target: "Echo".into(),
            arguments: vec![s(&payload)],
            ..Invocation::default()
        };
        frame.extend_from_slice(&Protocol::Json.encode(&HubMessage::Invocation(invocation)).expect("encode"));
    }
    assert!(frame.len() > 32 * 1024, "the frame is over the per-message limit");
    client.send_text(std::str::from_utf8(&frame).expect("JSON is UTF-8")).await;
    for id in 0..100 {
        let id = format!("batch-{id}");
        let completion = client
            .expect(&format!("completion {id}"), |m| match m {
                HubMessage::Completion(c) if c.invocation_id == id => Some(c.clone()),
                _ => None,
            })
            .await;
        assert_eq!(completion.outcome, CompletionOutcome::Value(s(&payload)), "{id}");
    }
}

#[tokio::test]
async fn an_unfinished_message_times_out_with_a_reconnectable_error_close() {
    let gateway = TestGateway::start(fast_config()).await;
    let mut healthy = TestClient::connect(&gateway, HUB).await;
    let mut client = TestClient::connect(&gateway, HUB).await;
    client.send_text("{\"type\":6}\u{1e}").await;
    client.send_text("{\"type\":1,\"target\":\"Ec").await;
    let close = client.expect_close().await;
    let error = close.error.clone().expect("an error Close");
    assert!(error.starts_with(CLOSED_WITH_ERROR), "{error}");
    assert!(close.allow_reconnect, "a timeout may be retried: {close:?}");
    assert_eq!(client.closed().await, None);
    assert_eq!(healthy.invoke_value("Echo", vec![s("still fine")]).await, s("still fine"));
}

/// A client-to-server WebSocket frame (FIN set) with mask key 0, so the payload is unchanged.
fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&u16::try_from(len).expect("a short frame").to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// Reads from `stream` into `received` until it contains `needle`.
async fn read_until(stream: &mut TcpStream, received: &mut Vec<u8>, needle: &[u8]) {
    let found = async {
        while !received.windows(needle.len()).any(|w| w == needle) {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.expect("read");
            assert_ne!(n, 0, "connection closed before {:?}", String::from_utf8_lossy(needle));
            received.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(DEADLINE, found).await.expect("expected bytes before the deadline");
}

#[tokio::test]
async fn a_websocket_frame_that_never_completes_is_dropped_after_the_client_timeout() {
    let gateway = TestGateway::start(fast_config()).await;
    let mut healthy = TestClient::connect(&gateway, HUB).await;
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let upgrade = format!(
        "GET {HUB} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        gateway.addr
    );
    stream.write_all(upgrade.as_bytes()).await.expect("send upgrade");
    let mut received = Vec::new();
    read_until(&mut stream, &mut received, b"\r\n\r\n").await;
    assert!(received.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&received));
    received.clear();

    stream.write_all(&masked_frame(0x1, b"{\"protocol\":\"json\",\"version\":1}\x1e")).await.expect("handshake");
    stream.write_all(&masked_frame(0x1, b"{\"type\":6}\x1e")).await.expect("ping");
    read_until(&mut stream, &mut received, b"{}\x1e").await;

    // A text frame announcing 100 payload bytes, of which only 10 ever arrive.
    stream.write_all(&[0x81, 0x80 | 100, 0, 0, 0, 0]).await.expect("frame header");
    stream.write_all(&[b'x'; 10]).await.expect("partial payload");
    let closed = async {
        let mut chunk = [0u8; 1024];
        while let Ok(n) = stream.read(&mut chunk).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(DEADLINE, closed).await.expect("the server closes the TCP connection");
    assert_eq!(healthy.invoke_value("Echo", vec![s("still fine")]).await, s("still fine"));
}

#[tokio::test]
async fn a_healthy_client_still_gets_broadcasts_after_a_bad_client_was_closed() {
    let gateway = TestGateway::start(Config::default()).await;
    let mut healthy = TestClient::connect(&gateway, HUB).await;
    let mut bad = TestClient::connect(&gateway, HUB).await;
    bad.send_text("{\"type\":1,\u{1e}").await;
    assert!(bad.expect_close().await.error.is_some());
    assert_eq!(bad.closed().await, None);
    let mut sender = TestClient::connect(&gateway, HUB).await;
    sender.invoke_void("SendToAll", vec![s("news"), Value::from(7)]).await;
    assert_eq!(healthy.expect_invocation("news").await.arguments, vec![Value::from(7)]);
}
