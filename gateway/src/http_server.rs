//! The HTTP/1.1 accept loop under every listener: `axum::serve`'s loop with a header deadline.
//!
//! `axum::serve` builds each connection with hyper's default builder and no timer, and hyper
//! skips its `header_read_timeout` without one (it logs "has default, but no timer set"): a
//! client could send a request's headers a byte at a time for as long as it liked (slowloris),
//! holding a socket and a task. This loop gives hyper the tokio timer and
//! `--request-header-timeout`; everything else is as `axum::serve` does it: one task per
//! connection, WebSocket upgrades, the peer address as `ConnectInfo<SocketAddr>`, and on `stop`
//! no more accepting, a graceful shutdown of every connection (in-flight requests finish, kept
//! alive ones close) and a wait for them. Upgraded WebSockets leave hyper's hands, so they are
//! not waited for here (the gateway tracks them itself).

use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::trace;

/// Serves `router` on `listener` until `stop` is cancelled and the HTTP connections have ended.
/// A connection whose next request's headers have not all arrived within `header_timeout`
/// (counted from when hyper starts waiting for them, also between kept-alive requests) is
/// closed.
pub(crate) async fn serve<L>(
    mut listener: L,
    router: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) -> std::io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    // Converted once: per connection, a clone is one `Arc` (see `server::shared_with_peer`'s
    // note on what `with_state` per connection cost).
    let router = router.with_state(());
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let connections = TaskTracker::new();
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let service = router.clone().map_request(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service)).with_upgrades();
        let stop = stop.clone();
        connections.spawn(async move {
            let mut connection = pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                trace!(%peer, %error, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}
