//! The k6 model the harness follows: scenarios run by executors, judged by thresholds.
//!
//! These modules hold no I/O: [`executor`] says how many VUs or iteration starts are due at a
//! given elapsed time, [`threshold`] parses and evaluates k6 threshold expressions,
//! [`metrics`] holds trends (HDR histograms), counters, rates and gauges, [`summary`] judges the
//! thresholds and prints k6's end-of-test summary and its JSON export, and [`scenario`] reads
//! the TOML scenario file. The runner and the scenarios build on them, so the timing and the
//! verdict are unit-tested without a clock or a server.

pub mod executor;
pub mod exposition;
pub mod metrics;
pub mod scenario;
pub mod summary;
pub mod threshold;
pub mod wire;
