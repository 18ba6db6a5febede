//! The in-memory backplane passes the conformance suite: nodes of one `MemoryBus`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[macro_use]
mod conformance;

use backplane::MemoryBus;

conformance_tests!(bus = MemoryBus::new(); async || bus.node());
