//! The harness's reusable parts: the k6 model ([`model`]: executors, thresholds, scenario
//! files; pure, so unit-tested without a clock or a server), the [`runner`] that drives
//! scenarios under an executor, the SignalR client scenarios connect with ([`signalr`]: every
//! transport, both hub protocols, reconnect), the built-in [`scenarios`] (echo, fan-out with
//! delivery accounting, churn), [`rss`] and [`cpu`] (a process's memory and CPU time from
//! `/proc`, shared with the binary's `idle` and `broadcast`) and [`cli`], the `loadtest run`
//! command the binary is a thin shell over — so the end-to-end tests run exactly what a user
//! runs.
//!
//! ```text
//! flags + scenario file ─► cli::plan (checked) ─► runner::run(scenario, plan)
//!     setup (subscribers) ─► executor schedule: VUs × iterations ─► teardown (drain, ledger)
//!     Recorder ─► Metrics ─► summary (k6 layout) + thresholds ─► exit code 0 / 99 / 108 / 1
//! ```

#![forbid(unsafe_code)]

pub mod cli;
pub mod cpu;
pub mod model;
pub mod rss;
pub mod runner;
pub mod scenarios;
pub mod signalr;
