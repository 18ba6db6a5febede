//! The end-of-test summary in k6's layout, its JSON export (`--summary-export`), and the
//! verdict of the thresholds (which decides the exit code).
//!
//! ```text
//!      ✓ delivery_latency...: avg=1.21ms min=410µs med=1.02ms max=9.8ms p(90)=2.1ms p(95)=3ms p(99)=8ms
//!      ✗ checks.............: 98.50% ✓ 985 ✗ 15
//!        messages_received..: 1000   99.9/s
//! ```
//!
//! A metric with thresholds is marked ✓ when all of them hold and ✗ otherwise; metrics without
//! thresholds get no mark, as in k6.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{json, Value};

use super::metrics::{Metric, Metrics};
use super::threshold::{Aggregates, Aggregation, Threshold};

/// The percentiles shown for trends (k6's default `summaryTrendStats` plus p(99)).
const TREND_PERCENTILES: [f64; 3] = [90.0, 95.0, 99.0];
/// Width of the dotted name column.
const NAME_WIDTH: usize = 32;

/// One threshold's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub metric: String,
    pub threshold: String,
    /// `None` when the metric is missing or cannot answer the aggregation (counts as failed).
    pub ok: Option<bool>,
    pub abort_on_fail: bool,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.ok == Some(true)
    }
}

/// Evaluates every threshold against the run's metrics. A threshold on a metric the run did
/// not produce fails: a typo must not pass silently.
pub fn judge(metrics: &Metrics, thresholds: &BTreeMap<String, Vec<Threshold>>) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    for (metric, list) in thresholds {
        for threshold in list {
            let ok = metrics.by_name.get(metric).and_then(|m| threshold.passes(m).ok());
            verdicts.push(Verdict {
                metric: metric.clone(),
                threshold: threshold.source.clone(),
                ok,
                abort_on_fail: threshold.abort_on_fail,
            });
        }
    }
    verdicts
}

/// Whether every threshold held.
pub fn all_passed(verdicts: &[Verdict]) -> bool {
    verdicts.iter().all(Verdict::passed)
}

/// The summary text, one line per metric in name order.
pub fn render(metrics: &Metrics, verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    for (name, metric) in &metrics.by_name {
        let judged: Vec<&Verdict> = verdicts.iter().filter(|v| &v.metric == name).collect();
        let mark = match judged.is_empty() {
            true => ' ',
            false if judged.iter().all(|v| v.passed()) => '✓',
            false => '✗',
        };
        let dots = ".".repeat(NAME_WIDTH.saturating_sub(name.chars().count()));
        let _ = writeln!(out, "     {mark} {name}{dots}: {}", values(metric));
    }
    for verdict in verdicts.iter().filter(|v| !metrics.by_name.contains_key(&v.metric)) {
        let _ =
            writeln!(out, "     ✗ {}: no such metric in this run (threshold {})", verdict.metric, verdict.threshold);
    }
    out
}

fn values(metric: &Metric) -> String {
    match metric {
        Metric::Trend(trend) => {
            let ms = |a| format_ms(trend.aggregate(a).unwrap_or(0.0));
            let mut text = format!(
                "avg={} min={} med={} max={}",
                ms(Aggregation::Avg),
                ms(Aggregation::Min),
                ms(Aggregation::Med),
                ms(Aggregation::Max)
            );
            for p in TREND_PERCENTILES {
                let _ = write!(text, " p({p})={}", ms(Aggregation::Percentile(p)));
            }
            text
        }
        Metric::Counter(counter) => format!("{:<6} {:.1}/s", counter.count, counter.per_second()),
        Metric::Rate(rate) => format!("{:.2}% ✓ {} ✗ {}", rate.ratio() * 100.0, rate.passes, rate.fails),
        Metric::Gauge(gauge) => format!("{} min={} max={}", gauge.value, gauge.min, gauge.max),
    }
}

/// `1.21ms`, `980µs`, `2.5s`: k6's way of printing durations.
fn format_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0}µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{}ms", trim(ms))
    } else {
        format!("{}s", trim(ms / 1000.0))
    }
}

/// At most two decimals, without trailing zeros.
fn trim(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The JSON export: per metric its type, values and thresholds (`{"<expr>": {"ok": bool}}`).
pub fn export(metrics: &Metrics, verdicts: &[Verdict]) -> Value {
    let mut out = serde_json::Map::new();
    for (name, metric) in &metrics.by_name {
        let mut entry = exported_values(metric);
        let thresholds: serde_json::Map<String, Value> = verdicts
            .iter()
            .filter(|v| &v.metric == name)
            .map(|v| (v.threshold.clone(), json!({ "ok": v.passed() })))
            .collect();
        if !thresholds.is_empty() {
            entry["thresholds"] = Value::Object(thresholds);
        }
        out.insert(name.clone(), entry);
    }
    json!({ "metrics": out, "thresholdsPassed": all_passed(verdicts) })
}

fn exported_values(metric: &Metric) -> Value {
    match metric {
        Metric::Trend(trend) => {
            let get = |a| trend.aggregate(a).unwrap_or(0.0);
            let mut values = json!({
                "avg": get(Aggregation::Avg), "min": get(Aggregation::Min), "med": get(Aggregation::Med),
                "max": get(Aggregation::Max), "count": trend.count(),
            });
            for p in TREND_PERCENTILES {
                values[format!("p({p})")] = json!(get(Aggregation::Percentile(p)));
            }
            json!({ "type": "trend", "unit": "ms", "values": values })
        }
        Metric::Counter(c) => json!({ "type": "counter", "values": { "count": c.count, "rate": c.per_second() } }),
        Metric::Rate(r) => {
            json!({ "type": "rate", "values": { "rate": r.ratio(), "passes": r.passes, "fails": r.fails } })
        }
        Metric::Gauge(g) => json!({ "type": "gauge", "values": { "value": g.value, "min": g.min, "max": g.max } }),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::metrics::{Counter, Rate};

    fn run() -> Metrics {
        let mut metrics = Metrics::default();
        let latency = metrics.trend("delivery_latency");
        for ms in 1..=100u64 {
            latency.record(Duration::from_millis(ms));
        }
        let mut checks = Rate::default();
        (0..985).for_each(|_| checks.add(true));
        (0..15).for_each(|_| checks.add(false));
        metrics.by_name.insert("checks".into(), Metric::Rate(checks));
        let received = Counter { count: 1000, elapsed: Duration::from_secs(10) };
        metrics.by_name.insert("messages_received".into(), Metric::Counter(received));
        metrics
    }

    fn thresholds(entries: &[(&str, &str)]) -> BTreeMap<String, Vec<Threshold>> {
        let mut map: BTreeMap<String, Vec<Threshold>> = BTreeMap::new();
        for (metric, text) in entries {
            map.entry((*metric).into()).or_default().push(text.parse().unwrap());
        }
        map
    }

    #[test]
    fn thresholds_are_judged_and_a_missing_metric_fails() {
        let verdicts = judge(
            &run(),
            &thresholds(&[
                ("delivery_latency", "p(95)<200"),
                ("checks", "rate>0.99"),
                ("messages_received", "count>0"),
                ("typo_latency", "p(95)<200"),
            ]),
        );
        let passed: Vec<(&str, bool)> = verdicts.iter().map(|v| (v.metric.as_str(), v.passed())).collect();
        assert_eq!(
            passed,
            [("checks", false), ("delivery_latency", true), ("messages_received", true), ("typo_latency", false)]
        );
        assert!(!all_passed(&verdicts));
    }

    #[test]
    fn the_text_summary_follows_k6s_layout() {
        let metrics = run();
        let verdicts = judge(&metrics, &thresholds(&[("delivery_latency", "p(95)<200"), ("checks", "rate>0.99")]));
        let text = render(&metrics, &verdicts);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("     ✗ checks....") && lines[0].ends_with(": 98.50% ✓ 985 ✗ 15"), "{text}");
        assert!(lines[1].starts_with("     ✓ delivery_latency....") && lines[1].contains(" p(95)=95.0"), "{text}");
        assert!(lines[2].starts_with("       messages_received....") && lines[2].ends_with("1000   100.0/s"), "{text}");
    }

    #[test]
    fn the_json_export_carries_values_and_threshold_outcomes() {
        let metrics = run();
        let verdicts = judge(&metrics, &thresholds(&[("delivery_latency", "p(95)<200")]));
        let exported = export(&metrics, &verdicts);
        let latency = &exported["metrics"]["delivery_latency"];
        assert_eq!(latency["type"], "trend");
        assert_eq!(latency["values"]["count"], 100);
        assert_eq!(latency["thresholds"]["p(95)<200"]["ok"], true);
        assert_eq!(exported["metrics"]["checks"]["values"]["fails"], 15);
        assert_eq!(exported["thresholdsPassed"], true);
    }

    #[test]
    fn durations_print_like_k6() {
        assert_eq!(format_ms(0.98), "980µs");
        assert_eq!(format_ms(1.2), "1.2ms");
        assert_eq!(format_ms(95.0), "95ms");
        assert_eq!(format_ms(2500.0), "2.5s");
    }
}
