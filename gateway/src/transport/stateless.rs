//! Stateless nodes: any node serves any request of any connection, so a load balancer needs
//! no affinity (`--cluster-secret`).
//!
//! - **Negotiate keeps nothing.** It answers with a [signed token](super::token) that every
//!   node can check.
//! - **The first transport request claims the connection.** The node it reaches checks the
//!   token and claims the connection in the cluster's [`Directory`] (one `SET NX` in Redis): the
//!   first claim wins, so a token opens one connection however many nodes see it. The winner
//!   holds the connection and records itself (`node-id address`) for as long as it lives,
//!   renewing the record every [`RENEW_EVERY`].
//! - **Later requests are forwarded to the holder.** Server-Sent Events and long polling span
//!   many requests (polls, POSTs, the DELETE), each of which may land anywhere: a node that
//!   does not hold the connection passes the request on, over plain HTTP to the holder's
//!   advertised address (`--advertise-url`), and streams the answer back unchanged. The holder
//!   serves it as any local request (same limits, timeouts, errors, and the same exactly-once
//!   hand-over of queued messages: a forwarded poll is one HTTP exchange end to end, so an
//!   answer the client never received was never taken from the queue by anyone else), and
//!   never forwards again (the request is marked), so a stale record cannot loop.
//! - **Routing by connection id stays valid**: nodes ask the directory which node holds an id
//!   (see `Node::holder_of`), since the id names the node that negotiated.
//!
//! Why direct HTTP rather than the backplane for forwarding: an event stream and a 90-second
//! poll are long HTTP exchanges with their own back-pressure and cancellation (a client that
//! goes away closes both hops at once); carried over pub/sub they would need request ids,
//! chunking, acknowledgements and timeouts of their own, and every byte would cross Redis
//! twice. A WebSocket is never forwarded: it is claimed by the node it reaches and stays there.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use backplane::Directory;
use bytes::Bytes;
use tracing::{debug, warn};

use super::connections::ConnectionTable;
use super::peer_names::PeerNames;
use super::resumable::Resumable;
use super::token::{Ticket, TokenSigner};
use crate::cluster::holder_address;
use crate::limits::Limits;

/// How long a directory record lives without renewal.
pub const RECORD_TTL: Duration = Duration::from_secs(60);

/// How often a holder renews the records of its connections.
pub const RENEW_EVERY: Duration = Duration::from_secs(20);

/// Marks a request one node passed to another; its receiver never forwards it again.
pub const FORWARDED_BY: HeaderName = HeaderName::from_static("x-hubgate-forwarded-by");

/// How long forwarding waits to resolve the holder's name and connect to it: nodes share a
/// network, where a connect takes well under a millisecond; eight seconds cover the resolver's
/// patience with a DNS server that loses queries (see [`PeerNames`]) and a lost SYN.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

/// How soon a forwarded exchange with a holder that vanished (killed, its address gone, so no
/// reset ever comes) fails: TCP keep-alive probes an idle connection (a long poll, a quiet
/// event stream) after `KEEPALIVE_IDLE`, every `KEEPALIVE_INTERVAL`, `KEEPALIVE_PROBES` times,
/// and data left unacknowledged for `UNACKNOWLEDGED_LIMIT` aborts a busy one. Either way the
/// client learns within about ten seconds, instead of when the kernel gives up (minutes).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_PROBES: u32 = 3;
const UNACKNOWLEDGED_LIMIT: Duration = Duration::from_secs(10);

/// Where a request for a connection is served.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// On this node (it holds the connection, or the request fails here as it would anyway).
    Here,
    /// On the node at this address.
    Elsewhere(String),
}

/// What a node needs to take part in a stateless cluster.
pub(crate) struct Stateless {
    tokens: TokenSigner,
    directory: Arc<dyn Directory>,
    node_id: String,
    /// Where other nodes reach this one: `--advertise-url`, or learnt from the listener.
    address: OnceLock<String>,
    forwarder: reqwest::Client,
}

impl Stateless {
    /// A stateless node `node_id` signing with `secret`; tokens live `token_lifetime`.
    pub fn new(
        secret: &str,
        token_lifetime: Duration,
        directory: Arc<dyn Directory>,
        node_id: String,
        advertise: Option<String>,
    ) -> Result<Self, reqwest::Error> {
        let forwarder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .dns_resolver(Arc::new(PeerNames::default()))
            .tcp_keepalive(KEEPALIVE_IDLE)
            .tcp_keepalive_interval(KEEPALIVE_INTERVAL)
            .tcp_keepalive_retries(KEEPALIVE_PROBES)
            .tcp_user_timeout(UNACKNOWLEDGED_LIMIT)
            .tcp_nodelay(true)
            .no_proxy()
            .http1_only()
            .build()?;
        let address = OnceLock::new();
        if let Some(url) = advertise {
            let _ = address.set(url.trim_end_matches('/').to_owned());
        }
        Ok(Self { tokens: TokenSigner::new(secret, token_lifetime), directory, node_id, address, forwarder })
    }

    /// Learns this node's address from its listener when `--advertise-url` was not given (and
    /// the listener is not bound to a wildcard address, which names no reachable host).
    pub fn listening_on(&self, local: SocketAddr) {
        if self.address.get().is_some() {
            return;
        }
        if local.ip().is_unspecified() {
            warn!(%local, "--cluster-secret without --advertise-url on a wildcard address: requests of Server-Sent Events and long-polling connections held by this node cannot be forwarded to it from other nodes");
            return;
        }
        let _ = self.address.set(format!("http://{local}"));
    }

    /// The token for a connection negotiated here.
    pub fn issue(&self, ticket: Ticket) -> String {
        self.tokens.issue(&self.node_id, ticket)
    }

    /// What this node records as a connection's holder.
    fn record(&self) -> String {
        format!("{} {}", self.node_id, self.address.get().map_or("", String::as_str))
    }

    /// Where the request presenting `token` for `hub` is served. A token this node does not
    /// know is checked and claimed (then it is held here, in `table`); one claimed by another
    /// node is served there, unless the request was already forwarded to this node. An
    /// expired token claims nothing, but still finds the node holding its connection.
    #[allow(clippy::result_large_err)]
    pub async fn locate(
        &self,
        (table, resumable, limits): (&ConnectionTable, &Resumable, &Limits),
        token: &str,
        hub: &str,
        forwarded: bool,
    ) -> Result<Place, Response> {
        if table.lookup(token, hub).is_some() {
            return Ok(Place::Here);
        }
        let Some(ticket) = self.tokens.verify(token).filter(|ticket| ticket.hub == hub) else {
            return Ok(Place::Here);
        };
        if !ticket.may_open() {
            // Too old to open a connection, but still the name of one that opened in time
            // and lives on another node: its requests keep presenting it.
            return match forwarded {
                true => Ok(Place::Here),
                false => self.holder(&ticket.connection_id).await,
            };
        }
        // The slot under this node's limits comes before the claim: a full node never holds a
        // connection it has no room for, and passes on requests for one another node holds.
        let permit = match limits.admit() {
            Ok(permit) => permit,
            Err(refusal) if forwarded => return Err(refusal.into_response()),
            Err(refusal) => {
                return match self.holder(&ticket.connection_id).await? {
                    Place::Here => Err(refusal.into_response()),
                    elsewhere => Ok(elsewhere),
                }
            }
        };
        let claimed = self.directory.claim(&ticket.connection_id, &self.record(), RECORD_TTL).await;
        match claimed {
            Ok(true) => {
                debug!(connection_id = %ticket.connection_id, "claimed the connection: it is held here");
                let stateful = ticket.stateful;
                if !table.adopt(token, ticket, permit) {
                    return Err(super::text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Too many connections are being negotiated",
                    ));
                }
                if stateful {
                    resumable.grant(token);
                }
                Ok(Place::Here)
            }
            Ok(false) if forwarded => {
                debug!(connection_id = %ticket.connection_id, "a request forwarded here for a connection not held here");
                Ok(Place::Here)
            }
            Ok(false) => self.holder(&ticket.connection_id).await,
            Err(error) => {
                warn!(%error, "the connection directory is unavailable; the connection cannot be opened");
                Err(super::text(StatusCode::SERVICE_UNAVAILABLE, "The server is unavailable"))
            }
        }
    }

    /// Where the holder of a connection another node claimed takes requests.
    #[allow(clippy::result_large_err)]
    async fn holder(&self, connection_id: &str) -> Result<Place, Response> {
        match self.directory.holder_of(connection_id).await {
            Ok(Some(record)) if crate::cluster::holder_node(&record) == self.node_id => {
                debug!(connection_id, "the directory names this node, which does not hold the connection");
                Ok(Place::Here)
            }
            Ok(Some(record)) => match holder_address(&record) {
                Some(address) => Ok(Place::Elsewhere(address.to_owned())),
                None => {
                    debug!(connection_id, "the holder advertises no address");
                    Ok(Place::Here)
                }
            },
            // Claimed and already forgotten: the connection is over.
            Ok(None) => {
                debug!(connection_id, "claimed, but no node holds it any more");
                Ok(Place::Here)
            }
            Err(error) => {
                warn!(%error, "the connection directory is unavailable");
                Err(super::text(StatusCode::SERVICE_UNAVAILABLE, "The server is unavailable"))
            }
        }
    }

    /// Extends the records of the connections this node holds.
    pub async fn renew(&self, connections: &[String]) {
        if connections.is_empty() {
            return;
        }
        if let Err(error) = self.directory.renew(connections, RECORD_TTL).await {
            warn!(%error, count = connections.len(), "connection records not renewed");
        }
    }

    /// Passes a request to the node at `address` and streams its answer back.
    ///
    /// A request the holder never answered is sent again, a few times within about a second:
    /// a connection that was refused, or a pooled one the holder closed before reading
    /// the request (both leave nothing done on the holder, so nothing is duplicated; `body` is
    /// whole for that reason). A holder still unreachable after that is answered with 503: the
    /// directory still names it, so the connection may yet be alive (a node restarting, a
    /// network blip), and an ended connection is the holder's to report.
    pub async fn forward(
        &self,
        address: &str,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let path = uri.path_and_query().map_or("/", |path| path.as_str());
        let url = format!("{address}{path}");
        debug!(address, %method, path, "passing the request to the node holding its connection");
        let mut pauses = RETRY_PAUSES.iter();
        loop {
            let mut request = self.forwarder.request(method.clone(), &url);
            for (name, value) in headers.iter().filter(|(name, _)| passes(name)) {
                request = request.header(name, value);
            }
            request = request.header(FORWARDED_BY, self.node_id.as_str());
            if method == Method::POST {
                request = request.body(body.clone());
            }
            let error = match request.send().await {
                Ok(answer) => return relay_answer(answer),
                Err(error) => error,
            };
            let cause = causes(&error);
            match pauses.next() {
                Some(pause) if never_answered(&error) => {
                    debug!(address, %cause, "the node holding the connection did not take the request; sending it again");
                    tokio::time::sleep(*pause).await;
                }
                _ => {
                    warn!(address, %cause, "the node holding the connection cannot be reached");
                    return super::text(StatusCode::SERVICE_UNAVAILABLE, "The server is unavailable");
                }
            }
        }
    }
}

/// The pauses before each repeated attempt to pass a request on (about a second in all).
const RETRY_PAUSES: [Duration; 3] = [Duration::from_millis(50), Duration::from_millis(250), Duration::from_millis(700)];

/// Whether a forwarded request failed before the holder could act on it: no connection was
/// made, or the connection closed before any answer came (a pooled connection the holder
/// had just closed as idle). A holder reads a request whole before it acts and always
/// answers what it read, so either way it did nothing.
fn never_answered(error: &reqwest::Error) -> bool {
    if error.is_connect() {
        // Refused (a node restarting) is worth another try; a timeout (nothing there) is not.
        return !error.is_timeout();
    }
    for cause in sources(error) {
        if cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(|hyper| hyper.is_incomplete_message() || hyper.is_canceled())
        {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
            return matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof);
        }
    }
    false
}

/// What caused `error`, outermost first.
fn sources(error: &reqwest::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(std::error::Error::source(error), |cause| cause.source())
}

/// An error and all its causes on one line: reqwest's own text says only that sending failed,
/// and not whether the name did not resolve, the connection was refused, or it was reset. The
/// URL is left out: its query carries the connection's token.
fn causes(error: &reqwest::Error) -> String {
    let mut line = match error.url() {
        Some(url) => error.to_string().replace(url.as_str(), url.path()),
        None => error.to_string(),
    };
    for cause in sources(error) {
        line.push_str(": ");
        line.push_str(&cause.to_string());
    }
    line
}

/// The holder's answer as this node's response, its body streamed as it comes.
fn relay_answer(answer: reqwest::Response) -> Response {
    let mut headers = HeaderMap::new();
    // CORS headers are this node's to set (its own CORS layer answers the browser), never
    // the holder's: two Access-Control-Allow-Origin values make a browser refuse the answer.
    let own = |name: &HeaderName| name.as_str().starts_with("access-control-");
    for (name, value) in answer.headers().iter().filter(|(name, _)| passes(name) && !own(name)) {
        headers.append(name.clone(), value.clone());
    }
    let status = answer.status();
    let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Whether a header of a request or an answer crosses the hop between two nodes: hop-by-hop
/// headers (and those the HTTP client sets itself) do not.
fn passes(name: &HeaderName) -> bool {
    !matches!(
        *name,
        header::CONNECTION
            | header::HOST
            | header::TRANSFER_ENCODING
            | header::CONTENT_LENGTH
            | header::TE
            | header::TRAILER
            | header::UPGRADE
            | header::PROXY_AUTHORIZATION
            | header::PROXY_AUTHENTICATE
    ) && name.as_str() != "keep-alive"
        && *name != FORWARDED_BY
}

/// Whether a request was passed on by another node.
pub(crate) fn was_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED_BY)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::routing::post;
    use backplane::MemoryDirectory;
    use tokio::net::TcpListener;

    use super::*;

    fn stateless() -> Stateless {
        let directory = Arc::new(MemoryDirectory::new());
        Stateless::new("secret", Duration::from_secs(15), directory, "node-a".into(), None).expect("client")
    }

    async fn forward_post(stateless: &Stateless, address: &str, body: &'static str) -> (StatusCode, String) {
        let uri: Uri = "/hubs/chat?id=abc".parse().expect("uri");
        let response = stateless
            .forward(address, Method::POST, &uri, &HeaderMap::new(), Bytes::from_static(body.as_bytes()))
            .await;
        let status = response.status();
        let answer = axum::body::to_bytes(response.into_body(), 1024).await.expect("answer");
        (status, String::from_utf8_lossy(&answer).into_owned())
    }

    /// A holder whose first connection is closed unread (as a pooled connection it had just
    /// closed as idle), then served normally; it keeps every body it was given.
    async fn holder_closing_its_first_connection() -> (String, Arc<Mutex<Vec<Bytes>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = received.clone();
        let router = axum::Router::new().route(
            "/hubs/chat",
            post(move |body: Bytes| async move {
                kept.lock().expect("lock").push(body);
                "taken"
            }),
        );
        tokio::spawn(async move {
            let (first, _) = listener.accept().await.expect("accept");
            drop(first);
            axum::serve(listener, router).await.expect("serve");
        });
        (address, received)
    }

    #[tokio::test]
    async fn a_request_the_holder_closed_unread_is_sent_again_once() {
        let (address, received) = holder_closing_its_first_connection().await;
        let (status, answer) = forward_post(&stateless(), &address, "{\"type\":6}\u{1e}").await;
        assert_eq!((status, answer.as_str()), (StatusCode::OK, "taken"));
        assert_eq!(*received.lock().expect("lock"), vec![Bytes::from_static(b"{\"type\":6}\x1e")]);
    }

    /// A holder on an address of its own: a network namespace joined to this one by a veth
    /// pair, where a listener takes connections and never answers (as a node in a long poll).
    /// Dropping the pair makes the address vanish with no reset, as when a node's container
    /// is killed. Needs root (`ip netns`), as the fault tests do.
    struct VanishingHolder {
        namespace: String,
        link: String,
        listener: tokio::process::Child,
        accepted: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
        address: String,
    }

    impl VanishingHolder {
        async fn start() -> Self {
            let tag = std::process::id() % 10_000;
            let (namespace, link, peer) = (format!("hgfwd{tag}"), format!("hgfwd{tag}a"), format!("hgfwd{tag}b"));
            let octet = 1 + tag % 250;
            let (near, far) = (format!("10.231.{octet}.1/30"), format!("10.231.{octet}.2"));
            for args in [
                vec!["netns", "add", &namespace],
                vec!["link", "add", &link, "type", "veth", "peer", "name", &peer],
                vec!["link", "set", &peer, "netns", &namespace],
                vec!["addr", "add", &near, "dev", &link],
                vec!["link", "set", &link, "up"],
                vec!["-n", &namespace, "addr", "add", &format!("{far}/30"), "dev", &peer],
                vec!["-n", &namespace, "link", "set", &peer, "up"],
            ] {
                let status = std::process::Command::new("ip").args(&args).status().expect("ip (iproute2) runs");
                assert!(status.success(), "ip {args:?} failed: this test needs root and iproute2");
            }
            let script = format!(
                "import socket,sys\ns=socket.socket()\ns.bind(('{far}',8080))\ns.listen()\nkept=[]\nprint('ready',flush=True)\nwhile True:\n    c,_=s.accept();kept.append(c);print('accepted',flush=True)\n"
            );
            let mut listener = tokio::process::Command::new("ip")
                .args(["netns", "exec", &namespace, "python3", "-c", &script])
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("python3 runs");
            let stdout = listener.stdout.take().expect("stdout");
            let mut accepted = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
            let ready = tokio::time::timeout(Duration::from_secs(10), accepted.next_line()).await;
            assert!(matches!(ready, Ok(Ok(Some(ref line))) if line == "ready"), "the listener started: {ready:?}");
            Self { namespace, link, listener, accepted, address: format!("http://{far}:8080") }
        }

        async fn wait_for_a_connection(&mut self) {
            let line = tokio::time::timeout(Duration::from_secs(10), self.accepted.next_line()).await;
            assert!(
                matches!(line, Ok(Ok(Some(ref line))) if line == "accepted"),
                "the request reached the holder: {line:?}"
            );
        }

        fn vanish(&self) {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &self.link])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    impl Drop for VanishingHolder {
        fn drop(&mut self) {
            let _ = self.listener.start_kill();
            self.vanish();
            let _ = std::process::Command::new("ip").args(["netns", "del", &self.namespace]).status();
        }
    }

    #[tokio::test]
    async fn a_forwarded_long_poll_to_a_holder_that_vanished_fails_within_seconds() {
        let mut holder = VanishingHolder::start().await;
        let stateless = Arc::new(stateless());
        let (forwarder, address) = (stateless.clone(), holder.address.clone());
        let poll = tokio::spawn(async move {
            let uri: Uri = "/hubs/chat?id=abc".parse().expect("uri");
            forwarder.forward(&address, Method::GET, &uri, &HeaderMap::new(), Bytes::new()).await.status()
        });
        holder.wait_for_a_connection().await;
        holder.vanish();
        let vanished = std::time::Instant::now();
        // Without keep-alive probes the poll would wait for an answer that never comes.
        let status = tokio::time::timeout(Duration::from_secs(30), poll).await.expect("the poll ended").expect("task");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        eprintln!("forwarded long poll to a vanished holder failed {:?} after it vanished", vanished.elapsed());
    }

    #[tokio::test]
    async fn a_holder_that_cannot_be_reached_is_unavailable_not_gone() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        drop(listener);
        let (status, answer) = forward_post(&stateless(), &address, "{}").await;
        assert_eq!((status, answer.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "The server is unavailable"));
    }

    #[test]
    fn hop_by_hop_headers_do_not_cross() {
        for name in [header::CONNECTION, header::HOST, header::TRANSFER_ENCODING, header::UPGRADE, FORWARDED_BY] {
            assert!(!passes(&name), "{name}");
        }
        for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT, header::COOKIE] {
            assert!(passes(&name), "{name}");
        }
    }
}
