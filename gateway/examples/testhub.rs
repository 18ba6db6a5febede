//! The hub the conformance suite drives with the official clients: the methods of the official
//! client's own functional-test hub, served the way its test server serves them.
//!
//! Run it with `cargo run -p gateway --example testhub` (it takes the gateway's flags, e.g.
//! `--listen 127.0.0.1:0`, and prints `listening on http://…`). Routes:
//!
//! | Route | What |
//! |---|---|
//! | `/testhub` | the test hub on every transport |
//! | `/testhub-nowebsockets` | the same hub on Server-Sent Events and long polling only |
//! | `GET /clientresult/{connectionId}` | asks that client's `Result` method for an int; answers with it or the error text |
//! | `POST /redirect/negotiate` | a negotiate redirect to `/testhub?numRedirects=n+1` |
//! | `POST /redirect-with-token/negotiate` | a redirect to `/testhub` with an `accessToken` for user `redirected-user` (needs `--jwt-secret`) |
//!
//! Every negotiate response sets the cookies `testCookie=testValue`, `testCookie2=testValue2`
//! and an already expired `expiredCookie`, and errors are detailed, as in the official test
//! server.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::header::{HeaderValue, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use futures_util::{stream, StreamExt};
use gateway::connection::TransportKind;
use gateway::hub::{Hub, HubContext, HubError, UploadStream};
use gateway::{Config, Gateway};
use protocol::Value;
use serde::{Deserialize, Serialize};

/// The object `SendCustomObject` takes and hands back to the caller's `CustomObject` method.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CustomObject {
    name: String,
    value: i64,
}

/// The value `SendComplexObject` returns: bytes, a timestamp, a GUID, ints and a string.
fn complex_object() -> Value {
    // 2000-01-01T00:00:00Z as a MessagePack timestamp (ext -1, 32-bit seconds); JSON clients
    // get it as RFC 3339 text.
    let seconds: u32 = 946_684_800;
    Value::Map(vec![
        (Value::from("String"), Value::from("hello world")),
        (Value::from("IntArray"), Value::Array(vec![Value::from(1), Value::from(2), Value::from(3)])),
        (Value::from("ByteArray"), Value::Binary(vec![1, 2, 3])),
        (Value::from("Guid"), Value::from("00010203-0405-0607-0706-050403020100")),
        (Value::from("DateTime"), Value::Ext(-1, seconds.to_be_bytes().to_vec())),
    ])
}

fn test_hub() -> Hub {
    Hub::builder()
        .method("Echo", |_ctx: HubContext, (message,): (Value,)| async move { Ok::<_, HubError>(message) })
        .method("GetCallerConnectionId", |ctx: HubContext, ()| async move {
            Ok::<_, HubError>(ctx.connection_id().to_owned())
        })
        .method("GetNumRedirects", |ctx: HubContext, ()| async move {
            Ok::<_, HubError>(ctx.query("numRedirects").and_then(|n| n.parse::<i64>().ok()).unwrap_or(0))
        })
        .method("ThrowException", |_ctx: HubContext, (message,): (String,)| async move {
            Err::<(), _>(HubError::exception("InvalidOperationException", message))
        })
        .method("InvokeWithString", |ctx: HubContext, (message,): (String,)| async move {
            ctx.clients().caller().send("Message", (message,)).await?;
            Ok::<_, HubError>(())
        })
        .method("SendCustomObject", |ctx: HubContext, (object,): (CustomObject,)| async move {
            ctx.clients().caller().send("CustomObject", (object,)).await?;
            Ok::<_, HubError>(())
        })
        .method("GetUser", |ctx: HubContext, ()| async move { Ok::<_, HubError>(ctx.user_id().map(str::to_owned)) })
        .method("GetActiveTransportName", |ctx: HubContext, ()| async move { Ok::<_, HubError>(ctx.transport()) })
        .method("EchoComplexObject", |_ctx: HubContext, (object,): (Value,)| async move { Ok::<_, HubError>(object) })
        .method("SendComplexObject", |_ctx: HubContext, ()| async move { Ok::<_, HubError>(complex_object()) })
        .method("GetContentTypeHeader", |ctx: HubContext, ()| async move {
            Ok::<_, HubError>(ctx.header("content-type").map(str::to_owned))
        })
        .method("GetHeader", |ctx: HubContext, (name,): (String,)| async move {
            Ok::<_, HubError>(ctx.header(&name).map(str::to_owned))
        })
        .method("GetCookie", |ctx: HubContext, (name,): (String,)| async move {
            Ok::<_, HubError>(ctx.cookie(&name).map(str::to_owned))
        })
        .method("StreamingConcat", |_ctx: HubContext, (parts,): (UploadStream<String>,)| async move {
            let mut joined = String::new();
            let mut parts = std::pin::pin!(parts);
            while let Some(part) = parts.next().await {
                joined.push_str(&part?);
            }
            Ok::<_, HubError>(joined)
        })
        .stream_method("Stream", |_ctx: HubContext, ()| async move {
            Ok::<_, HubError>(stream::iter(["a", "b", "c"].map(Ok::<_, HubError>)))
        })
        .stream_method("EmptyStream", |_ctx: HubContext, ()| async move {
            Ok::<_, HubError>(stream::empty::<Result<i64, HubError>>())
        })
        .stream_method("StreamThrowException", |_ctx: HubContext, (message,): (String,)| async move {
            Err::<stream::Empty<Result<i64, HubError>>, _>(HubError::exception("InvalidOperationException", message))
        })
        .stream_method("InfiniteStream", |ctx: HubContext, ()| async move {
            let cancelled = ctx.cancellation();
            tokio::spawn(async move {
                cancelled.cancelled().await;
                let _ = ctx.clients().caller().send("StreamCanceled", ()).await;
            });
            let ticks = tokio_stream_of_ticks(Duration::from_millis(100));
            Ok::<_, HubError>(ticks)
        })
        .build()
}

/// 1, 2, 3, … one per `period`, forever.
fn tokio_stream_of_ticks(period: Duration) -> impl futures_util::Stream<Item = Result<i64, HubError>> {
    stream::unfold(0_i64, move |n| async move {
        tokio::time::sleep(period).await;
        Some((Ok(n + 1), n + 1))
    })
}

/// `GET /clientresult/{connectionId}`: the client's answer to `Result()` as text.
async fn client_result(State(gateway): State<Arc<Gateway>>, Path(connection_id): Path<String>) -> String {
    let Some(hub) = gateway.hub("testhub") else { return format!("Connection '{connection_id}' does not exist.") };
    match hub.invoke_client::<i64>(&connection_id, "Result", Vec::new()).await {
        Ok(value) => value.to_string(),
        Err(error) => error.to_string(),
    }
}

/// `POST /redirect/negotiate`: sends the client on to the test hub, counting the hops.
async fn redirect(headers: HeaderMap, RawQuery(query): RawQuery) -> Json<serde_json::Value> {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let redirects = query
        .as_deref()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("numRedirects=")))
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    Json(serde_json::json!({ "url": format!("http://{host}/testhub?numRedirects={}", redirects + 1) }))
}

/// `POST /redirect-with-token/negotiate`: a redirect that also hands the client a token (for
/// user `redirected-user`, signed with `--jwt-secret`), as a service in front of hubs does; the
/// client then presents it on every request.
async fn redirect_with_token(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let Some(secret) = gateway.config().jwt_secret.as_deref() else {
        return (StatusCode::NOT_FOUND, "start the test hub with --jwt-secret").into_response();
    };
    let expires =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs() + 3600;
    let claims = serde_json::json!({ "sub": "redirected-user", "exp": expires });
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let Ok(token) = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    Json(serde_json::json!({ "url": format!("http://{host}/testhub"), "accessToken": token })).into_response()
}

/// Sets the test cookies on every negotiate response.
async fn negotiate_cookies(request: Request, next: Next) -> Response {
    let is_negotiate = request.uri().path().ends_with("/negotiate");
    let mut response = next.run(request).await;
    if is_negotiate {
        for cookie in [
            "testCookie=testValue; Path=/",
            "testCookie2=testValue2; Path=/",
            "expiredCookie=doesntmatter; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        ] {
            response.headers_mut().append(SET_COOKIE, HeaderValue::from_static(cookie));
        }
    }
    response.into_response()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config { detailed_errors: true, ..Config::parse() };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    // The backplane the flags ask for: `--backplane redis` runs this hub on several nodes.
    let gateway = Gateway::from_config(config.clone()).await?;
    let hub = test_hub();
    let http_only = [TransportKind::ServerSentEvents, TransportKind::LongPolling];
    let app = Router::new()
        .route("/clientresult/{connection_id}", get(client_result))
        .route("/redirect/negotiate", post(redirect))
        .route("/redirect-with-token/negotiate", post(redirect_with_token))
        .with_state(gateway.clone())
        .nest("/testhub", gateway.hub_router("testhub", hub.clone()))
        .nest("/testhub-nowebsockets", gateway.hub_router_with_transports("testhub", hub, &http_only))
        .merge(gateway.health_router())
        .layer(axum::middleware::from_fn(negotiate_cookies));
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    gateway::serve(listener, gateway, app, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
