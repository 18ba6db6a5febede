//! The stamped message payload: a fixed-size ASCII string that carries its sequence number
//! and its send time, so a receiver can measure delivery latency and spot loss and
//! duplicates without a table of what was sent.
//!
//! ```text
//! QQQQQQQQQQQQQQQQ TTTTTTTTTTTTTTTT xxxx…
//! sequence (hex)   sent, µs since the process's epoch (hex), then filler up to the size
//! ```
//!
//! Sender and receivers live in one process, so one monotonic clock ([`epoch`]) serves both:
//! no clock skew enters the latency. The worker processes of `loadtest run --workers` publish
//! to each other's subscribers, so each sets its epoch from one wall-clock origin the parent
//! hands out ([`align_epoch`]) and measures from there on its monotonic clock: the processes
//! share the machine's clock, so they agree to within the microseconds of reading it.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Bytes of the payload that carry data; the rest is filler.
pub const HEADER_LEN: usize = 32;

/// What a payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sequence: u64,
    /// Send time, µs since [`epoch`].
    pub sent_us: u64,
}

/// The process's clock origin for stamps.
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Sets this process's [`epoch`] to the wall-clock instant `origin` (before any stamp is
/// taken); false when the epoch was set already.
pub fn align_epoch(origin: std::time::SystemTime) -> bool {
    let since = std::time::SystemTime::now().duration_since(origin).unwrap_or_default();
    let now = Instant::now();
    let epoch = now.checked_sub(since).unwrap_or(now);
    let mut fresh = false;
    EPOCH.get_or_init(|| {
        fresh = true;
        epoch
    });
    fresh
}

/// Microseconds since [`epoch`].
pub fn now_us() -> u64 {
    u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl Stamp {
    /// A stamp for message `sequence`, sent now.
    pub fn now(sequence: u64) -> Self {
        Self { sequence, sent_us: now_us() }
    }

    /// The payload string, `len` bytes long (at least [`HEADER_LEN`]).
    pub fn encode(self, len: usize) -> String {
        let mut payload = format!("{:016x}{:016x}", self.sequence, self.sent_us);
        payload.extend(std::iter::repeat_n('x', len.saturating_sub(HEADER_LEN)));
        payload
    }

    /// Reads a payload's header; `None` for anything else.
    pub fn decode(payload: &str) -> Option<Self> {
        let header = payload.get(..HEADER_LEN)?;
        let sequence = u64::from_str_radix(&header[..16], 16).ok()?;
        let sent_us = u64::from_str_radix(&header[16..], 16).ok()?;
        Some(Self { sequence, sent_us })
    }

    /// Time from sending to now.
    pub fn age(self) -> Duration {
        Duration::from_micros(now_us().saturating_sub(self.sent_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_back_its_stamp_at_any_size() {
        let stamp = Stamp { sequence: 42, sent_us: 1_234_567 };
        for len in [0, HEADER_LEN, 1024] {
            let payload = stamp.encode(len);
            assert_eq!(payload.len(), len.max(HEADER_LEN));
            assert_eq!(Stamp::decode(&payload), Some(stamp));
        }
    }

    #[test]
    fn foreign_payloads_have_no_stamp() {
        assert_eq!(Stamp::decode("hello"), None);
        assert_eq!(Stamp::decode(&"z".repeat(40)), None);
    }
}
