//! The connection directory in this process: a single node, or in-process nodes of a test
//! sharing one (clones share the records). Expiry uses the monotonic clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::Directory;
use crate::BackplaneError;

/// Records in process memory, dropped lazily when they are read or claimed after expiry, and
/// all at once when the map reaches [`MemoryDirectory::SWEEP_AT`] entries.
#[derive(Debug, Clone, Default)]
pub struct MemoryDirectory {
    records: Arc<Mutex<HashMap<String, (String, Instant)>>>,
}

impl MemoryDirectory {
    /// Entries at which every expired record is swept out.
    pub const SWEEP_AT: usize = 65_536;

    pub fn new() -> Self {
        Self::default()
    }

    fn records(&self) -> MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Directory for MemoryDirectory {
    async fn claim(&self, connection: &str, holder: &str, ttl: Duration) -> Result<bool, BackplaneError> {
        let mut records = self.records();
        let now = Instant::now();
        if records.len() >= Self::SWEEP_AT {
            records.retain(|_, (_, until)| *until > now);
        }
        if records.get(connection).is_some_and(|(_, until)| *until > now) {
            return Ok(false);
        }
        records.insert(connection.to_owned(), (holder.to_owned(), now + ttl));
        Ok(true)
    }

    async fn holder_of(&self, connection: &str) -> Result<Option<String>, BackplaneError> {
        let records = self.records();
        let now = Instant::now();
        Ok(records.get(connection).filter(|(_, until)| *until > now).map(|(holder, _)| holder.clone()))
    }

    async fn renew(&self, connections: &[String], ttl: Duration) -> Result<(), BackplaneError> {
        let mut records = self.records();
        let now = Instant::now();
        for connection in connections {
            if let Some((_, until)) = records.get_mut(connection).filter(|(_, until)| *until > now) {
                *until = now + ttl;
            }
        }
        Ok(())
    }
}
