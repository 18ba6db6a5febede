//! hubgate's gateway: SignalR clients connect here; hubs run here; the backplane links nodes.
//!
//! How a message flows:
//!
//! ```text
//!  client ──WebSocket / SSE + POST / long polling──► transport ──bytes──► connection::session
//!                                                          │ handshake, decode (protocol crate)
//!                                                          ▼
//!                                  hub::dispatch (HubLogic) ─► your hub method
//!                                                          │ ctx.clients().group("g").send(..)
//!                                                          ▼
//!                              cluster::HubLifetime: encode once per protocol ─► local registry
//!                                                          │                     ─► queue::outbound
//!                                                          └─► backplane ─► other nodes
//!  client ◄── the transport's writer ◄── queue::outbound (bounded in bytes)
//! ```
//!
//! The modules are layers; each imports only from those below it (lowest last):
//!
//! - `server` (private; [`Gateway`], [`run`], [`serve`]): the composition root.
//! - [`config`]: every setting, validated before binding, and the builders of each component's
//!   own settings.
//! - [`transport`]: negotiate, WebSockets, Server-Sent Events and long polling, with the
//!   official status codes. [`rest`]: the server REST API (Azure SignalR data plane).
//! - [`connection`]: the per-connection hub session.
//! - [`hub`]: the Rust hub API (typed methods, `HubContext`) and the built-in relay hub.
//! - [`cluster`]: hub lifetimes, the local registry of connections, groups and users, node-to-node
//!   requests and the backplane envelope.
//! - [`limits`]: the limits that protect a node (connections per node and per user, new
//!   connections per client address).
//! - [`queue`]: the byte-bounded outbound queue and the replay buffer of stateful reconnect.
//!   [`auth`]: JWT identities.
//! - [`tls`]: the TLS listener and certificate reloads (`--tls-cert`, `--tls-key`).
//! - [`upstream`]: upstream webhooks (rules, the HTTP client, connect-hook admissions), which
//!   run hub events in a backend of any language.
//! - Leaves: [`ids`], [`request`] (what the opening request said), [`query`], [`metrics`] (every
//!   Prometheus metric, in one file), [`request_log`], [`demo`] (the demo chat page at `/`),
//!   [`cors`] (which browser origins may use the hubs and the REST API), [`forwarded`] (the
//!   client's address and what trusted proxies say).
//!
//! docs/architecture.md draws the layers and says why they are in this order.
//!
//! Start a node with [`run`] (relay hub, the backplane the config names) or compose your own with
//! [`Gateway::new`], [`Gateway::hub_router`] and [`serve`].

#![forbid(unsafe_code)]

pub mod auth;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod cors;
pub mod demo;
pub mod forwarded;
#[doc(hidden)]
pub mod fuzzing;
pub mod hub;
pub mod ids;
pub mod limits;
pub mod metrics;
pub mod query;
pub mod queue;
pub mod request;
pub mod request_log;
pub mod rest;
mod server;
pub mod stalled_writes;
pub mod tls;
pub mod transport;
pub mod upstream;

pub use config::Config;
pub use server::{backplane_from_config, presence_from_config, run, serve, serve_admin, Gateway, GatewayError};
