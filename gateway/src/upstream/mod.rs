//! Upstream webhooks (issue 16, in progress): where a hub's events go when the application's
//! logic lives in a backend written in any language, as Azure SignalR Service's serverless
//! upstreams do. Today this holds the routing rules only; nothing is sent yet and no option
//! configures them.

pub mod rules;
