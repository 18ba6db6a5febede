//! Who the client is behind a reverse proxy: the TCP peer's address and, only when that peer is
//! one of `--trusted-proxies`, what it says in `X-Forwarded-For`, `X-Forwarded-Host` and
//! `X-Forwarded-Proto`.
//!
//! Anyone can send those headers, so believing them from any peer would let a client pick the
//! address it is rate-limited as (a new one per request) and the host its REST API token is
//! checked against. Only a proxy the operator named is believed:
//!
//! - the client address is found by walking `X-Forwarded-For` from the right (the entry the
//!   proxy next to the gateway appended) past every trusted proxy; the first untrusted entry is
//!   the client. When every entry is trusted, the left-most one is. An entry that is not an IP
//!   address ends the walk at the last address believed (its sender cannot be identified);
//! - `X-Forwarded-Host` and `X-Forwarded-Proto` count with their right-most value, the one the
//!   proxy next to the gateway set.
//!
//! From an untrusted peer (or when the peer is unknown: routes served without connection info,
//! see [`crate::serve`]) none of these headers count; the client is the peer itself.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, as a dual-stack listener reports IPv4 peers)
//! are read as the IPv4 address they carry, both for peers and for the configured list.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use thiserror::Error;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// A `--trusted-proxies` entry that is neither an IP address nor a CIDR range.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("not an IP address or CIDR range (e.g. 10.0.0.0/8, 192.0.2.7 or fd00::/8)")]
pub struct ProxyParseError;

/// One `--trusted-proxies` entry: an address (`192.0.2.7`, `::1`) or a range (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyRange(IpNet);

impl FromStr for ProxyRange {
    type Err = ProxyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Self(canonical_net(net)));
        }
        let ip = text.parse::<IpAddr>().map_err(|_| ProxyParseError)?;
        Ok(Self(IpNet::from(ip.to_canonical())))
    }
}

impl std::fmt::Display for ProxyRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A range of IPv4-mapped IPv6 addresses as the IPv4 range it covers.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map(IpNet::V4).unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

/// What a trusted proxy said about the original request; both empty when the peer is not
/// trusted or said nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// The host the client asked for (`X-Forwarded-Host`), as given.
    pub host: Option<String>,
    /// The scheme the client used (`X-Forwarded-Proto`), in lower case.
    pub proto: Option<String>,
}

/// The proxies whose forwarding headers are believed (`--trusted-proxies`; default: none).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    ranges: Vec<ProxyRange>,
}

impl TrustedProxies {
    pub fn new(ranges: Vec<ProxyRange>) -> Self {
        Self { ranges }
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.ranges.iter().any(|range| range.0.contains(&ip))
    }

    /// The client's address: the peer's, or what trusted proxies forwarded (see the module
    /// docs). `None` when the peer is unknown.
    pub fn client_ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = peer?.ip().to_canonical();
        if !self.trusts(client) {
            return Some(client);
        }
        let values: Vec<_> = headers.get_all(X_FORWARDED_FOR).iter().collect();
        for value in values.into_iter().rev() {
            let Ok(text) = value.to_str() else { return Some(client) };
            for entry in text.rsplit(',') {
                let Some(ip) = parse_entry(entry) else { return Some(client) };
                client = ip;
                if !self.trusts(ip) {
                    return Some(ip);
                }
            }
        }
        Some(client)
    }

    /// What the peer forwarded about the original host and scheme, if it is trusted.
    pub fn forwarded(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Forwarded {
        match peer {
            Some(peer) if self.trusts(peer.ip()) => Forwarded {
                host: last_value(headers, &X_FORWARDED_HOST).map(str::to_owned),
                proto: last_value(headers, &X_FORWARDED_PROTO).map(str::to_ascii_lowercase),
            },
            _ => Forwarded::default(),
        }
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|addr| addr.ip()))?;
    Some(ip.to_canonical())
}

/// The right-most non-empty value of a comma-separated header.
fn last_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    value.rsplit(',').map(str::trim).find(|part| !part.is_empty())
}

/// The TCP peer of a request, when the server records it ([`crate::serve`] does); `None` for
/// routes served without connection info. Never fails.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions))
    }
}

impl Peer {
    /// The peer recorded in a request's extensions.
    pub fn of(extensions: &axum::http::Extensions) -> Self {
        Self(extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|text| text.parse().unwrap()).collect())
    }

    fn peer(text: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(text.parse().unwrap(), 40_000))
    }

    fn forwarded_for(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(X_FORWARDED_FOR, value.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn entries_are_addresses_or_ranges() {
        assert_eq!("10.0.0.0/8".parse::<ProxyRange>().unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(" 192.0.2.7 ".parse::<ProxyRange>().unwrap().to_string(), "192.0.2.7/32");
        assert_eq!("::1".parse::<ProxyRange>().unwrap().to_string(), "::1/128");
        assert_eq!("fd00::/8".parse::<ProxyRange>().unwrap().to_string(), "fd00::/8");
        assert_eq!("::ffff:10.1.0.0/112".parse::<ProxyRange>().unwrap().to_string(), "10.1.0.0/16");
        for bad in ["", "10.0.0.0/33", "localhost", "10.0.0", "10.0.0.0/8,"] {
            assert_eq!(bad.parse::<ProxyRange>(), Err(ProxyParseError), "{bad:?}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let headers = forwarded_for(&["198.51.100.9"]);
        assert_eq!(proxies(&[]).client_ip(peer("192.0.2.1"), &headers), ip("192.0.2.1"));
        assert_eq!(proxies(&["10.0.0.0/8"]).client_ip(peer("192.0.2.1"), &headers), ip("192.0.2.1"));
        assert_eq!(proxies(&["10.0.0.0/8"]).client_ip(None, &headers), None);
    }

    #[test]
    fn the_walk_from_the_right_stops_at_the_first_untrusted_address() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let spoofed = forwarded_for(&["203.0.113.66, 198.51.100.9, 10.1.1.1"]);
        assert_eq!(
            trusted.client_ip(peer("10.0.0.2"), &spoofed),
            ip("198.51.100.9"),
            "the client's own claim is ignored"
        );
        let two_headers = forwarded_for(&["203.0.113.66", "198.51.100.9:4711"]);
        assert_eq!(trusted.client_ip(peer("10.0.0.2"), &two_headers), ip("198.51.100.9"));
        let v6 = forwarded_for(&["[2001:db8::7]:443"]);
        assert_eq!(trusted.client_ip(peer("10.0.0.2"), &v6), ip("2001:db8::7"));
        let all_trusted = forwarded_for(&["10.9.9.9, 10.1.1.1"]);
        assert_eq!(trusted.client_ip(peer("10.0.0.2"), &all_trusted), ip("10.9.9.9"));
        let garbage = forwarded_for(&["198.51.100.9, unknown, 10.1.1.1"]);
        assert_eq!(trusted.client_ip(peer("10.0.0.2"), &garbage), ip("10.1.1.1"), "stops at the last address believed");
        assert_eq!(trusted.client_ip(peer("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"));
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_ranges() {
        let trusted = proxies(&["127.0.0.1"]);
        assert!(trusted.trusts("::ffff:127.0.0.1".parse().unwrap()));
        let headers = forwarded_for(&["::ffff:198.51.100.9"]);
        assert_eq!(trusted.client_ip(peer("::ffff:127.0.0.1"), &headers), ip("198.51.100.9"));
    }

    #[test]
    fn host_and_scheme_count_only_from_a_trusted_peer_with_their_right_most_value() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_HOST, "evil.example, gw.example.com".parse().unwrap());
        headers.insert(X_FORWARDED_PROTO, "HTTPS".parse().unwrap());
        let trusted = proxies(&["10.0.0.0/8"]);
        let said = trusted.forwarded(peer("10.0.0.2"), &headers);
        assert_eq!(said, Forwarded { host: Some("gw.example.com".into()), proto: Some("https".into()) });
        assert_eq!(trusted.forwarded(peer("192.0.2.1"), &headers), Forwarded::default());
        assert_eq!(trusted.forwarded(None, &headers), Forwarded::default());
    }
}
