//! One `fred` client and whether it is usable: the commands the backplane sends, each bounded
//! by the command timeout, and the `up` flag that health and fail-fast read.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fred::clients::Client;
use fred::error::Error as FredError;
use fred::interfaces::{ClientLike, PubsubInterface};
use fred::types::config::Options;
use fred::types::{ClusterHash, Value};
use fred::util::redis_keyslot;

use crate::BackplaneError;

/// Channels per SUBSCRIBE command when restoring subscriptions on a standalone server.
const RESTORE_BATCH: usize = 512;

/// A client in one role: the publisher, or the subscriber whose connections sit in subscribed
/// mode. Two clients because a RESP2 connection in subscribed mode cannot publish, and so that
/// publishes never queue behind a flood of inbound messages.
pub(super) struct Link {
    pub(super) client: Client,
    role: &'static str,
    /// Redis Cluster: sharded pub/sub, commands routed by the channel's hash slot.
    sharded: bool,
    timeout: Duration,
    up: AtomicBool,
    /// Times the link went from down to up; the first is the initial connection.
    ups: AtomicU64,
}

impl Link {
    pub(super) fn new(client: Client, role: &'static str, sharded: bool, timeout: Duration) -> Self {
        Self { client, role, sharded, timeout, up: AtomicBool::new(false), ups: AtomicU64::new(0) }
    }

    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    pub(super) fn mark_up(&self) {
        if !self.up.swap(true, Ordering::SeqCst) {
            self.ups.fetch_add(1, Ordering::Relaxed);
            tracing::info!(role = self.role, "redis backplane: connection up");
        }
    }

    /// Times the link came back up after having been up before.
    pub(super) fn reconnects(&self) -> u64 {
        self.ups.load(Ordering::Relaxed).saturating_sub(1)
    }

    pub(super) fn mark_down(&self, reason: &dyn std::fmt::Display) {
        if self.up.swap(false, Ordering::SeqCst) {
            tracing::warn!(role = self.role, %reason, "redis backplane: connection down");
        }
    }

    /// After a command failed on a link that looked up, what Redis holds is uncertain: report
    /// down and start over on a fresh connection, where the supervisor restores the state.
    pub(super) fn reset(&self, error: &FredError) {
        self.mark_down(error);
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(error) = client.force_reconnection().await {
                tracing::debug!(%error, "redis backplane: forced reconnection failed");
            }
        });
    }

    /// Options for a caller's command: fail at once when fred knows it is disconnected, never
    /// retry after a lost connection (a retried PUBLISH could arrive twice), and time out.
    fn now(&self) -> Options {
        Options { timeout: Some(self.timeout), fail_fast: true, ..Options::default() }
    }

    /// Options for the checks after a reconnect, sent while fred may still be finishing the
    /// handshake: they wait behind it (bounded by the timeout) instead of failing fast.
    fn patient(&self) -> Options {
        Options { timeout: Some(self.timeout), ..Options::default() }
    }

    /// PUBLISH or SPUBLISH; the number of subscribers Redis reports.
    pub(super) async fn publish(&self, channel: &str, payload: Bytes) -> Result<usize, BackplaneError> {
        let client = self.client.with_options(&self.now());
        let receivers: Result<i64, FredError> =
            if self.sharded { client.spublish(channel, payload).await } else { client.publish(channel, payload).await };
        let receivers = receivers.map_err(|error| BackplaneError::Unavailable(error.to_string()))?;
        Ok(usize::try_from(receivers).unwrap_or(0))
    }

    /// Subscribes and returns once Redis has processed the subscription. SSUBSCRIBE's reply is
    /// awaited by fred; SUBSCRIBE resolves when written, so a PING on the same connection acts as
    /// the barrier (Redis answers a connection's commands in order).
    pub(super) async fn subscribe(&self, channel: &str) -> Result<(), FredError> {
        let client = self.client.with_options(&self.now());
        if self.sharded {
            client.ssubscribe(channel).await
        } else {
            client.subscribe(channel).await?;
            self.barrier(channel, self.now()).await
        }
    }

    /// Unsubscribes and returns once Redis has processed it (both forms resolve when written,
    /// so both are followed by a PING to the node that holds the channel).
    pub(super) async fn unsubscribe(&self, channel: &str) -> Result<(), FredError> {
        let client = self.client.with_options(&self.now());
        if self.sharded {
            client.sunsubscribe(channel).await?;
        } else {
            client.unsubscribe(channel).await?;
        }
        self.barrier(channel, self.now()).await
    }

    /// Subscribes to all `channels` after a reconnect. Subscribing twice is harmless in Redis
    /// (a connection holds a channel once), so this may be repeated.
    pub(super) async fn subscribe_all(&self, channels: &[String]) -> Result<(), FredError> {
        let client = self.client.with_options(&self.patient());
        if self.sharded {
            // One channel per SSUBSCRIBE: fred matches exactly one reply to each.
            for channel in channels {
                client.ssubscribe(channel.as_str()).await?;
            }
            self.ping().await
        } else {
            for batch in channels.chunks(RESTORE_BATCH) {
                client.subscribe(batch.to_vec()).await?;
            }
            self.barrier("", self.patient()).await
        }
    }

    /// A PING that answers once this connection is usable; used after a reconnect.
    pub(super) async fn ping(&self) -> Result<(), FredError> {
        self.client.with_options(&self.patient()).ping::<Value>(None).await.map(drop)
    }

    /// A PING on the connection that carries `channel`, answered after everything sent before it.
    async fn barrier(&self, channel: &str, mut options: Options) -> Result<(), FredError> {
        if self.sharded {
            options.cluster_hash = Some(ClusterHash::Custom(redis_keyslot(channel.as_bytes())));
        }
        self.client.with_options(&options).ping::<Value>(None).await.map(drop)
    }
}
