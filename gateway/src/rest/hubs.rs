//! Operations on a whole hub: health, broadcast, closing every connection, client tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use tracing::info;
use utoipa::IntoParams;

use super::common::{
    hub_name, send_error, Api, ApiVersion, ErrorDetail, Excluded, HubPath, Path, PayloadMessage, QueryPairs, Reason,
};
use super::{RestApi, RestError};
use crate::cluster::Audience;

/// Client token lifetime when `minutesToExpire` is absent (Azure's default).
const DEFAULT_TOKEN_MINUTES: u64 = 60;
/// Longest client token lifetime granted: one year.
const MAX_TOKEN_MINUTES: u64 = 366 * 24 * 60;
/// The claim a generated token lists its roles in.
const ROLE_CLAIM: &str = "role";

/// What a generated client token says.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read with QueryPairs (repeated keys); here to document them
pub(super) struct TokenQuery {
    /// The user id the token identifies (in the configured user claim, `sub` by default).
    #[serde(rename = "userId")]
    user_id: Option<String>,
    /// Token lifetime in minutes, 1 to 527040 (one year); 60 when absent.
    #[serde(rename = "minutesToExpire")]
    minutes_to_expire: Option<u64>,
    /// A role for the `role` claim; repeat for several.
    role: Option<Vec<String>>,
    /// A group for the groups claim (`--relay-groups-claim`); repeat for several.
    group: Option<Vec<String>>,
}

/// The answer to `:generateToken`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct ClientToken {
    /// A bearer token for the client's `accessTokenFactory`.
    token: String,
}

/// Service health: 200 while this node serves.
#[utoipa::path(head, path = "/api/health", tag = "general", params(ApiVersion),
    responses((status = 200, description = "The node is serving")))]
pub(super) async fn health() -> StatusCode {
    StatusCode::OK
}

/// Broadcast a message to every client of the hub, on every node.
#[utoipa::path(post, path = "/api/hubs/{hub}/:send", tag = "hubs", params(HubPath, Excluded, ApiVersion),
    request_body = PayloadMessage,
    responses((status = 202, description = "Queued for every client"),
        (status = 400, description = "Bad hub name or payload", body = ErrorDetail),
        (status = 413, description = "Body over --rest-max-body", body = ErrorDetail)))]
pub(super) async fn send_to_all(
    State(api): Api,
    Path(path): Path<HubPath>,
    query: QueryPairs,
    body: axum::body::Body,
) -> Result<StatusCode, RestError> {
    let lifetime = api.lifetime(&path.hub)?;
    api.send(&lifetime, Audience::All, query.all("excluded"), body).await
}

/// Close every connection of the hub, on every node, with an optional reason.
#[utoipa::path(post, path = "/api/hubs/{hub}/:closeConnections", tag = "hubs",
    params(HubPath, Excluded, Reason, ApiVersion),
    responses((status = 204, description = "Every connection was told to close"),
        (status = 400, description = "Bad hub name", body = ErrorDetail)))]
pub(super) async fn close_all(
    State(api): Api,
    Path(path): Path<HubPath>,
    query: QueryPairs,
) -> Result<StatusCode, RestError> {
    let lifetime = api.lifetime(&path.hub)?;
    api.close(&lifetime, Audience::All, &query).await
}

/// Generate a client access token for a user, signed with the gateway's client key.
#[utoipa::path(post, path = "/api/hubs/{hub}/:generateToken", tag = "hubs", params(HubPath, TokenQuery, ApiVersion),
    responses((status = 200, description = "The token", body = ClientToken),
        (status = 400, description = "Bad hub name or lifetime", body = ErrorDetail),
        (status = 501, description = "No --jwt-secret configured", body = ErrorDetail)))]
pub(super) async fn generate_token(
    State(api): Api,
    Path(path): Path<HubPath>,
    query: QueryPairs,
) -> Result<Response, RestError> {
    hub_name(&path.hub)?;
    let config = &api.client_tokens;
    let secret = config.secret.as_deref().ok_or(RestError::NoClientTokenKey)?;
    let minutes = token_minutes(query.last("minutesToExpire"))?;
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = serde_json::Map::new();
    claims.insert("iat".into(), now.into());
    claims.insert("nbf".into(), now.into());
    claims.insert("exp".into(), (now + minutes * 60).into());
    if let Some(user) = query.last("userId").filter(|u| !u.is_empty()) {
        claims.insert(config.user_claim.clone(), user.into());
    }
    let roles = query.all("role");
    if !roles.is_empty() {
        claims.insert(ROLE_CLAIM.into(), roles.into());
    }
    let groups = query.all("group");
    if !groups.is_empty() && !config.groups_claim.is_empty() {
        claims.insert(config.groups_claim.clone(), groups.into());
    }
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
            .map_err(|e| RestError::Internal(format!("the token could not be signed: {e}")))?;
    info!(minutes, "REST API issued a client token");
    Ok(Json(ClientToken { token }).into_response())
}

fn token_minutes(text: Option<String>) -> Result<u64, RestError> {
    let Some(text) = text else { return Ok(DEFAULT_TOKEN_MINUTES) };
    text.parse::<u64>()
        .ok()
        .filter(|m| (1..=MAX_TOKEN_MINUTES).contains(m))
        .ok_or_else(|| RestError::InvalidQuery(format!("minutesToExpire must be 1 to {MAX_TOKEN_MINUTES}")))
}

impl RestApi {
    /// Publishes the payload in `body` to `audience` and answers 202.
    pub(super) async fn send(
        &self,
        lifetime: &crate::cluster::HubLifetime,
        audience: Audience,
        excluded: Vec<String>,
        body: axum::body::Body,
    ) -> Result<StatusCode, RestError> {
        let (target, arguments) = self.read_payload(body).await?;
        lifetime.send(audience, excluded, &target, arguments).await.map_err(send_error)?;
        Ok(StatusCode::ACCEPTED)
    }

    /// Closes `audience` of the hub on every node, with the query's `excluded` and `reason`,
    /// and answers 204.
    pub(super) async fn close(
        &self,
        lifetime: &crate::cluster::HubLifetime,
        audience: Audience,
        query: &QueryPairs,
    ) -> Result<StatusCode, RestError> {
        lifetime.close_connections(audience, query.all("excluded"), query.last("reason")).await.map_err(send_error)?;
        Ok(StatusCode::NO_CONTENT)
    }
}
