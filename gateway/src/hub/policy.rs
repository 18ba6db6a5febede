//! What clients may do with the relay hub, from the configuration.
//!
//! The relay hub has no server code of its own to decide who may talk to whom, so an operator
//! states it here: which methods clients may call, which groups they may join (glob patterns,
//! or only the groups their access token lists), whether they may address users or single
//! connections, how many groups one connection may be in, and how many calls per second it may
//! make. Every relay method checks the policy before it acts; a denied call changes nothing,
//! delivers nothing and completes with a `HubException` naming the reason.
//!
//! The defaults allow everything the relay hub did before, except that a connection may be in
//! at most 100 groups.
//!
//! Sending to a group follows the join rule: a client may send to a group only if it may join
//! it (it need not be a member). Otherwise a client barred from `admin-*` could still write
//! into it.
//!
//! Rate limiting is a token bucket per connection, kept as GCRA (one theoretical arrival time):
//! eight bytes in the connection's registry entry, no task and no allocation, so idle
//! connections cost nothing more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use clap::{ArgAction, Args};
use tracing::debug;

use super::{HubContext, HubError};

/// The relay hub's methods, as the policy names them.
pub const RELAY_METHODS: [&str; 10] = [
    "Echo",
    "GetConnectionId",
    "JoinGroup",
    "LeaveGroup",
    "SendToAll",
    "SendToOthers",
    "SendToGroup",
    "SendToOthersInGroup",
    "SendToUser",
    "SendToConnection",
];

/// In `--relay-join-groups`: the groups listed in the client's token claim.
pub const TOKEN_GROUPS: &str = "token";

/// Default of `--relay-max-groups-per-connection`.
pub const DEFAULT_MAX_GROUPS: usize = 100;

/// The relay policy options (flattened into [`crate::Config`]).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct RelayPolicyConfig {
    /// Relay methods clients may call, comma-separated (any case); `*` allows all. Calling
    /// another fails with a HubException.
    #[arg(long = "relay-methods", env = "HUBGATE_RELAY_METHODS", value_delimiter = ',', default_value = "*")]
    pub methods: Vec<String>,

    /// Groups clients may join and send to, comma-separated glob patterns (`*` matches any
    /// run of characters, e.g. `room-*`); `token` adds the groups listed in the client's token
    /// claim (see --relay-groups-claim). Default `*`: any group.
    #[arg(long = "relay-join-groups", env = "HUBGATE_RELAY_JOIN_GROUPS", value_delimiter = ',', default_value = "*")]
    pub join_groups: Vec<String>,

    /// Token claim listing the groups a client may join with `--relay-join-groups token` (an
    /// array of strings, or one string).
    #[arg(long = "relay-groups-claim", env = "HUBGATE_RELAY_GROUPS_CLAIM", default_value = "groups")]
    pub groups_claim: String,

    /// Whether clients may call SendToUser.
    #[arg(long = "relay-send-to-users", env = "HUBGATE_RELAY_SEND_TO_USERS", default_value_t = true, action = ArgAction::Set)]
    pub send_to_users: bool,

    /// Whether clients may call SendToConnection.
    #[arg(
        long = "relay-send-to-connections",
        env = "HUBGATE_RELAY_SEND_TO_CONNECTIONS",
        default_value_t = true,
        action = ArgAction::Set
    )]
    pub send_to_connections: bool,

    /// Groups one connection may be in through JoinGroup at once; 0 = unlimited.
    #[arg(
        long = "relay-max-groups-per-connection",
        env = "HUBGATE_RELAY_MAX_GROUPS_PER_CONNECTION",
        default_value_t = DEFAULT_MAX_GROUPS
    )]
    pub max_groups_per_connection: usize,

    /// Relay method calls per second one connection may make, with bursts of as many; calls
    /// beyond fail with a HubException (the connection stays). 0 = unlimited.
    #[arg(long = "relay-max-messages-per-second", env = "HUBGATE_RELAY_MAX_MESSAGES_PER_SECOND", default_value_t = 0)]
    pub max_messages_per_second: u32,
}

impl Default for RelayPolicyConfig {
    fn default() -> Self {
        Self {
            methods: vec!["*".into()],
            join_groups: vec!["*".into()],
            groups_claim: "groups".into(),
            send_to_users: true,
            send_to_connections: true,
            max_groups_per_connection: DEFAULT_MAX_GROUPS,
            max_messages_per_second: 0,
        }
    }
}

/// A relay policy setting that parses but cannot work: the option (its long flag name) and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--{option}: {reason}")]
pub struct PolicyConfigError {
    pub option: &'static str,
    pub reason: String,
}

impl RelayPolicyConfig {
    /// Checks the values that parse but cannot work.
    pub fn validate(&self) -> Result<(), PolicyConfigError> {
        let invalid = |option, reason: String| Err(PolicyConfigError { option, reason });
        if let Some(unknown) = self.methods.iter().find(|m| *m != "*" && canonical_method(m).is_none()) {
            return invalid("relay-methods", format!("unknown relay method '{unknown}'"));
        }
        if self.join_groups.is_empty() || self.join_groups.iter().any(String::is_empty) {
            return invalid("relay-join-groups", "patterns must not be empty".into());
        }
        if self.groups_claim.is_empty() {
            return invalid("relay-groups-claim", "must not be empty".into());
        }
        Ok(())
    }
}

/// The relay method named `name` in any case, spelled as [`RELAY_METHODS`] does.
fn canonical_method(name: &str) -> Option<&'static str> {
    RELAY_METHODS.iter().copied().find(|m| m.eq_ignore_ascii_case(name))
}

/// The policy the relay hub enforces; built once from [`RelayPolicyConfig`].
#[derive(Debug, Clone)]
pub struct RelayPolicy {
    /// `None`: every method.
    methods: Option<Vec<&'static str>>,
    patterns: Vec<String>,
    token_groups: bool,
    send_to_users: bool,
    send_to_connections: bool,
    max_groups: usize,
    rate: Option<Rate>,
}

impl Default for RelayPolicy {
    fn default() -> Self {
        Self::new(&RelayPolicyConfig::default())
    }
}

impl RelayPolicy {
    /// The policy of a validated configuration (unknown method names are ignored).
    pub fn new(config: &RelayPolicyConfig) -> Self {
        let all = config.methods.iter().any(|m| m == "*");
        let methods = (!all).then(|| config.methods.iter().filter_map(|m| canonical_method(m)).collect());
        Self {
            methods,
            patterns: config.join_groups.iter().filter(|p| *p != TOKEN_GROUPS).cloned().collect(),
            token_groups: config.join_groups.iter().any(|p| p == TOKEN_GROUPS),
            send_to_users: config.send_to_users,
            send_to_connections: config.send_to_connections,
            max_groups: config.max_groups_per_connection,
            rate: Rate::per_second(config.max_messages_per_second),
        }
    }

    /// Admits a call of `method` (as [`RELAY_METHODS`] spells it): the method must be allowed
    /// and the caller within its rate. A refused call uses no rate.
    pub fn admit(&self, context: &HubContext, method: &'static str) -> Result<(), HubError> {
        if self.methods.as_ref().is_some_and(|allowed| !allowed.contains(&method)) {
            return Err(deny(format!("calling '{method}' is not allowed")));
        }
        match &self.rate {
            Some(rate) if !rate.try_take(context.rate_cell(), now_nanos()) => {
                Err(deny(format!("rate limit exceeded: at most {} messages per second", rate.per_second)))
            }
            _ => Ok(()),
        }
    }

    /// Whether the caller may join `group`.
    pub fn check_join(&self, context: &HubContext, group: &str) -> Result<(), HubError> {
        self.check_group(context, group, "joining")
    }

    /// Whether the caller may send to `group`: the groups it may join.
    pub fn check_group_send(&self, context: &HubContext, group: &str) -> Result<(), HubError> {
        self.check_group(context, group, "sending to")
    }

    /// Whether the caller may send to users.
    pub fn check_user_send(&self) -> Result<(), HubError> {
        self.send_to_users.then_some(()).ok_or_else(|| deny("sending to users is not allowed".into()))
    }

    /// Whether the caller may send to single connections.
    pub fn check_connection_send(&self) -> Result<(), HubError> {
        self.send_to_connections.then_some(()).ok_or_else(|| deny("sending to connections is not allowed".into()))
    }

    /// Groups one connection may be in; `usize::MAX` when unlimited.
    pub fn max_groups(&self) -> usize {
        if self.max_groups == 0 {
            usize::MAX
        } else {
            self.max_groups
        }
    }

    /// Whether the caller may use `group` (join it, send to it); a refusal says `doing` it
    /// is not allowed.
    fn check_group(&self, context: &HubContext, group: &str, doing: &str) -> Result<(), HubError> {
        let allowed = self.patterns.iter().any(|pattern| glob_matches(pattern, group))
            || (self.token_groups && context.token_groups().iter().any(|g| &**g == group));
        if allowed {
            Ok(())
        } else {
            Err(deny(format!("{doing} group '{group}' is not allowed")))
        }
    }
}

/// The error of a denied call, logged once here.
fn deny(reason: String) -> HubError {
    debug!(%reason, "relay call denied");
    HubError::hub(reason)
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (also none) and
/// everything else matches itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    // Checked on every JoinGroup and group send: the parts are walked in place, not collected.
    let Some(last) = parts.next_back() else { return rest.is_empty() };
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A rate of calls per second with a burst of as many, as GCRA: a call at `now` is allowed
/// while the theoretical arrival time (TAT) is at most `now + tolerance`, and moves the TAT
/// one interval on.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_second: u32,
    interval: u64,
    tolerance: u64,
}

impl Rate {
    fn per_second(per_second: u32) -> Option<Self> {
        let beyond_first = u64::from(per_second).checked_sub(1)?;
        let interval = 1_000_000_000 / u64::from(per_second);
        Some(Self { per_second, interval, tolerance: interval * beyond_first })
    }

    /// Takes one call from the bucket kept in `cell` (the TAT in nanoseconds; 0 = full).
    fn try_take(&self, cell: &AtomicU64, now: u64) -> bool {
        let mut tat = cell.load(Ordering::Relaxed);
        loop {
            if tat > now.saturating_add(self.tolerance) {
                return false;
            }
            let next = tat.max(now).saturating_add(self.interval);
            match cell.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => tat = actual,
            }
        }
    }
}

/// Nanoseconds since the first call, monotonic.
fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_literally_except_for_stars() {
        assert!(glob_matches("*", "anything") && glob_matches("*", "") && glob_matches("*", "*"));
        assert!(glob_matches("room-*", "room-1") && glob_matches("room-*", "room-"));
        assert!(!glob_matches("room-*", "lobby") && !glob_matches("room-*", "xroom-1"));
        assert!(glob_matches("a*b*c", "abc") && glob_matches("a*b*c", "a-b-b-c"));
        assert!(!glob_matches("a*b*c", "a-c") && !glob_matches("*.x", "y"));
        assert!(glob_matches("exact", "exact") && !glob_matches("exact", "exactly"));
        assert!(glob_matches("salle-*-🎉", "salle-é-🎉") && !glob_matches("ab*ba", "aba"));
    }

    #[test]
    fn the_bucket_allows_a_burst_of_one_seconds_worth_then_refills() {
        let rate = Rate::per_second(2).unwrap();
        let cell = AtomicU64::new(0);
        let allowed: Vec<bool> = (0..5).map(|_| rate.try_take(&cell, 10)).collect();
        assert_eq!(allowed, [true, true, false, false, false]);
        assert!(!rate.try_take(&cell, 10 + 499_000_000));
        assert!(rate.try_take(&cell, 10 + 500_000_000), "one call back after half a second");
        assert!(!rate.try_take(&cell, 10 + 500_000_000));
        let later = 10 + 60_000_000_000;
        assert_eq!((0..3).filter(|_| rate.try_take(&cell, later)).count(), 2, "idle time refills the burst only");
    }

    #[test]
    fn zero_means_unlimited() {
        assert!(Rate::per_second(0).is_none());
        assert_eq!(
            RelayPolicy::new(&RelayPolicyConfig { max_groups_per_connection: 0, ..Default::default() }).max_groups(),
            usize::MAX
        );
    }

    #[test]
    fn validation_names_the_option() {
        let unknown = RelayPolicyConfig { methods: vec!["Echo".into(), "Nuke".into()], ..Default::default() };
        assert_eq!(unknown.validate().unwrap_err().to_string(), "--relay-methods: unknown relay method 'Nuke'");
        let empty = RelayPolicyConfig { join_groups: vec!["room-*".into(), String::new()], ..Default::default() };
        assert_eq!(empty.validate().unwrap_err().to_string(), "--relay-join-groups: patterns must not be empty");
        let claim = RelayPolicyConfig { groups_claim: String::new(), ..Default::default() };
        assert_eq!(claim.validate().unwrap_err().to_string(), "--relay-groups-claim: must not be empty");
        let any_case = RelayPolicyConfig { methods: vec!["echo".into(), "SENDTOALL".into()], ..Default::default() };
        any_case.validate().unwrap();
        assert_eq!(RelayPolicy::new(&any_case).methods, Some(vec!["Echo", "SendToAll"]));
    }
}

#[cfg(test)]
mod config_tests {
    use clap::Parser;

    use super::*;
    use crate::Config;

    #[test]
    fn defaults_allow_everything_but_more_than_100_groups() {
        let parsed = Config::try_parse_from(["gateway"]).unwrap();
        assert_eq!(parsed.relay, RelayPolicyConfig::default());
        assert_eq!(Config::default().relay, RelayPolicyConfig::default());
        let policy = RelayPolicy::default();
        assert!(policy.methods.is_none() && policy.patterns == ["*"] && !policy.token_groups);
        assert!(policy.check_user_send().is_ok() && policy.check_connection_send().is_ok());
        assert_eq!((policy.max_groups(), policy.rate.is_none()), (100, true));
    }

    #[test]
    fn every_option_parses_from_flags() {
        let parsed = Config::try_parse_from([
            "gateway",
            "--relay-methods",
            "Echo,JoinGroup",
            "--relay-join-groups",
            "room-*,token",
            "--relay-groups-claim",
            "rooms",
            "--relay-send-to-users",
            "false",
            "--relay-send-to-connections",
            "false",
            "--relay-max-groups-per-connection",
            "3",
            "--relay-max-messages-per-second",
            "7",
        ])
        .unwrap();
        parsed.validate().unwrap();
        let relay = &parsed.relay;
        assert_eq!(
            (relay.methods.clone(), relay.join_groups.clone()),
            (vec!["Echo".to_string(), "JoinGroup".into()], vec!["room-*".to_string(), "token".into()])
        );
        assert_eq!(relay.groups_claim, "rooms");
        assert!(!relay.send_to_users && !relay.send_to_connections);
        assert_eq!((relay.max_groups_per_connection, relay.max_messages_per_second), (3, 7));
        let policy = RelayPolicy::new(relay);
        assert!(policy.token_groups && policy.patterns == ["room-*"]);
    }

    #[test]
    fn an_unknown_method_fails_validation_of_the_whole_config() {
        let parsed = Config::try_parse_from(["gateway", "--relay-methods", "SendToAll,Broadcast"]).unwrap();
        assert_eq!(parsed.validate().unwrap_err().to_string(), "--relay-methods: unknown relay method 'Broadcast'");
    }
}
