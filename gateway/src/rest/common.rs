//! What every REST operation shares: path and query parameters (which also document the
//! operations), the payload body, name rules and the mapping of cluster errors to responses.

use std::sync::Arc;

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use backplane::UserGroupsError;
use protocol::Value;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{RestApi, RestError};
use crate::cluster::{ClientResultError, GroupError, HubLifetime, SendError, MAX_GROUP_NAME, MAX_HUB_NAME};

pub(super) type Api = State<Arc<RestApi>>;

/// `{hub}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct HubPath {
    /// Hub name: a letter, then letters, digits or underscores (case-insensitive).
    pub hub: String,
}

/// `{hub}` and `{group}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct GroupPath {
    /// Hub name: a letter, then letters, digits or underscores (case-insensitive).
    pub hub: String,
    /// Group name, 1 to 1024 characters.
    pub group: String,
}

/// `{hub}` and `{user}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct UserPath {
    /// Hub name: a letter, then letters, digits or underscores (case-insensitive).
    pub hub: String,
    /// User id, as in the client's access token.
    pub user: String,
}

/// `{hub}`, `{user}` and `{group}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct UserGroupPath {
    /// Hub name: a letter, then letters, digits or underscores (case-insensitive).
    pub hub: String,
    /// User id, as in the client's access token.
    pub user: String,
    /// Group name, 1 to 1024 characters.
    pub group: String,
}

/// `{hub}` and `{connectionId}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct ConnectionPath {
    /// Hub name: a letter, then letters, digits or underscores (case-insensitive).
    pub hub: String,
    /// Connection id, as the client got it from negotiate.
    #[serde(rename = "connectionId")]
    pub connection_id: String,
}

/// `{hub}`, `{group}` and `{connectionId}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct GroupConnectionPath {
    /// Hub name: a letter, then letters, digits or underscores (case-insensitive).
    pub hub: String,
    /// Group name, 1 to 1024 characters.
    pub group: String,
    /// Connection id, as the client got it from negotiate.
    #[serde(rename = "connectionId")]
    pub connection_id: String,
}

/// The query parameter every operation requires.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ApiVersion {
    /// `2022-06-01` or `2024-12-01` (the API is the same for both).
    #[serde(rename = "api-version")]
    #[allow(dead_code)] // read by the guard; here to document it
    pub api_version: String,
}

/// Connections left out of a send or a close.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Excluded {
    /// A connection id to leave out; repeat the parameter for several.
    #[allow(dead_code)] // read with QueryPairs (repeated keys); here to document it
    pub excluded: Option<Vec<String>>,
}

/// The reason a closed client is given.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Reason {
    /// Text for the `error` of the Close message the client receives.
    #[allow(dead_code)] // read with QueryPairs; here to document it
    pub reason: Option<String>,
}

/// The body of every send and invoke, as in Azure's `PayloadMessage`.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct PayloadMessage {
    /// The client method to invoke.
    target: Option<String>,
    /// Its arguments, any JSON values.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    arguments: Vec<serde_json::Value>,
}

/// The JSON body of every error response: `code` and `message` as in Azure's ErrorDetail,
/// `level` as in its ServiceResponse.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ErrorDetail {
    pub code: String,
    pub level: String,
    pub message: String,
}

impl RestApi {
    /// The hub `name` addresses (see [`hub_name`]).
    pub(super) fn lifetime(&self, name: &str) -> Result<Arc<HubLifetime>, RestError> {
        Ok(self.hubs.get_or_detached(&hub_name(name)?))
    }

    /// The hub and group a path names, both checked.
    pub(super) fn group(&self, hub: &str, group: &str) -> Result<Arc<HubLifetime>, RestError> {
        let lifetime = self.lifetime(hub)?;
        check_group_name(group)?;
        Ok(lifetime)
    }

    /// Reads at most `max_body` bytes and parses a payload message with a non-empty target.
    pub(super) async fn read_payload(&self, body: Body) -> Result<(String, Vec<Value>), RestError> {
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

/// The hub `name` addresses, lower-case, after Azure's name rule: a letter first, then
/// letters, digits or underscores. Enough for a presence query, which needs no lifetime.
pub(super) fn hub_name(name: &str) -> Result<String, RestError> {
    let valid = name.len() <= MAX_HUB_NAME
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(RestError::InvalidName(format!(
            "Invalid hub name '{name}': it must start with a letter and contain only letters, digits or underscores (at most {MAX_HUB_NAME})."
        )));
    }
    Ok(name.to_lowercase())
}

/// The hub and group a path names, both checked: the hub's lower-case name.
pub(super) fn group_hub_name(hub: &str, group: &str) -> Result<String, RestError> {
    let hub = hub_name(hub)?;
    check_group_name(group)?;
    Ok(hub)
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

/// 200 or 404 for an existence check.
pub(super) fn found(exists: bool) -> StatusCode {
    if exists {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

pub(super) fn presence_error(error: backplane::PresenceError) -> RestError {
    RestError::Unavailable(error.to_string())
}

pub(super) fn send_error(error: SendError) -> RestError {
    match error {
        SendError::Encode(e) => RestError::InvalidBody(e.to_string()),
        SendError::Backplane(e) => RestError::Unavailable(e.to_string()),
    }
}

pub(super) fn group_error(error: GroupError) -> RestError {
    match error {
        GroupError::InvalidName(reason) => RestError::InvalidName(reason.into()),
        GroupError::NoSuchConnection(id) => RestError::NoSuchConnection(id),
        GroupError::Remote(text) => RestError::Internal(text),
        GroupError::Timeout(_) => RestError::Timeout(error.to_string()),
        GroupError::Backplane(e) => RestError::Unavailable(e.to_string()),
        GroupError::TooManyGroups { .. } | GroupError::UserGroups(UserGroupsError::TooManyGroups { .. }) => {
            RestError::GroupLimit(error.to_string())
        }
        GroupError::UserGroups(UserGroupsError::Store(e)) => RestError::Unavailable(e.to_string()),
    }
}

pub(super) fn client_result_error(error: ClientResultError) -> RestError {
    match error {
        ClientResultError::NoSuchConnection(id) | ClientResultError::Disconnected(id) => {
            RestError::NoSuchConnection(id)
        }
        ClientResultError::Client(_) | ClientResultError::NotDeserializable(_) => {
            RestError::ClientFailed(error.to_string())
        }
        ClientResultError::Timeout { .. } | ClientResultError::Unanswered { .. } => {
            RestError::Timeout(error.to_string())
        }
        ClientResultError::Overloaded | ClientResultError::Backplane(_) => RestError::Unavailable(error.to_string()),
        ClientResultError::Encode(_) => RestError::InvalidBody(error.to_string()),
    }
}

/// The path parameters of an operation, as axum's `Path` reads them, but a path that does not
/// decode (bad percent-encoding, not UTF-8) is refused with the API's JSON error rather than
/// axum's plain text (found by the `rest_router` fuzz target).
pub(super) struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(RestError::InvalidName(rejection.body_text())),
        }
    }
}

/// Decoded query pairs; keys may repeat (`excluded=a&excluded=b`). Also an extractor: a
/// handler takes `query: QueryPairs` (no query is no pairs).
pub(super) struct QueryPairs(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::parse(parts.uri.query()))
    }
}

impl QueryPairs {
    pub fn parse(query: Option<&str>) -> Self {
        Self(form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }

    pub fn last(&self, key: &str) -> Option<String> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }
}
