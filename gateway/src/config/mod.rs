//! The gateway's configuration: one typed struct, validated before any port is bound.
//!
//! Values come from four sources; for each option the first that sets it wins:
//!
//! 1. a command-line flag (`--keep-alive-interval 20s`),
//! 2. its `HUBGATE_*` environment variable (`HUBGATE_KEEP_ALIVE_INTERVAL=20s`),
//! 3. the TOML file named by `--config FILE` or `HUBGATE_CONFIG`, whose keys are the long flag
//!    names (`keep-alive-interval = "20s"`, `redis-url = ["redis://a:6379"]`),
//! 4. the built-in default shown by `gateway --help` (and [`Config::default`]).
//!
//! A source replaces an option's whole value, lists included: a `--redis-url` flag drops the
//! file's URLs rather than adding to them. [`load`] implements the order (see its module for
//! how), [`Loaded::to_toml`] prints the result back as a file (`gateway config`), secrets
//! redacted. `Config::try_parse_from` still parses flags and the process environment alone.

mod load;
mod render;

pub use load::{command, load, Action, LoadError, Loaded};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use thiserror::Error;

use crate::cors::AllowedOrigins;
use crate::forwarded::{ProxyRange, TrustedProxies};
use crate::hub::RelayPolicyConfig;
use crate::limits::ConnectionRate;
use crate::request::TransportKind;
use crate::upstream::rules::Rule;
use crate::upstream::UpstreamSettings;

/// Reads one `--connection-rate-per-ip` value.
fn parse_rate(text: &str) -> Result<ConnectionRate, String> {
    text.parse().map_err(|error: crate::limits::rate::RateParseError| error.to_string())
}

/// Reads one `--trusted-proxies` entry.
fn parse_proxy(text: &str) -> Result<ProxyRange, String> {
    text.parse().map_err(|error: crate::forwarded::ProxyParseError| error.to_string())
}

/// Reads one `--upstream` rule.
fn parse_rule(text: &str) -> Result<Rule, String> {
    text.parse().map_err(|error: crate::upstream::rules::RuleError| error.to_string())
}

/// Defaults, shared by the command line and [`Config::default`].
pub mod defaults {
    use std::time::Duration;

    /// Where a single node listens when nothing is configured.
    pub const LISTEN: &str = "127.0.0.1:8080";
    /// Largest inbound hub message, in bytes (the official server's default).
    pub const MAX_MESSAGE_SIZE: usize = 32 * 1024;
    /// Largest WebSocket message, in bytes; one may carry many hub messages.
    pub const MAX_WEBSOCKET_MESSAGE: usize = 1024 * 1024;
    /// Largest POST body of the HTTP transports.
    pub const MAX_POST_BODY: usize = 1024 * 1024;
    pub const POLL_TIMEOUT: Duration = Duration::from_secs(90);
    /// Bytes that may wait for one slow client before it is disconnected.
    pub const OUTBOUND_QUEUE_BYTES: usize = 512 * 1024;
    /// Hub method calls of one connection that may run at the same time: one, as the official
    /// server (`MaximumParallelInvocationsPerClient`), so a connection's calls run in the order
    /// they were sent.
    pub const MAX_PARALLEL_INVOCATIONS: usize = 1;
    /// Server-to-client streams and client upload streams one connection may have open.
    pub const MAX_STREAMS_PER_CONNECTION: usize = 16;
    pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);
    pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
    pub const FLUSH_DELAY: Duration = Duration::from_millis(30);
    pub const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(15);
    pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
    pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
    pub const GROUP_ACK_TIMEOUT: Duration = Duration::from_secs(5);
    pub const CLIENT_RESULT_TIMEOUT: Duration = Duration::from_secs(30);
    /// How often a node renews its presence lease (Redis backplane).
    pub const PRESENCE_HEARTBEAT_INTERVAL: Duration = backplane::presence::HEARTBEAT_INTERVAL;
    /// How long one presence heartbeat keeps a node's connections counted.
    pub const PRESENCE_NODE_TTL: Duration = backplane::presence::NODE_TTL;
    /// Distinct hub names the relay hub serves before refusing new ones.
    pub const MAX_HUBS: usize = 1024;
    /// Connections negotiated but not yet connected, across all hubs.
    pub const MAX_PENDING_CONNECTIONS: usize = 65_536;
    /// Connections one node holds, and one user holds on a node: 0, unlimited (as Kestrel's
    /// `MaxConcurrentConnections`); size them from docs/operations.md.
    pub const MAX_CONNECTIONS: usize = 0;
    pub const MAX_CONNECTIONS_PER_USER: usize = 0;
    /// Largest request body of the server REST API, in bytes (Azure SignalR's limit).
    pub const REST_MAX_BODY: usize = 1024 * 1024;
    /// Upstream calls one node waits for at once.
    pub const UPSTREAM_MAX_IN_FLIGHT: usize = 1024;
    /// Largest upstream answer, in bytes.
    pub const UPSTREAM_MAX_BODY: usize = 1024 * 1024;
}

/// Environment variable names that scripts and deployments rely on.
pub mod env {
    pub const LISTEN: &str = "HUBGATE_LISTEN";
    pub const TLS_CERT: &str = "HUBGATE_TLS_CERT";
    pub const TLS_KEY: &str = "HUBGATE_TLS_KEY";
    pub const JWT_SECRET: &str = "HUBGATE_JWT_SECRET";
    pub const ACCESS_KEY: &str = "HUBGATE_ACCESS_KEY";
    pub const ACCESS_KEY_SECONDARY: &str = "HUBGATE_ACCESS_KEY_SECONDARY";
    /// The TOML configuration file, like `--config`.
    pub const CONFIG: &str = "HUBGATE_CONFIG";
    pub const MAX_CONNECTIONS: &str = "HUBGATE_MAX_CONNECTIONS";
    pub const MAX_CONNECTIONS_PER_USER: &str = "HUBGATE_MAX_CONNECTIONS_PER_USER";
    pub const CONNECTION_RATE_PER_IP: &str = "HUBGATE_CONNECTION_RATE_PER_IP";
    pub const TRUSTED_PROXIES: &str = "HUBGATE_TRUSTED_PROXIES";
}

/// Parses a duration with its unit (`15s`, `500ms`, `1m 30s`); the error names the expectation,
/// so the caller can put the option and the value in front of it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|_| "not a duration (give a number and a unit, e.g. 15s or 500ms)".into())
}

/// Everything a gateway node needs to know before it binds its port.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, about = "hubgate: a SignalR-compatible real-time gateway")]
pub struct Config {
    /// Address to listen on, HOST:PORT (port 0 picks a free port).
    #[arg(long, env = env::LISTEN, default_value = defaults::LISTEN)]
    pub listen: SocketAddr,

    /// PEM file with the TLS certificate chain (leaf first) for `https://` and `wss://` on the
    /// main and admin ports; needs --tls-key. TLS 1.2 and 1.3 only. Both files are re-read on
    /// SIGHUP and when they change (checked every 2 s); a new pair that does not load keeps the
    /// old one serving and logs why. Default: none (plain HTTP).
    #[arg(long, env = env::TLS_CERT, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the private key of --tls-cert (PKCS#8, PKCS#1 RSA or SEC1 EC); needs
    /// --tls-cert. Default: none.
    #[arg(long, env = env::TLS_KEY, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// How long a client has to finish its TLS handshake after connecting; a connection that
    /// has not by then is closed (and counted in hubgate_tls_handshake_failures_total{reason="timeout"}).
    #[arg(long, env = "HUBGATE_TLS_HANDSHAKE_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub tls_handshake_timeout: Duration,

    /// Shared secret for HS256 client tokens. Without it (and without --jwt-public-key) every
    /// client is anonymous. Default: none.
    #[arg(long, env = env::JWT_SECRET, hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM file with the RSA public key for RS256 client tokens. Default: none.
    #[arg(long, env = "HUBGATE_JWT_PUBLIC_KEY", conflicts_with = "jwt_secret")]
    pub jwt_public_key: Option<PathBuf>,

    /// Token claim that holds the user id.
    #[arg(long, env = "HUBGATE_JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,

    /// With a token key configured, still let clients without a token connect (anonymously).
    /// Bad or expired tokens are refused regardless. Default: off.
    #[arg(long, env = "HUBGATE_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,

    /// Largest inbound hub message in bytes (32 KiB by default); larger ones close the
    /// connection with an error.
    #[arg(long, env = "HUBGATE_MAX_MESSAGE_SIZE", default_value_t = defaults::MAX_MESSAGE_SIZE)]
    pub max_message_size: usize,

    /// Largest inbound WebSocket message in bytes, 1 MiB by default (it may carry several hub
    /// messages).
    #[arg(long, env = "HUBGATE_MAX_WEBSOCKET_MESSAGE", default_value_t = defaults::MAX_WEBSOCKET_MESSAGE)]
    pub max_websocket_message: usize,

    /// Bytes queued for one client before it counts as a slow consumer and is disconnected
    /// (512 KiB by default).
    #[arg(long, env = "HUBGATE_OUTBOUND_QUEUE_BYTES", default_value_t = defaults::OUTBOUND_QUEUE_BYTES)]
    pub outbound_queue_bytes: usize,

    /// Hub method calls (a count) of one connection that may run concurrently; further
    /// messages from that connection wait for a free slot (1 by default: calls run one at a
    /// time, in order). A higher limit lets a slow method overlap the next ones, and their
    /// effects may then happen out of order, except the relay hub's sends, which always keep
    /// the sender's order.
    #[arg(long, env = "HUBGATE_MAX_PARALLEL_INVOCATIONS", default_value_t = defaults::MAX_PARALLEL_INVOCATIONS)]
    pub max_parallel_invocations: usize,

    /// Streams (a count) one connection may have open at once: server-to-client streams and
    /// client upload streams together; a call that would open more fails with an error.
    #[arg(long, env = "HUBGATE_MAX_STREAMS_PER_CONNECTION", default_value_t = defaults::MAX_STREAMS_PER_CONNECTION)]
    pub max_streams_per_connection: usize,

    /// Send a Ping after this long without writing to a client (e.g. 15s, 500ms).
    #[arg(long, env = "HUBGATE_KEEP_ALIVE_INTERVAL", value_parser = parse_duration, default_value = "15s")]
    pub keep_alive_interval: Duration,

    /// Close a client that pinged once and then sent nothing for this long.
    #[arg(long, env = "HUBGATE_CLIENT_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub client_timeout: Duration,

    /// Close a connection that has not completed its handshake within this time.
    #[arg(long, env = "HUBGATE_HANDSHAKE_TIMEOUT", value_parser = parse_duration, default_value = "15s")]
    pub handshake_timeout: Duration,

    /// Forget a negotiated connection that nobody connected to within this time.
    #[arg(long, env = "HUBGATE_DISCONNECT_TIMEOUT", value_parser = parse_duration, default_value = "15s")]
    pub disconnect_timeout: Duration,

    /// Close a connection whose transport write blocks for longer than this: a WebSocket, an
    /// event stream or a poll response whose client stopped reading.
    #[arg(long, env = "HUBGATE_SEND_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub send_timeout: Duration,

    /// Adaptive write coalescing on WebSockets: once writes to a client come close together
    /// (within two periods), the next one waits for the node's next tick of this period, so
    /// messages queued meanwhile share one write. A quiet connection's messages are written at
    /// once, replies to the client's own calls (completions) and the close are never held, and
    /// dense traffic waits at most this long. 0 writes every message at once.
    #[arg(long, env = "HUBGATE_FLUSH_DELAY", value_parser = parse_duration, default_value = "30ms")]
    pub flush_delay: Duration,

    /// How long a long-polling request waits for messages before answering empty.
    #[arg(long, env = "HUBGATE_POLL_TIMEOUT", value_parser = parse_duration, default_value = "90s")]
    pub poll_timeout: Duration,

    /// The transports offered (comma-separated): `websockets`, `server-sent-events` (or `sse`),
    /// `long-polling`. One left out is absent from negotiate and its requests get 404.
    #[arg(
        long,
        env = "HUBGATE_TRANSPORTS",
        value_delimiter = ',',
        default_value = "websockets,server-sent-events,long-polling"
    )]
    pub transports: Vec<TransportKind>,

    /// Browser origins whose pages may use the hubs from another origin (CORS): a
    /// comma-separated list of `scheme://host[:port]`, e.g. `https://app.example.com`.
    /// Negotiate and the Server-Sent Events and long-polling requests answer a listed origin's
    /// preflights and carry `Access-Control-Allow-Origin` (the origin) and
    /// `Access-Control-Allow-Credentials: true`; WebSocket upgrades from an origin neither listed
    /// nor the gateway's own get 403. `*` allows every origin, without credentials (browser
    /// clients must then set `withCredentials: false`). Default: none (same origin only).
    #[arg(
        long,
        env = "HUBGATE_CORS_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_parser = crate::cors::parse_origin
    )]
    pub cors_allowed_origins: Vec<String>,

    /// Largest body in bytes (1 MiB by default) of a POST that carries messages for Server-Sent
    /// Events and long-polling connections; larger ones are refused with 413.
    #[arg(long, env = "HUBGATE_MAX_POST_BODY", default_value_t = defaults::MAX_POST_BODY)]
    pub max_post_body: usize,

    /// On shutdown, how long connections get to receive their Close and finish.
    #[arg(long, env = "HUBGATE_SHUTDOWN_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub shutdown_timeout: Duration,

    /// On shutdown, how long `/readyz` answers 503 before connections are closed, so load
    /// balancers stop routing new clients here first (new connections are refused with 503
    /// from the start of shutdown either way). Default 0 (close at once).
    #[arg(long, env = "HUBGATE_DRAIN_DELAY", value_parser = parse_duration, default_value = "0s")]
    pub drain_delay: Duration,

    /// Let clients that ask for it (`withStatefulReconnect()`) resume a WebSocket connection
    /// after a network drop within the disconnect timeout, without losing or repeating
    /// messages. Costs a replay buffer per such connection (bounded by --outbound-queue-bytes).
    #[arg(long, env = "HUBGATE_STATEFUL_RECONNECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub stateful_reconnect: bool,

    /// Add exception details to error texts sent to clients. Default: off.
    #[arg(long, env = "HUBGATE_DETAILED_ERRORS")]
    pub detailed_errors: bool,

    /// Distinct hub names (a count) served before new names are refused with 404.
    #[arg(long, env = "HUBGATE_MAX_HUBS", default_value_t = defaults::MAX_HUBS)]
    pub max_hubs: usize,

    /// Negotiated-but-unconnected connections (a count) held at once; beyond it negotiate
    /// answers 503.
    #[arg(long, env = "HUBGATE_MAX_PENDING_CONNECTIONS", default_value_t = defaults::MAX_PENDING_CONNECTIONS)]
    pub max_pending_connections: usize,

    /// Connections (a count) this node holds at once, negotiated-but-unconnected ones
    /// included; beyond it negotiate and a WebSocket that skips negotiate answer 503 with
    /// `Retry-After`, while `/readyz` stays 200. 0 (the default) is unlimited.
    #[arg(long, env = env::MAX_CONNECTIONS, default_value_t = defaults::MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Connections (a count) one authenticated user holds on this node; beyond it new ones
    /// answer 429 with `Retry-After`. Anonymous connections are not counted. 0 (the default)
    /// is unlimited.
    #[arg(long, env = env::MAX_CONNECTIONS_PER_USER, default_value_t = defaults::MAX_CONNECTIONS_PER_USER)]
    pub max_connections_per_user: usize,

    /// New connections one client address may open: `COUNT/PERIOD` with an optional
    /// `,burst=N` (e.g. `10/s`, `600/m,burst=50`; the period is s, m, h or a duration; the
    /// burst defaults to the count). Beyond it negotiate and a WebSocket that skips negotiate
    /// answer 429 with `Retry-After`. IPv6 clients count per /64. Default: none (off).
    #[arg(long, env = env::CONNECTION_RATE_PER_IP, value_parser = parse_rate)]
    pub connection_rate_per_ip: Option<ConnectionRate>,

    /// Reverse proxies (IP addresses or CIDR ranges, comma-separated) whose `X-Forwarded-For`
    /// names the client address for --connection-rate-per-ip, and whose `X-Forwarded-Host` /
    /// `X-Forwarded-Proto` count for the REST API's token audience. From other peers these
    /// headers are ignored. Default: none.
    #[arg(long, env = env::TRUSTED_PROXIES, value_delimiter = ',', value_parser = parse_proxy)]
    pub trusted_proxies: Vec<ProxyRange>,

    /// Which backplane links the nodes: `memory` (a single node) or `redis`.
    #[arg(long, env = "HUBGATE_BACKPLANE", default_value = "memory")]
    pub backplane: BackplaneKind,

    /// Redis to use with `--backplane redis`: `redis://[user:password@]host:port[/db]` or
    /// `rediss://` for TLS. Repeat the flag (or separate with commas in the variable) to list
    /// several seed nodes of a Redis Cluster.
    #[arg(
        long = "redis-url",
        env = "HUBGATE_REDIS_URL",
        value_delimiter = ',',
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_urls: Vec<String>,

    /// Treat the Redis URLs as a Redis Cluster and use sharded pub/sub (SPUBLISH/SSUBSCRIBE),
    /// so traffic spreads over the shards. Implied when several URLs are given. Default: off.
    #[arg(long, env = "HUBGATE_REDIS_CLUSTER")]
    pub redis_cluster: bool,

    /// PEM file of certificate authorities to trust for `rediss://` besides the system's (e.g.
    /// a managed Redis's private CA). Default: none.
    #[arg(long, env = "HUBGATE_REDIS_TLS_CA")]
    pub redis_tls_ca: Option<PathBuf>,

    /// This node's id on the backplane: letters, digits, `-` and `_`, at most 64. Generated
    /// at random when absent (default: none). Connection ids start with it.
    #[arg(long, env = "HUBGATE_NODE_ID")]
    pub node_id: Option<String>,

    /// Prefix of every backplane channel, so several clusters can share one Redis.
    #[arg(long, env = "HUBGATE_CHANNEL_PREFIX", default_value = backplane::channels::DEFAULT_PREFIX)]
    pub channel_prefix: String,

    /// A secret shared by every node of the cluster (`--backplane redis`): connection tokens
    /// are signed with it, so a client may negotiate on one node and open its transport on
    /// any other, and requests of Server-Sent Events and long-polling connections may land on
    /// any node (they are forwarded to the one holding the connection). Without it every
    /// request of a connection must reach the node that negotiated it (sticky routing).
    /// Default: none.
    #[arg(long, env = "HUBGATE_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,

    /// The base URL other nodes reach this node's main port at (e.g. http://10.0.0.7:8080),
    /// to forward requests of HTTP-transport connections held here. Default: none, which
    /// means `http://` and the listen address when that is not a wildcard (0.0.0.0 or ::).
    #[arg(long, env = "HUBGATE_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// How long adding or removing a connection on another node to or from a group may wait
    /// for that node's acknowledgement; also how long a client result awaited from a
    /// connection on another node waits for that node to confirm it got the invocation.
    #[arg(long, env = "HUBGATE_GROUP_ACK_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub group_ack_timeout: Duration,

    /// How long a hub method (or server code) awaiting a client result waits for the client's
    /// answer before it fails with a timeout; a later answer is ignored.
    #[arg(long, env = "HUBGATE_CLIENT_RESULT_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub client_result_timeout: Duration,

    /// How often this node renews its presence lease with `--backplane redis` (e.g. 5s).
    #[arg(
        long,
        env = "HUBGATE_PRESENCE_HEARTBEAT_INTERVAL",
        value_parser = parse_duration,
        default_value = "5s"
    )]
    pub presence_heartbeat_interval: Duration,

    /// How long one presence heartbeat keeps this node's connections counted by other nodes
    /// (e.g. 15s). A node that dies stops being counted within this time plus one heartbeat
    /// interval; it must exceed --presence-heartbeat-interval (about three intervals tolerate
    /// late heartbeats).
    #[arg(long, env = "HUBGATE_PRESENCE_NODE_TTL", value_parser = parse_duration, default_value = "15s")]
    pub presence_node_ttl: Duration,

    /// What clients may do with the relay hub (`--relay-*`, see `hub::policy`).
    #[command(flatten)]
    pub relay: RelayPolicyConfig,

    /// Key of the server REST API at `/api` (Azure SignalR data-plane compatible): requests
    /// carry `Authorization: Bearer <JWT>` signed HS256 with it. Without a key every `/api`
    /// request is refused with 401, unless --rest-api-open. Default: none.
    #[arg(long, env = env::ACCESS_KEY, hide_env_values = true)]
    pub access_key: Option<String>,

    /// A second accepted REST API key, for rotation: sign with the new key while both are
    /// accepted, then drop the old one. Default: none.
    #[arg(long, env = env::ACCESS_KEY_SECONDARY, hide_env_values = true, requires = "access_key")]
    pub access_key_secondary: Option<String>,

    /// Serve the REST API without any authentication when no access key is set. For local
    /// development only: anyone who reaches the port can publish to every client. Default: off.
    #[arg(long, env = "HUBGATE_REST_API_OPEN")]
    pub rest_api_open: bool,

    /// Browser origins whose pages may call the REST API at `/api` (CORS), as for
    /// --cors-allowed-origins. Default: none (browsers on other origins cannot call it).
    #[arg(
        long,
        env = "HUBGATE_REST_CORS_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_parser = crate::cors::parse_origin
    )]
    pub rest_cors_allowed_origins: Vec<String>,

    /// Largest REST API request body in bytes (1 MiB by default); larger ones are refused with
    /// 413.
    #[arg(long, env = "HUBGATE_REST_MAX_BODY", default_value_t = defaults::REST_MAX_BODY)]
    pub rest_max_body: usize,

    /// An upstream webhook rule (repeatable; the first that matches an event wins): a URL
    /// template with {hub}, {category} and {event} for every event of every hub, or
    /// `url=…;hub=…;category=…;event=…;timeout=…` (patterns: `*`, a comma list, or a name).
    /// A hub whose `messages` a rule takes sends its clients' calls to that backend; `connect`
    /// (a blocking connect hook) only goes to a rule that names it. In the file: `[[upstream]]`
    /// tables with those keys. Default: none.
    #[arg(long = "upstream", env = "HUBGATE_UPSTREAM", value_parser = parse_rule)]
    pub upstream: Vec<Rule>,

    /// Upstream calls one node has waiting for an answer at most; a call beyond it fails at
    /// once with an error (back-pressure instead of a growing backlog).
    #[arg(long, env = "HUBGATE_UPSTREAM_MAX_IN_FLIGHT", default_value_t = defaults::UPSTREAM_MAX_IN_FLIGHT)]
    pub upstream_max_in_flight: usize,

    /// Largest upstream answer body in bytes (1 MiB by default); a larger one fails the call.
    #[arg(long, env = "HUBGATE_UPSTREAM_MAX_BODY", default_value_t = defaults::UPSTREAM_MAX_BODY)]
    pub upstream_max_body: usize,

    /// PEM file of CA certificates trusted for HTTPS upstreams, besides the system's.
    /// Default: none.
    #[arg(long, env = "HUBGATE_UPSTREAM_CA_FILE")]
    pub upstream_ca_file: Option<PathBuf>,

    /// A second address, HOST:PORT, serving only `/metrics`, `/healthz` and `/readyz` (for
    /// Prometheus and probes, kept off the public port). Default: none.
    #[arg(long, env = "HUBGATE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// Also serve `/metrics` on the main port (`--listen`); `false` keeps it on the admin port
    /// only. Default: true.
    #[arg(long, env = "HUBGATE_METRICS_ON_MAIN_PORT", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_on_main_port: bool,

    /// Serve the demo chat page at `/` (its script at `/demo/app.js`), which talks to the relay
    /// hub at `/hubs/demo`; `false` answers 404 there. Default: true.
    #[arg(long, env = "HUBGATE_DEMO_PAGE", default_value_t = true, action = clap::ArgAction::Set)]
    pub demo_page: bool,

    /// Log format: `pretty` or `json`.
    #[arg(long, env = "HUBGATE_LOG_FORMAT", default_value = "pretty")]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `gateway=debug` (RUST_LOG syntax).
    #[arg(long, env = "HUBGATE_LOG", default_value = "info")]
    pub log: String,
}

/// Which backplane links the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackplaneKind {
    /// In-process only: one node, no setup.
    Memory,
    /// Redis pub/sub (standalone or Redis Cluster).
    Redis,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A configuration value that cannot work; the text names the option.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--{option}: {reason}")]
    Invalid { option: &'static str, reason: String },
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: defaults::LISTEN.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080))),
            tls_cert: None,
            tls_key: None,
            tls_handshake_timeout: crate::tls::DEFAULT_HANDSHAKE_TIMEOUT,
            jwt_secret: None,
            jwt_public_key: None,
            jwt_user_claim: "sub".into(),
            allow_anonymous: false,
            max_message_size: defaults::MAX_MESSAGE_SIZE,
            max_websocket_message: defaults::MAX_WEBSOCKET_MESSAGE,
            outbound_queue_bytes: defaults::OUTBOUND_QUEUE_BYTES,
            max_parallel_invocations: defaults::MAX_PARALLEL_INVOCATIONS,
            max_streams_per_connection: defaults::MAX_STREAMS_PER_CONNECTION,
            keep_alive_interval: defaults::KEEP_ALIVE_INTERVAL,
            client_timeout: defaults::CLIENT_TIMEOUT,
            handshake_timeout: defaults::HANDSHAKE_TIMEOUT,
            disconnect_timeout: defaults::DISCONNECT_TIMEOUT,
            send_timeout: defaults::SEND_TIMEOUT,
            flush_delay: defaults::FLUSH_DELAY,
            poll_timeout: defaults::POLL_TIMEOUT,
            transports: TransportKind::ALL.to_vec(),
            cors_allowed_origins: Vec::new(),
            max_post_body: defaults::MAX_POST_BODY,
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            drain_delay: Duration::ZERO,
            stateful_reconnect: true,
            detailed_errors: false,
            max_hubs: defaults::MAX_HUBS,
            max_pending_connections: defaults::MAX_PENDING_CONNECTIONS,
            max_connections: defaults::MAX_CONNECTIONS,
            max_connections_per_user: defaults::MAX_CONNECTIONS_PER_USER,
            connection_rate_per_ip: None,
            trusted_proxies: Vec::new(),
            backplane: BackplaneKind::Memory,
            redis_urls: vec!["redis://127.0.0.1:6379".into()],
            redis_cluster: false,
            redis_tls_ca: None,
            node_id: None,
            channel_prefix: backplane::channels::DEFAULT_PREFIX.into(),
            cluster_secret: None,
            advertise_url: None,
            group_ack_timeout: defaults::GROUP_ACK_TIMEOUT,
            client_result_timeout: defaults::CLIENT_RESULT_TIMEOUT,
            presence_heartbeat_interval: defaults::PRESENCE_HEARTBEAT_INTERVAL,
            presence_node_ttl: defaults::PRESENCE_NODE_TTL,
            relay: RelayPolicyConfig::default(),
            access_key: None,
            access_key_secondary: None,
            rest_api_open: false,
            rest_cors_allowed_origins: Vec::new(),
            rest_max_body: defaults::REST_MAX_BODY,
            upstream: Vec::new(),
            upstream_max_in_flight: defaults::UPSTREAM_MAX_IN_FLIGHT,
            upstream_max_body: defaults::UPSTREAM_MAX_BODY,
            upstream_ca_file: None,
            admin_listen: None,
            metrics_on_main_port: true,
            demo_page: true,
            log_format: LogFormat::Pretty,
            log: "info".into(),
        }
    }
}

impl Config {
    /// The limits and timers of every hub session.
    pub(crate) fn session_limits(&self) -> crate::connection::session::SessionLimits {
        crate::connection::session::SessionLimits {
            max_message_size: self.max_message_size,
            handshake_timeout: self.handshake_timeout,
            client_timeout: self.client_timeout,
            max_parallel_invocations: self.max_parallel_invocations,
            max_streams_per_connection: self.max_streams_per_connection,
            outbound_queue_bytes: self.outbound_queue_bytes,
            detailed_errors: self.detailed_errors,
        }
    }

    /// The REST API's settings.
    pub(crate) fn rest_settings(&self) -> crate::rest::RestSettings {
        crate::rest::RestSettings {
            access_key: self.access_key.clone(),
            access_key_secondary: self.access_key_secondary.clone(),
            open: self.rest_api_open,
            cors: AllowedOrigins::from_list(&self.rest_cors_allowed_origins),
            max_body: self.rest_max_body,
            trusted_proxies: self.trusted_proxies(),
            client_tokens: crate::rest::ClientTokens {
                secret: self.jwt_secret.clone(),
                user_claim: self.jwt_user_claim.clone(),
                groups_claim: self.relay.groups_claim.clone(),
            },
        }
    }

    /// The limits that protect the node.
    pub(crate) fn limit_settings(&self) -> crate::limits::LimitSettings {
        crate::limits::LimitSettings {
            max_connections: self.max_connections,
            max_connections_per_user: self.max_connections_per_user,
            connection_rate_per_ip: self.connection_rate_per_ip,
        }
    }

    /// The proxies whose forwarding headers are believed.
    pub fn trusted_proxies(&self) -> TrustedProxies {
        TrustedProxies::new(self.trusted_proxies.clone())
    }

    /// The transports' settings.
    pub(crate) fn transport_settings(&self) -> crate::transport::TransportSettings {
        crate::transport::TransportSettings {
            transports: self.transports.clone(),
            max_websocket_message: self.max_websocket_message,
            max_post_body: self.max_post_body,
            outbound_queue_bytes: self.outbound_queue_bytes,
            stateful_reconnect: self.stateful_reconnect,
            keep_alive_interval: self.keep_alive_interval,
            send_timeout: self.send_timeout,
            flush_clock: crate::queue::flush_clock::FlushClock::new(self.flush_delay),
            disconnect_timeout: self.disconnect_timeout,
            poll_timeout: self.poll_timeout,
            cors: AllowedOrigins::from_list(&self.cors_allowed_origins),
        }
    }

    /// How client tokens are checked, as these options describe.
    pub fn auth_settings(&self) -> crate::auth::AuthSettings {
        crate::auth::AuthSettings {
            jwt_secret: self.jwt_secret.clone(),
            jwt_public_key: self.jwt_public_key.clone(),
            user_claim: self.jwt_user_claim.clone(),
            groups_claim: self.relay.groups_claim.clone(),
            allow_anonymous: self.allow_anonymous,
            keep_claims: !self.upstream.is_empty(),
            access_keys: self.access_keys(),
        }
    }

    /// The configured access keys, primary first.
    fn access_keys(&self) -> Vec<String> {
        self.access_key.iter().chain(&self.access_key_secondary).cloned().collect()
    }

    /// The TLS certificate and key files, when both are set (TLS on every listener).
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert: cert.clone(), key: key.clone() }),
            _ => None,
        }
    }

    /// The upstream webhooks' settings.
    pub fn upstream_settings(&self) -> UpstreamSettings {
        UpstreamSettings {
            rules: self.upstream.clone(),
            access_keys: self.access_keys(),
            max_in_flight: self.upstream_max_in_flight,
            max_body: self.upstream_max_body,
            ca_file: self.upstream_ca_file.clone(),
        }
    }

    /// The Redis backplane settings these options describe.
    pub fn redis_config(&self) -> backplane::RedisConfig {
        backplane::RedisConfig {
            urls: self.redis_urls.clone(),
            cluster: self.redis_cluster,
            tls_ca_file: self.redis_tls_ca.clone(),
            ..Default::default()
        }
    }

    /// The presence heartbeat interval and node TTL these options describe.
    pub fn presence_timing(&self) -> backplane::PresenceTiming {
        backplane::PresenceTiming {
            heartbeat_interval: self.presence_heartbeat_interval,
            node_ttl: self.presence_node_ttl,
        }
    }

    /// Checks the values that parse but cannot work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |option, reason: &str| Err(ConfigError::Invalid { option, reason: reason.into() });
        if self.max_message_size == 0 {
            return invalid("max-message-size", "must be at least 1 byte");
        }
        if self.max_websocket_message < self.max_message_size {
            return invalid("max-websocket-message", "must be at least --max-message-size");
        }
        if self.max_post_body < self.max_message_size {
            return invalid("max-post-body", "must be at least --max-message-size");
        }
        if self.transports.is_empty() {
            return invalid("transports", "name at least one transport");
        }
        if self.tls_handshake_timeout.is_zero() {
            return invalid("tls-handshake-timeout", "must be longer than 0");
        }
        if self.outbound_queue_bytes < 1024 {
            return invalid("outbound-queue-bytes", "must be at least 1024 bytes");
        }
        if self.max_parallel_invocations == 0 {
            return invalid("max-parallel-invocations", "must be at least 1");
        }
        if self.max_streams_per_connection == 0 {
            return invalid("max-streams-per-connection", "must be at least 1");
        }
        if self.upstream_max_in_flight == 0 {
            return invalid("upstream-max-in-flight", "must be at least 1");
        }
        if self.client_timeout <= self.keep_alive_interval {
            return invalid("client-timeout", "must be longer than --keep-alive-interval");
        }
        if self.presence_node_ttl <= self.presence_heartbeat_interval {
            return invalid("presence-node-ttl", "must be longer than --presence-heartbeat-interval");
        }
        if self.flush_delay > Duration::from_secs(1) {
            return invalid("flush-delay", "must be at most 1s");
        }
        if self.jwt_secret.as_deref() == Some("") {
            return invalid("jwt-secret", "must not be empty");
        }
        if self.access_key.as_deref() == Some("") {
            return invalid("access-key", "must not be empty");
        }
        if self.access_key_secondary.is_some() && self.access_key.is_none() {
            return invalid("access-key-secondary", "needs --access-key");
        }
        if self.access_key_secondary.as_deref() == Some("") {
            return invalid("access-key-secondary", "must not be empty");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            let option = if self.tls_cert.is_some() { "tls-cert" } else { "tls-key" };
            return invalid(option, "needs both --tls-cert and --tls-key");
        }
        if self.cluster_secret.as_ref().is_some_and(|secret| secret.len() < 16) {
            return invalid("cluster-secret", "use at least 16 characters");
        }
        if let Some(url) = &self.advertise_url {
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok || url.contains(char::is_whitespace) {
                return invalid("advertise-url", "use an http:// or https:// base URL, e.g. http://10.0.0.7:8080");
            }
        }
        for (option, origins) in [
            ("cors-allowed-origins", &self.cors_allowed_origins),
            ("rest-cors-allowed-origins", &self.rest_cors_allowed_origins),
        ] {
            if let Err(reason) = crate::cors::check_list(origins) {
                return invalid(option, reason);
            }
        }
        if self.rest_max_body == 0 {
            return invalid("rest-max-body", "must be at least 1 byte");
        }
        if let Some(id) = &self.node_id {
            let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            if id.is_empty() || id.len() > 64 || !id.chars().all(valid) {
                return invalid("node-id", "use 1 to 64 letters, digits, '-' or '_'");
            }
        }
        if self.backplane == BackplaneKind::Redis {
            // The URL itself is not echoed: it may carry a password.
            let redis = backplane::RedisConfig {
                urls: self.redis_urls.clone(),
                cluster: self.redis_cluster,
                ..Default::default()
            };
            if redis.validate().is_err() {
                return invalid(
                    "redis-url",
                    "every URL must look like redis://[user:password@]host[:port] (or rediss://)",
                );
            }
        }
        if self.channel_prefix.is_empty() {
            return invalid("channel-prefix", "must not be empty");
        }
        if self.jwt_user_claim.is_empty() {
            return invalid("jwt-user-claim", "must not be empty");
        }
        for (option, value) in [
            ("keep-alive-interval", self.keep_alive_interval),
            ("handshake-timeout", self.handshake_timeout),
            ("disconnect-timeout", self.disconnect_timeout),
            ("send-timeout", self.send_timeout),
            ("group-ack-timeout", self.group_ack_timeout),
            ("poll-timeout", self.poll_timeout),
            ("client-result-timeout", self.client_result_timeout),
            ("presence-heartbeat-interval", self.presence_heartbeat_interval),
        ] {
            if value.is_zero() {
                return invalid(option, "must be longer than 0");
            }
        }
        self.relay.validate().map_err(|error| ConfigError::Invalid { option: error.option, reason: error.reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_command_line() {
        Config::default().validate().unwrap();
        let parsed = Config::try_parse_from(["gateway"]).unwrap();
        assert_eq!(parsed.listen, Config::default().listen);
        assert_eq!(parsed.keep_alive_interval, Config::default().keep_alive_interval);
        assert_eq!(parsed.max_message_size, 32 * 1024);
        assert_eq!(parsed.client_result_timeout, Config::default().client_result_timeout);
        assert_eq!(parsed.presence_timing(), backplane::PresenceTiming::default());
    }

    #[test]
    fn durations_take_units() {
        let parsed = Config::try_parse_from(["gateway", "--client-timeout", "1500ms"]).unwrap();
        assert_eq!(parsed.client_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn an_invalid_combination_names_the_option() {
        let config = Config { client_timeout: Duration::from_secs(5), ..Config::default() };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.starts_with("--client-timeout:"), "{error}");
    }

    #[test]
    fn the_presence_node_ttl_must_exceed_the_heartbeat_interval() {
        let parsed = Config::try_parse_from(["gateway", "--presence-heartbeat-interval", "2s"]).unwrap();
        assert_eq!(parsed.presence_heartbeat_interval, Duration::from_secs(2));
        assert_eq!(parsed.presence_node_ttl, Duration::from_secs(15), "the default");
        parsed.validate().unwrap();

        let parsed =
            Config::try_parse_from(["gateway", "--presence-heartbeat-interval", "10s", "--presence-node-ttl", "10s"])
                .unwrap();
        let error = parsed.validate().unwrap_err().to_string();
        assert_eq!(error, "--presence-node-ttl: must be longer than --presence-heartbeat-interval");

        let zero = Config { presence_heartbeat_interval: Duration::ZERO, ..Config::default() };
        assert!(zero.validate().unwrap_err().to_string().starts_with("--presence-heartbeat-interval:"));
    }

    #[test]
    fn a_bad_redis_url_is_refused_without_echoing_it() {
        let parsed =
            Config::try_parse_from(["gateway", "--backplane", "redis", "--redis-url", "http://user:hunter2@x"])
                .unwrap();
        let error = parsed.validate().unwrap_err().to_string();
        assert!(error.starts_with("--redis-url:") && !error.contains("hunter2"), "{error}");
    }

    #[test]
    fn several_redis_urls_come_from_one_variable_or_repeated_flags() {
        let parsed =
            Config::try_parse_from(["gateway", "--redis-url", "redis://a:1", "--redis-url", "redis://b:2,redis://c:3"])
                .unwrap();
        assert_eq!(parsed.redis_urls, vec!["redis://a:1", "redis://b:2", "redis://c:3"]);
    }

    #[test]
    fn transports_are_listed_by_name() {
        let parsed = Config::try_parse_from(["gateway", "--transports", "sse,long-polling"]).unwrap();
        assert_eq!(parsed.transports, vec![TransportKind::ServerSentEvents, TransportKind::LongPolling]);
        assert_eq!(Config::try_parse_from(["gateway"]).unwrap().transports, TransportKind::ALL.to_vec());
        assert!(Config::try_parse_from(["gateway", "--transports", "carrier-pigeon"]).is_err());
    }

    #[test]
    fn tls_needs_both_files() {
        assert!(Config::try_parse_from(["gateway", "--tls-cert", "c.pem"]).is_err());
        assert!(Config::try_parse_from(["gateway", "--tls-key", "k.pem"]).is_err());
        let both = Config::try_parse_from(["gateway", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        assert_eq!(both.tls_files().map(|files| files.key), Some(PathBuf::from("k.pem")));
        let one = Config { tls_cert: Some("c.pem".into()), ..Config::default() };
        assert!(one.validate().unwrap_err().to_string().starts_with("--tls-cert:"));
    }

    #[test]
    fn limits_read_counts_a_rate_and_proxy_ranges() {
        let parsed = Config::try_parse_from([
            "gateway",
            "--max-connections",
            "5000",
            "--max-connections-per-user",
            "3",
            "--connection-rate-per-ip",
            "20/s,burst=40",
            "--trusted-proxies",
            "10.0.0.0/8,192.0.2.7",
            "--trusted-proxies",
            "fd00::/8",
        ])
        .unwrap();
        assert_eq!((parsed.max_connections, parsed.max_connections_per_user), (5000, 3));
        let rate = parsed.connection_rate_per_ip.unwrap();
        assert_eq!((rate.count, rate.period, rate.burst), (20, Duration::from_secs(1), 40));
        let proxies: Vec<String> = parsed.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(proxies, ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]);
        let defaults = Config::try_parse_from(["gateway"]).unwrap();
        assert_eq!((defaults.max_connections, defaults.max_connections_per_user), (0, 0), "unlimited");
        assert!(defaults.connection_rate_per_ip.is_none() && defaults.trusted_proxies.is_empty());
        assert!(Config::try_parse_from(["gateway", "--connection-rate-per-ip", "10"]).is_err());
        assert!(Config::try_parse_from(["gateway", "--trusted-proxies", "proxy.local"]).is_err());
    }

    #[test]
    fn secret_and_public_key_exclude_each_other() {
        assert!(Config::try_parse_from(["gateway", "--jwt-secret", "s", "--jwt-public-key", "k.pem"]).is_err());
    }
}
