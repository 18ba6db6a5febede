//! The connection directory in Redis (standalone or Cluster), on its own `fred` client.
//!
//! # Key layout
//! | Key | Type | Content |
//! |---|---|---|
//! | `P:directory:conn:{connection id}` | string, `PX` = TTL | the holder (`node-id address`) |
//!
//! A claim is one `SET key holder NX PX ttl` (atomic: the first wins), a read one `GET`, and
//! renewing one `PEXPIRE` per record, sent concurrently so fred pipelines them on one
//! connection (in Redis Cluster, to each record's shard). Every command touches one key, so no
//! hash tags are needed. A record costs about 150 bytes of Redis memory (a short string key
//! with an expiry).

use async_trait::async_trait;
use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::Options;
use fred::types::{ClusterHash, CustomCommand, Value};
use std::time::Duration;
use tokio::task::{AbortHandle, JoinSet};

use super::Directory;
use crate::redis::RedisConfig;
use crate::BackplaneError;

/// Records renewed concurrently at most (each one command in flight).
const RENEW_CONCURRENCY: usize = 256;

/// Every directory key, in one place. See the [module docs](self) for the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryKeys {
    prefix: String,
}

impl DirectoryKeys {
    /// Keys under `prefix` (the channel prefix).
    pub fn new(prefix: &str) -> Self {
        Self { prefix: format!("{prefix}:directory") }
    }

    /// The record of one connection.
    pub fn connection(&self, connection: &str) -> String {
        format!("{}:conn:{connection}", self.prefix)
    }
}

/// The connection directory in Redis. See the [module docs](self).
pub struct RedisDirectory {
    client: Client,
    keys: DirectoryKeys,
    options: Options,
    connection: AbortHandle,
}

impl RedisDirectory {
    /// Validates `config` and starts connecting in the background (never waits for Redis);
    /// an operation made while the client connects waits up to the command timeout. Keys go
    /// under `prefix`, the channel prefix.
    pub fn connect(config: &RedisConfig, prefix: &str) -> Result<Self, BackplaneError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BackplaneError::Unavailable("the Redis directory needs a Tokio runtime".to_owned()));
        }
        let client = config.builder(32)?.build().map_err(|error| BackplaneError::InvalidConfig(error.to_string()))?;
        let connection = client.connect().abort_handle();
        let options = Options { timeout: Some(config.command_timeout), fail_fast: true, ..Options::default() };
        Ok(Self { client, keys: DirectoryKeys::new(prefix), options, connection })
    }

    async fn call(&self, command: CustomCommand, args: Vec<String>) -> Result<Value, BackplaneError> {
        crate::redis::custom(&self.client, &self.options, command, args).await
    }
}

impl Drop for RedisDirectory {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

fn command(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

/// `ttl` in whole milliseconds, at least one.
fn millis(ttl: Duration) -> String {
    ttl.as_millis().max(1).to_string()
}

#[async_trait]
impl Directory for RedisDirectory {
    async fn claim(&self, connection: &str, holder: &str, ttl: Duration) -> Result<bool, BackplaneError> {
        let args = vec![self.keys.connection(connection), holder.to_owned(), "NX".into(), "PX".into(), millis(ttl)];
        Ok(!matches!(self.call(command("SET"), args).await?, Value::Null))
    }

    async fn holder_of(&self, connection: &str) -> Result<Option<String>, BackplaneError> {
        match self.call(command("GET"), vec![self.keys.connection(connection)]).await? {
            Value::Null => Ok(None),
            value => value
                .into_string()
                .map(Some)
                .ok_or_else(|| BackplaneError::Unavailable("unexpected reply to a directory GET".to_owned())),
        }
    }

    async fn renew(&self, connections: &[String], ttl: Duration) -> Result<(), BackplaneError> {
        let ttl = millis(ttl);
        for chunk in connections.chunks(RENEW_CONCURRENCY) {
            let mut renewals = JoinSet::new();
            for connection in chunk {
                let (client, options) = (self.client.clone(), self.options.clone());
                let args = vec![self.keys.connection(connection), ttl.clone()];
                renewals.spawn(async move { crate::redis::custom(&client, &options, command("PEXPIRE"), args).await });
            }
            while let Some(renewed) = renewals.join_next().await {
                renewed.map_err(|error| BackplaneError::Unavailable(error.to_string()))??;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_connection_under_the_prefix() {
        assert_eq!(DirectoryKeys::new("hubgate").connection("n1.abc"), "hubgate:directory:conn:n1.abc");
    }

    #[test]
    fn a_ttl_is_at_least_one_millisecond() {
        assert_eq!(millis(Duration::ZERO), "1");
        assert_eq!(millis(Duration::from_secs(90)), "90000");
    }
}
