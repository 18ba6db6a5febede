//! The Redis backplane, on the [`fred`] client: standalone Redis with PUBLISH / SUBSCRIBE, or
//! Redis Cluster with sharded pub/sub (SPUBLISH / SSUBSCRIBE), so each channel lives on the
//! shard that owns its hash slot. Channels are always literal; patterns are never used.
//!
//! ```text
//!  publish ───────────────► publisher client ──► PUBLISH / SPUBLISH ─────────► Redis
//!  subscribe / unsubscribe ► counts per channel ► subscriber client ► (S)(UN)SUBSCRIBE
//!  Redis ──► subscriber client ──► fred broadcast ──► reader task ──try_send──► inbound queue
//!  connection events ──► one supervisor per client ──► health, restore after reconnect
//! ```
//!
//! - **Startup never waits for Redis.** [`RedisBackplane::connect`] only validates the settings
//!   and starts the clients; they connect in the background and reconnect forever with
//!   exponential backoff. Until both are connected and every subscription is in place, health is
//!   [`Health::Down`] and publishes fail at once.
//! - **Reconnects restore subscriptions.** After each (re)connection of the subscriber, every
//!   channel with a positive count is subscribed again before health turns [`Health::Up`].
//! - **No command waits for a connection.** Publishes and subscription changes are sent only
//!   while their client is up, fail fast inside fred, are never retried after a lost connection
//!   (a retried PUBLISH could arrive twice) and are bounded by the command timeout.
//! - **Subscription changes always finish**, in a task of their own, even when the caller
//!   stops waiting, so counts and Redis never disagree.
//! - **A hung connection is noticed**: each connection is PINGed every `heartbeat_interval`;
//!   one that does not answer within the command timeout is replaced, health down meanwhile.
//! - **The reader never blocks**: a full inbound queue drops and counts; so does a reader that
//!   falls behind fred's message stream (`Lagged`), and reading goes on.
//!
//! Known limits: fred routes messages on channels named `__keyspace@…` / `__keyevent@…` to its
//! keyspace-notification stream, so such channel names never reach the inbound queue (the
//! gateway's names all start with its prefix). In a cluster, a slot that migrates to another
//! shard is followed at the next cluster-map refresh, when subscriptions are restored again.

pub(crate) mod config;
mod link;
mod reader;
mod subscriptions;
mod supervisor;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::interfaces::{ClientLike, EventInterface};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

pub use config::RedisConfig;

use crate::{Backplane, BackplaneError, Health, Inbound};
use link::Link;
use subscriptions::Subscriptions;
use supervisor::{supervise, Events, Timing};

/// Capacity of fred's broadcast channel of inbound messages on the subscriber client, in
/// messages. The reader moves each message on at once; this only absorbs scheduling hiccups,
/// and what overflows it is counted as dropped.
const MESSAGE_BUFFER: usize = 4_096;
/// Capacity of the publisher client's broadcast channels, which carry connection events only.
const EVENT_BUFFER: usize = 32;

/// A node's connection to Redis. See the [module docs](self) for how it behaves.
pub struct RedisBackplane {
    publisher: Arc<Link>,
    subscriber: Arc<Link>,
    subscriptions: Arc<Subscriptions>,
    inbound: Mutex<Option<Inbound>>,
    dropped: Arc<AtomicU64>,
    closed: AtomicBool,
    /// The reader, the supervisors and fred's connection tasks; aborted on drop.
    tasks: Vec<AbortHandle>,
}

impl RedisBackplane {
    /// Validates `config` and starts connecting in the background; returns at once.
    ///
    /// Fails only for invalid settings ([`BackplaneError::InvalidConfig`]) or when called outside
    /// a Tokio runtime ([`BackplaneError::Unavailable`]) — never because Redis is unreachable:
    /// the backplane then reports [`Health::Down`] and keeps trying.
    pub fn connect(config: RedisConfig) -> Result<Self, BackplaneError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BackplaneError::Unavailable("the Redis backplane needs a Tokio runtime".to_owned()));
        }
        let sharded = config.is_cluster();
        let build = |capacity| {
            config.builder(capacity)?.build().map_err(|error| BackplaneError::InvalidConfig(error.to_string()))
        };
        let publisher = Arc::new(Link::new(build(EVENT_BUFFER)?, "publisher", sharded, config.command_timeout));
        let subscriber = Arc::new(Link::new(build(MESSAGE_BUFFER)?, "subscriber", sharded, config.command_timeout));
        let subscriptions = Arc::new(Subscriptions::default());
        let (sender, receiver) = mpsc::channel(config.inbound_capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let timing = Timing {
            retry: (config.reconnect_min_delay, config.reconnect_max_delay),
            heartbeat: config.heartbeat_interval,
        };

        // Every stream is listened to before the clients connect, so no event is missed.
        let reader = tokio::spawn(reader::run(subscriber.client.message_rx(), sender, dropped.clone()));
        let [publisher_supervisor, subscriber_supervisor] =
            start_supervisors(&publisher, &subscriber, &subscriptions, timing);
        let tasks = vec![
            reader.abort_handle(),
            publisher_supervisor,
            subscriber_supervisor,
            publisher.client.connect().abort_handle(),
            subscriber.client.connect().abort_handle(),
        ];
        let urls: Vec<String> = config.urls.iter().map(|url| config::redact(url)).collect();
        tracing::info!(?urls, cluster = sharded, "redis backplane: connecting");
        Ok(Self {
            publisher,
            subscriber,
            subscriptions,
            inbound: Mutex::new(Some(receiver)),
            dropped,
            closed: AtomicBool::new(false),
            tasks,
        })
    }

    /// Closes both connections (QUIT, bounded by `timeout`) and stops the background tasks.
    /// Afterwards every operation fails with [`BackplaneError::Closed`] and health is down.
    pub async fn close(&self, timeout: Duration) {
        self.closed.store(true, Ordering::SeqCst);
        let quit = quit_both(&self.publisher, &self.subscriber);
        if tokio::time::timeout(timeout, quit).await.is_err() {
            tracing::debug!("redis backplane: QUIT timed out; connections are dropped");
        }
        self.abort_tasks();
    }

    fn abort_tasks(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }

    fn check_open(&self) -> Result<(), BackplaneError> {
        if self.closed.load(Ordering::SeqCst) {
            Err(BackplaneError::Closed)
        } else {
            Ok(())
        }
    }
}

/// The publisher is up once it answers a PING; the subscriber once every subscription with a
/// positive count is back in place.
fn start_supervisors(
    publisher: &Arc<Link>,
    subscriber: &Arc<Link>,
    subscriptions: &Arc<Subscriptions>,
    timing: Timing,
) -> [AbortHandle; 2] {
    let link = publisher.clone();
    let check = move || {
        let link = link.clone();
        async move {
            link.ping().await?;
            link.mark_up();
            Ok(())
        }
    };
    let publisher = tokio::spawn(supervise(publisher.clone(), Events::of(&publisher.client), timing, check));
    let (link, subscriptions) = (subscriber.clone(), subscriptions.clone());
    let restore = move || {
        let (link, subscriptions) = (link.clone(), subscriptions.clone());
        async move { subscriptions.restore(&link).await }
    };
    let subscriber = tokio::spawn(supervise(subscriber.clone(), Events::of(&subscriber.client), timing, restore));
    [publisher.abort_handle(), subscriber.abort_handle()]
}

async fn quit_both(publisher: &Link, subscriber: &Link) {
    let (first, second) = tokio::join!(publisher.client.quit(), subscriber.client.quit());
    for error in [first.err(), second.err()].into_iter().flatten() {
        tracing::debug!(%error, "redis backplane: QUIT failed");
    }
}

/// Runs a subscription change to completion in its own task, even if the caller stops waiting:
/// a change dropped half-way (count changed, Redis command not sent) would leave the count and
/// Redis disagreeing until the next reconnect.
async fn finish(change: impl Future<Output = ()> + Send + 'static) -> Result<(), BackplaneError> {
    tokio::spawn(change)
        .await
        .map_err(|error| BackplaneError::Unavailable(format!("subscription change failed: {error}")))
}

impl Drop for RedisBackplane {
    fn drop(&mut self) {
        self.abort_tasks();
    }
}

#[async_trait]
impl Backplane for RedisBackplane {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<usize, BackplaneError> {
        self.check_open()?;
        if self.health() == Health::Down {
            return Err(BackplaneError::Unavailable("not connected to Redis".to_owned()));
        }
        self.publisher.publish(channel, payload).await
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BackplaneError> {
        self.check_open()?;
        let (subscriptions, link, channel) = (self.subscriptions.clone(), self.subscriber.clone(), channel.to_owned());
        finish(async move { subscriptions.subscribe(&channel, &link).await }).await
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BackplaneError> {
        self.check_open()?;
        let (subscriptions, link, channel) = (self.subscriptions.clone(), self.subscriber.clone(), channel.to_owned());
        finish(async move { subscriptions.unsubscribe(&channel, &link).await }).await
    }

    fn take_inbound(&self) -> Result<Inbound, BackplaneError> {
        self.inbound.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take().ok_or(BackplaneError::InboundTaken)
    }

    fn health(&self) -> Health {
        let up = !self.closed.load(Ordering::SeqCst) && self.publisher.is_up() && self.subscriber.is_up();
        if up {
            Health::Up
        } else {
            Health::Down
        }
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    async fn close(&self, timeout: Duration) {
        RedisBackplane::close(self, timeout).await;
    }

    /// Re-established connections of the publisher and of the subscriber, added up (a Redis
    /// restart counts two).
    fn reconnects(&self) -> u64 {
        self.publisher.reconnects() + self.subscriber.reconnects()
    }
}

/// Sends `command` with `options` (presence and user-group queries), after waiting for the
/// client to be connected (see [`await_connection`]).
pub(crate) async fn custom(
    client: &fred::clients::Client,
    options: &fred::types::config::Options,
    command: fred::types::CustomCommand,
    args: Vec<String>,
) -> Result<fred::types::Value, BackplaneError> {
    await_connection(client, options.timeout).await;
    client.with_options(options).custom(command, args).await.map_err(unavailable)
}

/// Waits up to `timeout` (1 s when none) for `client` to be connected, if it is not: commands
/// sent with `fail_fast` are refused while a client is still connecting (right after start or
/// during a reconnect), and a caller would rather wait that moment than fail.
async fn await_connection(client: &fred::clients::Client, timeout: Option<Duration>) {
    if !client.is_connected() {
        let _ = tokio::time::timeout(timeout.unwrap_or(Duration::from_secs(1)), client.wait_for_connect()).await;
    }
}

/// EVAL routed by its only key (the third argument, after the script and the key count).
pub(crate) fn eval() -> fred::types::CustomCommand {
    fred::types::CustomCommand::new_static("EVAL", fred::types::ClusterHash::Offset(2), false)
}

/// A failed Redis command, as the backplane reports it.
pub(crate) fn unavailable(error: fred::error::Error) -> BackplaneError {
    BackplaneError::Unavailable(error.to_string())
}
