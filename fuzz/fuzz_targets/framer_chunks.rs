//! Both framers fed one stream whole and in chunks of arbitrary sizes (as a transport may split
//! it): the same records, in the same order, end with the same outcome (more bytes needed, or
//! the same kind of error at the same record), whatever the split.
//!
//! Input: byte 0 picks the record size limit, byte 1 the number of chunk-size bytes that
//! follow, then those sizes, then the stream.
#![no_main]

use bytes::Bytes;
use hubgate_fuzz::chunks;
use libfuzzer_sys::fuzz_target;
use protocol::{BinaryFramer, ProtocolError, TextFramer};

#[derive(Debug, PartialEq)]
enum End {
    NeedMore { partial: bool },
    TooLarge,
    Malformed,
}

fn end(error: ProtocolError) -> End {
    match error {
        ProtocolError::MessageTooLarge { .. } => End::TooLarge,
        ProtocolError::Malformed(_) => End::Malformed,
        other => panic!("a framer reported {other:?}"),
    }
}

trait Framer {
    fn push(&mut self, bytes: &[u8]);
    fn next_record(&mut self) -> Result<Option<Bytes>, ProtocolError>;
    fn has_partial_record(&self) -> bool;
}

impl Framer for TextFramer {
    fn push(&mut self, bytes: &[u8]) {
        TextFramer::push(self, bytes)
    }
    fn next_record(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        TextFramer::next_record(self)
    }
    fn has_partial_record(&self) -> bool {
        TextFramer::has_partial_record(self)
    }
}

impl Framer for BinaryFramer {
    fn push(&mut self, bytes: &[u8]) {
        BinaryFramer::push(self, bytes)
    }
    fn next_record(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        BinaryFramer::next_record(self)
    }
    fn has_partial_record(&self) -> bool {
        BinaryFramer::has_partial_record(self)
    }
}

/// Pushes the pieces one by one, taking every complete record after each push, until the
/// stream ends or the framer reports an error (a connection is closed then).
fn run(framer: &mut dyn Framer, pieces: &[&[u8]], limit: usize) -> (Vec<Bytes>, End) {
    let mut records = Vec::new();
    for piece in pieces {
        framer.push(piece);
        loop {
            match framer.next_record() {
                Ok(Some(record)) => {
                    assert!(record.len() <= limit, "a record of {} bytes passed the limit {limit}", record.len());
                    records.push(record);
                }
                Ok(None) => break,
                Err(error) => return (records, end(error)),
            }
        }
    }
    (records, End::NeedMore { partial: framer.has_partial_record() })
}

fn check(make: &dyn Fn() -> Box<dyn Framer>, stream: &[u8], sizes: &[u8], limit: usize) {
    let whole = run(make().as_mut(), &[stream], limit);
    let split = run(make().as_mut(), &chunks(stream, sizes), limit);
    assert_eq!(whole, split, "split stream gave other records or another end");
}

fuzz_target!(|data: &[u8]| {
    let [limit, count, rest @ ..] = data else { return };
    let (sizes, stream) = rest.split_at(usize::from(*count % 16).min(rest.len()));
    // Small limits reach the size checks; 255 stands for "large".
    let limit = if *limit == 255 { 1 << 20 } else { usize::from(*limit) };
    check(&|| Box::new(TextFramer::new(limit)), stream, sizes, limit);
    check(&|| Box::new(BinaryFramer::new(limit, bytes::BytesMut::new())), stream, sizes, limit);
});
