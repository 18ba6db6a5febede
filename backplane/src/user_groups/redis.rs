//! User groups in Redis (standalone or Cluster), on their own `fred` client.
//!
//! # Key layout
//! `P` is the channel prefix, `H` is `{len}:{hub}` as in [`channels`](crate::channels), so no
//! user-chosen name can reach another hub's or another user's key.
//!
//! | Key | Type | Content |
//! |---|---|---|
//! | `P:usergroups:hub:H:user:{user}` | hash | group → expiry in Unix milliseconds, `0` = never |
//!
//! Every operation touches exactly one key, so Redis Cluster needs no hash tags.
//!
//! # Expiry
//! Each membership carries its own expiry, but abandoned data must not linger either: every
//! write runs one Lua script ([`SCRIPT`]) that, atomically, drops the expired fields, makes the
//! change, and sets the **key's** expiry to the latest field expiry (`PEXPIREAT`), or removes it
//! (`PERSIST`) while any membership is permanent. So a user whose memberships all expire leaves
//! nothing behind, even if nobody asks about them again. Times come from the Redis server's
//! clock (`TIME` inside the script), so gateway nodes with skewed clocks agree on what expired.
//! `groups_of` runs the same script: it drops expired fields (HDEL) and returns the rest.
//!
//! # Cost per membership
//! Measured with `used_memory` on Redis 7.0 (test `redis_memory_per_membership_is_small`), every
//! membership with a TTL: ≈ 190 bytes per membership when each of 5 000 users has one group
//! (the key, its expiry entry and a one-field hash: the key dominates), ≈ 80 bytes when 5 users
//! hold 1 000 groups each (one field of a large hash). Each operation reads the user's whole
//! hash inside Redis (at most [`MAX_GROUPS_PER_USER`] fields): one round trip, O(groups of
//! that user).

use async_trait::async_trait;
use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::Options;
use fred::types::{ClusterHash, CustomCommand, Value};
use std::time::Duration;
use tokio::task::AbortHandle;

use super::{bounded, UserGroups, UserGroupsError, MAX_GROUPS_PER_USER};
use crate::redis::{eval, RedisConfig};
use crate::BackplaneError;

/// Drops the expired fields of one user's hash, applies one change, re-derives the key's expiry.
///
/// `KEYS[1]`: the user's hash. `ARGV`: operation (`add`, `remove` or `list`), group, TTL in
/// milliseconds (`add` only, `0` = permanent), limit. Replies `-1` when `add` would exceed the
/// limit (nothing added), the number of memberships left for `add` and `remove`, and the
/// unexpired groups for `list`.
pub const SCRIPT: &str = r#"
local key, op, group = KEYS[1], ARGV[1], ARGV[2]
local ttl, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local fields = redis.call('HGETALL', key)
local kept, latest, permanent = {}, 0, false
for i = 1, #fields, 2 do
  local name, expiry = fields[i], tonumber(fields[i + 1]) or -1
  if expiry ~= 0 and expiry <= now then
    redis.call('HDEL', key, name)
  elseif op == 'list' or name ~= group then
    kept[#kept + 1] = name
    if expiry == 0 then permanent = true elseif expiry > latest then latest = expiry end
  end
end
if op == 'list' then
  return kept
end
if op == 'add' then
  if #kept >= limit then
    return -1
  end
  local expiry = 0
  if ttl > 0 then expiry = now + ttl end
  redis.call('HSET', key, group, string.format('%.0f', expiry))
  kept[#kept + 1] = group
  if expiry == 0 then permanent = true elseif expiry > latest then latest = expiry end
else
  redis.call('HDEL', key, group)
end
if #kept == 0 then
  return 0
end
if permanent then
  redis.call('PERSIST', key)
else
  redis.call('PEXPIREAT', key, string.format('%.0f', latest))
end
return #kept
"#;

/// Every user-groups key, in one place. See the [module docs](self) for the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserGroupKeys {
    prefix: String,
}

impl UserGroupKeys {
    /// Keys under `prefix` (the channel prefix).
    pub fn new(prefix: &str) -> Self {
        Self { prefix: format!("{prefix}:usergroups") }
    }

    /// Group → expiry, for the memberships of `user` in `hub`.
    pub fn user(&self, hub: &str, user: &str) -> String {
        format!("{}:user:{user}", crate::channels::hub_scope(&self.prefix, hub))
    }
}

/// User groups in Redis. See the [module docs](self).
pub struct RedisUserGroups {
    client: Client,
    keys: UserGroupKeys,
    options: Options,
    connection: AbortHandle,
}

impl RedisUserGroups {
    /// Validates `config` and starts connecting in the background (never waits for Redis).
    /// An operation made while the client is still connecting (right after start, or during a
    /// reconnect) waits for the connection up to the command timeout, then fails with
    /// [`BackplaneError::Unavailable`]. Keys go under `prefix`, the channel prefix.
    pub fn connect(config: &RedisConfig, prefix: &str) -> Result<Self, BackplaneError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BackplaneError::Unavailable("Redis user groups need a Tokio runtime".to_owned()));
        }
        let client = config.builder(32)?.build().map_err(|error| BackplaneError::InvalidConfig(error.to_string()))?;
        let connection = client.connect().abort_handle();
        let options = Options { timeout: Some(config.command_timeout), fail_fast: true, ..Options::default() };
        Ok(Self { client, keys: UserGroupKeys::new(prefix), options, connection })
    }

    /// Runs [`SCRIPT`] on the hash of `user`.
    async fn script(&self, hub: &str, user: &str, change: Change<'_>) -> Result<Value, BackplaneError> {
        let mut args = vec![SCRIPT.to_owned(), "1".to_owned(), self.keys.user(hub, user)];
        args.extend(change.arguments());
        args.push(MAX_GROUPS_PER_USER.to_string());
        self.call(eval(), args).await
    }

    async fn call(&self, command: CustomCommand, args: Vec<String>) -> Result<Value, BackplaneError> {
        crate::redis::custom(&self.client, &self.options, command, args).await
    }
}

/// What one run of [`SCRIPT`] does besides dropping expired memberships.
enum Change<'a> {
    Add { group: &'a str, ttl: Option<Duration> },
    Remove { group: &'a str },
    List,
}

impl Change<'_> {
    /// The script's operation, group and TTL arguments.
    fn arguments(&self) -> [String; 3] {
        match self {
            Change::Add { group, ttl } => ["add".into(), (*group).into(), ttl_argument(*ttl)],
            Change::Remove { group } => ["remove".into(), (*group).into(), "0".into()],
            Change::List => ["list".into(), String::new(), "0".into()],
        }
    }
}

fn unexpected(what: &str) -> BackplaneError {
    BackplaneError::Unavailable(format!("unexpected reply to user groups {what}"))
}

/// `ttl` as the script's argument: whole milliseconds, rounded up so a short TTL never becomes
/// permanent (`0`).
fn ttl_argument(ttl: Option<Duration>) -> String {
    let Some(ttl) = ttl.map(bounded) else { return "0".to_owned() };
    let millis = ttl.as_millis() + u128::from(ttl.subsec_nanos() % 1_000_000 != 0);
    millis.max(1).to_string()
}

impl Drop for RedisUserGroups {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

#[async_trait]
impl UserGroups for RedisUserGroups {
    async fn add(&self, hub: &str, user: &str, group: &str, ttl: Option<Duration>) -> Result<(), UserGroupsError> {
        let reply = self.script(hub, user, Change::Add { group, ttl }).await?;
        match reply.as_i64() {
            Some(-1) => Err(UserGroupsError::too_many(user)),
            Some(_) => Ok(()),
            None => Err(unexpected("add").into()),
        }
    }

    async fn remove(&self, hub: &str, user: &str, group: &str) -> Result<(), UserGroupsError> {
        self.script(hub, user, Change::Remove { group }).await?;
        Ok(())
    }

    async fn remove_all(&self, hub: &str, user: &str) -> Result<(), UserGroupsError> {
        let del = CustomCommand::new_static("DEL", ClusterHash::FirstKey, false);
        self.call(del, vec![self.keys.user(hub, user)]).await?;
        Ok(())
    }

    async fn groups_of(&self, hub: &str, user: &str) -> Result<Vec<String>, UserGroupsError> {
        let groups = match self.script(hub, user, Change::List).await? {
            Value::Array(groups) => groups,
            Value::Null => Vec::new(),
            _ => return Err(unexpected("groups_of").into()),
        };
        let groups: Option<Vec<String>> = groups.into_iter().map(|group| group.into_string()).collect();
        let mut groups = groups.ok_or_else(|| unexpected("groups_of"))?;
        groups.truncate(MAX_GROUPS_PER_USER);
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_hubs_and_users_apart() {
        let keys = UserGroupKeys::new("hubgate");
        assert_eq!(keys.user("chat", "é:*"), "hubgate:usergroups:hub:4:chat:user:é:*");
        assert_ne!(keys.user("a:user:b", "c"), keys.user("a", "b:user:c"));
    }

    #[test]
    fn a_ttl_is_whole_milliseconds_rounded_up_and_never_permanent() {
        assert_eq!(ttl_argument(None), "0");
        assert_eq!(ttl_argument(Some(Duration::ZERO)), "1");
        assert_eq!(ttl_argument(Some(Duration::from_micros(1))), "1");
        assert_eq!(ttl_argument(Some(Duration::from_micros(1_500))), "2");
        assert_eq!(ttl_argument(Some(Duration::from_millis(300))), "300");
        assert_eq!(ttl_argument(Some(Duration::MAX)), super::super::MAX_TTL.as_millis().to_string());
    }
}
