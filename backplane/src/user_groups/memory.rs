//! User groups in this process: the single-node default, and shared by several in-process
//! nodes in tests (clones share one map).
//!
//! Expiry uses the monotonic clock ([`Instant`]), so wall-clock jumps change nothing. Expired
//! memberships are removed when their user is next touched; a user with no membership left
//! leaves no entry behind, so the map holds only users that have live memberships or were not
//! touched since theirs expired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{bounded, UserGroups, UserGroupsError, MAX_GROUPS_PER_USER};

/// Group → when the membership ends (`None`: never).
type Memberships = HashMap<String, Option<Instant>>;

/// User groups in process memory. Clones share the same memberships.
#[derive(Debug, Clone, Default)]
pub struct MemoryUserGroups {
    /// (hub, user) → memberships. Never locked across an await.
    users: Arc<Mutex<HashMap<(String, String), Memberships>>>,
}

impl MemoryUserGroups {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no user has any membership (expired ones not yet dropped included).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Memberships>> {
        self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `change` on the unexpired memberships of `user`, then forgets the user if none is left.
    fn with_user<T>(&self, hub: &str, user: &str, change: impl FnOnce(&mut Memberships) -> T) -> T {
        let mut users = self.lock();
        let key = (hub.to_owned(), user.to_owned());
        let memberships = users.entry(key.clone()).or_default();
        let now = Instant::now();
        memberships.retain(|_, until| until.is_none_or(|until| until > now));
        let result = change(memberships);
        if memberships.is_empty() {
            users.remove(&key);
        }
        result
    }
}

#[async_trait]
impl UserGroups for MemoryUserGroups {
    async fn add(&self, hub: &str, user: &str, group: &str, ttl: Option<Duration>) -> Result<(), UserGroupsError> {
        let until = ttl.map(|ttl| Instant::now() + bounded(ttl));
        self.with_user(hub, user, |memberships| {
            if !memberships.contains_key(group) && memberships.len() >= MAX_GROUPS_PER_USER {
                return Err(UserGroupsError::too_many(user));
            }
            memberships.insert(group.to_owned(), until);
            Ok(())
        })
    }

    async fn remove(&self, hub: &str, user: &str, group: &str) -> Result<(), UserGroupsError> {
        self.with_user(hub, user, |memberships| memberships.remove(group));
        Ok(())
    }

    async fn remove_all(&self, hub: &str, user: &str) -> Result<(), UserGroupsError> {
        self.with_user(hub, user, Memberships::clear);
        Ok(())
    }

    async fn groups_of(&self, hub: &str, user: &str) -> Result<Vec<String>, UserGroupsError> {
        Ok(self.with_user(hub, user, |memberships| memberships.keys().take(MAX_GROUPS_PER_USER).cloned().collect()))
    }
}
