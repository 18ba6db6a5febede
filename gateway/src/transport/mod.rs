//! HTTP endpoints of a hub: negotiate and the transports.
//!
//! | Request | Handler |
//! |---|---|
//! | `POST {hub}/negotiate` | [`negotiate`]: create a connection, list the offered transports |
//! | `GET {hub}` with a WebSocket upgrade | [`websocket`]: the whole connection on one socket |
//! | `GET {hub}?id=` accepting `text/event-stream` | [`sse`]: the server→client event stream |
//! | `GET {hub}?id=` otherwise | [`long_polling`]: one poll |
//! | `POST {hub}?id=` | client→server messages of the HTTP transports ([`http`]), also before the first GET |
//! | `DELETE {hub}?id=` | ends a long-polling connection |
//! | any other method | 405 |
//!
//! The relay endpoint also serves every hub at Azure SignalR's client endpoint,
//! `/client/?hub=NAME` (negotiate at `/client/negotiate?hub=NAME`), as at `/hubs/NAME`, so a
//! backend that hands its clients Azure-style URLs and tokens works unchanged. A hub whose
//! events an upstream rule takes runs the upstream hub ([`crate::hub`]), and a hub with a
//! `connect` rule asks its backend before admitting a connection ([`gate`]).
//!
//! Status codes and texts are those of the official server, which clients report to users.
//! Requests that would create a connection (negotiate, a WebSocket that skipped it) are
//! checked against the node's limits first ([`crate::limits`]): 503 for a full node, 429 for a
//! user at its limit or an address opening connections too fast, each with `Retry-After`.
//! From the moment the node begins to shut down, negotiate and every request that would start
//! a connection answer 503 (see [`crate::server`]); requests of running connections go on.

pub(crate) mod connections;
mod gate;
pub(crate) mod http;
mod long_polling;
mod negotiate;
mod peer_names;
pub use crate::query;
pub(crate) mod resumable;
mod side_by_side;
mod sse;
pub(crate) mod stateless;
pub(crate) mod token;
mod websocket;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, OriginalUri, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Authenticator, Identity};
use crate::cluster::{HubLifetime, HubTable, Node, MAX_HUB_NAME};
use crate::connection::session::SessionEnv;
use crate::cors::{AllowedOrigins, OriginGuard};
use crate::forwarded::{Peer, TrustedProxies};
use crate::hub::{Hub, HubLogic};
use crate::limits::{Limits, Permit};
use crate::query::QueryParams;
use crate::request::{ConnectionInfo, TransportKind};
use crate::upstream::admission::Admission;
use crate::upstream::Upstream;
use connections::ConnectionTable;
use connections::{BindError, Binding, Joined, PostTarget};
use stateless::{Place, Stateless};

/// The transports' settings (see the options of the same names), built once from the
/// configuration by the composition root.
#[derive(Debug, Clone)]
pub(crate) struct TransportSettings {
    pub transports: Vec<TransportKind>,
    pub max_websocket_message: usize,
    pub max_post_body: usize,
    pub outbound_queue_bytes: usize,
    pub stateful_reconnect: bool,
    pub keep_alive_interval: Duration,
    pub send_timeout: Duration,
    /// The writers' coalescing clock (`--flush-delay`); none writes every message at once.
    pub flush_clock: Option<Arc<crate::queue::flush_clock::FlushClock>>,
    pub disconnect_timeout: Duration,
    pub poll_timeout: Duration,
    /// Which browser origins may use the hubs (`--cors-allowed-origins`, see [`crate::cors`]).
    pub cors: AllowedOrigins,
}

/// What the transports share: their settings, the token table of negotiated connections and
/// the resumable grants, the authenticator, the node's hub lifetimes and what sessions run
/// with. The composition root (`server.rs`) builds it once per node and reads its tables (to
/// reap them, and to wait for long-polling clients at shutdown); nothing here knows the node's
/// other parts.
pub(crate) struct TransportState {
    pub config: TransportSettings,
    pub auth: Authenticator,
    pub node: Arc<Node>,
    pub hubs: Arc<HubTable>,
    pub connections: ConnectionTable,
    /// The node's connection limits (`--max-connections`, per user, per address).
    pub limits: Limits,
    /// Whose `X-Forwarded-For` names the client address.
    pub proxies: TrustedProxies,
    pub resumable: resumable::Resumable,
    pub sessions: Arc<SessionEnv>,
    pub tasks: TaskTracker,
    /// The upstream webhooks' client, when rules are configured.
    pub upstream: Option<Arc<Upstream>>,
    /// With `--cluster-secret`: signed tokens, claims and forwarding (see [`stateless`]).
    pub stateless: Option<Stateless>,
    /// Cancelled the moment shutdown begins: from then on no connection is admitted.
    pub draining: CancellationToken,
}

impl TransportState {
    /// Whether the node has begun to shut down (new connections are refused).
    pub fn is_shutting_down(&self) -> bool {
        self.draining.is_cancelled()
    }
}

/// A mounted hub: either one fixed hub, or the relay hub for every name under a path.
#[derive(Clone)]
pub(crate) struct Endpoint {
    state: Arc<TransportState>,
    hub: Arc<HubLogic>,
    fixed_name: Option<String>,
    /// The transports offered, in the order negotiate lists them.
    transports: Arc<[TransportKind]>,
    /// For the endpoint of every name: the upstream hub, run for names an upstream rule takes.
    upstream_hub: Option<Arc<HubLogic>>,
}

impl Endpoint {
    /// Routes for every hub name: `/hubs/{hub}` and `/hubs/{hub}/negotiate`, and the same hubs
    /// at Azure's client endpoint, `/client/?hub={hub}` and `/client/negotiate?hub={hub}`.
    pub fn per_name(state: Arc<TransportState>, hub: Hub) -> Router {
        let transports = offered(&state.config.transports);
        let upstream_hub = state.upstream.clone().map(|upstream| Arc::new(HubLogic::Upstream(upstream)));
        let guard = origin_guard(&state);
        let endpoint = Self { state, hub: Arc::new(hub.into()), fixed_name: None, transports, upstream_hub };
        let routes = Router::new()
            .route("/hubs/{hub}/negotiate", post(negotiate_any))
            .route("/hubs/{hub}", get(connect_any).post(send_any).delete(delete_any))
            .route("/client/negotiate", post(negotiate_any))
            .route("/client/", get(connect_any).post(send_any).delete(delete_any))
            .route("/client", get(connect_any).post(send_any).delete(delete_any))
            .with_state(endpoint);
        guard.protect(routes)
    }

    /// Routes for one hub offering `transports`, to be nested at the path of the application's
    /// choice.
    pub fn fixed(state: Arc<TransportState>, name: &str, hub: Hub, transports: &[TransportKind]) -> Router {
        let transports = offered(transports);
        let fixed_name = Some(name.to_lowercase());
        let guard = origin_guard(&state);
        let endpoint = Self { state, hub: Arc::new(hub.into()), fixed_name, transports, upstream_hub: None };
        let routes = Router::new()
            .route("/negotiate", post(negotiate_any))
            .route("/", get(connect_any).post(send_any).delete(delete_any))
            .with_state(endpoint);
        guard.protect(routes)
    }

    /// The (lower-case) name of the hub a request is for. The error is the response to send.
    #[allow(clippy::result_large_err)]
    fn hub_name(&self, requested: Option<&str>) -> Result<String, Response> {
        match (&self.fixed_name, requested) {
            (Some(fixed), _) => Ok(fixed.clone()),
            (None, Some(name)) if !name.is_empty() && name.len() <= MAX_HUB_NAME => Ok(name.to_lowercase()),
            _ => Err(text(StatusCode::NOT_FOUND, "Unknown hub")),
        }
    }

    /// The hub a request is for, created on first use. The error is the response to send.
    #[allow(clippy::result_large_err)]
    fn lifetime(&self, requested: Option<&str>) -> Result<Arc<HubLifetime>, Response> {
        let name = self.hub_name(requested)?;
        self.lifetime_of(&name)
    }

    /// The hub named `name`, created on first use.
    #[allow(clippy::result_large_err)]
    fn lifetime_of(&self, name: &str) -> Result<Arc<HubLifetime>, Response> {
        self.state.hubs.get_or_insert(name).ok_or_else(|| text(StatusCode::NOT_FOUND, "Hub limit reached"))
    }

    fn offers(&self, transport: TransportKind) -> bool {
        self.transports.contains(&transport)
    }

    /// What runs the calls of hub `name`: the upstream hub when a rule takes its messages,
    /// else this endpoint's hub.
    fn logic(&self, name: &str) -> Arc<HubLogic> {
        match (&self.upstream_hub, &self.state.upstream) {
            (Some(logic), Some(upstream)) if upstream.serves_messages(name) => logic.clone(),
            _ => self.hub.clone(),
        }
    }

    /// The upstream whose connect hook gates hub `name`, if a rule names it.
    fn connect_hook(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.state.upstream.as_ref().filter(|upstream| upstream.has_connect_hook(name))
    }

    /// Where a request presenting `token` for hub `name` is served: here, unless nodes are
    /// stateless and another node holds the connection (see [`stateless`]).
    async fn locate(&self, name: &str, token: &str, headers: &HeaderMap) -> Result<Place, Response> {
        let Some(stateless) = &self.state.stateless else { return Ok(Place::Here) };
        let tables = (&self.state.connections, &self.state.resumable, &self.state.limits);
        stateless.locate(tables, token, name, stateless::was_forwarded(headers)).await
    }

    /// Passes a request to the node at `address`, which holds its connection.
    async fn forward(
        &self,
        address: &str,
        method: Method,
        (uri, headers): (&Uri, &HeaderMap),
        body: Bytes,
    ) -> Response {
        match &self.state.stateless {
            Some(stateless) => stateless.forward(address, method, uri, headers, body).await,
            None => no_such_connection("another node holds it, and nodes are not stateless"),
        }
    }

    /// Who a request for hub `name` is: its token checked (optional where a connect hook
    /// decides), then what the hook set at negotiate for connection `token`, if anything.
    #[allow(clippy::result_large_err)]
    fn identify(
        &self,
        name: &str,
        headers: &HeaderMap,
        query: &QueryParams,
        token: Option<&str>,
    ) -> Result<(Identity, Option<Arc<Admission>>), Response> {
        let hooked = self.connect_hook(name).is_some();
        let identity = self.state.auth.authenticate_for(Some(name), headers, query, hooked).map_err(|error| {
            tracing::info!(%error, "request refused");
            unauthorized()
        })?;
        let admission = token.filter(|_| hooked).and_then(|token| self.state.connections.admission(token, name));
        Ok((gate::admitted(identity, admission.as_deref()), admission))
    }
}

/// The browser-origin rules of every hub route: CORS for the HTTP requests, the origin check
/// of WebSocket upgrades.
fn origin_guard(state: &TransportState) -> OriginGuard {
    OriginGuard::hubs(state.config.cors.clone(), state.sessions.metrics.clone())
}

/// `transports` without repeats, in negotiate order.
fn offered(transports: &[TransportKind]) -> Arc<[TransportKind]> {
    TransportKind::ALL.into_iter().filter(|t| transports.contains(t)).collect()
}

/// The refusal for a transport the endpoint does not offer.
fn not_offered(transport: TransportKind) -> Response {
    let body = match transport {
        TransportKind::WebSockets => "WebSockets transport not supported by this end point type",
        TransportKind::ServerSentEvents => "ServerSentEvents transport not supported by this end point type",
        TransportKind::LongPolling => "LongPolling transport not supported by this end point type",
    };
    text(StatusCode::NOT_FOUND, body)
}

/// A `text/plain` response, as the official server sends for transport errors.
pub(crate) fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// The refusal of a new connection while the node shuts down: 503, which clients treat as a
/// failed attempt and retry, reaching another node.
pub(crate) fn shutting_down() -> Response {
    text(StatusCode::SERVICE_UNAVAILABLE, "The server is shutting down")
}

/// The refusal for a missing or bad token: 401 with an empty body.
pub(crate) fn unauthorized() -> Response {
    StatusCode::UNAUTHORIZED.into_response()
}

/// What every hub request carries besides its body and WebSocket upgrade. The same four
/// handlers serve `/hubs/{hub}`, Azure's `/client/?hub=` and a fixed hub's routes: the hub
/// requested is the `hub` path segment, else the `hub` query parameter (a fixed endpoint
/// ignores it and serves its own).
pub(crate) struct HubRequest {
    hub: Option<String>,
    /// As the client sent it, before any nesting stripped a prefix: a forwarded request is
    /// passed on with it unchanged.
    uri: Uri,
    headers: HeaderMap,
    query: QueryParams,
    /// The TCP peer, when the server records it (see [`crate::forwarded`]).
    peer: Option<SocketAddr>,
}

impl<S: Send + Sync> FromRequestParts<S> for HubRequest {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let query = QueryParams::parse(parts.uri.query());
        let in_path = RawPathParams::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|params| params.iter().find(|(key, _)| *key == "hub").map(|(_, value)| value.to_owned()));
        let hub = in_path.or_else(|| query.get("hub").map(str::to_owned));
        let uri =
            parts.extensions.get::<OriginalUri>().map_or_else(|| parts.uri.clone(), |original| original.0.clone());
        let Peer(peer) = Peer::of(&parts.extensions);
        Ok(Self { hub, uri, headers: parts.headers.clone(), query, peer })
    }
}

async fn negotiate_any(State(endpoint): State<Endpoint>, request: HubRequest) -> Response {
    negotiate::negotiate(&endpoint, &request).await
}

async fn connect_any(
    State(endpoint): State<Endpoint>,
    request: HubRequest,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    connect(&endpoint, &request, upgrade).await
}

async fn send_any(State(endpoint): State<Endpoint>, request: HubRequest, body: Body) -> Response {
    send(&endpoint, &request, body).await
}

async fn delete_any(State(endpoint): State<Endpoint>, request: HubRequest) -> Response {
    terminate(&endpoint, &request).await
}

/// Which transport a GET asks for.
fn requested_transport(headers: &HeaderMap, upgrade: bool) -> TransportKind {
    let accepts_events =
        || headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/event-stream"));
    if upgrade {
        TransportKind::WebSockets
    } else if accepts_events() {
        TransportKind::ServerSentEvents
    } else {
        TransportKind::LongPolling
    }
}

/// A GET on the hub URL: a WebSocket upgrade, an event stream, or a poll.
async fn connect(
    endpoint: &Endpoint,
    request: &HubRequest,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let HubRequest { hub, uri, headers, query, peer } = request;
    let transport = requested_transport(headers, upgrade.is_ok());
    if !endpoint.offers(transport) {
        return not_offered(transport);
    }
    let token = query.get("id");
    if token.is_none() && transport != TransportKind::WebSockets {
        return id_required();
    }
    let state = &endpoint.state;
    // A WebSocket without a token skipped negotiate: a new connection, checked here as
    // negotiate checks one.
    let mut permit = None;
    if token.is_none() {
        if state.is_shutting_down() {
            return shutting_down();
        }
        let admitted =
            state.limits.check_rate(state.proxies.client_ip(*peer, headers)).and_then(|()| state.limits.admit());
        match admitted {
            Ok(admitted) => permit = Some(admitted),
            Err(refusal) => return refusal.into_response(),
        }
    }
    let name = match endpoint.hub_name(hub.as_deref()) {
        Ok(name) => name,
        Err(response) => return response,
    };
    if let Some(token) = token {
        match endpoint.locate(&name, token, headers).await {
            Ok(Place::Here) => {}
            // A WebSocket stays where it lands; one for a connection another node holds (the
            // new socket of a stateful reconnect) cannot be served here.
            Ok(Place::Elsewhere(_)) if upgrade.is_ok() => {
                return no_such_connection("a WebSocket for a connection another node holds")
            }
            Ok(Place::Elsewhere(address)) => {
                return endpoint.forward(&address, Method::GET, (uri, headers), Bytes::new()).await
            }
            Err(response) => return response,
        }
    }
    let (identity, mut admission) = match endpoint.identify(&name, headers, query, token) {
        Ok(identified) => identified,
        Err(response) => return response,
    };
    let lifetime = match endpoint.lifetime_of(&name) {
        Ok(lifetime) => lifetime,
        Err(response) => return response,
    };
    let logic = endpoint.logic(&name);
    match (upgrade, token) {
        (Ok(upgrade), token) => {
            let mut fresh_id = None;
            // The token's user first, so a user at its limit costs the connect hook nothing.
            if let Err(refusal) = admit_user(state, token, lifetime.name(), permit.as_mut(), &identity) {
                return refusal.into_response();
            }
            // A WebSocket that skipped negotiate meets the connect hook here.
            if let (Some(upstream), None) = (endpoint.connect_hook(&name), token) {
                let connection_id = endpoint.state.node.new_connection_id();
                let knock =
                    gate::Knock { hub: &name, connection_id: &connection_id, identity: &identity, headers, query };
                match gate::ask(upstream, knock).await {
                    Ok(admitted) => admission = Some(Arc::new(admitted)),
                    Err(refusal) => return refusal,
                }
                fresh_id = Some(Arc::from(connection_id));
            }
            let identity = gate::admitted(identity, admission.as_deref());
            if let Err(refusal) = admit_user(state, token, lifetime.name(), permit.as_mut(), &identity) {
                return refusal.into_response();
            }
            let mut info = ConnectionInfo::new(transport, headers, query);
            info.admitted_groups = gate::groups(admission.as_deref());
            let opening = websocket::Opening { token, fresh_id, identity, info, permit };
            websocket::accept(endpoint.state.clone(), (logic, lifetime), upgrade, opening)
        }
        (Err(_), Some(token)) => {
            let state = endpoint.state.clone();
            let admitted_groups = gate::groups(admission.as_deref());
            let start = http::Start {
                state,
                hub: logic,
                lifetime,
                identity,
                transport,
                headers,
                query,
                token,
                admitted_groups,
            };
            receive(&endpoint.state, token, start).await
        }
        (Err(_), None) => id_required(),
    }
}

/// Makes the permit of a connection that starts now count for the user who starts it: the one
/// a WebSocket that skipped negotiate took (`permit`), or that of the negotiated connection
/// `token` if it has not started.
fn admit_user(
    state: &TransportState,
    token: Option<&str>,
    hub: &str,
    permit: Option<&mut Permit>,
    identity: &Identity,
) -> Result<(), crate::limits::Refusal> {
    let user = identity.user_id.as_ref();
    match (permit, token) {
        (Some(permit), _) => state.limits.admit_user(permit, user),
        (None, Some(token)) => {
            let change = |permit: &mut Permit| state.limits.admit_user(permit, user);
            state.connections.with_unstarted_permit(token, hub, change).unwrap_or(Ok(()))
        }
        (None, None) => Ok(()),
    }
}

/// The server→client request of an HTTP transport: starts the connection on first use.
async fn receive(state: &Arc<TransportState>, token: &str, start: http::Start<'_>) -> Response {
    let transport = start.transport;
    let user_id = start.identity.user_id.clone();
    let hub = start.lifetime.name().to_owned();
    if let Err(refusal) = admit_user(state, Some(token), &hub, None, &start.identity) {
        return refusal.into_response();
    }
    let admit_new = !state.is_shutting_down();
    let connections = &state.connections;
    let bound = connections.bind_http(token, &hub, transport, &user_id, admit_new, |id, early| start.spawn(id, early));
    let (connection, joined) = match bound {
        Ok(bound) => bound,
        Err(BindError::NotFound) => return no_such_connection("a GET names no connection here"),
        Err(BindError::NotAdmitted) => return shutting_down(),
        Err(BindError::OtherUser) => return StatusCode::FORBIDDEN.into_response(),
        Err(BindError::OtherTransport) => {
            return text(StatusCode::BAD_REQUEST, "Cannot change transports mid-connection")
        }
    };
    if connection.user_id != user_id {
        return StatusCode::FORBIDDEN.into_response();
    }
    let config = &state.config;
    match (transport, joined) {
        (TransportKind::ServerSentEvents, Joined::Running) => text(StatusCode::CONFLICT, ""),
        (TransportKind::ServerSentEvents, _) => sse::event_stream(connection, config.keep_alive_interval),
        (_, Joined::Started) => long_polling::first_poll(),
        // A poll that started a connection whose client POSTed first (its handshake) waits for
        // the answers like any poll, so they need no second round trip.
        _ => long_polling::poll(state, token, connection, config.poll_timeout).await,
    }
}

/// A POST: messages from the client of an HTTP-transport connection.
async fn send(endpoint: &Endpoint, request: &HubRequest, body: Body) -> Response {
    let HubRequest { hub, uri, headers, query, .. } = request;
    let Some(token) = query.get("id") else { return id_required() };
    let name = match endpoint.hub_name(hub.as_deref()) {
        Ok(name) => name,
        Err(response) => return response,
    };
    match endpoint.locate(&name, token, headers).await {
        Ok(Place::Here) => {}
        // Read whole, under the same limit as here, so that it can be sent again if the
        // holder never took it (see `Stateless::forward`).
        Ok(Place::Elsewhere(address)) => {
            let body = match http::read_body(body, declared_length(headers), endpoint.state.config.max_post_body).await
            {
                Ok(body) => body,
                Err(response) => return response,
            };
            return endpoint.forward(&address, Method::POST, (uri, headers), body).await;
        }
        Err(response) => return response,
    }
    let identity = match endpoint.identify(&name, headers, query, Some(token)) {
        Ok((identity, _)) => identity,
        Err(response) => return response,
    };
    let lifetime = match endpoint.lifetime_of(&name) {
        Ok(lifetime) => lifetime,
        Err(response) => return response,
    };
    let state = &endpoint.state;
    let admit_new = !state.is_shutting_down();
    let target = match state.connections.post_target(token, lifetime.name(), &identity.user_id, admit_new) {
        Ok(target) => target,
        Err(BindError::NotFound | BindError::OtherTransport) => {
            return no_such_connection("a POST names no HTTP connection here")
        }
        Err(BindError::NotAdmitted) => return shutting_down(),
        Err(BindError::OtherUser) => return StatusCode::FORBIDDEN.into_response(),
    };
    let inbound = match target {
        PostTarget::WebSocket => {
            return text(StatusCode::METHOD_NOT_ALLOWED, "POST requests are not allowed for WebSocket connections.")
        }
        PostTarget::Http(connection) if connection.user_id != identity.user_id => {
            return StatusCode::FORBIDDEN.into_response()
        }
        PostTarget::Http(connection) => connection.inbound(),
        // Before the first GET (signalrcore POSTs its handshake first): the body waits for the
        // session that GET starts, bounded as in a running connection.
        PostTarget::Unstarted(inbound) => inbound,
    };
    let body = match http::read_body(body, declared_length(headers), state.config.max_post_body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    match http::deliver(&inbound, body).await {
        Ok(()) => text(StatusCode::OK, ""),
        Err(()) => no_such_connection("a POST reached a connection that has ended"),
    }
}

/// A DELETE: the client of a long-polling connection ends it.
async fn terminate(endpoint: &Endpoint, request: &HubRequest) -> Response {
    let HubRequest { hub, uri, headers, query, .. } = request;
    let Some(token) = query.get("id") else { return id_required() };
    let name = match endpoint.hub_name(hub.as_deref()) {
        Ok(name) => name,
        Err(response) => return response,
    };
    match endpoint.locate(&name, token, headers).await {
        Ok(Place::Here) => {}
        Ok(Place::Elsewhere(address)) => {
            return endpoint.forward(&address, Method::DELETE, (uri, headers), Bytes::new()).await
        }
        Err(response) => return response,
    }
    match binding(endpoint, Some(&name), token) {
        Err(response) => response,
        Ok(Binding::Http(connection)) if connection.transport == TransportKind::LongPolling => {
            connection.terminate();
            endpoint.state.connections.release(token);
            text(StatusCode::ACCEPTED, "")
        }
        Ok(_) => text(StatusCode::BAD_REQUEST, "Cannot terminate this connection using the DELETE endpoint."),
    }
}

/// How the connection `token` of the requested hub is held. The error is the response to send:
/// 404 for an unknown hub or token.
#[allow(clippy::result_large_err)]
fn binding(endpoint: &Endpoint, hub: Option<&str>, token: &str) -> Result<Binding, Response> {
    let lifetime = endpoint.lifetime(hub)?;
    endpoint
        .state
        .connections
        .lookup(token, lifetime.name())
        .ok_or_else(|| no_such_connection("the token names no connection here"))
}

/// 400 for an HTTP-transport request without `id`.
fn id_required() -> Response {
    text(StatusCode::BAD_REQUEST, "Connection ID required")
}

/// 404 for a token no connection has (never issued, reaped, or ended).
/// The length a request's `Content-Length` declares, if any.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// 404 for a request naming no live connection here; `why` goes to the debug log.
pub(crate) fn no_such_connection(why: &'static str) -> Response {
    tracing::debug!(why, "No Connection with that ID");
    text(StatusCode::NOT_FOUND, "No Connection with that ID")
}
