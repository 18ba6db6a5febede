//! Reads a gateway's `/metrics` the way Prometheus does: the text format, one sample a line.
//! Shared by the metrics and dashboard tests.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

/// Every sample of one scrape.
#[derive(Debug, Clone)]
pub struct Scrape {
    samples: Vec<Sample>,
    /// Names declared by `# TYPE` lines (histograms without suffixes).
    pub families: BTreeSet<String>,
    pub text: String,
}

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// `GET http://{addr}/metrics`, parsed; panics unless it answers 200 in time.
pub async fn scrape(addr: SocketAddr) -> Scrape {
    let url = format!("http://{addr}/metrics");
    let response = tokio::time::timeout(Duration::from_secs(10), reqwest::get(&url))
        .await
        .expect("/metrics answers in time")
        .expect("/metrics request");
    assert_eq!(response.status(), 200, "{url}");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    Scrape::parse(&response.text().await.unwrap())
}

impl Scrape {
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        let mut families = BTreeSet::new();
        for line in text.lines() {
            if let Some(declaration) = line.strip_prefix("# TYPE ") {
                families.insert(declaration.split(' ').next().unwrap().to_owned());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            samples.push(parse_sample(line));
        }
        Self { samples, families, text: text.to_owned() }
    }

    /// The sum of the samples named `name` that carry every label in `labels` (0 if none).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|sample| sample.name == name)
            .filter(|sample| labels.iter().all(|(k, v)| sample.labels.get(*k).map(String::as_str) == Some(*v)))
            .map(|sample| sample.value)
            .sum()
    }

    /// Whether a sample named `name` with these labels exists at all.
    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples.iter().any(|sample| {
            sample.name == name && labels.iter().all(|(k, v)| sample.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// How much `name{labels}` grew from `before` to this scrape.
    pub fn delta(&self, before: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels) - before.value(name, labels)
    }
}

/// `name{k="v",k2="v2"} value`; label values here never hold quotes or commas.
fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
    let value = value.parse::<f64>().unwrap_or_else(|_| panic!("bad value: {line}"));
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
            let labels = inner
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line}"));
                    (key.to_owned(), value.trim_end_matches('"').to_owned())
                })
                .collect();
            (name, labels)
        }
    };
    Sample { name: name.to_owned(), labels, value }
}

/// Scrapes `addr` until `condition` holds for a scrape, up to `within`; returns that scrape.
pub async fn scrape_until(
    addr: SocketAddr,
    what: &str,
    within: Duration,
    condition: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let scrape = scrape(addr).await;
        if condition(&scrape) {
            return scrape;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; last scrape:\n{}", scrape.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn samples_are_parsed_with_their_labels() {
    let scrape =
        Scrape::parse("# TYPE a_total counter\na_total{route=\"/api/hubs/{hub}/:send\",status=\"202\"} 3\nb 1.5\n");
    assert_eq!(scrape.value("a_total", &[("route", "/api/hubs/{hub}/:send")]), 3.0);
    assert_eq!(scrape.value("a_total", &[("status", "500")]), 0.0);
    assert_eq!(scrape.value("b", &[]), 1.5);
    assert!(scrape.families.contains("a_total"));
}
