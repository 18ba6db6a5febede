//! A raw SignalR client over the HTTP transports: Server-Sent Events or long polling to
//! receive, POST to send. Like the official clients, it sends the handshake as text and reads
//! server bytes as a stream of records.

use std::collections::VecDeque;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use protocol::{Framer, HandshakeRequest, HandshakeResponse, HubMessage, Protocol, TextFramer};
use reqwest::StatusCode;

use super::{accept_handshake_response, decode, next_invocation_id, Conversation, Serves, DEADLINE};

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// How the client receives.
pub enum Receiver {
    LongPolling,
    /// The open event stream and bytes read from it but not yet parsed into events.
    ServerSentEvents {
        body: ByteStream,
        unparsed: Vec<u8>,
    },
}

pub struct HttpClient {
    pub http: reqwest::Client,
    /// The hub URL with `?id=<token>`.
    pub url: String,
    pub connection_id: String,
    pub token: String,
    pub protocol: Protocol,
    pub receiver: Receiver,
    framer: Framer,
    pending: VecDeque<HubMessage>,
    next_id: u64,
    /// Every SSE event as received, for framing checks.
    pub raw_events: Vec<Vec<u8>>,
}

/// Negotiates (version 1) and returns (connection id, token).
pub async fn negotiated(gateway: &impl Serves, hub_path: &str) -> (String, String) {
    let (path, query) = hub_path.split_once('?').unwrap_or((hub_path, ""));
    let url = gateway.http(&format!("{path}/negotiate?negotiateVersion=1&{query}"));
    let response = reqwest::Client::new().post(url).send().await.expect("negotiate request");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("negotiate JSON");
    let id = body["connectionId"].as_str().expect("connectionId").to_owned();
    let token = body["connectionToken"].as_str().expect("connectionToken").to_owned();
    (id, token)
}

impl HttpClient {
    fn new(gateway: &impl Serves, hub_path: &str, id: String, token: String, receiver: Receiver) -> Self {
        let separator = if hub_path.contains('?') { '&' } else { '?' };
        Self {
            http: reqwest::Client::new(),
            url: gateway.http(&format!("{hub_path}{separator}id={token}")),
            connection_id: id,
            token,
            protocol: Protocol::Json,
            receiver,
            framer: Framer::Text(TextFramer::new(1 << 20)),
            pending: VecDeque::new(),
            next_id: 0,
            raw_events: Vec::new(),
        }
    }

    /// Negotiates, makes the first poll (200, empty) and completes the handshake.
    pub async fn long_polling(gateway: &impl Serves, hub_path: &str, protocol: Protocol) -> Self {
        let (id, token) = negotiated(gateway, hub_path).await;
        let mut client = Self::new(gateway, hub_path, id, token, Receiver::LongPolling);
        let first = client.poll().await;
        assert_eq!(first.status(), 200, "first poll");
        assert_eq!(first.bytes().await.expect("first poll body").len(), 0, "the first poll is empty");
        client.handshake(protocol).await;
        client
    }

    /// Negotiates, opens the event stream and completes the JSON handshake.
    pub async fn server_sent_events(gateway: &impl Serves, hub_path: &str) -> Self {
        let (id, token) = negotiated(gateway, hub_path).await;
        let mut client = Self::open_event_stream(gateway, hub_path, id, token).await;
        client.handshake(Protocol::Json).await;
        client
    }

    /// Negotiates and opens the event stream, without a handshake.
    pub async fn open_event_stream(gateway: &impl Serves, hub_path: &str, id: String, token: String) -> Self {
        let mut client = Self::new(gateway, hub_path, id, token, Receiver::LongPolling);
        let response = client.event_stream_request().await;
        assert_eq!(response.status(), 200, "event stream");
        let body: ByteStream = Box::pin(response.bytes_stream());
        client.receiver = Receiver::ServerSentEvents { body, unparsed: Vec::new() };
        client
    }

    /// A GET asking for an event stream on this connection.
    pub async fn event_stream_request(&self) -> reqwest::Response {
        let request = self.http.get(&self.url).header("Accept", "text/event-stream").send();
        tokio::time::timeout(DEADLINE, request).await.expect("event stream answered").expect("event stream request")
    }

    /// One poll request, answered within the deadline.
    pub async fn poll(&self) -> reqwest::Response {
        let request = self.http.get(format!("{}&_={}", self.url, self.next_id)).send();
        tokio::time::timeout(DEADLINE, request).await.expect("poll answered in time").expect("poll request")
    }

    /// POSTs `body`; returns the status and body text.
    pub async fn post(&self, body: impl Into<reqwest::Body>) -> (StatusCode, String) {
        let response = self.http.post(&self.url).body(body).send().await.expect("POST");
        let status = response.status();
        (status, response.text().await.unwrap_or_default())
    }

    /// DELETE on the connection; returns the status.
    pub async fn delete(&self) -> StatusCode {
        self.http.delete(&self.url).send().await.expect("DELETE").status()
    }

    pub async fn handshake(&mut self, protocol: Protocol) {
        self.protocol = protocol;
        let request = HandshakeRequest { protocol: protocol.name().into(), version: 1 }.encode();
        assert_eq!(self.post(request).await.0, 200, "handshake POST");
        assert_eq!(self.handshake_response().await, HandshakeResponse::Accepted);
    }

    pub async fn handshake_response(&mut self) -> HandshakeResponse {
        let record = self.next_record().await.expect("a handshake response");
        accept_handshake_response(&record, &mut self.framer, self.protocol)
    }

    /// The next bytes from the server; `None` once it ended the connection (204 / stream end).
    pub async fn next_chunk(&mut self) -> Option<Vec<u8>> {
        match &mut self.receiver {
            Receiver::LongPolling => loop {
                let response = self.poll().await;
                match response.status().as_u16() {
                    200 => {
                        let body = response.bytes().await.expect("poll body");
                        if !body.is_empty() {
                            return Some(body.to_vec());
                        }
                    }
                    204 => return None,
                    other => panic!("poll answered {other}"),
                }
            },
            Receiver::ServerSentEvents { body, unparsed } => loop {
                if let Some(end) = unparsed.windows(4).position(|w| w == b"\r\n\r\n") {
                    let event: Vec<u8> = unparsed.drain(..end + 4).collect();
                    self.raw_events.push(event.clone());
                    if let Some(data) = event_data(&event[..end]) {
                        return Some(data);
                    }
                    continue;
                }
                let chunk = tokio::time::timeout(DEADLINE, body.next()).await.expect("event stream data in time");
                match chunk {
                    Some(Ok(bytes)) => unparsed.extend_from_slice(&bytes),
                    Some(Err(_)) | None => return None,
                }
            },
        }
    }

    async fn next_record(&mut self) -> Option<Bytes> {
        loop {
            if let Some(record) = self.framer.next_record().expect("server record") {
                return Some(record);
            }
            let chunk = self.next_chunk().await?;
            self.framer.push(&chunk);
        }
    }
}

impl Conversation for HttpClient {
    fn pending(&mut self) -> &mut VecDeque<HubMessage> {
        &mut self.pending
    }

    async fn receive(&mut self) -> Option<HubMessage> {
        let record = self.next_record().await?;
        Some(decode(self.protocol, &record))
    }

    async fn send(&mut self, message: &HubMessage) {
        let bytes = self.protocol.encode(message).expect("encode");
        assert_eq!(self.post(bytes.to_vec()).await.0, 200, "POST of a message");
    }

    fn new_invocation_id(&mut self) -> String {
        next_invocation_id(&mut self.next_id)
    }
}

/// The data of one event (its `data: ` lines joined by LF); `None` for comment-only events.
fn event_data(event: &[u8]) -> Option<Vec<u8>> {
    let mut data: Option<Vec<u8>> = None;
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.starts_with(b":") || line.is_empty() {
            continue;
        }
        let payload = line.strip_prefix(b"data: ").unwrap_or_else(|| panic!("not a data line: {line:?}"));
        match &mut data {
            Some(data) => {
                data.push(b'\n');
                data.extend_from_slice(payload);
            }
            None => data = Some(payload.to_vec()),
        }
    }
    data
}

impl HttpClient {
    /// A client for a negotiated connection that has not started any transport.
    pub fn new_for_tests(gateway: &impl Serves, hub_path: &str, id: String, token: String) -> Self {
        Self::new(gateway, hub_path, id, token, Receiver::LongPolling)
    }
}
