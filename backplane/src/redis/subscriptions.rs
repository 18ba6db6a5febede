//! Reference-counted subscriptions, kept in step with Redis.
//!
//! Each channel has a count behind its own async lock, held across the Redis call of a 0→1 or
//! 1→0 change, so concurrent `subscribe` / `unsubscribe` calls on one channel take effect in
//! order while other channels proceed in parallel. A gate (read by those calls, written by the
//! restore after a reconnect) keeps a restore from missing a channel whose count changed while
//! the link was down: while the restore runs, callers wait; after it, they see the link up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use fred::error::Error as FredError;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, RwLock};

use super::link::Link;

type Count = Arc<AsyncMutex<usize>>;

#[derive(Default)]
pub(super) struct Subscriptions {
    gate: RwLock<()>,
    /// Channel → count. An entry exists while its count is positive, or briefly while a call
    /// that holds its lock is deciding.
    counts: Mutex<HashMap<String, Count>>,
}

impl Subscriptions {
    /// Adds a reference. On 0→1 with the link up, returns once Redis has the subscription; if
    /// that fails the link is reset, and the restore after the reconnect subscribes it.
    pub(super) async fn subscribe(&self, channel: &str, link: &Link) {
        let _gate = self.gate.read().await;
        let mut count = self.entry(channel).await;
        *count += 1;
        if *count == 1 && link.is_up() {
            if let Err(error) = link.subscribe(channel).await {
                link.reset(&error);
            }
        }
    }

    /// Removes a reference, if there is one. On 1→0 with the link up, returns once Redis has
    /// dropped the subscription; if that fails the link is reset (a fresh connection holds only
    /// the channels with a positive count).
    pub(super) async fn unsubscribe(&self, channel: &str, link: &Link) {
        let _gate = self.gate.read().await;
        let Some(mut count) = self.existing(channel).await else { return };
        *count = count.saturating_sub(1);
        if *count == 0 {
            if link.is_up() {
                if let Err(error) = link.unsubscribe(channel).await {
                    link.reset(&error);
                }
            }
            // Removed while still locked: a waiting `subscribe` finds the entry gone and starts a
            // fresh one, so its SUBSCRIBE is sent after this UNSUBSCRIBE.
            lock(&self.counts).remove(channel);
        }
    }

    /// Subscribes the link to every channel with a positive count and marks it up, with callers
    /// held off so none is missed.
    pub(super) async fn restore(&self, link: &Link) -> Result<(), FredError> {
        let _gate = self.gate.write().await;
        let channels: Vec<String> = lock(&self.counts)
            .iter()
            // Callers only hold a count's lock under the gate, so `try_lock` cannot fail here;
            // if it somehow did, subscribing once more is harmless.
            .filter(|(_, count)| !matches!(count.try_lock().map(|count| *count), Ok(0)))
            .map(|(channel, _)| channel.clone())
            .collect();
        link.subscribe_all(&channels).await?;
        if !channels.is_empty() {
            tracing::info!(channels = channels.len(), "redis backplane: subscriptions restored");
        }
        link.mark_up();
        Ok(())
    }

    /// Locks the count of `channel`, creating it at zero if there is none.
    async fn entry(&self, channel: &str) -> OwnedMutexGuard<usize> {
        loop {
            let count = lock(&self.counts).entry(channel.to_owned()).or_default().clone();
            if let Some(guard) = self.lock_current(channel, count).await {
                return guard;
            }
        }
    }

    /// Locks the count of `channel` if there is one.
    async fn existing(&self, channel: &str) -> Option<OwnedMutexGuard<usize>> {
        loop {
            let count = lock(&self.counts).get(channel)?.clone();
            if let Some(guard) = self.lock_current(channel, count).await {
                return Some(guard);
            }
        }
    }

    /// Locks `count`, unless it was removed from the map while this call waited for it (its
    /// count reached zero); the caller then looks the channel up again.
    async fn lock_current(&self, channel: &str, count: Count) -> Option<OwnedMutexGuard<usize>> {
        let guard = count.clone().lock_owned().await;
        let current = lock(&self.counts).get(channel).is_some_and(|entry| Arc::ptr_eq(entry, &count));
        current.then_some(guard)
    }
}

/// A poisoned lock only means a panic elsewhere mid-update of a plain map; the map is still
/// usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
