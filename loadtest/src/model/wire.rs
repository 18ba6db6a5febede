//! [`Metrics`] as JSON, exactly: what a worker process sends its parent (`loadtest run
//! --workers`), so the parent merges every worker's samples as if one process had taken them.
//!
//! A trend travels as its HDR histogram in the V2 binary layout (HdrHistogram's portable
//! format, bucket counts run-length and varint encoded, a few KiB) in base64; the parent adds
//! the decoded histograms, so percentiles of the merged run are as exact as a single
//! process's. Counters, rates and gauges travel as their numbers.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::metrics::{Counter, Gauge, Metric, Metrics, Rate, Trend};

/// One metric on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum WireMetric {
    /// A V2-serialised HDR histogram, base64 (standard alphabet, padded).
    Trend {
        hdr: String,
    },
    Counter {
        count: u64,
        elapsed_us: u64,
    },
    Rate {
        passes: u64,
        fails: u64,
    },
    Gauge {
        value: f64,
        min: f64,
        max: f64,
    },
}

/// Every metric of a run by name, on the wire.
pub type WireMetrics = BTreeMap<String, WireMetric>;

/// Why a snapshot could not be read back.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("metric {metric}: {reason}")]
    Trend { metric: String, reason: String },
}

/// The wire form of `metrics`.
pub fn encode(metrics: &Metrics) -> WireMetrics {
    metrics.by_name.iter().map(|(name, metric)| (name.clone(), encode_metric(metric))).collect()
}

fn encode_metric(metric: &Metric) -> WireMetric {
    match metric {
        Metric::Trend(trend) => {
            let mut bytes = Vec::new();
            // Writing into a Vec fails only for a histogram the V2 format cannot hold, which
            // a trend's fixed bounds rule out; an empty histogram is the safe fallback.
            if V2Serializer::new().serialize(trend.histogram(), &mut bytes).is_err() {
                bytes.clear();
            }
            WireMetric::Trend { hdr: base64::engine::general_purpose::STANDARD.encode(bytes) }
        }
        Metric::Counter(c) => {
            WireMetric::Counter { count: c.count, elapsed_us: u64::try_from(c.elapsed.as_micros()).unwrap_or(u64::MAX) }
        }
        Metric::Rate(r) => WireMetric::Rate { passes: r.passes, fails: r.fails },
        Metric::Gauge(g) => WireMetric::Gauge { value: g.value, min: g.min, max: g.max },
    }
}

/// The metrics `wire` carries.
pub fn decode(wire: &WireMetrics) -> Result<Metrics, WireError> {
    let mut metrics = Metrics::default();
    for (name, metric) in wire {
        let metric = match metric {
            WireMetric::Trend { hdr } => {
                Metric::Trend(decode_trend(hdr).map_err(|reason| WireError::Trend { metric: name.clone(), reason })?)
            }
            WireMetric::Counter { count, elapsed_us } => {
                Metric::Counter(Counter { count: *count, elapsed: Duration::from_micros(*elapsed_us) })
            }
            WireMetric::Rate { passes, fails } => Metric::Rate(Rate { passes: *passes, fails: *fails }),
            WireMetric::Gauge { value, min, max } => Metric::Gauge(Gauge { value: *value, min: *min, max: *max }),
        };
        metrics.by_name.insert(name.clone(), metric);
    }
    Ok(metrics)
}

fn decode_trend(hdr: &str) -> Result<Trend, String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(hdr).map_err(|e| format!("base64: {e}"))?;
    if bytes.is_empty() {
        return Ok(Trend::default());
    }
    let histogram: hdrhistogram::Histogram<u64> =
        Deserializer::new().deserialize(&mut bytes.as_slice()).map_err(|e| format!("HDR V2: {e:?}"))?;
    Trend::from_histogram(&histogram).ok_or_else(|| "samples outside a trend's range".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::threshold::{Aggregates, Aggregation};

    fn sample() -> Metrics {
        let mut metrics = Metrics::default();
        let latency = metrics.trend("delivery_latency");
        for micros in (1..=10_000u64).map(|i| i * 37) {
            latency.record(Duration::from_micros(micros));
        }
        metrics.counter("iterations").count = 42;
        metrics.counter("iterations").elapsed = Duration::from_millis(1500);
        metrics.rate("checks").add(true);
        metrics.rate("checks").add(false);
        metrics.gauge("vus").set(7.0);
        metrics
    }

    #[test]
    fn a_snapshot_reads_back_to_the_same_figures_through_json() {
        let metrics = sample();
        let text = serde_json::to_string(&encode(&metrics)).unwrap();
        let back = decode(&serde_json::from_str(&text).unwrap()).unwrap();
        for (name, metric) in &metrics.by_name {
            for aggregation in [
                Aggregation::Count,
                Aggregation::Rate,
                Aggregation::Value,
                Aggregation::Percentile(99.9),
                Aggregation::Min,
                Aggregation::Max,
                Aggregation::Avg,
            ] {
                assert_eq!(back.by_name[name].aggregate(aggregation), metric.aggregate(aggregation), "{name}");
            }
        }
        assert!(text.len() < 64 * 1024, "a snapshot stays small: {} bytes", text.len());
    }

    #[test]
    fn histograms_merged_after_the_wire_equal_one_histogram_of_all_samples() {
        let (mut a, mut b, mut whole) = (Trend::default(), Trend::default(), Trend::default());
        for i in 1..=5_000u64 {
            let value = Duration::from_micros(i * i % 900_000 + 1);
            if i % 3 == 0 { &mut a } else { &mut b }.record(value);
            whole.record(value);
        }
        let through = |t: &Trend| {
            let mut m = Metrics::default();
            *m.trend("t") = t.clone();
            decode(&encode(&m)).unwrap()
        };
        let mut merged = through(&a);
        merged.merge(&through(&b));
        assert_eq!(merged.trend("t").histogram(), whole.histogram());
    }

    #[test]
    fn a_damaged_histogram_is_refused_with_the_metric_named() {
        let mut wire = WireMetrics::new();
        wire.insert("rtt".into(), WireMetric::Trend { hdr: "bm90IGFuIGhkcg==".into() });
        assert!(matches!(decode(&wire), Err(WireError::Trend { metric, .. }) if metric == "rtt"));
    }
}
