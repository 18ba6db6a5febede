//! The hub session: handshake, then messages, until either side ends the connection.
//!
//! The session is transport-neutral: it reads byte chunks from a stream (WebSocket messages,
//! or the bodies of HTTP POSTs) and writes encoded messages to the connection's [`Outbound`]
//! queue. Each invocation runs in its own task (up to a per-connection limit, one by default as
//! in the official server), so the reader keeps handling pings, client results and the client
//! timeout while a slow method runs. A hub's ordered methods (the relay hub's sends) run in the
//! reader itself once earlier calls have finished, so they keep the sender's order at any limit.
//! Streams run in the background once started; their state is kept in [`Running`], created on
//! first use.
//!
//! Client errors: a message of an unknown type is ignored (and counted), as the hub protocol
//! asks for forward compatibility; any other bad input ends the connection with an error
//! Close whose text names the problem only with detailed errors on, as the official server's.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use protocol::{
    Close, Completion, CompletionOutcome, Framer, HandshakeRequest, HandshakeResponse, HubMessage, Invocation,
    Protocol, ProtocolError, TextFramer,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout_at, Instant};
use tracing::{debug, info, warn, Instrument};

use super::streams::{OutboundSink, Refusal, Running, Uploads};
use super::ConnectionInfo;
use crate::auth::Identity;
use crate::cluster::{HubLifetime, Member};
use crate::hub::dispatch::{self, StreamSink};
use crate::hub::upload::{UploadItem, UploadSender};
use crate::hub::HubLogic;
use crate::hub::{HubContext, HubError};
use crate::metrics::{DisconnectReason, HandshakeFailure, Metrics};
use crate::queue::outbound::{EndStatus, Outbound};
use crate::queue::stateful::{is_trackable, InboundSequence};

/// One item of a session's input: bytes from the transport, or input the transport refused
/// (e.g. a text frame on a MessagePack connection), which ends the session with an error Close.
pub(crate) type Inbound = Result<Bytes, ProtocolError>;

/// What a session needs from its node, and nothing more: limits and timers, metrics, the
/// shutdown signal and the tracker its tasks run under. Built once per node.
pub(crate) struct SessionEnv {
    pub limits: SessionLimits,
    pub metrics: Arc<Metrics>,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub tasks: tokio_util::task::TaskTracker,
}

/// The limits and timers of every session (see the options of the same names).
#[derive(Debug, Clone)]
pub(crate) struct SessionLimits {
    pub max_message_size: usize,
    pub handshake_timeout: std::time::Duration,
    pub client_timeout: std::time::Duration,
    pub max_parallel_invocations: usize,
    pub max_streams_per_connection: usize,
    pub outbound_queue_bytes: usize,
    pub detailed_errors: bool,
}

/// What a session needs to run.
pub(crate) struct Session {
    pub env: Arc<SessionEnv>,
    /// The logic of the hub its endpoint serves: what the connection's calls do. Shared with
    /// the endpoint (one pointer per connection rather than a copy of the hub's handles).
    pub hub: Arc<HubLogic>,
    pub lifetime: Arc<HubLifetime>,
    pub connection_id: Arc<str>,
    pub identity: Identity,
    pub outbound: Arc<Outbound>,
    pub info: Arc<ConnectionInfo>,
}

/// Why the message loop ended.
#[derive(Debug, PartialEq)]
enum End {
    /// The transport closed (client went away or the writer failed).
    TransportClosed,
    /// The client sent a Close message.
    ClientClosed,
    /// The client broke the protocol.
    ProtocolError(ProtocolError),
    /// The client stopped sending within the client timeout.
    ClientTimeout,
    /// The server is shutting down.
    Shutdown,
}

const CLOSED_WITH_ERROR: &str = "Connection closed with an error.";

impl End {
    /// What went wrong, for a hook told of the disconnect; `None` for a clean end.
    fn error_text(&self) -> Option<String> {
        match self {
            End::ProtocolError(error) => Some(format!("{CLOSED_WITH_ERROR} InvalidDataException: {error}")),
            End::ClientTimeout => {
                Some(format!("{CLOSED_WITH_ERROR} The server timed out waiting for a message from the client."))
            }
            End::TransportClosed | End::ClientClosed | End::Shutdown => None,
        }
    }
}

impl Session {
    /// Runs the session over `incoming` until the connection ends.
    pub async fn run(self, mut incoming: impl Stream<Item = Inbound> + Unpin) {
        let config = &self.env.limits;
        let mut handshake_framer = TextFramer::new(config.max_message_size);
        let metrics = &self.env.metrics;
        let (protocol, version) = match self.handshake(&mut handshake_framer, &mut incoming).await {
            Ok(accepted) => accepted,
            Err((failure, Some(refusal))) => {
                metrics.handshake_failed(failure);
                info!(reason = %refusal, "handshake refused");
                self.outbound.finish(Some(HandshakeResponse::Refused(refusal).encode()), EndStatus::Normal);
                return;
            }
            Err((failure, None)) => {
                metrics.handshake_failed(failure);
                return self.outbound.abort();
            }
        };
        tracing::Span::current().record("protocol", protocol.name());
        let framer = protocol.framer(config.max_message_size, handshake_framer.into_remaining());
        let member = Member::new(self.outbound.clone(), self.identity.user_id.clone(), protocol);
        self.lifetime.connect(self.connection_id.clone(), member).await;
        // The writer learns the frame type before anything of the protocol is queued; the
        // handshake reply is the first thing queued, so it precedes anything the hub sends.
        self.outbound.set_protocol(protocol);
        self.outbound.count_in(metrics.outbound.clone());
        metrics.connected(self.info.transport, protocol);
        let _ = self.outbound.push_reply(HandshakeResponse::Accepted.encode());
        // Stateful reconnect needs both: negotiated for this connection, and handshake
        // version 2 (clients ask for version 1 on transports that cannot resume).
        let stateful = version >= 2 && self.info.stateful_reconnect;
        if stateful {
            self.outbound.enable_replay();
        }
        if self.info.transport.uses_keep_alive() {
            self.outbound.set_keep_alive(protocol.encoded_ping());
        }
        debug!(protocol = protocol.name(), "connected");
        let context = self.context(protocol);
        self.hub.connected(context.clone()).await;

        let inbound = stateful.then(InboundSequence::default);
        let mut running = None;
        let end = self.message_loop(protocol, framer, inbound, &mut running, &mut incoming).await;
        if let Some(running) = running {
            running.close();
        }
        self.lifetime.disconnect(&self.connection_id).await;
        let ended = tokio_util::sync::CancellationToken::new();
        ended.cancel();
        self.hub.disconnected(context.with_cancellation(ended), end.error_text()).await;
        metrics.disconnected(self.info.transport, protocol, self.disconnect_reason(&end));
        self.finish(protocol, end);
    }

    fn context(&self, protocol: Protocol) -> HubContext {
        HubContext::new(
            self.connection_id.clone(),
            self.identity.clone(),
            self.lifetime.clone(),
            self.info.clone(),
            protocol,
        )
    }

    /// Why a session that completed its handshake ended, as metrics tell it.
    fn disconnect_reason(&self, end: &End) -> DisconnectReason {
        match end {
            End::TransportClosed if self.outbound.was_slow_consumer() => DisconnectReason::SlowConsumer,
            End::TransportClosed if self.outbound.ended_by_server() => DisconnectReason::ServerClosed,
            End::TransportClosed => DisconnectReason::TransportClosed,
            End::ClientClosed => DisconnectReason::ClientClosed,
            End::ProtocolError(_) => DisconnectReason::ProtocolError,
            End::ClientTimeout => DisconnectReason::Timeout,
            End::Shutdown => DisconnectReason::Shutdown,
        }
    }

    /// Reads the handshake. `Err((_, Some(text)))` is a refusal to send; `Err((_, None))` means
    /// the transport went away first.
    async fn handshake(
        &self,
        framer: &mut TextFramer,
        incoming: &mut (impl Stream<Item = Inbound> + Unpin),
    ) -> Result<(Protocol, u32), (HandshakeFailure, Option<String>)> {
        let deadline = Instant::now() + self.env.limits.handshake_timeout;
        let canceled = |failure| (failure, Some("Handshake was canceled.".to_owned()));
        let record = loop {
            match framer.next_record() {
                Ok(Some(record)) => break record,
                Ok(None) => {}
                Err(_) => return Err(canceled(HandshakeFailure::Malformed)),
            }
            match timeout_at(deadline, incoming.next()).await {
                Ok(Some(Ok(chunk))) => framer.push(&chunk),
                Ok(Some(Err(_))) => return Err(canceled(HandshakeFailure::Malformed)),
                Ok(None) => return Err((HandshakeFailure::TransportClosed, None)),
                Err(_) => return Err(canceled(HandshakeFailure::Timeout)),
            }
        };
        let request = HandshakeRequest::parse(&record).map_err(|e| {
            let text = format!("An unexpected error occurred during connection handshake. InvalidDataException: {e}");
            (HandshakeFailure::Malformed, Some(text))
        })?;
        let unsupported = |text| (HandshakeFailure::UnsupportedProtocol, Some(text));
        let protocol = Protocol::from_name(&request.protocol)
            .ok_or_else(|| unsupported(format!("The protocol '{}' is not supported.", request.protocol)))?;
        if request.version > Protocol::MAX_VERSION {
            return Err(unsupported(format!(
                "The server does not support version {} of the '{}' protocol.",
                request.version, request.protocol
            )));
        }
        if !protocol.is_text() && !self.info.transport.carries_binary() {
            return Err((HandshakeFailure::UnsupportedTransferFormat, Some(format!(
                "Cannot use the '{}' protocol on the current transport. The transport does not support 'Binary' transfer format.",
                protocol.name()
            ))));
        }
        Ok((protocol, request.version))
    }

    async fn message_loop(
        &self,
        protocol: Protocol,
        mut framer: Framer,
        mut inbound: Option<InboundSequence>,
        running: &mut Option<Box<Running>>,
        incoming: &mut (impl Stream<Item = Inbound> + Unpin),
    ) -> End {
        let config = &self.env.limits;
        // With stateful reconnect, processed messages are acknowledged about once a second.
        let mut ack_timer = inbound.as_ref().map(|_| tokio::time::interval(ACK_INTERVAL));
        let slots = Arc::new(Semaphore::new(config.max_parallel_invocations));
        let mut last_message = Instant::now();
        // As in the official server, the client timeout starts with the client's first Ping, so
        // clients that never ping are not dropped. An unfinished message always arms it.
        // Long-polling clients never ping; their polls keep them alive.
        let mut client_pings = false;
        let timeout_applies = self.info.transport.uses_keep_alive();
        loop {
            loop {
                let record = match framer.next_record() {
                    Ok(Some(record)) => record,
                    Ok(None) => break,
                    Err(error) => return End::ProtocolError(error),
                };
                last_message = Instant::now();
                let message = match protocol.decode(&record) {
                    Ok(message) => message,
                    Err(ProtocolError::UnknownMessageType(kind)) => {
                        debug!(kind, "ignored a message of an unknown type");
                        self.env.metrics.unknown_message();
                        continue;
                    }
                    Err(error) => return End::ProtocolError(error),
                };
                self.env.metrics.inbound_message();
                let message = match track(&mut inbound, &self.outbound, message) {
                    Ok(Some(message)) => message,
                    Ok(None) => continue,
                    Err(error) => return End::ProtocolError(error),
                };
                // Boxed: the handling future is large and only exists while a message is handled;
                // inline, it would enlarge every idle connection's task.
                let handled = self.handle(protocol, message, &slots, running, &mut client_pings);
                if let Some(end) = Box::pin(handled).await {
                    return end;
                }
            }
            let deadline = (timeout_applies && (client_pings || framer.has_partial_record()))
                .then(|| last_message + config.client_timeout);
            let chunk = tokio::select! {
                biased;
                _ = self.env.shutdown.cancelled() => return End::Shutdown,
                _ = self.outbound.closed().cancelled() => return End::TransportClosed,
                _ = next_tick(&mut ack_timer) => {
                    self.send_ack(protocol, &mut inbound);
                    continue;
                }
                chunk = next_before(incoming, deadline) => chunk,
            };
            let chunk = match chunk {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(Some(Err(refused))) => return End::ProtocolError(refused),
                Ok(None) => return End::TransportClosed,
                Err(Elapsed) => return End::ClientTimeout,
            };
            self.env.metrics.inbound_bytes(chunk.len());
            framer.push(&chunk);
        }
    }

    /// Acts on one message; `Some` ends the session.
    async fn handle(
        &self,
        protocol: Protocol,
        message: HubMessage,
        slots: &Arc<Semaphore>,
        running: &mut Option<Box<Running>>,
        client_pings: &mut bool,
    ) -> Option<End> {
        match message {
            HubMessage::Invocation(invocation) => return self.invoke(protocol, invocation, slots, running).await,
            HubMessage::StreamInvocation(invocation) => {
                return self.start_stream(protocol, invocation, slots, running).await;
            }
            HubMessage::StreamItem(item) => {
                let sender = running.as_ref().and_then(|running| running.upload_sender(&item.invocation_id));
                if let Some(sender) = sender {
                    return self.feed(&sender, Ok(item.item)).await;
                }
            }
            HubMessage::Completion(completion) => return self.complete(completion, running).await,
            HubMessage::CancelInvocation { invocation_id, .. } => {
                if let Some(running) = running.as_mut() {
                    running.cancel(&invocation_id);
                }
            }
            HubMessage::Ping => *client_pings = true,
            HubMessage::Close(_) => return Some(End::ClientClosed),
            // Stateful reconnect consumed these already when it is on; otherwise they carry
            // nothing to act on.
            HubMessage::Ack { .. } | HubMessage::Sequence { .. } => {}
        }
        None
    }

    /// Starts a call in its own task. A method reading upload streams needs the reader to feed
    /// them, so it does not hold a slot (the reader could wait for one forever); its uploads
    /// count against the stream limit instead.
    async fn invoke(
        &self,
        protocol: Protocol,
        invocation: Invocation,
        slots: &Arc<Semaphore>,
        running: &mut Option<Box<Running>>,
    ) -> Option<End> {
        if invocation.stream_ids.is_empty() && self.hub.runs_in_order(&invocation.target) {
            return self.invoke_in_order(protocol, invocation, slots, running).await;
        }
        let mut permit = None;
        if invocation.stream_ids.is_empty() {
            let Some(slot) = self.invocation_slot(slots).await else { return Some(End::Shutdown) };
            permit = Some(slot);
        }
        let running = self.running(running);
        match running.open_uploads(&invocation.stream_ids) {
            Ok(uploads) => {
                let context = self.context(protocol).with_cancellation(running.connection_token());
                self.spawn_invocation(protocol, context, invocation, uploads, permit);
            }
            Err(refusal) => self.refuse(protocol, &invocation, &refusal),
        }
        None
    }

    /// Runs a call of an ordered method here in the reader, once every earlier call of the
    /// connection has finished (it takes all invocation slots for its duration): the next
    /// message is read only after it took effect.
    async fn invoke_in_order(
        &self,
        protocol: Protocol,
        invocation: Invocation,
        slots: &Arc<Semaphore>,
        running: &mut Option<Box<Running>>,
    ) -> Option<End> {
        let every_slot = u32::try_from(self.env.limits.max_parallel_invocations).unwrap_or(u32::MAX);
        let _idle = tokio::select! {
            _ = self.env.shutdown.cancelled() => return Some(End::Shutdown),
            permits = slots.acquire_many(every_slot) => permits.ok(),
        };
        let context = self.context(protocol).with_cancellation(self.running(running).connection_token());
        let target = invocation.target.clone();
        let hub = &self.hub;
        let (outcome, completion) =
            dispatch::invoke(hub, context, invocation, Vec::new(), self.env.limits.detailed_errors).await;
        self.env.metrics.invoked(outcome);
        if let Some(completion) = completion {
            send_completion(&self.outbound, protocol, &target, completion);
        }
        None
    }

    /// Starts a StreamInvocation in the background, unless its id is taken or the connection
    /// runs as many streams as it may.
    async fn start_stream(
        &self,
        protocol: Protocol,
        invocation: Invocation,
        slots: &Arc<Semaphore>,
        running: &mut Option<Box<Running>>,
    ) -> Option<End> {
        let Some(permit) = self.invocation_slot(slots).await else { return Some(End::Shutdown) };
        let id = invocation.invocation_id.as_deref().unwrap_or_default();
        match self.running(running).start_stream(id, &invocation.stream_ids) {
            Ok(uploads) => self.spawn_stream(protocol, invocation, uploads, permit),
            Err(refusal) => self.refuse(protocol, &invocation, &refusal),
        }
        None
    }

    /// The connection's background state, created on first use.
    fn running<'a>(&self, running: &'a mut Option<Box<Running>>) -> &'a mut Running {
        running.get_or_insert_with(|| Running::new(self.env.limits.max_streams_per_connection))
    }

    /// A Completion from the client ends one of its upload streams, or else answers a
    /// client-result invocation.
    async fn complete(&self, completion: Completion, running: &mut Option<Box<Running>>) -> Option<End> {
        let upload = running.as_mut().and_then(|running| running.complete_upload(&completion.invocation_id));
        let Some(sender) = upload else {
            self.client_completion(completion);
            return None;
        };
        match completion.outcome {
            CompletionOutcome::Error(text) => self.feed(&sender, Err(text)).await,
            // Dropping the sender ends the stream once its buffered items are read.
            CompletionOutcome::Void | CompletionOutcome::Value(_) => None,
        }
    }

    /// A Completion answering an invocation the server awaits from this client (a client
    /// result). Handled here in the reader, never behind an invocation slot, so a hub method
    /// awaiting its own caller's answer cannot deadlock the connection.
    fn client_completion(&self, completion: protocol::Completion) {
        self.lifetime.complete_client_result(&self.connection_id, completion);
    }

    /// Waits for a free invocation slot; `None` when the server is shutting down.
    async fn invocation_slot(&self, slots: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            _ = self.env.shutdown.cancelled() => None,
            permit = slots.clone().acquire_owned() => permit.ok(),
        }
    }

    /// Hands an item to an upload stream, waiting while its buffer is full. The method may
    /// have finished meanwhile; the item is then dropped.
    async fn feed(&self, sender: &UploadSender, item: UploadItem) -> Option<End> {
        tokio::select! {
            biased;
            _ = self.env.shutdown.cancelled() => Some(End::Shutdown),
            _ = self.outbound.closed().cancelled() => Some(End::TransportClosed),
            _ = sender.send(item) => None,
        }
    }

    /// Answers a call that could not start (only when it has an id).
    fn refuse(&self, protocol: Protocol, invocation: &Invocation, refusal: &Refusal) {
        let Some(id) = invocation.invocation_id.clone() else { return };
        let text = match refusal {
            Refusal::IdInUse(_) => refusal.to_string(),
            Refusal::TooMany(_) => HubError::hub(refusal.to_string()).client_text(&invocation.target, false),
        };
        self.reply(protocol, HubMessage::Completion(Completion::new(id, CompletionOutcome::Error(text))));
    }

    /// Runs a StreamInvocation in the background. The slot is held only until the stream
    /// has started, as the official server does.
    fn spawn_stream(&self, protocol: Protocol, invocation: Invocation, uploads: Uploads, permit: OwnedSemaphorePermit) {
        let hub = self.hub.clone();
        let Uploads { receivers, done } = uploads;
        let context = self.context(protocol).with_cancellation(done.clone());
        let mut sink = OutboundSink::new(self.outbound.clone(), protocol, self.env.limits.outbound_queue_bytes);
        let detailed = self.env.limits.detailed_errors;
        let metrics = self.env.metrics.clone();
        let task = async move {
            let (outcome, completion) =
                dispatch::stream(&hub, context, invocation, receivers, permit, detailed, &mut sink).await;
            metrics.invoked(outcome);
            // Marks the id free before the client can learn that the stream ended.
            done.cancel();
            let _ = sink.send(HubMessage::Completion(completion)).await;
        };
        self.env.tasks.spawn(task.in_current_span());
    }

    fn spawn_invocation(
        &self,
        protocol: Protocol,
        context: HubContext,
        invocation: Invocation,
        uploads: Uploads,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let hub = self.hub.clone();
        let outbound = self.outbound.clone();
        let detailed = self.env.limits.detailed_errors;
        let metrics = self.env.metrics.clone();
        let task = async move {
            let _permit = permit;
            let _close_uploads = uploads.done.drop_guard();
            let target = invocation.target.clone();
            let (outcome, completion) = dispatch::invoke(&hub, context, invocation, uploads.receivers, detailed).await;
            metrics.invoked(outcome);
            if let Some(completion) = completion {
                send_completion(&outbound, protocol, &target, completion);
            }
        };
        self.env.tasks.spawn(task.in_current_span());
    }

    fn reply(&self, protocol: Protocol, message: HubMessage) {
        if let Ok(bytes) = protocol.encode(&message) {
            let _ = self.outbound.push_reply(bytes);
        }
    }

    /// Queues the Close that matches how the session ended.
    fn finish(&self, protocol: Protocol, end: End) {
        let close = match &end {
            End::TransportClosed => {
                if self.outbound.was_slow_consumer() {
                    info!("disconnected: slow consumer (outbound queue full)");
                } else {
                    debug!("disconnected");
                }
                return self.outbound.abort();
            }
            End::ClientClosed => Close::default(),
            End::Shutdown => Close { error: None, allow_reconnect: true },
            End::ClientTimeout => Close { error: Some(CLOSED_WITH_ERROR.into()), allow_reconnect: true },
            End::ProtocolError(error) if self.env.limits.detailed_errors => Close {
                error: Some(format!("{CLOSED_WITH_ERROR} InvalidDataException: {error}")),
                allow_reconnect: false,
            },
            End::ProtocolError(_) => Close { error: Some(CLOSED_WITH_ERROR.into()), allow_reconnect: false },
        };
        info!(reason = ?end, "closing connection");
        let status = match end {
            End::ProtocolError(ProtocolError::MessageTooLarge { .. }) => EndStatus::MessageTooBig,
            _ => EndStatus::Normal,
        };
        let bytes = protocol.encode(&HubMessage::Close(close)).ok();
        self.outbound.finish(bytes, status);
    }
}

/// Queues the Completion of a call of `target`; a result that cannot be encoded (e.g. nested
/// too deeply) is replaced by the official server's generic error.
fn send_completion(outbound: &Outbound, protocol: Protocol, target: &str, completion: Completion) {
    let message = HubMessage::Completion(completion);
    let bytes = protocol.encode(&message).or_else(|error| {
        warn!(method = %target, %error, "result could not be encoded");
        let HubMessage::Completion(mut completion) = message else { unreachable!() };
        completion.outcome =
            CompletionOutcome::Error(format!("An unexpected error occurred invoking '{target}' on the server."));
        protocol.encode(&HubMessage::Completion(completion))
    });
    if let Ok(bytes) = bytes {
        let _ = outbound.push_reply(bytes);
    }
}

/// How often a stateful connection acknowledges what it processed.
const ACK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Session {
    fn send_ack(&self, protocol: Protocol, inbound: &mut Option<InboundSequence>) {
        let Some(sequence_id) = inbound.as_mut().and_then(InboundSequence::ack_due) else { return };
        if let Ok(bytes) = protocol.encode(&HubMessage::Ack { sequence_id }) {
            let _ = self.outbound.push_untracked(bytes);
        }
    }
}

/// Stateful reconnect's part in reading a message: Ack and Sequence are consumed here, and a
/// trackable message the client sends again after a reconnect is dropped (`Ok(None)`).
fn track(
    inbound: &mut Option<InboundSequence>,
    outbound: &Outbound,
    message: HubMessage,
) -> Result<Option<HubMessage>, ProtocolError> {
    let Some(inbound) = inbound else { return Ok(Some(message)) };
    match message {
        HubMessage::Ack { sequence_id } => {
            outbound.acknowledge(sequence_id);
            Ok(None)
        }
        HubMessage::Sequence { sequence_id } => inbound.resume_at(sequence_id).map(|()| None).map_err(|_| {
            ProtocolError::Malformed("Sequence ID greater than amount of messages we've received.".into())
        }),
        message if is_trackable(&message) && !inbound.accept() => Ok(None),
        message => Ok(Some(message)),
    }
}

async fn next_tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

struct Elapsed;

async fn next_before(
    incoming: &mut (impl Stream<Item = Inbound> + Unpin),
    deadline: Option<Instant>,
) -> Result<Option<Inbound>, Elapsed> {
    match deadline {
        Some(deadline) => timeout_at(deadline, incoming.next()).await.map_err(|_| Elapsed),
        None => Ok(incoming.next().await),
    }
}
