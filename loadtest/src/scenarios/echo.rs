//! `echo`: every iteration invokes the relay hub's `Echo` with a stamped payload and waits for
//! the completion — the round trip through the gateway's dispatch, without fan-out.
//! Records `invoke_rtt`, the `checks` rate (the result equals what was sent), `messages_sent`,
//! `messages_received` and `messages_slow` (round trips of 1 s or more).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use protocol::{CompletionOutcome, Value};
use tokio::time::Instant;

use super::stamp::Stamp;
use super::{connect, within, Settings, SLOW};
use crate::runner::{Failure, Recorder, Scenario};
use crate::signalr::Connection;

pub struct Echo {
    settings: Arc<Settings>,
    next_sequence: AtomicU64,
}

impl Echo {
    pub fn new(settings: Arc<Settings>) -> Self {
        Self { settings, next_sequence: AtomicU64::new(0) }
    }
}

impl Scenario for Echo {
    type Vu = Connection;

    async fn start_vu(&self, index: u32, recorder: &Recorder) -> Result<Connection, Failure> {
        let index = self.settings.slice.vu_offset + index;
        let options = self.settings.options(&self.settings.targets, index, &format!("user-{index}"))?;
        connect(options, recorder).await
    }

    async fn iteration(&self, vu: &mut Connection, recorder: &Recorder) -> Result<(), Failure> {
        let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
        let payload = Stamp::now(sequence).encode(self.settings.payload_bytes);
        recorder.count("messages_sent", 1);
        let began = Instant::now();
        let outcome = within(vu.invoke("Echo", vec![Value::from(payload.as_str())])).await?;
        let rtt = began.elapsed();
        let echoed = matches!(&outcome, CompletionOutcome::Value(value) if value.as_str() == Some(payload.as_str()));
        recorder.update(|metrics| {
            metrics.trend("invoke_rtt").record(rtt);
            metrics.counter("messages_received").count += 1;
            metrics.counter("messages_slow").count += u64::from(rtt >= SLOW);
            metrics.rate("checks").add(echoed);
        });
        match outcome {
            CompletionOutcome::Error(message) => Err(Failure { kind: "hub", message }),
            _ => Ok(()),
        }
    }
}
