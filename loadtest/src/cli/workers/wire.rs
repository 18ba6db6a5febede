//! The parent–worker protocol: one JSON object per line, `{"type": ..., ...}`, the parent
//! writing to the worker's stdin and reading its stdout (the worker's stderr is its log).
//!
//! ```text
//! worker → started {pid, open_files}            once, after raising its open-file limit
//! parent → run {job}                             one run (a step of a step-up is one run)
//! worker → snapshot {metrics}                    4 times a second: everything recorded so far
//! worker → members {members}  parent → members   fan-out: the run's subscriber directory
//! worker → draining {expected, received}         fan-out teardown, whenever its ledger moves
//! parent → settled                               every worker's deliveries are in (or drain over)
//! parent → stop                                  an abortOnFail threshold failed on the merge
//! worker → finished {metrics, elapsed_us, setup_failed}
//! ```
//!
//! Snapshots are cumulative, so the parent keeps only each worker's latest. Closing the
//! worker's stdin ends it. A remote worker (`loadtest agent`) is reached over TCP, where the
//! coordinator's first line is a [`Hello`] with the shared token; the agent answers `refused
//! {reason}` and closes, or hands the connection to a worker, which says `started`.

use serde::{Deserialize, Serialize};

use crate::cli::plan::{self, ScenarioName};
use crate::model::executor::Executor;
use crate::model::wire::WireMetrics;
use crate::runner::Failure;
use crate::scenarios::peers::Member;
use crate::scenarios::{Auth, Settings, Slice};
use crate::signalr::{Protocol, Transport};

/// What the parent tells a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    Run { job: Box<Job> },
    Members { members: Vec<Member> },
    Settled,
    Stop,
}

/// The coordinator's first line to an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Hello {
    Hello { token: String },
}

/// What a worker tells the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromWorker {
    Started {
        pid: u32,
        open_files: u64,
    },
    /// An agent turned the coordinator away (bad token, no worker).
    Refused {
        reason: String,
    },
    Snapshot {
        metrics: WireMetrics,
    },
    Members {
        members: Vec<Member>,
    },
    Draining {
        expected: u64,
        received: u64,
    },
    Finished {
        metrics: WireMetrics,
        elapsed_us: u64,
        setup_failed: Option<WireFailure>,
    },
}

/// One run of a worker's part of the scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub scenario: ScenarioName,
    pub settings: WireSettings,
    pub executor: Executor,
    pub graceful_stop_ms: u64,
    /// The run's clock origin, µs since the Unix epoch (see `scenarios::stamp::align_epoch`).
    pub epoch_unix_us: u64,
}

/// [`Settings`] on the wire (transport and protocol by their flag names).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireSettings {
    pub targets: Vec<String>,
    pub subscriber_targets: Vec<String>,
    pub transport: String,
    pub protocol: String,
    pub auth: Auth,
    pub payload_bytes: usize,
    pub subscribers: u32,
    pub group_size: u32,
    pub group_churn: f64,
    pub drain_ms: u64,
    pub publishers: u32,
    pub slice: Slice,
}

/// A [`Failure`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireFailure {
    pub kind: String,
    pub message: String,
}

impl From<&Settings> for WireSettings {
    fn from(s: &Settings) -> Self {
        let transport = match s.transport {
            Transport::WebSockets => "ws",
            Transport::ServerSentEvents => "sse",
            Transport::LongPolling => "lp",
        };
        let protocol = match s.protocol {
            Protocol::Json => "json",
            Protocol::MessagePack => "messagepack",
        };
        Self {
            targets: s.targets.clone(),
            subscriber_targets: s.subscriber_targets.clone(),
            transport: transport.to_owned(),
            protocol: protocol.to_owned(),
            auth: s.auth.clone(),
            payload_bytes: s.payload_bytes,
            subscribers: s.subscribers,
            group_size: s.group_size,
            group_churn: s.group_churn,
            drain_ms: u64::try_from(s.drain.as_millis()).unwrap_or(u64::MAX),
            publishers: s.publishers,
            slice: s.slice,
        }
    }
}

impl WireSettings {
    pub fn settings(&self) -> Result<Settings, plan::PlanError> {
        Ok(Settings {
            targets: self.targets.clone(),
            subscriber_targets: self.subscriber_targets.clone(),
            transport: plan::transport_name(&self.transport)?,
            protocol: plan::protocol_name(&self.protocol)?,
            auth: self.auth.clone(),
            payload_bytes: self.payload_bytes,
            subscribers: self.subscribers,
            group_size: self.group_size,
            group_churn: self.group_churn,
            drain: std::time::Duration::from_millis(self.drain_ms),
            publishers: self.publishers,
            slice: self.slice,
            confine: false,
        })
    }
}

impl From<&Failure> for WireFailure {
    fn from(f: &Failure) -> Self {
        Self { kind: f.kind.to_owned(), message: f.message.clone() }
    }
}

impl WireFailure {
    /// The failure, its kind among the harness's own (a kind is a `&'static str` label).
    pub fn failure(&self) -> Failure {
        const KINDS: [&str; 10] = [
            "setup",
            "connect",
            "negotiate",
            "transport",
            "handshake",
            "closed",
            "protocol",
            "timeout",
            "hub",
            "subscriber_dropped",
        ];
        let kind = KINDS.iter().find(|k| **k == self.kind).copied().unwrap_or("worker");
        Failure { kind, message: self.message.clone() }
    }
}

/// One line of the protocol.
pub fn line<T: Serialize>(message: &T) -> String {
    let mut text = serde_json::to_string(message).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_reads_back_whole() {
        let settings = Settings { targets: vec!["http://h/hubs/x".into()], subscribers: 9, ..Settings::default() };
        let job = Job {
            scenario: ScenarioName::Group,
            settings: WireSettings::from(&settings),
            executor: Executor::ConstantVus { vus: 2, duration: std::time::Duration::from_millis(1500) },
            graceful_stop_ms: 5000,
            epoch_unix_us: 1,
        };
        let text = line(&ToWorker::Run { job: Box::new(job.clone()) });
        assert!(text.starts_with(r#"{"type":"run","job":{"scenario":"group""#), "{text}");
        let ToWorker::Run { job: back } = serde_json::from_str(&text).unwrap() else { panic!("{text}") };
        assert_eq!(back.executor, job.executor);
        let back = back.settings.settings().unwrap();
        assert_eq!((back.targets, back.subscribers, back.transport), (settings.targets, 9, settings.transport));
    }

    #[test]
    fn failure_kinds_stay_low_cardinality() {
        let known = WireFailure { kind: "connect".into(), message: "refused".into() };
        assert_eq!(known.failure().kind, "connect");
        assert_eq!(WireFailure { kind: "made-up".into(), message: String::new() }.failure().kind, "worker");
    }
}
