//! Upstream webhooks (issue 16, in progress): where a hub's events go when the application's
//! logic lives in a backend written in any language, as Azure SignalR Service's serverless
//! upstreams do. Nothing is sent yet and no option configures them: [`rules`] decides where an
//! event goes, [`request`] what the request says besides its body (Azure's `X-ASRS-*` headers
//! and signature), [`answer`] what the backend's answer means for the client's Completion.

pub mod answer;
pub mod request;
pub mod rules;
