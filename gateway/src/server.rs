//! The gateway node: shared state, routes and the serve loop with graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use backplane::{
    Backplane, Health, MemoryBackplane, MemoryUserGroups, Presence, RedisBackplane, RedisPresence, RedisUserGroups,
    UserGroups,
};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::{AuthConfigError, Authenticator};
use crate::cluster::{self, HubLifetime, HubTable, Node, RegistryPresence, Stats};
use crate::config::{BackplaneKind, Config, ConfigError};
use crate::connection::{random_id, TransportKind};
use crate::hub::{relay::relay_hub, Hub, RelayPolicy};
use crate::metrics::Metrics;
use crate::transport::connections::ConnectionTable;
use crate::transport::resumable::Resumable;
use crate::transport::Endpoint;
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
    /// A metric could not be registered (e.g. the registry already holds another gateway's).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// One gateway node's shared state. Create it with [`Gateway::new`], build routes with
/// [`Gateway::relay_router`] or [`Gateway::hub_router`], and serve them with [`serve`].
pub struct Gateway {
    pub(crate) config: Config,
    pub(crate) auth: Authenticator,
    pub(crate) node: Arc<Node>,
    pub(crate) hubs: Arc<HubTable>,
    pub(crate) connections: ConnectionTable,
    pub(crate) resumable: Resumable,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    pub(crate) metrics: Arc<Metrics>,
}

impl Gateway {
    /// Validates `config`, attaches to `backplane` and starts the node's background tasks
    /// (backplane inbound routing, reaping of unclaimed negotiations). Returns once the node
    /// listens on its own channel.
    ///
    /// Presence is answered from this node's own hub registries, at no extra memory: right for
    /// a single node; a cluster passes a shared one to [`Gateway::with_presence`].
    pub async fn new(config: Config, backplane: Arc<dyn Backplane>) -> Result<Arc<Self>, GatewayError> {
        let presence = Arc::new(RegistryPresence::default());
        let gateway = Self::with_presence(config, backplane, presence.clone()).await?;
        presence.attach(&gateway.hubs);
        Ok(gateway)
    }

    /// Like [`Gateway::new`], reporting connections and groups to `presence` (see
    /// [`presence_from_config`]) and heartbeating it every `--presence-heartbeat-interval`.
    pub async fn with_presence(
        config: Config,
        backplane: Arc<dyn Backplane>,
        presence: Arc<dyn Presence>,
    ) -> Result<Arc<Self>, GatewayError> {
        Self::start(config, backplane, presence, prometheus::Registry::new()).await
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
        let Some(presence) = presence else {
            let local = Arc::new(RegistryPresence::default());
            let gateway = Self::start(config, backplane, local.clone(), registry).await?;
            local.attach(&gateway.hubs);
            return Ok(gateway);
        };
        Self::start(config, backplane, presence, registry).await
    }

    async fn start(
        config: Config,
        backplane: Arc<dyn Backplane>,
        presence: Arc<dyn Presence>,
        registry: prometheus::Registry,
    ) -> Result<Arc<Self>, GatewayError> {
        config.validate()?;
        let metrics = Arc::new(Metrics::new(registry)?);
        let auth = Authenticator::from_config(&config)?;
        if !auth.is_enabled() {
            warn!("NO TOKEN KEY CONFIGURED: every client is anonymous and no user ids exist. Set --jwt-secret or --jwt-public-key for production.");
        }
        let inbound = backplane.take_inbound()?;
        let node_id = config.node_id.clone().unwrap_or_else(|| random_id()[..11].to_owned());
        let channels = Channels::new(config.channel_prefix.clone());
        let (ack_timeout, result_timeout) = (config.group_ack_timeout, config.client_result_timeout);
        let stores = (presence, user_groups_from_config(&config)?);
        let node =
            Arc::new(Node::new(node_id, backplane, stores, channels, ack_timeout, result_timeout, metrics.clone()));
        metrics.watch_node(&node)?;
        let gateway = Arc::new(Self {
            hubs: Arc::new(HubTable::new(node.clone(), config.max_hubs)),
            connections: ConnectionTable::new(config.max_pending_connections),
            resumable: Resumable::default(),
            auth,
            node,
            config,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            metrics,
        });
        let node = &gateway.node;
        node.backplane.subscribe(&node.channels.node(&node.id)).await?;
        tokio::spawn(cluster::route_inbound(
            gateway.node.clone(),
            gateway.hubs.clone(),
            inbound,
            gateway.shutdown.clone(),
        ));
        tokio::spawn(reap_unclaimed(gateway.clone()));
        let interval = gateway.config.presence_heartbeat_interval;
        gateway.tasks.spawn(heartbeat(gateway.node.clone(), interval, gateway.shutdown.clone()));
        Ok(gateway)
    }

    /// `GET /healthz` (the process serves requests) and `GET /readyz` (the backplane is
    /// connected and the node is not shutting down; load balancers should route new clients
    /// only to ready nodes). Both answer in plain text; not ready is 503.
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

    /// Whether the node should receive new clients, or why not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.shutdown.is_cancelled() {
            return Err("shutting down");
        }
        match self.node.backplane.health() {
            Health::Up => Ok(()),
            Health::Down => Err("backplane unavailable"),
        }
    }

    /// The built-in relay hub for every name, at `/hubs/{hub}`, the health endpoints, the
    /// server REST API at `/api` and, unless `--metrics-on-main-port false`, `/metrics`.
    pub fn router(self: &Arc<Self>) -> Router {
        // The REST router goes first: see `rest_router`.
        let router = self.rest_router().merge(self.relay_router()).merge(self.health_router());
        if self.config.metrics_on_main_port {
            return router.merge(self.metrics_router());
        }
        router
    }

    /// The server REST API (Azure SignalR data-plane compatible) at `/api`; see [`crate::rest`].
    /// Its paths have literal `:verb` segments, which axum refuses to add to a router that
    /// checks for its old capture syntax (the default): merge other routers into this one
    /// (`rest_router().merge(app)`), not this one into them.
    pub fn rest_router(self: &Arc<Self>) -> Router {
        crate::rest::router(self.clone())
    }

    /// The built-in relay hub for every name, at `/hubs/{hub}`.
    pub fn relay_router(self: &Arc<Self>) -> Router {
        Endpoint::per_name(self.clone(), relay_hub(RelayPolicy::new(&self.config.relay)))
    }

    /// Routes for an application hub named `name`: `/negotiate` and `/`, to be nested at a path,
    /// e.g. `Router::new().nest("/chat", gateway.hub_router("chat", hub))`.
    pub fn hub_router(self: &Arc<Self>, name: &str, hub: Hub) -> Router {
        Endpoint::fixed(self.clone(), name, hub, &self.config.transports)
    }

    /// Like [`Gateway::hub_router`], offering only `transports` (of those the configuration
    /// allows) at this path.
    pub fn hub_router_with_transports(self: &Arc<Self>, name: &str, hub: Hub, transports: &[TransportKind]) -> Router {
        let allowed: Vec<TransportKind> =
            transports.iter().copied().filter(|t| self.config.transports.contains(t)).collect();
        Endpoint::fixed(self.clone(), name, hub, &allowed)
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
        self.node.presence.clone()
    }

    /// This node's id on the backplane.
    pub fn node_id(&self) -> &str {
        &self.node.id
    }

    /// Ends every connection with a Close that allows reconnecting, and waits (up to the
    /// shutdown timeout) for them to finish.
    pub async fn shut_down(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(self.config.shutdown_timeout, self.tasks.wait()).await.is_err() {
            warn!(remaining = self.tasks.len(), "shutdown deadline passed with connections still open");
        }
        self.leave_presence().await;
    }

    /// Removes this node's presence entries at once rather than letting them expire.
    async fn leave_presence(&self) {
        match tokio::time::timeout(self.config.shutdown_timeout, self.node.presence.node_stopped(&self.node.id)).await {
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
                if let Err(error) = node.presence.heartbeat(&node.id).await {
                    warn!(%error, "presence heartbeat failed; retrying at the next tick");
                }
            }
        }
    }
}

async fn reap_unclaimed(gateway: Arc<Gateway>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = gateway.shutdown.cancelled() => return,
            _ = tick.tick() => {
                gateway.connections.reap(gateway.config.disconnect_timeout);
                gateway.resumable.reap(gateway.config.disconnect_timeout);
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then shuts the gateway down
/// gracefully (upgraded connections are tracked by the gateway, not by the HTTP server).
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let signal = {
        let gateway = gateway.clone();
        async move {
            shutdown.await;
            info!("shutting down");
            gateway.shutdown.cancel();
        }
    };
    axum::serve(listener, router).with_graceful_shutdown(signal).await?;
    gateway.shut_down().await;
    Ok(())
}

/// Serves [`Gateway::admin_router`] on `listener` (`--admin-listen`) until the gateway shuts
/// down.
pub async fn serve_admin(listener: TcpListener, gateway: Arc<Gateway>) -> Result<(), GatewayError> {
    let stopped = gateway.shutdown.clone().cancelled_owned();
    axum::serve(listener, gateway.admin_router()).with_graceful_shutdown(stopped).await?;
    Ok(())
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
pub fn user_groups_from_config(config: &Config) -> Result<Arc<dyn UserGroups>, GatewayError> {
    Ok(match config.backplane {
        BackplaneKind::Memory => Arc::new(MemoryUserGroups::new()),
        BackplaneKind::Redis => Arc::new(RedisUserGroups::connect(&config.redis_config(), &config.channel_prefix)?),
    })
}

/// Runs a single node with the in-memory backplane and the relay hub at `/hubs/{hub}`: what
/// the `gateway` binary does, and what integration tests start.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let gateway = Gateway::new(config, Arc::new(MemoryBackplane::standalone())).await?;
    let router = gateway.router();
    serve(listener, gateway, router, shutdown).await
}
