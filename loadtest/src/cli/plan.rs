//! Merges the scenario file and the flags into one checked plan, before anything connects:
//! a flag overrides the file's value; executor flags replace the file's executor as a whole
//! (mixing half of one executor with half of another would be a guess).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::args::RunArgs;
use crate::model::executor::{Executor, ExecutorError, Stage};
use crate::model::scenario::{ScenarioError, ScenarioFile};
use crate::model::threshold::{Threshold, ThresholdError};
use crate::runner::Plan;
use crate::scenarios::{Auth, Settings};
use crate::signalr::{Protocol, Transport};

/// The built-in scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioName {
    Echo,
    Broadcast,
    Group,
    User,
    Connection,
    Churn,
}

/// Why the command line and the file do not make a plan (exit code 1).
#[derive(Debug, Error)]
pub enum PlanError {
    #[error(transparent)]
    File(#[from] ScenarioError),
    #[error("unknown scenario '{0}' (echo, broadcast, group, user, connection, churn)")]
    Scenario(String),
    #[error("no scenario: give a file or --scenario")]
    NoScenario,
    #[error("no target: give --url or targets in the file")]
    NoTarget,
    #[error("unknown transport '{0}' (ws, sse, lp)")]
    Transport(String),
    #[error("unknown protocol '{0}' (json, messagepack)")]
    Protocol(String),
    #[error("--{flag} '{text}': {reason}")]
    Flag { flag: &'static str, text: String, reason: String },
    #[error("threshold: {0}")]
    Threshold(#[from] ThresholdError),
    #[error("executor: {0}")]
    Executor(#[from] ExecutorError),
    #[error("the SSE transport cannot carry MessagePack")]
    SseMessagePack,
}

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub scenario: ScenarioName,
    pub settings: Settings,
    pub plan: Plan,
    pub tags: BTreeMap<String, String>,
    pub summary_export: Option<PathBuf>,
    pub prometheus: Option<SocketAddr>,
    /// Step-up rates per second, with the length of each step.
    pub step_up: Option<(Vec<f64>, Duration)>,
}

/// Merges `file` (if any) with the flags.
pub fn resolve(file: Option<ScenarioFile>, args: &RunArgs) -> Result<Resolved, PlanError> {
    let section = file.as_ref().map(|f| f.scenario.clone());
    let name =
        args.scenario.clone().or_else(|| section.as_ref().map(|s| s.name.clone())).ok_or(PlanError::NoScenario)?;
    let scenario = scenario_name(&name)?;
    let mut settings = settings(section.as_ref(), args)?;
    let executor = match executor_from_flags(args)? {
        Some(executor) => executor,
        None => file.as_ref().map(|f| f.executor.clone()).unwrap_or(DEFAULT_EXECUTOR),
    };
    executor.validate()?;
    let mut thresholds = file.as_ref().map(|f| f.thresholds.clone()).unwrap_or_default();
    for text in &args.thresholds {
        let (metric, threshold) = threshold_flag(text)?;
        thresholds.entry(metric).or_default().push(threshold);
    }
    let mut tags = file.as_ref().map(|f| f.tags.clone()).unwrap_or_default();
    for text in &args.tags {
        let (key, value) = text.split_once('=').ok_or_else(|| flag_error("tag", text, "expected key=value"))?;
        tags.insert(key.to_owned(), value.to_owned());
    }
    let step_up = match &args.step_up {
        Some(rates) => Some((list(rates, "step-up")?, args.step_duration.unwrap_or(Duration::from_secs(10)))),
        None => None,
    };
    let fanout = !matches!(scenario, ScenarioName::Echo | ScenarioName::Churn);
    let publishers_given = args.publishers.or(section.as_ref().and_then(|s| s.publishers)).is_some();
    if step_up.is_some() && fanout && !publishers_given {
        settings.publishers = STEP_UP_PUBLISHERS;
    }
    let plan =
        Plan { executor, thresholds, graceful_stop: Duration::from_secs(5), progress: !args.no_progress, stop: None };
    Ok(Resolved {
        scenario,
        settings,
        plan,
        tags,
        summary_export: args.summary_export.clone(),
        prometheus: args.prometheus,
        step_up,
    })
}

/// Dedicated publishers of a fan-out step-up without `--publishers`: a step then measures the
/// server's ceiling, not how fast the harness hands out VUs.
pub const STEP_UP_PUBLISHERS: u32 = 2;

/// Without a file or executor flags: one VU for ten seconds.
const DEFAULT_EXECUTOR: Executor = Executor::ConstantVus { vus: 1, duration: Duration::from_secs(10) };

pub fn scenario_name(name: &str) -> Result<ScenarioName, PlanError> {
    Ok(match name {
        "echo" => ScenarioName::Echo,
        "broadcast" => ScenarioName::Broadcast,
        "group" => ScenarioName::Group,
        "user" => ScenarioName::User,
        "connection" => ScenarioName::Connection,
        "churn" => ScenarioName::Churn,
        other => return Err(PlanError::Scenario(other.to_owned())),
    })
}

fn settings(section: Option<&crate::model::scenario::ScenarioSection>, args: &RunArgs) -> Result<Settings, PlanError> {
    let defaults = Settings::default();
    let pick = |flag: &Vec<String>, file: Option<&Vec<String>>| match flag.is_empty() {
        true => file.cloned().unwrap_or_default(),
        false => flag.clone(),
    };
    let targets = pick(&args.urls, section.map(|s| &s.targets));
    if targets.is_empty() {
        return Err(PlanError::NoTarget);
    }
    let transport = args.transport.clone().or_else(|| section.and_then(|s| s.transport.clone()));
    let protocol = args.protocol.clone().or_else(|| section.and_then(|s| s.protocol.clone()));
    let settings = Settings {
        subscriber_targets: pick(&args.subscriber_urls, section.map(|s| &s.subscriber_targets)),
        targets,
        transport: transport.as_deref().map(transport_name).transpose()?.unwrap_or(defaults.transport),
        protocol: protocol.as_deref().map(protocol_name).transpose()?.unwrap_or(defaults.protocol),
        auth: match (&args.access_token, &args.jwt_secret) {
            (Some(token), _) => Auth::Token(token.clone()),
            (None, Some(secret)) => Auth::Secret(secret.clone()),
            (None, None) => Auth::Anonymous,
        },
        payload_bytes: args.payload_bytes.or(section.and_then(|s| s.payload_bytes)).unwrap_or(defaults.payload_bytes),
        subscribers: args.subscribers.or(section.and_then(|s| s.subscribers)).unwrap_or(defaults.subscribers),
        group_size: args.group_size.or(section.and_then(|s| s.group_size)).unwrap_or(defaults.group_size),
        group_churn: args.group_churn.or(section.and_then(|s| s.group_churn)).unwrap_or(defaults.group_churn),
        drain: args.drain.or(section.and_then(|s| s.drain)).unwrap_or(defaults.drain),
        publishers: args.publishers.or(section.and_then(|s| s.publishers)).unwrap_or(defaults.publishers),
        slice: defaults.slice,
        confine: false,
    };
    if !(0.0..=1.0).contains(&settings.group_churn) {
        return Err(flag_error("group-churn", &settings.group_churn.to_string(), "expected a share from 0 to 1"));
    }
    if settings.transport == Transport::ServerSentEvents && settings.protocol == Protocol::MessagePack {
        return Err(PlanError::SseMessagePack);
    }
    Ok(settings)
}

pub fn transport_name(name: &str) -> Result<Transport, PlanError> {
    match name {
        "ws" | "websockets" => Ok(Transport::WebSockets),
        "sse" => Ok(Transport::ServerSentEvents),
        "lp" | "longpolling" => Ok(Transport::LongPolling),
        other => Err(PlanError::Transport(other.to_owned())),
    }
}

pub fn protocol_name(name: &str) -> Result<Protocol, PlanError> {
    match name {
        "json" => Ok(Protocol::Json),
        "messagepack" | "msgpack" => Ok(Protocol::MessagePack),
        other => Err(PlanError::Protocol(other.to_owned())),
    }
}

/// The executor the flags describe, if any executor flag is given.
fn executor_from_flags(args: &RunArgs) -> Result<Option<Executor>, PlanError> {
    let arrival = args.rate.is_some() || args.time_unit.is_some() || args.pre_allocated_vus.is_some();
    let time_unit = args.time_unit.unwrap_or(Duration::from_secs(1));
    let pre_allocated_vus = args.pre_allocated_vus.unwrap_or(10);
    let max_vus = args.max_vus;
    let duration = args.duration.unwrap_or(Duration::from_secs(10));
    Ok(Some(match (&args.stages, arrival) {
        (Some(stages), true) => Executor::RampingArrivalRate {
            start_rate: args.rate.unwrap_or(0.0),
            time_unit,
            stages: parse_stages(stages)?,
            pre_allocated_vus,
            max_vus,
        },
        (Some(stages), false) => {
            Executor::RampingVus { start_vus: args.vus.unwrap_or(0), stages: parse_stages(stages)? }
        }
        (None, true) => Executor::ConstantArrivalRate {
            rate: args.rate.unwrap_or(1.0),
            time_unit,
            duration,
            pre_allocated_vus,
            max_vus,
        },
        (None, false) if args.vus.is_some() || args.duration.is_some() => {
            Executor::ConstantVus { vus: args.vus.unwrap_or(1), duration }
        }
        (None, false) => return Ok(None),
    }))
}

/// `30s:100,1m:100` → stages.
pub fn parse_stages(text: &str) -> Result<Vec<Stage>, PlanError> {
    text.split(',')
        .map(|stage| {
            let (duration, target) =
                stage.trim().split_once(':').ok_or_else(|| flag_error("stages", stage, "expected DURATION:TARGET"))?;
            let duration =
                humantime::parse_duration(duration).map_err(|e| flag_error("stages", stage, &e.to_string()))?;
            let target = target.parse().map_err(|_| flag_error("stages", stage, "the target is not a number"))?;
            Ok(Stage { duration, target })
        })
        .collect()
}

/// `metric=expression`, with a trailing `!` or `:abort` for abortOnFail.
pub fn threshold_flag(text: &str) -> Result<(String, Threshold), PlanError> {
    let (metric, expression) =
        text.split_once('=').ok_or_else(|| flag_error("threshold", text, "expected metric=expression"))?;
    let (expression, abort_on_fail) = match expression.strip_suffix('!').or_else(|| expression.strip_suffix(":abort")) {
        Some(stripped) => (stripped, true),
        None => (expression, false),
    };
    let threshold: Threshold = expression.trim().parse()?;
    Ok((metric.trim().to_owned(), Threshold { abort_on_fail, ..threshold }))
}

fn list(text: &str, flag: &'static str) -> Result<Vec<f64>, PlanError> {
    text.split(',')
        .map(|rate| match rate.trim().parse::<f64>() {
            Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
            _ => Err(flag_error(flag, text, "expected positive numbers separated by commas")),
        })
        .collect()
}

fn flag_error(flag: &'static str, text: &str, reason: &str) -> PlanError {
    PlanError::Flag { flag, text: text.to_owned(), reason: reason.to_owned() }
}

#[cfg(test)]
mod tests;
