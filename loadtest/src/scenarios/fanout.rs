//! The fan-out scenarios — `broadcast`, `group`, `user`, `connection` — on one machinery:
//! subscribers connect (and join their group, or learn their connection id) in
//! [`Scenario::setup`], each with a reader task that checks every delivery against the
//! [`Ledger`]; each iteration is one stamped message from a publisher VU; teardown waits up
//! to `drain` for deliveries still in flight and records the `deliveries_*` counters.
//!
//! Addressing per route, for message number `seq` among `n` subscribers:
//! - `broadcast`: `SendToAll("tick", payload)`, all `n` subscribers. Publishers receive their
//!   own broadcasts too; they drop them unread before each message;
//! - `group`: subscriber `i` is in `group-{i / group_size}`; message `seq` goes to group
//!   `seq % groups` by `SendToGroup`; expected = that group's members;
//! - `user`: subscriber `i` is user `user-{i}` (tokens signed with `--jwt-secret`); message
//!   `seq` goes to `user-{seq % n}` by `SendToUser`; expected 1;
//! - `connection`: subscriber ids come from `GetConnectionId`; message `seq` goes to
//!   subscriber `seq % n` by `SendToConnection` (possibly through another node); expected 1.
//!
//! Subscribers do not reconnect: a reconnected connection would have lost its group, and a
//! dropped subscriber's missed deliveries are exactly the loss the run must show.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::StreamExt;
use protocol::{CompletionOutcome, HubMessage, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::ledger::{Ledger, Seen};
use super::stamp::Stamp;
use super::{connect, within, Auth, Settings};
use crate::runner::{Failure, Recorder, Scenario};
use crate::signalr::{Connection, Event};

/// Subscribers connecting concurrently during setup.
const SUBSCRIBING_AT_ONCE: usize = 128;
/// The method name subscribers receive.
const TARGET: &str = "tick";

/// How a message is addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    All,
    Group,
    User,
    Connection,
}

/// One subscriber as the publishers address it.
#[derive(Debug, Clone)]
struct Member {
    user: String,
    connection_id: String,
}

/// A fan-out scenario (see the module docs).
pub struct Fanout {
    route: Route,
    settings: Arc<Settings>,
    ledger: Arc<Ledger>,
    next_sequence: AtomicU64,
    members: OnceLock<Vec<Member>>,
    stop: watch::Sender<bool>,
    readers: Mutex<JoinSet<()>>,
}

impl Fanout {
    pub fn new(route: Route, settings: Arc<Settings>) -> Self {
        Self {
            route,
            settings,
            ledger: Arc::default(),
            next_sequence: AtomicU64::new(0),
            members: OnceLock::new(),
            stop: watch::channel(false).0,
            readers: Mutex::new(JoinSet::new()),
        }
    }

    /// The delivery counts so far.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn members(&self) -> &[Member] {
        self.members.get().map(Vec::as_slice).unwrap_or_default()
    }

    /// The hub method, its arguments and how many subscribers message `seq` addresses.
    fn address(&self, seq: u64, payload: Value) -> Result<(&'static str, Vec<Value>, u64), Failure> {
        let members = self.members();
        let n = members.len() as u64;
        if n == 0 {
            return Err(Failure { kind: "setup", message: "no subscriber is connected".into() });
        }
        let member = &members[(seq % n) as usize];
        let tick = Value::from(TARGET);
        Ok(match self.route {
            Route::All => ("SendToAll", vec![tick, payload], n),
            Route::Group => {
                let size = u64::from(self.settings.group_size.max(1));
                let group = seq % n.div_ceil(size);
                let members = (n - group * size).min(size);
                ("SendToGroup", vec![Value::from(group_name(group)), tick, payload], members)
            }
            Route::User => ("SendToUser", vec![Value::from(member.user.as_str()), tick, payload], 1),
            Route::Connection => {
                ("SendToConnection", vec![Value::from(member.connection_id.as_str()), tick, payload], 1)
            }
        })
    }

    /// Connects subscriber `index`, prepares it for the route, and returns it with its address.
    async fn subscribe(&self, index: u32, recorder: &Recorder) -> Result<(Connection, Member), Failure> {
        let user = format!("user-{index}");
        let options = self.settings.options(self.settings.subscriber_urls(), index, &user)?;
        let mut connection = connect(options, recorder).await?;
        if self.route == Route::Group {
            let group = u64::from(index) / u64::from(self.settings.group_size.max(1));
            hub_result(within(connection.invoke("JoinGroup", vec![Value::from(group_name(group))])).await?)?;
        }
        let connection_id = match self.route {
            Route::Connection => match hub_result(within(connection.invoke("GetConnectionId", vec![])).await?)? {
                Some(Value::String(id)) => id.into_str().unwrap_or_default(),
                other => return Err(Failure { kind: "protocol", message: format!("GetConnectionId gave {other:?}") }),
            },
            _ => String::new(),
        };
        Ok((connection, Member { user, connection_id }))
    }
}

fn group_name(group: u64) -> String {
    format!("group-{group}")
}

/// A completion's value, or its error as a `hub` failure.
fn hub_result(outcome: CompletionOutcome) -> Result<Option<Value>, Failure> {
    match outcome {
        CompletionOutcome::Void => Ok(None),
        CompletionOutcome::Value(value) => Ok(Some(value)),
        CompletionOutcome::Error(message) => Err(Failure { kind: "hub", message }),
    }
}

impl Scenario for Fanout {
    type Vu = Connection;

    async fn setup(&self, recorder: &Recorder) -> Result<(), Failure> {
        if self.route == Route::User && !matches!(self.settings.auth, Auth::Secret(_)) {
            return Err(Failure { kind: "setup", message: "the user scenario needs --jwt-secret".into() });
        }
        let mut joining = futures_util::stream::iter(0..self.settings.subscribers)
            .map(|index| self.subscribe(index, recorder))
            .buffer_unordered(SUBSCRIBING_AT_ONCE);
        let mut members = Vec::new();
        while let Some(joined) = joining.next().await {
            match joined {
                Ok((connection, member)) => {
                    let reader = read(connection, self.ledger.clone(), recorder.clone(), self.stop.subscribe());
                    self.readers.lock().unwrap_or_else(|p| p.into_inner()).spawn(reader);
                    members.push(member);
                }
                Err(failure) => recorder.failure(&failure),
            }
        }
        recorder.gauge("subscribers", members.len() as f64);
        if members.is_empty() {
            return Err(Failure { kind: "setup", message: "no subscriber could connect".into() });
        }
        let _ = self.members.set(members);
        Ok(())
    }

    async fn start_vu(&self, index: u32, recorder: &Recorder) -> Result<Connection, Failure> {
        let options = self.settings.options(&self.settings.targets, index, &format!("publisher-{index}"))?;
        connect(options, recorder).await
    }

    async fn iteration(&self, vu: &mut Connection, recorder: &Recorder) -> Result<(), Failure> {
        vu.discard_pending();
        let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
        let payload = Value::from(Stamp::now(sequence).encode(self.settings.payload_bytes));
        let (method, arguments, recipients) = self.address(sequence, payload)?;
        recorder.count("messages_sent", 1);
        let outcome = within(vu.invoke(method, arguments)).await;
        vu.discard_pending();
        hub_result(outcome?)?;
        self.ledger.published(recipients);
        Ok(())
    }

    async fn teardown(&self, recorder: &Recorder) {
        self.ledger.settle(self.settings.drain).await;
        self.ledger.totals().record(recorder);
        let _ = self.stop.send(true);
        let mut readers = std::mem::take(&mut *self.readers.lock().unwrap_or_else(|p| p.into_inner()));
        while readers.join_next().await.is_some() {}
    }
}

/// A subscriber's reader: every `tick` is checked against the ledger until the run stops
/// (then the connection is closed) or the server drops the connection (counted as an error
/// of kind `subscriber_dropped`).
async fn read(mut connection: Connection, ledger: Arc<Ledger>, recorder: Recorder, mut stop: watch::Receiver<bool>) {
    let mut seen = Seen::default();
    loop {
        let event = tokio::select! {
            event = connection.next() => event,
            _ = stop.changed() => break,
        };
        match event {
            Some(Event::Message(HubMessage::Invocation(invocation))) if invocation.target == TARGET => {
                let stamp = invocation.arguments.first().and_then(Value::as_str).and_then(Stamp::decode);
                match stamp {
                    Some(stamp) => tally(stamp, &mut seen, &ledger, &recorder),
                    None => recorder.count("messages_unreadable", 1),
                }
            }
            Some(Event::Message(_) | Event::Reconnected) => {}
            Some(Event::Closed(error)) => {
                let message = error.unwrap_or_else(|| "the connection ended".into());
                recorder.failure(&Failure { kind: "subscriber_dropped", message });
                return;
            }
            None => {
                let message = "the connection ended".into();
                recorder.failure(&Failure { kind: "subscriber_dropped", message });
                return;
            }
        }
    }
    let _ = connection.close().await;
}

/// Counts one delivery: latency for first deliveries, duplicates apart.
fn tally(stamp: Stamp, seen: &mut Seen, ledger: &Ledger, recorder: &Recorder) {
    let latency = stamp.age();
    let first = seen.first(stamp.sequence);
    recorder.count("messages_received", 1);
    if first {
        recorder.trend("delivery_latency", latency);
    }
    ledger.delivered(first, latency);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fanout(route: Route, subscribers: usize, group_size: u32) -> Fanout {
        let settings = Settings { group_size, ..Settings::default() };
        let fanout = Fanout::new(route, Arc::new(settings));
        let members = (0..subscribers)
            .map(|i| Member { user: format!("user-{i}"), connection_id: format!("conn-{i}") })
            .collect();
        let _ = fanout.members.set(members);
        fanout
    }

    fn addressed(fanout: &Fanout, seq: u64) -> (&'static str, String, u64) {
        let (method, args, recipients) = fanout.address(seq, Value::from("p")).unwrap();
        (method, args[0].as_str().unwrap_or_default().to_owned(), recipients)
    }

    #[test]
    fn a_broadcast_expects_every_subscriber() {
        assert_eq!(addressed(&fanout(Route::All, 7, 10), 3), ("SendToAll", TARGET.into(), 7));
    }

    #[test]
    fn a_group_message_expects_that_groups_members_including_a_short_last_group() {
        let groups = fanout(Route::Group, 25, 10);
        assert_eq!(addressed(&groups, 0), ("SendToGroup", "group-0".into(), 10));
        assert_eq!(addressed(&groups, 2), ("SendToGroup", "group-2".into(), 5));
        assert_eq!(addressed(&groups, 4), ("SendToGroup", "group-1".into(), 10));
    }

    #[test]
    fn user_and_connection_messages_go_round_robin_to_one_subscriber() {
        assert_eq!(addressed(&fanout(Route::User, 3, 1), 4), ("SendToUser", "user-1".into(), 1));
        assert_eq!(addressed(&fanout(Route::Connection, 3, 1), 5), ("SendToConnection", "conn-2".into(), 1));
    }

    #[test]
    fn without_subscribers_nothing_is_published() {
        let empty = Fanout::new(Route::All, Arc::default());
        assert_eq!(empty.address(0, Value::Nil).unwrap_err().kind, "setup");
    }
}
