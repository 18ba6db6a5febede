//! The harness's own metrics in the Prometheus text format, so a long run can be watched
//! (and compared with the gateways' metrics) in the same Prometheus. Counters become
//! `loadtest_<name>_total`, gauges `loadtest_<name>`, rates a `_ratio` gauge, and trends a
//! summary in milliseconds with the 0.5, 0.9, 0.95 and 0.99 quantiles. The run's tags become
//! labels on every sample.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::metrics::{Metric, Metrics};
use super::threshold::{Aggregates, Aggregation};

const QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// Renders `metrics` with `tags` as labels.
pub fn render(metrics: &Metrics, tags: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (name, metric) in &metrics.by_name {
        let name = sanitize(name);
        match metric {
            Metric::Counter(counter) => {
                sample_block(&mut out, &format!("loadtest_{name}_total"), "counter", tags, counter.count as f64)
            }
            Metric::Gauge(gauge) => sample_block(&mut out, &format!("loadtest_{name}"), "gauge", tags, gauge.value),
            Metric::Rate(rate) => {
                sample_block(&mut out, &format!("loadtest_{name}_ratio"), "gauge", tags, rate.ratio())
            }
            Metric::Trend(trend) => {
                let full = format!("loadtest_{name}_ms");
                let _ = writeln!(out, "# TYPE {full} summary");
                for q in QUANTILES {
                    let value = trend.aggregate(Aggregation::Percentile(q * 100.0)).unwrap_or(0.0);
                    let _ = writeln!(out, "{full}{} {value}", labels(tags, Some(q)));
                }
                let sum = trend.aggregate(Aggregation::Avg).unwrap_or(0.0) * trend.count() as f64;
                let _ = writeln!(out, "{full}_sum{} {sum}", labels(tags, None));
                let _ = writeln!(out, "{full}_count{} {}", labels(tags, None), trend.count());
            }
        }
    }
    out
}

fn sample_block(out: &mut String, name: &str, kind: &str, tags: &BTreeMap<String, String>, value: f64) {
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name}{} {value}", labels(tags, None));
}

/// `{tag="value",quantile="0.5"}`, or nothing without labels.
fn labels(tags: &BTreeMap<String, String>, quantile: Option<f64>) -> String {
    let mut parts: Vec<String> = tags
        .iter()
        .map(|(k, v)| {
            format!("{}=\"{}\"", sanitize(k), v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
        })
        .collect();
    if let Some(q) = quantile {
        parts.push(format!("quantile=\"{q}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// Metric and label names may hold letters, digits and `_` only.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_kind_is_exposed_with_the_tags_as_labels() {
        let mut metrics = Metrics::default();
        metrics.counter("iterations").count = 7;
        metrics.gauge("vus").set(3.0);
        metrics.rate("checks").add(true);
        metrics.trend("delivery latency").record(Duration::from_millis(2));
        let tags = BTreeMap::from([("env".to_owned(), "ci \"one\"".to_owned())]);
        let text = render(&metrics, &tags);
        assert!(
            text.contains(
                "# TYPE loadtest_iterations_total counter\nloadtest_iterations_total{env=\"ci \\\"one\\\"\"} 7\n"
            ),
            "{text}"
        );
        assert!(text.contains("loadtest_vus{env=\"ci \\\"one\\\"\"} 3\n"), "{text}");
        assert!(text.contains("loadtest_checks_ratio{env=\"ci \\\"one\\\"\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE loadtest_delivery_latency_ms summary\n"), "{text}");
        assert!(text.contains("loadtest_delivery_latency_ms{env=\"ci \\\"one\\\"\",quantile=\"0.99\"} 2"), "{text}");
        assert!(text.contains("loadtest_delivery_latency_ms_count{env=\"ci \\\"one\\\"\"} 1\n"), "{text}");
    }

    #[test]
    fn without_tags_there_are_no_braces() {
        let mut metrics = Metrics::default();
        metrics.counter("errors").count = 0;
        assert_eq!(
            render(&metrics, &BTreeMap::new()),
            "# TYPE loadtest_errors_total counter\nloadtest_errors_total 0\n"
        );
    }
}
