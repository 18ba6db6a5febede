//! The server REST API at `/api`: lets a backend publish to clients without holding a
//! connection, with the paths, bodies and status codes of Azure SignalR Service's data-plane
//! REST API (versions 2022-06-01 and 2024-12-01), so code written for Azure (or its
//! Management SDK in transient mode) can point at a gateway instead.
//!
//! How it works: a request passes [`guard`] (access-key token bound to the URL, then
//! `api-version`), then a handler turns it into a call on the hub's [`HubLifetime`]
//! (`send`, group changes, `invoke_client`, `close_connection`) exactly as hub code would, so
//! delivery goes through the same encode-once, local-then-backplane path and reaches clients on
//! every node. A hub with no connections on this node gets a detached lifetime
//! ([`HubTable::get_or_detached`]): it publishes to the cluster without registering a hub here.
//!
//! ```text
//! POST /api/hubs/chat/:send ─► guard (JWT aud = URL, exp; api-version) ─► read ≤ limit bytes
//!    ─► PayloadMessage ─► HubLifetime::send(All, excluded) ─► local queues + one publish
//! ```
//!
//! [`HubLifetime`]: crate::cluster::HubLifetime
//! [`HubTable::get_or_detached`]: crate::cluster::HubTable

mod auth;
mod error;
mod handlers;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, head, post, put};
use axum::Router;
use tracing::{debug, error, warn};

use crate::server::Gateway;
use auth::AccessKeys;
pub use error::RestError;

/// The `api-version` values accepted; the API is the same for both here.
pub const API_VERSIONS: &[&str] = &["2022-06-01", "2024-12-01"];
const API_VERSIONS_TEXT: &str = "2022-06-01, 2024-12-01";

/// Shared by every REST handler.
pub(crate) struct RestApi {
    gateway: Arc<Gateway>,
    access: Access,
    max_body: usize,
}

/// How requests are admitted.
enum Access {
    Keys(Box<AccessKeys>),
    /// `--rest-api-open` without a key: everyone (local development).
    Open,
    /// No key and not opened: everyone is refused.
    Closed,
}

/// The REST API routes, to be merged at the root (audiences are compared with the full path).
pub(crate) fn router(gateway: Arc<Gateway>) -> Router {
    let config = gateway.config();
    let access = match AccessKeys::new(config.access_key.as_deref(), config.access_key_secondary.as_deref()) {
        Some(keys) => Access::Keys(Box::new(keys)),
        None if config.rest_api_open => {
            error!("REST API OPEN: /api accepts requests WITHOUT AUTHENTICATION (--rest-api-open). Anyone who reaches this port can publish to every client. For local development only; set --access-key in production.");
            Access::Open
        }
        None => {
            warn!("no --access-key: the REST API at /api refuses every request with 401");
            Access::Closed
        }
    };
    let state = Arc::new(RestApi { max_body: config.rest_max_body, gateway, access });
    Router::new()
        .route("/api/health", head(handlers::health))
        .route("/api/hubs/{hub}/{action}", post(handlers::hub_action))
        .route("/api/hubs/{hub}/groups/{group}/{action}", post(handlers::group_action))
        .route("/api/hubs/{hub}/users/{user}/{action}", post(handlers::user_action))
        .route("/api/hubs/{hub}/connections/{connection}/{action}", post(handlers::connection_action))
        .route(
            "/api/hubs/{hub}/connections/{connection}",
            delete(handlers::close_connection).head(handlers::connection_exists),
        )
        .route("/api/hubs/{hub}/users/{user}", head(handlers::user_exists))
        .route("/api/hubs/{hub}/groups/{group}", head(handlers::group_exists))
        .route("/api/hubs/{hub}/users/{user}/groups/{group}", head(handlers::user_in_group))
        .route("/api/hubs/{hub}/groups/{group}/connections", get(handlers::group_connections))
        .route(
            "/api/hubs/{hub}/groups/{group}/connections/{connection}",
            put(handlers::add_to_group).delete(handlers::remove_from_group),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Admits a request (token, then `api-version`) before any handler sees it.
async fn guard(State(api): State<Arc<RestApi>>, request: Request, next: Next) -> Response {
    let admitted = match &api.access {
        Access::Keys(keys) => keys.admits(request.headers(), request.uri()),
        Access::Open => true,
        Access::Closed => false,
    };
    if !admitted {
        debug!(path = %request.uri().path(), "REST API request refused: no valid access token");
        return RestError::Unauthorized.into_response();
    }
    if let Err(refusal) = check_api_version(request.uri().query()) {
        return refusal.into_response();
    }
    next.run(request).await
}

/// `api-version` is required, as in Azure's reference; the last occurrence wins.
fn check_api_version(query: Option<&str>) -> Result<(), RestError> {
    let version = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(key, _)| key == "api-version")
        .map(|(_, value)| value.into_owned())
        .last()
        .ok_or(RestError::MissingApiVersion(API_VERSIONS_TEXT))?;
    if API_VERSIONS.contains(&version.as_str()) {
        Ok(())
    } else {
        Err(RestError::UnsupportedApiVersion(version, API_VERSIONS_TEXT))
    }
}
