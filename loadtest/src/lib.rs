//! The harness's reusable parts, kept free of I/O so they are unit-tested: the k6 model
//! ([`model`]: executors, thresholds, scenario files), the [`runner`] that drives scenarios
//! under an executor, and the SignalR client scenarios connect with ([`signalr`]: every
//! transport, both hub protocols, reconnect). The `loadtest` binary (src/main.rs) runs
//! scenarios with them.

#![forbid(unsafe_code)]

pub mod cli;
pub mod model;
pub mod runner;
pub mod scenarios;
pub mod signalr;
