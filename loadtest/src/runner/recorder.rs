//! The shared sink for a run's samples. One lock around the run's [`Metrics`]; every sample
//! holds it for a few instructions (an HDR record or an add), which measured far below the
//! cost of the network I/O that produces a sample.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::Failure;
use crate::model::metrics::Metrics;

/// Where VUs and scenarios record samples. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    metrics: Arc<Mutex<Metrics>>,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Metrics> {
        self.metrics.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn trend(&self, name: &str, value: Duration) {
        self.lock().trend(name).record(value);
    }

    pub fn count(&self, name: &str, n: u64) {
        self.lock().counter(name).count += n;
    }

    pub fn rate(&self, name: &str, passed: bool) {
        self.lock().rate(name).add(passed);
    }

    pub fn gauge(&self, name: &str, value: f64) {
        self.lock().gauge(name).set(value);
    }

    /// Counts a failure under `errors` and under `errors_<kind>`.
    pub fn failure(&self, failure: &Failure) {
        let mut metrics = self.lock();
        metrics.counter("errors").count += 1;
        metrics.counter(&format!("errors_{}", failure.kind)).count += 1;
    }

    /// Records several samples under one lock: for the hot paths (a subscriber's delivery, an
    /// iteration's end) that would otherwise take it once per sample.
    pub fn update<R>(&self, write: impl FnOnce(&mut Metrics) -> R) -> R {
        write(&mut self.lock())
    }

    /// Reads the metrics as they are now.
    pub fn with<R>(&self, read: impl FnOnce(&Metrics) -> R) -> R {
        read(&self.lock())
    }

    /// The metrics recorded so far, leaving an empty set behind.
    pub fn take(&self) -> Metrics {
        std::mem::take(&mut *self.lock())
    }
}
