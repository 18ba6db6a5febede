//! Sending events to backends: one pooled HTTP client for the node, a bound on calls in flight,
//! a circuit per rule, and retries where retrying is safe.
//!
//! Why each guard exists:
//! - **In flight**: a slow or dead backend must not make calls pile up without bound. A node
//!   runs at most `--upstream-max-in-flight` calls at once; a call beyond that fails at once
//!   with an error Completion instead of waiting (the client can retry; memory stays flat).
//!   One connection has at most one call in flight, since its events go one at a time.
//! - **Circuit**: after [`OPEN_AFTER`] consecutive failures (no answer, unreachable, 5xx) of a
//!   rule's backend, calls to it fail fast for [`COOL_DOWN`]; then one call probes it, and a
//!   success closes the circuit.
//! - **Retries**: `connected` and `disconnected` are notifications a backend should not miss and
//!   may receive twice (it can tell by the connection id), so they are retried a few times with
//!   backoff; invocations, whose effects may not be idempotent, and the connect hook, whose
//!   client is waiting, are not.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::Semaphore;
use tracing::{debug, info_span, warn, Instrument};

use super::answer::Reply;
use super::request::{headers, Subject};
use super::rules::{route, Event, Rule};
use crate::metrics::UpstreamMetrics;

/// Consecutive failures that open a rule's circuit.
pub const OPEN_AFTER: u32 = 5;
/// How long an open circuit fails calls before it lets one probe through.
pub const COOL_DOWN: Duration = Duration::from_secs(5);
/// Attempts for `connected` and `disconnected` (the first and two retries).
const NOTIFY_ATTEMPTS: u32 = 3;
/// The wait before the first retry; doubled for each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// What the upstream client is built from (see the options of the same names).
#[derive(Debug, Clone, Default)]
pub struct UpstreamSettings {
    pub rules: Vec<Rule>,
    /// The access keys requests are signed with (primary first).
    pub access_keys: Vec<String>,
    pub max_in_flight: usize,
    pub max_body: usize,
    /// A PEM file of extra CA certificates trusted besides the system's.
    pub ca_file: Option<PathBuf>,
}

/// Why the upstream client cannot be built.
#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("--upstream-ca-file: cannot read {path}: {source}")]
    ReadCa { path: String, source: std::io::Error },
    #[error("--upstream-ca-file: {0}")]
    Ca(reqwest::Error),
    #[error("the upstream HTTP client cannot be built: {0}")]
    Client(reqwest::Error),
}

/// What an event's request carries: its body and that body's media type.
#[derive(Debug, Clone)]
pub struct Payload {
    pub body: Bytes,
    pub content_type: &'static str,
}

impl Payload {
    pub fn json(body: impl Into<Bytes>) -> Self {
        Self { body: body.into(), content_type: "application/json" }
    }

    pub fn messagepack(body: impl Into<Bytes>) -> Self {
        Self { body: body.into(), content_type: "application/x-msgpack" }
    }
}

/// The node's upstream client.
pub struct Upstream {
    rules: Vec<Rule>,
    circuits: Vec<Circuit>,
    http: reqwest::Client,
    keys: Vec<String>,
    in_flight: Arc<Semaphore>,
    max_body: usize,
    metrics: Arc<UpstreamMetrics>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("rules", &self.rules).finish_non_exhaustive()
    }
}

impl Upstream {
    /// The client for `settings`; `None` when no rule is configured.
    pub fn new(settings: UpstreamSettings, metrics: Arc<UpstreamMetrics>) -> Result<Option<Self>, UpstreamError> {
        if settings.rules.is_empty() {
            return Ok(None);
        }
        let mut builder = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(90)).tcp_nodelay(true);
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path)
                .map_err(|source| UpstreamError::ReadCa { path: path.display().to_string(), source })?;
            for certificate in reqwest::Certificate::from_pem_bundle(&pem).map_err(UpstreamError::Ca)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(UpstreamError::Client)?;
        Ok(Some(Self {
            circuits: settings.rules.iter().map(|_| Circuit::default()).collect(),
            rules: settings.rules,
            http,
            keys: settings.access_keys,
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            max_body: settings.max_body,
            metrics,
        }))
    }

    /// Whether `hub` is an upstream hub: a rule takes its `messages`, so its clients' calls
    /// go to a backend instead of a hub running here.
    pub fn serves_messages(&self, hub: &str) -> bool {
        self.rules.iter().any(|rule| rule.covers(hub, "messages"))
    }

    /// Whether a rule names the blocking `connect` event for `hub`.
    pub fn has_connect_hook(&self, hub: &str) -> bool {
        route(&self.rules, Event { hub, category: "connections", event: super::rules::CONNECT_EVENT }).is_some()
    }

    /// Sends one event once; `None` when no rule takes it.
    pub async fn call(&self, subject: &Subject<'_>, payload: Payload) -> Option<Reply> {
        let event = Event { hub: subject.hub, category: subject.category, event: subject.event };
        let index = self.rules.iter().position(|rule| rule.matches(event))?;
        let rule = &self.rules[index];
        let circuit = &self.circuits[index];
        let kind = kind(subject);
        if !circuit.admits() {
            self.metrics.finished(kind, "circuit_open", None);
            return Some(Reply::CircuitOpen);
        }
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            circuit.abandoned_probe();
            self.metrics.finished(kind, "busy", None);
            return Some(Reply::Busy);
        };
        let span =
            info_span!("upstream", event = subject.event, category = subject.category, status = tracing::field::Empty);
        let started = Instant::now();
        self.metrics.in_flight.inc();
        let reply = self.send(rule, event, subject, payload).instrument(span.clone()).await;
        self.metrics.in_flight.dec();
        let label = status_label(&reply);
        span.record("status", label);
        self.metrics.finished(kind, label, Some(started.elapsed()));
        if circuit.record(is_failure(&reply)) {
            warn!(url = rule.template(), "upstream circuit opened after {OPEN_AFTER} consecutive failures");
            self.metrics.circuits_open.inc();
        } else if circuit.closed_now() {
            self.metrics.circuits_open.dec();
        }
        Some(reply)
    }

    /// Sends a notification (`connected`, `disconnected`), retrying a few times with backoff
    /// until the backend answers 2xx or 4xx (a 4xx will not improve with retries).
    pub async fn notify(&self, subject: &Subject<'_>, payload: Payload) {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=NOTIFY_ATTEMPTS {
            let Some(reply) = self.call(subject, payload.clone()).await else { return };
            match reply {
                Reply::Answered { status, .. } if status < 500 => return,
                reply if attempt == NOTIFY_ATTEMPTS => {
                    warn!(event = subject.event, conn_id = subject.connection_id, ?reply, "upstream notification lost");
                }
                reply => debug!(event = subject.event, ?reply, attempt, "upstream notification failed; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }

    async fn send(&self, rule: &Rule, event: Event<'_>, subject: &Subject<'_>, payload: Payload) -> Reply {
        let keys: Vec<&str> = self.keys.iter().map(String::as_str).collect();
        let mut request = self
            .http
            .post(rule.url(event))
            .header(reqwest::header::CONTENT_TYPE, payload.content_type)
            .body(payload.body);
        for (name, value) in headers(subject, &keys) {
            request = request.header(name, value);
        }
        match tokio::time::timeout(rule.timeout(), self.exchange(request)).await {
            Ok(reply) => reply,
            Err(_) => Reply::TimedOut,
        }
    }

    /// The status and body of one request, the body read up to the limit.
    async fn exchange(&self, request: reqwest::RequestBuilder) -> Reply {
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Reply::Unreachable(reason(&error)),
        };
        let status = response.status().as_u16();
        let limit = self.max_body;
        if response.content_length().is_some_and(|length| length > limit as u64) {
            return Reply::TooLarge { limit };
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() > limit => return Reply::TooLarge { limit },
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => return Reply::Answered { status, body },
                Err(error) => return Reply::Unreachable(reason(&error)),
            }
        }
    }
}

/// The metrics label of an event: `connect`, `connected`, `disconnected` or `message`.
fn kind(subject: &Subject<'_>) -> &'static str {
    match (subject.category, subject.event) {
        ("connections", "connect") => "connect",
        ("connections", "connected") => "connected",
        ("connections", _) => "disconnected",
        _ => "message",
    }
}

fn status_label(reply: &Reply) -> &'static str {
    match reply {
        Reply::Answered { status, .. } => match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
        Reply::TimedOut => "timeout",
        Reply::Unreachable(_) => "unreachable",
        Reply::TooLarge { .. } => "too_large",
        Reply::Busy => "busy",
        Reply::CircuitOpen => "circuit_open",
    }
}

/// Whether a reply counts against the backend's health.
fn is_failure(reply: &Reply) -> bool {
    match reply {
        Reply::Answered { status, .. } => *status >= 500,
        Reply::TimedOut | Reply::Unreachable(_) => true,
        Reply::TooLarge { .. } | Reply::Busy | Reply::CircuitOpen => false,
    }
}

/// A short reason for a failed request, without the URL (which may carry secrets).
fn reason(error: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    let mut deepest = error.to_string();
    while let Some(error) = source {
        deepest = error.to_string();
        source = error.source();
    }
    if error.is_connect() {
        format!("cannot connect ({deepest})")
    } else {
        deepest
    }
}

/// A rule's circuit: closed (calls go through), open (calls fail fast until the cool-down
/// ends) or probing (one call is testing the backend).
#[derive(Default)]
struct Circuit {
    failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
    probing: AtomicBool,
    /// Set by the call that closed an open circuit, read once by [`Circuit::closed_now`].
    just_closed: AtomicBool,
}

impl Circuit {
    /// Whether a call may go out now. Once the cool-down has passed, the first caller probes
    /// and the others keep failing until the probe ends.
    fn admits(&self) -> bool {
        let open_until = *self.open_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match open_until {
            None => true,
            Some(until) if Instant::now() < until => false,
            Some(_) => !self.probing.swap(true, Ordering::AcqRel),
        }
    }

    /// A probe that never went out (no room in flight).
    fn abandoned_probe(&self) {
        self.probing.store(false, Ordering::Release);
    }

    /// Records how a call ended; true when this failure opened the circuit.
    fn record(&self, failed: bool) -> bool {
        let mut open_until = self.open_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let was_open = open_until.is_some();
        self.probing.store(false, Ordering::Release);
        if !failed {
            self.failures.store(0, Ordering::Release);
            if was_open {
                *open_until = None;
                self.just_closed.store(true, Ordering::Release);
            }
            return false;
        }
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if was_open || failures >= OPEN_AFTER {
            *open_until = Some(Instant::now() + COOL_DOWN);
            return !was_open;
        }
        false
    }

    fn closed_now(&self) -> bool {
        self.just_closed.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_circuit_opens_after_consecutive_failures_and_a_successful_probe_closes_it() {
        let circuit = Circuit::default();
        for _ in 1..OPEN_AFTER {
            assert!(circuit.admits());
            assert!(!circuit.record(true));
        }
        assert!(circuit.record(true), "the fifth failure in a row opens it");
        assert!(!circuit.admits(), "open: calls fail fast");
        *circuit.open_until.lock().unwrap() = Some(Instant::now());
        assert!(circuit.admits(), "after the cool-down one call probes");
        assert!(!circuit.admits(), "only one");
        assert!(!circuit.record(false));
        assert!(circuit.closed_now() && !circuit.closed_now());
        assert!(circuit.admits() && circuit.admits());
    }

    #[test]
    fn a_success_resets_the_count_and_a_failed_probe_reopens() {
        let circuit = Circuit::default();
        for _ in 1..OPEN_AFTER {
            circuit.record(true);
        }
        circuit.record(false);
        assert!(!circuit.record(true), "the count started again");
        for _ in 1..OPEN_AFTER {
            circuit.record(true);
        }
        assert!(!circuit.admits());
        *circuit.open_until.lock().unwrap() = Some(Instant::now());
        assert!(circuit.admits());
        assert!(!circuit.record(true), "a failed probe keeps it open (not opened again)");
        assert!(!circuit.admits());
    }

    #[test]
    fn only_missing_answers_and_server_errors_count_as_failures() {
        assert!(is_failure(&Reply::TimedOut));
        assert!(is_failure(&Reply::Unreachable("x".into())));
        assert!(is_failure(&Reply::Answered { status: 503, body: vec![] }));
        assert!(!is_failure(&Reply::Answered { status: 404, body: vec![] }));
        assert!(!is_failure(&Reply::Busy));
    }
}
