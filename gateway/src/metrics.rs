//! Every Prometheus metric the gateway exports: names, help texts, labels and buckets live in
//! this one file, so an operator (and the dashboard test) can see the whole list in one place.
//!
//! The gateway owns a [`prometheus::Registry`] (its own, or one passed to
//! [`crate::Gateway::with_registry`]) and passes a [`Metrics`] handle down to the code that
//! counts; there are no global statics, so several gateways in one process (tests) never mix
//! their numbers. Labels are low-cardinality only: never a connection id, a user, a group or a
//! hub name (the relay hub serves any name a client chooses).
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `hubgate_connections` | gauge | `transport`, `protocol` | connections past their handshake, now |
//! | `hubgate_connects_total` | counter | | connections that completed their handshake |
//! | `hubgate_disconnects_total` | counter | `reason` | connections that ended after their handshake |
//! | `hubgate_handshake_failures_total` | counter | `reason` | connections that never completed their handshake |
//! | `hubgate_connections_refused_total` | counter | `reason` | new connections refused before they started |
//! | `hubgate_messages_total` | counter | `direction` | hub messages read from clients (`inbound`) and queued for them (`outbound`) |
//! | `hubgate_unknown_messages_total` | counter | | client messages of a type this server does not know, ignored as the protocol asks |
//! | `hubgate_message_bytes_total` | counter | `direction` | the bytes of those messages |
//! | `hubgate_invocations_total` | counter | `outcome` | hub method calls (plain and streaming) by how they ended |
//! | `hubgate_fanout_duration_seconds` | histogram | | time to queue one send for its local recipients |
//! | `hubgate_outbound_queue_bytes` | gauge | | bytes waiting in outbound queues, all connections |
//! | `hubgate_slow_consumer_disconnects_total` | counter | | connections closed because their queue overflowed |
//! | `hubgate_backplane_published_total` | counter | | envelopes the backplane accepted from this node |
//! | `hubgate_backplane_publish_failures_total` | counter | | publishes the backplane refused or timed out: sends whose other nodes were not reached, each also reported to its sender |
//! | `hubgate_backplane_publish_duration_seconds` | histogram | | time for the backplane to accept one publish |
//! | `hubgate_backplane_received_total` | counter | | envelopes this node received from the backplane |
//! | `hubgate_backplane_dropped_total` | counter | | envelopes dropped because this node's inbound queue was full |
//! | `hubgate_backplane_refused_envelopes_total` | counter | | envelopes this node could not read (another version, or corrupt), refused and not misread |
//! | `hubgate_backplane_up` | gauge | | 1 while the backplane is connected, else 0 |
//! | `hubgate_backplane_reconnects_total` | counter | | lost backplane connections re-established (Redis: publisher and subscriber each count) |
//! | `hubgate_rest_requests_total` | counter | `route`, `status` | REST API requests by route template and status code |
//! | `hubgate_upstream_requests_total` | counter | `kind`, `status` | upstream webhook calls by event kind and how they ended |
//! | `hubgate_upstream_request_duration_seconds` | histogram | `kind` | time from sending an upstream call to its full answer |
//! | `hubgate_upstream_in_flight` | gauge | | upstream calls waiting for their answer now |
//! | `hubgate_upstream_circuits_open` | gauge | | upstream rules whose circuit is open (calls fail fast) |
//! | `hubgate_tls_handshake_failures_total` | counter | `reason` | TLS handshakes that failed (`error`) or timed out (`timeout`) |
//! | `hubgate_tls_reloads_total` | counter | `result` | certificate reloads (`ok`, or `error`: the previous one is kept) |
//!
//! Label values: `transport` = `websockets` \| `server_sent_events` \| `long_polling`;
//! `protocol` = `json` \| `messagepack`; disconnect `reason` = see [`DisconnectReason`];
//! handshake `reason` = see [`HandshakeFailure`]; refusal `reason` = see [`ConnectionRefusal`]; `outcome` = see [`InvocationOutcome`];
//! `route` = the matched template (e.g. `/api/hubs/{hub}/:send`) or `unmatched`;
//! upstream `kind` = `connect` \| `connected` \| `disconnected` \| `message`, `status` = the
//! answer's class (`2xx` … `5xx`) or `timeout` \| `unreachable` \| `too_large` \| `busy` \|
//! `circuit_open` (see [`UPSTREAM_STATUSES`]).
//!
//! Costs: counters are atomics incremented where the event happens. The outbound queue gauge is
//! one shared atomic that each queue adjusts when it takes or drops bytes (under the queue's
//! own lock, which the push already holds): a scrape-time sum over every connection would have
//! to walk every hub registry and lock every queue, which costs more as connections grow and
//! stalls fan-out while it runs. Counters the node already keeps as atomics (slow consumers,
//! backplane drops, backplane health and reconnects) are read at scrape time by a custom
//! collector instead of being counted twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use backplane::Backplane;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use protocol::Protocol;

use crate::request::TransportKind;

/// Counters a node keeps as atomics where the events happen; tests read them directly and the
/// node collector exports them at each scrape.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections currently registered on this node.
    pub connections: AtomicU64,
    /// Connections closed because their outbound queue overflowed.
    pub slow_consumers: AtomicU64,
    /// Envelopes received from the backplane that could not be read (another version, or not
    /// an envelope at all): refused, not misread.
    pub bad_envelopes: AtomicU64,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Every metric name the gateway exports (histograms without their `_bucket`/`_sum`/`_count`
/// suffixes). Tests check this list against a real scrape and the dashboard against it.
pub const METRIC_NAMES: &[&str] = &[
    CONNECTIONS.name,
    CONNECTS.name,
    DISCONNECTS.name,
    HANDSHAKE_FAILURES.name,
    CONNECTIONS_REFUSED.name,
    MESSAGES.name,
    UNKNOWN_MESSAGES.name,
    MESSAGE_BYTES.name,
    INVOCATIONS.name,
    FANOUT_DURATION.name,
    OUTBOUND_QUEUE_BYTES.name,
    SLOW_CONSUMERS.name,
    BACKPLANE_PUBLISHED.name,
    BACKPLANE_PUBLISH_FAILURES.name,
    BACKPLANE_PUBLISH_DURATION.name,
    BACKPLANE_RECEIVED.name,
    BACKPLANE_DROPPED.name,
    BACKPLANE_REFUSED.name,
    BACKPLANE_UP.name,
    BACKPLANE_RECONNECTS.name,
    REST_REQUESTS.name,
    UPSTREAM_REQUESTS.name,
    UPSTREAM_DURATION.name,
    UPSTREAM_IN_FLIGHT.name,
    UPSTREAM_CIRCUITS_OPEN.name,
    TLS_HANDSHAKE_FAILURES.name,
    TLS_RELOADS.name,
];

/// A metric's name and help text.
#[derive(Debug, Clone, Copy)]
struct Spec {
    name: &'static str,
    help: &'static str,
}

const CONNECTIONS: Spec =
    Spec { name: "hubgate_connections", help: "Connections that completed their handshake and are open now." };
const CONNECTS: Spec = Spec { name: "hubgate_connects_total", help: "Connections that completed their handshake." };
const DISCONNECTS: Spec =
    Spec { name: "hubgate_disconnects_total", help: "Connections that ended after their handshake, by reason." };
const HANDSHAKE_FAILURES: Spec = Spec {
    name: "hubgate_handshake_failures_total",
    help: "Connections that never completed their handshake, by reason.",
};
const CONNECTIONS_REFUSED: Spec = Spec {
    name: "hubgate_connections_refused_total",
    help: "New connections refused before they started (a browser origin not allowed, or a limit that protects the node), by reason.",
};
const MESSAGES: Spec = Spec {
    name: "hubgate_messages_total",
    help: "Hub messages read from clients (inbound) and queued for them (outbound; keep-alive pings excluded).",
};
const UNKNOWN_MESSAGES: Spec = Spec {
    name: "hubgate_unknown_messages_total",
    help: "Client messages of a type this server does not know, ignored (the hub protocol's forward compatibility).",
};
const MESSAGE_BYTES: Spec = Spec {
    name: "hubgate_message_bytes_total",
    help: "Bytes of hub messages read from clients (inbound, after the handshake) and queued for them (outbound).",
};
const INVOCATIONS: Spec =
    Spec { name: "hubgate_invocations_total", help: "Hub method calls (plain and streaming), by outcome." };
const FANOUT_DURATION: Spec = Spec {
    name: "hubgate_fanout_duration_seconds",
    help: "Seconds to queue one send for its recipients on this node.",
};
const OUTBOUND_QUEUE_BYTES: Spec = Spec {
    name: "hubgate_outbound_queue_bytes",
    help: "Bytes waiting in the outbound queues of all connections on this node.",
};
const SLOW_CONSUMERS: Spec = Spec {
    name: "hubgate_slow_consumer_disconnects_total",
    help: "Connections closed because their outbound queue overflowed.",
};
const BACKPLANE_PUBLISHED: Spec =
    Spec { name: "hubgate_backplane_published_total", help: "Envelopes the backplane accepted from this node." };
const BACKPLANE_PUBLISH_FAILURES: Spec = Spec {
    name: "hubgate_backplane_publish_failures_total",
    help: "Publishes the backplane refused or timed out (Redis down or slow): the other nodes were not reached.",
};
const BACKPLANE_PUBLISH_DURATION: Spec = Spec {
    name: "hubgate_backplane_publish_duration_seconds",
    help: "Seconds for the backplane to accept one publish (successful or not).",
};
const BACKPLANE_RECEIVED: Spec = Spec {
    name: "hubgate_backplane_received_total",
    help: "Envelopes this node received from the backplane (its own included).",
};
const BACKPLANE_DROPPED: Spec = Spec {
    name: "hubgate_backplane_dropped_total",
    help: "Envelopes dropped because this node's inbound backplane queue was full.",
};
const BACKPLANE_REFUSED: Spec = Spec {
    name: "hubgate_backplane_refused_envelopes_total",
    help: "Envelopes from the backplane this node could not read (another envelope version, or corrupt), refused.",
};
const BACKPLANE_UP: Spec = Spec { name: "hubgate_backplane_up", help: "1 while the backplane is connected, else 0." };
const BACKPLANE_RECONNECTS: Spec = Spec {
    name: "hubgate_backplane_reconnects_total",
    help: "Lost backplane connections re-established (Redis: publisher and subscriber each count).",
};
const REST_REQUESTS: Spec =
    Spec { name: "hubgate_rest_requests_total", help: "REST API requests, by matched route template and status code." };

const UPSTREAM_REQUESTS: Spec = Spec {
    name: "hubgate_upstream_requests_total",
    help: "Upstream webhook calls, by event kind and how they ended (status class, or why there was no answer).",
};
const UPSTREAM_DURATION: Spec = Spec {
    name: "hubgate_upstream_request_duration_seconds",
    help: "Seconds from sending an upstream call to having its whole answer (calls that went out).",
};
const UPSTREAM_IN_FLIGHT: Spec =
    Spec { name: "hubgate_upstream_in_flight", help: "Upstream calls waiting for their answer now." };
const UPSTREAM_CIRCUITS_OPEN: Spec = Spec {
    name: "hubgate_upstream_circuits_open",
    help: "Upstream rules whose circuit is open: their calls fail fast until a probe succeeds.",
};

const TLS_HANDSHAKE_FAILURES: Spec = Spec {
    name: "hubgate_tls_handshake_failures_total",
    help: "TLS handshakes that did not complete: the client's hello was bad or refused (error), or too late (timeout).",
};
const TLS_RELOADS: Spec = Spec {
    name: "hubgate_tls_reloads_total",
    help: "TLS certificate reloads: ok, or error (the files were unusable and the previous certificate is kept).",
};

/// The event kinds of upstream calls.
pub const UPSTREAM_KINDS: [&str; 4] = ["connect", "connected", "disconnected", "message"];
/// How an upstream call can end, as its `status` label says.
pub const UPSTREAM_STATUSES: [&str; 10] =
    ["1xx", "2xx", "3xx", "4xx", "5xx", "timeout", "unreachable", "too_large", "busy", "circuit_open"];

/// Queuing one send for local recipients: a few µs for a handful, ms for many thousands.
const FANOUT_BUCKETS: &[f64] =
    &[0.000_002, 0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.01, 0.05];
/// A publish is a round trip to Redis: sub-ms on a LAN, up to the command timeout when sick.
const PUBLISH_BUCKETS: &[f64] =
    &[0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// A backend's answer: ms on loopback, up to the rule's timeout (30 s by default).
const UPSTREAM_BUCKETS: &[f64] =
    &[0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// What the upstream client counts.
pub struct UpstreamMetrics {
    requests: IntCounterVec,
    duration: prometheus::HistogramVec,
    pub in_flight: IntGauge,
    pub circuits_open: IntGauge,
}

impl UpstreamMetrics {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let requests = counter_vec(registry, UPSTREAM_REQUESTS, &["kind", "status"])?;
        let opts =
            HistogramOpts::new(UPSTREAM_DURATION.name, UPSTREAM_DURATION.help).buckets(UPSTREAM_BUCKETS.to_vec());
        let duration = register(registry, prometheus::HistogramVec::new(opts, &["kind"])?)?;
        // Every label pair exists from the start (at 0), so rates and alerts work at once.
        for kind in UPSTREAM_KINDS {
            duration.with_label_values(&[kind]);
            for status in UPSTREAM_STATUSES {
                requests.with_label_values(&[kind, status]);
            }
        }
        Ok(Self {
            requests,
            duration,
            in_flight: register(registry, IntGauge::new(UPSTREAM_IN_FLIGHT.name, UPSTREAM_IN_FLIGHT.help)?)?,
            circuits_open: register(
                registry,
                IntGauge::new(UPSTREAM_CIRCUITS_OPEN.name, UPSTREAM_CIRCUITS_OPEN.help)?,
            )?,
        })
    }

    /// A call of `kind` ended with `status`; `took` is how long it was out (`None`: not sent).
    pub fn finished(&self, kind: &str, status: &str, took: Option<std::time::Duration>) {
        self.requests.with_label_values(&[kind, status]).inc();
        if let Some(took) = took {
            self.duration.with_label_values(&[kind]).observe(took.as_secs_f64());
        }
    }
}

impl std::fmt::Debug for UpstreamMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamMetrics")
    }
}

/// What the TLS listeners count (registered, at 0, also without TLS).
#[derive(Debug)]
pub struct TlsMetrics {
    pub handshake_errors: IntCounter,
    pub handshake_timeouts: IntCounter,
    pub reloads_ok: IntCounter,
    pub reloads_failed: IntCounter,
}

impl TlsMetrics {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let [handshake_errors, handshake_timeouts] =
            children(&counter_vec(registry, TLS_HANDSHAKE_FAILURES, &["reason"])?, ["error", "timeout"]);
        let [reloads_ok, reloads_failed] = children(&counter_vec(registry, TLS_RELOADS, &["result"])?, ["ok", "error"]);
        Ok(Self { handshake_errors, handshake_timeouts, reloads_ok, reloads_failed })
    }
}

/// Why a connection that completed its handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent a Close message.
    ClientClosed,
    /// The server ended it (REST API or hub code closing connections).
    ServerClosed,
    /// The socket or stream went away without a Close (client gone, write failed).
    TransportClosed,
    /// Its outbound queue overflowed.
    SlowConsumer,
    /// The client stopped sending within the client timeout.
    Timeout,
    /// The client broke the protocol (undecodable or oversized message).
    ProtocolError,
    /// The node is shutting down.
    Shutdown,
}

impl DisconnectReason {
    pub const ALL: [Self; 7] = [
        Self::ClientClosed,
        Self::ServerClosed,
        Self::TransportClosed,
        Self::SlowConsumer,
        Self::Timeout,
        Self::ProtocolError,
        Self::Shutdown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::ServerClosed => "server_closed",
            Self::TransportClosed => "transport_closed",
            Self::SlowConsumer => "slow_consumer",
            Self::Timeout => "timeout",
            Self::ProtocolError => "protocol_error",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Why a handshake did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// No complete handshake within the handshake timeout.
    Timeout,
    /// The handshake request was not valid.
    Malformed,
    /// A protocol the server does not speak, or a version above the highest it knows.
    UnsupportedProtocol,
    /// A binary protocol on a text-only transport (Server-Sent Events).
    UnsupportedTransferFormat,
    /// The transport went away before the handshake.
    TransportClosed,
}

impl HandshakeFailure {
    pub const ALL: [Self; 5] = [
        Self::Timeout,
        Self::Malformed,
        Self::UnsupportedProtocol,
        Self::UnsupportedTransferFormat,
        Self::TransportClosed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Malformed => "malformed",
            Self::UnsupportedProtocol => "unsupported_protocol",
            Self::UnsupportedTransferFormat => "unsupported_transfer_format",
            Self::TransportClosed => "transport_closed",
        }
    }
}

/// Why a new connection was refused before it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// A WebSocket upgrade from a browser origin `--cors-allowed-origins` does not allow
    /// (see [`crate::cors`]).
    Origin,
    /// The node holds `--max-connections` connections (see [`crate::limits`]).
    NodeFull,
    /// The user holds `--max-connections-per-user` connections.
    UserLimit,
    /// The client address opened new connections faster than `--connection-rate-per-ip`.
    IpRate,
}

impl ConnectionRefusal {
    pub const ALL: [Self; 4] = [Self::Origin, Self::NodeFull, Self::UserLimit, Self::IpRate];

    pub fn label(self) -> &'static str {
        match self {
            Self::Origin => "origin",
            Self::NodeFull => "node_full",
            Self::UserLimit => "user_limit",
            Self::IpRate => "ip_rate",
        }
    }
}

/// How a hub method call (plain or streaming) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationOutcome {
    /// The method returned normally (a stream: ended or was cancelled without an error).
    Ok,
    /// The method returned an error (refused or failed).
    Error,
    /// No method of that name.
    UnknownMethod,
    /// A streaming method called with a plain Invocation, or the reverse.
    WrongKind,
}

impl InvocationOutcome {
    pub const ALL: [Self; 4] = [Self::Ok, Self::Error, Self::UnknownMethod, Self::WrongKind];

    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::UnknownMethod => "unknown_method",
            Self::WrongKind => "wrong_kind",
        }
    }
}

/// The label value of a transport.
pub fn transport_label(transport: TransportKind) -> &'static str {
    match transport {
        TransportKind::WebSockets => "websockets",
        TransportKind::ServerSentEvents => "server_sent_events",
        TransportKind::LongPolling => "long_polling",
    }
}

fn protocol_label(protocol: Protocol) -> &'static str {
    if protocol.is_text() {
        "json"
    } else {
        "messagepack"
    }
}

/// What each outbound queue counts; shared by all of them.
#[derive(Debug)]
pub(crate) struct OutboundMetrics {
    pub messages: IntCounter,
    pub bytes: IntCounter,
    pub queue_bytes: IntGauge,
}

/// The gateway's metrics, registered in its registry.
pub struct Metrics {
    registry: Registry,
    connections: IntGaugeVec,
    connects: IntCounter,
    /// Indexed by [`DisconnectReason`] (in the order of its `ALL`).
    disconnects: [IntCounter; DisconnectReason::ALL.len()],
    /// Indexed by [`HandshakeFailure`].
    handshake_failures: [IntCounter; HandshakeFailure::ALL.len()],
    /// Indexed by [`ConnectionRefusal`].
    refused: [IntCounter; ConnectionRefusal::ALL.len()],
    inbound_messages: IntCounter,
    unknown_messages: IntCounter,
    inbound_bytes: IntCounter,
    pub(crate) outbound: Arc<OutboundMetrics>,
    /// Indexed by [`InvocationOutcome`].
    invocations: [IntCounter; InvocationOutcome::ALL.len()],
    fanout: Histogram,
    published: IntCounter,
    publish_failures: IntCounter,
    publish_duration: Histogram,
    received: IntCounter,
    rest_requests: IntCounterVec,
    pub(crate) upstream: Arc<UpstreamMetrics>,
    pub(crate) tls: Arc<TlsMetrics>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, metric: C) -> prometheus::Result<C> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn counter(registry: &Registry, spec: Spec) -> prometheus::Result<IntCounter> {
    register(registry, IntCounter::new(spec.name, spec.help)?)
}

fn counter_vec(registry: &Registry, spec: Spec, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    register(registry, IntCounterVec::new(Opts::new(spec.name, spec.help), labels)?)
}

fn histogram(registry: &Registry, spec: Spec, buckets: &[f64]) -> prometheus::Result<Histogram> {
    register(registry, Histogram::with_opts(HistogramOpts::new(spec.name, spec.help).buckets(buckets.to_vec()))?)
}

/// The child of `vec` for each of `labels`, resolved once: counting is then one atomic add,
/// without the hashing and locking of a label lookup (some of these count every hub method
/// call). Created up front, known label values are also exported as 0 before their first
/// event, so rates work from the start.
fn children<const N: usize>(vec: &IntCounterVec, labels: [&'static str; N]) -> [IntCounter; N] {
    labels.map(|label| vec.with_label_values(&[label]))
}

impl Metrics {
    /// Registers every metric (except the node collector, see [`Metrics::watch_node`]) in
    /// `registry`. Fails when one is already registered there (a registry shared by two
    /// gateways).
    pub fn new(registry: Registry) -> prometheus::Result<Self> {
        let r = &registry;
        let messages = counter_vec(r, MESSAGES, &["direction"])?;
        let bytes = counter_vec(r, MESSAGE_BYTES, &["direction"])?;
        let outbound = OutboundMetrics {
            messages: messages.with_label_values(&["outbound"]),
            bytes: bytes.with_label_values(&["outbound"]),
            queue_bytes: register(r, IntGauge::new(OUTBOUND_QUEUE_BYTES.name, OUTBOUND_QUEUE_BYTES.help)?)?,
        };
        let connections = IntGaugeVec::new(Opts::new(CONNECTIONS.name, CONNECTIONS.help), &["transport", "protocol"])?;
        let metrics = Self {
            connections: register(r, connections)?,
            connects: counter(r, CONNECTS)?,
            disconnects: children(
                &counter_vec(r, DISCONNECTS, &["reason"])?,
                DisconnectReason::ALL.map(DisconnectReason::label),
            ),
            handshake_failures: children(
                &counter_vec(r, HANDSHAKE_FAILURES, &["reason"])?,
                HandshakeFailure::ALL.map(HandshakeFailure::label),
            ),
            refused: children(
                &counter_vec(r, CONNECTIONS_REFUSED, &["reason"])?,
                ConnectionRefusal::ALL.map(ConnectionRefusal::label),
            ),
            inbound_messages: messages.with_label_values(&["inbound"]),
            unknown_messages: counter(r, UNKNOWN_MESSAGES)?,
            inbound_bytes: bytes.with_label_values(&["inbound"]),
            outbound: Arc::new(outbound),
            invocations: children(
                &counter_vec(r, INVOCATIONS, &["outcome"])?,
                InvocationOutcome::ALL.map(InvocationOutcome::label),
            ),
            fanout: histogram(r, FANOUT_DURATION, FANOUT_BUCKETS)?,
            published: counter(r, BACKPLANE_PUBLISHED)?,
            publish_failures: counter(r, BACKPLANE_PUBLISH_FAILURES)?,
            publish_duration: histogram(r, BACKPLANE_PUBLISH_DURATION, PUBLISH_BUCKETS)?,
            received: counter(r, BACKPLANE_RECEIVED)?,
            rest_requests: counter_vec(r, REST_REQUESTS, &["route", "status"])?,
            upstream: Arc::new(UpstreamMetrics::new(r)?),
            tls: Arc::new(TlsMetrics::new(r)?),
            registry,
        };
        metrics.init_connections();
        Ok(metrics)
    }

    /// Every transport and protocol pair that can occur starts at 0.
    fn init_connections(&self) {
        for transport in TransportKind::ALL {
            for protocol in [Protocol::Json, Protocol::MessagePack] {
                if protocol.is_text() || transport.carries_binary() {
                    self.connections.with_label_values(&[transport_label(transport), protocol_label(protocol)]);
                }
            }
        }
    }

    /// Exports the counters a node keeps itself (`stats`) and the backplane's (drops, health,
    /// reconnects), read at each scrape.
    pub(crate) fn watch_node(&self, stats: Arc<Stats>, backplane: Arc<dyn Backplane>) -> prometheus::Result<()> {
        self.registry.register(Box::new(NodeCollector::new(stats, backplane)?))
    }

    /// The registry every metric of this gateway is in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Everything in the registry, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::warn!(%error, "metrics could not be encoded");
        }
        String::from_utf8(text).unwrap_or_default()
    }

    /// A connection completed its handshake.
    pub(crate) fn connected(&self, transport: TransportKind, protocol: Protocol) {
        self.connects.inc();
        self.connections.with_label_values(&[transport_label(transport), protocol_label(protocol)]).inc();
    }

    /// A connection that had completed its handshake ended.
    pub(crate) fn disconnected(&self, transport: TransportKind, protocol: Protocol, reason: DisconnectReason) {
        self.connections.with_label_values(&[transport_label(transport), protocol_label(protocol)]).dec();
        self.disconnects[reason as usize].inc();
    }

    pub(crate) fn handshake_failed(&self, reason: HandshakeFailure) {
        self.handshake_failures[reason as usize].inc();
    }

    /// A new connection was refused before it started.
    pub(crate) fn connection_refused(&self, reason: ConnectionRefusal) {
        self.refused[reason as usize].inc();
    }

    pub(crate) fn inbound_bytes(&self, bytes: usize) {
        self.inbound_bytes.inc_by(bytes as u64);
    }

    pub(crate) fn inbound_message(&self) {
        self.inbound_messages.inc();
    }

    /// A client sent a message of a type this server does not know; it was ignored.
    pub(crate) fn unknown_message(&self) {
        self.unknown_messages.inc();
    }

    pub(crate) fn invoked(&self, outcome: InvocationOutcome) {
        self.invocations[outcome as usize].inc();
    }

    /// Records how long a local fan-out that started at `started` took.
    pub(crate) fn fanned_out(&self, started: Instant) {
        self.fanout.observe(started.elapsed().as_secs_f64());
    }

    /// Records one publish that started at `started`.
    pub(crate) fn published(&self, started: Instant, accepted: bool) {
        self.publish_duration.observe(started.elapsed().as_secs_f64());
        if accepted {
            self.published.inc();
        } else {
            self.publish_failures.inc();
        }
    }

    pub(crate) fn received(&self) {
        self.received.inc();
    }

    pub(crate) fn rest_request(&self, route: &str, status: u16) {
        self.rest_requests.with_label_values(&[route, &status.to_string()]).inc();
    }
}

/// Reads the node's own atomics at scrape time.
struct NodeCollector {
    stats: Arc<Stats>,
    backplane: Arc<dyn Backplane>,
    slow_consumers: IntCounter,
    refused_envelopes: IntCounter,
    dropped: IntCounter,
    reconnects: IntCounter,
    up: IntGauge,
    /// Concurrent scrapes take turns setting the shared metric values.
    scraping: Mutex<()>,
}

impl NodeCollector {
    fn new(stats: Arc<Stats>, backplane: Arc<dyn Backplane>) -> prometheus::Result<Self> {
        Ok(Self {
            stats,
            backplane,
            slow_consumers: IntCounter::new(SLOW_CONSUMERS.name, SLOW_CONSUMERS.help)?,
            refused_envelopes: IntCounter::new(BACKPLANE_REFUSED.name, BACKPLANE_REFUSED.help)?,
            dropped: IntCounter::new(BACKPLANE_DROPPED.name, BACKPLANE_DROPPED.help)?,
            reconnects: IntCounter::new(BACKPLANE_RECONNECTS.name, BACKPLANE_RECONNECTS.help)?,
            up: IntGauge::new(BACKPLANE_UP.name, BACKPLANE_UP.help)?,
            scraping: Mutex::new(()),
        })
    }
}

fn set_counter(counter: &IntCounter, value: u64) {
    counter.reset();
    counter.inc_by(value);
}

impl Collector for NodeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.parts().into_iter().flat_map(Collector::desc).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _turn = self.scraping.lock().unwrap_or_else(|p| p.into_inner());
        set_counter(&self.slow_consumers, Stats::get(&self.stats.slow_consumers));
        set_counter(&self.refused_envelopes, Stats::get(&self.stats.bad_envelopes));
        set_counter(&self.dropped, self.backplane.dropped());
        set_counter(&self.reconnects, self.backplane.reconnects());
        self.up.set(i64::from(self.backplane.health() == backplane::Health::Up));
        self.parts().into_iter().flat_map(Collector::collect).collect()
    }
}

impl NodeCollector {
    /// The metrics this collector exports, in one list for `desc` and `collect`.
    fn parts(&self) -> [&dyn Collector; 5] {
        [&self.slow_consumers, &self.refused_envelopes, &self.dropped, &self.reconnects, &self.up]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_registry_holds_one_gateways_metrics() {
        let registry = Registry::new();
        Metrics::new(registry.clone()).unwrap();
        assert!(Metrics::new(registry).is_err(), "a second set would collide");
    }

    #[test]
    fn label_lists_follow_declaration_order_so_they_index_the_resolved_children() {
        assert!(DisconnectReason::ALL.iter().enumerate().all(|(i, reason)| *reason as usize == i));
        assert!(HandshakeFailure::ALL.iter().enumerate().all(|(i, failure)| *failure as usize == i));
        assert!(ConnectionRefusal::ALL.iter().enumerate().all(|(i, refusal)| *refusal as usize == i));
        assert!(InvocationOutcome::ALL.iter().enumerate().all(|(i, outcome)| *outcome as usize == i));
    }

    #[test]
    fn every_listed_name_carries_the_prefix_and_is_unique() {
        let unique: std::collections::BTreeSet<&str> = METRIC_NAMES.iter().copied().collect();
        assert_eq!(unique.len(), METRIC_NAMES.len());
        assert!(METRIC_NAMES.iter().all(|name| name.starts_with("hubgate_")));
    }
}
