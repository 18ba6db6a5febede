//! The WebSockets transport: `GET {hub}?id=…` upgraded; Text frames for JSON, Binary frames
//! for MessagePack (the handshake request is always Text).

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::link::MAX_RECORD;
use super::negotiate::Negotiated;
use super::ClientError;
use crate::signalr::http::with_query;

/// Bytes read from the socket per read call: idle connections only receive 11-byte Pings,
/// and a larger message just takes more reads.
const READ_BUFFER: usize = 512;

#[derive(Debug)]
pub(super) struct WebSocket {
    socket: WebSocketStream<TcpStream>,
    binary: bool,
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_RECORD))
        .max_frame_size(Some(MAX_RECORD))
}

impl WebSocket {
    /// Dials and upgrades; the token travels as `access_token` in the query.
    pub async fn connect(negotiated: Negotiated, binary: bool) -> Result<Self, ClientError> {
        let mut url = with_query(
            &negotiated.url,
            &[("id", negotiated.id.as_deref()), ("access_token", negotiated.access_token.as_deref())],
        );
        let host = url.host_str().unwrap_or("localhost").to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        url.set_scheme("ws").map_err(|()| ClientError::Transport("cannot make a ws:// URL".into()))?;
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| ClientError::Transport(format!("websocket: connect {host}:{port}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let (socket, _response) = tokio_tungstenite::client_async_with_config(url.as_str(), tcp, Some(config()))
            .await
            .map_err(|e| ClientError::Transport(format!("websocket: upgrade: {e}")))?;
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
        if self.binary {
            self.write(Message::Binary(data)).await
        } else {
            self.send_text(data).await
        }
    }

    pub async fn send_text(&mut self, data: Bytes) -> Result<(), ClientError> {
        let text = Utf8Bytes::try_from(data).map_err(|e| ClientError::Protocol(format!("text frame: {e}")))?;
        self.write(Message::Text(text)).await
    }

    async fn write(&mut self, message: Message) -> Result<(), ClientError> {
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
