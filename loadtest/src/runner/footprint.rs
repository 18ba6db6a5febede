//! The harness's own footprint while it runs: resident memory per open connection, sampled
//! every second, so a report says what one simulated client cost this process (the figure
//! that decides how many connections one machine can drive).
//!
//! The runner does not know the client: the caller passes how to count open connections
//! (`signalr::open_connections`), so `runner` stays below `signalr` and `scenarios`.

use std::time::Duration;

use super::Recorder;
use crate::rss::Process;

/// This process's resident set in KiB (`VmRSS`), or `None` where `/proc` is missing.
pub fn rss_kib() -> Option<u64> {
    Process::This.rss().ok().map(|rss| rss.total_kib)
}

/// Records `harness_rss_kib`, `connections_open` and `harness_rss_per_connection_kib` (growth
/// over `baseline_kib` divided by the open connections) every second until dropped. The
/// per-connection figure is taken while the connection count is at its peak so far: once
/// connections close the process keeps its memory, and dividing by fewer would overstate it.
/// `open_connections` says how many connections this process holds open now.
pub async fn sample(recorder: Recorder, baseline_kib: u64, open_connections: fn() -> usize) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut peak = 0;
    loop {
        tick.tick().await;
        let open = open_connections();
        peak = peak.max(open);
        record(&recorder, baseline_kib, rss_kib(), open, open == peak);
    }
}

fn record(recorder: &Recorder, baseline_kib: u64, rss: Option<u64>, open: usize, at_peak: bool) {
    let Some(rss) = rss else { return };
    recorder.gauge("harness_rss_kib", rss as f64);
    recorder.gauge("connections_open", open as f64);
    if open > 0 && at_peak {
        let per_connection = rss.saturating_sub(baseline_kib) as f64 / open as f64;
        recorder.gauge("harness_rss_per_connection_kib", (per_connection * 100.0).round() / 100.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::threshold::{Aggregates, Aggregation};

    #[test]
    fn this_process_has_a_resident_set() {
        assert!(rss_kib().is_some_and(|kib| kib > 0));
    }

    #[test]
    fn growth_is_divided_by_the_open_connections() {
        let recorder = Recorder::default();
        record(&recorder, 1_000, Some(11_000), 1_000, true);
        let per = recorder.with(|m| m.by_name["harness_rss_per_connection_kib"].aggregate(Aggregation::Value));
        assert_eq!(per, Some(10.0));
        record(&recorder, 1_000, Some(12_000), 500, false);
        record(&recorder, 1_000, Some(12_000), 0, false);
        let open = recorder.with(|m| m.by_name["connections_open"].aggregate(Aggregation::Value));
        assert_eq!(open, Some(0.0));
        let per = recorder.with(|m| m.by_name["harness_rss_per_connection_kib"].aggregate(Aggregation::Value));
        assert_eq!(per, Some(10.0), "below the peak the figure taken at the peak stays");
    }
}
