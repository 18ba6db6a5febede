//! The hub URL given on the command line, taken apart once.
//!
//! Only plain `http://` is supported: the harness talks to servers on this machine, and
//! leaving TLS out keeps every connection's client-side cost small and predictable.

use std::net::SocketAddr;

use anyhow::{bail, Context};

/// Where the hub is and how to address it in requests.
#[derive(Debug, Clone)]
pub struct Target {
    /// The `Host` header value, `host[:port]` as given.
    pub authority: String,
    /// The hub path, e.g. `/hubs/chat`, without a trailing slash.
    pub path: String,
    /// The resolved address every connection dials.
    pub address: SocketAddr,
}

impl Target {
    /// Parses `http://host[:port]/path` and resolves the host once.
    pub async fn resolve(url: &str) -> anyhow::Result<Self> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("--url must start with http:// (got {url})");
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            bail!("--url has no host: {url}");
        }
        if path.contains(['?', '#']) {
            bail!("--url must not have a query or fragment: {url}");
        }
        let dial = if authority.rsplit_once(':').is_some_and(|(_, port)| port.chars().all(|c| c.is_ascii_digit())) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let address = tokio::net::lookup_host(&dial)
            .await
            .with_context(|| format!("cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to no address"))?;
        Ok(Self { authority: authority.to_owned(), path: path.trim_end_matches('/').to_owned(), address })
    }

    /// The WebSocket URL of the hub, with the connection token when there is one.
    pub fn websocket_url(&self, token: Option<&str>) -> String {
        match token {
            Some(token) => format!("ws://{}{}?id={}", self.authority, self.path, percent_encode(token)),
            None => format!("ws://{}{}", self.authority, self.path),
        }
    }
}

/// Escapes everything but RFC 3986 unreserved characters, for a query value.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hub_url_is_split_and_resolved() {
        let target = Target::resolve("http://127.0.0.1:5000/hubs/chat/").await.unwrap();
        assert_eq!(target.authority, "127.0.0.1:5000");
        assert_eq!(target.path, "/hubs/chat");
        assert_eq!(target.address, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(target.websocket_url(Some("a+b/c")), "ws://127.0.0.1:5000/hubs/chat?id=a%2Bb%2Fc");
        assert_eq!(target.websocket_url(None), "ws://127.0.0.1:5000/hubs/chat");
    }

    #[tokio::test]
    async fn other_schemes_and_queries_are_refused() {
        assert!(Target::resolve("https://127.0.0.1:5000/hubs/chat").await.is_err());
        assert!(Target::resolve("http://127.0.0.1:5000/hubs/chat?x=1").await.is_err());
    }
}
