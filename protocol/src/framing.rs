//! Incremental splitting of a byte stream into 0x1E-terminated records.
//!
//! Transports deliver bytes, not messages: one WebSocket frame or POST body may hold several
//! records, and one record may arrive split over several frames. [`TextFramer`] keeps the
//! unfinished tail between pushes and refuses any record, finished or not, that grows beyond
//! the configured limit, so a peer cannot make it buffer without bound.

use bytes::{Buf, Bytes, BytesMut};

use crate::ProtocolError;

/// The byte that ends every JSON record (and every handshake record).
pub const RECORD_SEPARATOR: u8 = 0x1E;

/// Splits a byte stream into records, keeping partial records between calls.
#[derive(Debug)]
pub struct TextFramer {
    buffer: BytesMut,
    /// Bytes at the front of `buffer` already known to hold no separator.
    scanned: usize,
    max_record: usize,
}

impl TextFramer {
    /// A framer that refuses records longer than `max_record` bytes (separator excluded).
    pub fn new(max_record: usize) -> Self {
        Self { buffer: BytesMut::new(), scanned: 0, max_record }
    }

    /// Appends bytes received from the transport.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete record without its separator, `Ok(None)` when more bytes are needed,
    /// or an error when the record is, or is becoming, larger than the limit.
    pub fn next_record(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        let unscanned = &self.buffer[self.scanned..];
        match unscanned.iter().position(|&b| b == RECORD_SEPARATOR) {
            Some(offset) => {
                let length = self.scanned + offset;
                self.scanned = 0;
                if length > self.max_record {
                    return Err(self.too_large(length));
                }
                let record = self.buffer.split_to(length).freeze();
                self.buffer.advance(1);
                self.release_if_empty();
                Ok(Some(record))
            }
            None => {
                self.scanned = self.buffer.len();
                if self.buffer.len() > self.max_record {
                    return Err(self.too_large(self.buffer.len()));
                }
                Ok(None)
            }
        }
    }

    /// Whether part of a record is waiting for the rest of its bytes.
    pub fn has_partial_record(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// Takes whatever bytes are buffered, e.g. when switching from handshake to messages.
    pub fn into_remaining(self) -> BytesMut {
        self.buffer
    }

    fn too_large(&self, size: usize) -> ProtocolError {
        ProtocolError::MessageTooLarge { size, limit: self.max_record }
    }

    /// Idle connections should not keep a grown buffer alive.
    fn release_if_empty(&mut self) {
        if self.buffer.is_empty() && self.buffer.capacity() > 4096 {
            self.buffer = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(framer: &mut TextFramer) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(record) = framer.next_record().unwrap() {
            out.push(record);
        }
        out
    }

    #[test]
    fn several_records_in_one_push_come_out_in_order() {
        let mut framer = TextFramer::new(100);
        framer.push(b"{\"type\":6}\x1e{\"type\":7}\x1e");
        assert_eq!(records(&mut framer), vec![&b"{\"type\":6}"[..], &b"{\"type\":7}"[..]]);
        assert!(!framer.has_partial_record());
    }

    #[test]
    fn a_record_split_over_pushes_is_reassembled() {
        let mut framer = TextFramer::new(100);
        framer.push(b"{\"ty");
        assert!(records(&mut framer).is_empty());
        assert!(framer.has_partial_record());
        framer.push(b"pe\":6}\x1e{\"t");
        assert_eq!(records(&mut framer), vec![&b"{\"type\":6}"[..]]);
        framer.push(b"ype\":7}\x1e");
        assert_eq!(records(&mut framer), vec![&b"{\"type\":7}"[..]]);
    }

    #[test]
    fn a_record_over_the_limit_is_refused() {
        let mut framer = TextFramer::new(8);
        framer.push(b"0123456789\x1e");
        assert_eq!(framer.next_record(), Err(ProtocolError::MessageTooLarge { size: 10, limit: 8 }));
    }

    #[test]
    fn an_unfinished_record_over_the_limit_is_refused_before_it_ends() {
        let mut framer = TextFramer::new(8);
        framer.push(b"01234");
        assert_eq!(framer.next_record(), Ok(None));
        framer.push(b"56789");
        assert!(matches!(framer.next_record(), Err(ProtocolError::MessageTooLarge { .. })));
    }

    #[test]
    fn many_small_records_may_exceed_the_limit_together() {
        let mut framer = TextFramer::new(8);
        framer.push(&b"1234567\x1e".repeat(10));
        assert_eq!(records(&mut framer).len(), 10);
    }
}
