//! The in-process backplane.
//!
//! A [`MemoryBus`] is a set of nodes in one process; each [`MemoryBackplane`] is one node's view
//! of it. A single gateway uses a bus with one node (its own messages come back to it when it is
//! subscribed, as with any backplane); tests attach several gateways to one bus to run a cluster
//! without Redis. Delivery never waits: a full inbound queue drops the message and counts it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::{Backplane, BackplaneError, Delivery, Health, Inbound};

/// Default capacity of a node's inbound queue, in messages.
pub const DEFAULT_INBOUND_CAPACITY: usize = 65_536;

struct Node {
    /// Channel → reference count; a channel is present only while its count is positive.
    subscriptions: HashMap<String, usize>,
    sender: mpsc::Sender<Delivery>,
    dropped: Arc<AtomicU64>,
}

#[derive(Default)]
struct BusState {
    nodes: HashMap<u64, Node>,
    next_id: u64,
}

/// A group of in-process nodes that see each other's publishes.
#[derive(Clone, Default)]
pub struct MemoryBus {
    state: Arc<Mutex<BusState>>,
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches a new node with the default inbound capacity.
    pub fn node(&self) -> MemoryBackplane {
        self.node_with_capacity(DEFAULT_INBOUND_CAPACITY)
    }

    /// Attaches a new node whose inbound queue holds at most `capacity` messages.
    pub fn node_with_capacity(&self, capacity: usize) -> MemoryBackplane {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let mut state = lock(&self.state);
        let id = state.next_id;
        state.next_id += 1;
        state.nodes.insert(id, Node { subscriptions: HashMap::new(), sender, dropped: dropped.clone() });
        MemoryBackplane { bus: self.clone(), id, inbound: Mutex::new(Some(receiver)), dropped }
    }
}

/// One node on a [`MemoryBus`]. Dropping it detaches the node.
pub struct MemoryBackplane {
    bus: MemoryBus,
    id: u64,
    inbound: Mutex<Option<Inbound>>,
    dropped: Arc<AtomicU64>,
}

impl MemoryBackplane {
    /// A node on a bus of its own: the single-node backplane.
    pub fn standalone() -> Self {
        MemoryBus::new().node()
    }

    /// This node's subscription count for `channel` (0 when not subscribed).
    pub fn subscription_count(&self, channel: &str) -> usize {
        let state = lock(&self.bus.state);
        state.nodes.get(&self.id).and_then(|node| node.subscriptions.get(channel).copied()).unwrap_or(0)
    }
}

impl Drop for MemoryBackplane {
    fn drop(&mut self) {
        lock(&self.bus.state).nodes.remove(&self.id);
    }
}

/// A poisoned lock only means another thread panicked mid-update of plain maps; the maps are
/// still usable, so the lock is taken anyway rather than spreading the panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Backplane for MemoryBackplane {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<usize, BackplaneError> {
        let state = lock(&self.bus.state);
        let mut reached = 0;
        for node in state.nodes.values() {
            if !node.subscriptions.contains_key(channel) {
                continue;
            }
            reached += 1;
            let delivery = Delivery { channel: channel.to_owned(), payload: payload.clone() };
            match node.sender.try_send(delivery) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    node.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(channel, "memory backplane: inbound queue full, message dropped");
                }
            }
        }
        Ok(reached)
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BackplaneError> {
        let mut state = lock(&self.bus.state);
        let node = state.nodes.get_mut(&self.id).ok_or(BackplaneError::Closed)?;
        *node.subscriptions.entry(channel.to_owned()).or_insert(0) += 1;
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BackplaneError> {
        let mut state = lock(&self.bus.state);
        let node = state.nodes.get_mut(&self.id).ok_or(BackplaneError::Closed)?;
        if let Some(count) = node.subscriptions.get_mut(channel) {
            *count -= 1;
            if *count == 0 {
                node.subscriptions.remove(channel);
            }
        }
        Ok(())
    }

    fn take_inbound(&self) -> Result<Inbound, BackplaneError> {
        lock(&self.inbound).take().ok_or(BackplaneError::InboundTaken)
    }

    fn health(&self) -> Health {
        Health::Up
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn next(inbound: &mut Inbound) -> Delivery {
        tokio::time::timeout(Duration::from_secs(5), inbound.recv())
            .await
            .expect("a delivery within the deadline")
            .expect("inbound open")
    }

    #[tokio::test]
    async fn only_subscribed_nodes_receive_and_the_publisher_too() {
        let bus = MemoryBus::new();
        let (a, b, c) = (bus.node(), bus.node(), bus.node());
        let (mut in_a, mut in_b, mut in_c) =
            (a.take_inbound().unwrap(), b.take_inbound().unwrap(), c.take_inbound().unwrap());
        a.subscribe("x").await.unwrap();
        b.subscribe("x").await.unwrap();
        a.publish("x", Bytes::from_static(b"1")).await.unwrap();
        assert_eq!(next(&mut in_a).await.payload, "1");
        assert_eq!(next(&mut in_b).await.payload, "1");
        assert!(in_c.try_recv().is_err());
    }

    #[tokio::test]
    async fn subscriptions_are_reference_counted() {
        let node = MemoryBackplane::standalone();
        let mut inbound = node.take_inbound().unwrap();
        node.subscribe("g").await.unwrap();
        node.subscribe("g").await.unwrap();
        node.unsubscribe("g").await.unwrap();
        assert_eq!(node.subscription_count("g"), 1);
        node.publish("g", Bytes::from_static(b"still")).await.unwrap();
        assert_eq!(next(&mut inbound).await.payload, "still");
        node.unsubscribe("g").await.unwrap();
        node.unsubscribe("g").await.unwrap(); // one too many: harmless
        node.publish("g", Bytes::from_static(b"gone")).await.unwrap();
        assert!(inbound.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_inbound_queue_drops_and_counts_without_blocking() {
        let bus = MemoryBus::new();
        let slow = bus.node_with_capacity(2);
        let _inbound = slow.take_inbound().unwrap();
        slow.subscribe("c").await.unwrap();
        for _ in 0..5 {
            slow.publish("c", Bytes::from_static(b"m")).await.unwrap();
        }
        assert_eq!(slow.dropped(), 3);
    }

    #[tokio::test]
    async fn inbound_can_be_taken_once() {
        let node = MemoryBackplane::standalone();
        assert!(node.take_inbound().is_ok());
        assert_eq!(node.take_inbound().unwrap_err(), BackplaneError::InboundTaken);
    }

    #[tokio::test]
    async fn order_is_kept_per_publisher_and_channel() {
        let node = MemoryBackplane::standalone();
        let mut inbound = node.take_inbound().unwrap();
        node.subscribe("o").await.unwrap();
        for i in 0..100u8 {
            node.publish("o", Bytes::from(vec![i])).await.unwrap();
        }
        for i in 0..100u8 {
            assert_eq!(next(&mut inbound).await.payload[0], i);
        }
    }
}
