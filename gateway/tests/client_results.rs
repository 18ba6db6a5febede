//! Client results: a hub method or server code invokes a method on one client and awaits the
//! value it returns, whether that client is on this node or another one (shared in-memory bus,
//! real Redis). Errors carry the official texts.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::Conversation;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use backplane::MemoryBus;
use common::processes::RedisServer;
use common::{s, TestClient, TestGateway};
use gateway::cluster::{ClientResultError, HubLifetime};
use gateway::hub::{Hub, HubContext, HubError};
use gateway::{Config, Gateway};
use protocol::{CompletionOutcome, HubMessage, Invocation, Protocol, Value};
use tokio::task::JoinHandle;

const APP: &str = "/app";

/// `Ask(connection, target, n)` awaits `target(n)` from any connection; `AskCaller(n)` awaits
/// `add(n)` from the caller itself.
fn results_hub() -> Hub {
    Hub::builder()
        .method("Ask", |ctx: HubContext, (connection, target, n): (String, String, i64)| async move {
            Ok::<_, HubError>(ctx.invoke_client::<i64>(&connection, &target, (n,)).await?)
        })
        .method("AskCaller", |ctx: HubContext, (n,): (i64,)| async move {
            Ok::<_, HubError>(ctx.invoke_caller::<i64>("add", (n,)).await?)
        })
        .build()
}

fn routes(gateway: &Arc<Gateway>) -> Router {
    Router::new().nest(APP, gateway.hub_router("app", results_hub())).merge(gateway.health_router())
}

async fn node(config: Config) -> TestGateway {
    TestGateway::start_with(config, routes).await
}

fn lifetime(node: &TestGateway) -> Arc<HubLifetime> {
    node.gateway.hub("app").expect("the hub has a connection on this node")
}

fn id(client: &TestClient) -> String {
    client.connection_id.clone().expect("negotiated id")
}

/// Server code awaiting `add(n)` from `connection`, in the background.
fn ask<R: serde::de::DeserializeOwned + Send + 'static>(
    lifetime: Arc<HubLifetime>,
    connection: String,
    n: i64,
) -> JoinHandle<Result<R, ClientResultError>> {
    tokio::spawn(async move { lifetime.invoke_client::<R>(&connection, "add", vec![Value::from(n)]).await })
}

async fn outcome<R>(call: JoinHandle<Result<R, ClientResultError>>) -> Result<R, ClientResultError> {
    tokio::time::timeout(common::DEADLINE, call).await.expect("the call ends in time").expect("the call task")
}

/// Waits for the server's `add` invocation and checks its shape.
async fn expect_add(client: &mut TestClient) -> Invocation {
    let invocation = client.expect_invocation("add").await;
    assert!(invocation.invocation_id.as_deref().is_some_and(|id| !id.is_empty()), "{invocation:?}");
    invocation
}

fn hub_exception(method: &str, text: &str) -> String {
    format!("An unexpected error occurred invoking '{method}' on the server. HubException: {text}")
}

#[tokio::test]
async fn the_value_a_local_client_returns_is_the_result() {
    let node = node(Config::default()).await;
    let mut client = TestClient::connect(&node, APP).await;
    let call = ask::<i64>(lifetime(&node), id(&client), 2);
    let invocation = expect_add(&mut client).await;
    assert_eq!(invocation.arguments, vec![Value::from(2)]);
    client.answer(&invocation, CompletionOutcome::Value(Value::from(42))).await;
    assert_eq!(outcome(call).await, Ok(42));
}

#[tokio::test]
async fn the_clients_error_text_is_surfaced_verbatim() {
    let node = node(Config::default()).await;
    let mut client = TestClient::connect(&node, APP).await;
    for text in ["Error: from callback", "Client didn't provide a result."] {
        let call = ask::<i64>(lifetime(&node), id(&client), 1);
        let invocation = expect_add(&mut client).await;
        client.answer(&invocation, CompletionOutcome::Error(text.into())).await;
        let error = outcome(call).await.unwrap_err();
        assert_eq!(error, ClientResultError::Client(text.into()));
        assert_eq!(error.to_string(), text);
    }
}

#[tokio::test]
async fn a_hub_method_can_await_a_result_from_its_own_caller_without_deadlocking() {
    // One invocation slot per connection: the Completion must still be read while the method waits.
    let node = node(Config { max_parallel_invocations: 1, ..Config::default() }).await;
    let mut client = TestClient::connect(&node, APP).await;
    let call = client.start_invocation("AskCaller", vec![Value::from(20)]).await;
    let invocation = expect_add(&mut client).await;
    assert_eq!(invocation.arguments, vec![Value::from(20)]);
    client.answer(&invocation, CompletionOutcome::Value(Value::from(21))).await;
    assert_eq!(client.expect_completion(&call).await.outcome, CompletionOutcome::Value(Value::from(21)));
}

#[tokio::test]
async fn an_unknown_connection_fails_immediately() {
    let node = node(Config::default()).await;
    let client = TestClient::connect(&node, APP).await;
    let here = node.gateway.node_id().to_owned();
    for ghost in [format!("{here}.ghost"), "no-node-at-all".to_owned(), "gone-node.ghost".to_owned()] {
        let started = Instant::now();
        let error = lifetime(&node).invoke_client::<i64>(&ghost, "add", vec![Value::from(1)]).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{ghost}: took {:?}", started.elapsed());
        assert_eq!(error.to_string(), format!("Connection '{ghost}' does not exist."));
    }
    drop(client);
}

#[tokio::test]
async fn a_disconnect_while_waiting_fails_the_call_with_disconnected() {
    let node = node(Config::default()).await;
    let mut client = TestClient::connect(&node, APP).await;
    let connection = id(&client);
    let call = ask::<i64>(lifetime(&node), connection.clone(), 1);
    expect_add(&mut client).await;
    client.socket.close(None).await.unwrap();
    let error = outcome(call).await.unwrap_err();
    assert_eq!(error.to_string(), format!("Connection '{connection}' disconnected."));
}

#[tokio::test]
async fn an_unanswered_call_times_out_and_a_late_completion_is_ignored() {
    let timeout = Duration::from_millis(300);
    let node = node(Config { client_result_timeout: timeout, ..Config::default() }).await;
    let mut client = TestClient::connect(&node, APP).await;
    let connection = id(&client);
    let started = Instant::now();
    let call = ask::<i64>(lifetime(&node), connection.clone(), 1);
    let late = expect_add(&mut client).await;
    let error = outcome(call).await.unwrap_err();
    assert!(started.elapsed() >= timeout, "gave up after {:?}", started.elapsed());
    assert_eq!(error, ClientResultError::Timeout { connection: connection.clone(), timeout });

    client.answer(&late, CompletionOutcome::Value(Value::from(1))).await;
    // The connection lives on, and the late answer does not resolve the next call.
    let call = ask::<i64>(lifetime(&node), connection, 2);
    let next = expect_add(&mut client).await;
    assert_ne!(next.invocation_id, late.invocation_id);
    client.answer(&late, CompletionOutcome::Value(Value::from(666))).await;
    client.answer(&next, CompletionOutcome::Value(Value::from(2))).await;
    assert_eq!(outcome(call).await, Ok(2));
}

#[tokio::test]
async fn a_result_of_the_wrong_type_is_not_deserializable() {
    let node = node(Config::default()).await;
    let mut client = TestClient::connect(&node, APP).await;
    let call = ask::<i64>(lifetime(&node), id(&client), 1);
    let invocation = expect_add(&mut client).await;
    client.answer(&invocation, CompletionOutcome::Value(s("not a number"))).await;
    let error = outcome(call).await.unwrap_err();
    assert_eq!(error.to_string(), "Client result wasn't deserializable to i64.");
}

#[tokio::test]
async fn a_completion_from_another_connection_is_ignored() {
    let node = node(Config::default()).await;
    let mut asked = TestClient::connect(&node, APP).await;
    let mut intruder = TestClient::connect(&node, APP).await;
    let call = ask::<i64>(lifetime(&node), id(&asked), 1);
    let invocation = expect_add(&mut asked).await;
    intruder.answer(&invocation, CompletionOutcome::Value(Value::from(666))).await;
    // The intruder's messages are handled in order: once this round trip is back, its
    // Completion has been seen (and must have been ignored).
    intruder.invoke("RoundTripBarrier", vec![]).await;
    asked.answer(&invocation, CompletionOutcome::Value(Value::from(7))).await;
    assert_eq!(outcome(call).await, Ok(7));
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct CustomObject {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Value")]
    value: i64,
}

#[tokio::test]
async fn a_messagepack_client_answers_too() {
    let node = node(Config::default()).await;
    let mut client = TestClient::connect_with_protocol(&node, APP, Protocol::MessagePack).await;
    let call = ask::<CustomObject>(lifetime(&node), id(&client), 3);
    let invocation = expect_add(&mut client).await;
    assert_eq!(invocation.arguments, vec![Value::from(3)]);
    let object = Value::Map(vec![(s("Name"), s("test")), (s("Value"), Value::from(42))]);
    client.answer(&invocation, CompletionOutcome::Value(object)).await;
    assert_eq!(outcome(call).await, Ok(CustomObject { name: "test".into(), value: 42 }));
}

/// A hub method on one node awaits results from a client on another: value, client error,
/// disconnect, and connections that exist nowhere.
async fn results_cross_nodes(here_node: &TestGateway, there_node: &TestGateway) {
    let mut here = TestClient::connect(here_node, APP).await;
    let mut there = TestClient::connect(there_node, APP).await;
    let there_id = id(&there);

    let call = here.start_invocation("Ask", vec![s(&there_id), s("add"), Value::from(4)]).await;
    let invocation = expect_add(&mut there).await;
    assert_eq!(invocation.arguments, vec![Value::from(4)]);
    there.answer(&invocation, CompletionOutcome::Value(Value::from(8))).await;
    assert_eq!(here.expect_completion(&call).await.outcome, CompletionOutcome::Value(Value::from(8)));

    let call = here.start_invocation("Ask", vec![s(&there_id), s("add"), Value::from(1)]).await;
    let invocation = expect_add(&mut there).await;
    there.answer(&invocation, CompletionOutcome::Error("Error: from callback".into())).await;
    let expected = CompletionOutcome::Error(hub_exception("Ask", "Error: from callback"));
    assert_eq!(here.expect_completion(&call).await.outcome, expected);

    // The result from another node is checked against the type the caller asked for.
    let call = here.start_invocation("Ask", vec![s(&there_id), s("add"), Value::from(1)]).await;
    let invocation = expect_add(&mut there).await;
    there.answer(&invocation, CompletionOutcome::Value(s("text"))).await;
    let expected = CompletionOutcome::Error(hub_exception("Ask", "Client result wasn't deserializable to i64."));
    assert_eq!(here.expect_completion(&call).await.outcome, expected);

    let there_node_id = there_node.gateway.node_id();
    for ghost in [format!("{there_node_id}.ghost"), "gone-node.ghost".to_owned()] {
        let started = Instant::now();
        let error = here.invoke_error("Ask", vec![s(&ghost), s("add"), Value::from(1)]).await;
        assert!(started.elapsed() < Duration::from_secs(2), "{ghost}: took {:?}", started.elapsed());
        assert_eq!(error, hub_exception("Ask", &format!("Connection '{ghost}' does not exist.")));
    }

    let call = here.start_invocation("Ask", vec![s(&there_id), s("add"), Value::from(1)]).await;
    expect_add(&mut there).await;
    there.socket.close(None).await.unwrap();
    let expected = CompletionOutcome::Error(hub_exception("Ask", &format!("Connection '{there_id}' disconnected.")));
    assert_eq!(here.expect_completion(&call).await.outcome, expected);
}

#[tokio::test]
async fn a_client_on_another_node_of_a_shared_memory_bus_returns_results() {
    let bus = MemoryBus::new();
    let here = TestGateway::start_on(Config::default(), Arc::new(bus.node()), routes).await;
    let there = TestGateway::start_on(Config::default(), Arc::new(bus.node()), routes).await;
    results_cross_nodes(&here, &there).await;
}

#[tokio::test]
async fn a_client_on_another_node_returns_results_over_redis() {
    let redis = RedisServer::start().await;
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let config = backplane::RedisConfig { urls: vec![redis.url()], ..Default::default() };
        let backplane = Arc::new(backplane::RedisBackplane::connect(config).unwrap());
        let node = TestGateway::start_on(Config::default(), backplane, routes).await;
        common::eventually("the node to be ready", || node.gateway.readiness().is_ok()).await;
        nodes.push(node);
    }
    results_cross_nodes(&nodes[0], &nodes[1]).await;
}

#[tokio::test]
async fn a_server_invocation_that_awaits_a_result_carries_an_id_and_only_reaches_its_target() {
    let node = node(Config::default()).await;
    let mut target = TestClient::connect(&node, APP).await;
    let mut bystander = TestClient::connect(&node, APP).await;
    let call = ask::<i64>(lifetime(&node), id(&target), 1);
    let invocation = expect_add(&mut target).await;
    target.answer(&invocation, CompletionOutcome::Value(Value::from(1))).await;
    assert_eq!(outcome(call).await, Ok(1));
    bystander.assert_no_invocation("add").await;
    assert!(!matches!(target.take_pending(), Some(HubMessage::Invocation(_))));
}

#[tokio::test]
async fn a_call_to_another_node_times_out_and_its_late_answer_is_ignored() {
    let bus = MemoryBus::new();
    let timeout = Duration::from_millis(300);
    let here_config = Config { client_result_timeout: timeout, ..Config::default() };
    let here_node = TestGateway::start_on(here_config, Arc::new(bus.node()), routes).await;
    let there_node = TestGateway::start_on(Config::default(), Arc::new(bus.node()), routes).await;
    let mut here = TestClient::connect(&here_node, APP).await;
    let mut there = TestClient::connect(&there_node, APP).await;
    let there_id = id(&there);

    let error = here.invoke_error("Ask", vec![s(&there_id), s("add"), Value::from(1)]).await;
    let expected = ClientResultError::Timeout { connection: there_id.clone(), timeout };
    assert_eq!(error, hub_exception("Ask", &expected.to_string()));
    let late = expect_add(&mut there).await;
    there.answer(&late, CompletionOutcome::Value(Value::from(1))).await;

    let call = here.start_invocation("Ask", vec![s(&there_id), s("add"), Value::from(2)]).await;
    let next = expect_add(&mut there).await;
    there.answer(&next, CompletionOutcome::Value(Value::from(2))).await;
    assert_eq!(here.expect_completion(&call).await.outcome, CompletionOutcome::Value(Value::from(2)));
}
