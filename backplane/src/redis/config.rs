//! Settings of the Redis backplane, and how they become a `fred` client configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fred::rustls::pki_types::pem::PemObject;
use fred::rustls::pki_types::CertificateDer;
use fred::rustls::{ClientConfig as TlsClientConfig, RootCertStore};
use fred::types::config::{ClusterDiscoveryPolicy, Config, ReconnectPolicy, ServerConfig, TlsConnector};
use fred::types::Builder;

use crate::memory::DEFAULT_INBOUND_CAPACITY;
use crate::BackplaneError;

/// How a node reaches Redis. Build it with struct update syntax over [`RedisConfig::default`];
/// [`RedisBackplane::connect`](super::RedisBackplane::connect) validates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Where Redis is.
    ///
    /// - Standalone: one URL, `redis://[user:password@]host[:port][/db]`, or `rediss://…` for
    ///   TLS (the server certificate is checked against the system's root certificates). The port
    ///   defaults to 6379. The database number does not matter for pub/sub, whose channels are
    ///   shared by all databases.
    /// - Cluster: seed nodes, `redis://[user:password@]host:port` each (`redis-cluster://` and
    ///   `rediss://` are accepted too); one reachable seed is enough, the other nodes are
    ///   discovered. Credentials come from the first URL; all URLs must agree on TLS.
    ///
    /// Default: `["redis://127.0.0.1:6379"]`.
    pub urls: Vec<String>,
    /// Treat `urls` as seeds of a Redis Cluster and use sharded pub/sub (SPUBLISH / SSUBSCRIBE),
    /// so each channel lives on the shard that owns its hash slot and traffic spreads over the
    /// shards. Implied by more than one URL or by a `redis-cluster://` URL. Needs Redis 7 or
    /// later. Default: `false`.
    pub cluster: bool,
    /// PEM file of certificate authorities to trust for `rediss://` besides the system's, e.g.
    /// the private CA of a managed Redis. Default: none.
    pub tls_ca_file: Option<PathBuf>,
    /// Capacity of this node's inbound queue, in messages. When it is full, further messages are
    /// dropped and counted by `dropped()`. Default: 65 536.
    pub inbound_capacity: usize,
    /// Upper bound on each Redis command the backplane sends (publish, subscribe, unsubscribe
    /// and the checks after a reconnect). Default: 1 s.
    pub command_timeout: Duration,
    /// Upper bound on opening one connection: TCP, TLS handshake, authentication and (for a
    /// cluster) fetching the slot map. Default: 2 s.
    pub connect_timeout: Duration,
    /// Delay before the first reconnect attempt; it doubles after each failed attempt up to
    /// `reconnect_max_delay` (plus up to 50 ms of jitter). Reconnecting never gives up.
    /// Default: 100 ms.
    pub reconnect_min_delay: Duration,
    /// Longest delay between reconnect attempts. Default: 2 s.
    pub reconnect_max_delay: Duration,
    /// How often each connection is PINGed. A PING unanswered within `command_timeout` means a
    /// hung server or a silently broken network: health turns down and the connection is
    /// replaced. Default: 5 s.
    pub heartbeat_interval: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            urls: vec!["redis://127.0.0.1:6379".to_owned()],
            cluster: false,
            tls_ca_file: None,
            inbound_capacity: DEFAULT_INBOUND_CAPACITY,
            command_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            reconnect_min_delay: Duration::from_millis(100),
            reconnect_max_delay: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(5),
        }
    }
}

const SCHEMES: [&str; 4] = ["redis", "rediss", "redis-cluster", "rediss-cluster"];

impl RedisConfig {
    /// Whether the URLs name a Redis Cluster (sharded pub/sub) rather than one server.
    pub fn is_cluster(&self) -> bool {
        self.cluster || self.urls.len() > 1 || self.urls.iter().any(|url| scheme(url).ends_with("-cluster"))
    }

    /// Checks everything that can be checked without a network, so a bad setting fails at
    /// startup rather than as an endless reconnect loop.
    pub fn validate(&self) -> Result<(), BackplaneError> {
        self.fred_config().map(drop)
    }

    /// A `fred` client builder for these settings. The first connection attempt retries like
    /// every later one, so building and connecting never fail because Redis is down.
    pub(crate) fn builder(&self, broadcast_capacity: usize) -> Result<Builder, BackplaneError> {
        let mut config = self.fred_config()?;
        config.fail_fast = false;
        let mut builder = Builder::from_config(config);
        builder
            .set_policy(ReconnectPolicy::new_exponential(
                0, // attempts: unlimited
                millis(self.reconnect_min_delay),
                millis(self.reconnect_max_delay),
                2,
            ))
            .with_connection_config(|connection| {
                connection.connection_timeout = self.connect_timeout;
                connection.internal_command_timeout = self.connect_timeout;
                connection.tcp.nodelay = Some(true);
            })
            .with_performance_config(|performance| {
                performance.default_command_timeout = self.command_timeout;
                performance.broadcast_channel_capacity = broadcast_capacity;
            });
        Ok(builder)
    }

    fn fred_config(&self) -> Result<Config, BackplaneError> {
        if self.urls.is_empty() {
            return Err(invalid("at least one Redis URL is needed"));
        }
        if self.inbound_capacity == 0 {
            return Err(invalid("the inbound capacity must be at least 1"));
        }
        if self.command_timeout.is_zero() || self.connect_timeout.is_zero() || self.heartbeat_interval.is_zero() {
            return Err(invalid("Redis timeouts and the heartbeat interval must be longer than zero"));
        }
        if self.reconnect_min_delay.is_zero() || self.reconnect_min_delay > self.reconnect_max_delay {
            return Err(invalid("the reconnect delays need 0 < min <= max"));
        }
        for url in &self.urls {
            if !SCHEMES.contains(&scheme(url)) {
                return Err(invalid(&format!("{}: the scheme must be one of {SCHEMES:?}", redact(url))));
            }
        }
        let mut config = if self.is_cluster() {
            self.cluster_config()?
        } else {
            let url = &self.urls[0];
            Config::from_url_centralized(url).map_err(|error| invalid(&format!("{}: {error}", redact(url))))?
        };
        if let Some(ca_file) = &self.tls_ca_file {
            if !config.uses_tls() {
                return Err(invalid("a TLS CA file is set but the Redis URLs are not rediss://"));
            }
            config.tls = Some(TlsConnector::from(tls_trusting(ca_file)?).into());
        }
        Ok(config)
    }

    fn cluster_config(&self) -> Result<Config, BackplaneError> {
        let mut seeds = self
            .urls
            .iter()
            .map(|url| Config::from_url_clustered(url).map_err(|error| invalid(&format!("{}: {error}", redact(url)))));
        let Some(first) = seeds.next() else {
            return Err(invalid("at least one Redis URL is needed"));
        };
        let mut config = first?;
        let mut hosts = config.server.hosts();
        for seed in seeds {
            let seed = seed?;
            if seed.uses_tls() != config.uses_tls() {
                return Err(invalid("the cluster URLs must all use TLS (rediss://) or none"));
            }
            for host in seed.server.hosts() {
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
        }
        // Seeds that are down are worked around with the nodes learnt from the slot map.
        config.server = ServerConfig::Clustered { hosts, policy: ClusterDiscoveryPolicy::UseCache };
        Ok(config)
    }
}

/// A TLS client configuration trusting the system's roots and the authorities in `ca_file`.
fn tls_trusting(ca_file: &Path) -> Result<TlsClientConfig, BackplaneError> {
    let unreadable = |error: &dyn std::fmt::Display| invalid(&format!("TLS CA file {}: {error}", ca_file.display()));
    let mut roots = RootCertStore::empty();
    // System roots are optional here: the file is what the operator asked for.
    for certificate in fred::rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(certificate);
    }
    let mut added = 0;
    for certificate in CertificateDer::pem_file_iter(ca_file).map_err(|e| unreadable(&e))? {
        roots.add(certificate.map_err(|e| unreadable(&e))?).map_err(|e| unreadable(&e))?;
        added += 1;
    }
    if added == 0 {
        return Err(unreadable(&"no certificate in the file"));
    }
    Ok(TlsClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

fn scheme(url: &str) -> &str {
    url.split_once("://").map_or("", |(scheme, _)| scheme)
}

/// The URL without its credentials, for error messages and logs.
pub(super) fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn invalid(reason: &str) -> BackplaneError {
    BackplaneError::InvalidConfig(reason.to_owned())
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_urls(urls: &[&str]) -> RedisConfig {
        RedisConfig { urls: urls.iter().map(|url| url.to_string()).collect(), ..RedisConfig::default() }
    }

    #[test]
    fn the_defaults_are_valid_and_standalone() {
        let config = RedisConfig::default();
        assert!(config.validate().is_ok());
        assert!(!config.is_cluster());
    }

    #[test]
    fn standalone_urls_carry_credentials_database_and_tls() {
        let config = with_urls(&["redis://user:secret@example.com:6380/3"]).fred_config().unwrap();
        assert_eq!(config.username.as_deref(), Some("user"));
        assert_eq!(config.password.as_deref(), Some("secret"));
        assert_eq!(config.database, Some(3));
        assert!(!config.uses_tls());
        assert!(with_urls(&["rediss://example.com"]).fred_config().unwrap().uses_tls());
    }

    #[test]
    fn several_urls_or_a_cluster_scheme_mean_a_cluster() {
        assert!(with_urls(&["redis://a:1", "redis://b:2"]).is_cluster());
        assert!(with_urls(&["redis-cluster://a:1"]).is_cluster());
        let config = with_urls(&["redis://a:1", "redis://b:2", "redis://a:1"]).fred_config().unwrap();
        assert_eq!(config.server.hosts().len(), 2);
    }

    #[test]
    fn bad_settings_are_errors_that_hide_passwords() {
        let error = with_urls(&["http://user:secret@example.com"]).validate().unwrap_err();
        assert!(matches!(&error, BackplaneError::InvalidConfig(text) if !text.contains("secret")), "{error}");
        assert!(with_urls(&[]).validate().is_err());
        assert!(with_urls(&["redis://"]).validate().is_err());
        assert!(with_urls(&["redis://a:1", "rediss://b:2"]).validate().is_err());
        assert!(RedisConfig { inbound_capacity: 0, ..RedisConfig::default() }.validate().is_err());
        assert!(RedisConfig { command_timeout: Duration::ZERO, ..RedisConfig::default() }.validate().is_err());
    }

    #[test]
    fn redaction_keeps_the_host() {
        assert_eq!(redact("redis://u:p@h:1/2"), "redis://***@h:1/2");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
