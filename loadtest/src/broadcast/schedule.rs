//! The open-loop publish schedule: message `i` of a step is due at `i / rate` seconds after
//! the step starts, whatever happened to the messages before it.

use std::time::Duration;

/// One step of the run: a publish rate held for a number of messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPlan {
    /// Index in the run, carried in every payload.
    pub index: u16,
    /// Messages per second.
    pub rate: f64,
    /// Messages to send in this step.
    pub messages: u64,
    /// Whether this step only warms up and is left out of the verdict.
    pub warmup: bool,
}

impl StepPlan {
    /// The step of `rate` messages per second for `duration` (at least one message).
    pub fn new(index: u16, rate: f64, duration: Duration, warmup: bool) -> Self {
        let messages = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
        Self { index, rate, messages, warmup }
    }

    /// When message `i` is due, counted from the step's start.
    pub fn due(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// How long the step lasts on schedule: from the first message's due time to one period
    /// after the last.
    pub fn duration(&self) -> Duration {
        self.due(self.messages)
    }

    /// Messages due by `elapsed` since the start (all of them once the schedule is over).
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        // Message i is due when i / rate <= elapsed, so floor(elapsed * rate) + 1 of them.
        let due = (elapsed.as_secs_f64() * self.rate).floor() as u64 + 1;
        due.min(self.messages)
    }
}

/// The steps of a run: an optional warm-up at the first rate, then each rate in order.
pub fn plan(rates: &[f64], step: Duration, warmup: Duration) -> Vec<StepPlan> {
    let mut steps = Vec::new();
    if let (Some(&first), false) = (rates.first(), warmup.is_zero()) {
        steps.push(StepPlan::new(0, first, warmup, true));
    }
    for &rate in rates {
        let index = u16::try_from(steps.len()).unwrap_or(u16::MAX);
        steps.push(StepPlan::new(index, rate, step, false));
    }
    steps
}

/// Parses `100,500,1000` (messages per second).
pub fn parse_rates(text: &str) -> Result<Vec<f64>, String> {
    let rates = text
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| match r.parse::<f64>() {
            Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
            _ => Err(format!("not a positive rate: {r:?}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if rates.is_empty() {
        return Err("no rates given".into());
    }
    Ok(rates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_spread_evenly_over_the_step() {
        let step = StepPlan::new(1, 500.0, Duration::from_secs(10), false);
        assert_eq!(step.messages, 5000);
        assert_eq!(step.due(0), Duration::ZERO);
        assert_eq!(step.due(1), Duration::from_millis(2));
        assert_eq!(step.due(250), Duration::from_millis(500));
        assert_eq!(step.duration(), Duration::from_secs(10));
    }

    #[test]
    fn due_by_counts_every_message_whose_time_has_come() {
        let step = StepPlan::new(1, 1000.0, Duration::from_secs(1), false);
        assert_eq!(step.due_by(Duration::ZERO), 1);
        assert_eq!(step.due_by(Duration::from_micros(999)), 1);
        assert_eq!(step.due_by(Duration::from_millis(1)), 2);
        assert_eq!(step.due_by(Duration::from_millis(10)), 11);
        assert_eq!(step.due_by(Duration::from_secs(5)), 1000, "never more than the step has");
    }

    #[test]
    fn a_run_is_a_warm_up_then_the_rates_in_order() {
        let steps = plan(&[100.0, 250.5], Duration::from_secs(10), Duration::from_secs(2));
        assert_eq!(steps.len(), 3);
        assert!(steps[0].warmup);
        assert_eq!((steps[0].rate, steps[0].messages), (100.0, 200));
        assert_eq!((steps[2].index, steps[2].messages, steps[2].warmup), (2, 2505, false));
        let no_warmup = plan(&[100.0], Duration::from_secs(1), Duration::ZERO);
        assert_eq!(no_warmup.len(), 1);
        assert_eq!(no_warmup[0].index, 0);
    }

    #[test]
    fn rates_are_parsed_and_checked() {
        assert_eq!(parse_rates("100, 500,1000").unwrap(), vec![100.0, 500.0, 1000.0]);
        assert!(parse_rates("100,0").is_err());
        assert!(parse_rates("fast").is_err());
        assert!(parse_rates("").is_err());
    }
}
