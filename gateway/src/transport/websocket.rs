//! The WebSocket transport: one socket carries the whole connection in both directions.
//!
//! The upgrade task reads frames and feeds their payloads to the hub session; a writer task owns
//! the sending half and drains the connection's outbound queue, coalescing queued messages into
//! few frames and flushing once per batch. It also sends the keep-alive Ping after a quiet
//! interval and gives up on a client whose socket does not accept a write within the send
//! timeout.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::stream::SplitSink;
use futures_util::{future, SinkExt, StreamExt};
use protocol::ProtocolError;
use tokio::sync::mpsc;
use tracing::{debug, Instrument};

use super::connections::ClaimError;
use super::side_by_side::{FirstDone, SideBySide};
use super::text;
use super::{TransportSettings, TransportState};
use crate::auth::Identity;
use crate::cluster::HubLifetime;
use crate::connection::session::{Inbound, Session};
use crate::hub::HubLogic;
use crate::limits::Permit;
use crate::queue::flush_clock::FlushClock;
use crate::queue::outbound::{Next, Outbound};
use crate::request::ConnectionInfo;

/// Largest frame the writer builds by joining queued messages.
const MAX_COALESCED_FRAME: usize = 64 * 1024;
/// How much the socket reader buffers per read; small keeps idle connections cheap.
const READ_BUFFER: usize = 512;

/// Forgets a negotiated token (its entry holds the connection's permit) when its connection
/// ends, or if the upgrade never happens; gives back the permit of a connection that skipped
/// negotiate then too.
struct TokenRelease {
    state: Arc<TransportState>,
    token: Option<String>,
    _permit: Option<Permit>,
}

impl Drop for TokenRelease {
    fn drop(&mut self) {
        if let Some(token) = &self.token {
            self.state.connections.release(token);
        }
    }
}

/// What a WebSocket request opens: the negotiated connection `token` names, or (without a
/// token, the client skipped negotiate) a new one, with `fresh_id` when a connect hook already
/// gave it its id.
pub(super) struct Opening<'a> {
    pub token: Option<&'a str>,
    pub fresh_id: Option<Arc<str>>,
    pub identity: Identity,
    pub info: ConnectionInfo,
    /// Without a token: the new connection's permit under the node's limits.
    pub permit: Option<Permit>,
}

/// Claims the connection named by `token` (or creates one when the client skipped negotiate)
/// and upgrades the request.
pub(super) fn accept(
    state: Arc<TransportState>,
    (hub, lifetime): (Arc<HubLogic>, Arc<HubLifetime>),
    upgrade: WebSocketUpgrade,
    opening: Opening<'_>,
) -> Response {
    let Opening { token, fresh_id, identity, mut info, permit } = opening;
    if let Some(swaps) = token.and_then(|token| state.resumable.swaps(token)) {
        return resume(&state, upgrade, swaps);
    }
    if state.is_shutting_down() {
        return super::shutting_down();
    }
    let connection_id: Arc<str> = match token {
        None => fresh_id.unwrap_or_else(|| Arc::from(state.node.new_connection_id())),
        Some(token) => match state.connections.claim(token, lifetime.name()) {
            Ok(id) => id,
            Err(ClaimError::NotFound) => {
                return super::no_such_connection("a WebSocket names no negotiated connection")
            }
            Err(ClaimError::InUse) => return text(StatusCode::CONFLICT, ""),
            Err(ClaimError::OtherTransport) => {
                return text(StatusCode::BAD_REQUEST, "Cannot change transports mid-connection")
            }
        },
    };
    let release = TokenRelease { state: state.clone(), token: token.map(str::to_owned), _permit: permit };
    let resumable = token.filter(|token| state.resumable.is_granted(token)).map(str::to_owned);
    info.stateful_reconnect = resumable.is_some();
    let config = &state.config;
    let span = crate::connection::span(&connection_id, lifetime.name(), info.transport, &identity);
    let tasks = state.tasks.clone();
    upgrade
        .read_buffer_size(READ_BUFFER)
        .max_message_size(config.max_websocket_message)
        .max_frame_size(frame_limit(config.max_websocket_message))
        .on_upgrade(move |socket| {
            let outbound = Arc::new(Outbound::new(state.config.outbound_queue_bytes));
            let env = state.sessions.clone();
            let info = Arc::new(info);
            let session = Box::new(Session { env, hub, lifetime, connection_id, identity, outbound, info });
            // Split here, outside any async block, so the WebSocket value is never part of a
            // future's state.
            let (sink, stream) = socket.split();
            let Some(token) = resumable else {
                let plain = async move {
                    serve(sink, stream, session, &state.config).await;
                    drop(release);
                };
                return tasks.track_future(future::Either::Left(plain).instrument(span));
            };
            let (swaps, replacements) = mpsc::channel(1);
            state.resumable.go_live(&token, swaps);
            // Boxed, so that the larger resumable connection does not size every plain one.
            let resumable = Box::pin(async move {
                serve_resumable(sink, stream, session, replacements, &state.config).await;
                state.resumable.forget(&token);
                drop(release);
            });
            tasks.track_future(future::Either::Right(resumable).instrument(span))
        })
}

async fn serve(
    sink: Sink,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    session: Box<Session>,
    config: &TransportSettings,
) {
    let outbound = session.outbound.clone();
    let timing = WriterTiming {
        keep_alive: config.keep_alive_interval,
        send_timeout: config.send_timeout,
        flush: config.flush_clock.clone(),
    };
    let send_timeout = timing.send_timeout;
    // The writer runs in this task, beside the session, rather than in a task of its own: an
    // idle connection then costs one task, not two (docs/benchmarks.md, "Idle connections").
    let mut writer = std::pin::pin!(write_loop(sink, outbound.clone(), timing, WriterStart::fresh()));
    let limit = config.max_websocket_message;
    let writer_ended = {
        let incoming = std::pin::pin!((&mut stream)
            .map(move |frame| read_frame(frame, &outbound, limit))
            .take_while(|read| future::ready(!matches!(read, Read::End)))
            .filter_map(|read| future::ready(read.into_inbound())));
        let mut reading = std::pin::pin!(session.run(incoming));
        // The session is polled only when it was woken (see `side_by_side`).
        match SideBySide::new(reading.as_mut(), writer.as_mut()).await {
            FirstDone::Quiet(()) => None,
            FirstDone::Busy(delivered) => {
                // The socket cannot be written: the session notices and ends on its own.
                reading.await;
                Some(delivered)
            }
        }
    };
    // Give the writer the time it needs to deliver the Close, then drop the socket regardless.
    // A client that did not take our Close (its socket is stuck) will not answer it: no linger.
    let delivered = match writer_ended {
        Some(delivered) => delivered,
        None => tokio::time::timeout(send_timeout * 2, writer).await.unwrap_or(false),
    };
    if delivered {
        await_client_close(&mut stream).await;
    }
}

/// How long a closed connection waits for the client's close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Reads (and drops) what the client still sends until its close frame answers ours, the
/// socket ends, or [`CLOSE_LINGER`] passes. Closing the TCP connection with unread input would
/// make the kernel reset it, and the client would see its own close frame fail (or lose what
/// it was still reading) instead of a clean close.
async fn await_client_close(stream: &mut futures_util::stream::SplitStream<WebSocket>) {
    let drained = async {
        while let Some(Ok(frame)) = stream.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, drained).await;
}

/// Hands a new socket to the live connection it resumes.
fn resume(state: &TransportState, upgrade: WebSocketUpgrade, swaps: SocketSwaps) -> Response {
    upgrade
        .read_buffer_size(READ_BUFFER)
        .max_message_size(state.config.max_websocket_message)
        .max_frame_size(frame_limit(state.config.max_websocket_message))
        .on_upgrade(move |socket| async move {
            if swaps.try_send(socket).is_err() {
                debug!("the connection ended or is already resuming; new socket dropped");
            }
        })
}

/// Replacement sockets for a connection with stateful reconnect, handed over by the upgrade
/// requests that present its token again.
pub(crate) type SocketSwaps = mpsc::Sender<WebSocket>;

/// Serves a connection that may resume on a new socket: the session reads one continuous
/// stream, fed by whichever socket is current. When a socket drops without a close handshake,
/// the connection waits up to the disconnect timeout for a replacement; the replacement's
/// writer first sends Sequence and every unacknowledged message. A clean close ends it.
async fn serve_resumable(
    sink: Sink,
    stream: futures_util::stream::SplitStream<WebSocket>,
    session: Box<Session>,
    swaps: mpsc::Receiver<WebSocket>,
    config: &TransportSettings,
) {
    let outbound = session.outbound.clone();
    let timing = WriterTiming {
        keep_alive: config.keep_alive_interval,
        send_timeout: config.send_timeout,
        flush: config.flush_clock.clone(),
    };
    tokio::spawn(write_loop(sink, outbound.clone(), timing.clone(), WriterStart::fresh()).in_current_span());
    let limit = config.max_websocket_message;
    let send_timeout = timing.send_timeout;
    let resume = Resume { stream, swaps, outbound: outbound.clone(), timing, wait: config.disconnect_timeout, limit };
    let incoming = futures_util::stream::unfold(resume, Resume::next_chunk);
    session.run(std::pin::pin!(incoming)).await;
    // The writer of the current socket delivers the Close and ends by itself.
    let _ = tokio::time::timeout(send_timeout * 2, outbound.closed().cancelled()).await;
}

/// The reading side of a resumable connection.
struct Resume {
    stream: futures_util::stream::SplitStream<WebSocket>,
    swaps: mpsc::Receiver<WebSocket>,
    outbound: Arc<Outbound>,
    timing: WriterTiming,
    wait: Duration,
    /// The largest WebSocket message accepted (`--max-websocket-message`).
    limit: usize,
}

impl Resume {
    async fn next_chunk(mut self) -> Option<(Inbound, Self)> {
        loop {
            let Some(frame) = self.stream.next().await else {
                self.swap_socket().await?;
                continue;
            };
            let failed = frame.is_err();
            match read_frame(frame, &self.outbound, self.limit) {
                Read::Chunk(inbound) => return Some((inbound, self)),
                Read::Skip => continue,
                Read::End if failed => self.swap_socket().await?,
                Read::End => return None,
            }
        }
    }

    /// Waits for a replacement socket and makes it current; `None` when none came in time.
    async fn swap_socket(&mut self) -> Option<()> {
        if !self.outbound.replays() {
            // The handshake did not turn stateful reconnect on (version 1).
            return None;
        }
        debug!("socket lost; waiting for the client to resume");
        let socket = tokio::time::timeout(self.wait, self.swaps.recv()).await.ok()??;
        let (sink, stream) = socket.split();
        let start = WriterStart::resumed(&self.outbound);
        tokio::spawn(write_loop(sink, self.outbound.clone(), self.timing.clone(), start).in_current_span());
        self.stream = stream;
        debug!("resumed on a new socket");
        Some(())
    }
}

/// The largest single frame read. Twice the message limit, so that a message a little over the
/// limit is read whole before it is refused: the server then closes with nothing of it left
/// unread, and the kernel delivers the Close instead of resetting the connection (which would
/// discard it). A frame announcing more than this is refused from its header.
fn frame_limit(message_limit: usize) -> usize {
    message_limit.saturating_mul(2)
}

/// What one frame read from the socket means for the session.
enum Read {
    /// Input for the session: payload bytes, or a refusal that ends it with an error Close.
    Chunk(Inbound),
    /// A frame without payload for the session (ping, pong).
    Skip,
    /// The client closed, or the socket failed.
    End,
}

impl Read {
    fn into_inbound(self) -> Option<Inbound> {
        match self {
            Self::Chunk(inbound) => Some(inbound),
            Self::Skip | Self::End => None,
        }
    }
}

/// Interprets one frame. Once the handshake chose MessagePack, a text frame is refused: its
/// bytes would be read as a length prefix and leave the connection waiting for a message that
/// never comes. A binary frame on a JSON connection is read like text, as the official server
/// does (the bytes must still be UTF-8 JSON records). A message over the WebSocket limit is
/// refused with the limit named, so the client gets a Close saying so and close code 1009.
fn read_frame(frame: Result<Message, axum::Error>, outbound: &Outbound, limit: usize) -> Read {
    match frame {
        Ok(Message::Text(_)) if outbound.is_binary() => Read::Chunk(Err(ProtocolError::Malformed(
            "a text frame was received on a MessagePack connection, which needs binary frames".into(),
        ))),
        Ok(Message::Text(text)) => Read::Chunk(Ok(Bytes::from(text))),
        Ok(Message::Binary(bytes)) => Read::Chunk(Ok(bytes)),
        Ok(Message::Close(_)) => Read::End,
        Ok(_) => Read::Skip,
        Err(error) if is_capacity_error(&error) => {
            Read::Chunk(Err(ProtocolError::MessageTooLarge { size: limit.saturating_add(1), limit }))
        }
        Err(_) => Read::End,
    }
}

/// Whether the socket refused a message or frame over its size limit.
fn is_capacity_error(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(tungstenite::Error::Capacity(_)) = current.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = current.source();
    }
    false
}

/// Where a writer starts: its generation, and what it writes before the queue.
struct WriterStart {
    generation: Option<u64>,
    first: Vec<Bytes>,
}

impl WriterStart {
    /// The first writer of a connection.
    fn fresh() -> Self {
        Self { generation: None, first: Vec::new() }
    }

    /// The writer of a replacement socket: it takes over from any older writer and replays.
    fn resumed(outbound: &Outbound) -> Self {
        let (generation, first) = outbound.resume();
        Self { generation: Some(generation), first }
    }
}

type Sink = SplitSink<WebSocket, Message>;

/// Timing of one connection's writer.
#[derive(Clone)]
struct WriterTiming {
    keep_alive: Duration,
    send_timeout: Duration,
    /// The clock a writer holds on to between two writes while traffic is dense
    /// (`--flush-delay`); none writes every message at once.
    flush: Option<Arc<FlushClock>>,
}

/// What the writer does next, decided while it waits.
async fn next_step(
    outbound: &Outbound,
    generation: u64,
    batch: &mut Vec<Bytes>,
    timing: &WriterTiming,
) -> Option<Next> {
    match tokio::time::timeout(timing.keep_alive, outbound.next_batch_as(Some(generation), batch)).await {
        Ok(next) => Some(next),
        Err(_quiet) => {
            let ping = outbound.keep_alive()?;
            batch.push(ping);
            Some(Next::Write)
        }
    }
}

/// Adaptive write coalescing. After a write that came soon after the one before (within two
/// periods of the node's [`FlushClock`], `--flush-delay`), the writer holds back until the
/// clock's next tick, then takes whatever was queued meanwhile, so dense traffic shares one
/// write per tick. A connection that wrote nothing for a while neither waits nor holds: its
/// next messages are written at once, at no cost over writing without coalescing. A reply, the
/// end of the connection or a full batch cuts a hold short.
async fn hold_after_write(
    outbound: &Outbound,
    generation: u64,
    batch: &mut Vec<Bytes>,
    timing: &WriterTiming,
    (previous, this): (Option<tokio::time::Instant>, tokio::time::Instant),
) -> Option<Next> {
    let clock = timing.flush.as_ref()?;
    let dense = previous.is_some_and(|at| this.duration_since(at) < clock.period() * 2);
    if !dense {
        return None;
    }
    outbound.hold_until(Some(generation), clock.next_tick()).await;
    outbound.take_queued_as(Some(generation), batch)
}

/// Writes the connection's messages until it ends; returns whether its Close frame was
/// written (`false`: a write failed or timed out, or a newer socket took over).
async fn write_loop(mut sink: Sink, outbound: Arc<Outbound>, timing: WriterTiming, start: WriterStart) -> bool {
    let generation = start.generation.unwrap_or_else(|| outbound.writer_generation());
    let mut batch = start.first;
    let mut ready = (!batch.is_empty()).then_some(Next::Write);
    let mut previous_write = None;
    loop {
        let next = match ready.take() {
            Some(next) => Some(next),
            None => next_step(&outbound, generation, &mut batch, &timing).await,
        };
        let Some(next) = next else { continue };
        if outbound.writer_generation() != generation {
            // A newer socket took over; what this writer holds is replayed there. A wake-up
            // this writer consumed was meant for the new one.
            outbound.pass_wake_up();
            return false;
        }
        let ending = match next {
            Next::Superseded => {
                outbound.pass_wake_up();
                return false;
            }
            Next::Write => None,
            Next::End(ending) => {
                batch.extend(ending.last.clone());
                Some(ending)
            }
        };
        let binary = outbound.is_binary();
        let written = tokio::time::timeout(timing.send_timeout, write_batch(&mut sink, &mut batch, binary)).await;
        if !matches!(written, Ok(Ok(()))) {
            if outbound.replays() {
                // Stateful reconnect: the connection outlives this socket and what was not
                // acknowledged is written again on the next one.
                debug!("write failed; waiting for the client to resume");
                return false;
            }
            debug!("write failed or timed out; dropping the connection");
            outbound.abort();
            return false;
        }
        if batch.capacity() <= 8 {
            // Small batches: do not keep their allocation alive while the connection idles.
            batch = Vec::new();
        }
        if let Some(ending) = ending {
            let code = ending.status.websocket_code();
            let close = Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static("") }));
            let sent = tokio::time::timeout(timing.send_timeout, sink.send(close)).await;
            return matches!(sent, Ok(Ok(())));
        }
        let wrote_at = tokio::time::Instant::now();
        let writes = (previous_write.replace(wrote_at), wrote_at);
        ready = hold_after_write(&outbound, generation, &mut batch, &timing, writes).await;
    }
}

/// Writes every queued message, joined into as few frames as the size cap allows, and flushes
/// once. MessagePack connections get binary frames, JSON ones text frames: the official client
/// hands a frame to the protocol only if its type matches.
async fn write_batch(sink: &mut Sink, batch: &mut Vec<Bytes>, binary: bool) -> Result<(), axum::Error> {
    for frame in coalesce(batch.drain(..)) {
        let message = if binary {
            Message::Binary(frame)
        } else {
            // Every message is a complete UTF-8 JSON record, so any concatenation of them is too.
            Message::Text(Utf8Bytes::try_from(frame).map_err(axum::Error::new)?)
        };
        sink.feed(message).await?;
    }
    sink.flush().await
}

/// Joins consecutive messages into frames of at most [`MAX_COALESCED_FRAME`] bytes (a single
/// larger message gets a frame of its own). Frames only ever hold whole messages.
fn coalesce(messages: impl Iterator<Item = Bytes>) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut current = BytesMut::new();
    for message in messages {
        if !current.is_empty() && current.len() + message.len() > MAX_COALESCED_FRAME {
            frames.push(current.split().freeze());
        }
        if current.is_empty() && message.len() >= MAX_COALESCED_FRAME {
            frames.push(message);
            continue;
        }
        current.extend_from_slice(&message);
    }
    if !current.is_empty() {
        frames.push(current.freeze());
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_messages_share_a_frame_and_large_ones_stand_alone() {
        let small = Bytes::from_static(b"{\"type\":6}\x1e");
        let large = Bytes::from(vec![b'x'; MAX_COALESCED_FRAME + 1]);
        let frames = coalesce([small.clone(), small.clone(), large.clone(), small.clone()].into_iter());
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].len(), small.len() * 2);
        assert_eq!(frames[1], large);
        assert_eq!(frames[2], small);
    }

    #[test]
    fn frames_never_exceed_the_cap_when_messages_fit() {
        let message = Bytes::from(vec![b'a'; 1000]);
        let frames = coalesce(std::iter::repeat_n(message, 200));
        assert!(frames.iter().all(|f| f.len() <= MAX_COALESCED_FRAME));
        assert_eq!(frames.iter().map(Bytes::len).sum::<usize>(), 200_000);
    }
}
