//! Streaming through the Rust hub API, seen through real sockets: server→client streams
//! (StreamInvocation, StreamItem, Completion, CancelInvocation) and client→server upload
//! streams (`streamIds`), in JSON and MessagePack.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::Conversation;

use std::time::Duration;

use axum::Router;
use common::{fast_config, s, TestClient, TestGateway, DEADLINE};
use futures_util::{stream, StreamExt};
use gateway::hub::{Hub, HubContext, HubError, UploadStream};
use gateway::Config;
use protocol::{Completion, CompletionOutcome, HubMessage, Invocation, Protocol, StreamItem, Value};
use tokio::sync::mpsc;

const PATH: &str = "/app/feed";

/// What the hub tells the test about cancellations it observed.
type Events = mpsc::UnboundedReceiver<String>;

fn feed_hub(events: mpsc::UnboundedSender<String>) -> Hub {
    let linger_events = events.clone();
    Hub::builder()
        .stream_method("Count", |_ctx: HubContext, (n,): (i64,)| async move {
            Ok::<_, HubError>(stream::iter((1..=n).map(Ok)))
        })
        .stream_method(
            "Empty",
            |_ctx: HubContext, ()| async move { Ok::<_, HubError>(stream::empty::<Result<i64, _>>()) },
        )
        .stream_method("FailToStart", |_ctx: HubContext, ()| async move {
            Err::<stream::Empty<Result<i64, HubError>>, _>(HubError::hub("no stream today"))
        })
        .stream_method("FailMidway", |_ctx: HubContext, ()| async move {
            Ok::<_, HubError>(stream::iter([Ok(1), Ok(2), Err(HubError::hub("broke"))]))
        })
        .stream_method("Forever", move |ctx: HubContext, ()| {
            let events = events.clone();
            async move {
                report_cancellation(ctx, events);
                Ok::<_, HubError>(stream::iter([Ok("first")]).chain(stream::pending()))
            }
        })
        .stream_method("Doubled", |_ctx: HubContext, (numbers,): (UploadStream<i64>,)| async move {
            Ok::<_, HubError>(numbers.map(|n| n.map(|n| n * 2)))
        })
        .method("Linger", move |ctx: HubContext, ()| {
            let events = linger_events.clone();
            async move {
                ctx.cancellation().cancelled().await;
                let _ = events.send("Linger cancelled".to_owned());
                Ok::<_, HubError>(())
            }
        })
        .method("Add", |_ctx: HubContext, (a, b): (i64, i64)| async move { Ok::<_, HubError>(a + b) })
        .method("Concat", |_ctx: HubContext, (separator, parts): (String, UploadStream<String>)| async move {
            let parts: Vec<String> = parts.collect::<Vec<_>>().await.into_iter().collect::<Result<_, _>>()?;
            Ok::<_, HubError>(parts.join(&separator))
        })
        .build()
}

/// Once the stream's token fires, tells the caller (if still connected) and the test.
fn report_cancellation(ctx: HubContext, events: mpsc::UnboundedSender<String>) {
    let token = ctx.cancellation();
    tokio::spawn(async move {
        token.cancelled().await;
        let _ = ctx.clients().caller().send("cancelled", ()).await;
        let _ = events.send(format!("{} cancelled", ctx.connection_id()));
    });
}

async fn start(config: Config) -> (TestGateway, Events) {
    let (events, observed) = mpsc::unbounded_channel();
    let hub = feed_hub(events);
    let gateway = TestGateway::start_with(config, |g| Router::new().nest(PATH, g.hub_router("feed", hub))).await;
    (gateway, observed)
}

async fn connect(gateway: &TestGateway, protocol: Protocol) -> TestClient {
    TestClient::connect_with_protocol(gateway, PATH, protocol).await
}

fn call(id: &str, target: &str, arguments: Vec<Value>, stream_ids: &[&str]) -> Invocation {
    Invocation {
        invocation_id: Some(id.into()),
        target: target.into(),
        arguments,
        stream_ids: stream_ids.iter().map(|id| (*id).to_owned()).collect(),
        ..Invocation::default()
    }
}

async fn stream_invoke(client: &mut TestClient, id: &str, target: &str, arguments: Vec<Value>) {
    client.send(&HubMessage::StreamInvocation(call(id, target, arguments, &[]))).await;
}

async fn upload(client: &mut TestClient, stream_id: &str, item: Value) {
    let item = StreamItem { headers: Default::default(), invocation_id: stream_id.into(), item };
    client.send(&HubMessage::StreamItem(item)).await;
}

async fn end_upload(client: &mut TestClient, stream_id: &str, outcome: CompletionOutcome) {
    client.send(&HubMessage::Completion(Completion::new(stream_id, outcome))).await;
}

/// The items of stream `id` up to its Completion, and how it completed.
async fn collect_stream(client: &mut TestClient, id: &str) -> (Vec<Value>, CompletionOutcome) {
    let mut items = Vec::new();
    loop {
        let message = client
            .expect(&format!("stream {id}"), |m| match m {
                HubMessage::StreamItem(item) if item.invocation_id == id => Some(m.clone()),
                HubMessage::Completion(completion) if completion.invocation_id == id => Some(m.clone()),
                _ => None,
            })
            .await;
        match message {
            HubMessage::StreamItem(item) => items.push(item.item),
            HubMessage::Completion(completion) => return (items, completion.outcome),
            _ => unreachable!("only stream messages are picked"),
        }
    }
}

async fn completion(client: &mut TestClient, id: &str) -> CompletionOutcome {
    client
        .expect(&format!("completion {id}"), |m| match m {
            HubMessage::Completion(c) if c.invocation_id == id => Some(c.outcome.clone()),
            _ => None,
        })
        .await
}

async fn first_item(client: &mut TestClient, id: &str) -> Value {
    client
        .expect(&format!("an item of {id}"), |m| match m {
            HubMessage::StreamItem(item) if item.invocation_id == id => Some(item.item.clone()),
            _ => None,
        })
        .await
}

fn error(text: &str) -> CompletionOutcome {
    CompletionOutcome::Error(text.into())
}

fn numbers(values: &[i64]) -> Vec<Value> {
    values.iter().map(|n| Value::from(*n)).collect()
}

#[tokio::test]
async fn items_arrive_in_order_then_a_completion_without_result() {
    let (gateway, _) = start(Config::default()).await;
    for protocol in [Protocol::Json, Protocol::MessagePack] {
        let mut client = connect(&gateway, protocol).await;
        stream_invoke(&mut client, "0", "Count", vec![Value::from(5)]).await;
        assert_eq!(collect_stream(&mut client, "0").await, (numbers(&[1, 2, 3, 4, 5]), CompletionOutcome::Void));
    }
}

#[tokio::test]
async fn an_empty_stream_only_completes() {
    let (gateway, _) = start(Config::default()).await;
    let mut client = connect(&gateway, Protocol::Json).await;
    stream_invoke(&mut client, "0", "empty", vec![]).await;
    assert_eq!(collect_stream(&mut client, "0").await, (vec![], CompletionOutcome::Void));
}

#[tokio::test]
async fn a_method_that_fails_before_streaming_gets_the_invocation_error() {
    let (gateway, _) = start(Config::default()).await;
    let mut client = connect(&gateway, Protocol::Json).await;
    stream_invoke(&mut client, "0", "FailToStart", vec![]).await;
    let expected = "An unexpected error occurred invoking 'FailToStart' on the server. HubException: no stream today";
    assert_eq!(collect_stream(&mut client, "0").await, (vec![], error(expected)));
}

#[tokio::test]
async fn an_error_mid_stream_keeps_the_items_already_sent() {
    let (gateway, _) = start(Config::default()).await;
    let mut client = connect(&gateway, Protocol::MessagePack).await;
    stream_invoke(&mut client, "0", "FailMidway", vec![]).await;
    let expected = "An error occurred on the server while streaming results. HubException: broke";
    assert_eq!(collect_stream(&mut client, "0").await, (numbers(&[1, 2]), error(expected)));
}

#[tokio::test]
async fn cancel_invocation_stops_the_stream_and_completes_it_without_error() {
    let (gateway, _) = start(Config::default()).await;
    let mut client = connect(&gateway, Protocol::Json).await;
    stream_invoke(&mut client, "7", "Forever", vec![]).await;
    assert_eq!(first_item(&mut client, "7").await, s("first"));
    client.send(&HubMessage::CancelInvocation { invocation_id: "7".into(), headers: Default::default() }).await;
    client.expect_invocation("cancelled").await;
    assert_eq!(completion(&mut client, "7").await, CompletionOutcome::Void);
    // The id is free again, and unknown ids are ignored.
    client.send(&HubMessage::CancelInvocation { invocation_id: "unknown".into(), headers: Default::default() }).await;
    stream_invoke(&mut client, "7", "Count", vec![Value::from(1)]).await;
    assert_eq!(collect_stream(&mut client, "7").await, (numbers(&[1]), CompletionOutcome::Void));
}

#[tokio::test]
async fn closing_the_connection_cancels_its_running_streams() {
    let (gateway, mut events) = start(Config::default()).await;
    let mut client = connect(&gateway, Protocol::Json).await;
    stream_invoke(&mut client, "0", "Forever", vec![]).await;
    assert_eq!(first_item(&mut client, "0").await, s("first"));
    client.socket.close(None).await.unwrap();
    let event = tokio::time::timeout(DEADLINE, events.recv()).await.expect("cancelled in time");
    assert!(event.unwrap().ends_with(" cancelled"));
}

#[tokio::test]
async fn closing_the_connection_cancels_the_token_of_a_running_plain_method() {
    let (gateway, mut events) = start(Config { max_parallel_invocations: 2, ..Config::default() }).await;
    let mut client = connect(&gateway, Protocol::Json).await;
    client.send(&HubMessage::Invocation(call("0", "Linger", vec![], &[]))).await;
    // Round trip: the reader has started Linger before it answers this call.
    assert_eq!(client.invoke_value("Add", numbers(&[1, 1])).await, Value::from(2));
    client.socket.close(None).await.unwrap();
    let event = tokio::time::timeout(DEADLINE, events.recv()).await.expect("cancelled in time");
    assert_eq!(event.as_deref(), Some("Linger cancelled"));
}

#[tokio::test]
async fn a_running_stream_does_not_hold_an_invocation_slot() {
    let config = Config { max_parallel_invocations: 1, ..fast_config() };
    let (gateway, _) = start(config).await;
    let mut client = connect(&gateway, Protocol::Json).await;
    stream_invoke(&mut client, "a", "Forever", vec![]).await;
    assert_eq!(first_item(&mut client, "a").await, s("first"));
    // The only slot is free again: the next call runs while the stream goes on.
    assert_eq!(client.invoke_value("Add", vec![Value::from(1), Value::from(2)]).await, Value::from(3));
}

#[tokio::test]
async fn streams_beyond_the_connection_limit_are_refused() {
    let config = Config { max_streams_per_connection: 1, ..fast_config() };
    let (gateway, _) = start(config).await;
    let mut client = connect(&gateway, Protocol::Json).await;
    stream_invoke(&mut client, "a", "Forever", vec![]).await;
    stream_invoke(&mut client, "b", "Forever", vec![]).await;
    let expected = "An unexpected error occurred invoking 'Forever' on the server. HubException: Too many streams are running on this connection (at most 1).";
    assert_eq!(completion(&mut client, "b").await, error(expected));
}

#[tokio::test]
async fn a_streaming_method_called_by_invocation_is_refused() {
    let (gateway, _) = start(Config::default()).await;
    let mut client = connect(&gateway, Protocol::Json).await;
    assert_eq!(
        client.invoke_error("Count", vec![Value::from(3)]).await,
        "The client attempted to invoke the streaming 'Count' method with a non-streaming invocation."
    );
}

#[tokio::test]
async fn a_plain_method_called_by_stream_invocation_is_refused() {
    let (gateway, _) = start(Config::default()).await;
    let mut client = connect(&gateway, Protocol::Json).await;
    stream_invoke(&mut client, "0", "Add", vec![Value::from(1), Value::from(2)]).await;
    let expected = "The client attempted to invoke the non-streaming 'Add' method with a streaming invocation.";
    assert_eq!(collect_stream(&mut client, "0").await, (vec![], error(expected)));
    stream_invoke(&mut client, "1", "Nope", vec![]).await;
    assert_eq!(completion(&mut client, "1").await, error("Unknown hub method 'Nope'"));
}

#[tokio::test]
async fn a_stream_id_already_streaming_is_refused() {
    let (gateway, _) = start(Config::default()).await;
    let mut client = connect(&gateway, Protocol::Json).await;
    stream_invoke(&mut client, "x", "Forever", vec![]).await;
    stream_invoke(&mut client, "x", "Count", vec![Value::from(1)]).await;
    assert_eq!(completion(&mut client, "x").await, error("Invocation ID 'x' is already in use."));
    assert_eq!(first_item(&mut client, "x").await, s("first"), "the first stream goes on");
}

#[tokio::test]
async fn upload_streams_feed_the_method_in_order() {
    let (gateway, _) = start(Config::default()).await;
    for protocol in [Protocol::Json, Protocol::MessagePack] {
        let mut client = connect(&gateway, protocol).await;
        client.send(&HubMessage::Invocation(call("0", "Concat", vec![s("-")], &["1"]))).await;
        for part in ["a", "b", "c"] {
            upload(&mut client, "1", s(part)).await;
        }
        end_upload(&mut client, "1", CompletionOutcome::Void).await;
        assert_eq!(completion(&mut client, "0").await, CompletionOutcome::Value(s("a-b-c")));
    }
}

#[tokio::test]
async fn more_items_than_the_upload_buffer_holds_still_arrive() {
    let (gateway, _) = start(Config::default()).await;
    let mut client = connect(&gateway, Protocol::Json).await;
    client.send(&HubMessage::StreamInvocation(call("0", "Doubled", vec![], &["1"]))).await;
    for n in 1..=25 {
        upload(&mut client, "1", Value::from(n)).await;
    }
    end_upload(&mut client, "1", CompletionOutcome::Void).await;
    let expected: Vec<i64> = (1..=25).map(|n| n * 2).collect();
    assert_eq!(collect_stream(&mut client, "0").await, (numbers(&expected), CompletionOutcome::Void));
}

#[tokio::test]
async fn an_upload_completed_with_an_error_fails_the_method() {
    let (gateway, _) = start(Config::default()).await;
    let mut client = connect(&gateway, Protocol::Json).await;
    client.send(&HubMessage::Invocation(call("0", "Concat", vec![s("-")], &["1"]))).await;
    upload(&mut client, "1", s("a")).await;
    end_upload(&mut client, "1", error("Something bad")).await;
    assert_eq!(
        completion(&mut client, "0").await,
        error("An unexpected error occurred invoking 'Concat' on the server. HubException: Something bad")
    );
}

#[tokio::test]
async fn an_upload_item_of_the_wrong_type_fails_the_method() {
    let (gateway, _) = start(Config::default()).await;
    let mut client = connect(&gateway, Protocol::Json).await;
    client.send(&HubMessage::Invocation(call("0", "Concat", vec![s("-")], &["1"]))).await;
    upload(&mut client, "1", Value::from(42)).await;
    assert_eq!(
        completion(&mut client, "0").await,
        error("An unexpected error occurred invoking 'Concat' on the server.")
    );
}

#[tokio::test]
async fn the_number_of_upload_streams_must_match_the_method() {
    let (gateway, _) = start(Config::default()).await;
    let mut client = connect(&gateway, Protocol::Json).await;
    client.send(&HubMessage::Invocation(call("0", "Concat", vec![s("-")], &[]))).await;
    assert_eq!(
        completion(&mut client, "0").await,
        error("An unexpected error occurred invoking 'Concat' on the server. HubException: Client sent 0 stream(s), Hub method expects 1.")
    );
    client.send(&HubMessage::Invocation(call("1", "Add", numbers(&[1, 2]), &["2"]))).await;
    assert_eq!(
        completion(&mut client, "1").await,
        error("An unexpected error occurred invoking 'Add' on the server. HubException: Client sent 1 stream(s), Hub method expects 0.")
    );
    client.send(&HubMessage::StreamInvocation(call("3", "Doubled", vec![], &["4", "5"]))).await;
    assert_eq!(
        completion(&mut client, "3").await,
        error("An unexpected error occurred invoking 'Doubled' on the server. HubException: Client sent 2 stream(s), Hub method expects 1.")
    );
}

#[tokio::test]
async fn items_for_an_upload_whose_method_finished_are_ignored() {
    let (gateway, _) = start(Config::default()).await;
    let mut client = connect(&gateway, Protocol::Json).await;
    // The method fails on its count check and never reads stream "1".
    client.send(&HubMessage::Invocation(call("0", "Add", numbers(&[1, 2]), &["1"]))).await;
    assert!(matches!(completion(&mut client, "0").await, CompletionOutcome::Error(_)));
    for n in 0..30 {
        upload(&mut client, "1", Value::from(n)).await;
    }
    end_upload(&mut client, "1", CompletionOutcome::Void).await;
    // Had the reader waited on a full buffer, this call would never be answered.
    let answered = tokio::time::timeout(Duration::from_secs(5), client.invoke_value("Add", numbers(&[2, 2])));
    assert_eq!(answered.await.expect("the reader is not stuck"), Value::from(4));
}

#[tokio::test]
async fn a_long_stream_waits_for_its_client_instead_of_overflowing_the_queue() {
    let config = Config { outbound_queue_bytes: 4096, ..Config::default() };
    let (gateway, _) = start(config).await;
    let mut client = connect(&gateway, Protocol::Json).await;
    stream_invoke(&mut client, "0", "Count", vec![Value::from(5000)]).await;
    let (items, outcome) = collect_stream(&mut client, "0").await;
    assert_eq!((items.len(), items.last().cloned(), outcome), (5000, Some(Value::from(5000)), CompletionOutcome::Void));
}
