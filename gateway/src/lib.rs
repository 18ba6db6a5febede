//! hubgate's gateway: SignalR clients connect here; hubs run here; the backplane links nodes.
//!
//! How a message flows:
//!
//! ```text
//!  client ──WebSocket──► transport::websocket ──bytes──► connection::session
//!                                                          │ handshake, decode (protocol crate)
//!                                                          ▼
//!                                        hub::dispatch ─► your hub method (own task)
//!                                                          │ ctx.clients().group("g").send(..)
//!                                                          ▼
//!                                  cluster::HubLifetime: encode once ─► local registry ─► outbound
//!                                                          └─► backplane ─► other nodes
//!  client ◄──WebSocket── writer task ◄── connection::outbound (bounded in bytes)
//! ```
//!
//! - [`transport`]: negotiate and the WebSocket endpoint, with the official status codes.
//! - [`connection`]: the per-connection session and its byte-bounded outbound queue.
//! - [`hub`]: the Rust hub API (typed methods, `HubContext`) and the built-in relay hub.
//! - [`cluster`]: local registry of connections/groups/users and the backplane envelope.
//! - [`auth`]: JWT identities. [`config`]: every setting, validated before binding.
//! - [`metrics`]: every Prometheus metric, in one file; served at `/metrics` and on the admin port.
//! - [`demo`]: the demo chat page at `/` (`--demo-page`).
//!
//! Start a node with [`run`] (relay hub, in-memory backplane) or compose your own with
//! [`Gateway::new`], [`Gateway::hub_router`] and [`serve`].

#![forbid(unsafe_code)]

pub mod auth;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod demo;
pub mod hub;
pub mod ids;
pub mod metrics;
pub mod query;
pub mod queue;
pub mod request;
pub mod request_log;
pub mod rest;
mod server;
pub mod transport;

pub use config::Config;
pub use server::{backplane_from_config, presence_from_config, run, serve, serve_admin, Gateway, GatewayError};
