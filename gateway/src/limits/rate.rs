//! The rate of new connections per client address (`--connection-rate-per-ip`): one token
//! bucket per address, in a map whose size is bounded however many addresses appear.
//!
//! A bucket holds up to `burst` tokens and refills at `count` per `period`; each new
//! connection takes one, and an attempt that finds none is refused with the time until the
//! next token. IPv6 clients are keyed by their /64 (one host usually owns a whole /64 and can
//! rotate addresses inside it freely); IPv4 clients by their address.
//!
//! Bounded memory: buckets live in two generations. New and touched buckets go into the current
//! one; when it holds [`TRACKED_ADDRESSES`] / 2 entries, it becomes the previous one and the old
//! previous one is dropped. An address silent for a whole generation is thus forgotten, which
//! only forgives it (a forgotten bucket starts full again), and at most [`TRACKED_ADDRESSES`]
//! buckets exist, even while someone sprays addresses: each generation's table holds up to
//! 32,768 entries of 48 bytes (address 17, bucket 24, padding) in 65,536 slots, so at most
//! about 6.5 MiB for both.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use thiserror::Error;

/// The most addresses whose buckets are kept at once (see the module docs).
pub const TRACKED_ADDRESSES: usize = 65_536;

/// `--connection-rate-per-ip`: `COUNT/PERIOD` with an optional `,burst=N`, e.g. `10/s`,
/// `600/m,burst=50`, `3/1m`. The period is `s`, `m`, `h` or a duration (`10s`, `500ms`);
/// the burst defaults to the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionRate {
    /// New connections allowed per `period`, on average.
    pub count: u32,
    pub period: Duration,
    /// New connections allowed at once after a quiet time.
    pub burst: u32,
}

/// Why a `--connection-rate-per-ip` value does not parse.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RateParseError {
    #[error("expected COUNT/PERIOD with an optional ,burst=N (e.g. 10/s or 600/m,burst=50)")]
    Syntax,
    #[error("the count must be a whole number of at least 1")]
    Count,
    #[error("the period must be s, m, h or a duration longer than 0 (e.g. 10s)")]
    Period,
    #[error("the burst must be a whole number of at least 1")]
    Burst,
}

impl FromStr for ConnectionRate {
    type Err = RateParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (rate, burst) = match text.trim().split_once(',') {
            Some((rate, burst)) => (rate, Some(burst.trim())),
            None => (text.trim(), None),
        };
        let (count, period) = rate.split_once('/').ok_or(RateParseError::Syntax)?;
        let count: u32 = count.trim().parse().ok().filter(|&count| count > 0).ok_or(RateParseError::Count)?;
        let period = match period.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => humantime::parse_duration(other).ok().filter(|p| !p.is_zero()).ok_or(RateParseError::Period)?,
        };
        let burst = match burst {
            None => count,
            Some(burst) => {
                let value = burst.strip_prefix("burst=").ok_or(RateParseError::Syntax)?;
                value.trim().parse().ok().filter(|&burst| burst > 0).ok_or(RateParseError::Burst)?
            }
        };
        Ok(Self { count, period, burst })
    }
}

impl ConnectionRate {
    fn per_second(&self) -> f64 {
        f64::from(self.count) / self.period.as_secs_f64()
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
struct Generations {
    current: HashMap<IpAddr, Bucket>,
    previous: HashMap<IpAddr, Bucket>,
}

/// Token buckets of client addresses; see the module docs.
pub(crate) struct RateLimiter {
    rate: ConnectionRate,
    per_second: f64,
    generation_size: usize,
    buckets: Mutex<Generations>,
}

impl RateLimiter {
    pub fn new(rate: ConnectionRate) -> Self {
        Self::with_capacity(rate, TRACKED_ADDRESSES)
    }

    fn with_capacity(rate: ConnectionRate, capacity: usize) -> Self {
        let generation_size = (capacity / 2).max(1);
        Self { rate, per_second: rate.per_second(), generation_size, buckets: Mutex::default() }
    }

    /// Takes a token for `ip` at `now`; the error is how long until one is available.
    pub fn try_take(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = key_of(ip);
        let burst = f64::from(self.rate.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let found = buckets.current.get(&key).or_else(|| buckets.previous.get(&key)).copied();
        let mut bucket = found.unwrap_or(Bucket { tokens: burst, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(burst);
        bucket.at = now;
        let taken = if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.per_second))
        };
        buckets.previous.remove(&key);
        buckets.current.insert(key, bucket);
        if buckets.current.len() >= self.generation_size {
            buckets.previous = std::mem::take(&mut buckets.current);
        }
        taken
    }

    /// How many addresses have a bucket now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets.current.len() + buckets.previous.len()
    }
}

/// The key of a client: an IPv4 address, or the /64 of an IPv6 one.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> ConnectionRate {
        text.parse().unwrap()
    }

    #[test]
    fn rates_read_count_period_and_burst() {
        let second = Duration::from_secs(1);
        assert_eq!(rate("10/s"), ConnectionRate { count: 10, period: second, burst: 10 });
        assert_eq!(rate(" 600/m,burst=50 "), ConnectionRate { count: 600, period: 60 * second, burst: 50 });
        assert_eq!(rate("3/h, burst=3").period, 3600 * second);
        assert_eq!(rate("5/10s").period, 10 * second);
        assert_eq!(rate("1/500ms").period, Duration::from_millis(500));
        let cases = [
            ("10", RateParseError::Syntax),
            ("", RateParseError::Syntax),
            ("0/s", RateParseError::Count),
            ("-1/s", RateParseError::Count),
            ("ten/s", RateParseError::Count),
            ("10/fortnight", RateParseError::Period),
            ("10/0s", RateParseError::Period),
            ("10/s,50", RateParseError::Syntax),
            ("10/s,burst=0", RateParseError::Burst),
            ("10/s,burst=many", RateParseError::Burst),
        ];
        for (text, error) in cases {
            assert_eq!(text.parse::<ConnectionRate>(), Err(error), "{text:?}");
        }
    }

    #[test]
    fn a_burst_is_allowed_then_refused_until_a_token_refills() {
        let limiter = RateLimiter::new(rate("1/m,burst=3"));
        let (client, start) = ("192.0.2.1".parse().unwrap(), Instant::now());
        for _ in 0..3 {
            assert_eq!(limiter.try_take(client, start), Ok(()));
        }
        let wait = limiter.try_take(client, start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(60));
        let other = "192.0.2.2".parse().unwrap();
        assert_eq!(limiter.try_take(other, start), Ok(()), "another address has its own bucket");
        assert!(limiter.try_take(client, start + Duration::from_secs(30)).is_err());
        assert_eq!(limiter.try_take(client, start + Duration::from_secs(61)), Ok(()), "one token refilled");
        assert!(limiter.try_take(client, start + Duration::from_secs(62)).is_err());
    }

    #[test]
    fn ipv6_clients_share_the_bucket_of_their_64() {
        let limiter = RateLimiter::new(rate("1/m,burst=1"));
        let now = Instant::now();
        assert!(limiter.try_take("2001:db8:1:2::1".parse().unwrap(), now).is_ok());
        assert!(limiter.try_take("2001:db8:1:2:ffff::9".parse().unwrap(), now).is_err(), "same /64");
        assert!(limiter.try_take("2001:db8:1:3::1".parse().unwrap(), now).is_ok(), "another /64");
        assert!(limiter.try_take("::ffff:192.0.2.1".parse().unwrap(), now).is_ok());
        assert!(limiter.try_take("192.0.2.1".parse().unwrap(), now).is_err(), "a mapped address is the IPv4 one");
    }

    #[test]
    fn sprayed_addresses_stay_bounded_and_recent_ones_stay_limited() {
        let limiter = RateLimiter::with_capacity(rate("1/h,burst=1"), 100);
        let now = Instant::now();
        let hot: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(limiter.try_take(hot, now).is_ok());
        for n in 0..10_000u32 {
            let sprayed = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            let _ = limiter.try_take(sprayed, now);
            assert!(limiter.tracked() <= 100);
            if n % 20 == 0 {
                assert!(limiter.try_take(hot, now).is_err(), "an address seen every generation stays limited");
            }
        }
    }
}
