//! The local registry of one hub: connections on this node, and which groups and users they
//! belong to. Fan-out reads it under a read lock and never waits while holding it: pushing to
//! an outbound queue is non-blocking.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use protocol::Protocol;

use super::{Audience, Encoded};
use crate::queue::outbound::{EndStatus, Outbound, PushError};

/// A connection as the registry knows it.
pub(crate) struct Member {
    pub outbound: Arc<Outbound>,
    pub user: Option<Arc<str>>,
    pub protocol: Protocol,
    groups: HashSet<String>,
}

impl Member {
    pub fn new(outbound: Arc<Outbound>, user: Option<Arc<str>>, protocol: Protocol) -> Self {
        Self { outbound, user, protocol, groups: HashSet::new() }
    }
}

#[derive(Default)]
struct Inner {
    connections: HashMap<Arc<str>, Member>,
    groups: HashMap<String, HashSet<Arc<str>>>,
    users: HashMap<Arc<str>, HashSet<Arc<str>>>,
}

/// What [`Registry::join`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Join {
    Joined,
    AlreadyMember,
    /// The connection is in as many groups as allowed; nothing changed.
    Full,
}

/// What a delivery did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub queued: u64,
    pub slow_consumers: u64,
}

#[derive(Default)]
pub(crate) struct Registry {
    inner: RwLock<Inner>,
}

impl Registry {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, id: Arc<str>, member: Member) {
        let mut inner = self.write();
        if let Some(user) = &member.user {
            inner.users.entry(user.clone()).or_default().insert(id.clone());
        }
        inner.connections.insert(id, member);
    }

    /// Removes a connection; returns the groups it was in and its user.
    pub fn remove(&self, id: &str) -> Option<(Vec<String>, Option<Arc<str>>)> {
        let mut inner = self.write();
        let member = inner.connections.remove(id)?;
        for group in &member.groups {
            remove_from_index(&mut inner.groups, group.as_str(), id);
        }
        if let Some(user) = &member.user {
            remove_from_index(&mut inner.users, user, id);
        }
        Some((member.groups.into_iter().collect(), member.user))
    }

    pub fn contains(&self, id: &str) -> bool {
        self.read().connections.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.read().connections.len()
    }

    /// Whether `user` has a connection here.
    pub fn has_user(&self, user: &str) -> bool {
        self.read().users.contains_key(user)
    }

    /// Whether `group` has a member here.
    pub fn has_group(&self, group: &str) -> bool {
        self.read().groups.contains_key(group)
    }

    /// Whether one of `user`'s connections here is in `group`.
    pub fn user_in_group(&self, user: &str, group: &str) -> bool {
        let inner = self.read();
        let (Some(connections), Some(members)) = (inner.users.get(user), inner.groups.get(group)) else {
            return false;
        };
        connections.iter().any(|id| members.contains(id))
    }

    /// The ids of `group`'s members here, at most `limit`.
    pub fn group_members(&self, group: &str, limit: usize) -> Vec<String> {
        let inner = self.read();
        let members = inner.groups.get(group).into_iter().flatten();
        members.take(limit).map(|id| id.to_string()).collect()
    }

    /// Adds `id` to `group` unless that would put it in more than `max_groups` groups; `None`
    /// if the connection is not here.
    pub fn join(&self, id: &str, group: &str, max_groups: usize) -> Option<Join> {
        let mut inner = self.write();
        let key = inner.connections.get_key_value(id)?.0.clone();
        let member = inner.connections.get_mut(id)?;
        if member.groups.contains(group) {
            return Some(Join::AlreadyMember);
        }
        if member.groups.len() >= max_groups {
            return Some(Join::Full);
        }
        member.groups.insert(group.to_owned());
        inner.groups.entry(group.to_owned()).or_default().insert(key);
        Some(Join::Joined)
    }

    /// Removes `id` from `group`: `Some(true)` if it was a member, `None` if not here.
    pub fn leave(&self, id: &str, group: &str) -> Option<bool> {
        let mut inner = self.write();
        let member = inner.connections.get_mut(id)?;
        if !member.groups.remove(group) {
            return Some(false);
        }
        remove_from_index(&mut inner.groups, group, id);
        Some(true)
    }

    /// Queues `message` for one local connection; `None` when it is not here.
    pub fn deliver_to(&self, id: &str, message: &Encoded) -> Option<Delivered> {
        let inner = self.read();
        let member = inner.connections.get(id)?;
        let mut delivered = Delivered::default();
        match member.outbound.push(message.for_protocol(member.protocol).clone()) {
            Ok(()) => delivered.queued = 1,
            Err(PushError::SlowConsumer) => delivered.slow_consumers = 1,
            Err(PushError::Closed) => {}
        }
        Some(delivered)
    }

    /// Ends one local connection after what is queued, with `close` (in its protocol) as its
    /// last message; `false` when it is not here.
    pub fn close(&self, id: &str, close: &Encoded) -> bool {
        let inner = self.read();
        let Some(member) = inner.connections.get(id) else { return false };
        member.outbound.finish(Some(close.for_protocol(member.protocol).clone()), EndStatus::Normal);
        true
    }

    /// Queues `message`, in each connection's protocol, for every local connection in
    /// `audience` but the excluded ones.
    pub fn deliver(&self, audience: &Audience, excluded: &[String], message: &Encoded) -> Delivered {
        let inner = self.read();
        let mut delivered = Delivered::default();
        each_in_audience(&inner, audience, excluded, |_, member| {
            match member.outbound.push(message.for_protocol(member.protocol).clone()) {
                Ok(()) => delivered.queued += 1,
                Err(PushError::SlowConsumer) => delivered.slow_consumers += 1,
                Err(PushError::Closed) => {}
            }
        });
        delivered
    }

    /// Ends every local connection in `audience` but the excluded ones, each after what is
    /// queued, with `close` as its last message; returns how many.
    pub fn close_audience(&self, audience: &Audience, excluded: &[String], close: &Encoded) -> usize {
        let inner = self.read();
        let mut closed = 0;
        each_in_audience(&inner, audience, excluded, |_, member| {
            member.outbound.finish(Some(close.for_protocol(member.protocol).clone()), EndStatus::Normal);
            closed += 1;
        });
        closed
    }

    /// The ids of the local connections of `user`.
    pub fn connections_of(&self, user: &str) -> Vec<Arc<str>> {
        let inner = self.read();
        inner.users.get(user).into_iter().flatten().cloned().collect()
    }

    /// The groups a local connection is in; `None` if it is not here.
    pub fn groups_of(&self, id: &str) -> Option<Vec<String>> {
        self.read().connections.get(id).map(|member| member.groups.iter().cloned().collect())
    }
}

/// Calls `visit` for every connection in `audience` but the excluded ones.
fn each_in_audience(inner: &Inner, audience: &Audience, excluded: &[String], mut visit: impl FnMut(&str, &Member)) {
    let mut push = |id: &str, member: &Member| {
        if !excluded.iter().any(|e| e == id) {
            visit(id, member);
        }
    };
    match audience {
        Audience::All => inner.connections.iter().for_each(|(id, m)| push(id, m)),
        Audience::Group(group) => each_indexed(inner, inner.groups.get(group.as_str()), &mut push),
        Audience::User(user) => each_indexed(inner, inner.users.get(user.as_str()), &mut push),
        Audience::Connection(id) => {
            if let Some(member) = inner.connections.get(id.as_str()) {
                push(id, member);
            }
        }
    }
}

fn each_indexed(inner: &Inner, ids: Option<&HashSet<Arc<str>>>, push: &mut impl FnMut(&str, &Member)) {
    for id in ids.into_iter().flatten() {
        if let Some(member) = inner.connections.get(id) {
            push(id, member);
        }
    }
}

fn remove_from_index<K>(index: &mut HashMap<K, HashSet<Arc<str>>>, key: &str, id: &str)
where
    K: std::borrow::Borrow<str> + std::hash::Hash + Eq,
{
    if let Some(ids) = index.get_mut(key) {
        ids.remove(id);
        if ids.is_empty() {
            index.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn member(user: Option<&str>, protocol: Protocol) -> (Arc<Outbound>, Member) {
        let outbound = Arc::new(Outbound::new(1024));
        (outbound.clone(), Member::new(outbound, user.map(Arc::from), protocol))
    }

    fn setup() -> (Registry, Vec<Arc<Outbound>>) {
        let registry = Registry::default();
        let mut queues = Vec::new();
        for (id, user) in [("a", Some("alice")), ("b", Some("alice")), ("c", Some("bob")), ("d", None)] {
            let (queue, m) = member(user, Protocol::Json);
            registry.insert(Arc::from(id), m);
            queues.push(queue);
        }
        (registry, queues)
    }

    fn queued(queues: &[Arc<Outbound>]) -> Vec<usize> {
        queues.iter().map(|q| q.queued_bytes()).collect()
    }

    /// A message one byte long in JSON, so queued byte counts are message counts.
    const MSG: Encoded = Encoded { json: Bytes::from_static(b"m"), messagepack: Bytes::from_static(b"mp") };

    #[test]
    fn each_connection_gets_the_encoding_of_its_protocol() {
        let registry = Registry::default();
        let (json, m) = member(None, Protocol::Json);
        registry.insert(Arc::from("j"), m);
        let (msgpack, m) = member(None, Protocol::MessagePack);
        registry.insert(Arc::from("m"), m);
        registry.deliver(&Audience::All, &[], &MSG);
        assert_eq!((json.queued_bytes(), msgpack.queued_bytes()), (1, 2));
    }

    #[test]
    fn all_reaches_everyone_but_the_excluded() {
        let (registry, queues) = setup();
        let delivered = registry.deliver(&Audience::All, &["c".into()], &MSG);
        assert_eq!(delivered.queued, 3);
        assert_eq!(queued(&queues), vec![1, 1, 0, 1]);
    }

    #[test]
    fn groups_reach_members_only_until_they_leave() {
        let (registry, queues) = setup();
        assert_eq!(registry.join("a", "*", usize::MAX), Some(Join::Joined));
        assert_eq!(registry.join("a", "*", usize::MAX), Some(Join::AlreadyMember));
        assert_eq!(registry.join("c", "*", usize::MAX), Some(Join::Joined));
        assert_eq!(registry.join("zz", "*", usize::MAX), None);
        registry.deliver(&Audience::Group("*".into()), &[], &MSG);
        assert_eq!(queued(&queues), vec![1, 0, 1, 0]);
        assert_eq!(registry.leave("a", "*"), Some(true));
        registry.deliver(&Audience::Group("*".into()), &[], &MSG);
        assert_eq!(queued(&queues), vec![1, 0, 2, 0]);
    }

    #[test]
    fn a_user_is_every_connection_with_that_user_id() {
        let (registry, queues) = setup();
        registry.deliver(&Audience::User("alice".into()), &[], &MSG);
        assert_eq!(queued(&queues), vec![1, 1, 0, 0]);
    }

    #[test]
    fn removal_forgets_groups_and_users() {
        let (registry, queues) = setup();
        registry.join("a", "g", usize::MAX);
        let (groups, user) = registry.remove("a").unwrap();
        assert_eq!(groups, vec!["g".to_string()]);
        assert_eq!(user.as_deref(), Some("alice"));
        registry.deliver(&Audience::Group("g".into()), &[], &MSG);
        registry.deliver(&Audience::User("alice".into()), &[], &MSG);
        assert_eq!(queued(&queues), vec![0, 1, 0, 0]);
        assert!(!registry.contains("a"));
        assert_eq!(registry.len(), 3);
    }

    #[test]
    fn closing_an_audience_ends_its_members_but_the_excluded() {
        let (registry, queues) = setup();
        assert_eq!(registry.close_audience(&Audience::User("alice".into()), &["b".into()], &MSG), 1);
        let ended: Vec<bool> = queues.iter().map(|q| q.closed().is_cancelled()).collect();
        assert_eq!(ended, [true, false, false, false]);
    }

    #[test]
    fn a_connection_knows_its_groups_and_a_user_its_connections() {
        let (registry, _) = setup();
        registry.join("a", "g1", usize::MAX);
        registry.join("a", "g2", usize::MAX);
        let mut groups = registry.groups_of("a").unwrap();
        groups.sort();
        assert_eq!(groups, ["g1", "g2"]);
        assert_eq!(registry.groups_of("nobody"), None);
        let mut alice: Vec<String> = registry.connections_of("alice").iter().map(|id| id.to_string()).collect();
        alice.sort();
        assert_eq!(alice, ["a", "b"]);
        assert!(registry.connections_of("nobody").is_empty());
    }

    #[test]
    fn one_connection_by_id() {
        let (registry, queues) = setup();
        registry.deliver(&Audience::Connection("d".into()), &[], &MSG);
        registry.deliver(&Audience::Connection("nobody".into()), &[], &MSG);
        assert_eq!(queued(&queues), vec![0, 0, 0, 1]);
    }
}
