//! The WebSockets transport: `GET {hub}?id=…` upgraded; Text frames for JSON, Binary frames
//! for MessagePack (the handshake request is always Text).

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::link::MAX_RECORD;
use super::negotiate::Negotiated;
use super::{ClientError, ClientOptions};
use crate::signalr::http::with_query;
use reqwest::Url;

#[derive(Debug)]
pub(super) struct WebSocket {
    socket: WebSocketStream<TcpStream>,
    binary: bool,
}

/// `read` and `write` are [`ClientOptions::read_buffer`] and [`ClientOptions::write_buffer`].
fn config(read: usize, write: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read)
        .write_buffer_size(write)
        .max_message_size(Some(MAX_RECORD))
        .max_frame_size(Some(MAX_RECORD))
}

impl WebSocket {
    /// Dials and upgrades; the token travels as `access_token` in the query.
    pub async fn connect(negotiated: Negotiated, options: &ClientOptions) -> Result<Self, ClientError> {
        let binary = !options.protocol.is_text();
        let url = with_query(
            &negotiated.url,
            &[("id", negotiated.id.as_deref()), ("access_token", negotiated.access_token.as_deref())],
        );
        let host = url.host_str().unwrap_or("localhost").to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let mut tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| ClientError::Transport(format!("websocket: connect {host}:{port}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let tail = upgrade(&mut tcp, &url).await?;
        let socket = WebSocketStream::from_partially_read(
            tcp,
            tail,
            Role::Client,
            Some(config(options.read_buffer, options.write_buffer)),
        )
        .await;
        Ok(Self { socket, binary })
    }

    pub async fn recv(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            return match self.socket.next().await {
                Some(Ok(Message::Text(text))) => Ok(Some(text.into())),
                Some(Ok(Message::Binary(bytes))) => Ok(Some(bytes)),
                Some(Ok(Message::Close(_))) | None => Ok(None),
                // WebSocket pings are answered by tungstenite while reading.
                Some(Ok(_)) => continue,
                Some(Err(error)) => Err(ClientError::Transport(format!("websocket: {error}"))),
            };
        }
    }

    pub async fn send(&mut self, data: Bytes) -> Result<(), ClientError> {
        self.feed(data).await?;
        self.flush().await
    }

    /// Queues a message in the write buffer; with a zero-sized buffer it is written at once.
    pub async fn feed(&mut self, data: Bytes) -> Result<(), ClientError> {
        let message = if self.binary { Message::Binary(data) } else { Message::Text(text(data)?) };
        self.socket.feed(message).await.map_err(|e| ClientError::Transport(format!("websocket: {e}")))
    }

    /// Writes whatever the write buffer holds.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.socket.flush().await.map_err(|e| ClientError::Transport(format!("websocket: {e}")))
    }

    pub async fn send_text(&mut self, data: Bytes) -> Result<(), ClientError> {
        let message = Message::Text(text(data)?);
        self.socket.send(message).await.map_err(|e| ClientError::Transport(format!("websocket: {e}")))
    }

    /// Sends `close` (if any), then a close frame 1000, and waits briefly for the server's.
    pub async fn close(mut self, close: Option<Bytes>) {
        if let Some(close) = close {
            let _ = self.send(close).await;
        }
        let frame = CloseFrame { code: CloseCode::Normal, reason: Utf8Bytes::from_static("") };
        if self.socket.close(Some(frame)).await.is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                while let Some(Ok(_)) = self.socket.next().await {}
            })
            .await;
        }
    }
}

fn text(data: Bytes) -> Result<Utf8Bytes, ClientError> {
    Utf8Bytes::try_from(data).map_err(|e| ClientError::Protocol(format!("text frame: {e}")))
}

/// Largest upgrade response head accepted.
const MAX_UPGRADE_RESPONSE: usize = 8 * 1024;

/// The HTTP/1.1 upgrade, done here rather than by tungstenite: tungstenite's handshake reads
/// into a 4 KiB buffer that the socket then keeps as its read buffer, and 4 KiB per idle
/// connection is more than everything else the client holds for it. Returns the bytes that
/// followed the response head.
async fn upgrade(tcp: &mut TcpStream, url: &Url) -> Result<Vec<u8>, ClientError> {
    let failed = |what: &str| ClientError::Transport(format!("websocket: upgrade: {what}"));
    let key = generate_key();
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or("localhost")),
        None => url.host_str().unwrap_or("localhost").to_owned(),
    };
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.map_err(|e| failed(&e.to_string()))?;
    let mut response = Vec::with_capacity(512);
    let head_len = loop {
        let mut chunk = [0u8; 512];
        let read = tcp.read(&mut chunk).await.map_err(|e| failed(&e.to_string()))?;
        if read == 0 {
            return Err(failed("the server closed the connection"));
        }
        response.extend_from_slice(&chunk[..read]);
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if response.len() > MAX_UPGRADE_RESPONSE {
            return Err(failed("response head too large"));
        }
    };
    let head = String::from_utf8_lossy(&response[..head_len]);
    let status = head.lines().next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("101") {
        return Err(failed(&format!("HTTP status {status:?}")));
    }
    let expected = derive_accept_key(key.as_bytes());
    let accepted = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == expected
        })
    });
    if !accepted {
        return Err(failed("missing or wrong Sec-WebSocket-Accept"));
    }
    Ok(response[head_len..].to_vec())
}
