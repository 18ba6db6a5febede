//! One handler per REST operation: validate names and body, then one call on the hub lifetime.
//!
//! Azure addresses operations with a `:verb` last segment (`/:send`, `/:invoke`), which the
//! router cannot match literally, so the verb arrives as a path parameter and is dispatched
//! here; an unknown verb is a 404 like an unknown path.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use protocol::Value;
use serde::Deserialize;
use tracing::{debug, info};

use super::{RestApi, RestError};
use crate::cluster::{Audience, ClientResultError, GroupError, HubLifetime, SendError, MAX_GROUP_NAME};

type Api = State<Arc<RestApi>>;

/// Longest hub name, in bytes (the relay hub's limit).
const MAX_HUB_NAME: usize = 128;
/// Client token lifetime when `minutesToExpire` is absent (Azure's default).
const DEFAULT_TOKEN_MINUTES: u64 = 60;
/// Longest client token lifetime granted: one year.
const MAX_TOKEN_MINUTES: u64 = 366 * 24 * 60;

/// The body of every send and invoke, as in Azure's `PayloadMessage`.
#[derive(Debug, Deserialize)]
struct PayloadMessage {
    target: Option<String>,
    #[serde(default)]
    arguments: Vec<serde_json::Value>,
}

/// `HEAD /api/health`: 200 while the node serves.
pub(super) async fn health() -> StatusCode {
    StatusCode::OK
}

/// `POST /api/hubs/{hub}/:send` and `POST /api/hubs/{hub}/:generateToken`.
pub(super) async fn hub_action(
    State(api): Api,
    Path((hub, action)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, RestError> {
    let query = QueryPairs::parse(query.as_deref());
    let lifetime = api.lifetime(&hub)?;
    match action.as_str() {
        ":send" => send(&api, &lifetime, Audience::All, query.all("excluded"), body).await,
        ":generateToken" => generate_token(&api, &query),
        _ => Err(RestError::NotFound(action)),
    }
}

/// `POST /api/hubs/{hub}/groups/{group}/:send`.
pub(super) async fn group_action(
    State(api): Api,
    Path((hub, group, action)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, RestError> {
    let lifetime = api.lifetime(&hub)?;
    check_group_name(&group)?;
    match action.as_str() {
        ":send" => {
            let excluded = QueryPairs::parse(query.as_deref()).all("excluded");
            send(&api, &lifetime, Audience::Group(group), excluded, body).await
        }
        _ => Err(RestError::NotFound(action)),
    }
}

/// `POST /api/hubs/{hub}/users/{user}/:send`.
pub(super) async fn user_action(
    State(api): Api,
    Path((hub, user, action)): Path<(String, String, String)>,
    body: Body,
) -> Result<Response, RestError> {
    let lifetime = api.lifetime(&hub)?;
    match action.as_str() {
        ":send" => send(&api, &lifetime, Audience::User(user), Vec::new(), body).await,
        _ => Err(RestError::NotFound(action)),
    }
}

/// `POST /api/hubs/{hub}/connections/{connection}/:send` and `.../:invoke`.
pub(super) async fn connection_action(
    State(api): Api,
    Path((hub, connection, action)): Path<(String, String, String)>,
    body: Body,
) -> Result<Response, RestError> {
    let lifetime = api.lifetime(&hub)?;
    match action.as_str() {
        ":send" => send(&api, &lifetime, Audience::Connection(connection), Vec::new(), body).await,
        ":invoke" => invoke(&api, &lifetime, &connection, body).await,
        _ => Err(RestError::NotFound(action)),
    }
}

/// `DELETE /api/hubs/{hub}/connections/{connection}?reason=`: the client gets a Close (no
/// reconnect) carrying the reason, on whichever node it is. 200 also when the connection is
/// already gone, like Azure.
pub(super) async fn close_connection(
    State(api): Api,
    Path((hub, connection)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<StatusCode, RestError> {
    let lifetime = api.lifetime(&hub)?;
    let reason = QueryPairs::parse(query.as_deref()).last("reason");
    let reached = lifetime.close_connection(&connection, reason).await.map_err(send_error)?;
    debug!(hub = %lifetime.name(), %connection, reached, "REST close connection");
    Ok(StatusCode::OK)
}

/// `HEAD /api/hubs/{hub}/connections/{connection}`: 200 when the connection is on any node,
/// 404 when not; asked of the node the id names.
pub(super) async fn connection_exists(
    State(api): Api,
    Path((hub, connection)): Path<(String, String)>,
) -> Result<StatusCode, RestError> {
    let lifetime = api.lifetime(&hub)?;
    let exists = lifetime.connection_exists(&connection).await.map_err(group_error)?;
    Ok(if exists { StatusCode::OK } else { StatusCode::NOT_FOUND })
}

/// `HEAD /api/hubs/{hub}/users/{user}`: 200 when the user has a connection on any node.
pub(super) async fn user_exists(
    State(api): Api,
    Path((hub, user)): Path<(String, String)>,
) -> Result<StatusCode, RestError> {
    let hub = api.lifetime(&hub)?.name().to_owned();
    found(api.gateway.presence().user_exists(&hub, &user).await)
}

/// `HEAD /api/hubs/{hub}/groups/{group}`: 200 when the group has a member on any node.
pub(super) async fn group_exists(
    State(api): Api,
    Path((hub, group)): Path<(String, String)>,
) -> Result<StatusCode, RestError> {
    let hub = api.lifetime(&hub)?.name().to_owned();
    check_group_name(&group)?;
    found(api.gateway.presence().group_exists(&hub, &group).await)
}

/// `HEAD /api/hubs/{hub}/users/{user}/groups/{group}`: 200 when one of the user's connections
/// is in the group.
pub(super) async fn user_in_group(
    State(api): Api,
    Path((hub, user, group)): Path<(String, String, String)>,
) -> Result<StatusCode, RestError> {
    let hub = api.lifetime(&hub)?.name().to_owned();
    check_group_name(&group)?;
    found(api.gateway.presence().user_in_group(&hub, &user, &group).await)
}

/// `GET /api/hubs/{hub}/groups/{group}/connections`: the ids of the group's connections on
/// every node, as `{"value": [{"connectionId": ...}]}` (at most the presence cap).
pub(super) async fn group_connections(
    State(api): Api,
    Path((hub, group)): Path<(String, String)>,
) -> Result<Response, RestError> {
    let hub = api.lifetime(&hub)?.name().to_owned();
    check_group_name(&group)?;
    let ids = api.gateway.presence().group_connections(&hub, &group).await.map_err(presence_error)?;
    let value: Vec<_> = ids.into_iter().map(|id| serde_json::json!({ "connectionId": id })).collect();
    Ok(Json(serde_json::json!({ "value": value })).into_response())
}

/// 200 or 404 for an existence check answered by the cluster's presence.
fn found(answer: Result<bool, backplane::PresenceError>) -> Result<StatusCode, RestError> {
    Ok(if answer.map_err(presence_error)? { StatusCode::OK } else { StatusCode::NOT_FOUND })
}

fn presence_error(error: backplane::PresenceError) -> RestError {
    RestError::Unavailable(error.to_string())
}

/// `PUT /api/hubs/{hub}/groups/{group}/connections/{connection}`: 200, or 404 when no node
/// has the connection.
pub(super) async fn add_to_group(
    State(api): Api,
    Path((hub, group, connection)): Path<(String, String, String)>,
) -> Result<StatusCode, RestError> {
    let lifetime = api.lifetime(&hub)?;
    check_group_name(&group)?;
    lifetime.add_to_group(&connection, &group).await.map_err(group_error)?;
    Ok(StatusCode::OK)
}

/// `DELETE /api/hubs/{hub}/groups/{group}/connections/{connection}`: 200, or 404 when no node
/// has the connection.
pub(super) async fn remove_from_group(
    State(api): Api,
    Path((hub, group, connection)): Path<(String, String, String)>,
) -> Result<StatusCode, RestError> {
    let lifetime = api.lifetime(&hub)?;
    check_group_name(&group)?;
    lifetime.remove_from_group(&connection, &group).await.map_err(group_error)?;
    Ok(StatusCode::OK)
}

async fn send(
    api: &RestApi,
    lifetime: &HubLifetime,
    audience: Audience,
    excluded: Vec<String>,
    body: Body,
) -> Result<Response, RestError> {
    let (target, arguments) = api.read_payload(body).await?;
    lifetime.send(audience, excluded, &target, arguments).await.map_err(send_error)?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Invokes a client method and answers 200 with `{"result": <the client's value>}`.
async fn invoke(api: &RestApi, lifetime: &HubLifetime, connection: &str, body: Body) -> Result<Response, RestError> {
    let (target, arguments) = api.read_payload(body).await?;
    let result: serde_json::Value =
        lifetime.invoke_client(connection, &target, arguments).await.map_err(client_result_error)?;
    Ok(Json(serde_json::json!({ "result": result })).into_response())
}

/// A client token for `userId`, signed with the gateway's client key (`--jwt-secret`): the
/// user id goes in the configured user claim (`sub` by default).
fn generate_token(api: &RestApi, query: &QueryPairs) -> Result<Response, RestError> {
    let config = api.gateway.config();
    let secret = config.jwt_secret.as_deref().ok_or(RestError::NoClientTokenKey)?;
    let minutes = match query.last("minutesToExpire") {
        None => DEFAULT_TOKEN_MINUTES,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|m| (1..=MAX_TOKEN_MINUTES).contains(m))
            .ok_or_else(|| RestError::InvalidQuery(format!("minutesToExpire must be 1 to {MAX_TOKEN_MINUTES}")))?,
    };
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = serde_json::Map::new();
    claims.insert("iat".into(), now.into());
    claims.insert("nbf".into(), now.into());
    claims.insert("exp".into(), (now + minutes * 60).into());
    if let Some(user) = query.last("userId").filter(|u| !u.is_empty()) {
        claims.insert(config.jwt_user_claim.clone(), user.into());
    }
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
            .map_err(|e| RestError::Internal(format!("the token could not be signed: {e}")))?;
    info!(minutes, "REST API issued a client token");
    Ok(Json(serde_json::json!({ "token": token })).into_response())
}

impl RestApi {
    /// The hub `name` addresses, after Azure's name rule: a letter first, then letters, digits
    /// or underscores.
    fn lifetime(&self, name: &str) -> Result<Arc<HubLifetime>, RestError> {
        let valid = name.len() <= MAX_HUB_NAME
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(RestError::InvalidName(format!(
                "Invalid hub name '{name}': it must start with a letter and contain only letters, digits or underscores (at most {MAX_HUB_NAME})."
            )));
        }
        Ok(self.gateway.hubs.get_or_detached(name))
    }

    /// Reads at most `max_body` bytes and parses a payload message with a non-empty target.
    async fn read_payload(&self, body: Body) -> Result<(String, Vec<Value>), RestError> {
        let bytes =
            axum::body::to_bytes(body, self.max_body).await.map_err(|_| RestError::BodyTooLarge(self.max_body))?;
        let payload: PayloadMessage =
            serde_json::from_slice(&bytes).map_err(|e| RestError::InvalidBody(e.to_string()))?;
        let target = payload
            .target
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RestError::InvalidBody("'target' is required".into()))?;
        let arguments = payload
            .arguments
            .iter()
            .map(protocol::value::to_value)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RestError::InvalidBody(e.to_string()))?;
        Ok((target, arguments))
    }
}

/// Azure's group name rule: 1 to 1024 characters.
fn check_group_name(group: &str) -> Result<(), RestError> {
    if group.is_empty() || group.chars().count() > MAX_GROUP_NAME {
        return Err(RestError::InvalidName(format!(
            "Invalid group name: it must be 1 to {MAX_GROUP_NAME} characters long."
        )));
    }
    Ok(())
}

fn send_error(error: SendError) -> RestError {
    match error {
        SendError::Encode(e) => RestError::InvalidBody(e.to_string()),
        SendError::Backplane(e) => RestError::Unavailable(e.to_string()),
    }
}

fn group_error(error: GroupError) -> RestError {
    match error {
        GroupError::InvalidName(reason) => RestError::InvalidName(reason.into()),
        GroupError::NoSuchConnection(id) => RestError::NoSuchConnection(id),
        GroupError::Remote(text) => RestError::Internal(text),
        GroupError::Timeout(_) => RestError::Timeout(error.to_string()),
        GroupError::Backplane(e) => RestError::Unavailable(e.to_string()),
        GroupError::TooManyGroups { .. } => RestError::GroupLimit(error.to_string()),
    }
}

fn client_result_error(error: ClientResultError) -> RestError {
    match error {
        ClientResultError::NoSuchConnection(id) | ClientResultError::Disconnected(id) => {
            RestError::NoSuchConnection(id)
        }
        ClientResultError::Client(_) | ClientResultError::NotDeserializable(_) => {
            RestError::ClientFailed(error.to_string())
        }
        ClientResultError::Timeout { .. } => RestError::Timeout(error.to_string()),
        ClientResultError::Overloaded | ClientResultError::Backplane(_) => RestError::Unavailable(error.to_string()),
        ClientResultError::Encode(_) => RestError::InvalidBody(error.to_string()),
    }
}

/// Decoded query pairs; keys may repeat (`excluded=a&excluded=b`).
struct QueryPairs(Vec<(String, String)>);

impl QueryPairs {
    fn parse(query: Option<&str>) -> Self {
        Self(form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect())
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }

    fn last(&self, key: &str) -> Option<String> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }
}
