//! The Server-Sent Events transport: one long `text/event-stream` response carries every
//! server→client message; the client sends with POSTs.
//!
//! The stream opens with a comment line so clients see it open before any message exists.
//! Each batch of queued messages becomes one event of `data: ` lines terminated by CRLF, and
//! nothing else is ever written: the strictest official client parses exactly that. Quiet
//! connections get the hub's keep-alive Ping as an event. When the client hangs up, the
//! response body is dropped, and dropping it ends the connection.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{HeaderValue, CONTENT_ENCODING};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};

use super::http::{uncached, HttpConnection, ReceivingGuard};
use crate::queue::outbound::Next;

/// Streams the connection's messages as events until the connection ends.
pub(super) fn event_stream(connection: Arc<HttpConnection>, keep_alive: Duration) -> Response {
    let (ended, guard) = connection.begin_receiving();
    drop(ended); // an event stream is never superseded: a second GET is refused instead
    let writer = EventWriter { connection, keep_alive, opened: false, done: false, _receiving: guard };
    let events = futures_util::stream::unfold(writer, EventWriter::next_event);
    let mut response = uncached(StatusCode::OK, "text/event-stream", Body::from_stream(events));
    response.headers_mut().insert(CONTENT_ENCODING, HeaderValue::from_static("identity"));
    response
}

struct EventWriter {
    connection: Arc<HttpConnection>,
    keep_alive: Duration,
    opened: bool,
    done: bool,
    _receiving: ReceivingGuard,
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        // The client went away (or the stream finished): either way the connection is over.
        self.connection.outbound.abort();
    }
}

impl EventWriter {
    async fn next_event(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        if !self.opened {
            self.opened = true;
            return Some((Ok(Bytes::from_static(b":\r\n")), self));
        }
        if self.done {
            return None;
        }
        let mut batch = Vec::new();
        loop {
            match tokio::time::timeout(self.keep_alive, self.connection.outbound.next_batch(&mut batch)).await {
                Ok(Next::Write) => break,
                Ok(Next::Superseded) => return None,
                Ok(Next::End(ending)) => {
                    batch.extend(ending.last);
                    self.done = true;
                    if batch.is_empty() {
                        return None;
                    }
                    break;
                }
                Err(_quiet) => {
                    if let Some(ping) = self.connection.outbound.keep_alive() {
                        batch.push(ping);
                        break;
                    }
                }
            }
        }
        Some((Ok(encode_event(&batch)), self))
    }
}

/// One event carrying `messages`: their bytes split into lines, each written as `data: <line>`
/// with CRLF, then an empty line. A CR before an LF belongs to the line break, not the data.
/// Written in one pass over the messages, line slices at a time, without joining them first.
fn encode_event(messages: &[Bytes]) -> Bytes {
    let length: usize = messages.iter().map(Bytes::len).sum();
    let mut event = BytesMut::with_capacity(length + 16);
    event.put_slice(b"data: ");
    for message in messages {
        let mut lines = message.split(|&byte| byte == b'\n');
        event.put_slice(lines.next().unwrap_or_default());
        for line in lines {
            // The line that just ended loses the CR of its CRLF.
            if event.ends_with(b"\r") {
                event.truncate(event.len() - 1);
            }
            event.put_slice(b"\r\ndata: ");
            event.put_slice(line);
        }
    }
    if event.ends_with(b"\r") {
        event.truncate(event.len() - 1);
    }
    event.put_slice(b"\r\n\r\n");
    event.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_of_a_batch_share_one_data_line() {
        let event = encode_event(&[Bytes::from_static(b"{\"type\":6}\x1e"), Bytes::from_static(b"{\"type\":7}\x1e")]);
        assert_eq!(&event[..], b"data: {\"type\":6}\x1e{\"type\":7}\x1e\r\n\r\n");
    }

    #[test]
    fn line_breaks_in_the_payload_become_separate_data_lines() {
        let event = encode_event(&[Bytes::from_static(b"a\r\nb\nc")]);
        assert_eq!(&event[..], b"data: a\r\ndata: b\r\ndata: c\r\n\r\n");
    }
}
