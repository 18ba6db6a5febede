//! Upstream webhooks: where a hub's events go when the application's logic lives in a backend
//! written in any language, wire-compatible with Azure SignalR Service's serverless upstreams,
//! plus a blocking connect hook, retries and back-pressure. [`rules`] decides where an event
//! goes, [`request`] what the request says besides its body (Azure's `X-ASRS-*` headers and
//! signature), [`answer`] what the backend's answer means for the client's Completion,
//! [`client`] sends (bounded in flight, a circuit per rule), and [`admission`] reads the
//! connect hook's verdict. The hub side (what a client's invocation becomes) is
//! `hub::upstream`; this layer knows nothing of hubs or sessions.

pub mod admission;
pub mod answer;
pub mod client;
pub mod request;
pub mod rules;

pub use client::{Payload, Upstream, UpstreamError, UpstreamSettings};
