//! What the harness's integration tests share: a gateway served in the test's own process.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use gateway::{Config, Gateway};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A gateway on its own memory backplane, serving until dropped.
pub struct Node {
    pub hub: String,
    _stop: oneshot::Sender<()>,
}

/// Starts a [`Node`] on a free loopback port; its hub is `/hubs/bench`.
pub async fn node() -> Node {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config { shutdown_timeout: Duration::from_secs(2), ..Config::default() };
    let gateway = Gateway::new(config, Arc::new(backplane::MemoryBackplane::standalone())).await.unwrap();
    let router = gateway.router();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        gateway::serve(listener, gateway, router, shutdown).await.unwrap();
    });
    Node { hub: format!("http://{addr}/hubs/bench"), _stop: stop }
}
