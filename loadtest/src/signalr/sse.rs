//! The Server-Sent Events transport: one long `GET` with `Accept: text/event-stream` whose
//! `data:` lines carry the server's messages (one event = whole messages), and a `POST` per
//! send. Text only: JSON.

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use reqwest::Url;

use super::http::{authorized, client, transport_error, with_query};
use super::link::MAX_RECORD;
use super::negotiate::Negotiated;
use super::ClientError;

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

pub(super) struct ServerSentEvents {
    stream: ByteStream,
    parser: EventParser,
    /// `{hub}?id=…` for POSTs.
    send_url: Url,
    access_token: Option<String>,
}

impl std::fmt::Debug for ServerSentEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSentEvents").field("send_url", &self.send_url.as_str()).finish_non_exhaustive()
    }
}

impl ServerSentEvents {
    /// Opens the event stream; the token travels as `access_token` in its query.
    pub async fn connect(negotiated: Negotiated) -> Result<Self, ClientError> {
        let id = negotiated.id.as_deref();
        let send_url = with_query(&negotiated.url, &[("id", id)]);
        let stream_url =
            with_query(&negotiated.url, &[("id", id), ("access_token", negotiated.access_token.as_deref())]);
        let response = client()
            .get(stream_url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(transport_error("sse: open"))?;
        if !response.status().is_success() {
            return Err(ClientError::Transport(format!("sse: open: status {}", response.status().as_u16())));
        }
        Ok(Self {
            stream: Box::pin(response.bytes_stream()),
            parser: EventParser::default(),
            send_url,
            access_token: negotiated.access_token,
        })
    }

    /// The next event's data. Cancel-safe: the parser keeps partial lines between calls.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            if let Some(event) = self.parser.next_event()? {
                return Ok(Some(event));
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.parser.push(&chunk),
                Some(Err(error)) => return Err(ClientError::Transport(format!("sse: {error}"))),
                None => return Ok(None),
            }
        }
    }

    pub async fn send(&mut self, data: Bytes) -> Result<(), ClientError> {
        post(&self.send_url, self.access_token.as_deref(), data, "text/plain;charset=UTF-8").await
    }
}

/// `POST {hub}?id=…` with whole hub messages; shared with long polling.
pub(super) async fn post(url: &Url, token: Option<&str>, data: Bytes, content_type: &str) -> Result<(), ClientError> {
    let request = client().post(url.clone()).header(reqwest::header::CONTENT_TYPE, content_type).body(data);
    let response = authorized(request, token).send().await.map_err(transport_error("send"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(ClientError::Transport(format!("send: status {}", response.status().as_u16())))
    }
}

/// Splits the event stream into events: `data:` lines are joined with LF, an empty line ends
/// the event, comment lines (`:`) and other fields are ignored.
#[derive(Debug, Default)]
struct EventParser {
    buffer: BytesMut,
    data: BytesMut,
    has_data: bool,
}

impl EventParser {
    fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    fn next_event(&mut self) -> Result<Option<Bytes>, ClientError> {
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let mut line = self.buffer.split_to(end + 1);
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            if line.is_empty() {
                if std::mem::take(&mut self.has_data) {
                    return Ok(Some(self.data.split().freeze()));
                }
            } else if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                if self.has_data {
                    self.data.extend_from_slice(b"\n");
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
        }
        if self.buffer.len() + self.data.len() > MAX_RECORD {
            return Err(ClientError::Protocol(format!("sse: an event longer than {MAX_RECORD} bytes")));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lines_make_events_and_comments_are_skipped() {
        let mut parser = EventParser::default();
        parser.push(b":\r\n\r\ndata: {\"type\":6}\x1e\r\n\r\ndata: a\r\nda");
        assert_eq!(parser.next_event().expect("ok"), Some(Bytes::from_static(b"{\"type\":6}\x1e")));
        assert_eq!(parser.next_event().expect("ok"), None);
        parser.push(b"ta:b\n\n");
        assert_eq!(parser.next_event().expect("ok"), Some(Bytes::from_static(b"a\nb")));
        assert_eq!(parser.next_event().expect("ok"), None);
    }
}
