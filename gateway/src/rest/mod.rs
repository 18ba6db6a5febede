//! The server REST API at `/api`: lets a backend publish to clients without holding a
//! connection, with the paths, bodies and status codes of Azure SignalR Service's data-plane
//! REST API (versions 2022-06-01 and 2024-12-01), so code written for Azure (or its
//! Management SDK in transient mode) can point at a gateway instead.
//!
//! How it works: a request passes [`guard`] (access-key token bound to the URL, then
//! `api-version`), then a handler turns it into a call on the hub's [`HubLifetime`]
//! (`send`, group changes, `invoke_client`, `close_connections`) exactly as hub code would, so
//! delivery goes through the same encode-once, local-then-backplane path and reaches clients on
//! every node. A hub with no connections on this node gets a detached lifetime
//! ([`HubTable::get_or_detached`]): it publishes to the cluster without registering a hub here.
//!
//! ```text
//! POST /api/hubs/chat/:send ─► guard (JWT aud = URL, exp; api-version) ─► read ≤ limit bytes
//!    ─► PayloadMessage ─► HubLifetime::send(All, excluded) ─► local queues + one publish
//! ```
//!
//! Every operation is one handler with a `#[utoipa::path]` annotation, and the router is built
//! from those annotations ([`operations`]), so the OpenAPI document served at
//! `/api/openapi.json` lists exactly the routes that exist. Handlers live by resource:
//! [`hubs`], [`groups`], [`users`], [`connections`].
//!
//! [`HubLifetime`]: crate::cluster::HubLifetime
//! [`HubTable::get_or_detached`]: crate::cluster::HubTable

mod auth;
mod common;
mod connections;
mod error;
mod groups;
mod hubs;
mod users;

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use tracing::{debug, error, warn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::cluster::HubTable;
use crate::metrics::Metrics;
use auth::AccessKeys;
pub use error::RestError;

/// The `api-version` values accepted; the API is the same for both here.
pub const API_VERSIONS: &[&str] = &["2022-06-01", "2024-12-01"];
const API_VERSIONS_TEXT: &str = "2022-06-01, 2024-12-01";

/// Where the OpenAPI document is served (without authentication: it holds no data).
pub const OPENAPI_PATH: &str = "/api/openapi.json";

/// The REST API's settings (see the options of the same names), built once from the
/// configuration by the composition root.
#[derive(Debug, Clone)]
pub(crate) struct RestSettings {
    pub access_key: Option<String>,
    pub access_key_secondary: Option<String>,
    pub open: bool,
    pub max_body: usize,
    /// Which browser origins may call the API (`--rest-cors-allowed-origins`).
    pub cors: crate::cors::AllowedOrigins,
    /// Whose `X-Forwarded-Host` / `X-Forwarded-Proto` count for token audiences.
    pub trusted_proxies: crate::forwarded::TrustedProxies,
    /// The client-token key and claims, for `:generateToken`.
    pub client_tokens: ClientTokens,
}

/// How `:generateToken` signs client tokens: the gateway's own client key (`--jwt-secret`) and
/// the claims the authenticator reads back.
#[derive(Debug, Clone)]
pub(crate) struct ClientTokens {
    pub secret: Option<String>,
    pub user_claim: String,
    pub groups_claim: String,
}

/// Shared by every REST handler: what it may reach of the node, and nothing more.
pub(crate) struct RestApi {
    hubs: Arc<HubTable>,
    presence: Arc<dyn backplane::Presence>,
    client_tokens: ClientTokens,
    access: Access,
    max_body: usize,
    /// Whose `X-Forwarded-Host` / `X-Forwarded-Proto` count for token audiences.
    proxies: crate::forwarded::TrustedProxies,
}

/// How requests are admitted.
enum Access {
    Keys(Box<AccessKeys>),
    /// `--rest-api-open` without a key: everyone (local development).
    Open,
    /// No key and not opened: everyone is refused.
    Closed,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hubgate REST API",
        description = "Server-side publishing to SignalR clients on every gateway node, compatible with Azure SignalR Service's data-plane REST API (2022-06-01, 2024-12-01). Every operation needs a bearer token signed with the access key (HS256, audience = the request URL without its query)."
    ),
    components(schemas(common::ErrorDetail)),
    modifiers(&AccessKeyScheme),
    security(("AccessKey" = []))
)]
struct ApiDoc;

/// Declares the bearer-token scheme every operation requires.
struct AccessKeyScheme;

impl utoipa::Modify for AccessKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        scheme.description = Some("HS256 JWT signed with --access-key; aud = request URL without query".into());
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("AccessKey", SecurityScheme::Http(scheme));
    }
}

/// Every REST operation: each route comes from its handler's annotation, so the router and
/// the OpenAPI document cannot disagree.
fn operations() -> OpenApiRouter<Arc<RestApi>> {
    // Azure's verbs are literal `:name` segments, which axum 0.8 would read as the old
    // capture syntax without this.
    let mut router = OpenApiRouter::from(Router::new().without_v07_checks());
    *router.get_openapi_mut() = ApiDoc::openapi();
    router
        .routes(routes!(hubs::health))
        .routes(routes!(hubs::send_to_all))
        .routes(routes!(hubs::close_all))
        .routes(routes!(hubs::generate_token))
        .routes(routes!(groups::send_to_group))
        .routes(routes!(groups::close_group))
        .routes(routes!(groups::group_exists))
        .routes(routes!(groups::group_connections))
        .routes(routes!(groups::add_connection, groups::remove_connection))
        .routes(routes!(users::send_to_user))
        .routes(routes!(users::close_user))
        .routes(routes!(users::user_exists))
        .routes(routes!(users::user_in_group, users::add_user_to_group, users::remove_user_from_group))
        .routes(routes!(users::remove_user_from_all_groups))
        .routes(routes!(connections::send_to_connection))
        .routes(routes!(connections::invoke))
        .routes(routes!(connections::close_connection, connections::connection_exists))
        .routes(routes!(connections::leave_all_groups))
}

/// The OpenAPI document of the REST API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    operations().into_openapi()
}

/// The REST API routes, to be merged at the root (audiences are compared with the full path).
pub(crate) fn router(
    config: RestSettings,
    hubs: Arc<HubTable>,
    presence: Arc<dyn backplane::Presence>,
    metrics: Arc<Metrics>,
) -> Router {
    let access = match AccessKeys::new(config.access_key.as_deref(), config.access_key_secondary.as_deref()) {
        Some(keys) => Access::Keys(Box::new(keys)),
        None if config.open => {
            error!("REST API OPEN: /api accepts requests WITHOUT AUTHENTICATION (--rest-api-open). Anyone who reaches this port can publish to every client. For local development only; set --access-key in production.");
            Access::Open
        }
        None => {
            warn!("no --access-key: the REST API at /api refuses every request with 401");
            Access::Closed
        }
    };
    let origins = crate::cors::OriginGuard::rest(config.cors);
    let state = Arc::new(RestApi {
        max_body: config.max_body,
        hubs,
        presence,
        client_tokens: config.client_tokens,
        access,
        proxies: config.trusted_proxies,
    });
    let (routes, document) = operations().split_for_parts();
    // Bytes: the handler is cloned with its captures whenever its route is, and a clone of
    // `Bytes` shares the document (about 24 KiB) instead of copying it.
    let document = bytes::Bytes::from(document.to_json().unwrap_or_default());
    let routes = routes
        .route("/api/{*rest}", any(no_such_operation))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard))
        .route(OPENAPI_PATH, get(move || async move { ([(header::CONTENT_TYPE, "application/json")], document) }))
        .layer(middleware::from_fn_with_state(metrics, count_request))
        .with_state(state);
    // Outside the access check and the request count: a preflight carries no token.
    origins.protect(routes)
}

/// Counts every REST request by its route template (never the concrete path: hub, group and
/// user names are the client's) and status.
async fn count_request(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = match request.extensions().get::<MatchedPath>().map(MatchedPath::as_str) {
        Some("/api/{*rest}") | None => "unmatched".to_owned(),
        Some(route) => route.to_owned(),
    };
    let response = next.run(request).await;
    metrics.rest_request(&route, response.status().as_u16());
    response
}

/// Any other path under `/api`: an Azure-shaped 404.
async fn no_such_operation(method: Method, request: Request) -> RestError {
    RestError::NotFound(format!("{method} {}", request.uri().path()))
}

/// Admits a request (token, then `api-version`) before any handler sees it.
async fn guard(State(api): State<Arc<RestApi>>, request: Request, next: Next) -> Response {
    let admitted = match &api.access {
        Access::Keys(keys) => {
            let peer = crate::forwarded::Peer::of(request.extensions()).0;
            let forwarded = api.proxies.forwarded(peer, request.headers());
            keys.admits(request.headers(), request.uri(), &forwarded)
        }
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
