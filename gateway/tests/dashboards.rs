//! The shipped Grafana dashboard and Prometheus config only use what the gateway exports: every
//! metric named in a panel's PromQL is in `gateway::metrics::METRIC_NAMES` and in a real scrape
//! of a running gateway, so a renamed metric breaks this test, not a dashboard in production.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;
mod scrape;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::TestGateway;
use gateway::Config;
use serde_json::Value;

fn deploy_file(path: &str) -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("deploy").join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Every `expr` in the dashboard, wherever it is nested.
fn exprs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => found.push(expr.clone()),
                    _ => exprs(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| exprs(item, found)),
        _ => {}
    }
}

/// The `hubgate_*` identifiers in `promql`, histogram series reduced to their metric name.
fn metric_names(promql: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut rest = promql;
    while let Some(start) = rest.find("hubgate_") {
        let preceded = rest[..start].chars().next_back().is_some_and(is_ident);
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
        if !preceded {
            let name = &tail[..end];
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix));
            names.insert(base.unwrap_or(name).to_owned());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn histogram_suffixes_are_stripped_and_other_words_ignored() {
    let names = metric_names(
        "histogram_quantile(0.9, sum by (le) (rate(hubgate_fanout_duration_seconds_bucket[5m]))) / x_hubgate_no",
    );
    assert_eq!(names, BTreeSet::from(["hubgate_fanout_duration_seconds".to_owned()]));
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported() {
    let dashboard: Value = serde_json::from_str(&deploy_file("grafana/hubgate.json")).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut found = Vec::new();
    exprs(&dashboard, &mut found);
    for panel in panels {
        let mut own = Vec::new();
        exprs(panel, &mut own);
        assert!(!own.is_empty(), "panel {} has no query", panel["title"]);
    }
    let used: BTreeSet<String> = found.iter().flat_map(|expr| metric_names(expr)).collect();

    let listed: BTreeSet<String> = gateway::metrics::METRIC_NAMES.iter().map(|name| name.to_string()).collect();
    let unlisted: Vec<&String> = used.difference(&listed).collect();
    assert!(unlisted.is_empty(), "the dashboard queries metrics the gateway does not list: {unlisted:?}");
    assert_eq!(used, listed, "every exported metric has a panel");

    let gateway = TestGateway::start(Config { rest_api_open: true, ..Config::default() }).await;
    reqwest::get(gateway.http("/api/health?api-version=2022-06-01")).await.unwrap();
    let scraped = scrape::scrape(gateway.addr).await;
    let missing: Vec<&String> = used.difference(&scraped.families).collect();
    assert!(missing.is_empty(), "not in a real scrape: {missing:?}\n{}", scraped.text);
}

#[test]
fn the_prometheus_config_scrapes_the_metrics_path_of_gateway_nodes() {
    let config: serde_yaml::Value =
        serde_yaml::from_str(&deploy_file("prometheus/prometheus.yml")).expect("prometheus.yml is YAML");
    let jobs = config["scrape_configs"].as_sequence().expect("scrape_configs");
    assert!(!jobs.is_empty());
    for job in jobs {
        let path = job["metrics_path"].as_str().unwrap_or("/metrics");
        assert_eq!(path, "/metrics", "job {:?}", job["job_name"]);
    }
    let targets: Vec<&str> = jobs
        .iter()
        .flat_map(|job| job["static_configs"].as_sequence().into_iter().flatten())
        .flat_map(|group| group["targets"].as_sequence().into_iter().flatten())
        .filter_map(|target| target.as_str())
        .collect();
    assert!(!targets.is_empty(), "at least one static target");
    assert!(targets.iter().all(|target| target.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok())));
}
