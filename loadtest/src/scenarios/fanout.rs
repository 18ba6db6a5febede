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
//!   `seq % groups` by `SendToGroup`; expected = that group's members. With `group_churn` =
//!   f > 0, the first ⌈f × group_size⌉ members of each group leave and rejoin their group
//!   every second. Exact expectations for them would need the server's membership at each
//!   publish instant, so they are left out of the accounting: expected counts only the
//!   members that stay joined the whole run, and churning members' deliveries are counted
//!   apart (`deliveries_churning`);
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
use super::peers::{Alone, Member, Peers};
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

/// How often churning group members leave and rejoin.
const CHURN_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// The subscribers that connected, and per group how many stay joined the whole run.
#[derive(Debug, Default)]
struct Directory {
    members: Vec<Member>,
    stable_per_group: Vec<u64>,
}

impl Directory {
    fn new(mut members: Vec<Member>) -> Self {
        members.sort_by_key(|m| m.index);
        let groups = members.iter().map(|m| m.group + 1).max().unwrap_or(0) as usize;
        let mut stable_per_group = vec![0; groups];
        for member in members.iter().filter(|m| !m.churning) {
            stable_per_group[member.group as usize] += 1;
        }
        Self { members, stable_per_group }
    }
}

/// A fan-out scenario (see the module docs).
pub struct Fanout {
    route: Route,
    settings: Arc<Settings>,
    ledger: Arc<Ledger>,
    next_sequence: AtomicU64,
    directory: OnceLock<Directory>,
    stop: watch::Sender<bool>,
    readers: Mutex<JoinSet<()>>,
    peers: Arc<dyn Peers>,
}

impl Fanout {
    /// A fan-out run in one process.
    pub fn new(route: Route, settings: Arc<Settings>) -> Self {
        Self::with_peers(route, settings, Arc::new(Alone))
    }

    /// This process's part of a run spread over several (`settings.slice` says which part):
    /// the directory and the drain are settled with `peers`.
    pub fn with_peers(route: Route, settings: Arc<Settings>, peers: Arc<dyn Peers>) -> Self {
        Self {
            peers,
            route,
            settings,
            ledger: Arc::default(),
            next_sequence: AtomicU64::new(0),
            directory: OnceLock::new(),
            stop: watch::channel(false).0,
            readers: Mutex::new(JoinSet::new()),
        }
    }

    /// The delivery counts so far.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn directory(&self) -> &Directory {
        static EMPTY: Directory = Directory { members: Vec::new(), stable_per_group: Vec::new() };
        self.directory.get().unwrap_or(&EMPTY)
    }

    /// Subscriber `index`'s group, and whether it churns.
    fn placement(&self, index: u32) -> (u64, bool) {
        let size = self.settings.group_size.max(1);
        let churners = (self.settings.group_churn.clamp(0.0, 1.0) * f64::from(size)).ceil() as u32;
        let churning = self.route == Route::Group && index % size < churners;
        (u64::from(index / size), churning)
    }

    /// The hub method, its arguments and how many subscribers message `seq` addresses.
    fn address(&self, seq: u64, payload: Value) -> Result<(&'static str, Vec<Value>, u64), Failure> {
        let directory = self.directory();
        let members = &directory.members;
        let n = members.len() as u64;
        if n == 0 {
            return Err(Failure { kind: "setup", message: "no subscriber is connected".into() });
        }
        let member = &members[(seq % n) as usize];
        let tick = Value::from(TARGET);
        Ok(match self.route {
            Route::All => ("SendToAll", vec![tick, payload], n),
            Route::Group => {
                let groups = &directory.stable_per_group;
                let group = seq % groups.len().max(1) as u64;
                let stable = groups.get(group as usize).copied().unwrap_or(0);
                ("SendToGroup", vec![Value::from(group_name(group)), tick, payload], stable)
            }
            Route::User => ("SendToUser", vec![Value::from(member.user.as_str()), tick, payload], 1),
            Route::Connection => {
                ("SendToConnection", vec![Value::from(member.connection_id.as_str()), tick, payload], 1)
            }
        })
    }

    /// Connects subscriber `local` (of this process), prepares it for the route, and returns
    /// it with its address.
    async fn subscribe(&self, local: u32, recorder: &Recorder) -> Result<(Connection, Member), Failure> {
        let index = self.settings.slice.subscriber_offset + local;
        let user = format!("user-{index}");
        let options = self.settings.options(self.settings.subscriber_urls(), index, &user)?;
        let mut connection = connect(options, recorder).await?;
        let (group, churning) = self.placement(index);
        if self.route == Route::Group {
            hub_result(within(connection.invoke("JoinGroup", vec![Value::from(group_name(group))])).await?)?;
        }
        let connection_id = match self.route {
            Route::Connection => match hub_result(within(connection.invoke("GetConnectionId", vec![])).await?)? {
                Some(Value::String(id)) => id.into_str().unwrap_or_default(),
                other => return Err(Failure { kind: "protocol", message: format!("GetConnectionId gave {other:?}") }),
            },
            _ => String::new(),
        };
        Ok((connection, Member { index, user, connection_id, group, churning }))
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
                    let churn = member.churning.then(|| group_name(member.group));
                    let reader = Reader { ledger: self.ledger.clone(), recorder: recorder.clone(), churn };
                    let reader = reader.run(connection, self.stop.subscribe());
                    self.readers.lock().unwrap_or_else(|p| p.into_inner()).spawn(reader);
                    members.push(member);
                }
                Err(failure) => recorder.failure(&failure),
            }
        }
        recorder.gauge("subscribers", members.len() as f64);
        let members = self.peers.exchange(members).await;
        if members.is_empty() {
            return Err(Failure { kind: "setup", message: "no subscriber could connect".into() });
        }
        let _ = self.directory.set(Directory::new(members));
        Ok(())
    }

    async fn start_vu(&self, index: u32, recorder: &Recorder) -> Result<Connection, Failure> {
        let index = self.settings.slice.vu_offset + index;
        let options = self.settings.options(&self.settings.targets, index, &format!("publisher-{index}"))?;
        connect(options, recorder).await
    }

    async fn iteration(&self, vu: &mut Connection, recorder: &Recorder) -> Result<(), Failure> {
        vu.discard_pending();
        let sequence = self.settings.slice.sequence(self.next_sequence.fetch_add(1, Ordering::Relaxed));
        let payload = Value::from(Stamp::now(sequence).encode(self.settings.payload_bytes));
        let (method, arguments, recipients) = self.address(sequence, payload)?;
        recorder.count("messages_sent", 1);
        // Sent without an invocation id, as the Azure SignalR benchmark's senders do: the
        // arrival rate paces the publishers, and waiting for a Completion per message would
        // make the publishing VUs, not the server, the limit. Refusals show up as loss.
        let sent = within(vu.send(method, arguments)).await;
        vu.discard_pending();
        sent?;
        self.ledger.published(recipients);
        Ok(())
    }

    fn dedicated_senders(&self) -> u32 {
        self.settings.publishers
    }

    async fn teardown(&self, recorder: &Recorder) {
        self.peers.settle(&self.ledger, self.settings.drain).await;
        self.ledger.totals().record(recorder);
        let _ = self.stop.send(true);
        let mut readers = std::mem::take(&mut *self.readers.lock().unwrap_or_else(|p| p.into_inner()));
        while readers.join_next().await.is_some() {}
    }
}

/// A subscriber's reader: every `tick` is checked against the ledger until the run stops
/// (then the connection is closed) or the server drops the connection (counted as an error
/// of kind `subscriber_dropped`). A churning member leaves and rejoins its group every
/// [`CHURN_PERIOD`] and counts its deliveries apart.
struct Reader {
    ledger: Arc<Ledger>,
    recorder: Recorder,
    /// The group a churning member leaves and rejoins.
    churn: Option<String>,
}

impl Reader {
    async fn run(self, mut connection: Connection, mut stop: watch::Receiver<bool>) {
        let mut seen = Seen::default();
        let mut churn = tokio::time::interval(CHURN_PERIOD);
        churn.tick().await;
        loop {
            let event = tokio::select! {
                event = connection.next() => event,
                _ = churn.tick(), if self.churn.is_some() => {
                    self.rejoin(&mut connection).await;
                    continue;
                }
                _ = stop.changed() => break,
            };
            match event {
                Some(Event::Message(HubMessage::Invocation(invocation))) if invocation.target == TARGET => {
                    let stamp = invocation.arguments.first().and_then(Value::as_str).and_then(Stamp::decode);
                    match stamp {
                        Some(_) if self.churn.is_some() => self.recorder.count("deliveries_churning", 1),
                        Some(stamp) => tally(stamp, &mut seen, &self.ledger, &self.recorder),
                        None => self.recorder.count("messages_unreadable", 1),
                    }
                }
                Some(Event::Message(_) | Event::Reconnected) => {}
                Some(Event::Closed(error)) => return self.dropped(error),
                None => return self.dropped(None),
            }
        }
        let _ = connection.close().await;
    }

    /// Leaves and rejoins the churning member's group.
    async fn rejoin(&self, connection: &mut Connection) {
        let Some(group) = &self.churn else { return };
        for method in ["LeaveGroup", "JoinGroup"] {
            let changed = within(connection.invoke(method, vec![Value::from(group.as_str())])).await;
            if let Err(failure) = changed.and_then(hub_result) {
                self.recorder.failure(&failure);
                return;
            }
        }
        self.recorder.count("group_rejoins", 1);
    }

    fn dropped(&self, error: Option<String>) {
        let message = error.unwrap_or_else(|| "the connection ended".into());
        self.recorder.failure(&Failure { kind: "subscriber_dropped", message });
    }
}

/// Counts one delivery: latency for first deliveries, duplicates apart.
fn tally(stamp: Stamp, seen: &mut Seen, ledger: &Ledger, recorder: &Recorder) {
    let latency = stamp.age();
    let first = seen.first(stamp.sequence);
    recorder.update(|metrics| {
        metrics.counter("messages_received").count += 1;
        if first {
            metrics.trend("delivery_latency").record(latency);
        }
    });
    ledger.delivered(first, latency);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fanout(route: Route, subscribers: u32, group_size: u32) -> Fanout {
        churning_fanout(route, subscribers, group_size, 0.0)
    }

    fn churning_fanout(route: Route, subscribers: u32, group_size: u32, group_churn: f64) -> Fanout {
        let settings = Settings { group_size, group_churn, ..Settings::default() };
        let fanout = Fanout::new(route, Arc::new(settings));
        let members = (0..subscribers)
            .map(|i| {
                let (group, churning) = fanout.placement(i);
                Member { index: i, user: format!("user-{i}"), connection_id: format!("conn-{i}"), group, churning }
            })
            .collect();
        let _ = fanout.directory.set(Directory::new(members));
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
    fn churning_members_are_left_out_of_the_expectation() {
        let groups = churning_fanout(Route::Group, 25, 10, 0.25);
        assert_eq!(addressed(&groups, 0), ("SendToGroup", "group-0".into(), 7));
        assert_eq!(addressed(&groups, 2), ("SendToGroup", "group-2".into(), 2));
        assert!(!churning_fanout(Route::All, 10, 10, 0.5).placement(0).1, "only groups churn");
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
