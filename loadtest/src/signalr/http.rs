//! The HTTP client every connection shares, and the URLs it requests.
//!
//! One `reqwest::Client` per process: its pool keeps idle keep-alive connections for the
//! negotiate requests and the SSE/long-polling POSTs of thousands of hub connections, so no
//! hub connection owns a client (each would cost a pool, a resolver and buffers).

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::Url;

use super::ClientError;

/// How long a pooled keep-alive connection may stay idle.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// TCP connect bound for every HTTP request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The process-wide HTTP client.
pub(super) fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            // Every hub connection on long polling has a poll in flight and may POST at the
            // same time: the pool must be allowed to keep that many per host.
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(POOL_IDLE)
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new())
    })
}

/// Parses the hub URL; only `http` is accepted.
pub(super) fn parse_hub_url(url: &str) -> Result<Url, ClientError> {
    let parsed = Url::parse(url).map_err(|e| ClientError::Negotiate(format!("bad hub URL {url}: {e}")))?;
    if parsed.scheme() != "http" {
        return Err(ClientError::Negotiate(format!("only http:// hub URLs are supported, got {url}")));
    }
    Ok(parsed)
}

/// The hub URL with `segment` appended to its path (`/hub` + `negotiate` → `/hub/negotiate`).
pub(super) fn with_path_segment(url: &Url, segment: &str) -> Url {
    let mut url = url.clone();
    let path = format!("{}/{segment}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

/// The hub URL with the connection id (when there is one) and other query pairs added.
pub(super) fn with_query(url: &Url, pairs: &[(&str, Option<&str>)]) -> Url {
    let mut url = url.clone();
    {
        let mut query = url.query_pairs_mut();
        for (key, value) in pairs {
            if let Some(value) = value {
                query.append_pair(key, value);
            }
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    url
}

/// Adds the bearer token, when there is one.
pub(super) fn authorized(request: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// Turns a failed request into a transport error naming what was being done.
pub(super) fn transport_error(what: &str) -> impl FnOnce(reqwest::Error) -> ClientError + '_ {
    move |error| ClientError::Transport(format!("{what}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_gain_path_segments_and_query_pairs() {
        let hub = parse_hub_url("http://127.0.0.1:5000/hubs/chat/").expect("valid");
        assert_eq!(with_path_segment(&hub, "negotiate").as_str(), "http://127.0.0.1:5000/hubs/chat/negotiate");
        let url = with_query(&hub, &[("id", Some("a+b")), ("access_token", None)]);
        assert_eq!(url.as_str(), "http://127.0.0.1:5000/hubs/chat/?id=a%2Bb");
        assert_eq!(with_query(&hub, &[("id", None)]).as_str(), "http://127.0.0.1:5000/hubs/chat/");
        assert!(parse_hub_url("https://x/hub").is_err());
    }
}
