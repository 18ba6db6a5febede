//! The handshake as a connection reads it: the first 0x1E-terminated record is parsed as a
//! handshake request, the protocol it names is looked up, and the bytes after it go to that
//! protocol's framer and decoder. Nothing panics; a request or response that parses survives
//! encode → parse unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{HandshakeRequest, HandshakeResponse, Protocol, TextFramer, RECORD_SEPARATOR};

fn unframe(bytes: &[u8]) -> &[u8] {
    assert_eq!(bytes.last(), Some(&RECORD_SEPARATOR), "a handshake record ends with its separator");
    &bytes[..bytes.len() - 1]
}

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = HandshakeResponse::parse(data) {
        let again = HandshakeResponse::parse(unframe(&response.encode())).expect("an encoded response parses");
        assert_eq!(again, response);
    }

    let mut framer = TextFramer::new(32 * 1024);
    framer.push(data);
    let Ok(Some(record)) = framer.next_record() else { return };
    let Ok(request) = HandshakeRequest::parse(&record) else { return };
    let again = HandshakeRequest::parse(unframe(&request.encode())).expect("an encoded request parses");
    assert_eq!(again, request);
    let Some(protocol) = Protocol::from_name(&request.protocol) else { return };
    assert_eq!(protocol.name(), request.protocol);
    let mut framer = protocol.framer(32 * 1024, framer.into_remaining());
    while let Ok(Some(record)) = framer.next_record() {
        let _ = protocol.decode(&record);
    }
});
