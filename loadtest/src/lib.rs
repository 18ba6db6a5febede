//! The harness's reusable parts: the k6 model ([`model`]: executors, thresholds, scenario
//! files; pure, so unit-tested without a clock or a server), the [`runner`] that drives
//! scenarios under an executor, the one SignalR client of the harness ([`signalr`]: every
//! transport, both hub protocols, reconnect; the scenarios and the binary's `idle` and
//! `broadcast` all connect with it), the built-in [`scenarios`] (echo, fan-out with
//! delivery accounting, churn), [`rss`] and [`cpu`] (a process's memory and CPU time from
//! `/proc`, shared with the binary's `idle` and `broadcast`) and [`cli`], the `loadtest run`
//! command the binary is a thin shell over — so the end-to-end tests run exactly what a user
//! runs.
//!
//! ```text
//! flags + scenario file ─► cli::plan (checked) ─► runner::run(scenario, plan)
//!     (or cli::workers: the plan split over worker processes / agents, metrics merged live)
//!     setup (subscribers) ─► executor schedule: VUs × iterations ─► teardown (drain, ledger)
//!     Recorder ─► Metrics ─► summary (k6 layout) + thresholds ─► exit code 0 / 99 / 108 / 1
//! ```
//!
//! Layers, each module knowing only those below it (`module-graph loadtest` finds no circle):
//!
//! ```text
//! cli ─► scenarios ─► runner ─► model
//!    │             └► signalr ─► protocol (crate)
//!    └► report (--report: timeline + HTML) ─► runner, model
//! rss, cpu: leaves, used by runner, cli and the binary
//! ```
//!
//! `runner` drives any [`runner::Scenario`] and knows no client: the caller hands it the count
//! of open connections (`signalr::open_connections`), and `scenarios` turns a
//! [`signalr::ClientError`] into a [`runner::Failure`].

#![forbid(unsafe_code)]

pub mod cli;
pub mod cpu;
pub mod model;
pub mod report;
pub mod rss;
pub mod runner;
pub mod scenarios;
pub mod signalr;
