//! What the two HTTP transports share: a connection that outlives any single request.
//!
//! Server-Sent Events and long polling split a connection over many requests: one (SSE) or a
//! series (polls) of GETs carry server→client bytes, and POSTs carry client→server bytes. The
//! first GET starts the hub session, which reads from a small bounded channel that POSTs feed
//! (a POST waits while the channel is full, so a fast sender is slowed, never buffered without
//! limit) and writes to the connection's [`Outbound`] queue, which the GETs drain.
//!
//! A client may POST before its first GET (signalrcore sends its handshake that way): the
//! connection table then creates the channel early ([`Inbound`]), the POST waits in it as in a
//! running connection, and the session the first GET starts reads it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::text;
use super::TransportState;
use crate::auth::Identity;
use crate::cluster::HubLifetime;
use crate::connection::session::Session;
use crate::hub::HubLogic;
use crate::query::QueryParams;
use crate::queue::outbound::Outbound;
use crate::request::{ConnectionInfo, TransportKind};

/// POST bodies waiting for the session to read them, per connection.
const INBOUND_BODIES: usize = 4;

/// A connection served by Server-Sent Events or long polling.
pub(crate) struct HttpConnection {
    pub transport: TransportKind,
    pub user_id: Option<Arc<str>>,
    pub outbound: Arc<Outbound>,
    inbound: mpsc::Sender<Bytes>,
    receiving: Mutex<Receiving>,
}

/// The state of the server→client side.
struct Receiving {
    /// The request currently receiving (the event stream, or the parked poll); cancelling it
    /// ends that request.
    current: Option<(u64, CancellationToken)>,
    /// Numbers receiving requests, to tell the current one from older ones.
    requests: u64,
    /// When the last receiving request ended (or the connection started).
    idle_since: Instant,
    /// Whether the connection's end has been delivered to the client (long polling: the next
    /// poll is answered 204).
    end_delivered: bool,
}

impl HttpConnection {
    fn receiving(&self) -> MutexGuard<'_, Receiving> {
        self.receiving.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where POSTs put their bodies for the session (see [`deliver`]).
    pub fn inbound(&self) -> mpsc::Sender<Bytes> {
        self.inbound.clone()
    }

    /// A request starts receiving: any request receiving before it is told to end. Returns the
    /// token that ends this one, and a guard that records when it stops.
    pub fn begin_receiving(self: &Arc<Self>) -> (CancellationToken, ReceivingGuard) {
        let token = CancellationToken::new();
        let mut receiving = self.receiving();
        receiving.requests += 1;
        let request = receiving.requests;
        if let Some((_, previous)) = receiving.current.replace((request, token.clone())) {
            previous.cancel();
        }
        drop(receiving);
        (token, ReceivingGuard { connection: self.clone(), request })
    }

    /// Whether the client has been told the connection ended.
    pub fn end_delivered(&self) -> bool {
        self.receiving().end_delivered
    }

    pub fn mark_end_delivered(&self) {
        self.receiving().end_delivered = true;
    }

    /// Ends the connection: the session stops and a receiving request returns.
    pub fn terminate(&self) {
        self.outbound.abort();
        if let Some((_, current)) = self.receiving().current.take() {
            current.cancel();
        }
    }

    /// Whether nothing has received for `timeout` (a long-polling client that stopped
    /// polling). An event stream is always receiving while it lasts.
    pub fn abandoned_for(&self, timeout: Duration) -> bool {
        let receiving = self.receiving();
        receiving.current.is_none() && receiving.idle_since.elapsed() >= timeout
    }
}

/// Hands a POST body to whoever reads `inbound`, waiting while earlier bodies are unread.
/// `Err` when nobody will read it any more (the session ended, or the connection that had not
/// started was forgotten).
pub(crate) async fn deliver(inbound: &mpsc::Sender<Bytes>, body: Bytes) -> Result<(), ()> {
    if body.is_empty() {
        return Ok(());
    }
    inbound.send(body).await.map_err(|_| ())
}

/// The bounded channel from a connection's POSTs to its session: made when the connection
/// starts, or earlier by a POST that came first.
pub(crate) struct Inbound {
    sender: mpsc::Sender<Bytes>,
    receiver: mpsc::Receiver<Bytes>,
}

impl Inbound {
    pub fn new() -> Self {
        let (sender, receiver) = mpsc::channel(INBOUND_BODIES);
        Self { sender, receiver }
    }

    /// Where POSTs put their bodies.
    pub fn sender(&self) -> mpsc::Sender<Bytes> {
        self.sender.clone()
    }
}

/// Records the end of a receiving request, however it ends (including the client hanging up).
pub(crate) struct ReceivingGuard {
    connection: Arc<HttpConnection>,
    request: u64,
}

impl Drop for ReceivingGuard {
    fn drop(&mut self) {
        let mut receiving = self.connection.receiving();
        receiving.idle_since = Instant::now();
        if receiving.current.as_ref().is_some_and(|(request, _)| *request == self.request) {
            receiving.current = None;
        }
    }
}

/// What starting an HTTP-transport session needs: the request that starts it, read only if
/// it really does (every later poll presents the same token and starts nothing).
pub(crate) struct Start<'a> {
    pub state: Arc<TransportState>,
    pub hub: Arc<HubLogic>,
    pub lifetime: Arc<HubLifetime>,
    pub identity: Identity,
    pub transport: TransportKind,
    pub headers: &'a HeaderMap,
    pub query: &'a QueryParams,
    pub token: &'a str,
    /// The groups a connect hook named for the connection.
    pub admitted_groups: Box<[Box<str>]>,
}

impl Start<'_> {
    /// Creates the connection and spawns its hub session. The session reads POST bodies; when
    /// it ends, an event-stream connection is forgotten at once, while a long-polling one stays
    /// until its client has polled the end (or stops polling). `early` holds what POSTs sent
    /// before the connection started, if any came.
    pub fn spawn(self, connection_id: Arc<str>, early: Option<Inbound>) -> Arc<HttpConnection> {
        let Self { state, hub, lifetime, identity, transport, headers, query, token, admitted_groups } = self;
        let mut info = ConnectionInfo::new(transport, headers, query);
        info.admitted_groups = admitted_groups;
        let token = token.to_owned();
        let Inbound { sender: inbound, receiver: bodies } = early.unwrap_or_else(Inbound::new);
        let outbound = Arc::new(Outbound::new(state.config.outbound_queue_bytes));
        let connection = Arc::new(HttpConnection {
            transport,
            user_id: identity.user_id.clone(),
            outbound: outbound.clone(),
            inbound,
            receiving: Mutex::new(Receiving {
                current: None,
                requests: 0,
                idle_since: Instant::now(),
                end_delivered: false,
            }),
        });
        let span = crate::connection::span(&connection_id, lifetime.name(), transport, &identity);
        let session = Box::new(Session {
            env: state.sessions.clone(),
            hub,
            lifetime,
            connection_id,
            identity,
            outbound,
            info: Arc::new(info),
        });
        let incoming = futures_util::stream::unfold(bodies, |mut bodies| async move {
            bodies.recv().await.map(|body| (Ok(body), bodies))
        });
        let tasks = state.tasks.clone();
        tasks.spawn(
            async move {
                session.run(std::pin::pin!(incoming)).await;
                if transport == TransportKind::ServerSentEvents {
                    state.connections.release(&token);
                }
            }
            .instrument(span),
        );
        connection
    }
}

/// A response with the headers that keep proxies and browsers from caching it.
pub(super) fn uncached(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    use axum::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, EXPIRES, PRAGMA};
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(EXPIRES, HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
    response
}

/// Reads a POST body of at most `limit` bytes. The error is the response to send: 413 when the
/// body is larger, 400 when the client stopped sending it.
pub(super) async fn read_body(body: Body, declared: Option<u64>, limit: usize) -> Result<Bytes, Response> {
    let too_large = || text(StatusCode::PAYLOAD_TOO_LARGE, "Request body is larger than the limit");
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let mut chunks = body.into_data_stream();
    let mut read = BytesMut::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| text(StatusCode::BAD_REQUEST, "Failed to read the request body"))?;
        if read.len() + chunk.len() > limit {
            return Err(too_large());
        }
        read.extend_from_slice(&chunk);
    }
    Ok(read.freeze())
}
