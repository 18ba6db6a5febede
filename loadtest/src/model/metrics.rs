//! The harness's metrics, in k6's four kinds: trends (HDR histograms, microseconds in,
//! milliseconds out), counters, rates (a share of true samples) and gauges. Each answers the
//! threshold aggregations its kind has (see [`Aggregates`]); the others are refused.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::threshold::{Aggregates, Aggregation};

/// Highest trend value recorded: one hour, in microseconds (longer values are clamped).
const TREND_MAX_MICROS: u64 = 3_600_000_000;

/// The gauge [`Metrics::merge`] averages instead of adding.
const PER_CONNECTION_GAUGE: &str = "harness_rss_per_connection_kib";

/// One metric of a run.
#[derive(Debug, Clone)]
pub enum Metric {
    Trend(Trend),
    Counter(Counter),
    Rate(Rate),
    Gauge(Gauge),
}

/// Durations, with percentiles.
#[derive(Debug, Clone)]
pub struct Trend {
    histogram: Histogram<u64>,
}

/// Events counted over the run.
#[derive(Debug, Clone, Default)]
pub struct Counter {
    pub count: u64,
    /// How long the run lasted, for the per-second rate.
    pub elapsed: Duration,
}

/// Samples that are true or false (checks, failures).
#[derive(Debug, Clone, Default)]
pub struct Rate {
    pub passes: u64,
    pub fails: u64,
}

/// A value sampled over time; the last one counts.
#[derive(Debug, Clone, Default)]
pub struct Gauge {
    pub value: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for Trend {
    fn default() -> Self {
        // Three significant digits over 1 µs .. 1 h: a few tens of KiB per trend. The bounds
        // are constants that satisfy the library's rules, so this cannot fail.
        let histogram = Histogram::new_with_bounds(1, TREND_MAX_MICROS, 3).expect("valid constant HDR bounds");
        Self { histogram }
    }
}

impl Trend {
    pub fn record(&mut self, value: Duration) {
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX).clamp(1, TREND_MAX_MICROS);
        self.histogram.saturating_record(micros);
    }

    /// Adds another trend's samples (e.g. one per worker).
    pub fn merge(&mut self, other: &Trend) {
        // Same bounds on both sides, so adding cannot fail; a failure would only lose samples.
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The samples recorded since `earlier`, an older copy of this trend (all of this trend's
    /// when `earlier` is not one: the run restarted, as between step-up steps).
    pub fn since(&self, earlier: &Trend) -> Trend {
        let mut interval = self.clone();
        if interval.histogram.subtract(&earlier.histogram).is_err() {
            interval = self.clone();
        }
        interval
    }

    /// The histogram, for serialising it exactly (see [`super::wire`]).
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }

    /// A trend holding `histogram`'s samples, re-bounded to the trend's range; `None` when
    /// the samples do not fit (a histogram that did not come from a trend).
    pub fn from_histogram(histogram: &Histogram<u64>) -> Option<Self> {
        let mut trend = Self::default();
        trend.histogram.add(histogram).ok()?;
        Some(trend)
    }

    /// The `percentile`-th value in milliseconds (0 with no samples).
    pub fn percentile_ms(&self, percentile: f64) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        micros_to_ms(self.histogram.value_at_quantile(percentile / 100.0))
    }
}

fn micros_to_ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Rate {
    pub fn add(&mut self, passed: bool) {
        if passed {
            self.passes += 1;
        } else {
            self.fails += 1;
        }
    }

    /// Share of true samples (0 with none).
    pub fn ratio(&self) -> f64 {
        let total = self.passes + self.fails;
        if total == 0 {
            0.0
        } else {
            self.passes as f64 / total as f64
        }
    }
}

impl Counter {
    pub fn per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.count as f64 / seconds
        } else {
            0.0
        }
    }
}

impl Gauge {
    pub fn set(&mut self, value: f64) {
        if self.min == 0.0 && self.max == 0.0 && self.value == 0.0 {
            (self.min, self.max) = (value, value);
        }
        self.value = value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }
}

impl Aggregates for Metric {
    fn aggregate(&self, aggregation: Aggregation) -> Option<f64> {
        match self {
            Self::Trend(trend) => trend.aggregate(aggregation),
            Self::Counter(counter) => match aggregation {
                Aggregation::Count => Some(counter.count as f64),
                Aggregation::Rate => Some(counter.per_second()),
                _ => None,
            },
            Self::Rate(rate) => match aggregation {
                Aggregation::Rate => Some(rate.ratio()),
                _ => None,
            },
            Self::Gauge(gauge) => match aggregation {
                Aggregation::Value => Some(gauge.value),
                Aggregation::Min => Some(gauge.min),
                Aggregation::Max => Some(gauge.max),
                _ => None,
            },
        }
    }
}

impl Aggregates for Trend {
    fn aggregate(&self, aggregation: Aggregation) -> Option<f64> {
        let histogram = &self.histogram;
        let empty = histogram.is_empty();
        Some(match aggregation {
            Aggregation::Percentile(p) => self.percentile_ms(p),
            Aggregation::Med => self.percentile_ms(50.0),
            Aggregation::Avg if empty => 0.0,
            Aggregation::Avg => histogram.mean() / 1000.0,
            Aggregation::Min if empty => 0.0,
            Aggregation::Min => micros_to_ms(histogram.min()),
            Aggregation::Max => micros_to_ms(histogram.max()),
            Aggregation::Count => histogram.len() as f64,
            Aggregation::Rate | Aggregation::Value => return None,
        })
    }
}

/// Every metric of a run by name, in name order (the summary's order).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub by_name: BTreeMap<String, Metric>,
}

impl Metrics {
    /// The trend called `name`, created on first use (replacing a metric of another kind).
    pub fn trend(&mut self, name: &str) -> &mut Trend {
        self.of_kind(
            name,
            || Metric::Trend(Trend::default()),
            |m| match m {
                Metric::Trend(t) => Some(t),
                _ => None,
            },
        )
    }

    /// The counter called `name`, created on first use.
    pub fn counter(&mut self, name: &str) -> &mut Counter {
        self.of_kind(
            name,
            || Metric::Counter(Counter::default()),
            |m| match m {
                Metric::Counter(c) => Some(c),
                _ => None,
            },
        )
    }

    /// The rate called `name`, created on first use.
    pub fn rate(&mut self, name: &str) -> &mut Rate {
        self.of_kind(
            name,
            || Metric::Rate(Rate::default()),
            |m| match m {
                Metric::Rate(r) => Some(r),
                _ => None,
            },
        )
    }

    /// The gauge called `name`, created on first use.
    pub fn gauge(&mut self, name: &str) -> &mut Gauge {
        self.of_kind(
            name,
            || Metric::Gauge(Gauge::default()),
            |m| match m {
                Metric::Gauge(g) => Some(g),
                _ => None,
            },
        )
    }

    /// Sets how long the run lasted on every counter, for their per-second rates.
    pub fn finish(&mut self, elapsed: Duration) {
        for metric in self.by_name.values_mut() {
            if let Metric::Counter(counter) = metric {
                counter.elapsed = elapsed;
            }
        }
    }

    /// Adds `other`'s samples to these, metric by metric, as the figures of one run spread
    /// over several processes: trends merge their histograms exactly, counters and rates add
    /// up (a counter's run length is the longer of the two), gauges add value, min and max
    /// (the VUs, connections and memory of the processes together). The exception is
    /// `harness_rss_per_connection_kib`, a ratio: the merged figure is the mean of both
    /// weighted by their `connections_open`. A metric of another kind under the same name is
    /// replaced, as [`Metrics::trend`] and its siblings do.
    pub fn merge(&mut self, other: &Metrics) {
        let open = |m: &Metrics| match m.by_name.get("connections_open") {
            Some(Metric::Gauge(g)) => g.value.max(0.0),
            _ => 0.0,
        };
        let (open_here, open_there) = (open(self), open(other));
        for (name, metric) in &other.by_name {
            match metric {
                Metric::Trend(t) => self.trend(name).merge(t),
                Metric::Counter(c) => {
                    let mine = self.counter(name);
                    mine.count += c.count;
                    mine.elapsed = mine.elapsed.max(c.elapsed);
                }
                Metric::Rate(r) => {
                    let mine = self.rate(name);
                    mine.passes += r.passes;
                    mine.fails += r.fails;
                }
                Metric::Gauge(g) if name == PER_CONNECTION_GAUGE => {
                    let fresh = !self.by_name.contains_key(name);
                    let mine = self.gauge(name);
                    let weights = open_here + open_there;
                    if fresh || weights == 0.0 {
                        *mine = g.clone();
                    } else {
                        let mean = (mine.value * open_here + g.value * open_there) / weights;
                        mine.value = (mean * 100.0).round() / 100.0;
                        mine.min = mine.min.min(g.min);
                        mine.max = mine.max.max(g.max);
                    }
                }
                Metric::Gauge(g) => {
                    let fresh = !self.by_name.contains_key(name);
                    let mine = self.gauge(name);
                    if fresh {
                        *mine = g.clone();
                    } else {
                        mine.value += g.value;
                        mine.min += g.min;
                        mine.max += g.max;
                    }
                }
            }
        }
    }

    fn of_kind<T>(&mut self, name: &str, make: fn() -> Metric, pick: fn(&mut Metric) -> Option<&mut T>) -> &mut T {
        let metric = self.by_name.entry(name.to_owned()).or_insert_with(make);
        if pick(metric).is_none() {
            *metric = make();
        }
        match pick(metric) {
            Some(value) => value,
            None => unreachable!("the metric was just made of this kind"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trend_reports_milliseconds_with_three_significant_digits() {
        let mut trend = Trend::default();
        for ms in 1..=100u64 {
            trend.record(Duration::from_millis(ms));
        }
        let p95 = trend.aggregate(Aggregation::Percentile(95.0)).unwrap();
        assert!((p95 - 95.0).abs() < 0.1, "{p95}");
        assert!((trend.aggregate(Aggregation::Avg).unwrap() - 50.5).abs() < 0.1);
        assert_eq!(trend.aggregate(Aggregation::Count), Some(100.0));
        assert!((trend.aggregate(Aggregation::Max).unwrap() - 100.0).abs() < 0.1);
        assert_eq!(trend.aggregate(Aggregation::Rate), None);
    }

    #[test]
    fn merged_trends_hold_both_sets_of_samples() {
        let (mut a, mut b) = (Trend::default(), Trend::default());
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(3));
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert!((a.aggregate(Aggregation::Max).unwrap() - 3.0).abs() < 0.01);
    }

    #[test]
    fn merged_metrics_add_counters_rates_and_gauges_and_average_memory_per_connection() {
        let worker = |count: u64, secs: u64, open: f64, per: f64| {
            let mut m = Metrics::default();
            m.counter("iterations").count = count;
            m.counter("iterations").elapsed = Duration::from_secs(secs);
            m.rate("connections_failed").add(false);
            m.gauge("connections_open").set(open);
            m.gauge(PER_CONNECTION_GAUGE).set(per);
            m.trend("delivery_latency").record(Duration::from_millis(count));
            m
        };
        let mut merged = worker(10, 3, 100.0, 10.0);
        merged.merge(&worker(30, 4, 300.0, 20.0));
        let read = |name: &str, a| merged.by_name[name].aggregate(a).unwrap();
        assert_eq!(read("iterations", Aggregation::Count), 40.0);
        assert_eq!(read("iterations", Aggregation::Rate), 10.0, "40 over the longer 4 s");
        assert_eq!(read("connections_failed", Aggregation::Rate), 0.0);
        assert_eq!(read("connections_open", Aggregation::Value), 400.0);
        assert_eq!(read(PER_CONNECTION_GAUGE, Aggregation::Value), 17.5, "weighted by connections");
        assert_eq!(read("delivery_latency", Aggregation::Count), 2.0);
        let mut empty = Metrics::default();
        empty.merge(&merged);
        assert_eq!(empty.by_name["connections_open"].aggregate(Aggregation::Value), Some(400.0));
    }

    #[test]
    fn the_samples_since_an_earlier_copy_are_the_difference() {
        let mut trend = Trend::default();
        trend.record(Duration::from_millis(1));
        let earlier = trend.clone();
        trend.record(Duration::from_millis(50));
        let interval = trend.since(&earlier);
        assert_eq!(interval.count(), 1);
        assert!((interval.aggregate(Aggregation::Min).unwrap() - 50.0).abs() < 0.1, "only the later sample");
        let restarted = Trend::default().since(&earlier);
        assert_eq!(restarted.count(), 0, "a younger trend is its own interval");
    }

    #[test]
    fn an_empty_trend_reports_zero_not_garbage() {
        let trend = Trend::default();
        assert_eq!(trend.aggregate(Aggregation::Avg), Some(0.0));
        assert_eq!(trend.aggregate(Aggregation::Min), Some(0.0));
        assert_eq!(trend.aggregate(Aggregation::Percentile(99.0)), Some(0.0));
    }

    #[test]
    fn rates_counters_and_gauges_answer_their_own_aggregations() {
        let mut rate = Rate::default();
        [true, true, true, false].into_iter().for_each(|p| rate.add(p));
        assert_eq!(Metric::Rate(rate).aggregate(Aggregation::Rate), Some(0.75));
        let counter = Metric::Counter(Counter { count: 50, elapsed: Duration::from_secs(10) });
        assert_eq!(counter.aggregate(Aggregation::Rate), Some(5.0));
        assert_eq!(counter.aggregate(Aggregation::Count), Some(50.0));
        assert_eq!(counter.aggregate(Aggregation::Percentile(50.0)), None);
        let mut gauge = Gauge::default();
        [3.0, 9.0, 4.0].into_iter().for_each(|v| gauge.set(v));
        let gauge = Metric::Gauge(gauge);
        assert_eq!(gauge.aggregate(Aggregation::Value), Some(4.0));
        assert_eq!((gauge.aggregate(Aggregation::Min), gauge.aggregate(Aggregation::Max)), (Some(3.0), Some(9.0)));
    }
}
