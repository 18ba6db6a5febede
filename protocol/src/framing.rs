//! Incremental splitting of a byte stream into records: 0x1E-terminated text records (JSON and
//! every handshake) and length-prefixed binary records (MessagePack).
//!
//! Transports deliver bytes, not messages: one WebSocket frame or POST body may hold several
//! records, and one record may arrive split over several frames. Both framers keep the
//! unfinished tail between pushes and refuse any record, finished or not, that grows beyond
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

/// Largest length a binary record's prefix may announce (the prefix is at most 5 bytes).
pub const MAX_BINARY_LENGTH: usize = 0x7FFF_FFFF;

/// Writes the length prefix of a binary record: 7 bits per byte, least significant first, the
/// high bit set on every byte but the last.
pub fn write_length_prefix(out: &mut BytesMut, length: usize) -> Result<(), ProtocolError> {
    if length > MAX_BINARY_LENGTH {
        return Err(ProtocolError::MessageTooLarge { size: length, limit: MAX_BINARY_LENGTH });
    }
    let mut rest = length;
    loop {
        let low = (rest & 0x7F) as u8;
        rest >>= 7;
        if rest == 0 {
            out.extend_from_slice(&[low]);
            return Ok(());
        }
        out.extend_from_slice(&[low | 0x80]);
    }
}

/// Reads a length prefix from the start of `bytes`: `Ok(None)` when more bytes are needed,
/// otherwise the length and the prefix's size.
fn read_length_prefix(bytes: &[u8]) -> Result<Option<(usize, usize)>, ProtocolError> {
    let mut length = 0usize;
    for (index, &byte) in bytes.iter().take(5).enumerate() {
        if index == 4 && byte > 0x07 {
            return Err(ProtocolError::Malformed("length prefix larger than 2^31 - 1".into()));
        }
        length |= usize::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(Some((length, index + 1)));
        }
    }
    if bytes.len() >= 5 {
        return Err(ProtocolError::Malformed("length prefix longer than 5 bytes".into()));
    }
    Ok(None)
}

/// Splits a byte stream into length-prefixed records, keeping partial records between calls.
#[derive(Debug)]
pub struct BinaryFramer {
    buffer: BytesMut,
    max_record: usize,
}

impl BinaryFramer {
    /// A framer that refuses records longer than `max_record` bytes (prefix excluded), and
    /// starts with `initial` bytes already received (e.g. what followed the handshake).
    pub fn new(max_record: usize, initial: BytesMut) -> Self {
        Self { buffer: initial, max_record }
    }

    /// Appends bytes received from the transport.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete record without its prefix, `Ok(None)` when more bytes are needed, or
    /// an error when the prefix is invalid or announces a record over the limit. The limit is
    /// checked on the announced length, before the body is buffered.
    pub fn next_record(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        let Some((length, prefix)) = read_length_prefix(&self.buffer)? else { return Ok(None) };
        if length > self.max_record {
            return Err(ProtocolError::MessageTooLarge { size: length, limit: self.max_record });
        }
        if self.buffer.len() < prefix + length {
            return Ok(None);
        }
        self.buffer.advance(prefix);
        Ok(Some(self.buffer.split_to(length).freeze()))
    }

    /// Whether part of a record is waiting for the rest of its bytes.
    pub fn has_partial_record(&self) -> bool {
        !self.buffer.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_length_prefix(&mut out, body.len()).unwrap();
        out.extend_from_slice(body);
        out.to_vec()
    }

    #[test]
    fn length_prefixes_match_the_specification_examples() {
        assert_eq!(framed(&[0; 53])[..1], [0x35]);
        assert_eq!(framed(&vec![0; 5248])[..2], [0x80, 0x29]);
        let mut max = BytesMut::new();
        write_length_prefix(&mut max, MAX_BINARY_LENGTH).unwrap();
        assert_eq!(&max[..], [0xFF, 0xFF, 0xFF, 0xFF, 0x07]);
        assert_eq!(read_length_prefix(&max).unwrap(), Some((MAX_BINARY_LENGTH, 5)));
    }

    #[test]
    fn binary_records_split_and_joined_come_out_whole() {
        let mut stream = framed(b"first");
        stream.extend(framed(&[0x91, 0x06]));
        let mut framer = BinaryFramer::new(100, BytesMut::new());
        let (head, tail) = stream.split_at(3);
        framer.push(head);
        assert_eq!(framer.next_record().unwrap(), None);
        assert!(framer.has_partial_record());
        framer.push(tail);
        assert_eq!(framer.next_record().unwrap().unwrap(), &b"first"[..]);
        assert_eq!(framer.next_record().unwrap().unwrap(), &[0x91, 0x06][..]);
        assert_eq!(framer.next_record().unwrap(), None);
        assert!(!framer.has_partial_record());
    }

    #[test]
    fn an_announced_length_over_the_limit_is_refused_before_the_body_arrives() {
        let mut framer = BinaryFramer::new(10, BytesMut::new());
        framer.push(&framed(&[0; 11])[..1]);
        assert!(matches!(framer.next_record(), Err(ProtocolError::MessageTooLarge { size: 11, limit: 10 })));
    }

    #[test]
    fn a_prefix_with_a_large_fifth_byte_or_a_sixth_byte_is_malformed() {
        assert!(read_length_prefix(&[0xFF, 0xFF, 0xFF, 0xFF, 0x08]).is_err());
        assert!(read_length_prefix(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).is_err());
        assert_eq!(read_length_prefix(&[0x80, 0x80]).unwrap(), None);
    }

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
