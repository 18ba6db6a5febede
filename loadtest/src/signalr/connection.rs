//! The hub connection a scenario holds, and the one driver task behind it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use protocol::{CompletionOutcome, Framer, HubMessage, Invocation, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::link::{close_message, open, Link, Opened, Phases};
use super::{ClientError, ClientOptions, Event, ReconnectPolicy};

/// Events buffered between the driver and the scenario.
const EVENT_QUEUE: usize = 32;
/// Encoded messages waiting to be written.
const OUTBOUND_QUEUE: usize = 16;
/// Client keep-alive Ping period (the JS client's).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Silence from the server after which the connection counts as dropped (the JS client's).
const SERVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `close` waits for the driver to say goodbye.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the driver hands to the scenario. Messages are boxed to keep the queue's slots small.
#[derive(Debug)]
enum Inbound {
    Message(Box<HubMessage>),
    Reconnected,
    Closed(Option<String>),
}

impl From<Inbound> for Event {
    fn from(inbound: Inbound) -> Self {
        match inbound {
            Inbound::Message(message) => Self::Message(*message),
            Inbound::Reconnected => Self::Reconnected,
            Inbound::Closed(error) => Self::Closed(error),
        }
    }
}

/// Connections of this process whose driver is running (open, or reconnecting).
static OPEN_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// How many connections this process holds open now: the harness divides its own memory by it.
pub fn open_connections() -> usize {
    OPEN_CONNECTIONS.load(Ordering::Relaxed)
}

/// Counts one running driver for as long as it lives.
struct OpenConnection;

impl OpenConnection {
    fn count() -> Self {
        OPEN_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        OPEN_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// State the scenario can read while the driver runs.
#[derive(Debug, Default)]
struct Shared {
    reconnects: AtomicU32,
    connection_id: Mutex<Option<String>>,
}

/// An open hub connection. Dropping it closes the connection in the background.
#[derive(Debug)]
pub struct Connection {
    protocol: protocol::Protocol,
    outbound: mpsc::Sender<Bytes>,
    inbound: mpsc::Receiver<Inbound>,
    /// Events that arrived while `invoke` waited for its Completion.
    queued: VecDeque<Event>,
    next_id: u64,
    shared: Arc<Shared>,
    driver: JoinHandle<()>,
    closed: bool,
    phases: Phases,
}

impl Connection {
    /// Negotiates, opens the transport and completes the handshake within
    /// `options.connect_timeout`. Pass an `Arc` to share one options value among connections.
    pub async fn connect(options: impl Into<Arc<ClientOptions>>) -> Result<Self, ClientError> {
        let options = options.into();
        let opened = open(&options).await?;
        let phases = opened.phases;
        let shared = Arc::new(Shared::default());
        set_connection_id(&shared, opened.connection_id.clone());
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (events, inbound) = mpsc::channel(EVENT_QUEUE);
        let protocol = options.protocol;
        let driver = Driver { options, shared: shared.clone(), outbound: outbound_rx, events };
        let driver = tokio::spawn(driver.run(opened));
        Ok(Self {
            protocol,
            outbound,
            inbound,
            queued: VecDeque::new(),
            next_id: 0,
            shared,
            driver,
            closed: false,
            phases,
        })
    }

    /// Calls `target` without waiting for a result (an Invocation without id).
    pub async fn send(&mut self, target: &str, arguments: Vec<Value>) -> Result<(), ClientError> {
        let invocation = Invocation { target: target.into(), arguments, ..Invocation::default() };
        self.write(&HubMessage::Invocation(invocation)).await
    }

    /// Calls `target` and waits for its Completion; messages arriving meanwhile are kept for
    /// [`next`](Self::next). Fails with `Closed` if the connection drops first (even if it
    /// reconnects: the call is lost with the old connection). If this future is dropped
    /// (e.g. by a timeout), the late Completion is later returned by `next`.
    pub async fn invoke(&mut self, target: &str, arguments: Vec<Value>) -> Result<CompletionOutcome, ClientError> {
        let id = self.next_id.to_string();
        self.next_id += 1;
        let invocation =
            Invocation { target: target.into(), arguments, invocation_id: Some(id.clone()), ..Invocation::default() };
        self.write(&HubMessage::Invocation(invocation)).await?;
        loop {
            match self.receive().await {
                Event::Message(HubMessage::Completion(completion)) if completion.invocation_id == id => {
                    return Ok(completion.outcome);
                }
                Event::Message(message) => self.queued.push_back(Event::Message(message)),
                Event::Reconnected => {
                    self.queued.push_back(Event::Reconnected);
                    return Err(ClientError::Closed(Some("the connection dropped during the invocation".into())));
                }
                Event::Closed(error) => {
                    self.queued.push_back(Event::Closed(error.clone()));
                    return Err(ClientError::Closed(error));
                }
            }
        }
    }

    /// The next event; `None` once [`Event::Closed`] has been returned.
    pub async fn next(&mut self) -> Option<Event> {
        if let Some(event) = self.queued.pop_front() {
            return Some(event);
        }
        if self.closed {
            return None;
        }
        Some(self.receive().await)
    }

    /// The next event if one is already there, without waiting; `None` when there is none
    /// yet (or [`Event::Closed`] has been returned). For readers that handle whatever has
    /// arrived as one batch.
    pub fn try_next(&mut self) -> Option<Event> {
        if let Some(event) = self.queued.pop_front() {
            return Some(event);
        }
        if self.closed {
            return None;
        }
        let event = match self.inbound.try_recv() {
            Ok(inbound) => inbound.into(),
            Err(mpsc::error::TryRecvError::Empty) => return None,
            Err(mpsc::error::TryRecvError::Disconnected) => Event::Closed(None),
        };
        self.closed = matches!(event, Event::Closed(_));
        Some(event)
    }

    /// Sends a Close message and ends the transport (close frame, or DELETE for long
    /// polling), waiting up to 5 s for that to finish.
    pub async fn close(self) -> Result<(), ClientError> {
        let Self { outbound, inbound, mut driver, .. } = self;
        // With both queues gone the driver says goodbye and ends.
        drop(inbound);
        drop(outbound);
        match tokio::time::timeout(CLOSE_TIMEOUT, &mut driver).await {
            Ok(_) => Ok(()),
            Err(_) => {
                driver.abort();
                Err(ClientError::Timeout(CLOSE_TIMEOUT))
            }
        }
    }

    /// Drops every message already received but not read, without waiting; returns how many.
    /// For connections that only send (a publisher that also receives its own broadcasts),
    /// so unread messages neither pile up nor stop the driver from reading. Closure and
    /// reconnect events are kept for [`next`](Self::next).
    pub fn discard_pending(&mut self) -> usize {
        let before = self.queued.len();
        self.queued.retain(|event| !matches!(event, Event::Message(_)));
        let mut discarded = before - self.queued.len();
        while let Ok(inbound) = self.inbound.try_recv() {
            match inbound {
                Inbound::Message(_) => discarded += 1,
                Inbound::Reconnected => self.queued.push_back(Event::Reconnected),
                Inbound::Closed(error) => self.queued.push_back(Event::Closed(error)),
            }
        }
        discarded
    }

    /// How long the first open took, phase by phase.
    pub fn phases(&self) -> Phases {
        self.phases
    }

    /// How many times the connection was re-opened after a drop.
    pub fn reconnects(&self) -> u32 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    /// The current connection's public id (none with `skip_negotiation`).
    pub fn connection_id(&self) -> Option<String> {
        self.shared.connection_id.lock().ok().and_then(|id| id.clone())
    }

    async fn write(&mut self, message: &HubMessage) -> Result<(), ClientError> {
        let bytes = self.protocol.encode(message)?;
        self.outbound.send(bytes).await.map_err(|_| ClientError::Closed(None))
    }

    /// The next event from the driver (a closed queue reads as `Closed`).
    async fn receive(&mut self) -> Event {
        if self.closed {
            return Event::Closed(None);
        }
        let event = match self.inbound.recv().await {
            Some(inbound) => inbound.into(),
            None => Event::Closed(None),
        };
        self.closed = matches!(event, Event::Closed(_));
        event
    }
}

fn set_connection_id(shared: &Shared, id: Option<String>) {
    if let Ok(mut slot) = shared.connection_id.lock() {
        *slot = id;
    }
}

/// How one link ended.
enum End {
    /// The scenario closed or dropped the connection.
    Closing,
    /// The server sent Close.
    ServerClosed { error: Option<String>, allow_reconnect: bool },
    /// The transport ended or failed without a Close.
    Dropped(String),
}

/// The per-connection task: reads, writes, keeps alive, reconnects.
struct Driver {
    options: Arc<ClientOptions>,
    shared: Arc<Shared>,
    outbound: mpsc::Receiver<Bytes>,
    events: mpsc::Sender<Inbound>,
}

impl Driver {
    async fn run(mut self, opened: Opened) {
        let _open = OpenConnection::count();
        let Opened { mut link, mut framer, .. } = opened;
        loop {
            let end = self.pump(&mut link, &mut framer).await;
            let (reason, may_reconnect) = match end {
                End::Closing => {
                    Box::pin(link.close(close_message(self.options.protocol))).await;
                    return;
                }
                End::ServerClosed { error, allow_reconnect } => (error, allow_reconnect),
                End::Dropped(reason) => (Some(reason), true),
            };
            // The rare paths are boxed: the task's size is that of its largest state, and
            // every idle connection would otherwise carry a whole reconnect inline.
            Box::pin(link.close(None)).await;
            let reopened = match self.options.reconnect.clone() {
                Some(policy) if may_reconnect => Box::pin(self.reconnect(policy)).await,
                _ => Err(reason),
            };
            match reopened {
                Ok(opened) => {
                    (link, framer) = (opened.link, opened.framer);
                    set_connection_id(&self.shared, opened.connection_id);
                    self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    if self.events.send(Inbound::Reconnected).await.is_err() {
                        Box::pin(link.close(close_message(self.options.protocol))).await;
                        return;
                    }
                }
                Err(reason) => {
                    let _ = self.events.send(Inbound::Closed(reason)).await;
                    return;
                }
            }
        }
    }

    /// Moves messages both ways until the link ends.
    async fn pump(&mut self, link: &mut Link, framer: &mut Framer) -> End {
        enum Step {
            Received(Result<Option<Bytes>, ClientError>),
            Send(Option<Bytes>),
            KeepAlive,
        }
        let ping = self.options.protocol.encoded_ping();
        let mut keep_alive = tokio::time::interval_at(Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        let mut last_heard = Instant::now();
        let keeps_alive = link.keeps_alive();
        loop {
            let step = tokio::select! {
                received = link.recv() => Step::Received(received),
                out = self.outbound.recv() => Step::Send(out),
                _ = keep_alive.tick(), if keeps_alive => Step::KeepAlive,
            };
            match step {
                Step::Received(Ok(Some(chunk))) => {
                    last_heard = Instant::now();
                    framer.push(&chunk);
                    if let Some(end) = self.deliver(framer).await {
                        return end;
                    }
                }
                Step::Received(Ok(None)) => return End::Dropped("the server ended the transport".into()),
                Step::Received(Err(error)) => return End::Dropped(error.to_string()),
                Step::Send(Some(bytes)) => {
                    if let Err(error) = self.write_queued(link, bytes).await {
                        return End::Dropped(error.to_string());
                    }
                }
                Step::Send(None) => return End::Closing,
                Step::KeepAlive => {
                    if last_heard.elapsed() > SERVER_TIMEOUT {
                        return End::Dropped(format!("nothing from the server for {SERVER_TIMEOUT:?}"));
                    }
                    if let Err(error) = link.send(ping.clone()).await {
                        return End::Dropped(error.to_string());
                    }
                }
            }
        }
    }

    /// Writes `first` and every message queued behind it, then flushes once.
    async fn write_queued(&mut self, link: &mut Link, first: Bytes) -> Result<(), ClientError> {
        link.feed(first).await?;
        while let Ok(more) = self.outbound.try_recv() {
            link.feed(more).await?;
        }
        link.flush().await
    }

    /// Decodes every complete record and hands it on; Pings stop here (unless the options
    /// ask for every message).
    async fn deliver(&mut self, framer: &mut Framer) -> Option<End> {
        loop {
            let record = match framer.next_record() {
                Ok(Some(record)) => record,
                Ok(None) => return None,
                Err(error) => return Some(End::Dropped(format!("protocol: {error}"))),
            };
            let all = self.options.all_messages;
            match self.options.protocol.decode(&record) {
                Ok(HubMessage::Ping) if !all => {}
                Ok(HubMessage::Close(close)) => {
                    let end = End::ServerClosed { error: close.error.clone(), allow_reconnect: close.allow_reconnect };
                    if all {
                        let _ = self.events.send(Inbound::Message(Box::new(HubMessage::Close(close)))).await;
                    }
                    return Some(end);
                }
                Ok(message) => {
                    if self.events.send(Inbound::Message(Box::new(message))).await.is_err() {
                        return Some(End::Closing);
                    }
                }
                Err(error) => return Some(End::Dropped(format!("protocol: {error}"))),
            }
        }
    }

    /// Tries again after each of the policy's delays; gives up with the last error, or at
    /// once when the scenario lets go of the connection.
    async fn reconnect(&mut self, policy: ReconnectPolicy) -> Result<Opened, Option<String>> {
        let mut last_error = None;
        for delay in policy.delays {
            let wait = tokio::time::sleep(delay);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    out = self.outbound.recv() => match out {
                        // Nothing can be sent while disconnected, as with the JS client.
                        Some(_) => {}
                        None => return Err(None),
                    },
                }
            }
            match open(&self.options).await {
                Ok(opened) => return Ok(opened),
                Err(error) => last_error = Some(error.to_string()),
            }
        }
        Err(last_error)
    }
}
