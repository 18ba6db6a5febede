//! The HTML report: one file, every byte inline (CSS in a `<style>`, plots as SVG drawn here,
//! no script), so it opens anywhere without a network and can be mailed or archived as is.
//!
//! Layout: the verdict and exit code, the thresholds (✓/✗ each), four plots over time
//! (connections, deliveries/s, delivery latency p50/p95/p99 per second, errors/s), the
//! step-up table when there is one, and k6's text summary.

use std::fmt::Write;

use super::Sample;
use crate::model::summary::Verdict;

/// What the report shows.
#[derive(Debug)]
pub struct Report<'a> {
    /// The scenario's name and anything else for the heading (plain text).
    pub title: &'a str,
    pub samples: &'a [Sample],
    pub verdicts: &'a [Verdict],
    /// The step-up table (plain text), if the run was a step-up.
    pub steps: Option<&'a str>,
    /// k6's text summary (plain text).
    pub summary: &'a str,
    pub exit_code: i32,
}

/// Plot size in SVG user units, and its margins (left for the axis labels).
const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 30.0;

/// One line of a plot.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

/// The whole HTML document.
pub fn render(report: &Report<'_>) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let passed = report.exit_code == 0;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>loadtest: {title}</title>\n\
         <style>{STYLE}</style></head><body>\n<h1>loadtest: {title}</h1>\n\
         <p class=\"verdict {class}\">{verdict} (exit code {code})</p>\n",
        title = escape(report.title),
        class = if passed { "pass" } else { "fail" },
        verdict = if passed { "passed" } else { "failed" },
        code = report.exit_code,
    );
    out.push_str(&thresholds(report.verdicts));
    out.push_str("<h2>Over time</h2>\n");
    let at = |pick: fn(&Sample) -> f64| report.samples.iter().map(|s| (s.at_s, pick(s))).collect::<Vec<_>>();
    out.push_str(&plot(
        "connections",
        "Connections open",
        "",
        &[Series { name: "connections", color: "#1f6feb", points: at(|s| s.connections) }],
    ));
    out.push_str(&plot(
        "deliveries",
        "Deliveries per second",
        "/s",
        &[Series { name: "deliveries/s", color: "#2da44e", points: at(|s| s.deliveries_per_s) }],
    ));
    out.push_str(&plot(
        "latency",
        "Delivery latency per second",
        " ms",
        &[
            Series { name: "p(50)", color: "#2da44e", points: at(|s| s.p50_ms) },
            Series { name: "p(95)", color: "#bf8700", points: at(|s| s.p95_ms) },
            Series { name: "p(99)", color: "#cf222e", points: at(|s| s.p99_ms) },
        ],
    ));
    out.push_str(&plot(
        "errors",
        "Errors per second",
        "/s",
        &[Series { name: "errors/s", color: "#cf222e", points: at(|s| s.errors_per_s) }],
    ));
    if let Some(steps) = report.steps {
        let _ = write!(out, "<h2>Step-up</h2>\n<pre class=\"steps\">{}</pre>\n", escape(steps));
    }
    let _ = write!(out, "<h2>Summary</h2>\n<pre class=\"summary\">{}</pre>\n</body></html>\n", escape(report.summary));
    out
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:2em auto;max-width:820px;color:#1f2328}\
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}pre{background:#f6f8fa;padding:1em;overflow-x:auto;font-size:12px}\
.verdict{font-weight:bold;font-size:1.1em}.pass{color:#1a7f37}.fail{color:#cf222e}\
table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #d0d7de;text-align:left}\
svg{display:block;margin:.5em 0 1em}svg text{font:11px system-ui,sans-serif;fill:#57606a}";

/// The thresholds table: metric, expression, verdict.
fn thresholds(verdicts: &[Verdict]) -> String {
    let mut out = String::from("<h2>Thresholds</h2>\n");
    if verdicts.is_empty() {
        out.push_str("<p>none</p>\n");
        return out;
    }
    out.push_str("<table class=\"thresholds\"><tr><th>metric</th><th>threshold</th><th>verdict</th></tr>\n");
    for v in verdicts {
        let (class, mark) = if v.passed() { ("pass", "✓ passed") } else { ("fail", "✗ failed") };
        let abort = if v.abort_on_fail { " (abortOnFail)" } else { "" };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td><code>{}</code>{abort}</td><td class=\"{class}\">{mark}</td></tr>",
            escape(&v.metric),
            escape(&v.threshold)
        );
    }
    out.push_str("</table>\n");
    out
}

/// One SVG line plot of `series` over time, y from zero to the highest value.
fn plot(id: &str, title: &str, unit: &str, series: &[Series<'_>]) -> String {
    let x_max = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(1.0, f64::max);
    let y_max = nice_ceiling(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max));
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |v: f64| LEFT + v / x_max * plot_w;
    let y = |v: f64| TOP + plot_h - v / y_max * plot_h;
    let mut out = format!(
        "<svg id=\"{id}\" data-series=\"{names}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"{title}\">\n<text x=\"{LEFT}\" y=\"16\" \
         style=\"font-weight:bold;fill:#1f2328\">{title}</text>\n",
        names = series.iter().map(|s| s.name).collect::<Vec<_>>().join(","),
    );
    for i in 0..=4 {
        let value = y_max * f64::from(i) / 4.0;
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#d0d7de\"/><text x=\"{}\" y=\"{:.1}\" \
             text-anchor=\"end\">{}{unit}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(value) + 4.0,
            short(value),
            yy = y(value),
        );
    }
    for i in 0..=4 {
        let value = x_max * f64::from(i) / 4.0;
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}s</text>",
            x(value),
            HEIGHT - 10.0,
            short(value)
        );
    }
    let mut legend_x = WIDTH - RIGHT;
    for s in series.iter().rev() {
        legend_x -= 12.0 + 7.0 * s.name.len() as f64;
        let _ = writeln!(
            out,
            "<rect x=\"{legend_x:.1}\" y=\"8\" width=\"9\" height=\"9\" fill=\"{c}\"/><text x=\"{:.1}\" y=\"16\">{}</text>",
            legend_x + 12.0,
            escape(s.name),
            c = s.color
        );
        let points: Vec<String> = s.points.iter().map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py))).collect();
        let _ = writeln!(
            out,
            "<polyline class=\"series\" data-name=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" points=\"{}\"/>",
            escape(s.name),
            s.color,
            points.join(" ")
        );
    }
    if series.iter().all(|s| s.points.is_empty()) {
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no samples</text>",
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The smallest of 1, 2 or 5 × 10ⁿ at or above `value` (1 for nothing to show).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|&c| c >= value).unwrap_or(10.0 * magnitude)
}

/// `950`, `1.5k`, `2.3M`, `0.25`.
fn short(value: f64) -> String {
    let trimmed = |v: f64| {
        let text = format!("{v:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    };
    match value.abs() {
        v if v >= 1e6 => format!("{}M", trimmed(value / 1e6)),
        v if v >= 1e4 => format!("{}k", trimmed(value / 1e3)),
        _ => trimmed(value),
    }
}

/// Text as HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(metric: &str, ok: bool) -> Verdict {
        Verdict { metric: metric.into(), threshold: "p(99)<500".into(), ok: Some(ok), abort_on_fail: false }
    }

    #[test]
    fn the_report_is_self_contained_and_shows_thresholds_series_and_summary() {
        let samples: Vec<Sample> = (1..=5)
            .map(|i| Sample {
                at_s: f64::from(i),
                connections: 10.0,
                deliveries_per_s: 1000.0 * f64::from(i),
                p99_ms: 4.0,
                ..Sample::default()
            })
            .collect();
        let html = render(&Report {
            title: "broadcast <x>",
            samples: &samples,
            verdicts: &[verdict("delivery_latency", true), verdict("deliveries_lost", false)],
            steps: None,
            summary: "  iterations...: 5 & more",
            exit_code: 99,
        });
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
        for needle in [
            "loadtest: broadcast &lt;x&gt;",
            "failed (exit code 99)",
            "<td>delivery_latency</td><td><code>p(99)&lt;500</code></td><td class=\"pass\">✓ passed</td>",
            "<td>deliveries_lost</td><td><code>p(99)&lt;500</code></td><td class=\"fail\">✗ failed</td>",
            "data-series=\"connections\"",
            "data-series=\"deliveries/s\"",
            "data-series=\"p(50),p(95),p(99)\"",
            "data-series=\"errors/s\"",
            "5 &amp; more",
        ] {
            assert!(html.contains(needle), "{needle} in\n{html}");
        }
        assert_eq!(html.matches("<polyline").count(), 6);
        assert!(!html.contains("src=") && !html.contains("href=") && !html.contains("<script"), "{html}");
        assert!(!html.contains("http://") && !html.contains("https://"), "nothing to fetch: {html}");
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(130.0), 200.0);
        assert_eq!(nice_ceiling(4200.0), 5000.0);
        assert_eq!(
            (short(25_000.0), short(1_500_000.0), short(0.25), short(950.0)),
            ("25k".into(), "1.5M".into(), "0.25".into(), "950".into())
        );
    }
}
