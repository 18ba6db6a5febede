//! Stateful reconnect bookkeeping: what a connection must keep to survive the loss of its
//! WebSocket and resume on a new one without losing or repeating a message.
//!
//! Both sides number the "trackable" messages they send (Invocation, StreamItem, Completion,
//! StreamInvocation, CancelInvocation) 1, 2, 3, ... and acknowledge what they have processed
//! with Ack. The server keeps every trackable message it sent until the client acknowledges it
//! ([`ReplayBuffer`]); after a reconnect it announces the first unacknowledged number with
//! Sequence and writes those messages again. The client does the same in the other direction,
//! and [`InboundSequence`] drops what was already processed.

use std::collections::VecDeque;

use bytes::Bytes;
use protocol::HubMessage;

/// Whether a message counts in stateful reconnect's numbering.
pub fn is_trackable(message: &HubMessage) -> bool {
    matches!(message.type_id(), 1..=5)
}

/// Sent trackable messages the client has not acknowledged yet.
#[derive(Debug)]
pub struct ReplayBuffer {
    unacked: VecDeque<(u64, Bytes)>,
    next_sequence: u64,
    bytes: usize,
}

impl Default for ReplayBuffer {
    fn default() -> Self {
        Self { unacked: VecDeque::new(), next_sequence: 1, bytes: 0 }
    }
}

impl ReplayBuffer {
    /// Keeps a message that is being sent.
    pub fn record(&mut self, message: Bytes) {
        self.bytes += message.len();
        self.unacked.push_back((self.next_sequence, message));
        self.next_sequence += 1;
    }

    /// Forgets every message up to and including `sequence_id`.
    pub fn acknowledge(&mut self, sequence_id: u64) {
        while let Some((sequence, message)) = self.unacked.front() {
            if *sequence > sequence_id {
                break;
            }
            self.bytes -= message.len();
            self.unacked.pop_front();
        }
    }

    /// Bytes kept for a possible replay.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The number a Sequence message announces on resume: the first unacknowledged message's,
    /// or the next one's when everything was acknowledged.
    pub fn first_unacknowledged(&self) -> u64 {
        self.unacked.front().map_or(self.next_sequence, |(sequence, _)| *sequence)
    }

    /// The messages to write again after a reconnect, in their original order.
    pub fn unacknowledged(&self) -> impl Iterator<Item = &Bytes> {
        self.unacked.iter().map(|(_, message)| message)
    }
}

/// The client's numbering of the trackable messages it sends, as the server follows it.
#[derive(Debug, Default)]
pub struct InboundSequence {
    /// Position of the last trackable message seen.
    position: u64,
    /// Highest position processed.
    processed: u64,
    /// Highest position acknowledged to the client.
    acknowledged: u64,
}

/// The client announced a Sequence beyond what the server ever received.
#[derive(Debug, PartialEq, Eq)]
pub struct SequenceTooHigh;

impl InboundSequence {
    /// Counts one trackable message; `false` when it repeats one already processed and must
    /// be dropped.
    pub fn accept(&mut self) -> bool {
        self.position += 1;
        if self.position <= self.processed {
            return false;
        }
        self.processed = self.position;
        true
    }

    /// The client's Sequence after a reconnect: its next message has number `sequence_id`.
    pub fn resume_at(&mut self, sequence_id: u64) -> Result<(), SequenceTooHigh> {
        if sequence_id == 0 || sequence_id > self.processed + 1 {
            return Err(SequenceTooHigh);
        }
        self.position = sequence_id - 1;
        Ok(())
    }

    /// The Ack to send, when something was processed since the last one.
    pub fn ack_due(&mut self) -> Option<u64> {
        (self.processed > self.acknowledged).then(|| {
            self.acknowledged = self.processed;
            self.processed
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay_with(count: u64) -> ReplayBuffer {
        let mut replay = ReplayBuffer::default();
        for n in 1..=count {
            replay.record(Bytes::from(n.to_string()));
        }
        replay
    }

    #[test]
    fn acknowledged_messages_are_forgotten_and_the_rest_replayed_in_order() {
        let mut replay = replay_with(4);
        assert_eq!(replay.first_unacknowledged(), 1);
        replay.acknowledge(2);
        assert_eq!(replay.first_unacknowledged(), 3);
        assert_eq!(replay.unacknowledged().cloned().collect::<Vec<_>>(), vec!["3", "4"]);
        assert_eq!(replay.bytes(), 2);
    }

    #[test]
    fn with_everything_acknowledged_the_sequence_is_the_next_number() {
        let mut replay = replay_with(3);
        replay.acknowledge(10);
        assert_eq!(replay.first_unacknowledged(), 4);
        assert_eq!(replay.unacknowledged().count(), 0);
        assert_eq!(replay.bytes(), 0);
    }

    #[test]
    fn messages_resent_after_a_reconnect_are_dropped_once_and_new_ones_kept() {
        let mut inbound = InboundSequence::default();
        assert!(inbound.accept() && inbound.accept() && inbound.accept());
        // The client saw only an ack for 1, so it resends 2 and 3, then sends 4.
        inbound.resume_at(2).unwrap();
        assert!(!inbound.accept());
        assert!(!inbound.accept());
        assert!(inbound.accept());
        assert_eq!(inbound.ack_due(), Some(4));
        assert_eq!(inbound.ack_due(), None);
    }

    #[test]
    fn a_sequence_beyond_what_was_received_is_refused() {
        let mut inbound = InboundSequence::default();
        inbound.accept();
        assert_eq!(inbound.resume_at(3), Err(SequenceTooHigh));
        assert_eq!(inbound.resume_at(2), Ok(()));
        assert_eq!(inbound.resume_at(0), Err(SequenceTooHigh));
    }

    #[test]
    fn only_invocations_streams_and_completions_are_trackable() {
        assert!(is_trackable(&HubMessage::CancelInvocation { invocation_id: "1".into(), headers: Default::default() }));
        assert!(!is_trackable(&HubMessage::Ping));
        assert!(!is_trackable(&HubMessage::Ack { sequence_id: 1 }));
        assert!(!is_trackable(&HubMessage::Sequence { sequence_id: 1 }));
    }
}
