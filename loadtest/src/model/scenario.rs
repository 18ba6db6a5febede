//! The scenario file: one documented format, TOML, in k6's vocabulary.
//!
//! ```toml
//! [scenario]
//! name = "echo"                                  # a built-in scenario
//! targets = ["http://127.0.0.1:8080/hubs/chat"]  # round robin over nodes
//! transport = "ws"                               # optional: ws | sse | lp
//! protocol = "json"                              # optional: json | messagepack
//! # fan-out scenarios only, all optional:
//! # subscribers = 100, subscriber_targets = [..], group_size = 10, group_churn = 0.1,
//! # payload_bytes = 64, drain = "3s"
//!
//! [executor]                                     # any k6 executor, k6's key names
//! executor = "constant-arrival-rate"
//! rate = 200
//! timeUnit = "1s"
//! duration = "30s"
//! preAllocatedVUs = 50
//!
//! [thresholds]                                   # metric → k6 expressions
//! delivery_latency = ["p(95)<200", { threshold = "p(99)<500", abortOnFail = true }]
//! checks = ["rate>0.99"]
//!
//! [tags]                                         # copied onto every metric of the run
//! env = "staging"
//! ```
//!
//! Command-line options override the file's values (see the `run` subcommand).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

use super::executor::{Executor, ExecutorError};
use super::threshold::{Threshold, ThresholdError};

/// A parsed and checked scenario file.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioFile {
    pub scenario: ScenarioSection,
    pub executor: Executor,
    /// Thresholds per metric name, in file order per metric.
    pub thresholds: BTreeMap<String, Vec<Threshold>>,
    pub tags: BTreeMap<String, String>,
}

/// What to run and against which nodes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSection {
    /// A built-in scenario: echo, broadcast, group, user, connection, churn.
    pub name: String,
    /// Hub URLs; connections are spread over them round robin.
    #[serde(default)]
    pub targets: Vec<String>,
    /// `ws`, `sse` or `lp`; default `ws`.
    #[serde(default)]
    pub transport: Option<String>,
    /// `json` or `messagepack`; default `json`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Subscriber connections of the fan-out scenarios.
    #[serde(default)]
    pub subscribers: Option<u32>,
    /// Where subscribers connect; default `targets`.
    #[serde(default)]
    pub subscriber_targets: Vec<String>,
    /// Members per group (`group` scenario).
    #[serde(default)]
    pub group_size: Option<u32>,
    /// Share of each group's members that leave and rejoin every second.
    #[serde(default)]
    pub group_churn: Option<f64>,
    /// Bytes of each message's payload.
    #[serde(default)]
    pub payload_bytes: Option<usize>,
    /// Dedicated publisher connections (fan-out scenarios under an arrival rate).
    #[serde(default)]
    pub publishers: Option<u32>,
    /// How long the end of a fan-out run waits for deliveries in flight.
    #[serde(default, with = "humantime_serde")]
    pub drain: Option<std::time::Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    scenario: ScenarioSection,
    executor: Executor,
    #[serde(default)]
    thresholds: BTreeMap<String, Vec<RawThreshold>>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// A threshold as k6 writes it: a bare expression, or a table with `abortOnFail`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawThreshold {
    Expression(String),
    Detailed {
        threshold: String,
        #[serde(rename = "abortOnFail", default)]
        abort_on_fail: bool,
    },
}

/// Why a scenario file was refused.
#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{0}")]
    Format(String),
    #[error("executor: {0}")]
    Executor(#[from] ExecutorError),
    #[error("thresholds of '{metric}': {error}")]
    Threshold { metric: String, error: ThresholdError },
}

impl ScenarioFile {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        text.parse()
    }
}

impl std::str::FromStr for ScenarioFile {
    type Err = ScenarioError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ScenarioError::Format(e.to_string()))?;
        raw.executor.validate()?;
        let mut thresholds = BTreeMap::new();
        for (metric, entries) in raw.thresholds {
            let parsed = entries
                .into_iter()
                .map(|entry| entry.parse())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| ScenarioError::Threshold { metric: metric.clone(), error })?;
            thresholds.insert(metric, parsed);
        }
        Ok(Self { scenario: raw.scenario, executor: raw.executor, thresholds, tags: raw.tags })
    }
}

impl RawThreshold {
    fn parse(self) -> Result<Threshold, ThresholdError> {
        match self {
            Self::Expression(text) => text.parse(),
            Self::Detailed { threshold, abort_on_fail } => {
                Ok(Threshold { abort_on_fail, ..threshold.parse::<Threshold>()? })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const EXAMPLE: &str = r#"
        [scenario]
        name = "echo"
        targets = ["http://127.0.0.1:8080/hubs/chat", "http://127.0.0.1:8081/hubs/chat"]

        [executor]
        executor = "constant-arrival-rate"
        rate = 200
        duration = "30s"
        preAllocatedVUs = 50

        [thresholds]
        delivery_latency = ["p(95)<200", { threshold = "p(99)<500", abortOnFail = true }]
        checks = ["rate>0.99"]

        [tags]
        env = "staging"
    "#;

    #[test]
    fn the_documented_example_reads_back_whole() {
        let file: ScenarioFile = EXAMPLE.parse().unwrap();
        assert_eq!(file.scenario.name, "echo");
        assert_eq!(file.scenario.targets.len(), 2);
        assert_eq!(file.executor.duration(), Duration::from_secs(30));
        let latency = &file.thresholds["delivery_latency"];
        assert_eq!(latency.len(), 2);
        assert!(!latency[0].abort_on_fail && latency[1].abort_on_fail);
        assert_eq!(latency[1].source, "p(99)<500");
        assert_eq!(file.tags["env"], "staging");
    }

    #[test]
    fn mistakes_are_named() {
        let bad_threshold = EXAMPLE.replace("rate>0.99", "rate>>0.99");
        let error = bad_threshold.parse::<ScenarioFile>().unwrap_err().to_string();
        assert!(error.starts_with("thresholds of 'checks'"), "{error}");
        let unknown_key = EXAMPLE.replace("[tags]", "[tag]");
        assert!(unknown_key.parse::<ScenarioFile>().is_err());
        let bad_executor = EXAMPLE.replace("preAllocatedVUs = 50", "preAllocatedVUs = 50\nmaxVUs = 1");
        let error = bad_executor.parse::<ScenarioFile>().unwrap_err().to_string();
        assert!(error.starts_with("executor: maxVUs"), "{error}");
    }
}
