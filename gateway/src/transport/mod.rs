//! HTTP endpoints of a hub: negotiate and the transports.
//!
//! | Request | Handler |
//! |---|---|
//! | `POST {hub}/negotiate` | [`negotiate`]: create a connection, list transports |
//! | `GET {hub}` with a WebSocket upgrade | [`websocket`]: run the connection |
//! | `GET {hub}` otherwise | 404: Server-Sent Events and long polling are not offered |
//! | `POST {hub}?id=` / `DELETE {hub}?id=` | the send and terminate requests of the HTTP transports |
//! | any other method | 405 |
//!
//! Status codes and texts are those of the official server, which clients report to users.

pub(crate) mod connections;
mod negotiate;
pub mod query;
pub(crate) mod resumable;
mod websocket;

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::cluster::HubLifetime;
use crate::connection::{ConnectionInfo, TransportKind};
use crate::hub::Hub;
use crate::server::Gateway;
use query::QueryParams;

/// Longest hub name the relay accepts, in bytes.
const MAX_HUB_NAME: usize = 128;

/// A mounted hub: either one fixed hub, or the relay hub for every name under a path.
#[derive(Clone)]
pub(crate) struct Endpoint {
    gateway: Arc<Gateway>,
    hub: Hub,
    fixed_name: Option<String>,
}

impl Endpoint {
    /// Routes for every hub name: `/hubs/{hub}` and `/hubs/{hub}/negotiate`.
    pub fn per_name(gateway: Arc<Gateway>, hub: Hub) -> Router {
        let endpoint = Self { gateway, hub, fixed_name: None };
        Router::new()
            .route("/hubs/{hub}/negotiate", post(negotiate_named))
            .route("/hubs/{hub}", get(connect_named).post(send_named).delete(delete_named))
            .with_state(endpoint)
    }

    /// Routes for one hub, to be nested at the path of the application's choice.
    pub fn fixed(gateway: Arc<Gateway>, name: &str, hub: Hub) -> Router {
        let endpoint = Self { gateway, hub, fixed_name: Some(name.to_lowercase()) };
        Router::new()
            .route("/negotiate", post(negotiate_fixed))
            .route("/", get(connect_fixed).post(send_fixed).delete(delete_fixed))
            .with_state(endpoint)
    }

    /// The hub a request is for, created on first use. The error is the response to send.
    #[allow(clippy::result_large_err)]
    fn lifetime(&self, requested: Option<String>) -> Result<Arc<HubLifetime>, Response> {
        let name = match (&self.fixed_name, requested) {
            (Some(fixed), _) => fixed.clone(),
            (None, Some(name)) if !name.is_empty() && name.len() <= MAX_HUB_NAME => name,
            _ => return Err(text(StatusCode::NOT_FOUND, "Unknown hub")),
        };
        self.gateway
            .hubs
            .get_or_insert(&name, &self.hub)
            .ok_or_else(|| text(StatusCode::NOT_FOUND, "Hub limit reached"))
    }
}

/// A `text/plain` response, as the official server sends for transport errors.
pub(crate) fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// The refusal for a missing or bad token: 401 with an empty body.
pub(crate) fn unauthorized() -> Response {
    StatusCode::UNAUTHORIZED.into_response()
}

async fn negotiate_named(
    State(e): State<Endpoint>,
    Path(hub): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    negotiate::negotiate(&e, Some(hub), &headers, &QueryParams::parse(q.as_deref()))
}

async fn negotiate_fixed(State(e): State<Endpoint>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    negotiate::negotiate(&e, None, &headers, &QueryParams::parse(q.as_deref()))
}

async fn connect_named(
    State(e): State<Endpoint>,
    Path(hub): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    connect(&e, Some(hub), &headers, &QueryParams::parse(q.as_deref()), upgrade)
}

async fn connect_fixed(
    State(e): State<Endpoint>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    connect(&e, None, &headers, &QueryParams::parse(q.as_deref()), upgrade)
}

async fn send_named(State(e): State<Endpoint>, Path(hub): Path<String>, RawQuery(q): RawQuery) -> Response {
    http_request(&e, Some(hub), &QueryParams::parse(q.as_deref()), HttpRequest::Send)
}

async fn send_fixed(State(e): State<Endpoint>, RawQuery(q): RawQuery) -> Response {
    http_request(&e, None, &QueryParams::parse(q.as_deref()), HttpRequest::Send)
}

async fn delete_named(State(e): State<Endpoint>, Path(hub): Path<String>, RawQuery(q): RawQuery) -> Response {
    http_request(&e, Some(hub), &QueryParams::parse(q.as_deref()), HttpRequest::Terminate)
}

async fn delete_fixed(State(e): State<Endpoint>, RawQuery(q): RawQuery) -> Response {
    http_request(&e, None, &QueryParams::parse(q.as_deref()), HttpRequest::Terminate)
}

/// A GET on the hub URL: a WebSocket upgrade, or a transport this endpoint does not offer.
fn connect(
    endpoint: &Endpoint,
    hub: Option<String>,
    headers: &HeaderMap,
    query: &QueryParams,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        let event_stream =
            headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/event-stream"));
        return if event_stream {
            text(StatusCode::NOT_FOUND, "ServerSentEvents transport not supported by this end point type")
        } else {
            text(StatusCode::NOT_FOUND, "LongPolling transport not supported by this end point type")
        };
    };
    let identity = match endpoint.gateway.auth.authenticate(headers, query) {
        Ok(identity) => identity,
        Err(error) => {
            tracing::info!(%error, "websocket connect refused");
            return unauthorized();
        }
    };
    let lifetime = match endpoint.lifetime(hub) {
        Ok(lifetime) => lifetime,
        Err(response) => return response,
    };
    let info = ConnectionInfo::new(TransportKind::WebSockets, headers, query);
    websocket::accept(endpoint.gateway.clone(), lifetime, upgrade, query.get("id"), identity, info)
}

enum HttpRequest {
    Send,
    Terminate,
}

/// POST (send) and DELETE (terminate) address HTTP-transport connections. Every connection
/// here is a WebSocket one, so these only ever answer with the official errors.
fn http_request(endpoint: &Endpoint, hub: Option<String>, query: &QueryParams, request: HttpRequest) -> Response {
    let Some(token) = query.get("id") else {
        return text(StatusCode::BAD_REQUEST, "Connection ID required");
    };
    let lifetime = match endpoint.lifetime(hub) {
        Ok(lifetime) => lifetime,
        Err(response) => return response,
    };
    match (endpoint.gateway.connections.lookup(token, lifetime.name()), request) {
        (None, _) => text(StatusCode::NOT_FOUND, "No Connection with that ID"),
        (Some(true), HttpRequest::Send) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "POST requests are not allowed for WebSocket connections.")
        }
        (Some(false), HttpRequest::Send) => {
            text(StatusCode::NOT_FOUND, "LongPolling transport not supported by this end point type")
        }
        (Some(_), HttpRequest::Terminate) => {
            text(StatusCode::BAD_REQUEST, "Cannot terminate this connection using the DELETE endpoint.")
        }
    }
}
