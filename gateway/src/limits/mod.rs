//! Limits that protect a node: how many connections it holds (`--max-connections`), how many
//! one user holds (`--max-connections-per-user`) and how fast one client address opens new
//! ones (`--connection-rate-per-ip`).
//!
//! How it works: a request that would create a connection (negotiate, or a WebSocket that
//! skipped negotiate) first takes a token from its address's bucket ([`rate`]), then a
//! [`Permit`]: a slot of the node and, when a per-user limit is set, one of its user. The permit
//! lives as long as the connection: negotiate stores it with the negotiated connection, the
//! transport that claims the connection keeps it, and it is given back when the connection
//! ends, or when a negotiated connection nobody connected to is forgotten. A burst of negotiates
//! can therefore never overshoot the limit, and a slot is free again the moment its connection
//! is gone. When the request that starts a negotiated connection presents another user than
//! negotiate did, the permit moves to that user (or the start is refused).
//!
//! A refusal touches nothing else: connections that run go on, `/readyz` stays 200 (a full node
//! is healthy; it is the load balancer's job to spread clients), and each refusal is counted in
//! `hubgate_connections_refused_total` with its reason.
//!
//! | Limit | Answer | `Retry-After` |
//! |---|---|---|
//! | node full | 503 `The server has reached its connection limit` | [`FULL_RETRY_AFTER`] |
//! | user's limit | 429 `Too many connections for this user` | [`FULL_RETRY_AFTER`] |
//! | address's rate | 429 `Too many new connections from this address` | until its next token |
//!
//! 503 for a full node says "try another node" (clients and balancers retry elsewhere); 429
//! says "you, slow down", which another node would answer alike.

pub mod rate;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::metrics::{ConnectionRefusal, Metrics};
pub use rate::ConnectionRate;
use rate::RateLimiter;

/// What a refusal for a full node or a user at its limit asks clients to wait.
pub const FULL_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The limits' settings (see the options of the same names; 0 means unlimited), built once
/// from the configuration by the composition root.
#[derive(Debug, Clone, Default)]
pub(crate) struct LimitSettings {
    pub max_connections: usize,
    pub max_connections_per_user: usize,
    pub connection_rate_per_ip: Option<ConnectionRate>,
}

/// The node's connection limits and what they count; see the module docs.
pub(crate) struct Limits {
    max_connections: usize,
    max_per_user: usize,
    /// Connections holding a slot: negotiated and not yet started, or running.
    slots: Arc<AtomicUsize>,
    /// Slots per user, only while a per-user limit is set; users without one are absent.
    users: Arc<Mutex<HashMap<Arc<str>, usize>>>,
    rate: Option<RateLimiter>,
    metrics: Arc<Metrics>,
}

/// Why a new connection was refused; its response says so to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    NodeFull,
    UserLimit,
    IpRate { retry_after: Duration },
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, body, wait) = match self {
            Self::NodeFull => {
                (StatusCode::SERVICE_UNAVAILABLE, "The server has reached its connection limit", FULL_RETRY_AFTER)
            }
            Self::UserLimit => (StatusCode::TOO_MANY_REQUESTS, "Too many connections for this user", FULL_RETRY_AFTER),
            Self::IpRate { retry_after } => {
                (StatusCode::TOO_MANY_REQUESTS, "Too many new connections from this address", retry_after)
            }
        };
        // Whole seconds, rounded up: a client that waits as told finds a free token.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let retry_after = HeaderValue::from(seconds.max(1));
        let headers =
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain")), (header::RETRY_AFTER, retry_after)];
        (status, headers, body).into_response()
    }
}

impl Limits {
    pub fn new(settings: LimitSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            max_connections: settings.max_connections,
            max_per_user: settings.max_connections_per_user,
            slots: Arc::default(),
            users: Arc::default(),
            rate: settings.connection_rate_per_ip.map(RateLimiter::new),
            metrics,
        }
    }

    /// Connections holding a slot now (negotiated and not yet started, or running).
    pub fn held(&self) -> usize {
        self.slots.load(Ordering::Relaxed)
    }

    fn refuse(&self, refusal: Refusal) -> Refusal {
        let reason = match refusal {
            Refusal::NodeFull => ConnectionRefusal::NodeFull,
            Refusal::UserLimit => ConnectionRefusal::UserLimit,
            Refusal::IpRate { .. } => ConnectionRefusal::IpRate,
        };
        tracing::debug!(reason = reason.label(), "new connection refused");
        self.metrics.connection_refused(reason);
        refusal
    }

    /// Counts one new connection from `client` against its address's rate. An unknown
    /// address (no connection info) is not limited.
    pub fn check_rate(&self, client: Option<IpAddr>) -> Result<(), Refusal> {
        let (Some(limiter), Some(client)) = (&self.rate, client) else { return Ok(()) };
        limiter.try_take(client, Instant::now()).map_err(|retry_after| self.refuse(Refusal::IpRate { retry_after }))
    }

    /// A slot of the node for a new connection, not yet any user's (see [`Limits::admit_user`]).
    pub fn admit(&self) -> Result<Permit, Refusal> {
        let max = self.max_connections;
        let taken = self
            .slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| (max == 0 || held < max).then_some(held + 1));
        match taken {
            Ok(_) => Ok(Permit { _slot: Slot(self.slots.clone()), user: None }),
            Err(_) => Err(self.refuse(Refusal::NodeFull)),
        }
    }

    /// Makes `permit` count for `user`: nothing to do when it already does, when the
    /// connection is anonymous or when there is no per-user limit; otherwise a slot of the user
    /// replaces the permit's previous one, if the user has one left.
    pub fn admit_user(&self, permit: &mut Permit, user: Option<&Arc<str>>) -> Result<(), Refusal> {
        let Some(user) = user.filter(|_| self.max_per_user > 0) else {
            permit.user = None;
            return Ok(());
        };
        if permit.user.as_ref().is_some_and(|held| held.user == *user) {
            return Ok(());
        }
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let count = users.entry(user.clone()).or_insert(0);
        if *count >= self.max_per_user {
            drop(users);
            return Err(self.refuse(Refusal::UserLimit));
        }
        *count += 1;
        drop(users);
        permit.user = Some(UserSlot { users: self.users.clone(), user: user.clone() });
        Ok(())
    }
}

/// A connection's place under the limits: a slot of the node, and one of its user when a
/// per-user limit is set. Dropping it gives both back.
pub(crate) struct Permit {
    _slot: Slot,
    user: Option<UserSlot>,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").field("user", &self.user.as_ref().map(|slot| &slot.user)).finish()
    }
}

struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct UserSlot {
    users: Arc<Mutex<HashMap<Arc<str>, usize>>>,
    user: Arc<str>,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = users.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                users.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, max_connections_per_user: usize) -> Limits {
        let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
        let settings = LimitSettings { max_connections, max_connections_per_user, connection_rate_per_ip: None };
        Limits::new(settings, metrics)
    }

    #[test]
    fn slots_are_bounded_and_given_back_on_drop() {
        let limits = limits(2, 0);
        let first = limits.admit().unwrap();
        let _second = limits.admit().unwrap();
        assert_eq!(limits.admit().unwrap_err(), Refusal::NodeFull);
        assert_eq!(limits.held(), 2);
        drop(first);
        assert_eq!(limits.held(), 1);
        assert!(limits.admit().is_ok());
    }

    #[test]
    fn zero_means_unlimited() {
        let limits = limits(0, 0);
        let permits: Vec<Permit> = (0..1000).map(|_| limits.admit().unwrap()).collect();
        assert_eq!(limits.held(), permits.len());
    }

    #[test]
    fn a_user_holds_at_most_its_limit_and_a_permit_can_move_to_another_user() {
        let limits = limits(0, 1);
        let (alice, bob): (Arc<str>, Arc<str>) = ("alice".into(), "bob".into());
        let mut first = limits.admit().unwrap();
        limits.admit_user(&mut first, Some(&alice)).unwrap();
        limits.admit_user(&mut first, Some(&alice)).unwrap();
        let mut second = limits.admit().unwrap();
        assert_eq!(limits.admit_user(&mut second, Some(&alice)), Err(Refusal::UserLimit));
        limits.admit_user(&mut second, None).unwrap();
        limits.admit_user(&mut first, Some(&bob)).unwrap();
        limits.admit_user(&mut second, Some(&alice)).unwrap();
        drop(first);
        assert!(limits.users.lock().unwrap().get("bob").is_none(), "a user without connections is forgotten");
    }

    #[test]
    fn refusals_say_when_to_retry() {
        let response = Refusal::IpRate { retry_after: Duration::from_millis(1500) }.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let response = Refusal::NodeFull.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    }
}
