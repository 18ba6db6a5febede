//! The built-in scenarios `loadtest run` drives, modelled on the Azure SignalR benchmark:
//!
//! - [`echo`]: each iteration invokes `Echo` and times the round trip (`invoke_rtt`);
//! - [`fanout`]: `broadcast`, `group`, `user` and `connection` — subscribers connected before
//!   the run, a publisher VU per iteration sends one stamped message (`SendToAll`,
//!   `SendToGroup`, `SendToUser`, `SendToConnection`), and every delivery is accounted for
//!   (latency, lost, duplicated) by the [`ledger`];
//! - [`churn`]: each iteration opens a connection and closes it (`connect_time`).
//!
//! Every connection records `connect_time` (negotiate + transport open), `handshake_time`
//! (until the handshake was accepted) and the `connections_failed` rate, and every
//! failure is counted by kind (`errors_<kind>`) through the runner's `Recorder`.
//! Connections are spread over the target URLs round robin, so with several gateway nodes a
//! message published on one node is delivered through the backplane on the others.

pub mod churn;
pub mod echo;
pub mod fanout;
pub mod ledger;
pub mod peers;
pub mod stamp;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::runner::{Failure, Recorder};
use crate::signalr::{ClientError, ClientOptions, Connection, Protocol, Transport};

/// A client error as the runner counts it. It lives here, where the client meets the runner,
/// so that neither `signalr` nor `runner` knows the other.
impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Self { kind: error.kind(), message: error.to_string() }
    }
}

/// A message slower than this counts as slow (`messages_slow`), the Azure benchmark's bar.
pub const SLOW: Duration = Duration::from_secs(1);
/// Longest wait for one invocation's completion.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How connections authenticate.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Auth {
    #[default]
    Anonymous,
    /// The same bearer token on every connection.
    Token(String),
    /// Sign a token per connection (HS256, `sub` = the connection's user name, valid a day).
    Secret(String),
}

/// What every scenario needs to open connections and shape messages.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Hub URLs the VUs connect to, round robin.
    pub targets: Vec<String>,
    /// Hub URLs the subscribers of fan-out scenarios connect to (round robin); empty = `targets`.
    pub subscriber_targets: Vec<String>,
    pub transport: Transport,
    pub protocol: Protocol,
    pub auth: Auth,
    /// Size of each message's payload string, in bytes (at least the stamp's 32).
    pub payload_bytes: usize,
    /// Subscriber connections of the fan-out scenarios.
    pub subscribers: u32,
    /// Members per group in the `group` scenario.
    pub group_size: u32,
    /// Share (0..=1) of each group's members that leave and rejoin every second (`group`).
    pub group_churn: f64,
    /// How long teardown waits for deliveries still in flight.
    pub drain: Duration,
    /// Dedicated publisher connections of the fan-out scenarios under an arrival rate, each
    /// with its own task (see `runner::Scenario::dedicated_senders`); 0: publishing VUs
    /// borrowed per message, as k6 does.
    pub publishers: u32,
    /// This process's part of the run (all of it unless `--workers` split it).
    pub slice: Slice,
    /// Connect only to the origins `targets` and `subscriber_targets` name: a negotiate
    /// redirect elsewhere fails the connection (what `loadtest agent` runs with).
    pub confine: bool,
}

/// Which part of a run this process drives (`loadtest run --workers`). VU and subscriber
/// numbers start at the offsets, so user names, groups and tokens stay unique across the
/// workers, and fan-out sequence numbers are `local × workers + worker`, unique too: a
/// subscriber receives every worker's messages and tells them apart by sequence alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Slice {
    pub worker: u32,
    pub workers: u32,
    pub vu_offset: u32,
    pub subscriber_offset: u32,
}

impl Default for Slice {
    fn default() -> Self {
        Self { worker: 0, workers: 1, vu_offset: 0, subscriber_offset: 0 }
    }
}

impl Slice {
    /// The run-wide sequence number of this process's message number `local`.
    pub fn sequence(&self, local: u64) -> u64 {
        local * u64::from(self.workers.max(1)) + u64::from(self.worker)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            subscriber_targets: Vec::new(),
            transport: Transport::WebSockets,
            protocol: Protocol::Json,
            auth: Auth::Anonymous,
            payload_bytes: 64,
            subscribers: 10,
            group_size: 10,
            group_churn: 0.0,
            drain: Duration::from_secs(3),
            publishers: 0,
            slice: Slice::default(),
            confine: false,
        }
    }
}

impl Settings {
    /// Options for connection `index` among `targets`, authenticated as `user` when signing.
    pub fn options(&self, targets: &[String], index: u32, user: &str) -> Result<ClientOptions, Failure> {
        let url = targets
            .get(index as usize % targets.len().max(1))
            .ok_or_else(|| Failure { kind: "setup", message: "no target URL".into() })?;
        let access_token = match &self.auth {
            Auth::Anonymous => None,
            Auth::Token(token) => Some(token.clone()),
            Auth::Secret(secret) => Some(sign(secret, user)?),
        };
        let allowed_origins = self.confine.then(|| {
            let named = self.targets.iter().chain(&self.subscriber_targets);
            std::sync::Arc::new(named.filter_map(|url| crate::signalr::origin_of(url)).collect::<Vec<_>>())
        });
        Ok(ClientOptions {
            allowed_origins,
            transport: self.transport,
            protocol: self.protocol,
            access_token,
            ..ClientOptions::new(url.clone())
        })
    }

    /// Where subscribers connect.
    pub fn subscriber_urls(&self) -> &[String] {
        if self.subscriber_targets.is_empty() {
            &self.targets
        } else {
            &self.subscriber_targets
        }
    }
}

/// An HS256 token for `user`, valid for a day.
fn sign(secret: &str, user: &str) -> Result<String, Failure> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let claims = serde_json::json!({ "sub": user, "iat": now, "exp": now + 86_400 });
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)
        .map_err(|e| Failure { kind: "setup", message: format!("signing a token: {e}") })
}

/// Opens one connection, recording `connect_time` (negotiate + transport open),
/// `handshake_time` (until the server accepted the handshake: the whole open) and the
/// `connections_failed` rate.
pub async fn connect(options: ClientOptions, recorder: &Recorder) -> Result<Connection, Failure> {
    let result = Connection::connect(options).await;
    recorder.rate("connections_failed", result.is_err());
    let connection = result?;
    let phases = connection.phases();
    recorder.trend("connect_time", phases.transport_open);
    recorder.trend("handshake_time", phases.handshake_accepted);
    Ok(connection)
}

/// Bounds an invocation by [`INVOKE_TIMEOUT`]; a timeout is a failure of kind `timeout`.
pub async fn within<T>(call: impl std::future::Future<Output = Result<T, ClientError>>) -> Result<T, Failure> {
    match tokio::time::timeout(INVOKE_TIMEOUT, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Failure { kind: "timeout", message: format!("no completion within {INVOKE_TIMEOUT:?}") }),
    }
}
