//! The gateway node: shared state, routes and the serve loop with graceful shutdown.
//!
//! # Health
//!
//! - `GET /healthz` answers 200 `ok` whenever the process serves HTTP, draining or not: it
//!   says "alive", for liveness probes. A node that stopped accepting does not answer at all.
//! - `GET /readyz` answers 200 `ready` only while the backplane is connected and the node is
//!   not shutting down; otherwise 503 with the reason (`backplane unavailable`, `shutting
//!   down`). It turns 503 the moment shutdown begins, before any connection is closed. A node
//!   at `--max-connections` stays ready: full is not unhealthy (see [`crate::limits`]).
//!
//! # Shutdown
//!
//! When the `shutdown` future given to [`serve`] completes (the binary: SIGTERM or SIGINT):
//!
//! 1. readiness turns false at once, and the node admits no new connection: negotiate and
//!    every request that would start one (a WebSocket upgrade other than a stateful
//!    reconnect's, the first event-stream GET, the first poll, a POST for a connection that
//!    has not started) answer 503 `The server is shutting down`, so clients reconnect to
//!    another node rather than being accepted here and closed again at once;
//! 2. for `--drain-delay` (default 0) the connections the node has go on as before, so load
//!    balancers polling `/readyz` stop sending new clients here;
//! 3. every session ends with a SignalR `Close` with `allowReconnect: true`, on every
//!    transport: a WebSocket message, an SSE event before the stream ends, the answer to the
//!    pending or next long poll. A connection that started in the instant shutdown began
//!    gets the same Close at once;
//! 4. the listener stops accepting once every long-polling client has fetched its Close;
//! 5. the HTTP server and the tracked tasks (sessions, invocations, streams) get until
//!    `--shutdown-timeout` after step 3 to finish; stragglers are logged and abandoned
//!    (the binary then exits, which ends them);
//! 6. presence entries are removed and the backplane is closed (Redis: QUIT), up to 2 s each.
//!
//! [`serve`] returns `Ok` in every case, so the binary exits 0, at most `--drain-delay` +
//! `--shutdown-timeout` + 4 s after the signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::{Connected, IntoMakeServiceWithConnectInfo};
use axum::http::StatusCode;
use axum::routing::get;
use axum::serve::{IncomingStream, ListenerExt};
use axum::Router;
use backplane::{
    Backplane, Directory, Health, MemoryBackplane, MemoryDirectory, MemoryUserGroups, Presence, RedisBackplane,
    RedisDirectory, RedisPresence, RedisUserGroups, UserGroups,
};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::{AuthConfigError, Authenticator};
use crate::cluster::{self, HubLifetime, HubTable, Node, RegistryPresence, Stats, Stores};
use crate::config::{BackplaneKind, Config, ConfigError};
use crate::connection::session::SessionEnv;
use crate::hub::{relay::relay_hub, Hub, RelayPolicy};
use crate::ids::random_id;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::request::TransportKind;
use crate::stalled_writes::StalledWrites;
use crate::tls::Certificates;
use crate::transport::connections::ConnectionTable;
use crate::transport::resumable::Resumable;
use crate::transport::stateless::{self, Stateless};
use crate::transport::{Endpoint, TransportState};
use crate::upstream::Upstream;
use backplane::channels::Channels;

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error("backplane: {0}")]
    Backplane(#[from] backplane::BackplaneError),
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
    /// The client that forwards requests to other nodes could not be built.
    #[error("node-to-node HTTP client: {0}")]
    Forwarding(reqwest::Error),
    /// A metric could not be registered (e.g. the registry already holds another gateway's).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamError),
    /// `--tls-cert` / `--tls-key` cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// One gateway node's shared state. Create it with [`Gateway::new`], build routes with
/// [`Gateway::relay_router`] or [`Gateway::hub_router`], and serve them with [`serve`].
pub struct Gateway {
    config: Config,
    node: Arc<Node>,
    hubs: Arc<HubTable>,
    /// Who is connected, cluster-wide (or, on a node on its own, answered from `hubs`).
    presence: Arc<dyn Presence>,
    /// What the transports share (token table, resumable grants, authenticator, ...).
    transport: Arc<TransportState>,
    /// Cancelled when connections are to be closed (after the drain delay).
    shutdown: CancellationToken,
    /// Cancelled the moment shutdown begins: from then on the node is not ready.
    draining: CancellationToken,
    tasks: TaskTracker,
    metrics: Arc<Metrics>,
    /// The certificate every listener presents, with `--tls-cert`; `None` serves plain HTTP.
    tls: Option<Arc<Certificates>>,
}

impl Gateway {
    /// Validates `config`, attaches to `backplane` and starts the node's background tasks
    /// (backplane inbound routing, reaping of unclaimed negotiations). Returns once the node
    /// listens on its own channel.
    ///
    /// Presence is answered from this node's own hub registries, at no extra memory: right for
    /// a single node; a cluster passes a shared one to [`Gateway::with_presence`].
    pub async fn new(config: Config, backplane: Arc<dyn Backplane>) -> Result<Arc<Self>, GatewayError> {
        Self::with_registry(config, backplane, None, prometheus::Registry::new()).await
    }

    /// A node on the backplane and presence `config` asks for (`--backplane`, see
    /// [`backplane_from_config`] and [`presence_from_config`]): what the binary runs, and what
    /// an application embedding hubs wants unless it builds its own backplane.
    pub async fn from_config(config: Config) -> Result<Arc<Self>, GatewayError> {
        let backplane = backplane_from_config(&config)?;
        match presence_from_config(&config)? {
            Some(presence) => Self::with_presence(config, backplane, presence).await,
            None => Self::new(config, backplane).await,
        }
    }

    /// Like [`Gateway::new`], reporting connections and groups to `presence` (see
    /// [`presence_from_config`]) and heartbeating it every `--presence-heartbeat-interval`.
    pub async fn with_presence(
        config: Config,
        backplane: Arc<dyn Backplane>,
        presence: Arc<dyn Presence>,
    ) -> Result<Arc<Self>, GatewayError> {
        Self::start(config, backplane, Some(presence), prometheus::Registry::new()).await
    }

    /// Like [`Gateway::new`] (`presence: None`) or [`Gateway::with_presence`], registering this
    /// node's metrics (see [`crate::metrics`]) in `registry`, e.g. one shared with the
    /// application's own. Fails if `registry` already holds them (another gateway's).
    pub async fn with_registry(
        config: Config,
        backplane: Arc<dyn Backplane>,
        presence: Option<Arc<dyn Presence>>,
        registry: prometheus::Registry,
    ) -> Result<Arc<Self>, GatewayError> {
        Self::start(config, backplane, presence, registry).await
    }

    async fn start(
        config: Config,
        backplane: Arc<dyn Backplane>,
        presence: Option<Arc<dyn Presence>>,
        registry: prometheus::Registry,
    ) -> Result<Arc<Self>, GatewayError> {
        config.validate()?;
        let metrics = Arc::new(Metrics::new(registry)?);
        let tls = config
            .tls_files()
            .map(|files| Certificates::load(files, config.tls_handshake_timeout, metrics.tls.clone()))
            .transpose()?;
        let auth = Authenticator::new(&config.auth_settings())?;
        if !auth.is_enabled() {
            warn!("NO TOKEN KEY CONFIGURED: every client is anonymous and no user ids exist. Set --jwt-secret or --jwt-public-key for production.");
        }
        let inbound = backplane.take_inbound()?;
        let node_id = config.node_id.clone().unwrap_or_else(|| random_id()[..11].to_owned());
        let channels = Channels::new(config.channel_prefix.clone());
        let (ack_timeout, result_timeout) = (config.group_ack_timeout, config.client_result_timeout);
        let directory = directory_from_config(&config)?;
        let stores = Stores { presence: presence.clone(), user_groups: user_groups_from_config(&config)?, directory };
        let node =
            Arc::new(Node::new(node_id, backplane, stores, channels, ack_timeout, result_timeout, metrics.clone()));
        let stateless = stateless_from_config(&config, &node)?;
        metrics.watch_node(node.stats.clone(), node.backplane.clone())?;
        let (shutdown, tasks) = (CancellationToken::new(), TaskTracker::new());
        let sessions = Arc::new(SessionEnv {
            limits: config.session_limits(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        });
        let hubs = Arc::new(HubTable::new(node.clone(), config.max_hubs));
        // Queries go to the shared presence, or (a node on its own) to the registries.
        let presence = presence.unwrap_or_else(|| Arc::new(RegistryPresence::new(hubs.clone())));
        let draining = CancellationToken::new();
        let upstream = Upstream::new(config.upstream_settings(), metrics.upstream.clone())?.map(Arc::new);
        let transport = Arc::new(TransportState {
            config: config.transport_settings(),
            auth,
            node: node.clone(),
            hubs: hubs.clone(),
            connections: ConnectionTable::new(config.max_pending_connections),
            limits: Limits::new(config.limit_settings(), metrics.clone()),
            proxies: config.trusted_proxies(),
            resumable: Resumable::default(),
            sessions,
            tasks: tasks.clone(),
            upstream,
            stateless,
            draining: draining.clone(),
        });
        let gateway =
            Arc::new(Self { config, node, hubs, presence, transport, shutdown, draining, tasks, metrics, tls });
        let node = &gateway.node;
        node.backplane.subscribe(&node.channels.node(&node.id)).await?;
        tokio::spawn(cluster::route_inbound(
            gateway.node.clone(),
            gateway.hubs.clone(),
            inbound,
            gateway.shutdown.clone(),
        ));
        tokio::spawn(reap_unclaimed(gateway.clone()));
        if let Some(tls) = &gateway.tls {
            tokio::spawn(crate::tls::watch(tls.clone(), gateway.shutdown.clone()));
        }
        let interval = gateway.config.presence_heartbeat_interval;
        gateway.tasks.spawn(heartbeat(gateway.node.clone(), interval, gateway.shutdown.clone()));
        Ok(gateway)
    }

    /// `GET /healthz` (the process serves requests; 200 also while draining) and `GET /readyz`
    /// (the backplane is connected and the node is not shutting down; load balancers should
    /// route new clients only to ready nodes). Both answer in plain text; not ready is 503 with
    /// the reason. See the module docs.
    pub fn health_router(self: &Arc<Self>) -> Router {
        let gateway = self.clone();
        Router::new().route("/healthz", get(|| async { "ok" })).route(
            "/readyz",
            get(move || {
                let gateway = gateway.clone();
                async move {
                    match gateway.readiness() {
                        Ok(()) => (StatusCode::OK, "ready"),
                        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
                    }
                }
            }),
        )
    }

    /// `GET /metrics`: every metric of [`crate::metrics`] in the Prometheus text format.
    pub fn metrics_router(self: &Arc<Self>) -> Router {
        let metrics = self.metrics.clone();
        Router::new().route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], metrics.render()) }
            }),
        )
    }

    /// What the admin port (`--admin-listen`) serves: `/metrics`, `/healthz` and `/readyz`.
    pub fn admin_router(self: &Arc<Self>) -> Router {
        self.metrics_router().merge(self.health_router())
    }

    /// This node's metrics and the registry they are in.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether shutdown has begun: from that moment the node admits no new connection (see
    /// the module docs), while the connections it has are served until they end.
    fn is_shutting_down(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Whether the node should receive new clients, or why not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.is_shutting_down() {
            return Err("shutting down");
        }
        match self.node.backplane.health() {
            Health::Up => Ok(()),
            Health::Down => Err("backplane unavailable"),
        }
    }

    /// The built-in relay hub for every name, at `/hubs/{hub}`, the health endpoints, the
    /// server REST API at `/api`, unless `--metrics-on-main-port false` `/metrics`, and unless
    /// `--demo-page false` the demo chat page at `/` (see [`crate::demo`]).
    pub fn router(self: &Arc<Self>) -> Router {
        // The REST router goes first: see `rest_router`.
        let mut router = self.rest_router().merge(self.relay_router()).merge(self.health_router());
        if self.config.metrics_on_main_port {
            router = router.merge(self.metrics_router());
        }
        if self.config.demo_page {
            router = router.merge(crate::demo::router());
        }
        router
    }

    /// The server REST API (Azure SignalR data-plane compatible) at `/api`; see [`crate::rest`].
    /// Its paths have literal `:verb` segments, which axum refuses to add to a router that
    /// checks for its old capture syntax (the default): merge other routers into this one
    /// (`rest_router().merge(app)`), not this one into them.
    pub fn rest_router(self: &Arc<Self>) -> Router {
        let settings = self.config.rest_settings();
        crate::rest::router(settings, self.hubs.clone(), self.presence.clone(), self.metrics.clone())
    }

    /// The built-in relay hub for every name, at `/hubs/{hub}`.
    pub fn relay_router(self: &Arc<Self>) -> Router {
        Endpoint::per_name(self.transport.clone(), relay_hub(RelayPolicy::new(&self.config.relay)))
    }

    /// Routes for an application hub named `name`: `/negotiate` and `/`, to be nested at a path,
    /// e.g. `Router::new().nest("/chat", gateway.hub_router("chat", hub))`.
    pub fn hub_router(self: &Arc<Self>, name: &str, hub: Hub) -> Router {
        Endpoint::fixed(self.transport.clone(), name, hub, &self.config.transports)
    }

    /// Like [`Gateway::hub_router`], offering only `transports` (of those the configuration
    /// allows) at this path.
    pub fn hub_router_with_transports(self: &Arc<Self>, name: &str, hub: Hub, transports: &[TransportKind]) -> Router {
        let allowed: Vec<TransportKind> =
            transports.iter().copied().filter(|t| self.config.transports.contains(t)).collect();
        Endpoint::fixed(self.transport.clone(), name, hub, &allowed)
    }

    /// A hub with connections on this node, to send to its clients from outside hub methods.
    pub fn hub(&self, name: &str) -> Option<Arc<HubLifetime>> {
        self.hubs.get(name)
    }

    /// The configuration this node runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This node's counters.
    pub fn stats(&self) -> &Stats {
        &self.node.stats
    }

    /// Who is connected, cluster-wide: connections, users and groups of every hub on every
    /// live node (hub names in lower case). Eventually consistent; see [`Presence`].
    pub fn presence(&self) -> Arc<dyn Presence> {
        self.presence.clone()
    }

    /// Whether the listeners serve TLS (`--tls-cert`).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Re-reads `--tls-cert` and `--tls-key` now (the binary calls it on SIGHUP; the files are
    /// also watched): new handshakes present the new certificate, or, when the files do not
    /// load, the previous one and the error says why. `None` without TLS.
    pub fn reload_tls(&self) -> Option<Result<(), crate::tls::TlsError>> {
        self.tls.as_ref().map(|tls| tls.reload())
    }

    /// Connections holding one of this node's `--max-connections` slots now: negotiated and not
    /// yet started, or running (counted also when the node is unlimited). A slot is given back
    /// when its connection has ended, shortly after it left [`Stats::connections`].
    pub fn admitted_connections(&self) -> usize {
        self.transport.limits.held()
    }

    /// This node's id on the backplane.
    pub fn node_id(&self) -> &str {
        &self.node.id
    }

    /// Shuts the node down without an HTTP server to stop: the steps of [`serve`]'s shutdown
    /// (see the module docs) minus the listener.
    pub async fn shut_down(&self) {
        self.drain(None).await;
    }

    /// The shutdown sequence. `server` is the HTTP server to stop accepting and wait for.
    async fn drain(&self, server: Option<Server>) {
        self.draining.cancel();
        info!(drain_delay = ?self.config.drain_delay, "shutting down: not ready any more");
        // Load balancers that poll /readyz notice during this delay; meanwhile all is served.
        tokio::time::sleep(self.config.drain_delay).await;
        let deadline = Instant::now() + self.config.shutdown_timeout;
        info!(tasks = self.tasks.len(), "closing every connection (Close with allowReconnect)");
        self.shutdown.cancel();
        self.tasks.close();
        let finished = match server {
            Some(server) => self.stop_serving(server, deadline).await,
            None => timeout_at(deadline, self.tasks.wait()).await.is_ok(),
        };
        if !finished {
            warn!(
                remaining = self.tasks.len(),
                timeout = ?self.config.shutdown_timeout,
                "shutdown deadline passed: the remaining connections and tasks are abandoned"
            );
        }
        self.leave_presence().await;
        self.node.backplane.close(STORE_CLOSE_TIMEOUT).await;
        info!("shut down");
    }

    /// Stops accepting once every long-polling client has fetched its Close (it can only learn
    /// of it from a poll; clients silent for the disconnect timeout count as gone), then waits
    /// for the HTTP server and the tracked tasks. `false` when the deadline passed first; the
    /// server is then aborted.
    async fn stop_serving(&self, server: Server, deadline: Instant) -> bool {
        let mut check = tokio::time::interval(Duration::from_millis(20));
        let gone_after = self.config.disconnect_timeout;
        while self.transport.connections.undelivered_long_poll_ends(gone_after) > 0 && Instant::now() < deadline {
            check.tick().await;
        }
        server.stop_accepting.cancel();
        let Server { mut handle, .. } = server;
        let both = async {
            self.tasks.wait().await;
            if let Ok(Err(error)) = (&mut handle).await {
                warn!(%error, "HTTP server ended with an error");
            }
        };
        let finished = timeout_at(deadline, both).await.is_ok();
        handle.abort();
        finished
    }

    /// Removes this node's presence entries at once rather than letting them expire.
    async fn leave_presence(&self) {
        let Some(presence) = &self.node.presence else { return };
        let removal = presence.node_stopped(&self.node.id);
        match tokio::time::timeout(STORE_CLOSE_TIMEOUT, removal).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(%error, "presence entries not removed; they expire with the node's lease"),
            Err(_) => warn!("presence entries not removed in time; they expire with the node's lease"),
        }
    }
}

/// Keeps this node alive in presence until shutdown. A failed heartbeat is retried at the next
/// tick; after `--presence-node-ttl` without one, other nodes stop counting this node's
/// connections until a heartbeat succeeds and re-registers them.
async fn heartbeat(node: Arc<Node>, interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let Some(presence) = &node.presence else { return };
                if let Err(error) = presence.heartbeat(&node.id).await {
                    warn!(%error, "presence heartbeat failed; retrying at the next tick");
                }
            }
        }
    }
}

async fn reap_unclaimed(gateway: Arc<Gateway>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            _ = gateway.shutdown.cancelled() => return,
            _ = tick.tick() => {
                let transport = &gateway.transport;
                transport.connections.reap(gateway.config.disconnect_timeout);
                transport.resumable.reap(gateway.config.disconnect_timeout);
                if let Some(stateless) = transport.stateless.as_ref().filter(|_| renewed.elapsed() >= stateless::RENEW_EVERY) {
                    renewed = Instant::now();
                    stateless.renew(&transport.connections.claimed_ids()).await;
                }
            }
        }
    }
}

/// How long removing presence entries, and then closing the backplane (Redis QUIT), may each
/// take at shutdown, after the shutdown timeout.
const STORE_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The HTTP server task and the token that makes it stop accepting.
struct Server {
    handle: JoinHandle<std::io::Result<()>>,
    stop_accepting: CancellationToken,
}

/// Serves `router` on `listener` until `shutdown` completes, then shuts the gateway down
/// gracefully (see the module docs for the steps). Returns `Ok` after a graceful shutdown,
/// also when the deadline passed with connections still open; an error only when serving
/// failed before any shutdown signal.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let router = router.layer(axum::middleware::from_fn(crate::request_log::log_requests));
    if let (Some(stateless), Ok(local)) = (&gateway.transport.stateless, listener.local_addr()) {
        stateless.listening_on(local);
    }
    let stop_accepting = CancellationToken::new();
    let (tls, stall) = (gateway.tls.as_deref(), gateway.config.send_timeout);
    let mut handle = spawn_http(listener, stall, tls, router, stop_accepting.clone());
    tokio::select! {
        () = shutdown => {}
        ended = &mut handle => {
            gateway.shutdown.cancel();
            return match ended {
                Ok(result) => result.map_err(GatewayError::Io),
                Err(error) => Err(GatewayError::Io(std::io::Error::other(error))),
            };
        }
    }
    gateway.drain(Some(Server { handle, stop_accepting })).await;
    Ok(())
}

/// Serves [`Gateway::admin_router`] on `listener` (`--admin-listen`) until the gateway shuts
/// down.
pub async fn serve_admin(listener: TcpListener, gateway: Arc<Gateway>) -> Result<(), GatewayError> {
    let (router, stop) = (gateway.admin_router(), gateway.shutdown.clone());
    match &gateway.tls {
        Some(tls) => serve_http(tls.listener(listener).tap_io(|_| {}), router, stop).await?,
        None => serve_http(listener, router, stop).await?,
    }
    Ok(())
}

/// Starts serving `router` on `listener`, over TLS when `tls` is given, until `stop`. A write
/// blocked for `stall` fails and drops its connection (see [`crate::stalled_writes`]).
fn spawn_http(
    tcp: TcpListener,
    stall: Duration,
    tls: Option<&Certificates>,
    router: Router,
    stop: CancellationToken,
) -> JoinHandle<std::io::Result<()>> {
    match tls {
        // A no-op tap: axum records a listener's peer address (`ConnectInfo`) for a plain
        // `TcpListener` and for tapped listeners, not for any other `Listener`.
        Some(tls) => {
            let listener = StalledWrites::new(tls.listener(tcp), stall).tap_io(|_| {});
            tokio::spawn(serve_http(listener, router, stop))
        }
        None => tokio::spawn(serve_http(StalledWrites::new(tcp, stall).tap_io(|_| {}), router, stop)),
    }
}

/// Serves `router` on `listener` until `stop` is cancelled and the HTTP connections have
/// ended (see `axum::serve`'s graceful shutdown).
async fn serve_http<L>(listener: L, router: Router, stop: CancellationToken) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    for<'a> SocketAddr: Connected<IncomingStream<'a, L>>,
{
    axum::serve(listener, shared_with_peer(router)).with_graceful_shutdown(stop.cancelled_owned()).await
}

/// `router` as a service that every accepted TCP connection shares, recording each
/// connection's peer address in its requests (as `ConnectInfo<SocketAddr>`), which the limits
/// and `--trusted-proxies` read (see [`crate::forwarded`]).
///
/// Given a plain `Router`, `axum::serve` calls `Router::with_state` once per connection, which
/// deep-copies the whole route table (one boxed service per route and layer, and everything
/// their handlers capture) and keeps the copy until the connection's HTTP handling ends. These
/// short-lived copies cost CPU per connection, and their heap churn while thousands of
/// WebSockets are being opened left about 0.4 KiB of RSS per idle connection behind
/// (docs/benchmarks.md, "Regression after metrics/spans and its fix"). Converting once gives
/// each connection a clone of the converted router's `Arc` plus the address, and serves
/// exactly the same routes.
fn shared_with_peer(router: Router) -> IntoMakeServiceWithConnectInfo<Router, SocketAddr> {
    router.with_state(()).into_make_service_with_connect_info::<SocketAddr>()
}

/// The backplane the configuration asks for. A Redis backplane is returned even while Redis is
/// unreachable: it connects in the background and the node reports not ready until then.
pub fn backplane_from_config(config: &Config) -> Result<Arc<dyn Backplane>, GatewayError> {
    Ok(match config.backplane {
        BackplaneKind::Memory => Arc::new(MemoryBackplane::standalone()),
        BackplaneKind::Redis => Arc::new(RedisBackplane::connect(config.redis_config())?),
    })
}

/// The shared presence the configuration asks for: Redis for the Redis backplane; `None` for
/// the memory backplane, whose single node answers from its own registries ([`Gateway::new`]).
pub fn presence_from_config(config: &Config) -> Result<Option<Arc<dyn Presence>>, GatewayError> {
    Ok(match config.backplane {
        BackplaneKind::Memory => None,
        BackplaneKind::Redis => Some(Arc::new(RedisPresence::connect_with_timing(
            &config.redis_config(),
            &config.channel_prefix,
            config.presence_timing(),
        )?)),
    })
}

/// Where users' group memberships are kept: in Redis for the Redis backplane (every node reads
/// them when a user connects), in this process otherwise.
/// The connection directory of stateless nodes (`--cluster-secret`): `None` without one.
fn directory_from_config(config: &Config) -> Result<Option<Arc<dyn Directory>>, GatewayError> {
    if config.cluster_secret.is_none() {
        return Ok(None);
    }
    Ok(Some(match config.backplane {
        BackplaneKind::Memory => Arc::new(MemoryDirectory::new()),
        BackplaneKind::Redis => Arc::new(RedisDirectory::connect(&config.redis_config(), &config.channel_prefix)?),
    }))
}

/// Signed tokens, claims and forwarding, when the nodes are stateless.
fn stateless_from_config(config: &Config, node: &Node) -> Result<Option<Stateless>, GatewayError> {
    let (Some(secret), Some(directory)) = (&config.cluster_secret, &node.directory) else {
        if config.backplane == BackplaneKind::Redis {
            warn!("no --cluster-secret: every request of a connection must reach the node that negotiated it (sticky routing); set one to let any node serve any request");
        }
        return Ok(None);
    };
    let lifetime = config.disconnect_timeout;
    Stateless::new(secret, lifetime, directory.clone(), node.id.clone(), config.advertise_url.clone())
        .map(Some)
        .map_err(GatewayError::Forwarding)
}

pub fn user_groups_from_config(config: &Config) -> Result<Arc<dyn UserGroups>, GatewayError> {
    Ok(match config.backplane {
        BackplaneKind::Memory => Arc::new(MemoryUserGroups::new()),
        BackplaneKind::Redis => Arc::new(RedisUserGroups::connect(&config.redis_config(), &config.channel_prefix)?),
    })
}

/// Runs a node with the relay hub at `/hubs/{hub}` on the backplane `config` asks for (see
/// [`Gateway::from_config`]) until `shutdown`: what the `gateway` binary does, minus its admin
/// port and signals.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let gateway = Gateway::from_config(config).await?;
    let router = gateway.router();
    serve(listener, gateway, router, shutdown).await
}
