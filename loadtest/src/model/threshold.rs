//! Thresholds in k6's syntax: `p(95)<200`, `avg<=50`, `rate<0.01`, `count>0`, `max<1000`.
//!
//! A threshold is an aggregation of one metric, a comparison and a number. Which aggregations
//! make sense depends on the metric's kind (a trend has percentiles, a rate has a ratio, a
//! counter a count and a per-second rate), so evaluation takes an [`Aggregates`] view of the
//! metric and refuses an aggregation the metric cannot answer rather than guessing.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// What a threshold reads from its metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregation {
    /// `p(N)`: the N-th percentile (0 < N ≤ 100) of a trend.
    Percentile(f64),
    /// `avg`, `min`, `max`, `med` of a trend.
    Avg,
    Min,
    Max,
    Med,
    /// `rate`: successes over all for a rate metric; events per second for a counter.
    Rate,
    /// `count`: events of a counter (or samples of a trend).
    Count,
    /// `value`: the last value of a gauge.
    Value,
}

/// The comparison of a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
    NotEqual,
}

/// One parsed threshold, e.g. `p(95)<200`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub aggregation: Aggregation,
    pub comparison: Comparison,
    pub bound: f64,
    /// Stop the whole test as soon as this threshold is crossed (k6's `abortOnFail`).
    pub abort_on_fail: bool,
    /// The text as written, for the summary.
    pub source: String,
}

/// Why a threshold could not be read or evaluated.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ThresholdError {
    #[error("threshold '{0}': expected <aggregation><operator><number>, e.g. p(95)<200")]
    Syntax(String),
    #[error("threshold '{text}': unknown aggregation '{aggregation}' (p(N), avg, min, max, med, rate, count, value)")]
    UnknownAggregation { text: String, aggregation: String },
    #[error("threshold '{0}': a percentile must be above 0 and at most 100")]
    Percentile(String),
    #[error("threshold '{0}': this metric has no such aggregation")]
    NotApplicable(String),
}

/// What a metric can answer; `None` where its kind has no such aggregation.
pub trait Aggregates {
    fn aggregate(&self, aggregation: Aggregation) -> Option<f64>;
}

impl Threshold {
    /// Whether the metric satisfies the threshold.
    pub fn passes(&self, metric: &dyn Aggregates) -> Result<bool, ThresholdError> {
        let value =
            metric.aggregate(self.aggregation).ok_or_else(|| ThresholdError::NotApplicable(self.source.clone()))?;
        Ok(self.comparison.holds(value, self.bound))
    }
}

impl Comparison {
    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Self::Less => value < bound,
            Self::LessOrEqual => value <= bound,
            Self::Greater => value > bound,
            Self::GreaterOrEqual => value >= bound,
            Self::Equal => value == bound,
            Self::NotEqual => value != bound,
        }
    }

    /// Splits `text` at its operator: (left, operator, right). Two-character operators are
    /// tried first so `<=` is not read as `<`.
    fn split(text: &str) -> Option<(&str, Self, &str)> {
        const OPERATORS: [(&str, Comparison); 6] = [
            ("<=", Comparison::LessOrEqual),
            (">=", Comparison::GreaterOrEqual),
            ("==", Comparison::Equal),
            ("!=", Comparison::NotEqual),
            ("<", Comparison::Less),
            (">", Comparison::Greater),
        ];
        OPERATORS.iter().find_map(|(symbol, comparison)| {
            text.find(symbol).map(|at| (&text[..at], *comparison, &text[at + symbol.len()..]))
        })
    }
}

impl FromStr for Threshold {
    type Err = ThresholdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let syntax = || ThresholdError::Syntax(text.to_owned());
        let (left, comparison, right) = Comparison::split(&compact).ok_or_else(syntax)?;
        let bound: f64 = right.parse().map_err(|_| syntax())?;
        if !bound.is_finite() {
            return Err(syntax());
        }
        let aggregation = parse_aggregation(left, text)?;
        Ok(Self { aggregation, comparison, bound, abort_on_fail: false, source: text.trim().to_owned() })
    }
}

fn parse_aggregation(left: &str, text: &str) -> Result<Aggregation, ThresholdError> {
    Ok(match left {
        "avg" => Aggregation::Avg,
        "min" => Aggregation::Min,
        "max" => Aggregation::Max,
        "med" => Aggregation::Med,
        "rate" => Aggregation::Rate,
        "count" => Aggregation::Count,
        "value" => Aggregation::Value,
        _ => {
            let inner = left.strip_prefix("p(").and_then(|rest| rest.strip_suffix(')')).ok_or_else(|| {
                ThresholdError::UnknownAggregation { text: text.to_owned(), aggregation: left.to_owned() }
            })?;
            let percentile: f64 = inner.parse().map_err(|_| ThresholdError::Syntax(text.to_owned()))?;
            if !(percentile > 0.0 && percentile <= 100.0) {
                return Err(ThresholdError::Percentile(text.to_owned()));
            }
            Aggregation::Percentile(percentile)
        }
    })
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trend of 1..=100 ms, a 2 % failure rate and a counter of 50 over 10 s.
    struct Fixture;

    impl Aggregates for Fixture {
        fn aggregate(&self, aggregation: Aggregation) -> Option<f64> {
            match aggregation {
                Aggregation::Percentile(p) => Some(p),
                Aggregation::Avg => Some(50.5),
                Aggregation::Min => Some(1.0),
                Aggregation::Max => Some(100.0),
                Aggregation::Med => Some(50.0),
                Aggregation::Rate => Some(0.02),
                Aggregation::Count => Some(50.0),
                Aggregation::Value => None,
            }
        }
    }

    fn passes(text: &str) -> bool {
        text.parse::<Threshold>().unwrap().passes(&Fixture).unwrap()
    }

    #[test]
    fn k6_expressions_parse() {
        let threshold: Threshold = "p(99.9) <= 250".parse().unwrap();
        assert_eq!(threshold.aggregation, Aggregation::Percentile(99.9));
        assert_eq!(threshold.comparison, Comparison::LessOrEqual);
        assert_eq!(threshold.bound, 250.0);
        assert_eq!(threshold.to_string(), "p(99.9) <= 250");
        for text in ["avg<1", "min>=0", "max!=3", "med==2", "rate<0.01", "count>0", "value>1e3"] {
            assert!(text.parse::<Threshold>().is_ok(), "{text}");
        }
    }

    #[test]
    fn evaluation_compares_the_aggregate_with_the_bound() {
        assert!(passes("p(95)<200"));
        assert!(!passes("p(95)<90"));
        assert!(passes("avg<=50.5") && !passes("avg<50.5"));
        assert!(passes("rate<0.05") && !passes("rate<0.01"));
        assert!(passes("count>0") && !passes("count>50"));
        assert!(passes("min>=1") && passes("max==100") && passes("med!=0"));
    }

    #[test]
    fn malformed_thresholds_are_refused_with_the_reason() {
        assert!(matches!("p95<200".parse::<Threshold>(), Err(ThresholdError::UnknownAggregation { .. })));
        assert!(matches!("p(0)<200".parse::<Threshold>(), Err(ThresholdError::Percentile(_))));
        assert!(matches!("p(101)<200".parse::<Threshold>(), Err(ThresholdError::Percentile(_))));
        assert!(matches!("avg 200".parse::<Threshold>(), Err(ThresholdError::Syntax(_))));
        assert!(matches!("avg<fast".parse::<Threshold>(), Err(ThresholdError::Syntax(_))));
        assert!(matches!("avg<inf".parse::<Threshold>(), Err(ThresholdError::Syntax(_))));
        assert!(matches!("".parse::<Threshold>(), Err(ThresholdError::Syntax(_))));
    }

    #[test]
    fn an_aggregation_the_metric_lacks_is_an_error_not_a_pass() {
        let threshold: Threshold = "value>0".parse().unwrap();
        assert_eq!(threshold.passes(&Fixture), Err(ThresholdError::NotApplicable("value>0".into())));
    }
}
