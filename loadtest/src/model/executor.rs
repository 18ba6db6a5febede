//! Executors, as k6 names them: how many virtual users run when, or how many iterations start
//! when.
//!
//! - `constant-vus`: a fixed number of VUs for a duration;
//! - `ramping-vus`: VUs move linearly from one stage's target to the next;
//! - `constant-arrival-rate`: iterations start at a fixed rate (per `timeUnit`), whatever the
//!   previous ones are doing (open model: a slow server does not slow the load down);
//! - `ramping-arrival-rate`: the start rate moves linearly between stages.
//!
//! This module is only the schedule, as pure functions of elapsed time, so it is tested
//! without a clock; the runner asks it what should be running now.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One stage of a ramping executor: reach `target` (VUs or iterations per time unit) linearly
/// over `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    pub target: f64,
}

/// A scenario's executor, as written in the scenario file (`executor = "ramping-vus"`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "executor", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Executor {
    ConstantVus {
        vus: u32,
        #[serde(with = "humantime_serde")]
        duration: Duration,
    },
    RampingVus {
        #[serde(rename = "startVUs", default)]
        start_vus: u32,
        stages: Vec<Stage>,
    },
    ConstantArrivalRate {
        /// Iterations per `time_unit`.
        rate: f64,
        #[serde(rename = "timeUnit", with = "humantime_serde", default = "one_second")]
        time_unit: Duration,
        #[serde(with = "humantime_serde")]
        duration: Duration,
        #[serde(rename = "preAllocatedVUs")]
        pre_allocated_vus: u32,
        #[serde(rename = "maxVUs", default)]
        max_vus: Option<u32>,
    },
    RampingArrivalRate {
        #[serde(rename = "startRate", default)]
        start_rate: f64,
        #[serde(rename = "timeUnit", with = "humantime_serde", default = "one_second")]
        time_unit: Duration,
        stages: Vec<Stage>,
        #[serde(rename = "preAllocatedVUs")]
        pre_allocated_vus: u32,
        #[serde(rename = "maxVUs", default)]
        max_vus: Option<u32>,
    },
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}

/// Why an executor cannot run.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ExecutorError {
    #[error("{0} needs at least one stage")]
    NoStages(&'static str),
    #[error("{0} must not be negative or infinite")]
    BadNumber(&'static str),
    #[error("timeUnit must be longer than zero")]
    ZeroTimeUnit,
    #[error("maxVUs ({max}) is below preAllocatedVUs ({pre_allocated})")]
    MaxBelowPreAllocated { max: u32, pre_allocated: u32 },
}

impl Executor {
    /// Checks what serde cannot: stages present, numbers finite and non-negative.
    pub fn validate(&self) -> Result<(), ExecutorError> {
        let finite = |value: f64, what| {
            if value.is_finite() && value >= 0.0 {
                Ok(())
            } else {
                Err(ExecutorError::BadNumber(what))
            }
        };
        match self {
            Self::ConstantVus { .. } => Ok(()),
            Self::RampingVus { stages, .. } => check_stages(stages, "ramping-vus"),
            Self::ConstantArrivalRate { rate, time_unit, pre_allocated_vus, max_vus, .. } => {
                finite(*rate, "rate")?;
                check_pool(*time_unit, *pre_allocated_vus, *max_vus)
            }
            Self::RampingArrivalRate { start_rate, time_unit, stages, pre_allocated_vus, max_vus } => {
                finite(*start_rate, "startRate")?;
                check_stages(stages, "ramping-arrival-rate")?;
                check_pool(*time_unit, *pre_allocated_vus, *max_vus)
            }
        }
    }

    /// How long the executor runs.
    pub fn duration(&self) -> Duration {
        match self {
            Self::ConstantVus { duration, .. } | Self::ConstantArrivalRate { duration, .. } => *duration,
            Self::RampingVus { stages, .. } | Self::RampingArrivalRate { stages, .. } => {
                stages.iter().map(|stage| stage.duration).sum()
            }
        }
    }

    /// Whether iterations are started by a rate (open model) rather than by looping VUs.
    pub fn is_arrival_rate(&self) -> bool {
        matches!(self, Self::ConstantArrivalRate { .. } | Self::RampingArrivalRate { .. })
    }

    /// VUs that should be active `elapsed` into the run: for VU executors the schedule's value
    /// (ramps are linear and rounded down, as k6 does); for arrival-rate executors the pool
    /// allocated up front. Zero once the run is over.
    pub fn vus_at(&self, elapsed: Duration) -> u32 {
        if elapsed >= self.duration() {
            return 0;
        }
        match self {
            Self::ConstantVus { vus, .. } => *vus,
            Self::RampingVus { start_vus, stages } => ramp(f64::from(*start_vus), stages, elapsed).floor() as u32,
            Self::ConstantArrivalRate { pre_allocated_vus, .. }
            | Self::RampingArrivalRate { pre_allocated_vus, .. } => *pre_allocated_vus,
        }
    }

    /// Most VUs the executor may ever use.
    pub fn max_vus(&self) -> u32 {
        match self {
            Self::ConstantVus { vus, .. } => *vus,
            Self::RampingVus { start_vus, stages } => {
                stages.iter().map(|stage| stage.target.max(0.0) as u32).fold(*start_vus, u32::max)
            }
            Self::ConstantArrivalRate { pre_allocated_vus, max_vus, .. }
            | Self::RampingArrivalRate { pre_allocated_vus, max_vus, .. } => max_vus.unwrap_or(*pre_allocated_vus),
        }
    }

    /// Iterations an arrival-rate executor has started by `elapsed` (the first at zero);
    /// `None` for VU executors, whose iterations follow the VUs.
    pub fn iterations_by(&self, elapsed: Duration) -> Option<u64> {
        let elapsed = elapsed.min(self.duration());
        let started = |area: f64| Some(area.floor() as u64 + u64::from(elapsed < self.duration()));
        match self {
            Self::ConstantArrivalRate { rate, time_unit, .. } => {
                started(rate / time_unit.as_secs_f64() * elapsed.as_secs_f64())
            }
            Self::RampingArrivalRate { start_rate, time_unit, stages, .. } => {
                started(ramp_area(start_rate / time_unit.as_secs_f64(), stages, time_unit, elapsed))
            }
            _ => None,
        }
    }

    /// Iterations an arrival-rate executor starts over its whole run.
    pub fn total_iterations(&self) -> Option<u64> {
        let duration = self.duration();
        match self {
            Self::ConstantArrivalRate { rate, time_unit, .. } => {
                Some((rate / time_unit.as_secs_f64() * duration.as_secs_f64()).ceil() as u64)
            }
            Self::RampingArrivalRate { start_rate, time_unit, stages, .. } => {
                Some(ramp_area(start_rate / time_unit.as_secs_f64(), stages, time_unit, duration).ceil() as u64)
            }
            _ => None,
        }
    }
}

fn check_stages(stages: &[Stage], executor: &'static str) -> Result<(), ExecutorError> {
    if stages.is_empty() {
        return Err(ExecutorError::NoStages(executor));
    }
    if stages.iter().any(|stage| !stage.target.is_finite() || stage.target < 0.0) {
        return Err(ExecutorError::BadNumber("a stage target"));
    }
    Ok(())
}

fn check_pool(time_unit: Duration, pre_allocated: u32, max: Option<u32>) -> Result<(), ExecutorError> {
    if time_unit.is_zero() {
        return Err(ExecutorError::ZeroTimeUnit);
    }
    match max {
        Some(max) if max < pre_allocated => Err(ExecutorError::MaxBelowPreAllocated { max, pre_allocated }),
        _ => Ok(()),
    }
}

/// The value of a linear ramp through `stages`, starting at `start`, `elapsed` into it.
fn ramp(start: f64, stages: &[Stage], elapsed: Duration) -> f64 {
    let mut from = start;
    let mut left = elapsed.as_secs_f64();
    for stage in stages {
        let length = stage.duration.as_secs_f64();
        if left < length {
            return from + (stage.target - from) * (left / length);
        }
        left -= length;
        from = stage.target;
    }
    from
}

/// Iterations due by `elapsed`: the area under the per-second rate, which starts at
/// `start_per_second` and moves linearly to each stage's target (per `time_unit`).
fn ramp_area(start_per_second: f64, stages: &[Stage], time_unit: &Duration, elapsed: Duration) -> f64 {
    let unit = time_unit.as_secs_f64();
    let mut from = start_per_second;
    let mut left = elapsed.as_secs_f64();
    let mut area = 0.0;
    for stage in stages {
        let length = stage.duration.as_secs_f64();
        let to = stage.target / unit;
        let span = left.min(length);
        // Trapezoid from `from` to the rate reached after `span`.
        let reached = if length > 0.0 { from + (to - from) * (span / length) } else { to };
        area += (from + reached) / 2.0 * span;
        left -= span;
        from = to;
        if left <= 0.0 {
            break;
        }
    }
    area
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn stage(duration: f64, target: f64) -> Stage {
        Stage { duration: secs(duration), target }
    }

    #[test]
    fn constant_vus_hold_their_number_for_the_duration() {
        let executor = Executor::ConstantVus { vus: 10, duration: secs(30.0) };
        assert_eq!(executor.vus_at(secs(0.0)), 10);
        assert_eq!(executor.vus_at(secs(29.9)), 10);
        assert_eq!(executor.vus_at(secs(30.0)), 0);
        assert_eq!(executor.iterations_by(secs(5.0)), None);
    }

    #[test]
    fn ramping_vus_move_linearly_between_stage_targets() {
        let executor = Executor::RampingVus {
            start_vus: 0,
            stages: vec![stage(10.0, 100.0), stage(10.0, 100.0), stage(10.0, 0.0)],
        };
        assert_eq!(executor.duration(), secs(30.0));
        assert_eq!(executor.vus_at(secs(0.0)), 0);
        assert_eq!(executor.vus_at(secs(5.0)), 50);
        assert_eq!(executor.vus_at(secs(15.0)), 100);
        assert_eq!(executor.vus_at(secs(25.0)), 50);
        assert_eq!(executor.vus_at(secs(30.0)), 0);
        assert_eq!(executor.max_vus(), 100);
    }

    #[test]
    fn a_constant_arrival_rate_starts_iterations_on_schedule_from_time_zero() {
        let executor = Executor::ConstantArrivalRate {
            rate: 20.0,
            time_unit: secs(2.0),
            duration: secs(10.0),
            pre_allocated_vus: 5,
            max_vus: Some(50),
        };
        assert_eq!(executor.iterations_by(secs(0.0)), Some(1));
        assert_eq!(executor.iterations_by(secs(0.95)), Some(10));
        assert_eq!(executor.iterations_by(secs(1.0)), Some(11));
        assert_eq!(executor.iterations_by(secs(10.0)), Some(100));
        assert_eq!(executor.total_iterations(), Some(100));
        assert_eq!((executor.vus_at(secs(1.0)), executor.max_vus()), (5, 50));
    }

    #[test]
    fn a_ramping_arrival_rate_starts_the_area_under_its_rate() {
        // 0 → 100/s over 10 s (500 iterations), then 100/s for 5 s (500 more).
        let executor = Executor::RampingArrivalRate {
            start_rate: 0.0,
            time_unit: secs(1.0),
            stages: vec![stage(10.0, 100.0), stage(5.0, 100.0)],
            pre_allocated_vus: 10,
            max_vus: None,
        };
        assert_eq!(executor.iterations_by(secs(0.0)), Some(1));
        assert_eq!(executor.iterations_by(secs(5.0)), Some(126)); // area 125, plus the one at zero
        assert_eq!(executor.iterations_by(secs(10.0)), Some(501));
        assert_eq!(executor.total_iterations(), Some(1000));
        assert_eq!(executor.max_vus(), 10);
    }

    #[test]
    fn scenario_files_use_k6_names() {
        let executor: Executor = toml::from_str(
            r#"
            executor = "ramping-arrival-rate"
            startRate = 10
            timeUnit = "1s"
            preAllocatedVUs = 50
            maxVUs = 200
            stages = [{ duration = "30s", target = 100 }, { duration = "1m", target = 100 }]
            "#,
        )
        .unwrap();
        assert_eq!(executor.duration(), secs(90.0));
        assert_eq!(executor.validate(), Ok(()));
        let unknown = toml::from_str::<Executor>("executor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\nvu = 2");
        assert!(unknown.is_err(), "unknown keys are refused");
    }

    #[test]
    fn impossible_executors_are_refused() {
        let no_stages = Executor::RampingVus { start_vus: 1, stages: vec![] };
        assert_eq!(no_stages.validate(), Err(ExecutorError::NoStages("ramping-vus")));
        let pool = Executor::ConstantArrivalRate {
            rate: 1.0,
            time_unit: secs(1.0),
            duration: secs(1.0),
            pre_allocated_vus: 10,
            max_vus: Some(5),
        };
        assert_eq!(pool.validate(), Err(ExecutorError::MaxBelowPreAllocated { max: 5, pre_allocated: 10 }));
        let zero_unit = Executor::ConstantArrivalRate {
            rate: 1.0,
            time_unit: secs(0.0),
            duration: secs(1.0),
            pre_allocated_vus: 1,
            max_vus: None,
        };
        assert_eq!(zero_unit.validate(), Err(ExecutorError::ZeroTimeUnit));
        let negative = Executor::RampingVus { start_vus: 0, stages: vec![stage(1.0, -1.0)] };
        assert_eq!(negative.validate(), Err(ExecutorError::BadNumber("a stage target")));
    }
}
