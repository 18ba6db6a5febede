//! One SignalR hub connection, opened as a real client opens it, then held with as little
//! client memory as possible.
//!
//! The harness holds thousands of these in one process, so the WebSocket is configured with
//! a small read buffer and no write buffering: a held connection costs the client a socket,
//! a few hundred bytes of buffer and one small task.

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use protocol::{HandshakeRequest, HandshakeResponse, TextFramer};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::negotiate::negotiate;
use crate::target::Target;

/// An open hub connection, past its handshake.
pub type HubSocket = WebSocketStream<TcpStream>;

/// Read buffer per connection. Idle connections only ever receive 11-byte pings.
const READ_BUFFER: usize = 512;
/// Largest handshake response record accepted.
const MAX_HANDSHAKE_RECORD: usize = 16 * 1024;

/// Client-side WebSocket buffering of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Buffers {
    /// Bytes read from the socket per read call.
    pub read: usize,
    /// Bytes buffered before a write reaches the socket; 0 writes every message at once.
    pub write: usize,
}

impl Buffers {
    /// For connections that are held and mostly idle: as little memory as possible.
    pub const IDLE: Self = Self { read: READ_BUFFER, write: 0 };
}

fn websocket_config(buffers: Buffers) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(buffers.read)
        .write_buffer_size(buffers.write)
        .max_message_size(Some(1024 * 1024))
        .max_frame_size(Some(1024 * 1024))
}

/// Negotiates (unless `skip_negotiate`), opens the WebSocket and completes the JSON hub
/// protocol handshake, all within `timeout`.
pub async fn connect(target: &Target, skip_negotiate: bool, timeout: Duration) -> anyhow::Result<HubSocket> {
    connect_with(target, skip_negotiate, timeout, Buffers::IDLE).await
}

/// [`connect`] with the given client-side buffering.
pub async fn connect_with(
    target: &Target,
    skip_negotiate: bool,
    timeout: Duration,
    buffers: Buffers,
) -> anyhow::Result<HubSocket> {
    tokio::time::timeout(timeout, connect_inner(target, skip_negotiate, buffers))
        .await
        .with_context(|| format!("timed out after {}", humantime::format_duration(timeout)))?
}

async fn connect_inner(target: &Target, skip_negotiate: bool, buffers: Buffers) -> anyhow::Result<HubSocket> {
    let token = if skip_negotiate { None } else { Some(negotiate(target).await?) };
    let tcp = TcpStream::connect(target.address).await.context("websocket: connect")?;
    tcp.set_nodelay(true)?;
    let url = target.websocket_url(token.as_deref());
    let (mut socket, _response) =
        tokio_tungstenite::client_async_with_config(url, tcp, Some(websocket_config(buffers)))
            .await
            .context("websocket: upgrade")?;
    handshake(&mut socket).await?;
    Ok(socket)
}

/// Sends `{"protocol":"json","version":1}` and waits for the server's answer.
async fn handshake(socket: &mut HubSocket) -> anyhow::Result<()> {
    let request = HandshakeRequest { protocol: "json".into(), version: 1 }.encode();
    let text = Utf8Bytes::try_from(request).context("handshake: request is not UTF-8")?;
    socket.send(Message::Text(text)).await.context("handshake: send")?;
    let mut framer = TextFramer::new(MAX_HANDSHAKE_RECORD);
    loop {
        if let Some(record) = framer.next_record().context("handshake: response")? {
            return match HandshakeResponse::parse(&record).context("handshake: response")? {
                HandshakeResponse::Accepted => Ok(()),
                HandshakeResponse::Refused(error) => bail!("handshake refused: {error}"),
            };
        }
        let chunk: Bytes = match socket.next().await {
            Some(Ok(Message::Text(text))) => text.into(),
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(frame))) => bail!("handshake: server closed the socket ({frame:?})"),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error).context("handshake: receive"),
            None => bail!("handshake: server closed the connection"),
        };
        framer.push(&chunk);
    }
}

/// Reads and discards whatever the server sends (keep-alive pings) until the connection ends.
/// WebSocket-level pings are answered by tungstenite itself while reading.
pub async fn hold(mut socket: HubSocket) {
    while let Some(Ok(message)) = socket.next().await {
        if message.is_close() {
            break;
        }
    }
}
