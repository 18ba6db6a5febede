//! Server-Sent Events and long polling: the HTTP transports, driven by a raw client that makes
//! the same requests as the official ones.

#![allow(clippy::unwrap_used)]

mod common;

use common::Conversation;

use std::time::Duration;

use axum::Router;
use common::http::{negotiated, HttpClient};
use common::{eventually, fast_config, s, upgrade_status, TestClient, TestGateway};
use gateway::cluster::Stats;
use gateway::hub::{Hub, HubContext, HubError};
use gateway::Config;
use protocol::{HandshakeResponse, HubMessage, Protocol, Value};

const HUB: &str = "/t";

/// A hub that tells the caller what its connection looks like.
fn hub() -> Hub {
    Hub::builder()
        .method("Echo", |_ctx: HubContext, (value,): (Value,)| async move { Ok::<_, HubError>(value) })
        .method("Transport", |ctx: HubContext, ()| async move { Ok::<_, HubError>(ctx.transport()) })
        .method("Query", |ctx: HubContext, (key,): (String,)| async move {
            Ok::<_, HubError>(ctx.query(&key).map(str::to_owned))
        })
        .method("Header", |ctx: HubContext, (name,): (String,)| async move {
            Ok::<_, HubError>(ctx.header(&name).map(str::to_owned))
        })
        .method("Broadcast", |ctx: HubContext, (text,): (String,)| async move {
            ctx.clients().all().send("broadcast", (text,)).await?;
            Ok::<_, HubError>(())
        })
        .build()
}

async fn start(config: Config) -> TestGateway {
    TestGateway::start_with(config, |g| Router::new().nest(HUB, g.hub_router("t", hub()))).await
}

async fn wait_for_connections(gateway: &TestGateway, expected: u64) {
    let gateway = gateway.gateway.clone();
    eventually(&format!("{expected} connections"), move || Stats::get(&gateway.stats().connections) == expected).await;
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Long polling

#[tokio::test]
async fn the_first_poll_answers_at_once_empty_and_uncached() {
    let gateway = start(Config::default()).await;
    let (_, token) = negotiated(&gateway, HUB).await;
    let response = reqwest::get(gateway.http(&format!("{HUB}?id={token}&_=1"))).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "application/octet-stream");
    assert_eq!(header(&response, "cache-control"), "no-cache, no-store");
    assert_eq!(header(&response, "pragma"), "no-cache");
    assert_eq!(header(&response, "expires"), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(header(&response, "content-length"), "0");
}

#[tokio::test]
async fn long_polling_round_trips_json_and_reports_its_transport() {
    let gateway = start(Config::default()).await;
    let mut client = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    assert_eq!(client.invoke_value("Echo", vec![s("你好，世界！")]).await, s("你好，世界！"));
    assert_eq!(client.invoke_value("Transport", vec![]).await, s("LongPolling"));
}

#[tokio::test]
async fn long_polling_carries_messagepack_bodies_after_a_text_handshake() {
    let gateway = start(Config::default()).await;
    let mut client = HttpClient::long_polling(&gateway, HUB, Protocol::MessagePack).await;
    let bytes = Value::Binary(vec![0, 1, 2, 255]);
    assert_eq!(client.invoke_value("Echo", vec![bytes.clone()]).await, bytes);
}

#[tokio::test]
async fn several_messages_in_one_post_are_all_handled_in_order() {
    let gateway = start(Config::default()).await;
    let mut client = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    let body = "{\"type\":1,\"invocationId\":\"a\",\"target\":\"Echo\",\"arguments\":[1]}\u{1e}\
                {\"type\":1,\"invocationId\":\"b\",\"target\":\"Echo\",\"arguments\":[2]}\u{1e}";
    assert_eq!(client.post(body).await.0, 200);
    let first =
        client.expect("a", |m| matches!(m, HubMessage::Completion(c) if c.invocation_id == "a").then_some(())).await;
    let second =
        client.expect("b", |m| matches!(m, HubMessage::Completion(c) if c.invocation_id == "b").then_some(())).await;
    assert_eq!((first, second), ((), ()));
}

#[tokio::test]
async fn a_poll_with_nothing_to_send_answers_empty_after_the_poll_timeout() {
    let gateway = start(Config { poll_timeout: Duration::from_millis(200), ..Config::default() }).await;
    let client = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    let response = client.poll().await;
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn long_polling_gets_no_pings_and_is_never_timed_out_as_a_silent_client() {
    let config = Config { poll_timeout: Duration::from_millis(100), ..fast_config() };
    let gateway = start(config).await;
    let mut client = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    // A ping from the client would arm the client timeout on other transports.
    client.send(&HubMessage::Ping).await;
    let quiet_polls_until = tokio::time::Instant::now() + fast_config().client_timeout * 2;
    while tokio::time::Instant::now() < quiet_polls_until {
        // Keep polling, as the client does; nothing but an empty 200 may come back.
        let response = client.poll().await;
        assert_eq!(response.status(), 200);
        let body = response.bytes().await.unwrap();
        assert!(body.is_empty() || !body.starts_with(b"{\"type\":6"), "no pings on long polling: {body:?}");
        let close_arrived = body.windows(10).any(|w| w == b"{\"type\":7");
        assert!(!close_arrived, "not closed for silence");
    }
    assert_eq!(client.invoke_value("Echo", vec![s("alive")]).await, s("alive"));
}

/// Starts a poll in the background; resolves to its status once it is answered.
fn park_poll(client: &HttpClient, tag: &str) -> tokio::task::JoinHandle<u16> {
    let request = client.http.get(format!("{}&_={tag}", client.url)).send();
    tokio::spawn(async move { request.await.unwrap().status().as_u16() })
}

async fn answered(poll: tokio::task::JoinHandle<u16>) -> u16 {
    tokio::time::timeout(common::DEADLINE, poll).await.expect("the poll is answered").unwrap()
}

#[tokio::test]
async fn delete_ends_the_connection_the_parked_poll_gets_204_and_later_requests_404() {
    let gateway = start(Config::default()).await;
    let client = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    wait_for_connections(&gateway, 1).await;
    // Two polls: once one is superseded, the other is surely parked.
    let polls = vec![park_poll(&client, "a"), park_poll(&client, "b")];
    let (superseded, _, mut parked) = futures_util::future::select_all(polls).await;
    assert_eq!(superseded.unwrap(), 204);
    assert_eq!(client.delete().await, 202);
    assert_eq!(answered(parked.remove(0)).await, 204);
    wait_for_connections(&gateway, 0).await;
    assert_eq!(client.poll().await.status(), 404);
    assert_eq!(client.post("{\"type\":6}\u{1e}").await.0, 404);
    assert_eq!(client.delete().await, 404);
}

#[tokio::test]
async fn of_two_concurrent_polls_the_older_gets_204_and_the_newer_the_messages() {
    let gateway = start(Config::default()).await;
    let client = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    let mut polls = vec![park_poll_body(&client, "a"), park_poll_body(&client, "b")];
    // Whichever reached the server first is superseded by the other.
    let (superseded, _, mut remaining) = futures_util::future::select_all(polls.drain(..)).await;
    assert_eq!(superseded.unwrap().0, 204);
    let invocation = "{\"type\":1,\"invocationId\":\"1\",\"target\":\"Echo\",\"arguments\":[\"x\"]}\u{1e}";
    assert_eq!(client.post(invocation).await.0, 200);
    let (status, body) = tokio::time::timeout(common::DEADLINE, remaining.remove(0)).await.unwrap().unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"invocationId\":\"1\""), "{body}");
}

fn park_poll_body(client: &HttpClient, tag: &str) -> tokio::task::JoinHandle<(u16, String)> {
    let request = client.http.get(format!("{}&_={tag}", client.url)).send();
    tokio::spawn(async move {
        let response = request.await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

#[tokio::test]
async fn after_the_close_is_polled_the_next_poll_gets_204_then_the_id_is_gone() {
    let gateway = start(Config::default()).await;
    let mut client = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    client.send(&HubMessage::Close(protocol::Close::default())).await;
    let close = client.expect_close().await;
    assert_eq!(close.error, None);
    assert_eq!(client.poll().await.status(), 204);
    assert_eq!(client.poll().await.status(), 404);
    wait_for_connections(&gateway, 0).await;
}

#[tokio::test]
async fn a_client_that_stops_polling_is_disconnected_after_the_disconnect_timeout() {
    let gateway = start(fast_config()).await;
    let client = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    wait_for_connections(&gateway, 1).await;
    // No further polls: the reaper ends the connection.
    wait_for_connections(&gateway, 0).await;
    assert_eq!(client.poll().await.status(), 404);
}

#[tokio::test]
async fn garbage_in_a_post_closes_only_that_connection_with_an_error() {
    let gateway = start(Config::default()).await;
    let mut victim = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    let mut bystander = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    assert_eq!(victim.post("this is not json\u{1e}").await.0, 200);
    let close = victim.expect_close().await;
    assert!(close.error.unwrap().starts_with("Connection closed with an error."));
    assert_eq!(bystander.invoke_value("Echo", vec![s("fine")]).await, s("fine"));
}

#[tokio::test]
async fn a_posted_message_over_the_message_size_limit_closes_that_connection_with_an_error() {
    let gateway = start(Config::default()).await;
    let mut victim = HttpClient::server_sent_events(&gateway, HUB).await;
    let mut bystander = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    let text = "x".repeat(40 * 1024);
    let huge = format!("{{\"type\":1,\"target\":\"Echo\",\"arguments\":[\"{text}\"]}}\u{1e}");
    assert_eq!(victim.post(huge).await.0, 200, "the body is within the POST limit");
    let close = victim.expect_close().await;
    assert!(close.error.unwrap().starts_with("Connection closed with an error."));
    assert_eq!(bystander.invoke_value("Echo", vec![s("fine")]).await, s("fine"));
}

#[tokio::test]
async fn an_oversized_post_is_refused_with_413_and_the_connection_lives_on() {
    let config = Config { max_post_body: 64 * 1024, ..Config::default() };
    let gateway = start(config).await;
    let mut client = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    let (status, _) = client.post(vec![b' '; 64 * 1024 + 1]).await;
    assert_eq!(status, 413);
    let chunked = futures_util::stream::iter((0..80).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let (status, _) = client.post(reqwest::Body::wrap_stream(chunked)).await;
    assert_eq!(status, 413, "also without a declared length");
    assert_eq!(client.invoke_value("Echo", vec![s("still here")]).await, s("still here"));
}

// ---------------------------------------------------------------------------------------------
// Server-Sent Events

#[tokio::test]
async fn the_event_stream_opens_with_a_comment_and_uncached_headers() {
    let gateway = start(Config::default()).await;
    let (id, token) = negotiated(&gateway, HUB).await;
    let client = HttpClient::new_for_tests(&gateway, HUB, id, token);
    let response = client.event_stream_request().await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    assert_eq!(header(&response, "cache-control"), "no-cache, no-store");
    assert_eq!(header(&response, "content-encoding"), "identity");
    let mut body = Box::pin(response.bytes_stream());
    let first = tokio::time::timeout(common::DEADLINE, futures_util::StreamExt::next(&mut body)).await.unwrap();
    assert_eq!(&first.unwrap().unwrap()[..], b":\r\n", "sent before any message exists");
}

#[tokio::test]
async fn server_sent_events_round_trip_in_data_only_crlf_events() {
    let gateway = start(Config::default()).await;
    let mut client = HttpClient::server_sent_events(&gateway, HUB).await;
    assert_eq!(client.invoke_value("Echo", vec![s("你好")]).await, s("你好"));
    assert_eq!(client.invoke_value("Transport", vec![]).await, s("ServerSentEvents"));
    assert!(!client.raw_events.is_empty());
    for event in &client.raw_events {
        assert!(event.starts_with(b"data: ") || event.starts_with(b":"), "{:?}", String::from_utf8_lossy(event));
        assert!(event.ends_with(b"\r\n\r\n"));
    }
}

#[tokio::test]
async fn quiet_event_streams_get_keep_alive_pings() {
    let gateway = start(fast_config()).await;
    let mut client = HttpClient::server_sent_events(&gateway, HUB).await;
    client.expect("a ping", |m| matches!(m, HubMessage::Ping).then_some(())).await;
}

#[tokio::test]
async fn messagepack_is_refused_over_server_sent_events() {
    let gateway = start(Config::default()).await;
    let (id, token) = negotiated(&gateway, HUB).await;
    let mut client = HttpClient::open_event_stream(&gateway, HUB, id, token).await;
    let request = protocol::HandshakeRequest { protocol: "messagepack".into(), version: 1 }.encode();
    assert_eq!(client.post(request).await.0, 200);
    assert_eq!(
        client.handshake_response().await,
        HandshakeResponse::Refused(
            "Cannot use the 'messagepack' protocol on the current transport. The transport does not support 'Binary' transfer format."
                .into()
        )
    );
}

#[tokio::test]
async fn closing_the_event_stream_disconnects_and_forgets_the_connection() {
    let gateway = start(Config::default()).await;
    let client = HttpClient::server_sent_events(&gateway, HUB).await;
    wait_for_connections(&gateway, 1).await;
    let HttpClient { receiver, url, http, .. } = client;
    drop(receiver);
    wait_for_connections(&gateway, 0).await;
    let gone = http.post(&url).body("{\"type\":6}\u{1e}").send().await.unwrap();
    assert_eq!(gone.status(), 404);
}

#[tokio::test]
async fn a_second_event_stream_for_a_connection_gets_409() {
    let gateway = start(Config::default()).await;
    let mut client = HttpClient::server_sent_events(&gateway, HUB).await;
    assert_eq!(client.event_stream_request().await.status(), 409);
    assert_eq!(client.invoke_value("Echo", vec![s("unharmed")]).await, s("unharmed"));
}

#[tokio::test]
async fn broadcasts_reach_clients_on_every_transport() {
    let gateway = start(Config::default()).await;
    let mut polling = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    let mut events = HttpClient::server_sent_events(&gateway, HUB).await;
    let mut socket = TestClient::connect(&gateway, HUB).await;
    socket.invoke_void("Broadcast", vec![s("to all")]).await;
    for arguments in [
        polling.expect_invocation("broadcast").await.arguments,
        events.expect_invocation("broadcast").await.arguments,
        socket.expect_invocation("broadcast").await.arguments,
    ] {
        assert_eq!(arguments, vec![s("to all")]);
    }
}

// ---------------------------------------------------------------------------------------------
// Rules common to the HTTP transports

#[tokio::test]
async fn requests_without_an_id_get_400() {
    let gateway = start(Config::default()).await;
    let http = reqwest::Client::new();
    let url = gateway.http(HUB);
    let sse = http.get(&url).header("Accept", "text/event-stream").send().await.unwrap();
    let poll = http.get(&url).send().await.unwrap();
    let post = http.post(&url).send().await.unwrap();
    let delete = http.delete(&url).send().await.unwrap();
    for response in [sse, poll, post, delete] {
        assert_eq!(response.status(), 400);
        assert_eq!(response.text().await.unwrap(), "Connection ID required");
    }
}

#[tokio::test]
async fn requests_with_an_unknown_id_get_404() {
    let gateway = start(Config::default()).await;
    let http = reqwest::Client::new();
    let url = gateway.http(&format!("{HUB}?id=nobody"));
    let sse = http.get(&url).header("Accept", "text/event-stream").send().await.unwrap();
    let poll = http.get(&url).send().await.unwrap();
    let post = http.post(&url).body("x").send().await.unwrap();
    let delete = http.delete(&url).send().await.unwrap();
    for response in [sse, poll, post, delete] {
        assert_eq!(response.status(), 404);
        assert_eq!(response.text().await.unwrap(), "No Connection with that ID");
    }
}

#[tokio::test]
async fn a_connection_keeps_the_transport_it_started_with() {
    let gateway = start(Config::default()).await;
    let mut polling = HttpClient::long_polling(&gateway, HUB, Protocol::Json).await;
    let as_events = polling.event_stream_request().await;
    assert_eq!(as_events.status(), 400);
    assert_eq!(as_events.text().await.unwrap(), "Cannot change transports mid-connection");
    let as_socket = upgrade_status(&gateway.ws(&format!("{HUB}?id={}", polling.token)), None).await;
    assert_eq!(as_socket, 400);
    assert_eq!(polling.invoke_value("Echo", vec![s("unharmed")]).await, s("unharmed"));

    let mut events = HttpClient::server_sent_events(&gateway, HUB).await;
    let as_poll = events.poll().await;
    assert_eq!(as_poll.status(), 400);
    assert_eq!(events.delete().await, 400, "DELETE only ends long polling");
    assert_eq!(events.invoke_value("Echo", vec![s("unharmed")]).await, s("unharmed"));
}

#[tokio::test]
async fn the_hub_sees_the_query_and_headers_of_the_starting_request_on_every_transport() {
    let gateway = start(Config::default()).await;
    let path = "/t?room=blue";
    let mut polling = HttpClient::long_polling(&gateway, path, Protocol::Json).await;
    let mut events = HttpClient::server_sent_events(&gateway, path).await;
    assert_eq!(polling.invoke_value("Query", vec![s("room")]).await, s("blue"));
    assert_eq!(events.invoke_value("Query", vec![s("ROOM")]).await, s("blue"));
    assert_eq!(events.invoke_value("Header", vec![s("accept")]).await, s("text/event-stream"));
}
