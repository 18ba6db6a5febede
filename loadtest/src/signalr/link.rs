//! One opened transport, whichever it is, and the hub handshake over it.
//!
//! A closed set of three transports, so an enum rather than a trait object: every link
//! receives chunks of whole hub messages (`recv`), sends bytes (`send`) and closes.

use bytes::Bytes;
use protocol::{Framer, HandshakeRequest, HandshakeResponse, HubMessage, TextFramer};

use super::long_polling::LongPolling;
use super::negotiate::{negotiate, Negotiated};
use super::sse::ServerSentEvents;
use super::websocket::WebSocket;
use super::{ClientError, ClientOptions, Transport};

/// Largest hub message accepted from the server.
pub(super) const MAX_RECORD: usize = 1024 * 1024;

#[derive(Debug)]
pub(super) enum Link {
    WebSocket(WebSocket),
    ServerSentEvents(ServerSentEvents),
    LongPolling(LongPolling),
}

/// A link past its handshake.
#[derive(Debug)]
pub(super) struct Opened {
    pub link: Link,
    /// Holds whatever followed the handshake response.
    pub framer: Framer,
    pub connection_id: Option<String>,
    pub phases: Phases,
}

/// How long opening took, each phase measured from the start of the open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    /// Until the negotiate response was read (zero when negotiation is skipped).
    pub negotiated: std::time::Duration,
    /// Until the transport was open (WebSocket upgraded, SSE stream or first poll started).
    pub transport_open: std::time::Duration,
    /// Until the server accepted the handshake: the whole open.
    pub handshake_accepted: std::time::Duration,
}

/// Negotiates, opens the transport and completes the handshake, within the options' timeout.
pub(super) async fn open(options: &ClientOptions) -> Result<Opened, ClientError> {
    tokio::time::timeout(options.connect_timeout, open_inner(options))
        .await
        .map_err(|_| ClientError::Timeout(options.connect_timeout))?
}

async fn open_inner(options: &ClientOptions) -> Result<Opened, ClientError> {
    let started = tokio::time::Instant::now();
    let negotiated = negotiate(options).await?;
    let negotiated_after = started.elapsed();
    let connection_id = negotiated.connection_id.clone();
    let mut link = connect(negotiated, options).await?;
    let transport_open = started.elapsed();
    let framer = match handshake(&mut link, options).await {
        Ok(framer) => framer,
        Err(error) => {
            link.close(None).await;
            return Err(error);
        }
    };
    let phases = Phases { negotiated: negotiated_after, transport_open, handshake_accepted: started.elapsed() };
    Ok(Opened { link, framer, connection_id, phases })
}

async fn connect(negotiated: Negotiated, options: &ClientOptions) -> Result<Link, ClientError> {
    let binary = !options.protocol.is_text();
    Ok(match options.transport {
        Transport::WebSockets => Link::WebSocket(WebSocket::connect(negotiated, options).await?),
        Transport::ServerSentEvents => Link::ServerSentEvents(ServerSentEvents::connect(negotiated).await?),
        Transport::LongPolling => Link::LongPolling(LongPolling::connect(negotiated, binary).await?),
    })
}

/// Sends the handshake request (JSON text on every transport) and reads the response.
async fn handshake(link: &mut Link, options: &ClientOptions) -> Result<Framer, ClientError> {
    let request = HandshakeRequest { protocol: options.protocol.name().into(), version: options.handshake_version };
    link.send_text(request.encode()).await?;
    let mut framer = TextFramer::new(MAX_RECORD);
    loop {
        if let Some(record) = framer.next_record()? {
            return match HandshakeResponse::parse(&record)? {
                HandshakeResponse::Accepted => Ok(options.protocol.framer(MAX_RECORD, framer.into_remaining())),
                HandshakeResponse::Refused(error) => Err(ClientError::HandshakeRefused(error)),
            };
        }
        match link.recv().await? {
            Some(chunk) => framer.push(&chunk),
            None => return Err(ClientError::Transport("closed during the handshake".into())),
        }
    }
}

impl Link {
    /// The next chunk of whole hub messages; `None` when the server ended the transport.
    /// Cancel-safe: nothing received is lost if the future is dropped.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, ClientError> {
        match self {
            Self::WebSocket(link) => link.recv().await,
            Self::ServerSentEvents(link) => link.recv().await,
            Self::LongPolling(link) => link.recv().await,
        }
    }

    /// Sends encoded hub messages in the protocol's transfer format. The HTTP sends are
    /// boxed so that a WebSocket connection's task does not carry a POST's state inline.
    pub async fn send(&mut self, data: Bytes) -> Result<(), ClientError> {
        match self {
            Self::WebSocket(link) => link.send(data).await,
            Self::ServerSentEvents(link) => Box::pin(link.send(data)).await,
            Self::LongPolling(link) => Box::pin(link.send(data)).await,
        }
    }

    /// Queues encoded hub messages for [`flush`](Self::flush): WebSockets write them into
    /// the write buffer (at once when it has no size); the HTTP transports send each now.
    pub async fn feed(&mut self, data: Bytes) -> Result<(), ClientError> {
        match self {
            Self::WebSocket(link) => link.feed(data).await,
            Self::ServerSentEvents(link) => Box::pin(link.send(data)).await,
            Self::LongPolling(link) => Box::pin(link.send(data)).await,
        }
    }

    /// Writes whatever [`feed`](Self::feed) left buffered.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        match self {
            Self::WebSocket(link) => link.flush().await,
            Self::ServerSentEvents(_) | Self::LongPolling(_) => Ok(()),
        }
    }

    /// Sends text (the handshake) whatever the protocol.
    async fn send_text(&mut self, data: Bytes) -> Result<(), ClientError> {
        match self {
            Self::WebSocket(link) => link.send_text(data).await,
            Self::ServerSentEvents(link) => link.send(data).await,
            Self::LongPolling(link) => link.send_text(data).await,
        }
    }

    /// Whether the client should send keep-alive Pings (long polling has its own).
    pub fn keeps_alive(&self) -> bool {
        !matches!(self, Self::LongPolling(_))
    }

    /// Ends the link, first sending `close` (an encoded Close message) when given: a close
    /// frame for WebSockets, a DELETE for long polling, dropping the stream for SSE.
    pub async fn close(self, close: Option<Bytes>) {
        match self {
            Self::WebSocket(link) => link.close(close).await,
            Self::ServerSentEvents(mut link) => {
                if let Some(close) = close {
                    let _ = link.send(close).await;
                }
            }
            Self::LongPolling(link) => link.close(close).await,
        }
    }
}

/// The encoded Close message a client sends when it stops.
pub(super) fn close_message(protocol: protocol::Protocol) -> Option<Bytes> {
    protocol.encode(&HubMessage::Close(protocol::Close::default())).ok()
}
