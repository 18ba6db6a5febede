//! The Rust hub API: an application hub with typed methods, mounted on its own route, seen
//! through real sockets.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::Conversation;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use common::{fast_config, s, TestClient, TestGateway};
use gateway::hub::{Hub, HubContext, HubError};
use gateway::Config;
use protocol::{CompletionOutcome, HubMessage, Invocation, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

const PATH: &str = "/app/game";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Move {
    x: i32,
    y: i32,
    label: String,
}

/// A hub exercising every part of the API; `release` lets the test finish `Slow` calls.
fn game_hub(release: Arc<Notify>) -> Hub {
    Hub::builder()
        .on_connected(|ctx: HubContext| async move {
            let _ = ctx.clients().caller().send("welcome", (ctx.connection_id(),)).await;
        })
        .on_disconnected(|ctx: HubContext| async move {
            let _ = ctx.clients().all().send("left", (ctx.connection_id(),)).await;
        })
        .method("Add", |_ctx: HubContext, (a, b): (i64, i64)| async move { Ok::<_, HubError>(a + b) })
        .method("Mirror", |_ctx: HubContext, (m,): (Move,)| async move {
            Ok::<_, HubError>(Move { x: -m.x, y: -m.y, label: m.label })
        })
        .method("Nothing", |_ctx: HubContext, ()| async move { Ok::<Option<i32>, HubError>(None) })
        .method("Fail", |_ctx: HubContext, (reason,): (String,)| async move { Err::<(), _>(HubError::hub(reason)) })
        .method("Crash", |_ctx: HubContext, ()| async move { Err::<(), _>(HubError::internal("database on fire")) })
        .method("WhoAmI", |ctx: HubContext, ()| async move {
            Ok::<_, HubError>((
                ctx.connection_id().to_owned(),
                ctx.user_id().map(str::to_owned),
                ctx.hub_name().to_owned(),
            ))
        })
        .method("Slow", move |_ctx: HubContext, ()| {
            let release = release.clone();
            async move {
                release.notified().await;
                Ok::<_, HubError>("slow done")
            }
        })
        .method("Broadcast", |ctx: HubContext, (kind, group, text): (String, String, String)| async move {
            let clients = ctx.clients();
            let recipients = match kind.as_str() {
                "all" => clients.all(),
                "others" => clients.others(),
                "group" => clients.group(&group),
                "others_in_group" => clients.others_in_group(&group),
                "user" => clients.user(&group),
                "connection" => clients.connection(&group),
                _ => return Err(HubError::hub("unknown kind")),
            };
            recipients.send("broadcast", (text,)).await?;
            Ok(())
        })
        .method("Enlist", |ctx: HubContext, (connection, group): (String, String)| async move {
            ctx.groups().add(&connection, &group).await?;
            Ok::<_, HubError>(())
        })
        .method("Discharge", |ctx: HubContext, (connection, group): (String, String)| async move {
            ctx.groups().remove(&connection, &group).await?;
            Ok::<_, HubError>(())
        })
        .build()
}

async fn start(config: Config) -> (TestGateway, Arc<Notify>) {
    let release = Arc::new(Notify::new());
    let hub = game_hub(release.clone());
    let gateway = TestGateway::start_with(config, |g| Router::new().nest(PATH, g.hub_router("game", hub))).await;
    (gateway, release)
}

async fn connect(gateway: &TestGateway) -> TestClient {
    let mut client = TestClient::connect(gateway, PATH).await;
    let welcome = client.expect_invocation("welcome").await;
    assert_eq!(welcome.arguments, vec![s(client.connection_id.as_deref().unwrap())]);
    client
}

#[tokio::test]
async fn typed_arguments_and_results_round_trip() {
    let (gateway, _) = start(Config::default()).await;
    let mut client = connect(&gateway).await;
    assert_eq!(client.invoke_value("Add", vec![Value::from(2), Value::from(40)]).await, Value::from(42));
    let result = client
        .invoke_value("mirror", vec![protocol::value::to_value(&Move { x: 1, y: -2, label: "é".into() }).unwrap()])
        .await;
    assert_eq!(protocol::value::from_value::<Move>(result).unwrap(), Move { x: -1, y: 2, label: "é".into() });
    assert_eq!(client.invoke_value("Nothing", vec![]).await, Value::Nil, "None is sent as null");
}

#[tokio::test]
async fn errors_become_completion_errors() {
    let (gateway, _) = start(Config::default()).await;
    let mut client = connect(&gateway).await;
    assert_eq!(
        client.invoke_error("Fail", vec![s("not your turn")]).await,
        "An unexpected error occurred invoking 'Fail' on the server. HubException: not your turn"
    );
    assert_eq!(
        client.invoke_error("Crash", vec![]).await,
        "An unexpected error occurred invoking 'Crash' on the server."
    );
    assert_eq!(
        client.invoke_error("Add", vec![s("two"), Value::from(1)]).await,
        "Failed to invoke 'Add' due to an error on the server."
    );
}

#[tokio::test]
async fn a_method_sees_its_caller() {
    let (gateway, _) = start(Config::default()).await;
    let mut client = connect(&gateway).await;
    let id = client.connection_id.clone().unwrap();
    assert_eq!(client.invoke_value("WhoAmI", vec![]).await, Value::Array(vec![s(&id), Value::Nil, s("game")]));
}

#[tokio::test]
async fn with_parallel_invocations_a_slow_method_does_not_block_pings_or_other_calls() {
    let (gateway, release) = start(Config { max_parallel_invocations: 2, ..fast_config() }).await;
    let mut client = connect(&gateway).await;
    client.send(&HubMessage::Ping).await;
    let slow = Invocation { invocation_id: Some("slow".into()), target: "Slow".into(), ..Invocation::default() };
    client.send(&HubMessage::Invocation(slow)).await;
    // While Slow runs: other calls complete, and pinging keeps the connection past several
    // client-timeout periods (900 ms each).
    for _ in 0..4 {
        client.send(&HubMessage::Ping).await;
        assert_eq!(client.invoke_value("Add", vec![Value::from(1), Value::from(1)]).await, Value::from(2));
        client.expect("a server ping", |m| (*m == HubMessage::Ping).then_some(())).await;
    }
    release.notify_one();
    let outcome = client
        .expect("the slow completion", |m| match m {
            HubMessage::Completion(c) if c.invocation_id == "slow" => Some(c.outcome.clone()),
            _ => None,
        })
        .await;
    assert_eq!(outcome, CompletionOutcome::Value(s("slow done")));
}

#[tokio::test]
async fn by_default_a_connections_calls_run_one_at_a_time_in_order() {
    let (gateway, release) = start(fast_config()).await;
    let mut client = connect(&gateway).await;
    let slow = Invocation { invocation_id: Some("slow".into()), target: "Slow".into(), ..Invocation::default() };
    client.send(&HubMessage::Invocation(slow)).await;
    let add = client.start_invocation("Add", vec![Value::from(1), Value::from(1)]).await;
    // A keep-alive Ping comes only after a quiet interval: Add has not answered meanwhile.
    client.expect("a server ping", |m| (*m == HubMessage::Ping).then_some(())).await;
    assert!(client.take_pending().is_none(), "nothing but the ping while Slow runs");
    release.notify_one();
    let first = client
        .expect("the first completion", |m| match m {
            HubMessage::Completion(c) => Some(c.invocation_id.clone()),
            _ => None,
        })
        .await;
    assert_eq!(first, "slow", "Add waits for Slow");
    assert_eq!(client.expect_completion(&add).await.outcome, CompletionOutcome::Value(Value::from(2)));
}

#[tokio::test]
async fn a_method_can_send_to_every_kind_of_audience() {
    let (gateway, _) = start(Config::default()).await;
    let mut a = connect(&gateway).await;
    let mut b = connect(&gateway).await;
    let b_id = b.connection_id.clone().unwrap();
    a.invoke_void("Enlist", vec![s(&b_id), s("team")]).await;
    a.invoke_void("Enlist", vec![s(a.connection_id.as_deref().unwrap()), s("team")]).await;

    for (kind, target, a_gets, b_gets) in [
        ("all", "", true, true),
        ("others", "", false, true),
        ("group", "team", true, true),
        ("others_in_group", "team", false, true),
        ("connection", b_id.as_str(), false, true),
    ] {
        a.invoke_void("Broadcast", vec![s(kind), s(target), s(kind)]).await;
        if b_gets {
            assert_eq!(b.expect_invocation("broadcast").await.arguments, vec![s(kind)], "{kind}");
        }
        if a_gets {
            assert_eq!(a.expect_invocation("broadcast").await.arguments, vec![s(kind)], "{kind}");
        }
        a.assert_no_invocation("broadcast").await;
        b.assert_no_invocation("broadcast").await;
    }

    a.invoke_void("Discharge", vec![s(&b_id), s("team")]).await;
    a.invoke_void("Broadcast", vec![s("group"), s("team"), s("after")]).await;
    assert_eq!(a.expect_invocation("broadcast").await.arguments, vec![s("after")]);
    b.assert_no_invocation("broadcast").await;
}

#[tokio::test]
async fn adding_a_connection_that_does_not_exist_fails_quickly() {
    let (gateway, _) = start(Config::default()).await;
    let mut a = connect(&gateway).await;
    let error = tokio::time::timeout(Duration::from_secs(2), a.invoke_error("Enlist", vec![s("ghost"), s("team")]))
        .await
        .expect("an answer within 2 s");
    assert_eq!(
        error,
        "An unexpected error occurred invoking 'Enlist' on the server. HubException: Connection 'ghost' does not exist."
    );
}

#[tokio::test]
async fn disconnect_hooks_run_after_the_connection_is_gone() {
    let (gateway, _) = start(Config::default()).await;
    let mut a = connect(&gateway).await;
    let b = connect(&gateway).await;
    let b_id = b.connection_id.clone().unwrap();
    drop(b);
    assert_eq!(a.expect_invocation("left").await.arguments, vec![s(&b_id)]);
}
