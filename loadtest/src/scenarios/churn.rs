//! `churn`: every iteration opens a connection (negotiate, transport, handshake) and closes
//! it — the cost of connecting, which a reconnect storm after a node failure multiplies.
//! Records `connect_time` (negotiate + transport open), `handshake_time` (until the handshake
//! was accepted) and the `connections_failed` rate. VUs hold no connection between iterations.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::{connect, Settings};
use crate::runner::{Failure, Recorder, Scenario};

pub struct Churn {
    settings: Arc<Settings>,
    next_connection: AtomicU32,
}

impl Churn {
    pub fn new(settings: Arc<Settings>) -> Self {
        Self { settings, next_connection: AtomicU32::new(0) }
    }
}

impl Scenario for Churn {
    type Vu = ();

    async fn start_vu(&self, _index: u32, _recorder: &Recorder) -> Result<(), Failure> {
        Ok(())
    }

    async fn iteration(&self, _vu: &mut (), recorder: &Recorder) -> Result<(), Failure> {
        let slice = self.settings.slice;
        let index = slice.worker + self.next_connection.fetch_add(1, Ordering::Relaxed) * slice.workers.max(1);
        let options = self.settings.options(&self.settings.targets, index, &format!("user-{index}"))?;
        let connection = connect(options, recorder).await?;
        connection.close().await?;
        Ok(())
    }
}
